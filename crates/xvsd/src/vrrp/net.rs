//! What VRRP needs from the system: the advertisement sockets, gratuitous ARP, unsolicited
//! neighbour advertisements, the virtual addresses (rtnetlink) and interface facts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use anyhow::Context;
use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlag, AddressScope};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::plan::Vip;

/// The interface's index.
pub fn ifindex(name: &str) -> anyhow::Result<u32> {
    nix::net::if_::if_nametoindex(name).with_context(|| format!("no interface {name}"))
}

/// Up, with carrier (keepalived's test for a tracked interface). From getifaddrs, which
/// follows the caller's network namespace (sysfs shows the one it was mounted in).
pub fn link_up(name: &str) -> bool {
    use nix::net::if_::InterfaceFlags as F;
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return false };
    addrs.filter(|a| a.interface_name == name).any(|a| a.flags.contains(F::IFF_UP) && a.flags.contains(F::IFF_RUNNING))
}

/// The interface's MAC address.
pub fn mac(name: &str) -> anyhow::Result<[u8; 6]> {
    let addrs = nix::ifaddrs::getifaddrs().context("list interfaces")?;
    for a in addrs.filter(|a| a.interface_name == name) {
        if let Some(m) = a.address.as_ref().and_then(|s| s.as_link_addr()).and_then(|l| l.addr()) {
            return Ok(m);
        }
    }
    anyhow::bail!("{name} has no Ethernet address")
}

/// The interface's own address of a family, as keepalived chooses it: the first IPv4
/// address that is not one of `vips`, or the IPv6 link-local address.
pub fn primary(name: &str, v4: bool, vips: &[IpAddr]) -> Option<IpAddr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for a in addrs.filter(|a| a.interface_name == name) {
        let Some(sa) = a.address else { continue };
        if v4 {
            if let Some(s) = sa.as_sockaddr_in() {
                let ip = IpAddr::V4(s.ip());
                if !vips.contains(&ip) {
                    return Some(ip);
                }
            }
        } else if let Some(s) = sa.as_sockaddr_in6() {
            if s.ip().segments()[0] & 0xffc0 == 0xfe80 {
                return Some(IpAddr::V6(s.ip()));
            }
        }
    }
    None
}

/// A socket receiving every VRRP packet of one interface and family (joined to the group).
pub struct Receiver {
    fd: AsyncFd<Socket>,
    v4: bool,
}

/// One received advertisement.
pub struct Received {
    /// Source.
    pub src: IpAddr,
    /// Destination.
    pub dst: IpAddr,
    /// TTL or hop limit.
    pub ttl: u8,
    /// The VRRP message.
    pub payload: Vec<u8>,
}

impl Receiver {
    /// Opens it for `ifname`.
    pub fn open(ifname: &str, v4: bool) -> anyhow::Result<Receiver> {
        let index = ifindex(ifname)?;
        let (domain, proto) = if v4 { (Domain::IPV4, 112) } else { (Domain::IPV6, 112) };
        let s = Socket::new(domain, Type::RAW, Some(Protocol::from(proto))).context("open a raw VRRP socket")?;
        s.bind_device(Some(ifname.as_bytes())).with_context(|| format!("bind to {ifname}"))?;
        if v4 {
            s.join_multicast_v4_n(&xvs_vrrp::wire::GROUP4, &socket2::InterfaceIndexOrAddress::Index(index))
                .with_context(|| format!("join 224.0.0.18 on {ifname}"))?;
        } else {
            s.join_multicast_v6(&xvs_vrrp::wire::GROUP6, index)
                .with_context(|| format!("join ff02::12 on {ifname}"))?;
            set_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
            set_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        }
        s.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns the socket, so the descriptor stays open while registered.
        let fd = unsafe { AsyncFd::register(s) }.map_err(|e| e.into_parts().1)?;
        Ok(Receiver { fd, v4 })
    }

    /// The next packet.
    pub async fn recv(&self) -> anyhow::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|s| if self.v4 { recv4(s.get_ref()) } else { recv6(s.get_ref()) }) {
                Ok(Ok(Some(r))) => return Ok(r),
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => return Err(e.into()),
                Err(_would_block) => continue,
            }
        }
    }
}

fn set_int(s: &Socket, level: i32, name: i32, v: i32) -> anyhow::Result<()> {
    // SAFETY: a valid socket and a pointer to an int of the size given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            &v as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("setsockopt");
    }
    Ok(())
}

