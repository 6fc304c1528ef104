//! # xvs-sync
//!
//! The IPVS connection synchronisation protocol, as the Linux kernel's sync daemon speaks it
//! (`net/netfilter/ipvs/ip_vs_sync.c`): a master multicasts the connections it balances so
//! that a backup director can take over without breaking them.
//!
//! This crate is the protocol without the sockets. It does no I/O and reads no clock: time
//! is an [`Instant`] argument, datagrams go in and out as byte slices. That keeps every
//! behaviour testable without root, and lets xvsd choose how to send (the kernel uses UDP to
//! 224.0.0.81:8848, TTL 1, multicast loop off; see [`SYNC_GROUP_V4`], [`SYNC_PORT`]).
//!
//! * [`wire`]: the message formats (version 1, and version 0 for reading), with smoltcp-style
//!   `Packet` views and [`SyncConn`] as the parsed meaning of one entry; [`MessageBuilder`]
//!   packs entries into messages no longer than `sync_maxlen`.
//! * [`Master`]: fed snapshots of the connection table (xvs's dataplane cannot call out per
//!   packet as the kernel does), decides what to send and when.
//! * [`Backup`]: filters by sync ID, validates and decodes received datagrams, and counts
//!   what it saw in [`Stats`].
//!
//! It is not a connection table: applying received entries (binding them to real servers,
//! expiring them) is the caller's business, as `ip_vs_proc_conn` is separate from the
//! decoding in the kernel.

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod backup;
mod consts;
mod master;
pub mod wire;

pub use backup::{Backup, BackupConfig, Error, Received, Rejected, Stats};
pub use consts::{
    conn_flags, proto, sctp_state, tcp_state, tpl_state, udp_state, PEDATA_MAXLEN, PENAME_MAXLEN, SYNC_GROUP_V4,
    SYNC_PORT, SYNC_PROTO_VER,
};
pub use master::{ConnKey, Master, MasterConfig, MasterStats, Refresh};
pub use wire::{EmitError, EntryError, Message, MessageBuilder, MessageError, PeData, Seq, SeqData, SyncConn, Version};
pub use xvs_core::time::Instant;

/// Which end of the protocol a daemon is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends (`--start-daemon master`).
    Master,
    /// Receives (`--start-daemon backup`).
    Backup,
}

/// The `sync_maxlen` the kernel uses (`start_sync_thread`): the most UDP payload per message.
///
/// `requested` is ipvsadm's `--sync-maxlen` (0 = not given). Without it a master uses
/// 1500 − IP − UDP headers (1472 over IPv4, 1452 over IPv6) whatever the interface MTU, so
/// messages are never fragmented on a standard link; a backup sizes its receive buffer from
/// the interface MTU clamped to 1500..=65535. A given value is clamped to
/// `1..=65535 − headers` for a master and `1024..=65535 − headers` for a backup.
///
/// (Kernels before 4.3 derived the master's size from the interface MTU in
/// `set_sync_mesg_maxlen`; 4.3 replaced that with this.)
pub fn sync_maxlen(role: Role, mcast_ipv6: bool, dev_mtu: u32, requested: u32) -> usize {
    let hlen: u32 = if mcast_ipv6 { 40 + 8 } else { 20 + 8 };
    let (mtu, min) = match role {
        Role::Backup => (dev_mtu.clamp(1500, 65535), 1024),
        Role::Master => (1500, 1),
    };
    let len = if requested != 0 { requested.clamp(min, 65535 - hlen) } else { mtu - hlen };
    len as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_maxlen_ignores_the_interface_mtu() {
        assert_eq!(sync_maxlen(Role::Master, false, 9000, 0), 1472);
        assert_eq!(sync_maxlen(Role::Master, true, 1280, 0), 1452);
        assert_eq!(sync_maxlen(Role::Master, false, 1500, 100_000), 65507);
        assert_eq!(sync_maxlen(Role::Master, false, 1500, 200), 200);
    }

    #[test]
    fn backup_maxlen_follows_the_interface_mtu() {
        assert_eq!(sync_maxlen(Role::Backup, false, 9000, 0), 8972);
        assert_eq!(sync_maxlen(Role::Backup, false, 576, 0), 1472);
        assert_eq!(sync_maxlen(Role::Backup, false, 1500, 200), 1024);
    }
}
