//! The Debian package, installed as an operator would and then removed, in a throwaway root
//! (`dpkg --root`, maintainer scripts run with DPKG_ROOT set, so they leave this host's systemd
//! alone). The director it installs is started as its systemd unit says — the unit's ExecStart
//! with the packaged /etc/default/xvsd (only the interface changed), systemd's readiness
//! protocol (Type=notify) answered — in a lab, configured with the packaged xvsadm, and serves
//! real clients; removing it as the package's prerm does leaves no dataplane behind.
//!
//! `scripts/test.sh` builds the package (`scripts/package.sh`) and names it in `XVS_DEB`; without
//! that variable the test says it was skipped.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use xvs_lab::topology::{rs4, Classic, Mode, VIP4};
use xvs_lab::PinDir;

/// A directory removed on drop.
struct Root(PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dpkg(root: &Path, args: &[&str]) -> Output {
    let out = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        // The root has no libc6 of its own to depend on; the scripts run here, told DPKG_ROOT.
        .args(["--force-depends", "--force-script-chrootless", "--log=/dev/null"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("dpkg");
    assert!(
        out.status.success(),
        "dpkg {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn gunzip(path: &Path) -> String {
    let out = Command::new("gzip").arg("-dc").arg(path).output().expect("gzip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `key=` in the unit's text.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("no {key}= in:\n{unit}"))
}

/// An xvsd started as the unit starts it, killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_package_installs_serves_and_is_removed_cleanly() {
    if !xvs_lab::require_root() {
        return;
    }
    let Some(deb) = std::env::var_os("XVS_DEB") else {
        eprintln!("skipped: XVS_DEB names no package (scripts/test.sh builds one with scripts/package.sh)");
        return;
    };
    let root = Root(std::env::temp_dir().join(format!("{}-debroot", xvs_lab::unique_prefix())));
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.0.join(d)).unwrap();
    }
    std::fs::write(root.0.join("var/lib/dpkg/status"), "").unwrap();
    let r = |p: &str| root.0.join(p.trim_start_matches('/'));
    dpkg(&root.0, &["-i", deb.to_str().unwrap()]);

    // What an operator finds: binaries, the unit, the defaults, man pages, completions.
    for f in [
        "/usr/sbin/xvsd",
        "/usr/sbin/xvsadm",
        "/usr/sbin/xvs-decap",
        "/etc/xvs/xvs.toml",
        "/usr/share/doc/xvs/copyright",
        "/usr/share/xvs/grafana/xvs-dashboard.json",
        "/usr/share/zsh/vendor-completions/_xvsadm",
        "/usr/share/fish/vendor_completions.d/xvsadm.fish",
    ] {
        assert!(r(f).exists(), "{f} is not installed");
    }
    let man = gunzip(&r("/usr/share/man/man8/xvsadm.8.gz"));
    assert!(man.contains(".TH xvsadm 8") && man.contains("add\\-service") && man.contains("xvsadm top"), "{man}");
    assert!(gunzip(&r("/usr/share/man/man8/xvsd.8.gz")).contains("\\-\\-interface"));
    let complete = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; complete -p xvsadm; COMP_WORDS=(xvsadm --tcp-s); COMP_CWORD=1; _xvsadm xvsadm --tcp-s xvsadm; echo ${{COMPREPLY[@]}}",
            r("/usr/share/bash-completion/completions/xvsadm").display()
        ))
        .output()
        .unwrap();
    let complete = String::from_utf8_lossy(&complete.stdout);
    assert!(complete.contains("--tcp-service"), "bash completion: {complete}");

    let unit = std::fs::read_to_string(r("/lib/systemd/system/xvsd.service")).unwrap();
    assert_eq!(unit_value(&unit, "Type"), "notify");
    assert_eq!(unit_value(&unit, "EnvironmentFile"), "-/etc/default/xvsd");
    let exec: Vec<&str> = unit_value(&unit, "ExecStart").split_whitespace().collect();
    assert_eq!(exec, ["/usr/sbin/xvsd", "$XVSD_OPTS"]);
    let defaults = std::fs::read_to_string(r("/etc/default/xvsd")).unwrap();
    let opts = defaults.lines().find_map(|l| l.strip_prefix("XVSD_OPTS=")).unwrap().trim_matches('"');
    assert_eq!(opts, "-i eth0", "the file the README tells operators to edit");

    // The unit's command in a lab: the operator's edit names the lab's interfaces.
    let mut lab = Classic::new(2, Mode::Nat);
    lab.start_web_servers();
    let pins = PinDir::new(&format!("{}deb", lab.prefix));
    let socket = lab.dir.join("xvsd.sock");
    let notify_path = lab.dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let xvsd_opts = opts.replace("-i eth0", "-i c0 -i r1 -i r2");
    let local = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = xvsd_opts.split_whitespace().map(String::from).collect();
        v.extend([
            "--pin-dir".into(),
            pins.path().display().to_string(),
            "--socket".into(),
            socket.display().to_string(),
        ]);
        v.extend(["--state-file".into(), lab.dir.join("state.json").display().to_string()]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let log = std::fs::File::create(lab.dir.join("xvsd.log")).unwrap();
    let xvsd = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.director.name()))
        .arg("--")
        .arg(r(exec[0].trim_start_matches('/')))
        .args(local(&[]))
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut xvsd = Daemon(xvsd);
    let log_text = || std::fs::read_to_string(lab.dir.join("xvsd.log")).unwrap_or_default();
    // systemd would call it started when it says READY=1.
    let mut buf = [0u8; 512];
    let start = Instant::now();
    loop {
        let n = notify.recv(&mut buf).unwrap_or_else(|e| panic!("no readiness from xvsd ({e}):\n{}", log_text()));
        if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{}", log_text());
    }
    let adm = |args: &str| {
        let out = Command::new(r("/usr/sbin/xvsadm"))
            .args(args.split_whitespace())
            .env("XVS_SOCKET", &socket)
            .output()
            .unwrap();
        assert!(out.status.success(), "xvsadm {args}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    adm(&format!("-A -t {VIP4}:80 -s rr"));
    for i in 0..2 {
        adm(&format!("-a -t {VIP4}:80 -r {}:80 -m", rs4(i)));
    }
    let url = format!("http://{VIP4}/");
    let answers: Vec<String> =
        (0..4).map(|_| lab.curl(&url).unwrap_or_else(|e| panic!("{e}\n{}", log_text()))).collect();
    assert!(answers.contains(&"rs1".into()) && answers.contains(&"rs2".into()), "{answers:?}");
    assert!(adm("-Ln").contains("Masq"));

    // Removal as the prerm does it: the unit stopped (forwarding carries on, pinned), then
    // `xvsd $XVSD_OPTS --purge`: the dataplane is gone and the VIP no longer answers.
    assert!(Command::new("kill").args(["-TERM", &xvsd.0.id().to_string()]).status().unwrap().success());
    let _ = xvsd.0.wait();
    assert!(lab.curl(&url).is_ok(), "a stopped xvsd keeps forwarding until the package is removed");
    let purge = lab.director.command(r("/usr/sbin/xvsd").to_str().unwrap()).args(local(&["--purge"])).output().unwrap();
    assert!(purge.status.success(), "--purge: {}", String::from_utf8_lossy(&purge.stderr));
    assert!(std::fs::read_dir(pins.path()).map_or(true, |mut d| d.next().is_none()), "pins left behind");
    let links = lab.director.exec(&["ip", "link", "show", "c0"]);
    assert!(!String::from_utf8_lossy(&links.stdout).contains("xdp"), "XDP still attached: {links:?}");
    assert!(lab.curl(&url).is_err(), "the VIP still answers after the purge");

    // apt remove keeps the conffiles; purge takes them too.
    dpkg(&root.0, &["-r", "xvs"]);
    assert!(!r("/usr/sbin/xvsd").exists() && !r("/lib/systemd/system/xvsd.service").exists());
    assert!(r("/etc/default/xvsd").exists(), "remove keeps the operator's settings");
    dpkg(&root.0, &["-P", "xvs"]);
    assert!(!r("/etc/default/xvsd").exists() && !r("/etc/xvs/xvs.toml").exists());
}
