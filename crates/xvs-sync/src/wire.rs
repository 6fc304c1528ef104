//! Sync messages on the wire: the layouts of `net/netfilter/ipvs/ip_vs_sync.c`.
//!
//! A sync *message* is one UDP datagram: a header, then `nr_conns` *entries*, one per
//! connection or persistence template. Two formats exist:
//!
//! * **Version 1** (the default since Linux 2.6.36, `net.ipv4.vs.sync_version = 1`): an
//!   8-byte [`Header`] whose first byte is zero and whose `version` byte is 1, then
//!   [`ConnPacket`] entries (`struct ip_vs_sync_v4` / `ip_vs_sync_v6`) of variable length:
//!   fixed fields, then type-length-value options ([`OPT_SEQ_DATA`], [`OPT_PE_DATA`],
//!   [`OPT_PE_NAME`]). Each entry's `ver_size` holds its length without padding; the next
//!   entry starts at the following 4-byte boundary. The message `size` counts the padding
//!   between entries but not after the last one.
//! * **Version 0** (the original): a 4-byte [`HeaderV0`], then 24-byte [`ConnV0Packet`]
//!   entries (`struct ip_vs_sync_conn_v0`), each followed by 24 bytes of sequence data when
//!   its flags have [`conn_flags::SEQ_MASK`]. IPv4 only, no timeout, no fwmark. Only read.
//!
//! The receiver tells them apart as `ip_vs_process_message` does: a message is version 1
//! when `version == 1 && reserved == 0 && spare == 0`, and version 0 otherwise. A version 0
//! master puts its `nr_conns` in the byte version 1 reserves, so a version 0 receiver that
//! gets a version 1 message sees zero connections and ignores it.
//!
//! # Panics and errors
//!
//! Nothing here panics on any input. The `Packet` types follow smoltcp: `new_checked`
//! validates the length, after which no accessor panics; `new_unchecked` is for emission
//! into a buffer the caller sized with [`SyncConn::buffer_len`]. [`Message::parse`] checks
//! the header ([`MessageError`]); [`Message::entries`] yields one `Result` per entry. As in
//! the kernel, an [`EntryError`] either skips that entry ([`EntryError::ends_message`] is
//! false: "BACKUP, Single msg dropped") or ends the message there ("BACKUP, Dropping
//! buffer"); entries before a fatal error have already been yielded, as the kernel has
//! already applied them.

use core::ops::Range;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::consts::{conn_flags, PEDATA_MAXLEN, PENAME_MAXLEN, SYNC_PROTO_VER};

type Field = Range<usize>;

/// Option type: in and out sequence adjustment data (`IPVS_OPT_SEQ_DATA`).
pub const OPT_SEQ_DATA: u8 = 1;
/// Option type: persistence-engine data (`IPVS_OPT_PE_DATA`), e.g. a SIP Call-ID.
pub const OPT_PE_DATA: u8 = 2;
/// Option type: persistence-engine name (`IPVS_OPT_PE_NAME`), e.g. `sip`.
pub const OPT_PE_NAME: u8 = 3;
/// Option type bit: the option is optional and may be skipped when unknown
/// (`IPVS_OPT_F_PARAM`, `1 << (IPVS_OPT_PARAM - 1)`); without it an unknown option makes the
/// backup skip the entry.
pub const OPT_F_PARAM: u8 = 1 << 6;
/// Type bit: the entry holds IPv6 addresses (`STYPE_F_INET6`).
pub const STYPE_F_INET6: u8 = 1;

/// `ver_size`: the entry format version is in the top 4 bits (`SVER_SHIFT`).
const SVER_SHIFT: u16 = 12;
/// `ver_size`: the entry length is in the low 12 bits (`SVER_MASK`).
const SVER_MASK: u16 = 0x0fff;

mod field {
    use super::Field;

    // Version 1 header, `struct ip_vs_sync_mesg`.
    /// Zero in version 1; `nr_conns` in version 0.
    pub(super) const RESERVED: usize = 0;
    pub(super) const SYNCID: usize = 1;
    /// Whole message length, header included, big-endian.
    pub(super) const SIZE: Field = 2..4;
    pub(super) const NR_CONNS: usize = 4;
    pub(super) const VERSION: usize = 5;
    pub(super) const SPARE: Field = 6..8;

    // Version 0 header, `struct ip_vs_sync_mesg_v0`.
    pub(super) const V0_NR_CONNS: usize = 0;
    pub(super) const V0_SYNCID: usize = 1;
    pub(super) const V0_SIZE: Field = 2..4;

    // Version 1 entry, `struct ip_vs_sync_v4` / `ip_vs_sync_v6`; common part.
    pub(super) const TYPE: usize = 0;
    pub(super) const PROTOCOL: usize = 1;
    pub(super) const VER_SIZE: Field = 2..4;
    pub(super) const FLAGS: Field = 4..8;
    pub(super) const STATE: Field = 8..10;
    pub(super) const CPORT: Field = 10..12;
    pub(super) const VPORT: Field = 12..14;
    pub(super) const DPORT: Field = 14..16;
    pub(super) const FWMARK: Field = 16..20;
    /// Seconds.
    pub(super) const TIMEOUT: Field = 20..24;
    // IPv4 addresses.
    pub(super) const CADDR4: Field = 24..28;
    pub(super) const VADDR4: Field = 28..32;
    pub(super) const DADDR4: Field = 32..36;
    // IPv6 addresses.
    pub(super) const CADDR6: Field = 24..40;
    pub(super) const VADDR6: Field = 40..56;
    pub(super) const DADDR6: Field = 56..72;

