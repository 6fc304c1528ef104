//! Each probe against small local servers on 127.0.0.1: what passes, what fails and why, and
//! that every attempt ends within its timeout whatever the server does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use xvs_api::config::{CheckEntry, UrlEntry};
use xvs_health::probe::run;
use xvs_health::CheckSpec;

fn spec(e: CheckEntry, target: SocketAddr) -> CheckSpec {
    CheckSpec::from_entry(&e, target).unwrap()
}

fn http_entry(path: &str, status: Option<&str>, digest: Option<&str>) -> CheckEntry {
    CheckEntry {
        kind: "http_get".into(),
        connect_timeout: Some(1.0),
        url: vec![UrlEntry {
            path: path.into(),
            digest: digest.map(String::from),
            status_code: status.map(String::from),
        }],
        ..CheckEntry::default()
    }
}

/// An HTTP server: `/` → 200 "hello", `/err` → 500, `/hang` → never answers.
async fn http_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                assert!(req.contains("User-Agent: KeepAliveClient"), "{req}");
                let resp = match path.as_str() {
                    "/hang" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    "/err" => "HTTP/1.0 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail".to_string(),
                    "/host" => {
                        let host = req.lines().find_map(|l| l.strip_prefix("Host: ")).unwrap_or("").to_string();
                        format!("HTTP/1.0 200 OK\r\n\r\n{host}")
                    }
                    _ => "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_string(),
                };
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn http_status_digest_and_timeouts() {
    let addr = http_server().await;
    let ok = run(&spec(http_entry("/", None, None), addr).probe, Duration::from_secs(1)).await;
    assert!(ok.ok, "{ok:?}");
    let e = run(&spec(http_entry("/err", None, None), addr).probe, Duration::from_secs(1)).await;
    assert!(!e.ok && e.reason.contains("status 500"), "{e:?}");
    let e = run(&spec(http_entry("/err", Some("500"), None), addr).probe, Duration::from_secs(1)).await;
    assert!(e.ok, "status_code 500 accepts 500: {e:?}");
    // MD5("hello") = 5d41402abc4b2a76b9719d911017c592
    let d =
        run(&spec(http_entry("/", None, Some("5d41402abc4b2a76b9719d911017c592")), addr).probe, Duration::from_secs(1))
            .await;
    assert!(d.ok, "{d:?}");
    let d =
        run(&spec(http_entry("/", None, Some("00000000000000000000000000000000")), addr).probe, Duration::from_secs(1))
            .await;
    assert!(!d.ok && d.reason.contains("digest 5d41402abc4b2a76b9719d911017c592"), "{d:?}");
    let start = Instant::now();
    let h = run(&spec(http_entry("/hang", None, None), addr).probe, Duration::from_millis(500)).await;
    assert!(!h.ok && h.reason.contains("timed out"), "{h:?}");
    assert!(start.elapsed() < Duration::from_millis(900), "the timeout was not enforced: {:?}", start.elapsed());
    // The Host header: virtualhost, else addr:port.
    let mut e = http_entry("/host", Some("200"), None);
    e.virtualhost = Some("www.example.test".into());
    assert!(run(&spec(e, addr).probe, Duration::from_secs(1)).await.ok);
}

#[tokio::test]
async fn tcp_refused_and_connect_ip() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = l.local_addr().unwrap();
    drop(l);
    let tcp = |port: Option<u16>| CheckEntry { kind: "tcp".into(), connect_port: port, ..CheckEntry::default() };
    let r = run(&spec(tcp(None), open).probe, Duration::from_secs(1)).await;
    assert!(!r.ok && r.reason == "connection refused", "{r:?}");
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live = l.local_addr().unwrap();
    // connect_port sends the probe elsewhere than the real server's port.
    let r = run(&spec(tcp(Some(live.port())), open).probe, Duration::from_secs(1)).await;
    assert!(r.ok, "{r:?}");
    // bindto sets the source address.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live = l.local_addr().unwrap();
    let e = CheckEntry { kind: "tcp".into(), bindto: Some("127.0.0.2".into()), ..CheckEntry::default() };
    let probe = spec(e, live).probe;
    let accept = tokio::spawn(async move { l.accept().await.unwrap().1 });
    let r = run(&probe, Duration::from_secs(1)).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(accept.await.unwrap().ip().to_string(), "127.0.0.2");
}

