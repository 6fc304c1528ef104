//! BIRD 2: the file of static routes it includes, and its control socket's replies.
//!
//! The operator's `bird.conf` includes the file (`include "/run/xvs/bird-*.conf";` — a pattern,
//! so that BIRD starts before xvsd has written it) and exports the routes of the protocols
//! [`PROTO4`] and [`PROTO6`] to its BGP sessions. xvsd rewrites the file and asks BIRD to
//! `configure`, which re-reads it and changes only what changed: the BGP sessions stay up.
//!
//! BIRD's control protocol: each reply line starts with a four-digit code and a `-` (more
//! follows) or a space (the last line); a line starting with a space continues the previous
//! code. Codes 0xxx report success, 8xxx and 9xxx errors, 1xxx and 2xxx table rows.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::IpAddr;

/// The static protocol that carries the IPv4 VIPs.
pub const PROTO4: &str = "xvs_vips4";
/// The static protocol that carries the IPv6 VIPs.
pub const PROTO6: &str = "xvs_vips6";

/// The file for `routes`, each a host route through `interface` (routes through an interface
/// BIRD withdraws when the interface goes: `check link` also follows its carrier).
pub fn render(routes: &BTreeSet<IpAddr>, interface: &str) -> String {
    let mut out = String::from(
        "# Written by xvsd: the VIPs this director announces. Changes are overwritten.\n\
         # Export the routes of these protocols to the BGP sessions of the router(s).\n",
    );
    for (name, v4, channel) in [(PROTO4, true, "ipv4"), (PROTO6, false, "ipv6")] {
        let _ = writeln!(out, "protocol static {name} {{\n\t{channel};\n\tcheck link yes;");
        for r in routes.iter().filter(|r| r.is_ipv4() == v4) {
            let len = if v4 { 32 } else { 128 };
            let _ = writeln!(out, "\troute {r}/{len} via \"{interface}\";");
        }
        out.push_str("}\n");
    }
    out
}

/// A complete reply: the last line's code and every line's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The code of the last line.
    pub code: u16,
    /// The lines' text, without codes.
    pub lines: Vec<String>,
}

impl Reply {
    /// Codes below 1000, except BIRD's refusals to reconfigure while shutting down (0006)
    /// or when no change is allowed (0019 is "Nothing to do", which is fine).
    pub fn ok(&self) -> bool {
        self.code < 1000 && self.code != 6
    }

    /// The reply as one line, for error messages.
    pub fn text(&self) -> String {
        self.lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
    }
}

/// Reads BIRD's reply lines, one at a time.
#[derive(Clone, Debug, Default)]
pub struct ReplyReader {
    lines: Vec<String>,
}

impl ReplyReader {
    /// Takes one line (without its newline). Returns the reply when this line ends it;
    /// a line that is neither coded nor a continuation is an error.
    pub fn push_line(&mut self, line: &str) -> Result<Option<Reply>, String> {
        let b = line.as_bytes();
        if b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && (b[4] == b' ' || b[4] == b'-') {
            let code: u16 = line[..4].parse().map_err(|_| format!("bad reply line: {line:?}"))?;
            self.lines.push(line[5..].to_string());
            if b[4] == b' ' {
                return Ok(Some(Reply { code, lines: std::mem::take(&mut self.lines) }));
            }
            Ok(None)
        } else if b.len() == 4 && b.iter().all(u8::is_ascii_digit) {
            // A last line with nothing after its code.
            let code: u16 = line.parse().map_err(|_| format!("bad reply line: {line:?}"))?;
            Ok(Some(Reply { code, lines: std::mem::take(&mut self.lines) }))
        } else if let Some(rest) = line.strip_prefix(' ') {
            self.lines.push(rest.to_string());
            Ok(None)
        } else if line.starts_with('+') {
            // An asynchronous message (a log line to a client that asked for them): not ours.
            Ok(None)
        } else {
            Err(format!("not a BIRD reply line: {line:?}"))
        }
    }
}

