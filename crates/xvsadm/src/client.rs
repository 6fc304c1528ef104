//! Talking to xvsd: one JSON request per line, one JSON response per line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use xvs_api::{Request, Response};

/// Something that answers requests: xvsd over its socket, or (in tests) an in-process control.
pub trait Transport {
    /// Sends one request and waits for its response.
    fn call(&mut self, req: &Request) -> Result<Response, String>;
}

/// A connection to xvsd's Unix socket.
pub struct Socket {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Socket {
    /// Connects to `path`.
    pub fn connect(path: &Path) -> Result<Socket, String> {
        let s = UnixStream::connect(path).map_err(|e| {
            format!(
                "cannot reach xvsd at {}: {e} (is it running? `systemctl start xvsd`, or run `xvsd`)",
                path.display()
            )
        })?;
        let writer = s.try_clone().map_err(|e| e.to_string())?;
        Ok(Socket { reader: BufReader::new(s), writer })
    }
}

impl Transport for Socket {
    fn call(&mut self, req: &Request) -> Result<Response, String> {
        self.writer.write_all(xvs_api::encode(req).as_bytes()).map_err(|e| format!("write to xvsd: {e}"))?;
        let mut line = String::new();
        self.reader.read_line(&mut line).map_err(|e| format!("read from xvsd: {e}"))?;
        if line.is_empty() {
            return Err("xvsd closed the connection".into());
        }
        xvs_api::decode(&line)
    }
}
