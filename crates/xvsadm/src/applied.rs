//! What xvsadm remembers of the last TOML file it applied through a socket: the file's path,
//! a digest of its head and of each service's part of it with that service's key, and the
//! token xvsd gave for the table that apply left. The next `apply` of the same file sends only
//! the services whose parts differ ([`Request::ApplyPart`]); xvsd refuses the part (`ESTALE`)
//! unless its table is still the one that token names, and the whole file is then applied as
//! before. Kept beside the socket (`xvsd.sock.applied`), readable by root only; a missing,
//! unreadable or foreign file only means a whole apply.
//!
//! Parts are compared by a 128-bit digest (XXH3) of their text without its trailing blank
//! lines: an edit that left a part's digest unchanged would go unseen, which for two different
//! texts happens with odds of about 2^-128 a pair.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use xvs_api::config::{parts, Config};
use xvs_api::{KeySpec, ProtoName, Request};

const MAGIC: &str = "xvsadm-applied 2\n";

/// At most this many services read apart; a larger change reads the whole file.
const MAX_PART: usize = 10_000;

/// The last applied file.
#[derive(Debug, PartialEq)]
pub struct Last {
    /// xvsd's token for the table it left.
    pub base: String,
    /// The file's canonical path.
    pub file: String,
    /// What is remembered of its text: [`memory_of`]'s lines.
    pub body: String,
}

/// An apply of the services that changed, and what to remember once xvsd has taken it.
#[derive(Debug, PartialEq)]
pub struct Part {
    /// The request.
    pub request: Request,
    /// The new file's lines for [`store`].
    pub body: String,
}

/// Where the memory of the socket `socket` is kept.
pub fn path_for(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".applied");
    PathBuf::from(p)
}

/// Whether the memory's directory is safe to keep it in: owned by root or by this user, and
/// writable by no one else (anyone else could plant a memory or a link there).
fn private_dir(at: &Path) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = at.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // The process's own directory in /proc belongs to its effective user.
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    std::fs::metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o022 == 0 && (m.uid() == 0 || Some(m.uid()) == me))
}

/// Reads the memory, if there is a well-formed one in a private directory.
pub fn load(at: &Path) -> Option<Last> {
    if !private_dir(at) {
        return None;
    }
    let all = std::fs::read_to_string(at).ok()?;
    let rest = all.strip_prefix(MAGIC)?;
    let (base, rest) = rest.split_once('\n')?;
    let (file, body) = rest.split_once('\n')?;
    Some(Last { base: base.into(), file: file.into(), body: body.into() })
}

/// Remembers `body` ([`memory_of`], [`Part::body`]) of `file` as applied, leaving the table
/// `base` (best effort: without it the next apply reads the whole file). Written aside and
/// renamed, so a reader never sees half of it.
pub fn store(at: &Path, base: &str, file: &str, body: &str) {
    if base.contains('\n') || file.contains('\n') || !private_dir(at) {
        return forget(at);
    }
    let mut tmp = at.as_os_str().to_owned();
    tmp.push(format!(".{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = (|| -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // A new file: never one someone left there, nor where a link left there points.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(format!("{MAGIC}{base}\n{file}\n").as_bytes())?;
        f.write_all(body.as_bytes())?;
        std::fs::rename(&tmp, at)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        forget(at);
    }
}

/// Forgets the last applied file (the table it left is gone, or was not a plain file's).
pub fn forget(at: &Path) {
    let _ = std::fs::remove_file(at);
}

fn digest(part: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(part.trim_end().as_bytes())
}

/// A digest as 32 hex digits (`{:032x}` took a tenth of an apply's time at 100k services).
fn push_hex(out: &mut String, d: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = DIGITS[((d >> (124 - 4 * i)) & 0xf) as usize];
    }
    out.push_str(std::str::from_utf8(&buf).expect("hex digits"));
}

fn parse_hex(s: &str) -> Option<u128> {
    if s.len() != 32 {
        return None;
    }
    s.bytes().try_fold(0u128, |acc, c| Some(acc << 4 | u128::from((c as char).to_digit(16)?)))
}

