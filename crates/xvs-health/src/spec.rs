//! Checks as validated values: what to probe, how often, how many retries. Built from the
//! declarative configuration's `check` entries (which keepalived.conf's checkers become).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use xvs_api::config::CheckEntry;

/// Accepted HTTP status codes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StatusSet(pub Vec<(u16, u16)>);

impl StatusSet {
    /// keepalived's default: any 2xx.
    pub fn default_2xx() -> StatusSet {
        StatusSet(vec![(200, 299)])
    }

    /// True when `code` is accepted.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code))
    }

    /// Parses `200`, `200-299` or several of them separated by commas.
    pub fn parse(s: &str) -> Result<StatusSet, String> {
        let mut v = Vec::new();
        for part in s.split(',').map(str::trim) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let p = |x: &str| x.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
            match (p(lo), p(hi)) {
                (Some(a), Some(b)) if a <= b => v.push((a, b)),
                _ => return Err(format!("bad status_code '{part}' (a code 100-599, or a range like 200-299)")),
            }
        }
        Ok(StatusSet(v))
    }
}

/// One URL of an HTTP check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UrlSpec {
    /// Path requested.
    pub path: String,
    /// Expected MD5 of the body, lower-case hex.
    pub digest: Option<String>,
    /// Accepted status codes.
    pub status: StatusSet,
}

/// HTTP_GET and SSL_GET.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpSpec {
    /// Where to connect.
    pub target: SocketAddr,
    /// Source address.
    pub bind: Option<SocketAddr>,
    /// SSL_GET.
    pub tls: bool,
    /// Server name sent in TLS (enable_sni).
    pub sni: Option<String>,
    /// The Host header (virtualhost), else the target.
    pub virtualhost: Option<String>,
    /// URLs, all of which must pass.
    pub urls: Vec<UrlSpec>,
}

impl HttpSpec {
    /// The Host header.
    pub fn host_header(&self) -> String {
        match &self.virtualhost {
            Some(h) => h.clone(),
            None => match self.target.ip() {
                IpAddr::V4(a) => format!("{a}:{}", self.target.port()),
                IpAddr::V6(a) => format!("[{a}]:{}", self.target.port()),
            },
        }
    }
}

/// UDP_CHECK.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UdpSpec {
    /// Where to send.
    pub target: SocketAddr,
    /// Source address.
    pub bind: Option<SocketAddr>,
    /// Datagram sent.
    pub payload: Vec<u8>,
    /// When set, a reply starting with these bytes is required.
    pub require_reply: Option<Vec<u8>>,
}

/// DNS_CHECK.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DnsSpec {
    /// The server.
    pub target: SocketAddr,
    /// Source address.
    pub bind: Option<SocketAddr>,
    /// Query type (numeric).
    pub qtype: u16,
    /// Query name.
    pub name: String,
    /// An answer record is required, not only NOERROR.
    pub need_answer: bool,
}

/// SMTP_CHECK.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SmtpSpec {
    /// Where to connect (the real server's port unless `connect_port`: never 25 by default,
    /// as keepalived).
    pub target: SocketAddr,
    /// Source address.
    pub bind: Option<SocketAddr>,
    /// The name sent with HELO.
    pub helo: String,
}

/// FILE_CHECK (keepalived's `track_file`): the number in a file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileSpec {
    /// The file.
    pub path: String,
    /// Multiplier: with 0, a number other than 0 fails the server; otherwise number × weight
    /// (negated with `reverse`) is added to its weight, and `i32::MIN` or less fails it.
    pub weight: i32,
    /// Counts the other way.
    pub reverse: bool,
}

/// keepalived's HELO name when none is given.
pub const SMTP_DEFAULT_HELO: &str = "smtpchecker.keepalived.org";

/// MISC_CHECK.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MiscSpec {
    /// The command line.
    pub command: String,
    /// Killed after this long.
    pub timeout: Duration,
    /// Exit codes 2-255 set the weight.
    pub dynamic: bool,
    /// Run as this user (MISC_CHECK's `user`, else the configuration's script user).
    pub run_as: Option<crate::script::RunAs>,
}

