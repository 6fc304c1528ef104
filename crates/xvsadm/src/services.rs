//! Port names from `/etc/services`, as getservbyname/getservbyport would give them.

use xvs_api::ProtoName;

fn entries() -> Vec<(String, u16, String)> {
    let text = std::fs::read_to_string("/etc/services").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next()?.trim();
            let mut it = l.split_whitespace();
            let name = it.next()?;
            let (port, proto) = it.next()?.split_once('/')?;
            Some((name.to_string(), port.parse().ok()?, proto.to_string()))
        })
        .collect()
}

fn proto_str(p: ProtoName) -> &'static str {
    match p {
        ProtoName::Tcp => "tcp",
        ProtoName::Udp => "udp",
        ProtoName::Sctp => "sctp",
    }
}

/// The port of a service name for `proto`.
pub fn port_by_name(name: &str, proto: ProtoName) -> Option<u16> {
    entries().into_iter().find(|(n, _, p)| n == name && p == proto_str(proto)).map(|(_, port, _)| port)
}

/// The name of a port for `proto` (`tcp`, `udp`, `sctp`).
pub fn name_by_port(port: u16, proto: &str) -> Option<String> {
    entries().into_iter().find(|(_, p, pr)| *p == port && pr == proto).map(|(n, _, _)| n)
}
