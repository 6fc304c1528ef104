//! The SCTP state machine of IPVS (`ip_vs_proto_sctp.c`), as data.
//!
//! IPVS follows an association by the type of the first chunk of each packet (an ABORT bundled
//! right after a COOKIE_ECHO or COOKIE_ACK counts as ABORT), the direction of the packet and the
//! current state. The table below is the kernel's; every cell a client, a NAT real server or a
//! direct-routing client can reach was recorded on Linux 6.1 and 6.12
//! (`testdata/kernel/sctp-6.*.txt`) and is replayed against it by `tests/kernel_recordings.rs`.
//! The dataplane's copy (`bpf/include/sctp_states.h`) is rendered from these arrays by
//! [`c_header`], and a test keeps the two equal.

use core::time::Duration;

use super::tcp::Direction;

/// An SCTP association state, with the kernel's numbering (`enum ip_vs_sctp_states`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SctpState {
    /// No packet processed yet.
    None = 0,
    /// The client's first INIT seen.
    Init1 = 1,
    /// A repeated INIT seen.
    Init = 2,
    /// The server's INIT_ACK seen.
    CookieSent = 3,
    /// The client's COOKIE_ECHO seen after the INIT_ACK.
    CookieReplied = 4,
    /// The server's INIT seen (an association set up from the server's side).
    CookieWait = 5,
    /// The client's INIT_ACK to it.
    Cookie = 6,
    /// A COOKIE_ECHO from the server, or an INIT_ACK only the client's side saw.
    CookieEchoed = 7,
    /// ESTABLISHED.
    Established = 8,
    /// SHUTDOWN sent by the server.
    ShutdownSent = 9,
    /// SHUTDOWN sent by the client.
    ShutdownReceived = 10,
    /// SHUTDOWN_ACK sent by the server.
    ShutdownAckSent = 11,
    /// An INIT answered with ABORT.
    Rejected = 12,
    /// CLOSED.
    Closed = 13,
}

/// Number of SCTP states.
pub const SCTP_STATES: usize = 14;
/// Number of SCTP events (`IP_VS_SCTP_EVENT_LAST`).
pub const SCTP_EVENTS: usize = 10;

impl SctpState {
    /// All states by number.
    pub const ALL: [SctpState; SCTP_STATES] = [
        SctpState::None,
        SctpState::Init1,
        SctpState::Init,
        SctpState::CookieSent,
        SctpState::CookieReplied,
        SctpState::CookieWait,
        SctpState::Cookie,
        SctpState::CookieEchoed,
        SctpState::Established,
        SctpState::ShutdownSent,
        SctpState::ShutdownReceived,
        SctpState::ShutdownAckSent,
        SctpState::Rejected,
        SctpState::Closed,
    ];

    /// The state with the kernel's number `n`.
    pub fn from_u8(n: u8) -> Option<SctpState> {
        SctpState::ALL.get(usize::from(n)).copied()
    }

    /// The name `ipvsadm -Lc` prints (the kernel's `sctp_state_name_table`).
    pub const fn name(self) -> &'static str {
        match self {
            SctpState::None => "NONE",
            SctpState::Init1 => "INIT1",
            SctpState::Init => "INIT",
            SctpState::CookieSent => "C-SENT",
            SctpState::CookieReplied => "C-REPLIED",
            SctpState::CookieWait => "C-WAIT",
            SctpState::Cookie => "COOKIE",
            SctpState::CookieEchoed => "C-ECHOED",
            SctpState::Established => "ESTABLISHED",
            SctpState::ShutdownSent => "S-SENT",
            SctpState::ShutdownReceived => "S-RECEIVED",
            SctpState::ShutdownAckSent => "S-ACK-SENT",
            SctpState::Rejected => "REJECTED",
            SctpState::Closed => "CLOSED",
        }
    }

    /// The state `ipvsadm -Lc` names `name`.
    pub fn from_name(name: &str) -> Option<SctpState> {
        SctpState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Only ESTABLISHED counts in ActiveConn (recorded: `sctp-6.*.txt`, "ActiveConn").
    pub const fn is_active(self) -> bool {
        matches!(self, SctpState::Established)
    }

    /// The kernel's timeout of this state (`sctp_timeouts`; ipvsadm cannot set them).
    pub const fn timeout(self) -> Duration {
        const MAX_RTO: u64 = 61;
        Duration::from_secs(match self {
            SctpState::None => 2,
            SctpState::Init1 | SctpState::Rejected => 4,
            SctpState::Established => 900,
            _ => MAX_RTO,
        })
    }
}

