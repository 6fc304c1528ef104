//! # xvs-api
//!
//! What crosses the Unix socket between `xvsadm` and `xvsd` — requests, responses and the
//! snapshot listings are printed from — as serde types (JSON, one message per line), plus the
//! declarative configuration file (`xvsadm apply -f`). Conversions to and from `xvs-core`
//! types live here, so both programs validate and name things the same way.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bgp;
pub mod config;
pub mod health;
mod spec;
pub mod trace;
pub mod vrrp;

pub use spec::{CsumName, DestSpec, KeySpec, ProtoName, ServiceSpec, TunnelKindName, TunnelSpec};

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
pub use xvs_core::{Counters, Rates};

/// The default path of xvsd's control socket.
pub const DEFAULT_SOCKET: &str = "/run/xvs/xvsd.sock";

/// A request to xvsd.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// `-A`.
    AddService {
        /// The new service.
        service: ServiceSpec,
    },
    /// `-E`.
    EditService {
        /// The service's new configuration (its key selects it).
        service: ServiceSpec,
    },
    /// `-D`.
    DeleteService {
        /// Which service.
        key: KeySpec,
    },
    /// `-C`.
    Clear,
    /// `-a`.
    AddDest {
        /// The service.
        key: KeySpec,
        /// The new real server.
        dest: DestSpec,
    },
    /// `-e`.
    EditDest {
        /// The service.
        key: KeySpec,
        /// The real server's new configuration (address and port select it).
        dest: DestSpec,
    },
    /// `-d`.
    DeleteDest {
        /// The service.
        key: KeySpec,
        /// The real server's address.
        addr: IpAddr,
        /// The real server's port.
        port: u16,
    },
    /// `-Z`.
    Zero {
        /// One service, or all.
        key: Option<KeySpec>,
    },
    /// `--set tcp tcpfin udp`.
    SetTimeouts {
        /// ESTABLISHED timeout, 0 keeps.
        tcp: u32,
        /// FIN_WAIT timeout, 0 keeps.
        tcpfin: u32,
        /// UDP timeout, 0 keeps.
        udp: u32,
    },
    /// Several changes as one (`-R`): all of them, or — when one is refused — none.
    Batch {
        /// The changes, in order (no listings, no nested batches).
        requests: Vec<Request>,
    },
    /// Everything listings need.
    Snapshot {
        /// Include the connection table (`-c`).
        conns: bool,
    },
    /// Replace the whole configuration at once (`xvsadm apply`), or only show the changes.
    Apply {
        /// The desired state.
        config: config::Config,
        /// Compute the changes without making them.
        dry_run: bool,
    },
    /// An `apply` of a file that differs from the last applied one (named by `base`, the
    /// token that apply returned) in a few services: those the file no longer has, and those
    /// it has anew (an edited service is both). Refused with `ESTALE` when anything changed
    /// the table since `base` (the whole file must then be applied), or when a service here
    /// has health checks.
    ApplyPart {
        /// [`Response::Applied`]'s `base` of the last apply.
        base: String,
        /// Services the last applied file had and this one does not (by key).
        removed: Vec<KeySpec>,
        /// Services this file has and the last applied one did not.
        added: Vec<config::ServiceEntry>,
        /// Compute the changes without making them.
        dry_run: bool,
    },
    /// Start a connection-synchronisation daemon (`--start-daemon`).
    StartDaemon {
        /// `master` or `backup`.
        role: String,
        /// Where and how it talks.
        #[serde(default)]
        options: SyncOptions,
    },
    /// Set one of IPVS's `net.ipv4.vs.*` settings (`xvsadm sysctl NAME=VALUE`).
    SetSysctl {
        /// Its name (`sloppy_tcp`).
        name: String,
        /// Its value.
        value: u64,
    },
    /// Drain this director (or one VIP) from the routers: the VIP's route is withdrawn and
    /// stays withdrawn, across restarts, until undrained (`xvsadm bgp drain|undrain`).
    Drain {
        /// true: drain; false: undrain.
        drain: bool,
        /// One VIP; none: the whole director (undrain: every drain).
        #[serde(default)]
        vip: Option<IpAddr>,
    },
    /// Stop a connection-synchronisation daemon.
    StopDaemon {
        /// `master` or `backup`.
        role: String,
    },
    /// Follow the packets `filter` matches (`xvsadm trace`): xvsd answers with one
    /// [`Response::Trace`] per packet and a [`Response::TraceEnd`] once `count` packets were
    /// traced or `seconds` went by; closing the connection ends it too.
    Trace {
        /// Which packets.
        #[serde(default)]
        filter: trace::TraceFilter,
        /// Stop after this many packets.
        #[serde(default)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[serde(default)]
        seconds: Option<u64>,
    },
}