    // Version 0 entry, `struct ip_vs_sync_conn_v0`.
    pub(super) const V0_RESERVED: usize = 0;
    pub(super) const V0_PROTOCOL: usize = 1;
    pub(super) const V0_CPORT: Field = 2..4;
    pub(super) const V0_VPORT: Field = 4..6;
    pub(super) const V0_DPORT: Field = 6..8;
    pub(super) const V0_CADDR: Field = 8..12;
    pub(super) const V0_VADDR: Field = 12..16;
    pub(super) const V0_DADDR: Field = 16..20;
    pub(super) const V0_FLAGS: Field = 20..22;
    pub(super) const V0_STATE: Field = 22..24;
    /// `struct ip_vs_sync_conn_options`: in_seq then out_seq, 3 × u32 each.
    pub(super) const V0_OPTIONS: Field = 24..48;
}

/// Length of the version 1 header (`sizeof(struct ip_vs_sync_mesg)`).
pub const HEADER_LEN: usize = field::SPARE.end;
/// Length of the version 0 header (`sizeof(struct ip_vs_sync_mesg_v0)`), also the shortest
/// datagram a backup looks at.
pub const HEADER_V0_LEN: usize = field::V0_SIZE.end;
/// Length of an IPv4 entry without options (`sizeof(struct ip_vs_sync_v4)`).
pub const CONN_V4_LEN: usize = field::DADDR4.end;
/// Length of an IPv6 entry without options (`sizeof(struct ip_vs_sync_v6)`).
pub const CONN_V6_LEN: usize = field::DADDR6.end;
/// Length of the sequence data (`sizeof(struct ip_vs_sync_conn_options)`).
pub const SEQ_DATA_LEN: usize = 24;
/// Length of a version 0 entry without options (`SIMPLE_CONN_SIZE`).
pub const CONN_V0_LEN: usize = field::V0_STATE.end;
/// Length of a version 0 entry with sequence data (`FULL_CONN_SIZE`).
pub const CONN_V0_FULL_LEN: usize = field::V0_OPTIONS.end;

fn be16(b: &[u8], f: Field) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[f]);
    u16::from_be_bytes(a)
}

fn be32(b: &[u8], f: Field) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[f]);
    u32::from_be_bytes(a)
}

fn le32(b: &[u8], f: Field) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[f]);
    u32::from_le_bytes(a)
}

fn v4(b: &[u8], f: Field) -> Ipv4Addr {
    Ipv4Addr::from(be32(b, f))
}

fn v6(b: &[u8], f: Field) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[f]);
    Ipv6Addr::from(a)
}

/// The two message formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The original format: IPv4 only, 16-bit flags, no timeout or fwmark.
    V0,
    /// The current format (`SYNC_PROTO_VER`).
    V1,
}

/// A message the backup refuses as a whole before looking at its entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Shorter than the version 0 header (kernel: "BACKUP, message header too short").
    #[error("sync message of {len} bytes is shorter than the 4-byte header")]
    TooShort {
        /// Datagram length.
        len: usize,
    },
    /// The header's size is not the datagram's length (kernel: "BACKUP, bogus message
    /// size"); a datagram longer than the backup's `sync_maxlen` arrives truncated and ends
    /// here too.
    #[error("sync message header says {header} bytes but the datagram has {actual}")]
    SizeMismatch {
        /// The header's `size` field.
        header: u16,
        /// Datagram length.
        actual: usize,
    },
}

