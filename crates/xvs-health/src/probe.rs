//! The probes: one attempt of one check against one real server, always bounded by its timeout.
//! Each returns an [`Outcome`] with a short reason an operator can act on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use crate::spec::{DnsSpec, FileSpec, HttpSpec, MiscSpec, Probe, SmtpSpec, UdpSpec};

/// The result of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The check passed.
    pub ok: bool,
    /// With `misc_dynamic`: the weight the script asked for.
    pub weight: Option<i32>,
    /// Why, in a few words (`connection refused`, `status 500`, `timed out after 1s`).
    pub reason: String,
}

impl Outcome {
    fn pass(reason: impl Into<String>) -> Outcome {
        Outcome { ok: true, weight: None, reason: reason.into() }
    }

    fn fail(reason: impl Into<String>) -> Outcome {
        Outcome { ok: false, weight: None, reason: reason.into() }
    }
}

/// The most of a response body read for a digest; keepalived reads what comes, but a checker
/// must not buffer without bound.
const MAX_BODY: usize = 1 << 20;

/// Runs one attempt. Every probe but a script's is bounded by `timeout` as a whole; a script
/// by its own `misc_timeout`, after which it is killed.
pub async fn run(probe: &Probe, timeout: Duration) -> Outcome {
    if let Probe::Misc(m) = probe {
        return misc(m).await;
    }
    if let Probe::Ping { target } = probe {
        // Bounded by its own deadline (a blocking socket on a thread of the blocking pool).
        let t = *target;
        return match tokio::task::spawn_blocking(move || ping(t, timeout)).await {
            Ok(Ok(o)) => o,
            Ok(Err(reason)) => Outcome::fail(reason),
            Err(e) => Outcome::fail(e.to_string()),
        };
    }
    let attempt = async {
        match probe {
            Probe::Tcp { target, bind } => connect(*target, *bind).await.map(|_| Outcome::pass("connected")),
            Probe::Http(h) => http(h).await,
            Probe::Udp(u) => udp(u, timeout).await,
            Probe::Dns(d) => dns(d).await,
            Probe::Smtp(s) => smtp(s).await,
            Probe::File(f) => Ok(file(f).await),
            Probe::Misc(_) | Probe::Ping { .. } => unreachable!("handled above"),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(o)) => o,
        Ok(Err(reason)) => Outcome::fail(reason),
        Err(_) => Outcome::fail(format!("timed out after {}", secs(timeout))),
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s}s")
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        std::io::ErrorKind::UnexpectedEof => "connection closed early".into(),
        _ => match e.raw_os_error() {
            Some(113) => "host unreachable".into(),    // EHOSTUNREACH
            Some(101) => "network unreachable".into(), // ENETUNREACH
            _ => e.to_string(),
        },
    }
}

async fn connect(target: SocketAddr, bind: Option<SocketAddr>) -> Result<TcpStream, String> {
    let sock = if target.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(|e| e.to_string())?;
    if let Some(b) = bind {
        sock.bind(b).map_err(|e| format!("bind to {b}: {e}"))?;
    }
    sock.connect(target).await.map_err(|e| io_reason(&e))
}