/// IPv4 raw sockets deliver the IP header.
fn recv4(s: &Socket) -> std::io::Result<Option<Received>> {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    let n = s.recv(&mut buf)?;
    // SAFETY: recv initialised the first n bytes.
    let b: Vec<u8> = buf[..n].iter().map(|x| unsafe { x.assume_init() }).collect();
    if b.len() < 20 || b[0] >> 4 != 4 {
        return Ok(None);
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([b[2], b[3]])).min(b.len());
    if ihl < 20 || total < ihl {
        return Ok(None);
    }
    Ok(Some(Received {
        src: IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15])),
        dst: IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19])),
        ttl: b[8],
        payload: b[ihl..total].to_vec(),
    }))
}

/// IPv6 raw sockets deliver the payload; the hop limit and destination come as control
/// messages.
fn recv6(s: &Socket) -> std::io::Result<Option<Received>> {
    let mut buf = [0u8; 2048];
    // u64 words: control messages are aligned like cmsghdr.
    let mut cmsg = [0u64; 16];
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: msghdr points at live buffers of the sizes given.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = &mut from as *mut _ as *mut libc::c_void;
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&cmsg) as _;
    // SAFETY: as above.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (mut ttl, mut dst) = (0u8, None);
    // SAFETY: the CMSG macros walk the control buffer recvmsg filled.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_HOPLIMIT {
                ttl = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32).clamp(0, 255) as u8;
            }
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in6_pktinfo);
                dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let Some(dst) = dst else { return Ok(None) };
    Ok(Some(Received {
        src: IpAddr::V6(Ipv6Addr::from(from.sin6_addr.s6_addr)),
        dst: IpAddr::V6(dst),
        ttl,
        payload: buf[..n as usize].to_vec(),
    }))
}

/// A socket sending one instance's advertisements from its own address.
pub struct Sender {
    s: Socket,
    /// The source address.
    pub src: IpAddr,
}

impl Sender {
    /// Opens it on `ifname` with source `src`: TTL 255, TOS 0xc0 (network control), no
    /// loop back of our own multicast.
    pub fn open(ifname: &str, src: IpAddr) -> anyhow::Result<Sender> {
        let index = ifindex(ifname)?;
        let domain = if src.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
        let s = Socket::new(domain, Type::RAW, Some(Protocol::from(112))).context("open a raw VRRP socket")?;
        s.bind_device(Some(ifname.as_bytes())).with_context(|| format!("bind to {ifname}"))?;
        match src {
            IpAddr::V4(a) => {
                s.bind(&SockAddr::from(SocketAddr::new(src, 0))).with_context(|| format!("bind to {src}"))?;
                s.set_multicast_if_v4(&a)?;
                s.set_multicast_ttl_v4(255)?;
                s.set_ttl(255)?;
                s.set_multicast_loop_v4(false)?;
                s.set_tos(0xc0)?;
            }
            IpAddr::V6(a) => {
                let sa = std::net::SocketAddrV6::new(a, 0, 0, index);
                s.bind(&SockAddr::from(sa)).with_context(|| format!("bind to {src}"))?;
                s.set_multicast_if_v6(index)?;
                s.set_multicast_hops_v6(255)?;
                s.set_unicast_hops_v6(255)?;
                s.set_multicast_loop_v6(false)?;
                set_int(&s, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, 0xc0)?;
            }
        }
        // Nothing is read from it: the receiver sees every packet.
        s.set_recv_buffer_size(0)?;
        s.set_nonblocking(true)?;
        Ok(Sender { s, src })
    }

    /// Sends one advertisement to `dst`.
    pub fn send(&self, adv: &xvs_vrrp::Advert, dst: IpAddr, ifindex: u32) -> std::io::Result<()> {
        let bytes = adv.emit(self.src, dst);
        let to = match dst {
            IpAddr::V4(_) => SocketAddr::new(dst, 0),
            IpAddr::V6(d) => SocketAddr::V6(std::net::SocketAddrV6::new(d, 0, 0, ifindex)),
        };
        self.s.send_to(&bytes, &SockAddr::from(to)).map(|_| ())
    }
}