/// One entry the backup cannot use.
///
/// The kernel distinguishes errors that end the whole message (negative return codes of
/// `ip_vs_proc_sync_conn`, and the length checks in `ip_vs_process_message`) from those that
/// skip one entry (positive return codes). [`EntryError::ends_message`] says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Fewer than 36 bytes left where an entry should start ("Dropping buffer, too small");
    /// also what a header's `nr_conns` larger than the entries present leads to.
    #[error("entry at byte {offset} needs {needed} bytes but the message ends at byte {len}")]
    Truncated {
        /// Where the entry starts in the message.
        offset: usize,
        /// Bytes the kernel requires there.
        needed: usize,
        /// Message length.
        len: usize,
    },
    /// The entry's `ver_size` runs past the message ("Dropping buffer, msg > buffer").
    #[error("entry at byte {offset} claims {size} bytes, past the message end at byte {len}")]
    BeyondMessage {
        /// Where the entry starts.
        offset: usize,
        /// Its claimed size.
        size: usize,
        /// Message length.
        len: usize,
    },
    /// The entry's format version (top 4 bits of `ver_size`) is not 0 ("Unknown version").
    #[error("entry format version {version} is unknown (only 0 is defined)")]
    UnknownEntryVersion {
        /// The version found.
        version: u8,
    },
    /// The type byte is neither 0 (IPv4) nor has [`STYPE_F_INET6`] (kernel error -10).
    #[error("entry type {ty:#04x} is neither IPv4 (0) nor IPv6 (bit 0)")]
    UnknownType {
        /// The type byte.
        ty: u8,
    },
    /// `ver_size` is smaller than the fixed part for the entry's family (error -20); a size of
    /// zero ends here.
    #[error("entry size {size} is smaller than the {needed} bytes of its fixed fields")]
    TooSmall {
        /// The claimed size.
        size: usize,
        /// The fixed part's length.
        needed: usize,
    },
    /// One byte left where an option header (type, length) needs two (error -30).
    #[error("option header truncated at entry byte {offset}")]
    OptionTruncated {
        /// Offset in the entry.
        offset: usize,
    },
    /// An option's length is zero or runs past the entry (error -40).
    #[error("option {ptype} has length {plen}: zero or past the entry end")]
    BadOptionLength {
        /// Option type.
        ptype: u8,
        /// Option length.
        plen: u8,
    },
    /// Sequence data whose length is not 24 (error -50, "bogus conn options length").
    #[error("sequence option has {plen} bytes, expected 24")]
    BadSeqLength {
        /// Option length.
        plen: u8,
    },
    /// An option given twice (errors -50, -60, -70, "found twice").
    #[error("option {ptype} appears twice in one entry")]
    DuplicateOption {
        /// Option type.
        ptype: u8,
    },
    /// A persistence-engine name longer than 16 bytes (error -70).
    #[error("persistence engine name of {len} bytes exceeds the kernel's 16")]
    PeNameTooLong {
        /// Its length.
        len: usize,
    },
    /// Version 0: fewer than 24 bytes left for an entry ("BACKUP v0, bogus conn").
    #[error("version 0 entry at byte {offset} runs past the message end at byte {len}")]
    V0Truncated {
        /// Where the entry starts.
        offset: usize,
        /// Message length.
        len: usize,
    },
    /// Version 0: sequence data announced by the flags runs past the message ("Dropping
    /// buffer bogus conn options").
    #[error("version 0 entry at byte {offset} has sequence flags but its options run past byte {len}")]
    V0OptionsTruncated {
        /// Where the entry starts.
        offset: usize,
        /// Message length.
        len: usize,
    },
    /// A mandatory option type the kernel does not know (retc 20): the entry is skipped.
    #[error("unknown mandatory option type {ptype}; entry skipped")]
    UnknownMandatoryOption {
        /// Option type.
        ptype: u8,
    },
    /// Persistence-engine data without a name (retc 50, "Invalid PE parameters").
    #[error("persistence engine data without an engine name; entry skipped")]
    PeDataWithoutName,
    /// The backup has no handler for the protocol (retc 30).
    #[error("protocol {protocol} is not one IPVS handles; entry skipped")]
    UnsupportedProtocol {
        /// IP protocol number.
        protocol: u8,
    },
    /// The state is out of range for the protocol (retc 40).
    #[error("state {state} is out of range for protocol {protocol}; entry skipped")]
    InvalidState {
        /// IP protocol number.
        protocol: u8,
        /// The state.
        state: u16,
    },
    /// The backup has no persistence engine of that name (retc 50, "no %s engine
    /// found/loaded"); add it to `BackupConfig::pe_names` if xvs supports it.
    #[error("persistence engine {name:?} is not available; entry skipped")]
    UnknownPe {
        /// The engine name.
        name: String,
    },
}

impl EntryError {
    /// Whether the kernel stops processing the message here (the rest of the entries are
    /// lost) rather than skipping this one entry.
    pub fn ends_message(&self) -> bool {
        !matches!(
            self,
            EntryError::UnknownMandatoryOption { .. }
                | EntryError::PeDataWithoutName
                | EntryError::UnsupportedProtocol { .. }
                | EntryError::InvalidState { .. }
                | EntryError::UnknownPe { .. }
        )
    }
}

/// A connection that cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// Client, virtual and destination addresses must be of one family (the kernel's
    /// synchronised pools are homogeneous).
    #[error("client, virtual and destination addresses are not all IPv4 or all IPv6")]
    MixedFamilies,
    /// Persistence-engine names are 1 to 16 bytes.
    #[error("persistence engine name of {len} bytes; the kernel takes 1 to 16")]
    BadPeName {
        /// Its length.
        len: usize,
    },
    /// Persistence-engine data is 1 to 255 bytes (the kernel sends no PE options without data).
    #[error("persistence engine data of {len} bytes; the kernel takes 1 to 255")]
    BadPeData {
        /// Its length.
        len: usize,
    },
}

/// One direction's sequence adjustment (`struct ip_vs_seq`), used when an application
/// helper (ip_vs_ftp) resized payload on a NAT connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Seq {
    /// Apply `delta` from this sequence number on.
    pub init_seq: u32,
    /// Current delta.
    pub delta: u32,
    /// Delta before the last resized packet.
    pub previous_delta: u32,
}

/// Both directions' sequence adjustment (`struct ip_vs_sync_conn_options`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SeqData {
    /// Client-to-server direction.
    pub in_seq: Seq,
    /// Server-to-client direction.
    pub out_seq: Seq,
}

impl SeqData {
    /// Big-endian (version 1; `hton_seq`) or host-order (version 0; a raw `memcpy`).
    fn read(b: &[u8], little_endian: bool) -> SeqData {
        let w = |i: usize| if little_endian { le32(b, i * 4..i * 4 + 4) } else { be32(b, i * 4..i * 4 + 4) };
        SeqData {
            in_seq: Seq { init_seq: w(0), delta: w(1), previous_delta: w(2) },
            out_seq: Seq { init_seq: w(3), delta: w(4), previous_delta: w(5) },
        }
    }

    fn write_be(&self, b: &mut [u8]) {
        let words = [
            self.in_seq.init_seq,
            self.in_seq.delta,
            self.in_seq.previous_delta,
            self.out_seq.init_seq,
            self.out_seq.delta,
            self.out_seq.previous_delta,
        ];
        for (i, w) in words.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
    }
}

/// A persistence engine's name and its data for one connection (e.g. `sip` and a Call-ID).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeData {
    /// Engine name, 1 to 16 bytes.
    pub name: String,
    /// Engine data, 1 to 255 bytes.
    pub data: Vec<u8>,
}