async fn http(h: &HttpSpec) -> Result<Outcome, String> {
    // Every URL must pass; the first failure is the reason.
    let mut last = Outcome::pass("no url");
    for url in &h.urls {
        let stream = connect(h.target, h.bind).await?;
        let request = format!(
            "GET {} HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: {}\r\nConnection: close\r\n\r\n",
            url.path,
            h.host_header()
        );
        let (status, body) = if h.tls {
            let tls = tls_connector();
            let name = rustls_name(h.sni.as_deref().unwrap_or(&h.target.ip().to_string()))?;
            let s = tls.connect(name, stream).await.map_err(|e| format!("TLS handshake: {e}"))?;
            exchange(s, &request).await?
        } else {
            exchange(stream, &request).await?
        };
        if !url.status.contains(status) {
            return Ok(Outcome::fail(format!("{} answered status {status}", url.path)));
        }
        if let Some(want) = &url.digest {
            let got = hex(&Md5::digest(&body));
            if &got != want {
                return Ok(Outcome::fail(format!("{} digest {got}, expected {want}", url.path)));
            }
        }
        last = Outcome::pass(format!("{} answered status {status}", url.path));
    }
    Ok(last)
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &str) -> Result<(u16, Vec<u8>), String> {
    s.write_all(request.as_bytes()).await.map_err(|e| io_reason(&e))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify still sent a whole response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => 0,
            Err(e) => return Err(io_reason(&e)),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_BODY {
            break;
        }
    }
    if buf.is_empty() {
        return Err("connection closed without a response".into());
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&buf) {
        Ok(httparse::Status::Complete(off)) => {
            let status = resp.code.ok_or("no status code")?;
            Ok((status, buf[off..].to_vec()))
        }
        Ok(httparse::Status::Partial) => Err("incomplete HTTP response".into()),
        Err(e) => Err(format!("not an HTTP response ({e})")),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// keepalived does not verify the server's certificate (it checks that the service answers,
/// not who it is), so neither does this.
#[derive(Debug)]
struct AnyCert(Arc<tokio_rustls::rustls::crypto::CryptoProvider>);

impl tokio_rustls::rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        _: &[tokio_rustls::rustls::pki_types::CertificateDer<'_>],
        _: &tokio_rustls::rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: tokio_rustls::rustls::pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<tokio_rustls::rustls::client::danger::HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<tokio_rustls::rustls::client::danger::HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    use std::sync::OnceLock;
    static CONNECTOR: OnceLock<tokio_rustls::TlsConnector> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        })
        .clone()
}

fn rustls_name(name: &str) -> Result<tokio_rustls::rustls::pki_types::ServerName<'static>, String> {
    tokio_rustls::rustls::pki_types::ServerName::try_from(name.to_string()).map_err(|e| format!("TLS name {name}: {e}"))
}

async fn udp_socket(target: SocketAddr, bind: Option<SocketAddr>) -> Result<UdpSocket, String> {
    let local: SocketAddr = match bind {
        Some(b) => b,
        None if target.is_ipv4() => "0.0.0.0:0".parse().expect("literal"),
        None => "[::]:0".parse().expect("literal"),
    };
    let s = UdpSocket::bind(local).await.map_err(|e| format!("bind to {local}: {e}"))?;
    // Connected, so an ICMP port unreachable comes back as ECONNREFUSED.
    s.connect(target).await.map_err(|e| io_reason(&e))?;
    Ok(s)
}

async fn udp(u: &UdpSpec, timeout: Duration) -> Result<Outcome, String> {
    let s = udp_socket(u.target, u.bind).await?;
    s.send(&u.payload).await.map_err(|e| io_reason(&e))?;
    let mut buf = vec![0u8; 65536];
    match &u.require_reply {
        // No reply needed: the check fails only on an ICMP error within the timeout.
        None => match tokio::time::timeout(timeout.mul_f64(0.9), s.recv(&mut buf)).await {
            Ok(Err(e)) => Err(match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "port unreachable".into(),
                _ => io_reason(&e),
            }),
            Ok(Ok(_)) | Err(_) => Ok(Outcome::pass("no ICMP error")),
        },
        Some(want) => {
            let n = s.recv(&mut buf).await.map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "port unreachable".to_string(),
                _ => io_reason(&e),
            })?;
            if buf[..n].starts_with(want) {
                Ok(Outcome::pass("expected reply"))
            } else {
                Ok(Outcome::fail("unexpected reply"))
            }
        }
    }
}

async fn dns(d: &DnsSpec) -> Result<Outcome, String> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    let s = udp_socket(d.target, d.bind).await?;
    let name = Name::from_ascii(&d.name).map_err(|e| format!("name {}: {e}", d.name))?;
    let id: u16 = (std::process::id() as u16) ^ (d.target.port().rotate_left(7));
    let mut m = Message::new();
    m.set_id(id).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
    m.add_query(Query::query(name, RecordType::from(d.qtype)));
    let bytes = m.to_vec().map_err(|e| e.to_string())?;
    s.send(&bytes).await.map_err(|e| io_reason(&e))?;
    let mut buf = vec![0u8; 65536];
    loop {
        let n = s.recv(&mut buf).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "port unreachable".to_string(),
            _ => io_reason(&e),
        })?;
        let Ok(r) = Message::from_vec(&buf[..n]) else { continue };
        if r.id() != id || r.message_type() != MessageType::Response {
            continue; // not ours: keep waiting until the timeout
        }
        if r.response_code() != ResponseCode::NoError {
            return Ok(Outcome::fail(format!("answered {}", r.response_code())));
        }
        if d.need_answer && r.answer_count() == 0 {
            return Ok(Outcome::fail("no answer records"));
        }
        return Ok(Outcome::pass(format!("{} answer(s)", r.answer_count())));
    }
}

