//! Connection synchronisation with the IPVS sync protocol ([`xvs_sync`]): a master multicasts
//! its connections and templates, a backup installs what it receives in its dataplane, so that
//! established connections continue when the backup becomes master.
//!
//! The kernel's master sends a connection from the packet path; xvs's dataplane cannot call
//! out per packet, so the master walks the tables every [`MASTER_PERIOD`] (outside the control
//! lock) and [`xvs_sync::Master`] decides what is new, changed or due for a refresh. The backup
//! installs entries with the dataplane's install program, which does the accounting a packet
//! would. Daemons are started by `--start-daemon`, or follow a VRRP instance (keepalived's
//! `lvs_sync_daemon`): master while it is MASTER, backup otherwise.

pub mod table;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::sync::{oneshot, Mutex};
use xvs_api::{ApiError, DaemonState, Response, SyncOptions};

use crate::control::Control;

/// How often a master walks its tables.
pub const MASTER_PERIOD: Duration = Duration::from_millis(250);

/// Master or backup.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sends.
    Master,
    /// Receives and installs.
    Backup,
}

impl Role {
    /// As ipvsadm names it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Backup => "backup",
        }
    }

    /// From ipvsadm's name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "master" => Some(Role::Master),
            "backup" => Some(Role::Backup),
            _ => None,
        }
    }
}

struct Running {
    state: Arc<std::sync::Mutex<DaemonState>>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// The daemons of one xvsd: at most one master and one backup, as the kernel allows.
pub struct Daemons {
    control: Arc<Mutex<Control>>,
    running: std::sync::Mutex<Vec<(Role, Running)>>,
}

fn error(errno: &str, message: String) -> Response {
    Response::Error(ApiError { errno: errno.into(), message, ..Default::default() })
}

impl Daemons {
    /// No daemon running yet.
    pub fn new(control: Arc<Mutex<Control>>) -> Arc<Daemons> {
        Arc::new(Daemons { control, running: std::sync::Mutex::new(Vec::new()) })
    }

    /// `--start-daemon`: EEXIST when one of that role runs (the kernel's answer).
    pub fn start(&self, role: Role, options: SyncOptions) -> Response {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.iter().any(|(r, _)| *r == role) {
            return error("EEXIST", format!("a {} synchronisation daemon is running already", role.name()));
        }
        match self.spawn(role, options) {
            Ok(r) => {
                running.push((role, r));
                Response::Ok
            }
            Err(e) => error("EINVAL", format!("{e:#}")),
        }
    }

    /// `--stop-daemon`: ESRCH when none of that role runs.
    pub async fn stop(&self, role: Role) -> Response {
        let r = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let Some(i) = running.iter().position(|(r, _)| *r == role) else {
                return error("ESRCH", format!("no {} synchronisation daemon is running", role.name()));
            };
            running.remove(i).1
        };
        let _ = r.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), r.task).await;
        tracing::info!(role = role.name(), "synchronisation daemon stopped");
        Response::Ok
    }

    /// True when a daemon of `role` runs.
    pub fn is_running(&self, role: Role) -> bool {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|(r, _)| *r == role)
    }

    /// The running daemons, master first.
    pub fn states(&self) -> Vec<DaemonState> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<DaemonState> =
            running.iter().map(|(_, r)| r.state.lock().map(|s| s.clone()).unwrap_or_default()).collect();
        v.sort_by_key(|s| s.role != "master");
        v
    }

    fn spawn(&self, role: Role, mut options: SyncOptions) -> anyhow::Result<Running> {
        let group = options.group.unwrap_or(IpAddr::V4(xvs_sync::SYNC_GROUP_V4));
        anyhow::ensure!(group.is_multicast(), "--mcast-group {group} is not a multicast address");
        anyhow::ensure!(group.is_ipv4(), "an IPv6 --mcast-group is not supported by xvs yet");
        anyhow::ensure!(options.ttl >= 1, "--mcast-ttl must be 1 to 255");
        let index = nix::net::if_::if_nametoindex(options.mcast_interface.as_str())
            .with_context(|| format!("--mcast-interface {}: no such interface", options.mcast_interface))?;
        let mtu = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", options.mcast_interface))
            .ok()
            .and_then(|m| m.trim().parse().ok())
            .unwrap_or(1500);
        let xrole = if role == Role::Master { xvs_sync::Role::Master } else { xvs_sync::Role::Backup };
        let maxlen = xvs_sync::sync_maxlen(xrole, false, mtu, u32::from(options.maxlen));
        options.maxlen = maxlen as u16;
        options.group = Some(group);
        if options.port == 0 {
            options.port = xvs_sync::SYNC_PORT;
        }
        let sock = match role {
            Role::Master => master_socket(&options)?,
            Role::Backup => backup_socket(&options, index, group)?,
        };
        let state = Arc::new(std::sync::Mutex::new(DaemonState {
            role: role.name().into(),
            options: options.clone(),
            ..Default::default()
        }));
        let (stop, stop_rx) = oneshot::channel();
        let control = self.control.clone();
        let st = state.clone();
        let task = match role {
            Role::Master => tokio::spawn(run_master(control, sock, options.clone(), maxlen, st, stop_rx)),
            Role::Backup => tokio::spawn(run_backup(control, sock, options.clone(), maxlen, st, stop_rx)),
        };
        tracing::info!(
            role = role.name(),
            interface = %options.mcast_interface,
            syncid = options.syncid,
            maxlen,
            group = %group,
            port = options.port,
            "synchronisation daemon started"
        );
        Ok(Running { state, stop, task })
    }
}