#[tokio::test]
async fn ssl_get_without_certificate_verification() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else { return };
                let mut buf = vec![0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls.write_all(b"HTTP/1.0 200 OK\r\n\r\nsecure").await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let mut e = http_entry("/", Some("200"), None);
    e.kind = "ssl_get".into();
    let r = run(&spec(e, addr).probe, Duration::from_secs(2)).await;
    assert!(r.ok, "{r:?}");
    // The plain-HTTP checker against the TLS port fails with a reason.
    let r = run(&spec(http_entry("/", None, None), addr).probe, Duration::from_secs(1)).await;
    assert!(!r.ok, "{r:?}");
}

#[tokio::test]
async fn udp_check_fails_on_port_unreachable_and_checks_replies() {
    let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let udp = |reply: Option<&str>| CheckEntry {
        kind: "udp".into(),
        payload: Some("68 65 6c 6c 6f".into()),
        require_reply: reply.map(|_| true),
        reply: reply.map(String::from),
        ..CheckEntry::default()
    };
    let r = run(&spec(udp(None), closed_addr).probe, Duration::from_millis(500)).await;
    assert!(!r.ok && r.reason == "port unreachable", "{r:?}");
    // A silent server passes without require_reply (keepalived: no ICMP error, no failure).
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let r = run(&spec(udp(None), silent.local_addr().unwrap()).probe, Duration::from_millis(300)).await;
    assert!(r.ok, "{r:?}");
    let r = run(&spec(udp(Some("68")), silent.local_addr().unwrap()).probe, Duration::from_millis(300)).await;
    assert!(!r.ok && r.reason.contains("timed out"), "require_reply needs a reply: {r:?}");
    // An echo server: the reply starts with "h" (0x68), not "x".
    let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let mut b = [0u8; 512];
        while let Ok((n, from)) = echo.recv_from(&mut b).await {
            let _ = echo.send_to(&b[..n], from).await;
        }
    });
    assert!(run(&spec(udp(Some("68 65")), echo_addr).probe, Duration::from_secs(1)).await.ok);
    let r = run(&spec(udp(Some("78")), echo_addr).probe, Duration::from_secs(1)).await;
    assert!(!r.ok && r.reason == "unexpected reply", "{r:?}");
}

/// A DNS server answering with `rcode` (and ignoring one query in `drop_first`).
async fn dns_server(rcode: hickory_proto::op::ResponseCode) -> SocketAddr {
    use hickory_proto::op::{Message, MessageType};
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut b = [0u8; 512];
        while let Ok((n, from)) = s.recv_from(&mut b).await {
            let q = Message::from_vec(&b[..n]).unwrap();
            assert_eq!(q.queries()[0].query_type(), hickory_proto::rr::RecordType::SOA);
            // A stray reply with another id first: it must be ignored.
            let mut stray = Message::new();
            stray.set_id(q.id().wrapping_add(1)).set_message_type(MessageType::Response);
            let _ = s.send_to(&stray.to_vec().unwrap(), from).await;
            let mut r = Message::new();
            r.set_id(q.id()).set_message_type(MessageType::Response).set_response_code(rcode);
            r.add_queries(q.queries().to_vec());
            let _ = s.send_to(&r.to_vec().unwrap(), from).await;
        }
    });
    addr
}

#[tokio::test]
async fn dns_check_wants_noerror_from_the_right_query() {
    use hickory_proto::op::ResponseCode;
    let dns = CheckEntry { kind: "dns".into(), dns_name: Some("example.test.".into()), ..CheckEntry::default() };
    let good = dns_server(ResponseCode::NoError).await;
    let mut e = dns.clone();
    e.connect_port = Some(good.port());
    let r = run(&spec(e, good).probe, Duration::from_secs(1)).await;
    assert!(r.ok, "{r:?}");
    let bad = dns_server(ResponseCode::ServFail).await;
    let mut e = dns;
    e.connect_port = Some(bad.port());
    let r = run(&spec(e, bad).probe, Duration::from_secs(1)).await;
    assert!(!r.ok && (r.reason.contains("SERVFAIL") || r.reason.contains("Server Failure")), "{r:?}");
}

