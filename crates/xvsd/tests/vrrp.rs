//! VRRP against keepalived, as an operator pairs them: xvsd and Debian's keepalived on one
//! Ethernet segment (a bridge), a client on the same segment that pings the VIP.
//!
//! Who is master is read the way an operator sees it: the VIP on the director's interface,
//! the client's ARP entry for the VIP pointing at the master's MAC, and `xvsadm` / keepalived's
//! notify script saying MASTER or BACKUP. Both versions (2 with a password, 3 with a
//! sub-second interval), preemption both ways, a graceful stop (priority 0) and a kill.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use xvs_lab::daemon::Xvsd;
use xvs_lab::{sh, veth, Netns};
use xvsadm::client::{Socket, Transport};

const VIP: &str = "198.18.5.100";
const VIP6: &str = "2001:2:5::100";
const A: &str = "198.18.5.1"; // xvsd
const B: &str = "198.18.5.2"; // keepalived
const CLIENT: &str = "198.18.5.10";

struct Lab {
    dir: PathBuf,
    prefix: String,
    a: Netns,
    b: Netns,
    client: Netns,
    _sw: Netns,
    xvsd: Option<Xvsd>,
    keepalived: Option<Child>,
}

impl Lab {
    fn new() -> Lab {
        let prefix = xvs_lab::unique_prefix();
        let dir = std::env::temp_dir().join(format!("{prefix}-vrrp"));
        std::fs::create_dir_all(&dir).unwrap();
        let sw = Netns::new(&format!("{prefix}sw"));
        sw.ip(&["link", "add", "br0", "type", "bridge"]);
        sw.ip(&["link", "set", "br0", "up"]);
        let mk = |n: &str, addr: &str| {
            let ns = Netns::new(&format!("{prefix}{n}"));
            // Link-local addresses usable at once (VRRP over IPv6 is sent from them).
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0");
            veth(&ns, "e0", &sw, &format!("p{n}"));
            sw.ip(&["link", "set", &format!("p{n}"), "master", "br0"]);
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "e0"]);
            let last = addr.rsplit('.').next().unwrap();
            ns.ip(&["addr", "add", &format!("2001:2:5::{last}/64"), "dev", "e0", "nodad"]);
            ns
        };
        let a = mk("a", A);
        let b = mk("b", B);
        let client = mk("c", CLIENT);
        Lab { dir, prefix, a, b, client, _sw: sw, xvsd: None, keepalived: None }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("xvsd.sock")
    }

    /// Starts xvsd in `a` with a TOML configuration.
    fn start_xvsd(&mut self, toml: &str) {
        let conf = self.dir.join("xvs.toml");
        std::fs::write(&conf, toml).unwrap();
        let conf = conf.to_string_lossy().to_string();
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_xvsd"));
        let x = Xvsd::start_in(self.a.name(), &self.dir, "xvsd", bin, &["--metrics", "off", "--config", &conf]);
        self.xvsd = Some(x);
    }

    /// SIGTERM (a clean stop: priority 0) or SIGKILL (a crash: silence).
    fn stop_xvsd(&mut self, kill: bool) {
        if let Some(mut x) = self.xvsd.take() {
            if kill {
                x.kill();
                // A dead director holds no address: what a crash of the host leaves.
                let _ = xvs_lab::try_sh(&["ip", "-n", self.a.name(), "addr", "del", &format!("{VIP}/32"), "dev", "e0"]);
                let _ =
                    xvs_lab::try_sh(&["ip", "-n", self.a.name(), "addr", "del", &format!("{VIP6}/128"), "dev", "e0"]);
            } else {
                x.terminate();
            }
        }
    }

    /// Starts keepalived (VRRP only) in `b`; its notify script writes its state to a file.
    fn start_keepalived(&mut self, instance_body: &str) {
        let state = self.dir.join("ka.state");
        let notify = self.dir.join("ka-notify.sh");
        std::fs::write(&notify, format!("#!/bin/sh\necho \"$3\" > {}\n", state.display())).unwrap();
        sh(&["chmod", "755", &notify.to_string_lossy()]);
        let conf = self.dir.join("keepalived.conf");
        std::fs::write(
            &conf,
            format!(
                "global_defs {{\n  script_user root\n}}\nvrrp_instance VI_1 {{\n  interface e0\n  virtual_router_id 51\n  \
                 virtual_ipaddress {{\n    {}\n  }}\n  notify {}\n{instance_body}\n}}\n",
                if instance_body.contains("# v6") { VIP6 } else { VIP },
                notify.display()
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("keepalived.log")).unwrap();
        let p = |n: &str| self.dir.join(n).to_string_lossy().to_string();
        // A killed keepalived's child can stay a zombie here (nothing reaps it), and
        // keepalived takes a pid file naming one for a running daemon.
        for f in ["ka.pid", "ka-vrrp.pid", "ka-chk.pid"] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        let child = self
            .b
            .command("keepalived")
            .args(["-n", "-l", "-D", "--vrrp", "-f"])
            .arg(&conf)
            .args(["-p", &p("ka.pid"), "-r", &p("ka-vrrp.pid"), "-c", &p("ka-chk.pid")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("keepalived (apt install keepalived)");
        self.keepalived = Some(child);
    }

    fn stop_keepalived(&mut self, kill: bool) {
        if let Some(mut c) = self.keepalived.take() {
            let sig = if kill { "-KILL" } else { "-TERM" };
            // keepalived forks a VRRP child: signal the whole namespace's keepalived processes.
            let pids = sh(&["ip", "netns", "pids", self.b.name()]);
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = xvs_lab::try_sh(&["kill", sig, pid]);
            }
            let _ = c.wait();
            if kill {
                let _ = xvs_lab::try_sh(&["ip", "-n", self.b.name(), "addr", "del", &format!("{VIP}/32"), "dev", "e0"]);
                let _ =
                    xvs_lab::try_sh(&["ip", "-n", self.b.name(), "addr", "del", &format!("{VIP6}/128"), "dev", "e0"]);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while !String::from_utf8_lossy(&sh(&["ip", "netns", "pids", self.b.name()]).stdout).trim().is_empty() {
                assert!(Instant::now() < deadline, "keepalived did not stop");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn has_vip(&self, ns: &Netns) -> bool {
        let shown = String::from_utf8_lossy(&ns.ip(&["addr", "show", "dev", "e0"]).stdout).to_string();
        shown.contains(&format!("{VIP}/")) || shown.contains(&format!("{VIP6}/"))
    }

    fn xvs_state(&self) -> Option<xvs_api::vrrp::VrrpStatus> {
        let mut s = Socket::connect(&self.socket()).ok()?;
        match s.call(&xvs_api::Request::Snapshot { conns: false }).ok()? {
            xvs_api::Response::Snapshot(s) => s.vrrp.into_iter().next(),
            _ => None,
        }
    }

    fn ka_state(&self) -> String {
        std::fs::read_to_string(self.dir.join("ka.state")).unwrap_or_default().trim().to_string()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Waits until `what` holds, at most `secs`; returns how long it took.
    fn wait(&self, secs: f64, what: &str, f: impl Fn(&Lab) -> bool) -> Duration {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < Duration::from_secs_f64(secs),
                "{what} not within {secs} s\n--- xvsd ---\n{}\n--- keepalived ---\n{}",
                self.log("xvsd.log"),
                self.log("keepalived.log")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }

    /// xvsd master, keepalived backup, and the client reaching the VIP at xvsd's MAC.
    fn xvs_is_master(&self) -> bool {
        self.has_vip(&self.a)
            && !self.has_vip(&self.b)
            && self.xvs_state().is_some_and(|s| s.state == "MASTER")
            && (self.keepalived.is_none() || self.ka_state() == "BACKUP")
    }

    fn ka_is_master(&self) -> bool {
        self.has_vip(&self.b)
            && !self.has_vip(&self.a)
            && self.ka_state() == "MASTER"
            && (self.xvsd.is_none() || self.xvs_state().is_some_and(|s| s.state == "BACKUP"))
    }

    /// The client reaches the VIP, and its ARP entry is `owner`'s MAC.
    fn client_reaches(&self, owner: &Netns) {
        self.client_reaches_vip(owner, VIP)
    }

    /// The client reaches `vip`, and its neighbour entry is `owner`'s MAC.
    fn client_reaches_vip(&self, owner: &Netns, vip: &str) {
        let mac = owner.mac("e0");
        let want: String = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        let start = Instant::now();
        loop {
            let ok = xvs_lab::try_sh(&["ip", "netns", "exec", self.client.name(), "ping", "-c1", "-W1", vip]);
            let neigh = String::from_utf8_lossy(&self.client.ip(&["neigh", "show", vip]).stdout).to_string();
            if ok && neigh.contains(&want) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "client: ping {ok}, neighbour '{neigh}', want {want}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_xvsd(true);
        self.stop_keepalived(true);
        xvs_lab::cleanup_prefix(&self.prefix);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn xvs_conf(body: &str) -> String {
    format!(
        "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"e0\"\nvirtual_router_id = 51\n\
         virtual_ipaddress = [\"{VIP}\"]\n{body}\n"
    )
}

#[test]
fn version_2_with_a_password_elects_both_ways_and_fails_over() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Lab::new();
    // keepalived alone becomes master.
    lab.start_keepalived("  state BACKUP\n  priority 100\n  advert_int 1\n  authentication {\n    auth_type PASS\n    auth_pass s3cret\n  }");
    lab.wait(10.0, "keepalived alone becomes master", |l| l.has_vip(&l.b) && l.ka_state() == "MASTER");
    // xvsd with a higher priority preempts it (after its down timer: 3 s + skew).
    lab.start_xvsd(&xvs_conf("priority = 150\nauth_pass = \"s3cret\""));
    let t = lab.wait(8.0, "xvsd (150) preempts keepalived (100)", Lab::xvs_is_master);
    eprintln!("xvsd preempted keepalived in {t:?}");
    lab.client_reaches(&lab.a);
    // The VIP removed by hand on the master comes back (checked every 5 s).
    lab.a.ip(&["addr", "del", &format!("{VIP}/32"), "dev", "e0"]);
    lab.wait(7.0, "the master puts its VIP back", |l| l.has_vip(&l.a));
    let s = lab.xvs_state().unwrap();
    assert_eq!((s.version, s.priority, s.adverts_invalid), (2, 150, 0), "{s:?}");
    // What the operator reads.
    let mut t = Socket::connect(&lab.socket()).unwrap();
    let out = xvsadm::run::run(&["xvsadm".into(), "vrrp".into()], &mut t, &mut std::io::empty());
    assert!(out.stdout.starts_with("VI_1 (e0 vrid 51 v2): MASTER for "), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("master {A} priority 150; addresses {VIP}/32")), "{}", out.stdout);
    assert!(s.adverts_received > 0, "{s:?}");
    // A clean stop says priority 0: keepalived takes over within its skew time, not 3 s.
    lab.stop_xvsd(false);
    let t = lab.wait(2.5, "keepalived takes over after xvsd's priority 0", Lab::ka_is_master);
    eprintln!("keepalived took over in {t:?} after xvsd stopped");
    lab.client_reaches(&lab.b);
    // xvsd with a lower priority follows keepalived.
    lab.start_xvsd(&xvs_conf("priority = 50\nauth_pass = \"s3cret\""));
    lab.wait(3.0, "xvsd (50) backs keepalived (100)", |l| {
        l.xvs_state()
            .is_some_and(|s| s.state == "BACKUP" && s.master.as_deref() == Some(B) && s.master_priority == Some(100))
    });
    std::thread::sleep(Duration::from_secs(4));
    assert!(lab.ka_is_master(), "{:?}", lab.xvs_state());
    // keepalived dies without a word: xvsd takes over after 3 × 1 s + (256 − 50)/256 s.
    lab.stop_keepalived(true);
    let t = lab.wait(6.0, "xvsd takes over from a killed keepalived", Lab::xvs_is_master);
    eprintln!("xvsd took over {t:?} after keepalived was killed");
    lab.client_reaches(&lab.a);
}

#[test]
fn version_3_elects_both_ways_with_nopreempt_and_a_wrong_password_is_refused() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Lab::new();
    // xvsd starts as MASTER (one interval of listening) with version 3 and 0.5 s adverts.
    lab.start_xvsd(&xvs_conf("state = \"MASTER\"\npriority = 100\nversion = 3\nadvert_int = 0.5"));
    lab.wait(8.0, "xvsd alone becomes master", |l| {
        l.has_vip(&l.a) && l.xvs_state().is_some_and(|s| s.state == "MASTER")
    });
    // keepalived with a higher priority preempts xvsd: xvsd yields at its first advert.
    lab.start_keepalived("  state BACKUP\n  priority 200\n  version 3\n  advert_int 0.5");
    let t = lab.wait(5.0, "keepalived (200) preempts xvsd (100)", Lab::ka_is_master);
    eprintln!("keepalived preempted xvsd in {t:?}");
    lab.client_reaches(&lab.b);
    assert_eq!(lab.xvs_state().unwrap().version, 3);
    // keepalived killed: xvsd takes over within 3 × 0.5 s + skew.
    lab.stop_keepalived(true);
    lab.wait(3.5, "xvsd takes over from a killed keepalived", Lab::xvs_is_master);
    // keepalived back with nopreempt and a higher priority: it stays backup.
    lab.start_keepalived("  state BACKUP\n  priority 200\n  version 3\n  advert_int 0.5\n  nopreempt");
    lab.wait(3.0, "keepalived (nopreempt) reports BACKUP", |l| l.ka_state() == "BACKUP");
    std::thread::sleep(Duration::from_secs(3));
    assert!(lab.xvs_is_master(), "keepalived with nopreempt must not take over");
    lab.stop_keepalived(false);
    lab.stop_xvsd(false);
    // A version 2 pair whose passwords differ: xvsd counts keepalived's adverts as invalid.
    let _ = std::fs::remove_file(lab.dir.join("ka.state"));
    lab.start_keepalived("  state BACKUP\n  priority 100\n  advert_int 1\n  authentication {\n    auth_type PASS\n    auth_pass right\n  }");
    lab.start_xvsd(&xvs_conf("priority = 50\nauth_pass = \"wrong\""));
    lab.wait(8.0, "xvsd counts keepalived's adverts as invalid", |l| {
        l.xvs_state().is_some_and(|s| s.adverts_invalid > 0 && s.adverts_received == 0)
    });
    assert!(lab.log("xvsd.log").contains("authentication mismatch"), "{}", lab.log("xvsd.log"));
}

#[test]
fn ipv6_version_3_elects_with_keepalived_and_announces_by_neighbour_advertisement() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_keepalived("  # v6\n  state BACKUP\n  priority 100\n  advert_int 0.5");
    lab.wait(10.0, "keepalived alone becomes master over IPv6", |l| l.has_vip(&l.b) && l.ka_state() == "MASTER");
    let conf = format!(
        "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"e0\"\nvirtual_router_id = 51\n\
         virtual_ipaddress = [\"{VIP6}\"]\npriority = 150\nadvert_int = 0.5\n"
    );
    lab.start_xvsd(&conf);
    let t = lab.wait(5.0, "xvsd (150) preempts keepalived (100) over IPv6", Lab::xvs_is_master);
    eprintln!("xvsd preempted keepalived over IPv6 in {t:?}");
    let s = lab.xvs_state().unwrap();
    assert_eq!((s.version, s.adverts_invalid), (3, 0), "{s:?}");
    assert!(s.adverts_received > 0, "{s:?}");
    // The client follows the unsolicited neighbour advertisements.
    lab.client_reaches_vip(&lab.a, VIP6);
    lab.stop_xvsd(false);
    let t = lab.wait(2.0, "keepalived takes over after xvsd's priority 0 over IPv6", Lab::ka_is_master);
    eprintln!("keepalived took over in {t:?}");
    lab.client_reaches_vip(&lab.b, VIP6);
}

#[test]
fn tracked_scripts_and_interfaces_move_the_master_and_notify_scripts_say_so() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Lab::new();
    // A second link on xvsd's director to track (up while its peer is up).
    veth(&lab.a, "e9", &lab.client, "e9");
    let flag = lab.dir.join("healthy");
    std::fs::write(&flag, "").unwrap();
    let notes = lab.dir.join("notes");
    let notify = lab.dir.join("notify.sh");
    std::fs::write(&notify, format!("#!/bin/sh\necho \"$*\" >> {}\n", notes.display())).unwrap();
    sh(&["chmod", "755", &notify.to_string_lossy()]);
    lab.start_keepalived("  state BACKUP\n  priority 100\n  advert_int 0.5\n  version 3");
    let conf = format!(
        "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"e0\"\nvirtual_router_id = 51\n\
         virtual_ipaddress = [\"{VIP}\"]\nversion = 3\npriority = 150\nadvert_int = 0.5\n\
         notify = \"{n}\"\nnotify_master = \"{n} master-only\"\n\
         track_script = [{{ name = \"chk\" }}]\ntrack_interface = [{{ name = \"e9\" }}]\n\
         [[vrrp_script]]\nname = \"chk\"\nscript = \"test -e {f}\"\ninterval = 0.2\nweight = -60\nfall = 2\nrise = 2\n",
        n = notify.display(),
        f = flag.display()
    );
    lab.start_xvsd(&conf);
    lab.wait(5.0, "xvsd (150) is master", Lab::xvs_is_master);
    // The check fails: 150 − 60 = 90 < 100, keepalived preempts.
    std::fs::remove_file(&flag).unwrap();
    lab.wait(4.0, "keepalived takes over from xvsd at 90", Lab::ka_is_master);
    assert_eq!(lab.xvs_state().unwrap().priority, 90);
    // It passes again: 150, xvsd preempts back.
    std::fs::write(&flag, "").unwrap();
    lab.wait(4.0, "xvsd back at 150", Lab::xvs_is_master);
    // The tracked link goes down (weight 0): FAULT, priority 0 sent, keepalived at once.
    lab.client.ip(&["link", "set", "e9", "down"]);
    lab.wait(3.0, "xvsd in FAULT, keepalived master", |l| {
        l.xvs_state().is_some_and(|s| s.state == "FAULT") && l.has_vip(&l.b) && !l.has_vip(&l.a)
    });
    lab.client.ip(&["link", "set", "e9", "up"]);
    lab.wait(5.0, "xvsd master again after its link came back", Lab::xvs_is_master);
    // The notify scripts ran as keepalived runs them: notify_master with its own words, notify
    // with INSTANCE name state priority.
    let start = Instant::now();
    let want = ["master-only", "INSTANCE VI_1 MASTER 150", "INSTANCE VI_1 BACKUP 90", "INSTANCE VI_1 FAULT 150"];
    loop {
        let got = std::fs::read_to_string(&notes).unwrap_or_default();
        if want.iter().all(|w| got.lines().any(|l| l == *w)) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "notify lines:\n{got}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn unicast_peers_elect_without_multicast() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_keepalived(&format!(
        "  state BACKUP\n  priority 100\n  advert_int 1\n  unicast_src_ip {B}\n  unicast_peer {{\n    {A}\n  }}"
    ));
    lab.wait(10.0, "keepalived alone becomes master", |l| l.has_vip(&l.b) && l.ka_state() == "MASTER");
    lab.start_xvsd(&xvs_conf(&format!("priority = 150\nunicast_src_ip = \"{A}\"\nunicast_peer = [\"{B}\"]")));
    lab.wait(6.0, "xvsd (150) preempts keepalived (100) over unicast", Lab::xvs_is_master);
    let s = lab.xvs_state().unwrap();
    assert_eq!(s.adverts_invalid, 0, "{s:?}");
    assert!(s.adverts_received > 0, "{s:?}");
    lab.client_reaches(&lab.a);
    lab.stop_xvsd(false);
    lab.wait(2.5, "keepalived takes over after xvsd's unicast priority 0", Lab::ka_is_master);
}

/// Runs an xvsadm command line against the lab's xvsd.
fn adm(lab: &Lab, line: &str) -> xvsadm::run::Outcome {
    let argv: Vec<String> = line.split_whitespace().map(String::from).collect();
    let mut t = Socket::connect(&lab.socket()).unwrap();
    xvsadm::run::run(&argv, &mut t, &mut std::io::empty())
}

#[test]
fn sync_daemons_start_list_and_stop_as_ipvsadm_does() {
    if !xvs_lab::require_root() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_xvsd(&xvs_conf("priority = 100"));
    let out = adm(&lab, "xvsadm --start-daemon master --mcast-interface e0 --syncid 3");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = adm(&lab, "xvsadm --start-daemon backup --mcast-interface e0 --sync-maxlen 2000 --mcast-port 8850");
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The kernel's -L --daemon lines: the master's maxlen is 1472 whatever the MTU; a backup
    // takes the one given.
    assert_eq!(
        adm(&lab, "xvsadm -L --daemon").stdout,
        "master sync daemon (mcast=e0, syncid=3, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
         backup sync daemon (mcast=e0, syncid=0, maxlen=2000, group=224.0.0.81, port=8850, ttl=1)\n"
    );
    let again = adm(&lab, "xvsadm --start-daemon master --mcast-interface e0");
    assert_eq!((again.code, again.stderr.as_str()), (255, "Daemon has already run\n"));
    for line in [
        "xvsadm --start-daemon master --mcast-interface e0 --syncid 256",
        "xvsadm --start-daemon master --mcast-interface e0 --mcast-ttl 0",
        "xvsadm --start-daemon master --mcast-interface e0 --mcast-group 198.18.5.1",
    ] {
        let out = adm(&lab, line);
        assert_eq!(out.code, 2, "{line}: {}", out.stderr);
        assert!(out.stderr.starts_with("illegal "), "{line}: {}", out.stderr);
    }
    let out = adm(&lab, "xvsadm --stop-daemon backup");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = adm(&lab, "xvsadm --stop-daemon backup");
    assert_eq!((out.code, out.stderr.as_str()), (255, "No daemon is running\n"));
    let out = adm(&lab, "xvsadm --start-daemon backup --mcast-interface nosuch0");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("nosuch0"), "{}", out.stderr);
    assert!(adm(&lab, "xvsadm -L --daemon").stdout.starts_with("master sync daemon"));
}