/// One synchronised connection or template: the meaning of an entry.
///
/// This is the `Repr` of both entry formats. Ports are host order. The address family is
/// that of the addresses (all three must agree to be emitted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyncConn {
    /// IP protocol ([`crate::proto`]); for fwmark templates, whatever the master had.
    pub protocol: u8,
    /// `IP_VS_CONN_F_*` ([`conn_flags`]), as sent: forwarding method in the low 3 bits.
    pub flags: u32,
    /// Protocol state ([`crate::tcp_state`] …) or template state ([`crate::tpl_state`]).
    pub state: u16,
    /// Client address (for templates: the client, masked by the persistence netmask).
    pub caddr: IpAddr,
    /// Client port (0 for templates).
    pub cport: u16,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Real server address.
    pub daddr: IpAddr,
    /// Real server port.
    pub dport: u16,
    /// Firewall mark of the service (0 when not a fwmark service; version 0 has none).
    pub fwmark: u32,
    /// The master's current timeout for the entry, in seconds (0 in version 0: the backup
    /// then uses its own protocol timeout, or 180 s for a template).
    pub timeout_s: u32,
    /// Sequence adjustment; present exactly when the entry carried it (the kernel sends it
    /// when `flags & SEQ_MASK`).
    pub seq: Option<SeqData>,
    /// Persistence-engine name and data, when the master's service has an engine.
    pub pe: Option<PeData>,
}

impl SyncConn {
    /// Whether this is a persistence template.
    pub fn is_template(&self) -> bool {
        self.flags & conn_flags::TEMPLATE != 0
    }

    /// Whether the addresses are IPv6 (judged by the client address).
    pub fn is_ipv6(&self) -> bool {
        self.caddr.is_ipv6()
    }

    /// The forwarding method bits (`flags & FWD_MASK`).
    pub fn fwd_method(&self) -> u32 {
        self.flags & conn_flags::FWD_MASK
    }

    /// Length of the version 1 entry, without trailing padding: the `ver_size` value.
    pub fn buffer_len(&self) -> usize {
        let mut len = if self.is_ipv6() { CONN_V6_LEN } else { CONN_V4_LEN };
        if self.seq.is_some() {
            len += 2 + SEQ_DATA_LEN;
        }
        if let Some(pe) = &self.pe {
            len += 2 + pe.data.len() + 2 + pe.name.len();
        }
        len
    }

    /// Checks what [`SyncConn::emit`] needs: one address family, PE name and data lengths.
    pub fn check_emit(&self) -> Result<(), EmitError> {
        let fam = self.caddr.is_ipv6();
        if self.vaddr.is_ipv6() != fam || self.daddr.is_ipv6() != fam {
            return Err(EmitError::MixedFamilies);
        }
        if let Some(pe) = &self.pe {
            if pe.name.is_empty() || pe.name.len() > PENAME_MAXLEN {
                return Err(EmitError::BadPeName { len: pe.name.len() });
            }
            if pe.data.is_empty() || pe.data.len() > PEDATA_MAXLEN {
                return Err(EmitError::BadPeData { len: pe.data.len() });
            }
        }
        Ok(())
    }

    /// Parses a version 1 entry. `rest` starts at the entry and may run on past it (the
    /// kernel reads the type byte before it checks `size` against the fixed part); `size` is
    /// the entry's `ver_size` length, already checked to fit in `rest`.
    fn parse_v1(rest: &[u8], size: usize) -> Result<SyncConn, EntryError> {
        let ty = rest.get(field::TYPE).copied().unwrap_or(0);
        let fixed = if ty & STYPE_F_INET6 != 0 {
            CONN_V6_LEN
        } else if ty == 0 {
            CONN_V4_LEN
        } else {
            return Err(EntryError::UnknownType { ty });
        };
        if size < fixed {
            return Err(EntryError::TooSmall { size, needed: fixed });
        }
        let entry = &rest[..size];
        let packet = ConnPacket::new_checked(entry)?;

        let mut seq = None;
        let mut pe_data: Option<&[u8]> = None;
        let mut pe_name: Option<&[u8]> = None;
        let opts = packet.options();
        let mut off = 0;
        while off < opts.len() {
            if off + 2 > opts.len() {
                return Err(EntryError::OptionTruncated { offset: fixed + off });
            }
            let ptype = opts[off];
            let plen = opts[off + 1];
            off += 2;
            let end = off + usize::from(plen);
            if plen == 0 || end > opts.len() {
                return Err(EntryError::BadOptionLength { ptype, plen });
            }
            let data = &opts[off..end];
            // The kernel switches on the type without the "optional" bit, so 65 is sequence
            // data too.
            match ptype & !OPT_F_PARAM {
                OPT_SEQ_DATA => {
                    if usize::from(plen) != SEQ_DATA_LEN {
                        return Err(EntryError::BadSeqLength { plen });
                    }
                    if seq.is_some() {
                        return Err(EntryError::DuplicateOption { ptype });
                    }
                    seq = Some(SeqData::read(data, false));
                }
                OPT_PE_DATA => {
                    if pe_data.is_some() {
                        return Err(EntryError::DuplicateOption { ptype });
                    }
                    pe_data = Some(data);
                }
                OPT_PE_NAME => {
                    if data.len() > PENAME_MAXLEN {
                        return Err(EntryError::PeNameTooLong { len: data.len() });
                    }
                    if pe_name.is_some() {
                        return Err(EntryError::DuplicateOption { ptype });
                    }
                    pe_name = Some(data);
                }
                _ => {
                    if ptype & OPT_F_PARAM == 0 {
                        return Err(EntryError::UnknownMandatoryOption { ptype });
                    }
                }
            }
            off = end;
        }
        // A name without data is ignored by the kernel; data without a name skips the entry.
        let pe = match (pe_data, pe_name) {
            (Some(_), None) => return Err(EntryError::PeDataWithoutName),
            (Some(data), Some(name)) => {
                Some(PeData { name: String::from_utf8_lossy(name).into_owned(), data: data.to_vec() })
            }
            (None, _) => None,
        };
        Ok(SyncConn {
            protocol: packet.protocol(),
            flags: packet.flags(),
            state: packet.state(),
            caddr: packet.caddr(),
            cport: packet.cport(),
            vaddr: packet.vaddr(),
            vport: packet.vport(),
            daddr: packet.daddr(),
            dport: packet.dport(),
            fwmark: packet.fwmark(),
            timeout_s: packet.timeout(),
            seq,
            pe,
        })
    }

