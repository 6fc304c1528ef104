//! `xvsadm trace`: which packets to follow, and what the dataplane did with each, in words.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::KeySpec;

/// Which packets a trace follows: all of these must match (none given: every packet).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceFilter {
    /// The client's address: its packets to the services and the NAT replies to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
    /// The client's port (with `client`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_port: Option<u16>,
    /// Packets to this service (a protocol, address and port; firewall marks are not known to
    /// the dataplane before a packet is marked, so they cannot be filtered on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<KeySpec>,
}

/// One traced packet: each decision the dataplane took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// When it arrived, nanoseconds since the Unix epoch.
    pub unix_ns: u64,
    /// `TCP`, `UDP` or `SCTP`.
    pub proto: String,
    /// TCP flags as tcpdump writes them (`S`, `S.`, `.`, `F.`, `R`), or the SCTP chunk.
    pub flags: String,
    /// Source.
    pub src: SocketAddr,
    /// Destination.
    pub dst: SocketAddr,
    /// The interface it arrived on.
    pub interface: String,
    /// The service it matched (`TCP  198.18.0.100:80`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `new` (scheduled now), `existing`, `reply` (a NAT reply), `one-packet` (scheduled,
    /// not kept), or `none`.
    pub connection: String,
    /// A closed connection on the same addresses and ports was replaced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
    /// The real server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<SocketAddr>,
    /// The scheduler that picked it (new connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// Why the scheduler picked it (`wlc: 198.18.3.2:80 overhead 257/3 < 198.18.2.2:80 257/1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The persistence template: `kept` (it chose the server) or `new`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// What was done to the packet (`NAT to 198.18.2.2:8080`, `direct routing to
    /// 198.18.2.2`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
    /// The connection's state after the packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `forwarded`, `sent back`, `passed to the kernel`, `dropped` or `aborted`.
    pub verdict: String,
    /// Why it left the fast path (the `reason` label of `xvs_dataplane_packets_total`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl TraceEvent {
    /// One line, as `xvsadm trace` prints it (the time is formatted by the caller).
    pub fn describe(&self) -> String {
        let mut s = format!("{} {} > {} [{}] on {}: ", self.proto, self.src, self.dst, self.flags, self.interface);
        let mut parts = Vec::new();
        match &self.service {
            Some(svc) => parts.push(format!("service {}", svc.split_whitespace().collect::<Vec<_>>().join(" "))),
            None if self.connection == "reply" => {}
            None => parts.push("no service".into()),
        }
        let conn = match self.connection.as_str() {
            "new" => "new connection",
            "existing" => "existing connection",
            "reply" => "reply of a NAT connection",
            "one-packet" => "scheduled (one-packet, not kept)",
            _ => "",
        };
        if !conn.is_empty() {
            let mut c = conn.to_string();
            if self.replaced {
                c += " (replacing a closed one)";
            }
            if let Some(server) = self.server {
                c += &format!(" {} {server}", if self.connection == "reply" { "from" } else { "->" });
            }
            parts.push(c);
        }
        match (&self.template, &self.why) {
            (Some(t), _) if t == "kept" => parts.push("persistence template chose it".into()),
            (t, Some(why)) => {
                parts.push(why.clone());
                if t.is_some() {
                    parts.push("new persistence template".into());
                }
            }
            _ => {}
        }
        if let Some(r) = &self.rewrite {
            parts.push(r.clone());
        }
        if let Some(st) = &self.state {
            parts.push(st.clone());
        }
        let mut v = self.verdict.clone();
        if let Some(r) = &self.reason {
            v += &format!(" ({r})");
        }
        parts.push(v);
        s += &parts.join(", ");
        s
    }
}
