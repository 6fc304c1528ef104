//! `ipvsadm -Lnc` as the kernel recordings in testdata/sync print it.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use xvs_sync::*;

/// One line of `ipvsadm -Lnc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub protocol: u8,
    pub expire_s: u32,
    pub state: String,
    pub source: SocketAddr,
    pub virt: SocketAddr,
    pub dest: SocketAddr,
}

/// Reads a recorded `ipvsadm -Lnc`.
pub fn listing(text: &str) -> Vec<Listed> {
    text.lines()
        .skip(2) // "IPVS connection entries", column titles
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (m, s) = f[1].split_once(':').expect("mm:ss");
            Listed {
                protocol: match f[0] {
                    "TCP" => proto::TCP,
                    "UDP" => proto::UDP,
                    other => panic!("protocol {other}"),
                },
                expire_s: m.parse::<u32>().expect("mm") * 60 + s.parse::<u32>().expect("ss"),
                state: f[2].to_string(),
                source: f[3].parse().expect("source"),
                virt: f[4].parse().expect("virtual"),
                dest: f[5].parse().expect("destination"),
            }
        })
        .collect()
}

/// The name `ipvsadm -Lnc` prints for an entry's state (`ip_vs_state_name`).
pub fn state_name(c: &SyncConn) -> &'static str {
    if c.is_template() {
        return ["NONE", "ASSURED"][usize::from(c.state)];
    }
    match c.protocol {
        proto::UDP => "UDP",
        _ => [
            "NONE",
            "ESTABLISHED",
            "SYN_SENT",
            "SYN_RECV",
            "FIN_WAIT",
            "TIME_WAIT",
            "CLOSE",
            "CLOSE_WAIT",
            "LAST_ACK",
            "LISTEN",
            "SYNACK",
        ][usize::from(c.state)],
    }
}