/// Sends `count` gratuitous ARPs (IPv4) or unsolicited neighbour advertisements (IPv6) for
/// each address, as keepalived does: ARP requests with the broadcast target MAC; NAs from the
/// address itself to ff02::1 with the override flag.
pub fn announce(ifname: &str, addrs: &[IpAddr], count: u32) -> anyhow::Result<()> {
    if addrs.is_empty() || count == 0 {
        return Ok(());
    }
    let index = ifindex(ifname)?;
    let mac = mac(ifname)?;
    let forwarding = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{ifname}/forwarding"))
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    let arp = if addrs.iter().any(IpAddr::is_ipv4) {
        Some(Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(i32::from((libc::ETH_P_ARP as u16).to_be())))))
            .transpose()?
    } else {
        None
    };
    for _ in 0..count {
        for a in addrs {
            match (a, &arp) {
                (IpAddr::V4(v), Some(s)) => send_garp(s, index, mac, *v)?,
                (IpAddr::V6(v), _) => send_na(ifname, index, mac, *v, forwarding)?,
                _ => {}
            }
        }
    }
    Ok(())
}

fn send_garp(s: &Socket, index: u32, mac: [u8; 6], ip: Ipv4Addr) -> anyhow::Result<()> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet/IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&ip.octets());
    // SAFETY: a zeroed sockaddr_ll filled with the family, protocol, interface and address.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
    sll.sll_ifindex = index as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the frame and the address live for the call; the length is the struct's.
    let r = unsafe {
        libc::sendto(
            s.as_raw_fd(),
            f.as_ptr() as *const libc::c_void,
            f.len(),
            0,
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("send a gratuitous ARP");
    }
    Ok(())
}

fn send_na(ifname: &str, index: u32, mac: [u8; 6], ip: Ipv6Addr, router: bool) -> anyhow::Result<()> {
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).context("open an ICMPv6 socket")?;
    s.bind_device(Some(ifname.as_bytes()))?;
    s.bind(&SockAddr::from(std::net::SocketAddrV6::new(ip, 0, 0, 0))).with_context(|| format!("bind to {ip}"))?;
    s.set_multicast_hops_v6(255)?;
    s.set_multicast_if_v6(index)?;
    // Type 136 (NA), code 0, checksum (the kernel fills it), flags R?O, target, option 2.
    let mut m = vec![136, 0, 0, 0, if router { 0xa0 } else { 0x20 }, 0, 0, 0];
    m.extend_from_slice(&ip.octets());
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(&mac);
    let all = std::net::SocketAddrV6::new("ff02::1".parse().expect("an address"), 0, 0, index);
    s.send_to(&m, &SockAddr::from(all)).context("send an unsolicited neighbour advertisement")?;
    Ok(())
}

/// Adds and removes the virtual addresses with rtnetlink.
pub struct Addresses {
    handle: rtnetlink::Handle,
}

impl Addresses {
    /// Opens the netlink connection (driven by a task of its own).
    pub fn open() -> anyhow::Result<Addresses> {
        let (conn, handle, _) = rtnetlink::new_connection().context("open rtnetlink")?;
        tokio::spawn(conn);
        Ok(Addresses { handle })
    }

    /// Adds `v` (already present is fine). IPv6 addresses skip duplicate address detection,
    /// as keepalived's: the master must use them at once.
    pub async fn add(&self, v: &Vip) -> anyhow::Result<()> {
        let index = ifindex(&v.dev)?;
        let mut req = self.handle.address().add(index, v.addr, v.prefix);
        let m = req.message_mut();
        // No broadcast unless given (rtnetlink adds one by itself).
        m.attributes.retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
        if let Some(b) = v.brd {
            m.attributes.push(AddressAttribute::Broadcast(b));
        }
        if let Some(l) = &v.label {
            m.attributes.push(AddressAttribute::Label(l.clone()));
        }
        m.header.scope = AddressScope::from(v.scope);
        if v.addr.is_ipv6() {
            m.attributes.push(AddressAttribute::Flags(vec![AddressFlag::Nodad]));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(e).with_context(|| format!("add {v}")),
        }
    }

    /// Removes `v`, with whatever prefix length it was given (absent is fine).
    pub async fn remove(&self, v: &Vip) -> anyhow::Result<()> {
        let index = ifindex(&v.dev)?;
        let mut found = self.handle.address().get().set_link_index_filter(index).set_address_filter(v.addr).execute();
        while let Some(m) = found.try_next().await.with_context(|| format!("list the addresses of {}", v.dev))? {
            match self.handle.address().del(m).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EADDRNOTAVAIL => {}
                Err(e) => return Err(e).with_context(|| format!("remove {v}")),
            }
        }
        Ok(())
    }

    /// True when `v` is on its interface.
    pub async fn present(&self, v: &Vip) -> bool {
        let Ok(index) = ifindex(&v.dev) else { return false };
        let mut found = self.handle.address().get().set_link_index_filter(index).set_address_filter(v.addr).execute();
        matches!(found.try_next().await, Ok(Some(_)))
    }
}