/// Checks the greeting (`0001 BIRD 2.x ready.`): returns the version text.
pub fn check_greeting(r: &Reply) -> Result<String, String> {
    if r.code == 1 {
        Ok(r.text())
    } else {
        Err(format!("unexpected greeting from BIRD: {} {}", r.code, r.text()))
    }
}

/// Checks the reply to `configure`.
pub fn check_configure(r: &Reply) -> Result<(), String> {
    if r.ok() {
        Ok(())
    } else {
        Err(format!("BIRD refused the new configuration: {}", r.text()))
    }
}

/// Checks the reply to `show protocols "xvs_vips*"`: both protocols exist (BIRD's
/// configuration includes the file). A reply without them means it does not.
pub fn check_protocols(r: &Reply, file: &str) -> Result<(), String> {
    let has = |p: &str| r.lines.iter().any(|l| l.split_whitespace().next() == Some(p));
    if r.ok() && has(PROTO4) && has(PROTO6) {
        Ok(())
    } else {
        Err(format!(
            "BIRD has no protocols {PROTO4}/{PROTO6}: its configuration must include {file} \
             (e.g. include \"{file}\"; with a * for the part that may be missing at BIRD's start)"
        ))
    }
}

/// The command that lists xvs's protocols.
pub const SHOW_PROTOCOLS: &str = "show protocols \"xvs_vips*\"";

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Reply {
        let mut r = ReplyReader::default();
        for (i, l) in lines.iter().enumerate() {
            if let Some(rep) = r.push_line(l).unwrap() {
                assert_eq!(i, lines.len() - 1, "reply ended early");
                return rep;
            }
        }
        panic!("no reply")
    }

    // As BIRD 2.0.12 answered in a namespace (see the lab test).
    #[test]
    fn replies() {
        let g = read(&["0001 BIRD 2.0.12 ready."]);
        assert_eq!(check_greeting(&g).unwrap(), "BIRD 2.0.12 ready.");
        let c = read(&["0002-Reading configuration from /etc/bird/bird.conf", "0003 Reconfigured"]);
        assert!(check_configure(&c).is_ok());
        let bad =
            read(&["0002-Reading configuration from /tmp/bird.conf", "8002 /tmp/x.conf:1:54 Invalid prefix length 33"]);
        assert_eq!(
            check_configure(&bad).unwrap_err(),
            "BIRD refused the new configuration: Reading configuration from /tmp/bird.conf; /tmp/x.conf:1:54 Invalid prefix length 33"
        );
        let syntax = read(&["9001 syntax error, unexpected CF_SYM_UNDEFINED"]);
        assert!(!syntax.ok());
        let rows = read(&[
            "2002-Name       Proto      Table      State  Since         Info",
            "1002-xvs_vips4  Static     master4    up     00:05:22.182  ",
            " xvs_vips6  Static     master6    up     00:05:22.182  ",
            "0000 ",
        ]);
        assert!(check_protocols(&rows, "/run/xvs/bird-vips.conf").is_ok());
        let none = read(&["8003 No protocols match"]);
        assert!(check_protocols(&none, "/run/xvs/bird-vips.conf").unwrap_err().contains("must include"));
        assert!(ReplyReader::default().push_line("garbage").is_err());
    }

    #[test]
    fn file() {
        let routes: BTreeSet<IpAddr> = ["198.18.0.1", "2001:2::1"].iter().map(|s| s.parse().unwrap()).collect();
        let f = render(&routes, "xvs-vips");
        assert!(f.contains(
            "protocol static xvs_vips4 {\n\tipv4;\n\tcheck link yes;\n\troute 198.18.0.1/32 via \"xvs-vips\";\n}"
        ));
        assert!(f.contains(
            "protocol static xvs_vips6 {\n\tipv6;\n\tcheck link yes;\n\troute 2001:2::1/128 via \"xvs-vips\";\n}"
        ));
        let empty = render(&BTreeSet::new(), "xvs-vips");
        assert!(empty.contains("protocol static xvs_vips4 {\n\tipv4;\n\tcheck link yes;\n}"));
    }
}
