//! The scale-out labs' network: a router namespace with a bridge for directors and real servers
//! (198.18.40.0/24, the router at .1) and a client behind it (198.18.41.10, the router at
//! 198.18.41.1), the router hashing ports for its multipath routes
//! (`fib_multipath_hash_policy=1`). The router's routes to the VIPs are the caller's (a routing
//! daemon, or `ip route replace … nexthop …`).

use crate::{veth, Netns};

/// The router and the client behind it.
pub struct Router {
    /// The router's namespace: `br0` towards directors and servers, `e1` towards the client.
    pub ns: Netns,
    /// The client's namespace (`e0`).
    pub client: Netns,
}

impl Router {
    /// Builds the router and the client, their names starting with `prefix`.
    pub fn new(prefix: &str) -> Router {
        let rt = Netns::new(&format!("{prefix}rt"));
        rt.ip(&["link", "add", "br0", "type", "bridge"]);
        rt.ip(&["link", "set", "br0", "up"]);
        rt.ip(&["addr", "add", "198.18.40.1/24", "dev", "br0"]);
        rt.sysctl("net.ipv4.ip_forward", "1");
        rt.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
        let client = Netns::new(&format!("{prefix}c"));
        veth(&client, "e0", &rt, "e1");
        client.ip(&["addr", "add", "198.18.41.10/24", "dev", "e0"]);
        client.ip(&["route", "add", "default", "via", "198.18.41.1"]);
        rt.ip(&["addr", "add", "198.18.41.1/24", "dev", "e1"]);
        for k in ["all", "default", "br0", "e1"] {
            rt.sysctl(&format!("net.ipv4.conf.{k}.rp_filter"), "0");
        }
        // XDP passes checksums on as they are; a veth sender would leave partial ones (a NIC
        // delivers full ones).
        client.exec(&["ethtool", "-K", "e0", "tx", "off"]);
        // A veth hands the sender socket's hash to the router, which uses it for the multipath
        // choice, and TCP picks a new one at each retransmission timeout: a flow would change
        // directors on every retransmission, which a real router hashing headers never does.
        client.sysctl("net.core.txrehash", "0");
        Router { ns: rt, client }
    }

    /// Connects `ns` to the bridge (see [`attach`]).
    pub fn attach(&self, ns: &Netns, tag: &str, addr: &str) {
        attach(&self.ns, ns, tag, addr)
    }
}

/// Connects `ns` to the bridge of the router namespace `rt`: its `e0` with `addr`/24, the
/// router's side `p<tag>`, and a default route through the router.
pub fn attach(rt: &Netns, ns: &Netns, tag: &str, addr: &str) {
    let p = format!("p{tag}");
    veth(ns, "e0", rt, &p);
    rt.ip(&["link", "set", &p, "master", "br0"]);
    ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "e0"]);
    ns.ip(&["route", "add", "default", "via", "198.18.40.1"]);
}