/// What one attempt does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    /// TCP_CHECK: a connection is accepted.
    Tcp {
        /// Where to connect.
        target: SocketAddr,
        /// Source address.
        bind: Option<SocketAddr>,
    },
    /// HTTP_GET / SSL_GET.
    Http(HttpSpec),
    /// UDP_CHECK.
    Udp(UdpSpec),
    /// DNS_CHECK.
    Dns(DnsSpec),
    /// SMTP_CHECK: a 220 banner, HELO answered with 250, QUIT answered.
    Smtp(SmtpSpec),
    /// FILE_CHECK: the number in a file.
    File(FileSpec),
    /// PING_CHECK: an ICMP (ICMPv6) echo is answered.
    Ping {
        /// The address pinged.
        target: IpAddr,
    },
    /// MISC_CHECK.
    Misc(MiscSpec),
}

impl Probe {
    /// The checker's keepalived name.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Tcp { .. } => "TCP_CHECK",
            Probe::Http(h) if h.tls => "SSL_GET",
            Probe::Http(_) => "HTTP_GET",
            Probe::Udp(_) => "UDP_CHECK",
            Probe::Dns(_) => "DNS_CHECK",
            Probe::Smtp(_) => "SMTP_CHECK",
            Probe::Ping { .. } => "PING_CHECK",
            Probe::File(_) => "FILE_CHECK",
            Probe::Misc(_) => "MISC_CHECK",
        }
    }

    /// What it probes, for listings (`198.18.2.2:80`, or the script).
    pub fn target(&self) -> String {
        match self {
            Probe::Tcp { target, .. } => target.to_string(),
            Probe::Http(h) => h.target.to_string(),
            Probe::Udp(u) => u.target.to_string(),
            Probe::Dns(d) => d.target.to_string(),
            Probe::Smtp(s) => s.target.to_string(),
            Probe::Ping { target } => target.to_string(),
            Probe::File(f) => f.path.clone(),
            Probe::Misc(m) => m.command.clone(),
        }
    }
}

/// A check: the probe and its timing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckSpec {
    /// What an attempt does.
    pub probe: Probe,
    /// Between checks.
    pub delay_loop: Duration,
    /// Bound of one attempt (not for scripts, which have their own).
    pub connect_timeout: Duration,
    /// Failed attempts retried before the checker fails.
    pub retry: u32,
    /// Between a failed attempt and its retry.
    pub delay_before_retry: Duration,
    /// The first attempt comes [`defaults::BOOTSTRAP`] plus a random part of this after start.
    pub warmup: Duration,
}

/// keepalived's defaults (keepalived/check/check_api.c and each checker's handler).
pub mod defaults {
    use std::time::Duration;
    /// `delay_loop`.
    pub const DELAY_LOOP: Duration = Duration::from_secs(60);
    /// `connect_timeout`.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// `retry` for TCP, UDP, HTTP and SSL checkers.
    pub const RETRY: u32 = 1;
    /// `retry` for DNS_CHECK.
    pub const RETRY_DNS: u32 = 3;
    /// `retry` for MISC_CHECK.
    pub const RETRY_MISC: u32 = 0;
    /// `delay_before_retry` for TCP, UDP and MISC checkers (DNS: its delay_loop).
    pub const DELAY_BEFORE_RETRY: Duration = Duration::from_secs(1);
    /// `delay_before_retry` for HTTP_GET and SSL_GET.
    pub const DELAY_BEFORE_RETRY_HTTP: Duration = Duration::from_secs(3);
    /// The first check of every checker comes this long after start, plus a random part of
    /// `warmup` (which defaults to the checker's delay_loop).
    pub const BOOTSTRAP: Duration = Duration::from_secs(1);
    /// UDP_CHECK's payload when none is given: 32 bytes of this text repeated.
    pub const UDP_PAYLOAD_TEXT: &str = "keepalived check - ";
}

fn default_udp_payload() -> Vec<u8> {
    defaults::UDP_PAYLOAD_TEXT.bytes().cycle().take(32).collect()
}

