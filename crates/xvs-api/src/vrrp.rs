//! VRRP in the declarative file (keepalived's `vrrp_instance`, `vrrp_sync_group` and
//! `vrrp_script`, with the same names and meanings) and its state in listings.
//!
//! ```toml
//! [[vrrp_instance]]
//! name = "VI_1"
//! interface = "eth1"
//! state = "BACKUP"                  # MASTER | BACKUP (the initial state)
//! virtual_router_id = 51
//! priority = 100
//! advert_int = 1                    # seconds (version 3: hundredths allowed)
//! version = 3                       # default 2 for IPv4, 3 for IPv6
//! auth_pass = "secret"              # version 2 only
//! virtual_ipaddress = ["198.18.0.100/32 dev eth1 label eth1:vip"]
//! track_script = [{ name = "chk_xvs", weight = -20 }]
//! notify_master = "/etc/xvs/master.sh"
//!
//! [[vrrp_script]]
//! name = "chk_xvs"
//! script = "/usr/bin/curl -sf http://127.0.0.1/"
//! interval = 2
//! ```

use serde::{Deserialize, Serialize};

/// One `[[vrrp_instance]]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpInstanceEntry {
    /// Its name.
    pub name: String,
    /// The interface it advertises on.
    pub interface: String,
    /// `MASTER` or `BACKUP`: how it starts (an election decides the rest).
    pub state: Option<String>,
    /// 1–255, the same on every router of the pair.
    pub virtual_router_id: u32,
    /// 1–255 (default 100; 255 when `state = "MASTER"` gives none, as keepalived).
    pub priority: Option<u32>,
    /// Seconds between advertisements (default 1).
    pub advert_int: Option<f64>,
    /// 2 or 3.
    pub version: Option<u8>,
    /// Never take over from a lower priority master.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nopreempt: bool,
    /// Seconds to wait after start before preempting a lower priority master.
    pub preempt_delay: Option<f64>,
    /// Version 2 simple password (first 8 bytes used).
    pub auth_pass: Option<String>,
    /// Addresses advertised and owned by the master: `ADDR[/LEN] [dev IF] [scope S]
    /// [brd B] [label L]`.
    #[serde(default)]
    pub virtual_ipaddress: Vec<String>,
    /// Addresses owned by the master but not advertised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_ipaddress_excluded: Vec<String>,
    /// Source of unicast advertisements (default: the interface's primary address).
    pub unicast_src_ip: Option<String>,
    /// Unicast peers; empty: multicast.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unicast_peer: Vec<String>,
    /// Seconds after becoming master before the second round of gratuitous ARPs (default 5, 0: none).
    pub garp_master_delay: Option<f64>,
    /// Gratuitous ARPs / neighbour advertisements per address per round (default 5).
    pub garp_master_repeat: Option<u32>,
    /// Seconds between further rounds while master (default 0: none).
    pub garp_master_refresh: Option<f64>,
    /// Interfaces that change the priority (or fault the instance) when down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_interface: Vec<TrackEntry>,
    /// `vrrp_script`s that change the priority (or fault the instance) when failing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_script: Vec<TrackEntry>,
    /// Do not fault the instance when its own interface goes down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dont_track_primary: bool,
    /// Accept advertisements of a known master without checking their addresses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_check_adv_addr: bool,
    /// Run on becoming master.
    pub notify_master: Option<String>,
    /// Run on becoming backup.
    pub notify_backup: Option<String>,
    /// Run on entering FAULT.
    pub notify_fault: Option<String>,
    /// Run when the instance stops.
    pub notify_stop: Option<String>,
    /// Run on every change with `INSTANCE NAME STATE PRIORITY` appended.
    pub notify: Option<String>,
}

/// One tracked interface or script.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackEntry {
    /// The interface or `vrrp_script` name.
    pub name: String,
    /// −253..=253 (default: the script's weight; 0 for an interface): 0 faults the instance.
    pub weight: Option<i32>,
    /// Flip the direction of the weight.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverse: bool,
}

/// One `[[vrrp_script]]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpScriptEntry {
    /// Its name, for `track_script`.
    pub name: String,
    /// The command (exit 0: success).
    pub script: String,
    /// Seconds between runs (default 1).
    pub interval: Option<f64>,
    /// Seconds a run may take (default: the interval).
    pub timeout: Option<f64>,
    /// Default weight for instances tracking it (default 0: failure faults them).
    pub weight: Option<i32>,
    /// Flip the direction of the weight.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverse: bool,
    /// Successes in a row to count as up (default 1).
    pub rise: Option<u32>,
    /// Failures in a row to count as down (default 1).
    pub fall: Option<u32>,
    /// Start as failed until the first success.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init_fail: bool,
    /// Run as this `user[:group]` (default: the global script user).
    pub user: Option<String>,
}

/// One `[[vrrp_sync_group]]`: instances that change state together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpSyncGroupEntry {
    /// Its name.
    pub name: String,
    /// Member instances.
    pub group: Vec<String>,
    /// Run when the group becomes master.
    pub notify_master: Option<String>,
    /// Run when the group becomes backup.
    pub notify_backup: Option<String>,
    /// Run when the group enters FAULT.
    pub notify_fault: Option<String>,
    /// Run when the group stops.
    pub notify_stop: Option<String>,
    /// Run on every change with `GROUP NAME STATE 0` appended.
    pub notify: Option<String>,
}

/// One instance's state, for listings and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpStatus {
    /// Its name.
    pub name: String,
    /// Its interface.
    pub interface: String,
    /// Virtual router id.
    pub vrid: u8,
    /// Protocol version.
    pub version: u8,
    /// `MASTER`, `BACKUP`, `FAULT`, `INIT` or `STOP`.
    pub state: String,
    /// Priority after tracking.
    pub priority: u8,
    /// Configured priority.
    pub base_priority: u8,
    /// The master's address (this router's when master), when known.
    pub master: Option<String>,
    /// The master's priority, when known.
    pub master_priority: Option<u8>,
    /// Its sync group.
    pub group: Option<String>,
    /// The virtual addresses.
    pub vips: Vec<String>,
    /// Seconds since the last state change.
    pub since_s: u64,
    /// Advertisements sent.
    pub adverts_sent: u64,
    /// Advertisements accepted.
    pub adverts_received: u64,
    /// Advertisements refused.
    pub adverts_invalid: u64,
    /// State changes.
    pub transitions: u64,
    /// Times it became master.
    pub became_master: u64,
}

/// `[sync_daemon]`: connection synchronisation that follows a VRRP instance (keepalived's
/// `lvs_sync_daemon`): the master's daemon sends while the instance is MASTER, and receives
/// (as a backup) otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncDaemonEntry {
    /// The interface the messages go out and come in on.
    pub interface: String,
    /// The VRRP instance it follows.
    pub vrrp_instance: String,
    /// Sync ID, 0–255 (0: a backup accepts every master).
    #[serde(default)]
    pub syncid: u8,
    /// Largest message (0: the kernel's default).
    #[serde(default)]
    pub maxlen: u16,
    /// UDP port (default 8848).
    pub port: Option<u16>,
    /// Multicast TTL (default 1).
    pub ttl: Option<u8>,
    /// Multicast group (default 224.0.0.81).
    pub group: Option<String>,
}