/// What to remember of `text` once applied whole, its services' keys in `keys` in the file's
/// order: the head's digest, then each part's digest and key. `None` when the file cannot be
/// cut into parts, one to a service.
pub fn memory_of(text: &str, keys: &[KeySpec]) -> Option<String> {
    let p = parts::split(text)?;
    if p.services.len() != keys.len() {
        return None;
    }
    let mut body = String::with_capacity(64 * (keys.len() + 1));
    push_hex(&mut body, digest(p.head));
    body.push('\n');
    for (part, key) in p.services.iter().zip(keys) {
        push_hex(&mut body, digest(part));
        body.push(' ');
        key_text(&mut body, key);
        body.push('\n');
    }
    Some(body)
}

/// The request that applies `text` (of `file`, canonical) as the services that differ from
/// the last applied file, when they can be read apart; `None` sends the whole file.
pub fn part_request(last: &Last, file: &str, text: &str, dry_run: bool) -> Option<Part> {
    if last.file != file {
        return None;
    }
    let new = parts::split(text)?;
    let mut lines = last.body.lines();
    let head_line = lines.next()?;
    if parse_hex(head_line)? != digest(new.head) {
        return None;
    }
    // The old parts: digest and the whole line (its key is read only if removed).
    let old: Vec<(u128, &str)> = lines.map(|l| Some((parse_hex(l.get(..32)?)?, l))).collect::<Option<_>>()?;
    let digests: Vec<u128> = new.services.iter().map(|p| digest(p)).collect();
    // Most edits leave the order alone: the common ends first, then the rest by digest.
    let prefix = old.iter().zip(&digests).take_while(|(o, n)| o.0 == **n).count();
    let suffix = old[prefix..].iter().rev().zip(digests[prefix..].iter().rev()).take_while(|(o, n)| o.0 == **n).count();
    let mut left: std::collections::HashMap<u128, Vec<usize>> = std::collections::HashMap::new();
    for (i, o) in old.iter().enumerate().take(old.len() - suffix).skip(prefix) {
        left.entry(o.0).or_default().push(i);
    }
    // For each new part, the old part it is (or none: added).
    let matched: Vec<Option<usize>> = (0..digests.len())
        .map(|i| {
            if i < prefix {
                Some(i)
            } else if i >= digests.len() - suffix {
                Some(old.len() - (digests.len() - i))
            } else {
                left.get_mut(&digests[i]).and_then(Vec::pop)
            }
        })
        .collect();
    let added: Vec<usize> = (0..digests.len()).filter(|i| matched[*i].is_none()).collect();
    // In the file's order (xvsd lists their changes in its table's order).
    let mut removed: Vec<usize> = left.values().flatten().copied().collect();
    removed.sort_unstable();
    if removed.len() + added.len() > MAX_PART {
        return None;
    }
    let removed = removed.iter().map(|i| parse_key(old[*i].1.get(33..)?)).collect::<Option<Vec<KeySpec>>>()?;
    let entries = added.iter().map(|i| parts::service_of(new.services[*i])).collect::<Option<Vec<_>>>()?;
    let added_keys = Config { services: entries.clone(), ..Default::default() }.specs().ok()?;
    let mut added_keys = added_keys.into_iter().map(|(s, _)| s.key);
    let mut body = String::with_capacity(last.body.len() + 64 * entries.len());
    body.push_str(head_line);
    body.push('\n');
    for (i, m) in matched.iter().enumerate() {
        match m {
            Some(o) => body.push_str(old[*o].1),
            None => {
                push_hex(&mut body, digests[i]);
                body.push(' ');
                key_text(&mut body, &added_keys.next()?);
            }
        }
        body.push('\n');
    }
    Some(Part { request: Request::ApplyPart { base: last.base.clone(), removed, added: entries, dry_run }, body })
}

/// A key as the memory writes it: `tcp|udp|sctp ADDR PORT`, or `fwmark MARK 4|6`.
fn key_text(out: &mut String, k: &KeySpec) {
    let _ = match k {
        KeySpec::Addr { proto, addr, port } => {
            let p = match proto {
                ProtoName::Tcp => "tcp",
                ProtoName::Udp => "udp",
                ProtoName::Sctp => "sctp",
            };
            write!(out, "{p} {addr} {port}")
        }
        KeySpec::Fwmark { mark, ipv6 } => write!(out, "fwmark {mark} {}", if *ipv6 { 6 } else { 4 }),
    };
}

