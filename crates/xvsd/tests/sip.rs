//! The sip persistence engine with real sockets: a client sends SIP requests to a persistent,
//! one-packet UDP service with `--pe sip`; echo servers answer with their name. Every request
//! of a call reaches the same server whatever client port it leaves from, another call is
//! scheduled afresh, and a datagram without a Call-ID gets no answer.

use std::path::Path;

use xvs_lab::daemon::Xvsd;
use xvs_lab::topology::{rs4, Classic, Mode, VIP4};
use xvsadm::client::Socket;
use xvsadm::run::run;

fn adm(socket: &Path, args: &str) -> String {
    let argv: Vec<String> = std::iter::once("xvsadm").chain(args.split_whitespace()).map(String::from).collect();
    let mut t = Socket::connect(socket).unwrap_or_else(|e| panic!("{e}"));
    let out = run(&argv, &mut t, &mut std::io::empty());
    assert_eq!(out.code, 0, "xvsadm {args}: {}", out.stderr);
    out.stdout
}

/// Sends one datagram from client port `port` and returns the server that answered, or None
/// after a second without an answer.
fn ask(lab: &Classic, port: u16, call: Option<&str>) -> Option<String> {
    let header = call.map(|c| format!("Call-ID: {c}\\r\\n")).unwrap_or_default();
    let code = format!(
        "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\n\
         s.bind(('0.0.0.0',{port}))\n\
         s.sendto(b'OPTIONS sip:rs@{VIP4} SIP/2.0\\r\\nVia: SIP/2.0/UDP c\\r\\n{header}CSeq: 1 OPTIONS\\r\\n\\r\\n',('{VIP4}',5060))\n\
         try:\n sys.stdout.write(s.recvfrom(2048)[0].decode().split()[0])\nexcept socket.timeout:\n pass\n"
    );
    let out = lab.client.command("python3").args(["-c", &code]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then_some(s)
}

#[test]
fn the_requests_of_a_call_reach_one_server() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Classic::new(3, Mode::Nat);
    lab.start_udp_echo(5060);
    let xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &[]);
    let s = &xvsd.socket;
    adm(s, &format!("-A -u {VIP4}:5060 -s rr -p 300 -o --pe sip"));
    for i in 0..3 {
        adm(s, &format!("-a -u {VIP4}:5060 -r {}:5060 -m", rs4(i)));
    }
    let listing = adm(s, "-Ln");
    assert!(listing.contains("pe sip"), "{listing}");
    let a = ask(&lab, 40001, Some("call-a@client")).unwrap_or_else(|| panic!("no answer\n{}", xvsd.log_text()));
    for port in [40002, 40003, 40001] {
        assert_eq!(
            ask(&lab, port, Some("call-a@client")).as_deref(),
            Some(a.as_str()),
            "port {port}: the call's server"
        );
    }
    let b = ask(&lab, 40001, Some("call-b@client")).unwrap();
    assert_ne!(a, b, "another call from the same socket is scheduled afresh");
    assert_eq!(ask(&lab, 40004, Some("call-b@client")).as_deref(), Some(b.as_str()));
    assert_eq!(ask(&lab, 40005, None), None, "no Call-ID: dropped, as the kernel drops it");
    drop(xvsd);
}
