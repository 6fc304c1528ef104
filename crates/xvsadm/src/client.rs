//! Talking to xvsd: one JSON request per line, one JSON response per line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use xvs_api::{Request, Response};

/// Something that answers requests: xvsd over its socket, or (in tests) an in-process control.
pub trait Transport {
    /// Sends one request and waits for its response.
    fn call(&mut self, req: &Request) -> Result<Response, String>;

    /// Sends a request answered by several responses (`xvsadm trace`) and returns the first,
    /// waiting as long as it takes (a trace's first packet may be minutes away).
    fn call_streaming(&mut self, req: &Request) -> Result<Response, String> {
        self.call(req)
    }

    /// The next response to a request answered by several, waiting as long as it takes.
    fn next(&mut self) -> Result<Response, String> {
        Err("this transport answers each request once".into())
    }

    /// Where the last file applied through this transport is remembered
    /// ([`crate::applied`]); `None`: nowhere, every apply sends the whole file.
    fn applied_memory(&self) -> Option<std::path::PathBuf> {
        None
    }
}

/// A connection to xvsd's Unix socket.
pub struct Socket {
    path: std::path::PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    timeout: std::time::Duration,
}

/// How long xvsadm waits for xvsd's answer: `XVSADM_TIMEOUT` seconds, 120 by default (an
/// apply of 100k services takes seconds, not minutes).
fn timeout() -> std::time::Duration {
    let secs = std::env::var("XVSADM_TIMEOUT").ok().and_then(|v| v.parse::<u64>().ok()).filter(|s| *s > 0);
    std::time::Duration::from_secs(secs.unwrap_or(120))
}

impl Socket {
    /// Connects to `path`.
    pub fn connect(path: &Path) -> Result<Socket, String> {
        Socket::connect_waiting(path, timeout())
    }

    /// Connects to `path`, waiting at most `timeout` for each answer.
    pub fn connect_waiting(path: &Path, timeout: std::time::Duration) -> Result<Socket, String> {
        let s = UnixStream::connect(path).map_err(|e| {
            format!(
                "cannot reach xvsd at {}: {e} (is it running? `systemctl start xvsd`, or run `xvsd`)",
                path.display()
            )
        })?;
        s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        let writer = s.try_clone().map_err(|e| e.to_string())?;
        Ok(Socket { path: path.to_path_buf(), reader: BufReader::new(s), writer, timeout })
    }
}

impl Transport for Socket {
    fn call(&mut self, req: &Request) -> Result<Response, String> {
        let text = xvs_api::encode(req);
        // The request's name ("add_service", "apply", ...) for messages.
        let what = text.split("\"op\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("request").to_string();
        let late = |e: std::io::Error| {
            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                format!(
                    "xvsd did not answer within {} s (waiting for the answer to {what}; XVSADM_TIMEOUT sets the wait)",
                    self.timeout.as_secs()
                )
            } else {
                format!("talking to xvsd ({what}): {e}")
            }
        };
        let written = self.writer.write_all(text.as_bytes());
        let mut line = String::new();
        // xvsd answers a request it refuses part way (too large) and closes: its answer says
        // more than the broken pipe does.
        let read = self.reader.read_line(&mut line);
        if let Err(e) = written {
            if line.is_empty() {
                return Err(late(e));
            }
        }
        read.map_err(late)?;
        if line.is_empty() {
            return Err("xvsd closed the connection".into());
        }
        xvs_api::decode_response(&line)
    }

    fn call_streaming(&mut self, req: &Request) -> Result<Response, String> {
        self.reader.get_ref().set_read_timeout(None).map_err(|e| e.to_string())?;
        self.call(req)
    }

    fn next(&mut self) -> Result<Response, String> {
        // A trace may wait for its next packet indefinitely.
        self.reader.get_ref().set_read_timeout(None).map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.reader.read_line(&mut line).map_err(|e| format!("talking to xvsd (trace): {e}"))?;
        if line.is_empty() {
            return Err("xvsd closed the connection".into());
        }
        xvs_api::decode(&line)
    }

    fn applied_memory(&self) -> Option<std::path::PathBuf> {
        Some(crate::applied::path_for(&self.path))
    }
}