/// A refusal, with the errno ipvsadm chooses its message by.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// The kernel errno name (`EEXIST`, `ESRCH`, ...).
    pub errno: String,
    /// What went wrong, in words.
    pub message: String,
    /// The request failed part way and what it had changed could not all be undone: the
    /// table is neither the old one nor the new one (never set when nothing changed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// In a batch: which request (from 0) was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<usize>,
}

/// xvsd's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Done.
    Ok,
    /// Refused; nothing changed.
    Error(ApiError),
    /// The state, for listings (boxed: it is much larger than the other answers).
    Snapshot(Box<Snapshot>),
    /// The changes an apply made (or would make).
    Applied {
        /// One line per change, `+`, `-` or `~` first.
        changes: Vec<String>,
        /// After a plain apply (no health checks, no `keep_unlisted`), the token that names
        /// the table it left: the next apply may send only what changed since
        /// ([`Request::ApplyPart`]) for as long as nothing else changes the table.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<String>,
    },
    /// One traced packet (a trace sends these until [`Response::TraceEnd`]).
    Trace(Box<trace::TraceEvent>),
    /// The trace is over.
    TraceEnd {
        /// Packets traced.
        traced: u64,
        /// Packets that matched but found the trace's ring buffer full (not shown).
        lost: u64,
    },
}

/// Everything an `-L` listing shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Size of the connection table (the `size=` in the header).
    pub conn_table_size: u32,
    /// `--timeout` values: TCP, TCP FIN, UDP.
    pub timeouts: (u64, u64, u64),
    /// Services in the order they were added.
    pub services: Vec<ServiceState>,
    /// Connections, when asked for.
    pub conns: Vec<ConnState>,
    /// Health of the services whose real servers are checked.
    #[serde(default)]
    pub health: Vec<health::ServiceStatus>,
    /// VRRP instances xvsd runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vrrp: Vec<vrrp::VrrpStatus>,
    /// Connection-synchronisation daemons running (`-L --daemon`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub daemons: Vec<DaemonState>,
    /// IPVS's `net.ipv4.vs.*` settings by name.
    #[serde(default)]
    pub sysctl: std::collections::BTreeMap<String, u64>,
    /// The VIPs announced to routers, when `[bgp]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<bgp::BgpStatus>,
    /// Packets that left the dataplane's fast path since it was loaded, by reason (dropped,
    /// passed to the kernel, or answered with ICMP); empty without a dataplane.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub drops: std::collections::BTreeMap<String, u64>,
}

/// Settings of a connection-synchronisation daemon, as ipvsadm gives them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOptions {
    /// `--mcast-interface` (ipvsadm's default: eth0).
    pub mcast_interface: String,
    /// `--syncid`: 0–255; a backup with 0 accepts every master.
    pub syncid: u8,
    /// `--sync-maxlen`: the largest message (0: the kernel's default).
    pub maxlen: u16,
    /// `--mcast-group` (default 224.0.0.81).
    pub group: Option<IpAddr>,
    /// `--mcast-port` (default 8848).
    pub port: u16,
    /// `--mcast-ttl` (default 1).
    pub ttl: u8,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions { mcast_interface: "eth0".into(), syncid: 0, maxlen: 0, group: None, port: 8848, ttl: 1 }
    }
}

/// A running synchronisation daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonState {
    /// `master` or `backup`.
    pub role: String,
    /// Its settings, with the defaults filled in (maxlen as used).
    pub options: SyncOptions,
    /// Datagrams sent (master) or received (backup).
    pub datagrams: u64,
    /// Entries sent (master) or received (backup).
    pub entries: u64,
    /// Backup: entries installed (new or refreshed).
    pub installed: u64,
    /// Backup: entries not installed (no such service or server here, or the table full).
    pub skipped: u64,
    /// Datagrams refused (malformed, or another sync ID).
    pub invalid: u64,
}

/// A service with its counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    /// Configuration.
    pub spec: ServiceSpec,
    /// Statistics since the last `-Z`.
    pub stats: Counters,
    /// Rates.
    pub rates: Rates,
    /// Real servers in the kernel's list order (newest first).
    pub dests: Vec<DestState>,
}

/// A real server with its counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DestState {
    /// Configuration.
    pub spec: DestSpec,
    /// ActiveConn.
    pub active: u32,
    /// InActConn.
    pub inactive: u32,
    /// PersistConn.
    pub persistent: u32,
    /// Upper threshold reached.
    pub overloaded: bool,
    /// Statistics since the last `-Z`.
    pub stats: Counters,
    /// Rates.
    pub rates: Rates,
}

