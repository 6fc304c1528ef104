//! hold.py in a client namespace: connections held open to a VIP's ports, driven line by line.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use xvs_lab::Netns;

const HOLD: &str = include_str!("../trust/hold.py");

/// Connections held by hold.py.
pub struct Held {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// (client port, VIP port) of each connection, in order.
    pub flows: Vec<(u16, u16)>,
    /// The server that answered each connection's first line.
    pub servers: Vec<String>,
}

impl Held {
    /// Opens `n` connections to each of `ports` on `vip` from `client` (the script is written
    /// into `dir`); `diagnose` explains a failure to open them.
    pub fn open(client: &Netns, dir: &Path, vip: &str, n: usize, ports: &[u16], diagnose: impl Fn() -> String) -> Held {
        let script = dir.join("hold.py");
        std::fs::write(&script, HOLD).unwrap();
        let mut child = client
            .command("python3")
            .args([script.to_str().unwrap(), vip, &n.to_string(), "20"])
            .args(ports.iter().map(|p| p.to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("hold.py: {line}\n{}", diagnose()));
        let local: Vec<u16> = v["ports"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u16).collect();
        let flows = local.iter().enumerate().map(|(i, p)| (*p, ports[i / n])).collect();
        let servers = v["servers"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
        Held { child, stdin, stdout, flows, servers }
    }

    fn command(&mut self, cmd: &str) -> u64 {
        writeln!(self.stdin, "{cmd}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("hold.py: {line}"));
        v["broken"].as_u64().unwrap()
    }

    /// Every connection sends a line and must get it back; returns how many broke.
    pub fn ping(&mut self) -> u64 {
        self.command("ping")
    }

    /// Every connection half-closes and must see the server's clean end; returns how many
    /// broke.
    pub fn close(mut self) -> u64 {
        let n = self.command("close");
        let _ = self.child.wait();
        n
    }
}