#[tokio::test]
async fn misc_check_exit_codes_dynamic_weights_and_timeouts() {
    let misc = |cmd: &str, dynamic: bool, timeout: f64| CheckEntry {
        kind: "misc".into(),
        misc_path: Some(cmd.into()),
        misc_dynamic: dynamic,
        misc_timeout: Some(timeout),
        ..CheckEntry::default()
    };
    let rs: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let t = Duration::from_secs(5);
    let r = run(&spec(misc("exit 0", false, 5.0), rs).probe, t).await;
    assert!(r.ok && r.weight.is_none(), "{r:?}");
    let r = run(&spec(misc("exit 1", false, 5.0), rs).probe, t).await;
    assert!(!r.ok && r.reason == "script exited 1", "{r:?}");
    let r = run(&spec(misc("exit 7", false, 5.0), rs).probe, t).await;
    assert!(!r.ok, "without misc_dynamic, any non-zero exit fails: {r:?}");
    let r = run(&spec(misc("exit 7", true, 5.0), rs).probe, t).await;
    assert_eq!((r.ok, r.weight), (true, Some(5)), "misc_dynamic: weight = status - 2");
    let r = run(&spec(misc("exit 1", true, 5.0), rs).probe, t).await;
    assert!(!r.ok);
    // A script that outlives misc_timeout is stopped, with whatever it started.
    let start = Instant::now();
    let r = run(&spec(misc("sleep 30 & sleep 30", false, 0.5), rs).probe, t).await;
    assert!(!r.ok && r.reason.contains("timed out"), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(4), "{:?}", start.elapsed());
}

#[test]
fn bad_check_settings_are_named() {
    let rs: SocketAddr = "198.18.2.2:80".parse().unwrap();
    let bad = |e: CheckEntry| CheckSpec::from_entry(&e, rs).unwrap_err();
    assert!(bad(CheckEntry { kind: "bfd".into(), ..CheckEntry::default() }).contains("check type 'bfd'"));
    assert!(bad(CheckEntry { kind: "http_get".into(), ..CheckEntry::default() }).contains("needs at least one url"));
    assert!(bad(http_entry("/", Some("700"), None)).contains("bad status_code '700'"));
    assert!(bad(http_entry("/", None, Some("xyz"))).contains("not an MD5"));
    assert!(bad(CheckEntry { kind: "misc".into(), ..CheckEntry::default() }).contains("needs misc_path"));
    assert!(bad(CheckEntry { kind: "tcp".into(), connect_ip: Some("nowhere".into()), ..CheckEntry::default() })
        .contains("connect_ip 'nowhere'"));
    assert!(
        bad(CheckEntry { kind: "tcp".into(), delay_loop: Some(-1.0), ..CheckEntry::default() }).contains("delay_loop")
    );
    assert!(bad(CheckEntry { kind: "dns".into(), dns_type: Some("BOGUS".into()), ..CheckEntry::default() })
        .contains("DNS type"));
    // keepalived's defaults.
    let s = CheckSpec::from_entry(&http_entry("/", None, None), rs).unwrap();
    assert_eq!(
        (s.delay_loop.as_secs(), s.connect_timeout.as_secs(), s.retry, s.delay_before_retry.as_secs()),
        (60, 1, 1, 3)
    );
    assert_eq!(s.warmup, s.delay_loop, "warmup defaults to delay_loop");
}

