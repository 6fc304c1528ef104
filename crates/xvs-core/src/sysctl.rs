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
    /// `sloppy_sctp`: any SCTP packet but an ABORT may open a connection. Kept and shown;
    /// xvs balances no SCTP, so it changes nothing.
    pub sloppy_sctp: bool,
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
            sloppy_sctp: false,
            secure_tcp: false,
            nat_icmp_send: false,
            lblc_expiration: Duration::from_secs(24 * 3600),
            lblcr_expiration: Duration::from_secs(24 * 3600),
            run_estimation: true,
        }
    }
}

impl Sysctl {
    /// The names `net.ipv4.vs.*` gives them, in the kernel's order.
    pub const NAMES: [&'static str; 10] = [
        "conn_reuse_mode",
        "expire_nodest_conn",
        "expire_quiescent_template",
        "lblc_expiration",
        "lblcr_expiration",
        "nat_icmp_send",
        "run_estimation",
        "secure_tcp",
        "sloppy_sctp",
        "sloppy_tcp",
    ];

    /// The value of `name` as `sysctl net.ipv4.vs.NAME` prints it (seconds for expirations).
    pub fn get(&self, name: &str) -> Option<u64> {
        Some(match name {
            "conn_reuse_mode" => u64::from(self.conn_reuse_mode),
            "expire_nodest_conn" => u64::from(self.expire_nodest_conn),
            "expire_quiescent_template" => u64::from(self.expire_quiescent_template),
            "lblc_expiration" => self.lblc_expiration.as_secs(),
            "lblcr_expiration" => self.lblcr_expiration.as_secs(),
            "nat_icmp_send" => u64::from(self.nat_icmp_send),
            "run_estimation" => u64::from(self.run_estimation),
            // Only levels 2 and 3 change behaviour (the stricter table): read back as 0 or 2.
            "secure_tcp" => u64::from(self.secure_tcp) * 2,
            "sloppy_tcp" => u64::from(self.sloppy_tcp),
            "sloppy_sctp" => u64::from(self.sloppy_sctp),
            _ => return None,
        })
    }

    /// Sets `name` to `value`, with the ranges the kernel takes; an error names what is wrong.
    pub fn set(&mut self, name: &str, value: u64) -> Result<(), String> {
        let flag = |v: u64| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(format!("{name} is 0 or 1, not {v}")),
        };
        match name {
            "conn_reuse_mode" if value <= 3 => self.conn_reuse_mode = value as u32,
            "conn_reuse_mode" => return Err(format!("conn_reuse_mode is 0 to 3, not {value}")),
            "expire_nodest_conn" => self.expire_nodest_conn = flag(value)?,
            "expire_quiescent_template" => self.expire_quiescent_template = flag(value)?,
            "lblc_expiration" | "lblcr_expiration" if value > u64::from(MAX_SET_TIMEOUT) => {
                return Err(format!("{name} is at most {MAX_SET_TIMEOUT} seconds"))
            }
            "lblc_expiration" => self.lblc_expiration = Duration::from_secs(value),
            "lblcr_expiration" => self.lblcr_expiration = Duration::from_secs(value),
            "nat_icmp_send" => self.nat_icmp_send = flag(value)?,
            "run_estimation" => self.run_estimation = flag(value)?,
            "secure_tcp" if value <= 3 => self.secure_tcp = value >= 2,
            "secure_tcp" => return Err(format!("secure_tcp is 0 to 3, not {value}")),
            "sloppy_tcp" => self.sloppy_tcp = flag(value)?,
            "sloppy_sctp" => self.sloppy_sctp = flag(value)?,
            _ => return Err(format!("unknown setting '{name}' (one of {})", Self::NAMES.join(", "))),
        }
        Ok(())
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

#[cfg(test)]
mod sysctl_tests {
    use super::*;

    #[test]
    fn settings_by_name_with_the_kernels_ranges() {
        let mut s = Sysctl::default();
        for n in Sysctl::NAMES {
            assert!(s.get(n).is_some(), "{n}");
        }
        s.set("sloppy_tcp", 1).unwrap();
        assert!(s.sloppy_tcp);
        assert_eq!(s.get("sloppy_tcp"), Some(1));
        s.set("lblc_expiration", 60).unwrap();
        assert_eq!(s.lblc_expiration, Duration::from_secs(60));
        assert!(s.set("sloppy_tcp", 2).unwrap_err().contains("0 or 1"));
        assert!(s.set("conn_reuse_mode", 4).is_err());
        assert!(s.set("sloppy", 1).unwrap_err().contains("unknown setting 'sloppy'"));
        assert_eq!(s.get("nope"), None);
    }
}