fn duration(what: &str, v: Option<f64>, default: Duration) -> Result<Duration, String> {
    match v {
        None => Ok(default),
        Some(s) if (0.0..=86_400.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(format!("{what} {s} is out of range (0 to 86400 seconds)")),
    }
}

fn endpoint(what: &str, ip: Option<&str>, port: Option<u16>, default: SocketAddr) -> Result<SocketAddr, String> {
    let ip = match ip {
        Some(s) => s.parse::<IpAddr>().map_err(|_| format!("{what} '{s}' is not an IP address"))?,
        None => default.ip(),
    };
    Ok(SocketAddr::new(ip, port.unwrap_or(default.port())))
}

/// keepalived's hexadecimal strings: whitespace separates groups, each group is read two
/// digits at a time, and a lone digit is a byte of its own.
fn hex_bytes(what: &str, s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for group in s.split_whitespace() {
        if !group.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{what} '{s}' is not hexadecimal"));
        }
        let digits = group.as_bytes();
        if digits.len() % 2 == 1 {
            out.push(u8::from_str_radix(&group[..1], 16).expect("checked"));
        }
        for i in ((digits.len() % 2)..digits.len()).step_by(2) {
            out.push(u8::from_str_radix(&group[i..i + 2], 16).expect("checked"));
        }
    }
    Ok(out)
}

/// DNS record types by name.
fn qtype(name: &str) -> Result<u16, String> {
    Ok(match name.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        other => return Err(format!("DNS type '{other}' is not one of A NS CNAME SOA PTR MX TXT AAAA SRV")),
    })
}

