//! The TCP state tables, cell by cell, against the text of reference §3.4.
//!
//! The tables below are pasted from `shared/reference/ipvs.md` verbatim; the test parses them
//! and compares every one of the 2 × 3 × 4 × 11 cells with the arrays the core (and, through
//! them, the dataplane) uses.

use xvs_core::conn::tcp::{next_state, Direction, StateTable, TCP_STATES_NORMAL, TCP_STATES_SECURE};
use xvs_core::{TcpFlags, TcpState};

const NORMAL: &str = "
INPUT       syn: SR ES ES SR SR SR SR SR SR SR SR
            fin: CL CW SS TW TW TW CL CW LA LI TW
            ack: ES ES SS ES FW TW CL CW CL LI ES
            rst: CL CL CL SR CL CL CL CL LA LI SR
OUTPUT      syn: SS ES SS SR SS SS SS SS SS LI SR
            fin: TW FW SS TW FW TW CL TW LA LI TW
            ack: ES ES SS ES FW TW CL CW LA ES ES
            rst: CL CL SS CL CL TW CL CL CL CL CL
INPUT_ONLY  syn: SR ES ES SR SR SR SR SR SR SR SR
            fin: CL FW SS TW FW TW CL CW LA LI TW
            ack: ES ES SS ES FW TW CL CW CL LI ES
            rst: CL CL CL SR CL CL CL CL LA LI CL
";

const SECURE: &str = "
INPUT       syn: SR ES ES SR SR SR SR SR SR SR SA
            fin: CL CW SS TW TW TW CL CW LA LI SA
            ack: ES ES SS SR FW TW CL CW CL LI SA
            rst: CL CL CL SR CL CL CL CL LA LI CL
OUTPUT      syn: SS ES SS SA SS SS SS SS SS LI SA
            fin: TW FW SS TW FW TW CL TW LA LI TW
            ack: ES ES SS ES FW TW CL CW LA ES ES
            rst: CL CL SS CL CL TW CL CL CL CL CL
INPUT_ONLY  syn: SA ES ES SR SA SA SA SA SA SA SA
            fin: CL FW SS TW FW TW CL CW LA LI TW
            ack: ES ES SS ES FW TW CL CW CL LI ES
            rst: CL CL CL SR CL CL CL CL LA LI CL
";

fn state(abbr: &str) -> TcpState {
    let names = ["NO", "ES", "SS", "SR", "FW", "TW", "CL", "CW", "LA", "LI", "SA"];
    let i = names.iter().position(|n| *n == abbr).unwrap_or_else(|| panic!("unknown state {abbr}"));
    TcpState::from_u8(i as u8).unwrap()
}

fn check(text: &str, table: &StateTable) -> usize {
    let dirs = [Direction::Input, Direction::Output, Direction::InputOnly];
    let flags = [("syn", TcpFlags::SYN), ("fin", TcpFlags::FIN), ("ack", TcpFlags::ACK), ("rst", TcpFlags::RST)];
    let rows: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(rows.len(), 12);
    let mut cells = 0;
    for (r, row) in rows.iter().enumerate() {
        let (dir, (ev_name, ev)) = (dirs[r / 4], flags[r % 4]);
        let (label, cols) = row.split_once(':').unwrap();
        assert!(label.trim_end().ends_with(ev_name), "row {r} is `{label}`");
        for (s, abbr) in cols.split_whitespace().enumerate() {
            let from = TcpState::from_u8(s as u8).unwrap();
            assert_eq!(
                next_state(table, dir, TcpFlags(ev), from),
                state(abbr),
                "{dir:?} {ev_name} from {}",
                from.name()
            );
            cells += 1;
        }
    }
    cells
}

#[test]
fn normal_table_matches_the_reference_cell_by_cell() {
    assert_eq!(check(NORMAL, &TCP_STATES_NORMAL), 132);
}

#[test]
fn secure_table_matches_the_reference_cell_by_cell() {
    assert_eq!(check(SECURE, &TCP_STATES_SECURE), 132);
}

#[test]
fn combined_flags_use_the_strongest() {
    // SYN+ACK is a SYN event; FIN+ACK a FIN event; RST wins over everything.
    let t = &TCP_STATES_NORMAL;
    assert_eq!(
        next_state(t, Direction::Output, TcpFlags(TcpFlags::SYN | TcpFlags::ACK), TcpState::SynRecv),
        TcpState::SynRecv
    );
    assert_eq!(
        next_state(t, Direction::Input, TcpFlags(TcpFlags::FIN | TcpFlags::ACK), TcpState::Established),
        TcpState::CloseWait
    );
    assert_eq!(next_state(t, Direction::Input, TcpFlags(0x17), TcpState::Established), TcpState::Close);
}

/// The dataplane's fast path skips the state machine for an established connection's plain
/// ACK from the client (bpf/xvs_lb.bpf.c, `forward`): that is only right while every table
/// keeps ESTABLISHED there, with and without a reply seen.
#[test]
fn an_established_connections_ack_from_the_client_stays_established_in_every_table() {
    for table in [&TCP_STATES_NORMAL, &TCP_STATES_SECURE] {
        for dir in [Direction::Input, Direction::InputOnly] {
            assert_eq!(
                next_state(table, dir, TcpFlags(TcpFlags::ACK), TcpState::Established),
                TcpState::Established,
                "{dir:?}"
            );
        }
    }
}