/// Runs the script through `sh -c` (keepalived splits the line itself; the shell accepts the
/// same lines). Exit 0 passes, 1 fails; with `misc_dynamic`, 2..=255 pass with weight
/// `code - 2` (see crate::spec::MiscSpec).
/// One reply line of an SMTP server: its code. As keepalived's checker: one line of at most 511
/// bytes, a three-digit code then a space (or the line's end); a continuation (`220-`) is a
/// failure, not read on.
async fn smtp_code<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, step: &str) -> Result<u16, String> {
    use tokio::io::AsyncBufReadExt;
    let mut line = Vec::new();
    let n = r.take(511).read_until(b'\n', &mut line).await.map_err(|e| io_reason(&e))?;
    if n == 0 {
        return Err(format!("connection closed before the {step} reply"));
    }
    if line.last() != Some(&b'\n') {
        return Err(format!("{step} reply longer than 511 bytes"));
    }
    let text = String::from_utf8_lossy(&line);
    let text = text.trim_end_matches(['\r', '\n']);
    let code =
        text.get(..3).and_then(|c| c.parse::<u16>().ok()).filter(|_| text.as_bytes().get(3).is_none_or(|b| *b == b' '));
    code.ok_or_else(|| format!("bad {step} reply '{}'", text.chars().take(40).collect::<String>()))
}

/// SMTP_CHECK: banner 220, `HELO name` answered 250, `QUIT` answered (any line).
async fn smtp(s: &SmtpSpec) -> Result<Outcome, String> {
    let stream = connect(s.target, s.bind).await?;
    let (r, mut w) = stream.into_split();
    let mut r = tokio::io::BufReader::new(r);
    let banner = smtp_code(&mut r, "greeting").await?;
    if banner != 220 {
        return Ok(Outcome::fail(format!("bad greeting banner ({banner})")));
    }
    w.write_all(format!("HELO {}\r\n", s.helo).as_bytes()).await.map_err(|e| io_reason(&e))?;
    let helo = smtp_code(&mut r, "HELO").await?;
    if helo != 250 {
        return Ok(Outcome::fail(format!("bad HELO response ({helo})")));
    }
    w.write_all(b"QUIT\r\n").await.map_err(|e| io_reason(&e))?;
    // keepalived takes any line as the end of the dialogue.
    let mut line = Vec::new();
    let n = tokio::io::AsyncBufReadExt::read_until(&mut (&mut r).take(511), b'\n', &mut line)
        .await
        .map_err(|e| io_reason(&e))?;
    if n == 0 || line.last() != Some(&b'\n') {
        return Err("no reply to QUIT".into());
    }
    Ok(Outcome::pass("SMTP 220, HELO 250"))
}

/// FILE_CHECK, as keepalived's track_file reads the file: at most 127 bytes, a number as
/// strtol reads it with base 0 after leading space (trailing text ignored, no number or no
/// file: 0).
async fn file(f: &FileSpec) -> Outcome {
    let bytes = match tokio::fs::read(&f.path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Outcome::fail(format!("{}: {e}", f.path)),
    };
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(127)]).to_string();
    let Some(value) = strtol(text.trim_start()) else {
        return Outcome::fail(format!("{}: the number is out of range", f.path));
    };
    if f.weight == 0 {
        let bad = (value != 0) != f.reverse;
        return if bad {
            Outcome::fail(format!("{} holds {value}", f.path))
        } else {
            Outcome::pass(format!("{} holds {value}", f.path))
        };
    }
    let status = (i128::from(value) * i128::from(f.weight) * if f.reverse { -1 } else { 1 })
        .clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32;
    if status == i32::MIN {
        return Outcome::fail(format!("{} holds {value}", f.path));
    }
    Outcome { ok: true, weight: Some(status), reason: format!("{} holds {value}: weight {status:+}", f.path) }
}

