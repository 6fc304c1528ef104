//! The liveness interface: a TUN device only xvsd holds open. The kernel removes it when the
//! last descriptor closes — when xvsd exits or dies — and BIRD withdraws the routes that point
//! at it. Nothing is ever sent or read through it.

use std::os::fd::AsRawFd;

use anyhow::Context;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// The open device; dropping it removes the interface.
pub struct Liveness {
    _file: std::fs::File,
}

impl Liveness {
    /// Creates the interface `name` and sets it up.
    pub async fn create(name: &str) -> anyhow::Result<Liveness> {
        let file =
            std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun").context("open /dev/net/tun")?;
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: IFF_TUN | IFF_NO_PI, _pad: [0; 22] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes an ifreq, which `req` is laid out as.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) {
                anyhow::bail!("{name} exists and is held by another process (another xvsd?)");
            }
            return Err(e).context("TUNSETIFF");
        }
        let index = nix::net::if_::if_nametoindex(name).context("find the new interface")?;
        let (conn, handle, _) = rtnetlink::new_connection().context("open rtnetlink")?;
        tokio::spawn(conn);
        handle.link().set(index).up().execute().await.context("set the interface up")?;
        Ok(Liveness { _file: file })
    }
}