/// An SMTP server that answers the banner, HELO and QUIT with the given lines, and records the
/// HELO line it got.
async fn smtp_server(banner: &'static str, helo_reply: &'static str) -> (SocketAddr, Arc<std::sync::Mutex<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let _ = c.write_all(banner.as_bytes()).await;
                let mut buf = [0u8; 512];
                let n = c.read(&mut buf).await.unwrap_or(0);
                *seen.lock().unwrap() = String::from_utf8_lossy(&buf[..n]).to_string();
                let _ = c.write_all(helo_reply.as_bytes()).await;
                let n = c.read(&mut buf).await.unwrap_or(0);
                if buf[..n].starts_with(b"QUIT") {
                    let _ = c.write_all(b"221 bye\r\n").await;
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn smtp_check_wants_220_then_250_as_keepalived() {
    let smtp = |helo: Option<&str>| CheckEntry {
        kind: "smtp_check".into(),
        helo_name: helo.map(String::from),
        ..CheckEntry::default()
    };
    let (ok, seen) = smtp_server("220 mx.example ESMTP\r\n", "250 mx.example\r\n").await;
    let r = run(&spec(smtp(None), ok).probe, Duration::from_secs(1)).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(*seen.lock().unwrap(), "HELO smtpchecker.keepalived.org\r\n", "keepalived's default HELO name");
    let r = run(&spec(smtp(Some("lb1.example")), ok).probe, Duration::from_secs(1)).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(*seen.lock().unwrap(), "HELO lb1.example\r\n");
    for (banner, helo, why) in [
        ("554 no service\r\n", "250 ok\r\n", "bad greeting banner (554)"),
        ("220 ok\r\n", "502 no\r\n", "bad HELO response (502)"),
        ("220-first line\r\n220 second\r\n", "250 ok\r\n", "bad greeting reply '220-first line'"),
    ] {
        let (addr, _) = smtp_server(banner, helo).await;
        let r = run(&spec(smtp(None), addr).probe, Duration::from_secs(1)).await;
        assert!(!r.ok && r.reason == why, "{banner:?}: {r:?}");
    }
    // Silence is bounded by the timeout.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute = l.local_addr().unwrap();
    let _keep = tokio::spawn(async move {
        let _c = l.accept().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let t = Instant::now();
    let r = run(&spec(smtp(None), mute).probe, Duration::from_millis(300)).await;
    assert!(!r.ok && r.reason.starts_with("timed out"), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let bad = CheckEntry { helo_name: Some("two words".into()), ..smtp(None) };
    assert!(CheckSpec::from_entry(&bad, ok).unwrap_err().contains("one word"));
}

#[test]
fn ping_check_needs_an_echo_reply() {
    if !xvs_lab::privileged() {
        return;
    }
    // In a namespace of its own: loopback answers, then is told not to.
    let ns = xvs_lab::Netns::new(&format!("{}ping", xvs_lab::unique_prefix()));
    let _in = ns.enter();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ping = CheckEntry { kind: "ping_check".into(), ..CheckEntry::default() };
    let targets: [SocketAddr; 2] = ["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    for target in targets {
        let r = rt.block_on(run(&spec(ping.clone(), target).probe, Duration::from_millis(500)));
        assert!(r.ok && r.reason == "echo reply", "{target}: {r:?}");
    }
    ns.sysctl("net.ipv4.icmp_echo_ignore_all", "1");
    ns.sysctl("net.ipv6.icmp.echo_ignore_all", "1");
    for target in targets {
        let t = Instant::now();
        let r = rt.block_on(run(&spec(ping.clone(), target).probe, Duration::from_millis(500)));
        assert!(!r.ok && r.reason.starts_with("no echo reply"), "{target}: {r:?}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn file_check_reads_a_number_as_keepalived_track_file() {
    let dir = std::env::temp_dir().join(format!("xvs-file-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state");
    let check = |weight: i32, reverse: bool| {
        let e = CheckEntry {
            kind: "file".into(),
            file: Some(path.to_string_lossy().to_string()),
            weight: Some(weight),
            reverse,
            ..CheckEntry::default()
        };
        spec(e, "198.18.2.2:80".parse().unwrap())
    };
    let rs = |c: &CheckSpec| (c.delay_loop, c.warmup, c.retry);
    assert_eq!(rs(&check(1, false)), (Duration::from_secs(1), Duration::ZERO, 0), "read every second, no retries");
    let got = |c: CheckSpec| async move {
        let o = run(&c.probe, Duration::from_secs(1)).await;
        (o.ok, o.weight)
    };
    // No file reads as 0: up, nothing added.
    assert_eq!(got(check(0, false)).await, (true, None));
    assert_eq!(got(check(2, false)).await, (true, Some(0)));
    for (text, weight, reverse, want) in [
        ("0\n", 0, false, (true, None)),
        ("1\n", 0, false, (false, None)),
        ("1\n", 0, true, (true, None)),
        ("0\n", 0, true, (false, None)),
        ("  5 servers\n", 3, false, (true, Some(15))),
        ("0x10", 1, false, (true, Some(16))),
        ("010", 1, false, (true, Some(8))),
        ("4", 2, true, (true, Some(-8))),
        ("-2147483648", 1, false, (false, None)),
        ("ready", 1, false, (true, Some(0))),
    ] {
        std::fs::write(&path, text).unwrap();
        assert_eq!(got(check(weight, reverse)).await, want, "{text:?} weight {weight} reverse {reverse}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
