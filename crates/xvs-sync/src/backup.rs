//! The receiving end: `ip_vs_process_message` without the connection table.
//!
//! For each datagram the kernel's backup thread, in order:
//!
//! 1. reads at most `sync_maxlen` bytes (a longer datagram is truncated, and so fails 3);
//! 2. drops datagrams shorter than 4 bytes;
//! 3. drops datagrams whose header `size` is not their length;
//! 4. ignores messages from another sync ID, unless its own sync ID is 0 (accept any);
//! 5. reads version 1 if `version == 1 && reserved == 0 && spare == 0`, version 0 otherwise;
//! 6. walks `nr_conns` entries: some errors skip one entry, others drop the rest of the
//!    message (entries before stay applied);
//! 7. per entry, keeps only `IP_VS_CONN_F_BACKUP_MASK` of the flags (version 0: clears
//!    `HASHED`) and adds `SYNC`; skips entries whose protocol IPVS does not handle or whose
//!    state is out of range (templates are exempt), and entries naming a persistence engine
//!    it does not have.
//!
//! [`Backup::handle_datagram`] does the same and returns the entries to apply.

use crate::consts::{conn_flags, proto};
use crate::wire::{EntryError, Message, MessageError, SyncConn, Version};
use xvs_core::time::Instant;

/// What the backup accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// Accept only messages from this sync ID; 0 accepts any (`--syncid`, as the kernel).
    pub syncid: u8,
    /// The receive buffer: longer datagrams are truncated and then fail the size check. See
    /// [`crate::sync_maxlen`] with [`crate::Role::Backup`].
    pub maxlen: usize,
    /// Persistence engines this backup has (the kernel: loaded `ip_vs_pe_*` modules).
    /// Entries carrying data for another engine are skipped. Empty by default: xvs has none.
    pub pe_names: Vec<String>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            syncid: 0,
            maxlen: crate::sync_maxlen(crate::Role::Backup, false, 1500, 0),
            pe_names: Vec::new(),
        }
    }
}

/// A datagram refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The header failed the length checks.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The message is from another sync ID (kernel: "BACKUP, Ignoring syncid"); set
    /// `BackupConfig::syncid` to 0 to accept any.
    #[error("message from sync ID {got} ignored: this backup accepts sync ID {want} only")]
    OtherSyncId {
        /// The message's sync ID.
        got: u8,
        /// The configured one.
        want: u8,
    },
}

/// An entry that was not accepted, and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its position in the message, from 0.
    pub index: usize,
    /// Why.
    pub error: EntryError,
}

/// What one datagram yielded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Received {
    /// The format it was read as.
    pub version: Version,
    /// The master's sync ID.
    pub syncid: u8,
    /// Entries to apply, in message order, with the flags as the kernel's backup sets them.
    pub conns: Vec<SyncConn>,
    /// Entries skipped (processing went on).
    pub skipped: Vec<Rejected>,
    /// The entry that ended processing early, if one did; later entries were not read.
    pub dropped: Option<Rejected>,
}

/// Counters for metrics; they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to [`Backup::handle_datagram`].
    pub datagrams: u64,
    /// Datagrams refused for their length or header size.
    pub invalid: u64,
    /// Messages ignored for their sync ID.
    pub other_syncid: u64,
    /// Version 0 messages accepted.
    pub messages_v0: u64,
    /// Version 1 messages accepted.
    pub messages_v1: u64,
    /// Messages whose processing ended early on a bad entry.
    pub truncated: u64,
    /// Entries accepted.
    pub conns: u64,
    /// Entries skipped or lost to an early end (the dropping entry counts, later ones not:
    /// their number is unknown).
    pub conns_rejected: u64,
    /// When the last accepted message arrived.
    pub last_message: Option<Instant>,
}

/// A sync backup: feed it datagrams, apply what it returns.
#[derive(Debug, Clone)]
pub struct Backup {
    cfg: BackupConfig,
    stats: Stats,
}

impl Backup {
    /// A backup with `cfg`.
    pub fn new(cfg: BackupConfig) -> Self {
        Backup { cfg, stats: Stats::default() }
    }

    /// The configuration.
    pub fn config(&self) -> &BackupConfig {
        &self.cfg
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Handles one received datagram (the UDP payload) at `now`.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<Received, Error> {
        self.stats.datagrams += 1;
        let datagram = &datagram[..datagram.len().min(self.cfg.maxlen)];
        let msg = match Message::parse(datagram) {
            Ok(m) => m,
            Err(e) => {
                self.stats.invalid += 1;
                return Err(e.into());
            }
        };
        if self.cfg.syncid != 0 && msg.syncid() != self.cfg.syncid {
            self.stats.other_syncid += 1;
            return Err(Error::OtherSyncId { got: msg.syncid(), want: self.cfg.syncid });
        }
        match msg.version() {
            Version::V0 => self.stats.messages_v0 += 1,
            Version::V1 => self.stats.messages_v1 += 1,
        }
        self.stats.last_message = Some(now);

        let mut out = Received {
            version: msg.version(),
            syncid: msg.syncid(),
            conns: Vec::new(),
            skipped: Vec::new(),
            dropped: None,
        };
        for (index, entry) in msg.entries().enumerate() {
            match entry.and_then(|c| self.accept(msg.version(), c)) {
                Ok(c) => out.conns.push(c),
                Err(error) if error.ends_message() => out.dropped = Some(Rejected { index, error }),
                Err(error) => out.skipped.push(Rejected { index, error }),
            }
        }
        self.stats.conns += out.conns.len() as u64;
        self.stats.conns_rejected += (out.skipped.len() + usize::from(out.dropped.is_some())) as u64;
        if out.dropped.is_some() {
            self.stats.truncated += 1;
        }
        Ok(out)
    }

    /// The per-entry checks of `ip_vs_proc_sync_conn` / `ip_vs_process_message_v0` after
    /// decoding, and the flags the backup gives the connection.
    fn accept(&self, version: Version, mut c: SyncConn) -> Result<SyncConn, EntryError> {
        c.flags = match version {
            Version::V1 => (c.flags & conn_flags::BACKUP_MASK) | conn_flags::SYNC,
            Version::V0 => (c.flags | conn_flags::SYNC) & !conn_flags::HASHED,
        };
        // Templates keep their own state bits; the kernel only logs an odd template state.
        if !c.is_template() {
            let Some(states) = proto::num_states(c.protocol) else {
                return Err(EntryError::UnsupportedProtocol { protocol: c.protocol });
            };
            if c.state >= states {
                return Err(EntryError::InvalidState { protocol: c.protocol, state: c.state });
            }
        }
        if let Some(pe) = &c.pe {
            if !self.cfg.pe_names.contains(&pe.name) {
                return Err(EntryError::UnknownPe { name: pe.name.clone() });
            }
        }
        Ok(c)
    }
}