/// The leading integer of `s` as C's strtol with base 0 reads it (decimal, `0x` hexadecimal,
/// `0` octal; none: 0); `None` when it is out of keepalived's range.
fn strtol(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (radix, digits) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, h)
    } else if s.starts_with('0') {
        (8, s)
    } else {
        (10, s)
    };
    let end = digits.find(|c: char| !c.is_digit(radix)).unwrap_or(digits.len());
    if end == 0 {
        return Some(0);
    }
    let v = i64::from_str_radix(&digits[..end], radix).ok()?;
    let v = if neg { -v } else { v };
    (i64::from(i32::MIN)..=i64::from(i32::MAX) + 1).contains(&v).then_some(v)
}

/// Echo requests' sequence numbers, shared by every ping check (as keepalived's).
static PING_SEQ: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);

/// PING_CHECK: one ICMP or ICMPv6 echo with keepalived's 128-byte payload, answered within
/// `timeout` by an echo reply from `target` with our identifier and sequence. A raw socket
/// (xvsd runs as root): keepalived's ping socket needs `ping_group_range` rewritten.
fn ping(target: std::net::IpAddr, timeout: Duration) -> Result<Outcome, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let v4 = target.is_ipv4();
    let (domain, proto) = if v4 { (Domain::IPV4, Protocol::ICMPV4) } else { (Domain::IPV6, Protocol::ICMPV6) };
    let sock = Socket::new(domain, Type::RAW, Some(proto)).map_err(|e| format!("ICMP socket: {e}"))?;
    let id = (std::process::id() as u16) ^ 0x5856;
    let seq = PING_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut msg = vec![if v4 { 8 } else { 128 }, 0, 0, 0];
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend(b"keepalived check - ".iter().cycle().take(128));
    if v4 {
        // ICMPv6's checksum is the kernel's (it has the pseudo-header); ICMP's is ours.
        let mut sum: u32 = msg.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        msg[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
    // A datagram socket's calls are a raw socket's too (recvfrom gives the sender).
    let sock = std::net::UdpSocket::from(sock);
    sock.send_to(&msg, SocketAddr::new(target, 0)).map_err(|e| io_reason(&e))?;
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(Outcome::fail(format!("no echo reply within {}", secs(timeout))));
        }
        sock.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => return Err(io_reason(&e)),
        };
        let got = &buf[..n];
        if from.ip() != target {
            continue;
        }
        // An IPv4 raw socket hands over the IP header too.
        let icmp =
            if v4 { got.get(usize::from(got.first().copied().unwrap_or(0) & 0x0f) * 4..).unwrap_or(&[]) } else { got };
        let reply = if v4 { 0 } else { 129 };
        if icmp.len() >= 8 && icmp[0] == reply && icmp[4..6] == id.to_be_bytes() && icmp[6..8] == seq.to_be_bytes() {
            return Ok(Outcome::pass("echo reply"));
        }
    }
}

async fn misc(m: &MiscSpec) -> Outcome {
    let run_as = m.run_as.clone().unwrap_or_else(crate::script::RunAs::root);
    let ran = match crate::script::run(&m.command, &run_as, m.timeout).await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(e),
    };
    // What the script said last, so that a failing check can be understood from the listing.
    let said = ran.output.lines().last().map(|l| format!(": {l}")).unwrap_or_default();
    if ran.timed_out {
        return Outcome::fail(format!("script timed out after {}", secs(m.timeout)));
    }
    match ran.code {
        Some(0) => Outcome::pass(format!("script exited 0{said}")),
        Some(code @ 2..=255) if m.dynamic => {
            Outcome { ok: true, weight: Some(code - 2), reason: format!("script exited {code}: weight {}", code - 2) }
        }
        Some(code) => Outcome::fail(format!("script exited {code}{said}")),
        None => Outcome::fail(format!("script killed by a signal{said}")),
    }
}