    /// Parses a version 0 entry (sequence data, if any, must be in the packet).
    ///
    /// Version 0 copies `struct ip_vs_seq` with a raw `memcpy`, so its sequence numbers are
    /// in the master's host byte order; this reads them as little-endian (x86, arm64).
    pub fn parse_v0<T: AsRef<[u8]>>(packet: &ConnV0Packet<T>) -> SyncConn {
        let flags = u32::from(packet.flags());
        SyncConn {
            protocol: packet.protocol(),
            flags,
            state: packet.state(),
            caddr: IpAddr::V4(packet.caddr()),
            cport: packet.cport(),
            vaddr: IpAddr::V4(packet.vaddr()),
            vport: packet.vport(),
            daddr: IpAddr::V4(packet.daddr()),
            dport: packet.dport(),
            fwmark: 0,
            timeout_s: 0,
            seq: packet.seq_data(),
            pe: None,
        }
    }

    /// Writes the version 1 entry into `packet`, which must hold at least
    /// [`SyncConn::buffer_len`] bytes (bytes past it are left alone).
    ///
    /// Flags are written as given; the kernel's master clears [`conn_flags::HASHED`] first,
    /// which [`crate::MessageBuilder`] does too.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ConnPacket<T>) -> Result<(), EmitError> {
        self.check_emit()?;
        let len = self.buffer_len();
        packet.set_entry_type(if self.is_ipv6() { STYPE_F_INET6 } else { 0 });
        packet.set_protocol(self.protocol);
        // Format version 0 in the top bits; the length always fits 12 bits (at most 72 + 26
        // + 257 + 18).
        packet.set_ver_size(len as u16 & SVER_MASK);
        packet.set_flags(self.flags);
        packet.set_state(self.state);
        packet.set_cport(self.cport);
        packet.set_vport(self.vport);
        packet.set_dport(self.dport);
        packet.set_fwmark(self.fwmark);
        packet.set_timeout(self.timeout_s);
        packet.set_addrs(self.caddr, self.vaddr, self.daddr);
        let fixed = if self.is_ipv6() { CONN_V6_LEN } else { CONN_V4_LEN };
        let buf = &mut packet.buffer.as_mut()[fixed..len];
        let mut p = 0;
        if let Some(seq) = &self.seq {
            buf[p] = OPT_SEQ_DATA;
            buf[p + 1] = SEQ_DATA_LEN as u8;
            seq.write_be(&mut buf[p + 2..p + 2 + SEQ_DATA_LEN]);
            p += 2 + SEQ_DATA_LEN;
        }
        // The kernel writes PE data first, then the name.
        if let Some(pe) = &self.pe {
            for (ty, bytes) in [(OPT_PE_DATA, pe.data.as_slice()), (OPT_PE_NAME, pe.name.as_bytes())] {
                buf[p] = ty;
                buf[p + 1] = bytes.len() as u8;
                buf[p + 2..p + 2 + bytes.len()].copy_from_slice(bytes);
                p += 2 + bytes.len();
            }
        }
        Ok(())
    }
}

/// The version 1 message header (`struct ip_vs_sync_mesg`).
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Header { buffer }
    }

    /// Wraps a buffer, checking it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, MessageError> {
        let h = Header::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Checks the buffer holds the header.
    pub fn check_len(&self) -> Result<(), MessageError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            Err(MessageError::TooShort { len })
        } else {
            Ok(())
        }
    }

    /// Returns the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Byte 0: zero in version 1.
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::RESERVED]
    }
    /// The master's sync ID.
    pub fn syncid(&self) -> u8 {
        self.buffer.as_ref()[field::SYNCID]
    }
    /// Length of the whole message.
    pub fn size(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SIZE)
    }
    /// Number of entries.
    pub fn nr_conns(&self) -> u8 {
        self.buffer.as_ref()[field::NR_CONNS]
    }
    /// Protocol version, 1.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }
    /// Two spare bytes, zero.
    pub fn spare(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SPARE)
    }
    /// Whether a backup reads this as version 1 (`version == 1 && reserved == 0 && spare == 0`).
    pub fn is_v1(&self) -> bool {
        self.version() == SYNC_PROTO_VER && self.reserved() == 0 && self.spare() == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Fills in a version 1 header: reserved 0, version 1, spare 0.
    pub fn fill(&mut self, syncid: u8, size: u16, nr_conns: u8) {
        let b = self.buffer.as_mut();
        b[field::RESERVED] = 0;
        b[field::SYNCID] = syncid;
        b[field::SIZE].copy_from_slice(&size.to_be_bytes());
        b[field::NR_CONNS] = nr_conns;
        b[field::VERSION] = SYNC_PROTO_VER;
        b[field::SPARE].copy_from_slice(&[0, 0]);
    }
}