/// Chunk types (RFC 9260 §3.2).
pub mod chunk {
    #![allow(missing_docs)]
    pub const DATA: u8 = 0;
    pub const INIT: u8 = 1;
    pub const INIT_ACK: u8 = 2;
    pub const SACK: u8 = 3;
    pub const HEARTBEAT: u8 = 4;
    pub const HEARTBEAT_ACK: u8 = 5;
    pub const ABORT: u8 = 6;
    pub const SHUTDOWN: u8 = 7;
    pub const SHUTDOWN_ACK: u8 = 8;
    pub const ERROR: u8 = 9;
    pub const COOKIE_ECHO: u8 = 10;
    pub const COOKIE_ACK: u8 = 11;
    pub const ECNE: u8 = 12;
    pub const CWR: u8 = 13;
    pub const SHUTDOWN_COMPLETE: u8 = 14;
}

/// What the state machine reads from an SCTP packet: its first chunk's type, and the type of
/// the chunk after it when there is one (an ABORT there overrides a COOKIE_ECHO or COOKIE_ACK).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SctpChunks {
    /// Type of the first chunk.
    pub first: u8,
    /// Type of the second chunk (at the first one's length rounded up to 4), if present.
    pub second: Option<u8>,
}

impl SctpChunks {
    /// A packet with one chunk of type `t`.
    pub const fn one(t: u8) -> SctpChunks {
        SctpChunks { first: t, second: None }
    }

    /// True if the first chunk is an INIT (what may open a connection, and a reuse).
    pub const fn is_init(self) -> bool {
        self.first == chunk::INIT
    }

    /// True if the first chunk is an ABORT (never opens a connection).
    pub const fn is_abort(self) -> bool {
        self.first == chunk::ABORT
    }

    /// The table row (`sctp_events`): data 0, init 1, init_ack 2, cookie_echo 3, cookie_ack 4,
    /// shutdown 5, shutdown_ack 6, shutdown_complete 7, error 8, abort 9; unknown types are data.
    pub fn event(self) -> usize {
        let t = match (self.first, self.second) {
            (chunk::COOKIE_ECHO | chunk::COOKIE_ACK, Some(chunk::ABORT)) => chunk::ABORT,
            (t, _) => t,
        };
        event_of(t)
    }
}

/// The event a chunk type stands for (`sctp_events`).
pub const fn event_of(t: u8) -> usize {
    match t {
        chunk::INIT => 1,
        chunk::INIT_ACK => 2,
        chunk::COOKIE_ECHO => 3,
        chunk::COOKIE_ACK => 4,
        chunk::SHUTDOWN => 5,
        chunk::SHUTDOWN_ACK => 6,
        chunk::SHUTDOWN_COMPLETE => 7,
        chunk::ERROR => 8,
        chunk::ABORT => 9,
        _ => 0,
    }
}

use SctpState::{
    Closed as CL, Cookie as CO, CookieEchoed as CE, CookieReplied as CR, CookieSent as CS, CookieWait as CW,
    Established as ES, Init as IN, Init1 as I1, Rejected as RJ, ShutdownAckSent as SA, ShutdownReceived as SR,
    ShutdownSent as SS,
};

/// `[direction][event][state] → next state` (`sctp_states`).
pub type SctpTable = [[[SctpState; SCTP_STATES]; SCTP_EVENTS]; 3];

