//! Health of real servers as xvsd reports it (`xvsadm health`, `--json`, metrics).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::KeySpec;

/// The last attempt of a checker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    /// It passed.
    pub ok: bool,
    /// Why.
    pub reason: String,
    /// How long ago it finished, in milliseconds (at the time of the status).
    pub ago_ms: u64,
}

/// One checker's state, for listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckStatus {
    /// keepalived's name (`HTTP_GET`, ...).
    pub kind: String,
    /// What it probes.
    pub target: String,
    /// Passing.
    pub up: bool,
    /// Failed attempts in the current retry run.
    pub retries: u32,
    /// The last attempt.
    pub last: Option<LastResult>,
    /// Shared with this many other (service, real server) pairs.
    pub shared_with: usize,
}

/// One real server's health, for listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// The server.
    pub server: SocketAddr,
    /// Every check passes.
    pub alive: bool,
    /// Weight it has in the table (absent: not in the table).
    pub weight: Option<i32>,
    /// Its checks.
    pub checks: Vec<CheckStatus>,
}

/// One service's health, for listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service.
    pub service: KeySpec,
    /// The quorum holds.
    pub quorum_up: bool,
    /// Sum of alive weights.
    pub alive_weight: u64,
    /// Configured quorum.
    pub quorum: u32,
    /// The sorry server, when in use.
    pub sorry_active: Option<SocketAddr>,
    /// Its real servers.
    pub servers: Vec<ServerStatus>,
}
