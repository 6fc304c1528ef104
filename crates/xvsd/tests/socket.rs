//! The control socket as a client meets it, without a dataplane: created 0600 with no window,
//! a request over the size limit refused (and the daemon still answering others), and
//! xvsadm's wait bounded with a message saying what it waited for.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use xvsadm::client::{Socket, Transport};
use xvsd::control::Control;

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("xvs-socket-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_socket_is_private_and_oversized_requests_are_refused() {
    let d = dir("limit");
    let path = d.join("xvsd.sock");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let control = Arc::new(tokio::sync::Mutex::new(Control::new(None)));
    let listener = rt.block_on(async { xvsd::server::bind(&path) }).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "no private directory left behind");
    rt.spawn(xvsd::server::serve(listener, control));

    // One line beyond the limit: refused with E2BIG, the connection closed.
    let mut s = UnixStream::connect(&path).unwrap();
    let big = vec![b' '; xvsd::server::MAX_REQUEST + 10];
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = s.write_all(&big);
        })
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = String::new();
    BufReader::new(&mut s).read_line(&mut answer).unwrap();
    assert!(answer.contains("E2BIG") && answer.contains("256 MiB"), "{answer}");
    drop(s);
    let _ = writer.join();
    // Others are still served.
    let mut t = Socket::connect(&path).unwrap();
    let r = t.call(&xvs_api::Request::Snapshot { conns: false }).unwrap();
    assert!(matches!(r, xvs_api::Response::Snapshot(_)), "{r:?}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn xvsadm_says_what_it_waited_for() {
    let d = dir("wait");
    let path = d.join("silent.sock");
    // A peer that accepts and never answers.
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let hold = std::thread::spawn(move || {
        let (c, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        drop(c);
    });
    let mut t = Socket::connect_waiting(&path, Duration::from_secs(1)).unwrap();
    let e = t.call(&xvs_api::Request::Snapshot { conns: false }).unwrap_err();
    assert!(e.contains("did not answer within 1 s") && e.contains("snapshot"), "{e}");
    hold.join().unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_connection_listing_does_not_hold_up_other_clients() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    use xvs_abi as abi;
    let pins = xvs_lab::PinDir::new(&format!("{}lc", xvs_lab::unique_prefix()));
    let mut o = xvs_dataplane::LoadOptions::small(xvs_abi::pin_dir(pins.path()));
    o.max_conns = 1 << 20;
    let mut dp = xvs_dataplane::Director::load(o).unwrap();
    // 300,000 connections: a listing walks them all.
    for i in 0..300_000u32 {
        let k = abi::Conn4Key { caddr: i, vaddr: 1, cport: 1, vport: 80, proto: 6, pad: [0; 3] };
        dp.maps.conn4.insert(k, abi::Conn::default(), 0).unwrap();
    }
    let (during, listed) = changes_during_a_listing(Control::adopt(dp, xvsd::now()).unwrap(), "lc", true, 100);
    eprintln!("{during} changes went through while {listed} connections were listed");
    assert!(during > 0, "no change went through while the connections were listed");
}

#[test]
fn a_listing_of_many_services_does_not_hold_up_changes() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let pins = xvs_lab::PinDir::new(&format!("{}ln", xvs_lab::unique_prefix()));
    let mut o = xvs_dataplane::LoadOptions::small(xvs_abi::pin_dir(pins.path()));
    o.max_services = 131_072;
    o.max_dests = 262_144;
    let mut c = Control::adopt(xvs_dataplane::Director::load(o).unwrap(), xvsd::now()).unwrap();
    // 100,000 services with a real server each, in the dataplane.
    let mut text = String::new();
    for i in 0..100_000u32 {
        text += &format!(
            "[[service]]\naddress = \"198.18.{}.{}:{}\"\nscheduler = \"rr\"\n[[service.real_server]]\naddress = \"198.19.0.1\"\nmethod = \"masq\"\n",
            (i / 250) % 250,
            i % 250 + 1,
            80 + i / 62_500
        );
    }
    let config = xvs_api::config::Config::parse(&text).unwrap();
    let r = c.handle(xvs_api::Request::Apply { config, dry_run: false }, xvsd::now());
    assert!(matches!(r, xvs_api::Response::Applied { .. }), "{r:?}");
    let (during, listed) = changes_during_a_listing(c, "ln", false, 200);
    eprintln!("{during} changes went through while {listed} services were listed");
    assert!(during > 0, "no change went through while the services were listed");
}

/// Serves `control` on a socket, sends one listing (`conns` or not) and, while it runs, `n`
/// `-A` changes from another client. Returns how many changes finished before the listing
/// did, and what the listing counted (connections or services).
fn changes_during_a_listing(control: Control, name: &str, conns: bool, n: u16) -> (usize, usize) {
    let control = Arc::new(tokio::sync::Mutex::new(control));
    let d = dir(name);
    let path = d.join("xvsd.sock");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(async { xvsd::server::bind(&path) }).unwrap();
    rt.spawn(xvsd::server::serve(listener, control));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lister = {
        let (path, done) = (path.clone(), done.clone());
        std::thread::spawn(move || {
            let mut t = Socket::connect(&path).unwrap();
            let r = t.call(&xvs_api::Request::Snapshot { conns }).unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            match r {
                xvs_api::Response::Snapshot(s) if conns => s.conns.len(),
                xvs_api::Response::Snapshot(s) => s.services.len(),
                other => panic!("{other:?}"),
            }
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let mut t = Socket::connect(&path).unwrap();
    let mut during = 0;
    for port in 1000..1000 + n {
        let argv: Vec<String> =
            ["xvsadm", "-A", "-t", &format!("198.18.250.1:{port}"), "-s", "rr"].iter().map(|s| s.to_string()).collect();
        let out = xvsadm::run::run(&argv, &mut t, &mut std::io::empty());
        assert_eq!(out.code, 0, "{}", out.stderr);
        if !done.load(std::sync::atomic::Ordering::SeqCst) {
            during += 1;
        }
    }
    let listed = lister.join().unwrap();
    let _ = std::fs::remove_dir_all(&d);
    (during, listed)
}