impl CheckSpec {
    /// Validates a configured check of the real server at `rs`.
    pub fn from_entry(e: &CheckEntry, rs: SocketAddr) -> Result<CheckSpec, String> {
        let target = endpoint("connect_ip", e.connect_ip.as_deref(), e.connect_port, rs)?;
        let bind = match &e.bindto {
            Some(b) => Some(endpoint("bindto", Some(b), Some(e.bind_port.unwrap_or(0)), rs)?),
            None if e.bind_port.is_some() => return Err("bind_port needs bindto".into()),
            None => None,
        };
        if let Some(b) = bind {
            if b.is_ipv4() != target.is_ipv4() {
                return Err(format!("bindto {} and the target {target} are of different families", b.ip()));
            }
        }
        let kind = e.kind.to_ascii_lowercase();
        let probe = match kind.as_str() {
            "tcp" | "tcp_check" => Probe::Tcp { target, bind },
            "http" | "http_get" | "ssl" | "ssl_get" | "https" => {
                let mut urls = Vec::new();
                for u in &e.url {
                    let status = match &u.status_code {
                        Some(s) => StatusSet::parse(s)?,
                        None => StatusSet::default_2xx(),
                    };
                    if let Some(d) = &u.digest {
                        if d.len() != 32 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return Err(format!("digest '{d}' is not an MD5 in hexadecimal"));
                        }
                    }
                    if !u.path.starts_with('/') {
                        return Err(format!("url path '{}' must start with /", u.path));
                    }
                    urls.push(UrlSpec {
                        path: u.path.clone(),
                        digest: u.digest.as_ref().map(|d| d.to_ascii_lowercase()),
                        status,
                    });
                }
                if urls.is_empty() {
                    return Err(format!("{} needs at least one url", e.kind));
                }
                let tls = kind.starts_with("ssl") || kind == "https";
                let sni = if e.enable_sni {
                    Some(e.virtualhost.clone().unwrap_or_else(|| target.ip().to_string()))
                } else {
                    None
                };
                Probe::Http(HttpSpec { target, bind, tls, sni, virtualhost: e.virtualhost.clone(), urls })
            }
            "udp" | "udp_check" => Probe::Udp(UdpSpec {
                target,
                bind,
                payload: match &e.payload {
                    Some(p) => hex_bytes("payload", p)?,
                    None => default_udp_payload(),
                },
                require_reply: match (&e.require_reply, e.reply.as_deref()) {
                    (Some(true), Some(r)) => Some(hex_bytes("require_reply", r)?),
                    (Some(true), None) => Some(Vec::new()),
                    _ => None,
                },
            }),
            "dns" | "dns_check" => Probe::Dns(DnsSpec {
                target: endpoint("connect_ip", e.connect_ip.as_deref(), Some(e.connect_port.unwrap_or(53)), rs)?,
                bind,
                qtype: qtype(e.dns_type.as_deref().unwrap_or("SOA"))?,
                name: e.dns_name.clone().unwrap_or_else(|| ".".into()),
                need_answer: false,
            }),
            "smtp" | "smtp_check" => Probe::Smtp(SmtpSpec {
                target,
                bind,
                helo: match &e.helo_name {
                    Some(h) if h.is_empty() || h.contains(['\r', '\n', ' ']) => {
                        return Err(format!("helo_name '{h}' must be one word"))
                    }
                    Some(h) => h.clone(),
                    None => SMTP_DEFAULT_HELO.to_string(),
                },
            }),
            "file" | "file_check" => {
                let path = e.file.clone().ok_or("a file check needs file")?;
                if !path.starts_with('/') {
                    return Err(format!("file '{path}' must be an absolute path"));
                }
                Probe::File(FileSpec { path, weight: e.weight.unwrap_or(1), reverse: e.reverse })
            }
            "ping" | "ping_check" => {
                if bind.is_some() {
                    return Err("bindto is not taken by ping checks (keepalived ignores it too)".into());
                }
                Probe::Ping { target: target.ip() }
            }
            "misc" | "misc_check" => {
                let command = e.misc_path.clone().ok_or("MISC_CHECK needs misc_path")?;
                if command.trim().is_empty() {
                    return Err("misc_path is empty".into());
                }
                let run_as = match &e.user {
                    Some(name) => Some(crate::script::RunAs::lookup(name)?),
                    None => None,
                };
                let delay_loop = duration("delay_loop", e.delay_loop, defaults::DELAY_LOOP)?;
                Probe::Misc(MiscSpec {
                    command,
                    timeout: duration("misc_timeout", e.misc_timeout, delay_loop)?,
                    dynamic: e.misc_dynamic,
                    run_as,
                })
            }
            other => {
                return Err(format!(
                "check type '{other}' is not one of tcp, http_get, ssl_get, udp, dns, smtp, ping, file, misc (TCP_CHECK, HTTP_GET, ...)"
            ))
            }
        };
        // keepalived watches a tracked file with inotify; xvs reads it every second.
        let loop_default = if matches!(probe, Probe::File(_)) { Duration::from_secs(1) } else { defaults::DELAY_LOOP };
        let delay_loop = duration("delay_loop", e.delay_loop, loop_default)?;
        if delay_loop < Duration::from_millis(100) {
            return Err("delay_loop must be at least 0.1 s".into());
        }
        let connect_timeout = duration("connect_timeout", e.connect_timeout, defaults::CONNECT_TIMEOUT)?;
        if connect_timeout.is_zero() {
            return Err("connect_timeout must be more than 0".into());
        }
        let (retry_default, dbr_default) = match &probe {
            Probe::Misc(_) | Probe::File(_) => (defaults::RETRY_MISC, defaults::DELAY_BEFORE_RETRY),
            Probe::Dns(_) => (defaults::RETRY_DNS, delay_loop),
            Probe::Http(_) => (defaults::RETRY, defaults::DELAY_BEFORE_RETRY_HTTP),
            _ => (defaults::RETRY, defaults::DELAY_BEFORE_RETRY),
        };
        let warmup =
            if matches!(probe, Probe::File(_)) { Duration::ZERO } else { duration("warmup", e.warmup, delay_loop)? };
        Ok(CheckSpec {
            probe,
            delay_loop,
            connect_timeout,
            retry: e.retry.unwrap_or(retry_default),
            delay_before_retry: duration("delay_before_retry", e.delay_before_retry, dbr_default)?,
            warmup,
        })
    }
}