fn parse_key(s: &str) -> Option<KeySpec> {
    let mut w = s.split(' ');
    let (kind, a, b) = (w.next()?, w.next()?, w.next()?);
    let proto = match kind {
        "tcp" => ProtoName::Tcp,
        "udp" => ProtoName::Udp,
        "sctp" => ProtoName::Sctp,
        "fwmark" => return Some(KeySpec::Fwmark { mark: a.parse().ok()?, ipv6: b == "6" }),
        _ => return None,
    };
    Some(KeySpec::Addr { proto, addr: a.parse().ok()?, port: b.parse().ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "[timeouts]\ntcp = 900\n\n[[service]]\naddress = \"198.18.0.1:80\"\n[[service.real_server]]\naddress = \"198.18.2.2\"\nweight = 1\n\n[[service]]\naddress = \"198.18.0.2:80\"\n";

    fn key(s: &str) -> KeySpec {
        KeySpec::Addr { proto: ProtoName::Tcp, addr: s.parse().unwrap(), port: 80 }
    }

    fn last(text: &str) -> Last {
        let keys: Vec<KeySpec> =
            Config::parse(text).unwrap().specs().unwrap().into_iter().map(|(s, _)| s.key).collect();
        Last { base: "b.1".into(), file: "/f.toml".into(), body: memory_of(text, &keys).unwrap() }
    }

    #[test]
    fn the_memory_reads_back_as_written() {
        let dir = std::env::temp_dir().join(format!("xvsadm-applied-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let at = path_for(&dir.join("xvsd.sock"));
        assert!(at.ends_with("xvsd.sock.applied"));
        assert_eq!(load(&at), None);
        let l = last(A);
        assert_eq!(l.body.lines().count(), 3);
        assert!(l.body.ends_with(" tcp 198.18.0.2 80\n"), "{}", l.body);
        store(&at, "00ab.1", "/f.toml", &l.body);
        assert_eq!(load(&at), Some(Last { base: "00ab.1".into(), file: "/f.toml".into(), body: l.body.clone() }));
        std::fs::write(&at, "something else\n").unwrap();
        assert_eq!(load(&at), None);
        forget(&at);
        assert!(!at.exists());
        // A directory others may write to: nothing kept, nothing read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        store(&at, "00ab.1", "/f.toml", &l.body);
        assert!(!at.exists());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        store(&at, "00ab.1", "/f.toml", &l.body);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(load(&at), None);
        std::fs::remove_dir_all(&dir).unwrap();
        for k in [key("198.18.0.1"), KeySpec::Fwmark { mark: 7, ipv6: true }] {
            let mut t = String::new();
            key_text(&mut t, &k);
            assert_eq!(parse_key(&t), Some(k));
        }
        for d in [0, 1, u128::MAX, 0x0123_4567_89ab_cdef_0011_2233_4455_6677] {
            let mut t = String::new();
            push_hex(&mut t, d);
            assert_eq!(t, format!("{d:032x}"));
            assert_eq!(parse_hex(&t), Some(d));
        }
        assert_eq!(parse_hex("xyz"), None);
    }

    #[test]
    fn a_part_names_the_services_that_changed() {
        let l = last(A);
        let edited = A.replace("weight = 1", "weight = 5") + "\n[[service]]\naddress = \"198.18.0.3:80\"\n";
        let Some(Part { request: Request::ApplyPart { base, removed, added, dry_run: false }, body }) =
            part_request(&l, "/f.toml", &edited, false)
        else {
            panic!("no part")
        };
        assert_eq!(base, "b.1");
        assert_eq!(removed, vec![key("198.18.0.1")]);
        let addrs: Vec<&str> = added.iter().map(|s| s.address.as_deref().unwrap()).collect();
        assert_eq!(addrs, ["198.18.0.1:80", "198.18.0.3:80"]);
        assert_eq!(added[0].real_servers[0].weight, 5);
        // What is remembered after it is what a whole apply of the new file remembers.
        assert_eq!(body, last(&edited).body);
        // Nothing changed: an empty part.
        let same = part_request(&l, "/f.toml", A, true).unwrap();
        assert_eq!(
            same.request,
            Request::ApplyPart { base: "b.1".into(), removed: vec![], added: vec![], dry_run: true }
        );
        // The whole file: another file, another head, a part that does not read alone.
        assert_eq!(part_request(&l, "/g.toml", &edited, false), None);
        assert_eq!(part_request(&l, "/f.toml", &edited.replace("tcp = 900", "tcp = 901"), false), None);
        assert_eq!(part_request(&l, "/f.toml", &(A.to_string() + "[[service]]\nport = 1\n"), false), None);
        assert_eq!(part_request(&l, "/f.toml", &(A.to_string() + "[[service]]\n[sysctl]\n"), false), None);
    }
}