/// The kernel's table.
#[rustfmt::skip]
pub const SCTP_STATE_TABLE: SctpTable = [
    // INPUT           NO  I1  IN  CS  CR  CW  CO  CE  ES  SS  SR  SA  RJ  CL
    [/* data */       [ES, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
     /* init */       [I1, IN, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, IN, IN],
     /* init_ack */   [CW, CW, CW, CS, CR, CO, CO, CE, ES, SS, SR, SA, RJ, CL],
     /* cookie_echo */[CR, IN, IN, CR, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
     /* cookie_ack */ [ES, I1, IN, CS, CR, CW, CO, ES, ES, SS, SR, SA, RJ, CL],
     /* shutdown */   [SR, I1, IN, CS, CR, CW, CO, CE, SR, SS, SR, SA, RJ, CL],
     /* shut_ack */   [CL, IN, IN, CS, CR, CW, CO, CE, ES, CL, SR, CL, RJ, CL],
     /* shut_compl */ [CL, CL, CL, CS, CR, CW, CO, CE, ES, SS, SR, CL, RJ, CL],
     /* error */      [CL, I1, IN, CS, CR, CW, CO, CL, ES, SS, SR, SA, RJ, CL],
     /* abort */      [CL, CL, CL, CL, CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL]],
    // OUTPUT
    [/* data */       [ES, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
     /* init */       [CW, CW, CW, CW, CW, CW, CW, CW, ES, CW, CW, CW, CW, CW],
     /* init_ack */   [CS, CS, CS, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
     /* cookie_echo */[CE, CE, CE, CE, CE, CE, CE, CE, ES, SS, SR, SA, RJ, CL],
     /* cookie_ack */ [ES, ES, ES, ES, ES, ES, ES, ES, ES, SS, SR, SA, RJ, CL],
     /* shutdown */   [SS, SS, SS, SS, SS, SS, SS, SS, SS, SS, SR, SA, RJ, CL],
     /* shut_ack */   [SA, SA, SA, SA, SA, CW, CO, CE, ES, SA, SA, SA, RJ, CL],
     /* shut_compl */ [CL, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
     /* error */      [CL, CL, CL, CL, CL, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
     /* abort */      [CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL]],
    // INPUT_ONLY
    [/* data */       [ES, I1, IN, CS, CR, ES, CO, CE, ES, SS, SR, SA, RJ, CL],
     /* init */       [I1, IN, IN, IN, IN, IN, CO, CE, ES, SS, SR, SA, IN, IN],
     /* init_ack */   [CE, CE, CE, CE, CE, CE, CO, CE, ES, SS, SR, SA, RJ, CL],
     /* cookie_echo */[ES, ES, ES, ES, ES, ES, CO, CE, ES, SS, SR, SA, RJ, CL],
     /* cookie_ack */ [ES, I1, IN, ES, ES, CW, ES, ES, ES, SS, SR, SA, RJ, CL],
     /* shutdown */   [SR, I1, IN, CS, CR, CW, CO, CE, SR, SS, SR, SA, RJ, CL],
     /* shut_ack */   [CL, IN, IN, CS, CR, CW, CO, CE, CL, CL, SR, CL, RJ, CL],
     /* shut_compl */ [CL, CL, CL, CL, CL, CW, CO, CE, ES, SS, CL, CL, RJ, CL],
     /* error */      [CL, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
     /* abort */      [CL, CL, CL, CL, CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL]],
];

/// The next state for a packet carrying `chunks` travelling in `dir` on an association in
/// `state` (`set_sctp_state`; `dir` is already INPUT_ONLY while no reply was seen).
pub fn next_state(dir: Direction, chunks: SctpChunks, state: SctpState) -> SctpState {
    SCTP_STATE_TABLE[dir as usize][chunks.event()][state as usize]
}

/// The dataplane's copy of the table and the timeouts, as the C header
/// `bpf/include/sctp_states.h` holds it.
pub fn c_header() -> String {
    let mut s = String::from(
        "/* Generated from xvs_core::conn::sctp by `c_header()`; a test keeps it equal to the core's\n \
         * table (UPDATE_SCTP_HEADER=1 cargo test -p xvs-core sctp_header rewrites it). */\n\
         #ifndef XVS_SCTP_STATES_H\n#define XVS_SCTP_STATES_H\n\n",
    );
    s.push_str(&format!("#define XVS_SCTP_STATES {SCTP_STATES}\n#define XVS_SCTP_EVENTS {SCTP_EVENTS}\n\n"));
    s.push_str("/* [direction][event][state] -> next state (kernel numbering). */\n");
    s.push_str("static const __u8 xvs_sctp_next[3][XVS_SCTP_EVENTS][XVS_SCTP_STATES] = {\n");
    for dir in &SCTP_STATE_TABLE {
        s.push_str("\t{\n");
        for row in dir {
            let cells: Vec<String> = row.iter().map(|c| (*c as u8).to_string()).collect();
            s.push_str(&format!("\t\t{{ {} }},\n", cells.join(", ")));
        }
        s.push_str("\t},\n");
    }
    s.push_str("};\n\n/* Timeouts in ms by state. */\nstatic const __u32 xvs_sctp_timeout_ms[XVS_SCTP_STATES] = {\n\t");
    let t: Vec<String> = SctpState::ALL.iter().map(|st| st.timeout().as_millis().to_string()).collect();
    s.push_str(&t.join(", "));
    s.push_str(",\n};\n\n#endif\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abort_after_a_cookie_chunk_is_the_event() {
        let c = |first, second| SctpChunks { first, second: Some(second) };
        assert_eq!(c(chunk::COOKIE_ECHO, chunk::ABORT).event(), 9);
        assert_eq!(c(chunk::COOKIE_ACK, chunk::ABORT).event(), 9);
        assert_eq!(c(chunk::DATA, chunk::ABORT).event(), 0);
        assert_eq!(c(chunk::COOKIE_ECHO, chunk::DATA).event(), 3);
        assert_eq!(SctpChunks::one(0x40).event(), 0);
        assert_eq!(SctpChunks::one(chunk::SACK).event(), 0);
    }

    #[test]
    fn names_round_trip() {
        for s in SctpState::ALL {
            assert_eq!(SctpState::from_name(s.name()), Some(s));
            assert_eq!(SctpState::from_u8(s as u8), Some(s));
        }
    }

    /// The dataplane's header is this table (UPDATE_SCTP_HEADER=1 rewrites it).
    #[test]
    fn sctp_header_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bpf/include/sctp_states.h");
        let want = c_header();
        if std::env::var_os("UPDATE_SCTP_HEADER").is_some() {
            std::fs::write(path, &want).expect("writing the header");
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "bpf/include/sctp_states.h is stale: run UPDATE_SCTP_HEADER=1 cargo test -p xvs-core sctp_header"
        );
    }
}
