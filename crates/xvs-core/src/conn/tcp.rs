//! The TCP state machine of IPVS (`ip_vs_proto_tcp.c`, reference §3.4), as data.
//!
//! IPVS does not track TCP like a firewall: it follows a coarse table indexed by the direction
//! of the packet, the strongest flag it carries (RST > SYN > FIN > ACK; none at all means
//! CLOSE), and the current state. The tables below are copied cell by cell from the kernel; the
//! test module checks a few dozen cells against the reference text, and the dataplane's C
//! table is generated from these arrays (see `xvs-abi`), so the two cannot drift apart.

use core::time::Duration;

/// A TCP connection state, with the kernel's numbering.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    /// No packet processed yet.
    None = 0,
    /// ESTABLISHED.
    Established = 1,
    /// SYN_SENT.
    SynSent = 2,
    /// SYN_RECV.
    SynRecv = 3,
    /// FIN_WAIT.
    FinWait = 4,
    /// TIME_WAIT.
    TimeWait = 5,
    /// CLOSE.
    Close = 6,
    /// CLOSE_WAIT.
    CloseWait = 7,
    /// LAST_ACK.
    LastAck = 8,
    /// LISTEN.
    Listen = 9,
    /// SYNACK.
    SynAck = 10,
}

/// Number of TCP states.
pub const TCP_STATES: usize = 11;

impl TcpState {
    /// All states by number.
    pub const ALL: [TcpState; TCP_STATES] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];

    /// The state with the kernel's number `n`.
    pub fn from_u8(n: u8) -> Option<TcpState> {
        TcpState::ALL.get(usize::from(n)).copied()
    }

    /// The name `ipvsadm -Lc` prints.
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }

    /// True for the states counted in ActiveConn: ESTABLISHED, SYN_SENT, SYN_RECV, SYNACK.
    pub const fn is_active(self) -> bool {
        matches!(self, TcpState::Established | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck)
    }
}

/// The direction a packet travels relative to the connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → server, through the director.
    Input = 0,
    /// Server → client, through the director (NAT replies).
    Output = 1,
    /// Client → server while no reply was ever seen (DR, TUN): the director sees one side.
    InputOnly = 2,
}

/// The TCP flags that drive the state machine.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;

    /// True if SYN is set.
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }

    /// True if RST is set.
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }

    /// The table row for these flags (`tcp_state_idx`): RST 3, SYN 0, FIN 1, ACK 2, none `None`.
    pub fn event(self) -> Option<usize> {
        if self.0 & Self::RST != 0 {
            Some(3)
        } else if self.0 & Self::SYN != 0 {
            Some(0)
        } else if self.0 & Self::FIN != 0 {
            Some(1)
        } else if self.0 & Self::ACK != 0 {
            Some(2)
        } else {
            None
        }
    }
}

use TcpState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI, SynAck as SA,
    SynRecv as SR, SynSent as SS, TimeWait as TW,
};

/// `[direction][event][state] → next state`; events are syn, fin, ack, rst.
pub type StateTable = [[[TcpState; TCP_STATES]; 4]; 3];

/// The normal table (`tcp_states`).
#[rustfmt::skip]
pub const TCP_STATES_NORMAL: StateTable = [
    // INPUT         NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
    [/* syn */      [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
     /* fin */      [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
     /* ack */      [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
     /* rst */      [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR]],
    // OUTPUT
    [/* syn */      [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
     /* fin */      [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
     /* ack */      [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
     /* rst */      [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL]],
    // INPUT_ONLY
    [/* syn */      [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
     /* fin */      [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
     /* ack */      [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
     /* rst */      [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL]],
];

/// The table used while the `secure_tcp` defence is at level ≥ 2 (`tcp_states_dos`).
#[rustfmt::skip]
pub const TCP_STATES_SECURE: StateTable = [
    // INPUT         NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
    [/* syn */      [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SA],
     /* fin */      [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, SA],
     /* ack */      [ES, ES, SS, SR, FW, TW, CL, CW, CL, LI, SA],
     /* rst */      [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL]],
    // OUTPUT
    [/* syn */      [SS, ES, SS, SA, SS, SS, SS, SS, SS, LI, SA],
     /* fin */      [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
     /* ack */      [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
     /* rst */      [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL]],
    // INPUT_ONLY
    [/* syn */      [SA, ES, ES, SR, SA, SA, SA, SA, SA, SA, SA],
     /* fin */      [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
     /* ack */      [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
     /* rst */      [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL]],
];

/// The next state for a packet with `flags` travelling in `dir` on a connection in `state`.
pub fn next_state(table: &StateTable, dir: Direction, flags: TcpFlags, state: TcpState) -> TcpState {
    match flags.event() {
        Some(ev) => table[dir as usize][ev][state as usize],
        None => TcpState::Close,
    }
}

/// Per-state timeouts (`tcp_timeouts`), settable in part with `ipvsadm --set`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TcpTimeouts(pub [Duration; TCP_STATES]);

impl Default for TcpTimeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        TcpTimeouts([s(2), s(900), s(120), s(60), s(120), s(120), s(10), s(60), s(30), s(120), s(120)])
    }
}

impl TcpTimeouts {
    /// The timeout of `state`.
    pub fn get(&self, state: TcpState) -> Duration {
        self.0[state as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(bits: u8) -> TcpFlags {
        TcpFlags(bits)
    }

    #[test]
    fn flag_priority_is_rst_syn_fin_ack() {
        assert_eq!(f(TcpFlags::RST | TcpFlags::SYN).event(), Some(3));
        assert_eq!(f(TcpFlags::SYN | TcpFlags::ACK).event(), Some(0));
        assert_eq!(f(TcpFlags::FIN | TcpFlags::ACK).event(), Some(1));
        assert_eq!(f(TcpFlags::ACK).event(), Some(2));
        assert_eq!(f(0).event(), None);
    }

    #[test]
    fn a_packet_without_flags_closes() {
        for s in TcpState::ALL {
            assert_eq!(next_state(&TCP_STATES_NORMAL, Direction::Input, f(0), s), TcpState::Close);
        }
    }

    #[test]
    fn default_timeouts_match_the_kernel() {
        let t = TcpTimeouts::default();
        assert_eq!(t.get(TcpState::Established), Duration::from_secs(900));
        assert_eq!(t.get(TcpState::SynRecv), Duration::from_secs(60));
        assert_eq!(t.get(TcpState::Close), Duration::from_secs(10));
        assert_eq!(t.get(TcpState::LastAck), Duration::from_secs(30));
    }
}
