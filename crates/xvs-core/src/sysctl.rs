//! The IPVS sysctls that change behaviour the core models (reference §4), and the timeouts
//! `ipvsadm --set` edits.

use core::time::Duration;

use crate::conn::{TcpState, TcpTimeouts};

/// Tunables, with the kernel's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sysctl {
    /// `conn_reuse_mode`: bit 0 reschedules a SYN that hits a TIME_WAIT/CLOSE connection; bit 1
    /// (value 2) also one in FIN_WAIT that never saw a reply (DR/TUN).
    pub conn_reuse_mode: u32,
    /// `expire_nodest_conn`: connections to a removed server are expired (and the packet
    /// rescheduled) instead of dropped; a SYN to a weight-0 server is rescheduled.
    pub expire_nodest_conn: bool,
    /// `expire_quiescent_template`: a template whose server has weight 0 is invalid.
    pub expire_quiescent_template: bool,
    /// `sloppy_tcp`: any non-RST TCP packet may open a connection.
    pub sloppy_tcp: bool,
    /// `secure_tcp` at level ≥ 2: use the stricter state table.
    pub secure_tcp: bool,
    /// `nat_icmp_send`: answer unmatched packets from NAT real servers with ICMP unreachable.
    pub nat_icmp_send: bool,
    /// `lblc_expiration`.
    pub lblc_expiration: Duration,
    /// `lblcr_expiration`.
    pub lblcr_expiration: Duration,
    /// `run_estimation`: rate estimators run.
    pub run_estimation: bool,
}

impl Default for Sysctl {
    fn default() -> Self {
        Sysctl {
            conn_reuse_mode: 1,
            expire_nodest_conn: false,
            expire_quiescent_template: false,
            sloppy_tcp: false,
            secure_tcp: false,
            nat_icmp_send: false,
            lblc_expiration: Duration::from_secs(24 * 3600),
            lblcr_expiration: Duration::from_secs(24 * 3600),
            run_estimation: true,
        }
    }
}

/// Connection timeouts per protocol state.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP timeouts by state.
    pub tcp: TcpTimeouts,
    /// The UDP timeout.
    pub udp: Duration,
}

/// Largest timeout `--set` accepts, in seconds (ipvsadm's limit, 31 days).
pub const MAX_SET_TIMEOUT: u32 = 2_678_400;

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::new()
    }
}

impl Timeouts {
    /// Kernel defaults: TCP 900 s established, 120 s FIN_WAIT, UDP 300 s.
    pub fn new() -> Self {
        Timeouts { tcp: TcpTimeouts::default(), udp: Duration::from_secs(300) }
    }

    /// `ipvsadm --set tcp tcpfin udp`: a 0 keeps the current value.
    pub fn set(&mut self, tcp: u32, tcpfin: u32, udp: u32) {
        let s = |v: u32| Duration::from_secs(u64::from(v));
        if tcp != 0 {
            self.tcp.0[TcpState::Established as usize] = s(tcp);
        }
        if tcpfin != 0 {
            self.tcp.0[TcpState::FinWait as usize] = s(tcpfin);
        }
        if udp != 0 {
            self.udp = s(udp);
        }
    }

    /// The three values `ipvsadm -L --timeout` shows, in seconds.
    pub fn shown(&self) -> (u64, u64, u64) {
        (self.tcp.get(TcpState::Established).as_secs(), self.tcp.get(TcpState::FinWait).as_secs(), self.udp.as_secs())
    }
}
