//! What an operator watches, tried as an operator would during a lab run with traffic: the
//! status page in a real browser (headless Chromium), `xvsadm top` in a real terminal (tmux,
//! 80×24) driven by keystrokes, and `xvsadm trace` following a client's packets.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// The lab: two nginx servers behind a NAT service on VIP:80 (rr), xvsd serving its metrics
/// and status page on 127.0.0.1:9642 of the director's namespace, and wrk making new
/// connections for at most `secs` seconds.
struct Lab {
    xvsd: Xvsd,
    lab: Classic,
    load: Option<Child>,
}

impl Lab {
    fn start(secs: u32) -> Lab {
        let mut lab = Classic::new(2, Mode::Nat);
        lab.start_web_servers();
        let xvsd = Xvsd::start(&lab, Path::new(env!("CARGO_BIN_EXE_xvsd")), &["--metrics", "127.0.0.1:9642"]);
        adm(&xvsd.socket, &format!("-A -t {VIP4}:80 -s rr"));
        for i in 0..2 {
            adm(&xvsd.socket, &format!("-a -t {VIP4}:80 -r {}:80 -m", rs4(i)));
        }
        assert_eq!(lab.curl(&format!("http://{VIP4}/")).map(|b| b.starts_with("rs")), Ok(true));
        // nginx closes every connection (keepalive_timeout 0): each request is a new connection.
        let load = lab
            .client
            .command("wrk")
            .args(["-t1", "-c2", &format!("-d{secs}s"), &format!("http://{VIP4}/")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wrk (scripts/setup.sh installs it)");
        Lab { xvsd, lab, load: Some(load) }
    }

    /// Waits until every real server shows a connection rate (the estimator needs a few of its
    /// 2-second ticks).
    fn wait_for_rates(&self) {
        let start = Instant::now();
        loop {
            let snap: serde_json::Value = serde_json::from_str(&adm(&self.xvsd.socket, "-Ln --json")).unwrap();
            let dests = snap["services"][0]["dests"].as_array().unwrap().clone();
            if dests.iter().all(|d| d["rates"]["cps"].as_u64().unwrap_or(0) > 0) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no rates: {snap}\n{}", self.xvsd.log_text());
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.load.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Headless Chromium in the director's namespace (where 127.0.0.1:9642 is xvsd's), with a
/// profile of its own in the lab's directory; what it printed.
fn chromium(lab: &Classic, args: &[&str]) -> String {
    let profile = lab.dir.join("chromium");
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.director.name()))
        .args(["--", "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=4000", "--window-size=1280,720"])
        .args(args)
        .env("HOME", &lab.dir)
        .stdin(Stdio::null())
        .output()
        .expect("chromium (scripts/setup.sh installs it)");
    assert!(out.status.success(), "chromium {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the cell of class `class` in the table row whose opening tag contains `row`.
fn cell(dom: &str, row: &str, class: &str) -> Option<String> {
    let at = dom.find(row)?;
    let end = dom[at..].find("</tr>")? + at;
    let tr = &dom[at..end];
    let c = tr.find(&format!("class=\"{class}\">"))? + class.len() + 9;
    Some(tr[c..].split('<').next()?.to_string())
}

#[test]
fn the_status_page_shows_servers_and_their_rates_in_a_browser() {
    if !xvs_lab::require_root() {
        return;
    }
    let lab = Lab::start(40);
    lab.wait_for_rates();
    let dom = chromium(&lab.lab, &["--dump-dom", "http://127.0.0.1:9642/"]);
    assert!(dom.contains("2 real servers"), "{dom}");
    for i in 0..2 {
        let row = format!("data-server=\"{}:80\"", rs4(i));
        let cps = cell(&dom, &row, "cps").unwrap_or_else(|| panic!("no row for {}: {dom}", rs4(i)));
        assert_ne!(cps, "0", "{}'s connection rate: {dom}", rs4(i));
        let pps = cell(&dom, &row, "inpps").unwrap();
        assert_ne!(pps, "0", "{}'s packet rate: {dom}", rs4(i));
        // Unchecked servers say so; the plot is drawn.
        assert!(dom[dom.find(&row).unwrap()..].contains("unchecked"), "{dom}");
    }
    assert!(dom.contains("<polyline"), "no rate plot: {dom}");
    assert!(dom.contains("<div id=\"error\" style=\"display: none;\">"), "the page saw an error: {dom}");
    // The screenshot is kept for a person to look at (target/tmp/status-page.png).
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&lab.lab, &[&format!("--screenshot={}", shot.display()), "http://127.0.0.1:9642/"]);
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot of {} bytes", png.len());
    // The page's document is the listing's: the same services and servers as -Ln --json.
    let page: serde_json::Value = serde_json::from_str(&http_get(&lab.lab, "/status.json")).unwrap();
    let listed: serde_json::Value = serde_json::from_str(&adm(&lab.xvsd.socket, "-Ln --json")).unwrap();
    assert_eq!(page["services"][0]["spec"], listed["services"][0]["spec"]);
    assert_eq!(page["services"][0]["dests"].as_array().unwrap().len(), 2);
}

/// A GET from the director's namespace with curl.
fn http_get(lab: &Classic, path: &str) -> String {
    let out = lab.director.exec(&["curl", "-sf", "-m", "3", &format!("http://127.0.0.1:9642{path}")]);
    assert!(out.status.success(), "GET {path}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tmux server of the test's own (its socket in the lab's directory), killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn new(lab: &Classic) -> Tmux {
        Tmux { socket: lab.dir.join("tmux.sock") }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null())
            .output()
            .expect("tmux (scripts/setup.sh installs it)")
    }

    fn screen(&self) -> String {
        self.screen_of("top")
    }

    fn screen_of(&self, session: &str) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", session]).stdout).into_owned()
    }

    /// Waits until the screen satisfies `ok`; the screen.
    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.wait_in("top", what, ok)
    }