/// The version 0 message header (`struct ip_vs_sync_mesg_v0`).
#[derive(Debug, Clone)]
pub struct HeaderV0<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeaderV0<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        HeaderV0 { buffer }
    }

    /// Wraps a buffer, checking it holds the 4-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, MessageError> {
        let len = buffer.as_ref().len();
        if len < HEADER_V0_LEN {
            return Err(MessageError::TooShort { len });
        }
        Ok(HeaderV0 { buffer })
    }

    /// Number of entries.
    pub fn nr_conns(&self) -> u8 {
        self.buffer.as_ref()[field::V0_NR_CONNS]
    }
    /// The master's sync ID.
    pub fn syncid(&self) -> u8 {
        self.buffer.as_ref()[field::V0_SYNCID]
    }
    /// Length of the whole message.
    pub fn size(&self) -> u16 {
        be16(self.buffer.as_ref(), field::V0_SIZE)
    }
}

/// A version 1 entry (`struct ip_vs_sync_v4` or `ip_vs_sync_v6`, then options). The buffer
/// is the entry: `ver_size` bytes.
#[derive(Debug, Clone)]
pub struct ConnPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ConnPacket<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        ConnPacket { buffer }
    }

    /// Wraps a buffer, checking it holds the fixed part for the type byte's family.
    pub fn new_checked(buffer: T) -> Result<Self, EntryError> {
        let p = ConnPacket::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the buffer holds the fixed fields (36 bytes for IPv4, 72 for IPv6).
    pub fn check_len(&self) -> Result<(), EntryError> {
        let b = self.buffer.as_ref();
        let needed = match b.first() {
            Some(ty) if ty & STYPE_F_INET6 != 0 => CONN_V6_LEN,
            _ => CONN_V4_LEN,
        };
        if b.len() < needed {
            Err(EntryError::TooSmall { size: b.len(), needed })
        } else {
            Ok(())
        }
    }

    /// Returns the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn is_v6(&self) -> bool {
        self.entry_type() & STYPE_F_INET6 != 0
    }
    /// Type byte: [`STYPE_F_INET6`] for IPv6, 0 for IPv4.
    pub fn entry_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// IP protocol.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    /// Raw `ver_size`.
    pub fn ver_size(&self) -> u16 {
        be16(self.buffer.as_ref(), field::VER_SIZE)
    }
    /// Entry format version, the top 4 bits of `ver_size` (0).
    pub fn entry_version(&self) -> u8 {
        (self.ver_size() >> SVER_SHIFT) as u8
    }
    /// Entry length without padding, the low 12 bits of `ver_size`.
    pub fn entry_size(&self) -> usize {
        usize::from(self.ver_size() & SVER_MASK)
    }
    /// `IP_VS_CONN_F_*`.
    pub fn flags(&self) -> u32 {
        be32(self.buffer.as_ref(), field::FLAGS)
    }
    /// Protocol or template state.
    pub fn state(&self) -> u16 {
        be16(self.buffer.as_ref(), field::STATE)
    }
    /// Client port.
    pub fn cport(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CPORT)
    }
    /// Virtual port.
    pub fn vport(&self) -> u16 {
        be16(self.buffer.as_ref(), field::VPORT)
    }
    /// Real server port.
    pub fn dport(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DPORT)
    }
    /// Firewall mark.
    pub fn fwmark(&self) -> u32 {
        be32(self.buffer.as_ref(), field::FWMARK)
    }
    /// Timeout in seconds.
    pub fn timeout(&self) -> u32 {
        be32(self.buffer.as_ref(), field::TIMEOUT)
    }
    /// Client address.
    pub fn caddr(&self) -> IpAddr {
        self.addr(field::CADDR4, field::CADDR6)
    }
    /// Virtual address.
    pub fn vaddr(&self) -> IpAddr {
        self.addr(field::VADDR4, field::VADDR6)
    }
    /// Real server address.
    pub fn daddr(&self) -> IpAddr {
        self.addr(field::DADDR4, field::DADDR6)
    }
    fn addr(&self, f4: Field, f6: Field) -> IpAddr {
        let b = self.buffer.as_ref();
        if self.is_v6() {
            IpAddr::V6(v6(b, f6))
        } else {
            IpAddr::V4(v4(b, f4))
        }
    }
    /// The options: everything after the fixed fields.
    pub fn options(&self) -> &[u8] {
        let fixed = if self.is_v6() { CONN_V6_LEN } else { CONN_V4_LEN };
        &self.buffer.as_ref()[fixed..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ConnPacket<T> {
    /// Sets the type byte.
    pub fn set_entry_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }
    /// Sets the protocol.
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }
    /// Sets `ver_size`.
    pub fn set_ver_size(&mut self, v: u16) {
        self.buffer.as_mut()[field::VER_SIZE].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the flags.
    pub fn set_flags(&mut self, v: u32) {
        self.buffer.as_mut()[field::FLAGS].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the state.
    pub fn set_state(&mut self, v: u16) {
        self.buffer.as_mut()[field::STATE].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the client port.
    pub fn set_cport(&mut self, v: u16) {
        self.buffer.as_mut()[field::CPORT].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the virtual port.
    pub fn set_vport(&mut self, v: u16) {
        self.buffer.as_mut()[field::VPORT].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the real server port.
    pub fn set_dport(&mut self, v: u16) {
        self.buffer.as_mut()[field::DPORT].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the firewall mark.
    pub fn set_fwmark(&mut self, v: u32) {
        self.buffer.as_mut()[field::FWMARK].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the timeout in seconds.
    pub fn set_timeout(&mut self, v: u32) {
        self.buffer.as_mut()[field::TIMEOUT].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the three addresses; the type byte must already say their family, and they
    /// must all be of it (an address of the other family is written as zeros).
    pub fn set_addrs(&mut self, caddr: IpAddr, vaddr: IpAddr, daddr: IpAddr) {
        let is_v6 = self.is_v6();
        let b = self.buffer.as_mut();
        let put = |b: &mut [u8], f4: Field, f6: Field, a: IpAddr| match (is_v6, a) {
            (false, IpAddr::V4(a)) => b[f4].copy_from_slice(&a.octets()),
            (true, IpAddr::V6(a)) => b[f6].copy_from_slice(&a.octets()),
            (false, IpAddr::V6(_)) => b[f4].fill(0),
            (true, IpAddr::V4(_)) => b[f6].fill(0),
        };
        put(b, field::CADDR4, field::CADDR6, caddr);
        put(b, field::VADDR4, field::VADDR6, vaddr);
        put(b, field::DADDR4, field::DADDR6, daddr);
    }
}

/// A version 0 entry (`struct ip_vs_sync_conn_v0`), with its 24 bytes of options when the
/// flags have [`conn_flags::SEQ_MASK`].
#[derive(Debug, Clone)]
pub struct ConnV0Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ConnV0Packet<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        ConnV0Packet { buffer }
    }

    /// Wraps a buffer, checking it holds the entry and, if its flags announce them, the
    /// sequence options. Errors report offset 0; [`Message::entries`] reports real offsets.
    pub fn new_checked(buffer: T) -> Result<Self, EntryError> {
        let p = ConnV0Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the buffer holds [`ConnV0Packet::total_len`] bytes.
    pub fn check_len(&self) -> Result<(), EntryError> {
        let len = self.buffer.as_ref().len();
        if len < CONN_V0_LEN {
            return Err(EntryError::V0Truncated { offset: 0, len });
        }
        if len < self.total_len() {
            return Err(EntryError::V0OptionsTruncated { offset: 0, len });
        }
        Ok(())
    }

    /// 24, or 48 with sequence options.
    pub fn total_len(&self) -> usize {
        if u32::from(self.flags()) & conn_flags::SEQ_MASK != 0 {
            CONN_V0_FULL_LEN
        } else {
            CONN_V0_LEN
        }
    }
    /// Reserved byte (not checked by the kernel).
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::V0_RESERVED]
    }
    /// IP protocol.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::V0_PROTOCOL]
    }
    /// Client port.
    pub fn cport(&self) -> u16 {
        be16(self.buffer.as_ref(), field::V0_CPORT)
    }
    /// Virtual port.
    pub fn vport(&self) -> u16 {
        be16(self.buffer.as_ref(), field::V0_VPORT)
    }
    /// Real server port.
    pub fn dport(&self) -> u16 {
        be16(self.buffer.as_ref(), field::V0_DPORT)
    }
    /// Client address.
    pub fn caddr(&self) -> Ipv4Addr {
        v4(self.buffer.as_ref(), field::V0_CADDR)
    }
    /// Virtual address.
    pub fn vaddr(&self) -> Ipv4Addr {
        v4(self.buffer.as_ref(), field::V0_VADDR)
    }
    /// Real server address.
    pub fn daddr(&self) -> Ipv4Addr {
        v4(self.buffer.as_ref(), field::V0_DADDR)
    }
    /// The low 16 bits of `IP_VS_CONN_F_*`.
    pub fn flags(&self) -> u16 {
        be16(self.buffer.as_ref(), field::V0_FLAGS)
    }
    /// Protocol or template state.
    pub fn state(&self) -> u16 {
        be16(self.buffer.as_ref(), field::V0_STATE)
    }
    /// The sequence options, when the flags announce them (read little-endian: see
    /// [`SyncConn::parse_v0`]).
    pub fn seq_data(&self) -> Option<SeqData> {
        let b = self.buffer.as_ref();
        if self.total_len() == CONN_V0_FULL_LEN && b.len() >= CONN_V0_FULL_LEN {
            Some(SeqData::read(&b[field::V0_OPTIONS], true))
        } else {
            None
        }
    }
}

/// A sync message whose header passed the kernel's checks.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    buf: &'a [u8],
    version: Version,
    syncid: u8,
    nr_conns: u8,
}

impl<'a> Message<'a> {
    /// Checks a datagram as `ip_vs_process_message` does before its entries: at least 4
    /// bytes, header size equal to the datagram length; then picks the version.
    ///
    /// A datagram of 4 to 7 bytes is read as version 0: it cannot hold a version 1 header.
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, MessageError> {
        let v0 = HeaderV0::new_checked(buf)?;
        if usize::from(v0.size()) != buf.len() {
            return Err(MessageError::SizeMismatch { header: v0.size(), actual: buf.len() });
        }
        match Header::new_checked(buf) {
            Ok(h) if h.is_v1() => Ok(Message { buf, version: Version::V1, syncid: h.syncid(), nr_conns: h.nr_conns() }),
            _ => Ok(Message { buf, version: Version::V0, syncid: v0.syncid(), nr_conns: v0.nr_conns() }),
        }
    }

    /// Which format the kernel would read this as.
    pub fn version(&self) -> Version {
        self.version
    }
    /// The master's sync ID.
    pub fn syncid(&self) -> u8 {
        self.syncid
    }
    /// The header's entry count.
    pub fn nr_conns(&self) -> u8 {
        self.nr_conns
    }
    /// The entries, in order, as the kernel walks them.
    pub fn entries(&self) -> Entries<'a> {
        let pos = match self.version {
            Version::V0 => HEADER_V0_LEN,
            Version::V1 => HEADER_LEN,
        };
        Entries { buf: self.buf, version: self.version, pos, left: self.nr_conns, done: false }
    }
}

/// Iterator over a message's entries; it ends after `nr_conns` entries or after the first
/// error that [`EntryError::ends_message`].
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    buf: &'a [u8],
    version: Version,
    pos: usize,
    left: u8,
    done: bool,
}

impl Entries<'_> {
    fn next_v1(&mut self) -> Result<SyncConn, EntryError> {
        let len = self.buf.len();
        let p = self.pos;
        // The kernel checks for a whole IPv4 entry first, whatever the type.
        if p.saturating_add(CONN_V4_LEN) > len {
            return Err(EntryError::Truncated { offset: p, needed: CONN_V4_LEN, len });
        }
        let rest = &self.buf[p..];
        let ver_size = be16(rest, field::VER_SIZE);
        let size = usize::from(ver_size & SVER_MASK);
        if p + size > len {
            return Err(EntryError::BeyondMessage { offset: p, size, len });
        }
        let version = (ver_size >> SVER_SHIFT) as u8;
        if version != 0 {
            return Err(EntryError::UnknownEntryVersion { version });
        }
        // "Make sure we have 32 bit alignment": the next entry starts at the size rounded up.
        self.pos = p + ((size + 3) & !3);
        SyncConn::parse_v1(rest, size)
    }

    fn next_v0(&mut self) -> Result<SyncConn, EntryError> {
        let len = self.buf.len();
        let p = self.pos;
        if p.saturating_add(CONN_V0_LEN) > len {
            return Err(EntryError::V0Truncated { offset: p, len });
        }
        let packet = ConnV0Packet::new_unchecked(&self.buf[p..]);
        let total = packet.total_len();
        if p + total > len {
            return Err(EntryError::V0OptionsTruncated { offset: p, len });
        }
        self.pos = p + total;
        Ok(SyncConn::parse_v0(&ConnV0Packet::new_unchecked(&self.buf[p..p + total])))
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<SyncConn, EntryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = match self.version {
            Version::V1 => self.next_v1(),
            Version::V0 => self.next_v0(),
        };
        if let Err(e) = &r {
            if e.ends_message() {
                self.done = true;
            }
        }
        Some(r)
    }
}