fn master_socket(o: &SyncOptions) -> anyhow::Result<tokio::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind_device(Some(o.mcast_interface.as_bytes())).with_context(|| format!("bind to {}", o.mcast_interface))?;
    // Bound to the device, multicast leaves through it whatever its addresses.
    s.set_multicast_ttl_v4(u32::from(o.ttl))?;
    s.set_multicast_loop_v4(false)?;
    s.bind(&SockAddr::from(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))))?;
    s.set_nonblocking(true)?;
    Ok(tokio::net::UdpSocket::from_std(s.into())?)
}

fn backup_socket(o: &SyncOptions, index: u32, group: IpAddr) -> anyhow::Result<tokio::net::UdpSocket> {
    let IpAddr::V4(g) = group else { anyhow::bail!("IPv4 groups only") };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(o.mcast_interface.as_bytes())).with_context(|| format!("bind to {}", o.mcast_interface))?;
    s.bind(&SockAddr::from(SocketAddr::from((g, o.port)))).with_context(|| format!("bind to {g}:{}", o.port))?;
    s.join_multicast_v4_n(&g, &socket2::InterfaceIndexOrAddress::Index(index))
        .with_context(|| format!("join {g} on {}", o.mcast_interface))?;
    // A master's first walk after a takeover sends every connection at once: room for them
    // whatever net.core.rmem_max says (root may force it).
    let size: libc::c_int = 8 << 20;
    // SAFETY: a valid socket and a pointer to an int of the size given.
    let forced = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced != 0 {
        s.set_recv_buffer_size(size as usize)?;
    }
    s.set_nonblocking(true)?;
    Ok(tokio::net::UdpSocket::from_std(s.into())?)
}

async fn run_master(
    control: Arc<Mutex<Control>>,
    sock: tokio::net::UdpSocket,
    o: SyncOptions,
    maxlen: usize,
    state: Arc<std::sync::Mutex<DaemonState>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut master = xvs_sync::Master::new(xvs_sync::MasterConfig { syncid: o.syncid, maxlen, ..Default::default() });
    let to = SocketAddr::new(o.group.unwrap_or(IpAddr::V4(xvs_sync::SYNC_GROUP_V4)), o.port);
    let mut every = tokio::time::interval(MASTER_PERIOD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = every.tick() => {}
        }
        let Some((tables, timeouts)) = control.lock().await.conn_lister() else { continue };
        let conns = tokio::task::spawn_blocking(move || table::collect(&tables, &timeouts)).await.unwrap_or_default();
        let now = crate::now();
        master.handle_snapshot(now, conns);
        let mut sent = 0u32;
        while let Some(d) = master.poll_transmit(now) {
            // Paced: a burst of thousands of datagrams would overrun the backup's buffer.
            sent += 1;
            if sent % 64 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if let Err(e) = sock.send_to(&d, to).await {
                if !warned {
                    tracing::warn!(error = %e, "synchronisation message not sent");
                    warned = true;
                }
            }
        }
        let st = master.stats();
        if let Ok(mut s) = state.lock() {
            s.datagrams = st.datagrams;
            s.entries = st.entries_sent;
        }
    }
}

async fn run_backup(
    control: Arc<Mutex<Control>>,
    sock: tokio::net::UdpSocket,
    o: SyncOptions,
    maxlen: usize,
    state: Arc<std::sync::Mutex<DaemonState>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backup = xvs_sync::Backup::new(xvs_sync::BackupConfig { syncid: o.syncid, maxlen, pe_names: Vec::new() });
    let mut buf = vec![0u8; maxlen.max(1500) + 1];
    let (mut installed, mut skipped) = (0u64, 0u64);
    loop {
        let n = tokio::select! {
            _ = &mut stop => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, _)) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "synchronisation receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let now = crate::now();
        match backup.handle_datagram(now, &buf[..n.min(maxlen)]) {
            Ok(r) => {
                if let Some(d) = &r.dropped {
                    tracing::debug!(entry = d.index, error = %d.error, "synchronisation message ended early");
                }
                let (i, s) = install(&control, &r.conns).await;
                installed += i;
                skipped += s + r.skipped.len() as u64;
            }
            Err(e) => tracing::debug!(error = %e, "synchronisation message refused"),
        }
        let st = backup.stats();
        if let Ok(mut s) = state.lock() {
            s.datagrams = st.datagrams;
            s.entries = st.conns;
            s.invalid = st.invalid + st.other_syncid;
            s.installed = installed;
            s.skipped = skipped;
        }
    }
}

/// Installs received entries in the dataplane; returns (installed, skipped).
async fn install(control: &Arc<Mutex<Control>>, conns: &[xvs_sync::SyncConn]) -> (u64, u64) {
    let c = control.lock().await;
    let Some(dp) = c.dp.as_ref() else { return (0, conns.len() as u64) };
    let mut recs = Vec::with_capacity(conns.len());
    let mut skipped = 0u64;
    for s in conns {
        match table::to_install(&c.lb, s) {
            Ok(r) => recs.push(r),
            Err(why) => {
                skipped += 1;
                tracing::trace!(?why, conn = ?s, "synchronised entry not installed");
            }
        }
    }
    // Templates first: connections then count against them.
    recs.sort_by_key(|r| r.kind != xvs_abi::INSTALL_TPL);
    match dp.director.install(&recs) {
        Ok(results) => {
            let ok =
                results.iter().filter(|r| **r == xvs_abi::INSTALLED_NEW || **r == xvs_abi::INSTALLED_UPDATED).count()
                    as u64;
            (ok, skipped + recs.len() as u64 - ok)
        }
        Err(e) => {
            tracing::warn!(error = %e, "synchronised entries not installed");
            (0, conns.len() as u64)
        }
    }
}
