//! Facts about a network interface that decide how to attach to it.

use std::ffi::CString;

/// `SIOCETHTOOL` and `ETHTOOL_GDRVINFO` from linux/sockios.h and linux/ethtool.h.
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x3;

/// `struct ethtool_drvinfo` (196 bytes).
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ifreq` with the data pointer member.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// The kernel driver behind `ifname` ("veth", "mlx5_core", …), as `ethtool -i` names it.
pub fn driver(ifname: &str) -> Option<String> {
    let name = CString::new(ifname).ok()?;
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return None;
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    let mut req =
        IfReq { name: [0; libc::IFNAMSIZ], data: &mut info as *mut DrvInfo as *mut libc::c_void, _pad: [0; 16] };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: a datagram socket only to carry the ioctl, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `req` is a valid ifreq whose data points at a live ethtool_drvinfo of the size
    // the kernel writes for ETHTOOL_GDRVINFO.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut req as *mut IfReq) };
    // SAFETY: fd is the socket opened above.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return None;
    }
    let end = info.driver.iter().position(|b| *b == 0).unwrap_or(info.driver.len());
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Native XDP on a veth sends XDP_TX and redirected frames into the peer's own XDP receive
/// path, which exists only while the peer runs an XDP program: to a plain peer (a container,
/// a namespace's client) they are lost — the director's ICMP errors among them. Generic mode
/// hands them to the peer as ordinary packets.
pub fn prefers_generic(ifname: &str) -> bool {
    driver(ifname).as_deref() == Some("veth")
}