/// Packs entries into version 1 messages as the kernel's `ip_vs_sync_conn` does.
///
/// A message holds at most `maxlen` bytes (`sync_maxlen`, see [`crate::sync_maxlen`]),
/// except that an entry longer than that still gets a message of its own (the kernel
/// allocates `max(len + header, sync_maxlen)`). Entries are 4-byte aligned by zero padding
/// *before* each entry after the first, so a message never ends in padding.
///
/// One deliberate difference: the kernel does not bound `nr_conns`, a `u8`, so with a
/// `sync_maxlen` above about 9 KB it would wrap; this builder closes a message at 255
/// entries.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    syncid: u8,
    maxlen: usize,
    buf: Vec<u8>,
    cap: usize,
    nr_conns: u8,
}

impl MessageBuilder {
    /// A builder for messages from sync ID `syncid`, at most `maxlen` bytes each.
    ///
    /// `maxlen` is capped at 65535, the most the header's `size` can say.
    pub fn new(syncid: u8, maxlen: usize) -> Self {
        let maxlen = maxlen.min(usize::from(u16::MAX));
        MessageBuilder { syncid, maxlen, buf: Vec::new(), cap: 0, nr_conns: 0 }
    }

    /// Whether no entry is waiting.
    pub fn is_empty(&self) -> bool {
        self.nr_conns == 0
    }

