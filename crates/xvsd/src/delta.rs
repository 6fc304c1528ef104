//! The table changes that take one desired state to another — after a health event (only the
//! real servers whose state moved, as keepalived touches only the server whose checker changed)
//! or a reload of keepalived.conf (only what the file changed). Everything else in the table —
//! an operator's drain (`-e -w 0`), a server or service they removed or added, another server's
//! weight — stands.

use std::collections::{HashMap, HashSet};

use xvs_api::{DestSpec, KeySpec, Request, ServiceSpec};

/// The requests that take the table from desired state `before` to `after` (each as
/// `xvs_health::Monitor::effective` or a file gives it), service by service and server by server.
pub fn delta(before: &[(ServiceSpec, Vec<DestSpec>)], after: &[(ServiceSpec, Vec<DestSpec>)]) -> Vec<Request> {
    let same = |a: &DestSpec, b: &DestSpec| a.addr == b.addr && a.port == b.port;
    // By key: a health event at 100k services compares two whole tables.
    let after_keys: HashSet<KeySpec> = after.iter().map(|(s, _)| s.key).collect();
    let by_key: HashMap<KeySpec, &(ServiceSpec, Vec<DestSpec>)> = before.iter().map(|e| (e.0.key, e)).collect();
    let mut out = Vec::new();
    for (service, _) in before.iter().filter(|(s, _)| !after_keys.contains(&s.key)) {
        out.push(Request::DeleteService { key: service.key });
    }
    for (service, now) in after {
        let key = service.key;
        let Some((old, was)) = by_key.get(&service.key).map(|e| (&e.0, &e.1)) else {
            out.push(Request::AddService { service: service.clone() });
            out.extend(now.iter().map(|d| Request::AddDest { key, dest: d.clone() }));
            continue;
        };
        if old != service {
            out.push(Request::EditService { service: service.clone() });
        }
        for d in was.iter().filter(|d| !now.iter().any(|x| same(x, d))) {
            out.push(Request::DeleteDest { key, addr: d.addr, port: d.port });
        }
        for d in now {
            match was.iter().find(|x| same(x, d)) {
                None => out.push(Request::AddDest { key, dest: d.clone() }),
                Some(x) if x != d => out.push(Request::EditDest { key, dest: d.clone() }),
                Some(_) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(dests: &[(&str, i32)]) -> (ServiceSpec, Vec<DestSpec>) {
        let config = xvs_api::config::Config::parse(
            "[[service]]\naddress = \"198.18.0.1:80\"\nscheduler = \"rr\"\n[[service.real_server]]\naddress = \"198.18.2.2\"\n",
        )
        .unwrap();
        let (spec, template) = config.specs().unwrap().remove(0);
        let dests = dests
            .iter()
            .map(|(a, w)| {
                let mut d = template[0].clone();
                d.addr = a.parse().unwrap();
                d.weight = *w;
                d
            })
            .collect();
        (spec, dests)
    }

    #[test]
    fn only_the_servers_that_moved_are_touched() {
        let before = vec![svc(&[("198.18.2.2", 1), ("198.18.2.3", 1), ("198.18.2.4", 0)])];
        // .3 failed (out), .4 recovered from inhibit (weight back), .2 unchanged.
        let after = vec![svc(&[("198.18.2.2", 1), ("198.18.2.4", 1), ("198.18.9.9", 1)])];
        let reqs = delta(&before, &after);
        let names: Vec<String> = reqs
            .iter()
            .map(|r| match r {
                Request::DeleteDest { addr, .. } => format!("-d {addr}"),
                Request::AddDest { dest, .. } => format!("-a {} {}", dest.addr, dest.weight),
                Request::EditDest { dest, .. } => format!("-e {} {}", dest.addr, dest.weight),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(names, ["-d 198.18.2.3", "-e 198.18.2.4 1", "-a 198.18.9.9 1"]);
        assert!(delta(&after, &after).is_empty());
        // Services that come and go.
        assert!(matches!(delta(&before, &[]).as_slice(), [Request::DeleteService { .. }]));
        assert!(matches!(delta(&[], &before).as_slice(), [Request::AddService { .. }, _, _, _]));
    }
}