/// One entry of `-Lc`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnState {
    /// `TCP`, `UDP`, or `IP` (firewall-mark templates).
    pub proto: String,
    /// Seconds until it expires.
    pub expires: u64,
    /// State name (`ESTABLISHED`, `NONE`, `ASSURED`, ...).
    pub state: String,
    /// Client address.
    pub caddr: IpAddr,
    /// Client port.
    pub cport: u16,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Real server address.
    pub daddr: IpAddr,
    /// Real server port.
    pub dport: u16,
}

/// Encodes a message as one JSON line.
pub fn encode<T: Serialize>(msg: &T) -> String {
    let mut s = serde_json::to_string(msg).expect("API types always serialise");
    s.push('\n');
    s
}

/// Decodes one JSON line.
pub fn decode<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, String> {
    serde_json::from_str(line).map_err(|e| format!("malformed message: {e}"))
}

/// [`Request::Apply`]'s message as [`encode`] writes it (the tag first), read without the copy
/// of the whole message into an intermediate tree that serde makes for an internally tagged
/// enum: for a file of 100k services, that copy was half of what xvsd spent on an apply.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyMessage {
    #[allow(dead_code)]
    op: ApplyOp,
    config: config::Config,
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ApplyOp {
    Apply,
}

/// Decodes one response line: as [`decode`], with a direct path for the one answer that can be
/// megabytes long (a snapshot of 100k services: read through serde's intermediate tree for an
/// internally tagged enum, it took four fifths of `xvsadm -Ln`). [`encode`] writes the tag
/// first, so what follows it is the snapshot's own object.
pub fn decode_response(line: &str) -> Result<Response, String> {
    const TAG: &str = r#"{"result":"snapshot","#;
    if let Some(rest) = line.strip_prefix(TAG) {
        let mut object = String::with_capacity(rest.len() + 1);
        object.push('{');
        object.push_str(rest);
        if let Ok(s) = serde_json::from_str::<Snapshot>(&object) {
            return Ok(Response::Snapshot(Box::new(s)));
        }
    }
    decode(line)
}

/// Decodes one request line: as [`decode`], with a direct path for the one request that can
/// be megabytes long (an `apply` of a whole configuration).
pub fn decode_request(line: &str) -> Result<Request, String> {
    if line.starts_with(r#"{"op":"apply","#) {
        if let Ok(m) = serde_json::from_str::<ApplyMessage>(line) {
            return Ok(Request::Apply { config: m.config, dry_run: m.dry_run });
        }
    }
    decode(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apply_reads_the_same_on_the_direct_path() {
        let config = config::Config::parse(
            "[[service]]\naddress = \"198.18.0.1:80\"\nscheduler = \"wrr\"\n[[service.real_server]]\naddress = \"198.18.2.2\"\nweight = 3\n",
        )
        .unwrap();
        for dry_run in [false, true] {
            let req = Request::Apply { config: config.clone(), dry_run };
            let line = encode(&req);
            assert!(line.starts_with(r#"{"op":"apply","#), "{line}");
            assert_eq!(decode_request(line.trim_end()).unwrap(), req);
            assert_eq!(decode::<Request>(line.trim_end()).unwrap(), req);
        }
        // The tag elsewhere, or another request: the general path.
        let moved = r#"{"dry_run":true,"config":{},"op":"apply"}"#;
        assert_eq!(decode_request(moved).unwrap(), Request::Apply { config: config::Config::default(), dry_run: true });
        assert_eq!(decode_request(r#"{"op":"clear"}"#).unwrap(), Request::Clear);
        assert!(decode_request(r#"{"op":"apply","config":{},"dry_run":"no"}"#).unwrap_err().contains("malformed"));
    }

    #[test]
    fn a_snapshot_reads_the_same_on_the_direct_path() {
        let snap = Snapshot { conn_table_size: 4096, timeouts: (900, 120, 300), ..Default::default() };
        let resp = Response::Snapshot(Box::new(snap));
        let line = encode(&resp);
        assert!(line.starts_with(r#"{"result":"snapshot","#), "{line}");
        assert_eq!(decode_response(line.trim_end()).unwrap(), resp);
        assert_eq!(decode::<Response>(line.trim_end()).unwrap(), resp);
        assert_eq!(decode_response(r#"{"result":"ok"}"#).unwrap(), Response::Ok);
        assert!(decode_response(r#"{"result":"snapshot","conn_table_size":"x"}"#).is_err());
    }
}