    /// Waits until the screen of tmux session `session` satisfies `ok`; the screen.
    fn wait_in(&self, session: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen_of(session);
            if ok(&s) {
                return s;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{what}:\n{s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The `xvsadm` next to this test's `xvsd` (cargo builds it for the workspace's tests).
fn xvsadm_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_xvsd")).with_file_name("xvsadm");
    assert!(p.exists(), "{} is missing: cargo build -p xvsadm (cargo test --workspace builds it)", p.display());
    p
}

#[test]
fn top_runs_in_an_80_by_24_terminal_and_answers_keys() {
    if !xvs_lab::require_root() {
        return;
    }
    let lab = Lab::start(40);
    lab.wait_for_rates();
    let tmux = Tmux::new(&lab.lab);
    // The shell writes top's exit status when it returns.
    let status = lab.lab.dir.join("top.status");
    let cmd = format!(
        "XVS_SOCKET={} {} top; echo $? > {}",
        lab.xvsd.socket.display(),
        xvsadm_bin().display(),
        status.display()
    );
    let out = tmux.run(&["new-session", "-d", "-x", "80", "-y", "24", "-s", "top", &cmd]);
    assert!(out.status.success(), "tmux: {}", String::from_utf8_lossy(&out.stderr));
    let rs = |i: usize| format!("{}:80", rs4(i));
    // Both servers with their rates; the whole view within 80×24.
    let screen = tmux.wait("both servers with a connection rate", |s| {
        (0..2).all(|i| s.lines().any(|l| l.trim_start().starts_with(&rs(i)) && cps(l).is_some_and(|c| c != "0")))
    });
    assert!(screen.starts_with("xvs top  1 svc 2 rs  sort:name"), "{screen}");
    assert!(screen.contains("TCP  198.18.0.100:80") && screen.contains("SERVICE / SERVER"), "{screen}");
    assert!(screen.lines().count() <= 24 && screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    // Live: the clock moves.
    let clock = |s: &str| s.lines().next().unwrap().split("  ").last().unwrap().to_string();
    let first = clock(&screen);
    tmux.wait("a refresh", |s| clock(s) != first);
    // Sorted by connections, then filtered to one server.
    tmux.run(&["send-keys", "-t", "top", "c"]);
    tmux.wait("sorted by conn/s", |s| s.contains("sort:conn/s"));
    tmux.run(&["send-keys", "-t", "top", "/", &rs(1), "Enter"]);
    let screen = tmux.wait("the filter", |s| s.contains(&format!("filter:{}", rs(1))));
    assert!(screen.contains(&rs(1)) && !screen.contains(&rs(0)), "{screen}");
    tmux.run(&["send-keys", "-t", "top", "Escape"]);
    tmux.wait("the filter cleared", |s| s.contains(&rs(0)) && s.contains(&rs(1)));
    // q quits with status 0.
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let start = Instant::now();
    while !status.exists() {
        assert!(start.elapsed() < Duration::from_secs(5), "top did not quit: {}", tmux.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "0");

    // Killed (SIGTERM, as a closed SSH session's or a service manager's), it gives the
    // terminal back as `q` does: the shell after it finds the line discipline cooked again.
    let (pid, status, stty) =
        (lab.lab.dir.join("top2.pid"), lab.lab.dir.join("top2.status"), lab.lab.dir.join("top2.stty"));
    let cmd = format!(
        "sh -c 'echo $$ > {}; XVS_SOCKET={} exec {} top'; echo $? > {}; stty -a > {}",
        pid.display(),
        lab.xvsd.socket.display(),
        xvsadm_bin().display(),
        status.display(),
        stty.display()
    );
    let out = tmux.run(&["new-session", "-d", "-x", "80", "-y", "24", "-s", "top2", &cmd]);
    assert!(out.status.success(), "tmux: {}", String::from_utf8_lossy(&out.stderr));
    let screen = tmux.wait_in("top2", "the view", |s| s.starts_with("xvs top"));
    let pid: i32 = std::fs::read_to_string(&pid).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    let start = Instant::now();
    while !stty.exists() || std::fs::read_to_string(&stty).unwrap().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "top did not end on SIGTERM: {screen}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "0");
    let modes = std::fs::read_to_string(&stty).unwrap();
    assert!(modes.contains(" icanon") && modes.contains(" echo "), "raw mode left on: {modes}");
}

/// The CONN/S column of a row of `xvsadm top`.
fn cps(line: &str) -> Option<String> {
    line.split_whitespace().nth(5).map(str::to_string)
}

/// Starts `xvsadm trace ARGS` and waits until xvsd has set its filter.
fn start_trace(lab: &Lab, args: &[&str]) -> Child {
    let before = lab.xvsd.log_text().matches("trace started").count();
    let child = Command::new(xvsadm_bin())
        .arg("trace")
        .args(args)
        .env("XVS_SOCKET", &lab.xvsd.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while lab.xvsd.log_text().matches("trace started").count() == before {
        assert!(start.elapsed() < Duration::from_secs(10), "the trace did not start:\n{}", lab.xvsd.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn trace_follows_a_clients_packets_and_says_why() {
    if !xvs_lab::require_root() {
        return;
    }
    let lab = Lab::start(30);
    let url = format!("http://{VIP4}/");
    let curl_from = |port: u16| {
        let out = lab.lab.client.exec(&["curl", "-s", "-m", "3", "--local-port", &port.to_string(), &url]);
        assert!(out.status.success(), "curl: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // One request from port 21000, traced as JSON: wrk's connections from the same client
    // are not in it (its ports are ephemeral ones, 32768 and up; curl's are below).
    let trace = start_trace(&lab, &["--client", "198.18.1.100:21000", "--count", "4", "--seconds", "20", "--json"]);
    let served = curl_from(21000);
    let out = trace.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 packets traced"), "{out:?}");
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 4, "{events:#?}");
    for e in &events {
        let port = if e["connection"] == "reply" { e["dst"].as_str() } else { e["src"].as_str() };
        assert_eq!(port, Some("198.18.1.100:21000"), "only the traced client's packets: {e}");
    }
    // The SYN: a new connection, the scheduler's pick and why, the rewrite, the verdict.
    let syn = &events[0];
    assert_eq!((syn["flags"].as_str(), syn["connection"].as_str()), (Some("S"), Some("new")), "{syn}");
    assert_eq!(syn["service"], "TCP  198.18.0.100:80");
    assert_eq!(syn["scheduler"], "rr");
    let server = syn["server"].as_str().unwrap().to_string();
    assert_eq!(served, if server.starts_with(&rs4(0)) { "rs1" } else { "rs2" }, "the server that answered: {syn}");
    assert_eq!(syn["why"], format!("rr: {server} is next in turn"));
    assert_eq!(syn["rewrite"], format!("NAT to {server}"));
    assert_eq!((syn["state"].as_str(), syn["verdict"].as_str()), (Some("SYN_RECV"), Some("forwarded")));
    // The server's SYN-ACK comes back through the director as a reply; then the client's ACK
    // finds the connection.
    assert!(events.iter().any(|e| e["connection"] == "reply" && e["server"] == server.as_str()), "{events:#?}");
    assert!(events.iter().any(|e| e["connection"] == "existing" && e["state"] == "ESTABLISHED"), "{events:#?}");

    // Text, as an operator reads it.
    let trace = start_trace(&lab, &["198.18.1.100:21001", "--count", "1", "--seconds", "20"]);
    curl_from(21001);
    let out = trace.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "TCP 198.18.1.100:21001 > 198.18.0.100:80 [S] on c0: service TCP 198.18.0.100:80, new connection -> "
        ),
        "{text}"
    );
    assert!(
        text.contains(", rr: ") && text.contains(", NAT to ") && text.trim_end().ends_with("SYN_RECV, forwarded"),
        "{text}"
    );

    // One trace at a time; a refused filter says why.
    let running = start_trace(&lab, &["--client", "198.18.1.100:21002", "--seconds", "5"]);
    let second = Command::new(xvsadm_bin())
        .args(["trace", "--client", "198.18.1.100", "--seconds", "1"])
        .env("XVS_SOCKET", &lab.xvsd.socket)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another xvsadm trace is running"), "{second:?}");
    let out = running.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 packets traced"), "{out:?}");
    let fwm = Command::new(xvsadm_bin())
        .args(["trace", "-t", "198.18.0.100:80", "--client", "2001:2:0:1::100"])
        .env("XVS_SOCKET", &lab.xvsd.socket)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&fwm.stderr).contains("different address families"), "{fwm:?}");
}
