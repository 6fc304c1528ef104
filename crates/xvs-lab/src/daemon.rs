//! xvsd running in a lab's director namespace, as the demo and the end-to-end tests use it.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::topology::Classic;
use crate::PinDir;

/// An xvsd process in the director's namespace with its own pin directory and socket. Dropping
/// it kills the process and removes the pins (which detaches the programs).
pub struct Xvsd {
    bin: PathBuf,
    ns: String,
    args: Vec<String>,
    child: Option<Child>,
    pins: PinDir,
    /// The API socket.
    pub socket: PathBuf,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Xvsd {
    /// Starts `bin` (the xvsd executable) attached to the director's interfaces (`c0`, `r1`…),
    /// metrics off unless `extra` says otherwise, and waits for its socket.
    pub fn start(lab: &Classic, bin: &Path, extra: &[&str]) -> Xvsd {
        let pins = PinDir::new(&format!("{}xvsd", lab.prefix));
        let mut args: Vec<String> = Vec::new();
        for dev in std::iter::once("c0".to_string()).chain((1..=lab.rs.len()).map(|i| format!("r{i}"))) {
            args.extend(["-i".into(), dev]);
        }
        if !extra.contains(&"--metrics") {
            args.extend(["--metrics".into(), "off".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut x = Xvsd {
            bin: bin.to_path_buf(),
            ns: lab.director.name().to_string(),
            args,
            child: None,
            socket: lab.dir.join("xvsd.sock"),
            log: lab.dir.join("xvsd.log"),
            pins,
        };
        x.spawn();
        x
    }

    /// Starts `bin` (the xvsd executable) in namespace `ns` with `args` as they are (no
    /// interface or metrics defaults), its socket, log and pins named after `name` in `dir`,
    /// and waits for its socket. For labs other than [`Classic`] (director pairs, VRRP peers).
    pub fn start_in(ns: &str, dir: &Path, name: &str, bin: &Path, args: &[&str]) -> Xvsd {
        let mut x = Xvsd {
            bin: bin.to_path_buf(),
            ns: ns.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
            socket: dir.join(format!("{name}.sock")),
            log: dir.join(format!("{name}.log")),
            pins: PinDir::new(&format!("{ns}{name}")),
        };
        x.spawn();
        x
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open the xvsd log");
        // nsenter rather than `ip netns exec`, which remounts /sys and so hides bpffs.
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg("--")
            .arg(&self.bin)
            .args(&self.args)
            .arg("--pin-dir")
            .arg(self.pins.path())
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-file")
            .arg(self.socket.with_extension("health.json"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start xvsd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.socket.exists() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("xvsd exited ({status}) at start:\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "xvsd did not open its socket:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// It was started and not killed or stopped since.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The pin directory.
    pub fn pins(&self) -> &Path {
        self.pins.path()
    }

    /// Kills the process with SIGKILL: nothing of it runs, its pinned maps and programs stay.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        remove_lock_files(self.pins.path());
    }

    /// Stops it with SIGTERM, as systemd does, and waits for it: a VRRP master steps down.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::sh(&["kill", "-TERM", &c.id().to_string()]);
            let _ = c.wait();
        }
        remove_lock_files(self.pins.path());
    }

    /// Starts it again after [`Xvsd::kill`] or [`Xvsd::terminate`], with the same arguments
    /// and pins.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Sends it SIGHUP (reload its --config file).
    pub fn hangup(&self) {
        if let Some(c) = &self.child {
            crate::sh(&["kill", "-HUP", &c.id().to_string()]);
        }
    }

    /// Starts it again with the same arguments and pins.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Xvsd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.socket);
        remove_lock_files(self.pins.path());
    }
}

/// Removes the lock files an xvsd using pin directory `base` leaves in /run/xvs/locks (named
/// after the pin path, as xvsd names them).
pub fn remove_lock_files(base: &Path) {
    let prefix: String = base.to_string_lossy().chars().map(|c| if c == '/' { '_' } else { c }).collect();
    if let Ok(dir) = std::fs::read_dir("/run/xvs/locks") {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(&format!("{prefix}_v")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
