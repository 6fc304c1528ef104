//! `xvsadm`: ipvsadm's command line for xvs.

use std::io::Write;
use std::path::PathBuf;

use xvsadm::client::{Socket, Transport};
use xvsadm::run::{run, Outcome};

/// Connects lazily: `-h` and option errors need no daemon.
struct Lazy {
    path: PathBuf,
    socket: Option<Socket>,
}

impl Transport for Lazy {
    fn call(&mut self, req: &xvs_api::Request) -> Result<xvs_api::Response, String> {
        if self.socket.is_none() {
            self.socket = Some(Socket::connect(&self.path)?);
        }
        let r = self.socket.as_mut().expect("connected above").call(req);
        if r.is_err() {
            // A restarted xvsd is reached again by the next call (`xvsadm top` keeps calling).
            self.socket = None;
        }
        r
    }

    fn call_streaming(&mut self, req: &xvs_api::Request) -> Result<xvs_api::Response, String> {
        if self.socket.is_none() {
            self.socket = Some(Socket::connect(&self.path)?);
        }
        self.socket.as_mut().expect("connected above").call_streaming(req)
    }

    fn next(&mut self) -> Result<xvs_api::Response, String> {
        self.socket.as_mut().ok_or("not connected")?.next()
    }

    fn applied_memory(&self) -> Option<PathBuf> {
        Some(xvsadm::applied::path_for(&self.path))
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let path = std::env::var_os("XVS_SOCKET").map_or_else(|| PathBuf::from(xvs_api::DEFAULT_SOCKET), PathBuf::from);
    let mut t = Lazy { path, socket: None };
    let stdin = std::io::stdin();
    let Outcome { stdout, stderr, code } = run(&argv, &mut t, &mut stdin.lock());
    // A closed stdout (`xvsadm -Ln | head`) is not an error.
    let _ = std::io::stdout().write_all(stdout.as_bytes());
    let _ = std::io::stderr().write_all(stderr.as_bytes());
    std::process::exit(code);
}
