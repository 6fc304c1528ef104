//! Announcing VIPs to routers through a routing daemon (`[bgp]` in the file, `xvsadm bgp`).

use serde::{Deserialize, Serialize};

/// `[bgp]`: xvsd tells the routing daemon which VIPs to announce (see docs/scale-out.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpEntry {
    /// The routing daemon: `bird` (BIRD 2).
    #[serde(default = "default_daemon")]
    pub daemon: String,
    /// Its control socket.
    #[serde(default = "default_socket")]
    pub control_socket: String,
    /// The file of routes xvsd writes and the daemon's configuration includes.
    #[serde(default = "default_file")]
    pub include_file: String,
    /// The interface the routes point at: xvsd holds it, and the kernel removes it when xvsd
    /// dies (the daemon then withdraws every route by itself).
    #[serde(default = "default_interface")]
    pub interface: String,
    /// `any` (default): a VIP is announced while one of its services can be served; `all`:
    /// only while every one can.
    #[serde(default = "default_require")]
    pub require: String,
    /// The VIPs to announce (default: every service address of the file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<String>,
}

fn default_daemon() -> String {
    "bird".into()
}
fn default_socket() -> String {
    "/run/bird/bird.ctl".into()
}
fn default_file() -> String {
    "/run/xvs/bird-vips.conf".into()
}
fn default_interface() -> String {
    "xvs-vips".into()
}
fn default_require() -> String {
    "any".into()
}

impl Default for BgpEntry {
    fn default() -> BgpEntry {
        BgpEntry {
            daemon: default_daemon(),
            control_socket: default_socket(),
            include_file: default_file(),
            interface: default_interface(),
            require: default_require(),
            vips: Vec::new(),
        }
    }
}

/// The announcer's state, in snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpStatus {
    /// The routing daemon (`bird`).
    pub daemon: String,
    /// Its control socket.
    pub control_socket: String,
    /// The liveness interface the routes point at.
    pub interface: String,
    /// The whole director is drained.
    pub drained: bool,
    /// The last push failed with this (pushes are retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Pushes made to the daemon since xvsd started.
    pub pushes: u64,
    /// Every VIP.
    pub vips: Vec<BgpVip>,
}

/// One VIP of [`BgpStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpVip {
    /// The VIP.
    pub vip: std::net::IpAddr,
    /// The daemon confirmed it announces it.
    pub announced: bool,
    /// `ready`, `no_server`, `quorum_lost`, `standby`, `drained`, `stopping`, `no_service`.
    pub reason: String,
    /// The reason in words.
    pub detail: String,
}