    /// Entries in the current message.
    pub fn nr_conns(&self) -> u8 {
        self.nr_conns
    }

    /// Current message length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether `conn` fits in the current message (always true when it is empty).
    pub fn fits(&self, conn: &SyncConn) -> bool {
        if self.nr_conns == 0 {
            return true;
        }
        // The kernel's `(4 - head) & 3`, in wrapping arithmetic: zeros up to the next multiple
        // of 4 (the message buffer is at least 4-aligned, so address and offset agree).
        let pad = self.buf.len().wrapping_neg() & 3;
        self.nr_conns < u8::MAX && self.buf.len() + pad + conn.buffer_len() <= self.cap
    }

    /// Adds `conn` (with [`conn_flags::HASHED`] cleared, as the kernel sends it). If it does
    /// not fit, the current message is finished and returned, and `conn` starts the next.
    pub fn push(&mut self, conn: &SyncConn) -> Result<Option<Vec<u8>>, EmitError> {
        conn.check_emit()?;
        let finished = if self.fits(conn) { None } else { self.finish() };
        let len = conn.buffer_len();
        if self.nr_conns == 0 {
            self.buf.clear();
            self.buf.resize(HEADER_LEN, 0);
            self.cap = self.maxlen.max(len + HEADER_LEN);
        }
        let pad = self.buf.len().wrapping_neg() & 3;
        let start = self.buf.len() + pad;
        self.buf.resize(start + len, 0);
        let mut conn = conn.clone();
        conn.flags &= !conn_flags::HASHED;
        conn.emit(&mut ConnPacket::new_unchecked(&mut self.buf[start..]))?;
        self.nr_conns += 1;
        let size = self.buf.len() as u16;
        Header::new_unchecked(&mut self.buf[..HEADER_LEN]).fill(self.syncid, size, self.nr_conns);
        Ok(finished)
    }

    /// Finishes the current message, if it has entries.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.nr_conns == 0 {
            return None;
        }
        self.nr_conns = 0;
        Some(std::mem::take(&mut self.buf))
    }
}
