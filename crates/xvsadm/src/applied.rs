//! What xvsadm remembers of the last TOML file it applied through a socket: the file's path,
//! its text and the token xvsd gave for the table that apply left. The next `apply` of the same
//! file sends only the services that differ ([`Request::ApplyPart`]); xvsd refuses the part
//! (`ESTALE`) unless its table is still the one that token names, and the whole file is then
//! applied as before. Kept beside the socket (`xvsd.sock.applied`), readable by root only;
//! a missing, unreadable or foreign file only means a whole apply.

use std::io::Write;
use std::path::{Path, PathBuf};

use xvs_api::config::{parts, Config};
use xvs_api::{KeySpec, Request};

const MAGIC: &str = "xvsadm-applied 1\n";

/// At most this many services read apart; a larger change reads the whole file.
const MAX_PART: usize = 10_000;

/// The last applied file.
#[derive(Debug, PartialEq)]
pub struct Last {
    /// xvsd's token for the table it left.
    pub base: String,
    /// The file's canonical path.
    pub file: String,
    /// Its text as applied.
    pub text: String,
}

/// Where the memory of the socket `socket` is kept.
pub fn path_for(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".applied");
    PathBuf::from(p)
}

/// Reads the memory, if there is a well-formed one.
pub fn load(at: &Path) -> Option<Last> {
    let all = std::fs::read_to_string(at).ok()?;
    let rest = all.strip_prefix(MAGIC)?;
    let (base, rest) = rest.split_once('\n')?;
    let (file, text) = rest.split_once('\n')?;
    Some(Last { base: base.into(), file: file.into(), text: text.into() })
}

/// Remembers `text` of `file` as applied, leaving the table `base` (best effort: without it
/// the next apply reads the whole file). Written aside and renamed, so a reader never sees
/// half of it.
pub fn store(at: &Path, base: &str, file: &str, text: &str) {
    if base.contains('\n') || file.contains('\n') {
        return forget(at);
    }
    let mut tmp = at.as_os_str().to_owned();
    tmp.push(format!(".{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = (|| -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(format!("{MAGIC}{base}\n{file}\n").as_bytes())?;
        f.write_all(text.as_bytes())?;
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

/// The request that applies `text` (of `file`, canonical) as the services that differ from
/// the last applied file, when they can be read apart; `None` sends the whole file.
pub fn part_request(last: &Last, file: &str, text: &str, dry_run: bool) -> Option<Request> {
    if last.file != file {
        return None;
    }
    let (old, new) = (parts::split(&last.text)?, parts::split(text)?);
    let changed = parts::changed(&old, &new)?;
    if changed.removed.len() + changed.added.len() > MAX_PART {
        return None;
    }
    let removed = changed.removed.iter().map(|p| key_of(p)).collect::<Option<Vec<KeySpec>>>()?;
    let added = changed.added.iter().map(|p| parts::service_of(p)).collect::<Option<Vec<_>>>()?;
    Some(Request::ApplyPart { base: last.base.clone(), removed, added, dry_run })
}

/// The key of the service a part of the last applied file describes.
fn key_of(part: &str) -> Option<KeySpec> {
    let c = Config { services: vec![parts::service_of(part)?], ..Default::default() };
    Some(c.specs().ok()?.pop()?.0.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "[timeouts]\ntcp = 900\n\n[[service]]\naddress = \"198.18.0.1:80\"\n[[service.real_server]]\naddress = \"198.18.2.2\"\nweight = 1\n\n[[service]]\naddress = \"198.18.0.2:80\"\n";

    #[test]
    fn the_memory_reads_back_as_written() {
        let dir = std::env::temp_dir().join(format!("xvsadm-applied-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let at = path_for(&dir.join("xvsd.sock"));
        assert!(at.ends_with("xvsd.sock.applied"));
        assert_eq!(load(&at), None);
        store(&at, "00ab.1", "/etc/xvs/xvs.toml", A);
        assert_eq!(load(&at), Some(Last { base: "00ab.1".into(), file: "/etc/xvs/xvs.toml".into(), text: A.into() }));
        std::fs::write(&at, "something else\n").unwrap();
        assert_eq!(load(&at), None);
        forget(&at);
        assert!(!at.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_part_names_the_services_that_changed() {
        let last = Last { base: "b.1".into(), file: "/f.toml".into(), text: A.into() };
        let edited = A.replace("weight = 1", "weight = 5") + "\n[[service]]\naddress = \"198.18.0.3:80\"\n";
        let Some(Request::ApplyPart { base, removed, added, dry_run: false }) =
            part_request(&last, "/f.toml", &edited, false)
        else {
            panic!("no part")
        };
        assert_eq!(base, "b.1");
        let key = |s: &str| KeySpec::Addr { proto: xvs_api::ProtoName::Tcp, addr: s.parse().unwrap(), port: 80 };
        assert_eq!(removed, vec![key("198.18.0.1")]);
        let addrs: Vec<&str> = added.iter().map(|s| s.address.as_deref().unwrap()).collect();
        assert_eq!(addrs, ["198.18.0.1:80", "198.18.0.3:80"]);
        assert_eq!(added[0].real_servers[0].weight, 5);
        // The whole file: another file, another head, a part that does not read alone.
        assert_eq!(part_request(&last, "/g.toml", &edited, false), None);
        assert_eq!(part_request(&last, "/f.toml", &edited.replace("tcp = 900", "tcp = 901"), false), None);
        assert_eq!(part_request(&last, "/f.toml", &(A.to_string() + "[[service]]\nport = 1\n"), false), None);
        assert_eq!(part_request(&last, "/f.toml", &(A.to_string() + "[[service]]\n[sysctl]\n"), false), None);
    }
}
