//! Prometheus metrics, rendered from a fresh snapshot at each scrape.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use xvs_core::Instant;

use crate::control::Control;
use crate::server::Extras;

type Labels = Vec<(String, String)>;

fn counters(r: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    r.register(name, help, f.clone());
    f
}

fn gauges(r: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    r.register(name, help, f.clone());
    f
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// What a scrape needs, taken under the daemon's lock; [`render`] formats it without it.
pub struct Input {
    snap: xvs_api::Snapshot,
    dp: Option<DpInput>,
}

struct DpInput {
    live: u64,
    max_conns: u32,
    half: i64,
    max_half: u32,
    early_total: u64,
}

/// Takes what a scrape needs (the listing's snapshot, completed with what runs beside the
/// control, and the dataplane's figures).
pub fn input(control: &mut Control, extras: &Extras, now: Instant) -> Input {
    let mut snap = control.snapshot(false, now);
    extras.complete(&mut snap);
    let dp = control.dp.as_ref().map(|dp| DpInput {
        live: dp.sweeper.live,
        max_conns: dp.director.options.max_conns,
        half: dp.sweeper.half,
        max_half: dp.director.options.max_half,
        early_total: dp.sweeper.early_total,
    });
    Input { snap, dp }
}

/// The text exposition of every metric (formatted without the daemon's lock: at 100k services
/// it is the slow part of a scrape).
pub fn render(input: Input) -> String {
    let Input { snap, dp } = input;
    let mut r = Registry::with_prefix("xvs");
    let s_conns = counters(&mut r, "service_connections", "Connections scheduled by the service");
    let s_pkts = counters(&mut r, "service_packets", "Packets of the service by direction");
    let s_bytes = counters(&mut r, "service_bytes", "Bytes of the service by direction (IP header included)");
    let s_rate = gauges(&mut r, "service_rate", "Estimated rate (connections/s, packets/s, bytes/s) of the service");
    let d_conns = counters(&mut r, "real_server_connections", "Connections scheduled to the real server");
    let d_pkts = counters(&mut r, "real_server_packets", "Packets of the real server by direction");
    let d_bytes = counters(&mut r, "real_server_bytes", "Bytes of the real server by direction");
    let d_rate = gauges(&mut r, "real_server_rate", "Estimated rate of the real server");
    let d_active = gauges(&mut r, "real_server_active_connections", "ActiveConn");
    let d_inactive = gauges(&mut r, "real_server_inactive_connections", "InActConn");
    let d_persist = gauges(&mut r, "real_server_persistent_connections", "PersistConn (templates)");
    let d_weight = gauges(&mut r, "real_server_weight", "Weight");
    let d_over = gauges(&mut r, "real_server_overloaded", "1 while the upper threshold holds connections off");
    for s in &snap.services {
        let svc = xvs_core::ServiceKey::from(s.spec.key).to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        s_conns.get_or_create(&l(&[("service", &svc)])).inc_by(s.stats.conns);
        for (dir, p, b) in [("in", s.stats.inpkts, s.stats.inbytes), ("out", s.stats.outpkts, s.stats.outbytes)] {
            s_pkts.get_or_create(&l(&[("service", &svc), ("direction", dir)])).inc_by(p);
            s_bytes.get_or_create(&l(&[("service", &svc), ("direction", dir)])).inc_by(b);
        }
        let rt = &s.rates;
        for (kind, v) in
            [("cps", rt.cps), ("inpps", rt.inpps), ("outpps", rt.outpps), ("inbps", rt.inbps), ("outbps", rt.outbps)]
        {
            s_rate.get_or_create(&l(&[("service", &svc), ("kind", kind)])).set(v as i64);
        }
        for d in &s.dests {
            let rs = xvsadm_like_endpoint(&d.spec.addr, d.spec.port);
            let lab = |extra: &[(&str, &str)]| {
                let mut v = l(&[("service", &svc), ("real_server", &rs)]);
                v.extend(l(extra));
                v
            };
            d_conns.get_or_create(&lab(&[])).inc_by(d.stats.conns);
            for (dir, p, b) in [("in", d.stats.inpkts, d.stats.inbytes), ("out", d.stats.outpkts, d.stats.outbytes)] {
                d_pkts.get_or_create(&lab(&[("direction", dir)])).inc_by(p);
                d_bytes.get_or_create(&lab(&[("direction", dir)])).inc_by(b);
            }
            let rt = &d.rates;
            for (kind, v) in [
                ("cps", rt.cps),
                ("inpps", rt.inpps),
                ("outpps", rt.outpps),
                ("inbps", rt.inbps),
                ("outbps", rt.outbps),
            ] {
                d_rate.get_or_create(&lab(&[("kind", kind)])).set(v as i64);
            }
            d_active.get_or_create(&lab(&[])).set(i64::from(d.active));
            d_inactive.get_or_create(&lab(&[])).set(i64::from(d.inactive));
            d_persist.get_or_create(&lab(&[])).set(i64::from(d.persistent));
            d_weight.get_or_create(&lab(&[])).set(i64::from(d.spec.weight));
            d_over.get_or_create(&lab(&[])).set(i64::from(d.overloaded));
        }
    }
    if !snap.health.is_empty() {
        let quorum = gauges(&mut r, "service_quorum_up", "1 while the service's quorum of healthy real servers holds");
        let up = gauges(&mut r, "real_server_healthy", "1 while every health check of the real server passes");
        let check = gauges(&mut r, "health_check_up", "1 while the check passes");
        let fails = gauges(&mut r, "health_check_last_failed", "1 when the last attempt of the check failed");
        for h in &snap.health {
            let svc =
                xvs_core::ServiceKey::from(h.service).to_string().split_whitespace().collect::<Vec<_>>().join(" ");
            quorum.get_or_create(&l(&[("service", &svc)])).set(i64::from(h.quorum_up));
            for rs in &h.servers {
                let server = rs.server.to_string();
                up.get_or_create(&l(&[("service", &svc), ("real_server", &server)])).set(i64::from(rs.alive));
                for c in &rs.checks {
                    let labels =
                        l(&[("service", &svc), ("real_server", &server), ("check", &c.kind), ("target", &c.target)]);
                    check.get_or_create(&labels).set(i64::from(c.up));
                    fails.get_or_create(&labels).set(i64::from(c.last.as_ref().is_some_and(|x| !x.ok)));
                }
            }
        }
    }
    if !snap.vrrp.is_empty() {
        let state =
            gauges(&mut r, "vrrp_state", "1 for the VRRP instance's current state (INIT, BACKUP, MASTER, FAULT, STOP)");
        let prio = gauges(&mut r, "vrrp_priority", "The instance's priority after tracking");
        let trans = counters(&mut r, "vrrp_transitions", "State changes of the VRRP instance");
        let masters = counters(&mut r, "vrrp_became_master", "Times the VRRP instance became master");
        let adverts = counters(&mut r, "vrrp_adverts", "VRRP advertisements by outcome (sent, received, invalid)");
        for v in &snap.vrrp {
            for st in ["INIT", "BACKUP", "MASTER", "FAULT", "STOP"] {
                state.get_or_create(&l(&[("vrrp_instance", &v.name), ("state", st)])).set(i64::from(v.state == st));
            }
            prio.get_or_create(&l(&[("vrrp_instance", &v.name)])).set(i64::from(v.priority));
            trans.get_or_create(&l(&[("vrrp_instance", &v.name)])).inc_by(v.transitions);
            masters.get_or_create(&l(&[("vrrp_instance", &v.name)])).inc_by(v.became_master);
            for (k, n) in [("sent", v.adverts_sent), ("received", v.adverts_received), ("invalid", v.adverts_invalid)] {
                adverts.get_or_create(&l(&[("vrrp_instance", &v.name), ("outcome", k)])).inc_by(n);
            }
        }
    }
    if let Some(b) = &snap.bgp {
        let ann = gauges(&mut r, "bgp_announced", "1 while the routing daemon announces the VIP");
        let why = gauges(
            &mut r,
            "bgp_vip_reason",
            "1 for why the VIP is or is not wanted (ready, no_server, quorum_lost, standby, drained, stopping, no_service)",
        );
        for v in &b.vips {
            let vip = v.vip.to_string();
            ann.get_or_create(&l(&[("vip", &vip)])).set(i64::from(v.announced));
            why.get_or_create(&l(&[("vip", &vip), ("reason", &v.reason)])).set(1);
        }
        gauges(&mut r, "bgp_drained", "1 while the operator has drained the whole director")
            .get_or_create(&l(&[]))
            .set(i64::from(b.drained));
        gauges(&mut r, "bgp_daemon_error", "1 while the last update of the routing daemon failed (it is retried)")
            .get_or_create(&l(&[]))
            .set(i64::from(b.error.is_some()));
        counters(&mut r, "bgp_pushes", "Updates of the announced routes sent to the routing daemon")
            .get_or_create(&l(&[]))
            .inc_by(b.pushes);
    }
    if !snap.daemons.is_empty() {
        let up = gauges(&mut r, "sync_daemon_running", "1 while the synchronisation daemon of this role runs");
        let dgrams = counters(&mut r, "sync_datagrams", "Synchronisation datagrams sent (master) or received (backup)");
        let entries = counters(&mut r, "sync_entries", "Connections and templates sent (master) or received (backup)");
        let installed = counters(&mut r, "sync_installed", "Received entries installed in the dataplane");
        let skipped =
            counters(&mut r, "sync_skipped", "Received entries not installed (no such service or server, table full)");
        let invalid = counters(&mut r, "sync_invalid", "Datagrams refused (malformed or another sync ID)");
        for d in &snap.daemons {
            let lab = l(&[("role", &d.role)]);
            up.get_or_create(&lab).set(1);
            dgrams.get_or_create(&lab).inc_by(d.datagrams);
            entries.get_or_create(&lab).inc_by(d.entries);
            installed.get_or_create(&lab).inc_by(d.installed);
            skipped.get_or_create(&lab).inc_by(d.skipped);
            invalid.get_or_create(&lab).inc_by(d.invalid);
        }
    }
    if let Some(dp) = &dp {
        // From the last sweep (a second old at most): counting a large table at each scrape
        // would cost a system call per entry.
        let fill = gauges(&mut r, "conn_table_entries", "Connections and templates in the table at the last sweep");
        let cap = gauges(&mut r, "conn_table_capacity", "Entries the table holds, per address family");
        fill.get_or_create(&l(&[])).set(dp.live as i64);
        cap.get_or_create(&l(&[])).set(i64::from(dp.max_conns));
        let half = gauges(&mut r, "half_open_entries", "Connections not yet assured, at the last sweep");
        half.get_or_create(&l(&[])).set(dp.half);
        let half_cap = gauges(&mut r, "half_open_capacity", "Connections not yet assured that are accepted");
        half_cap.get_or_create(&l(&[])).set(i64::from(dp.max_half));
        let early = counters(
            &mut r,
            "early_drops",
            "Unassured connections and templates removed early while the half-open gauge was high",
        );
        early.get_or_create(&l(&[])).inc_by(dp.early_total);
        let reasons = counters(
            &mut r,
            "dataplane_packets",
            "Packets that left the fast path, by reason (dropped, passed, or answered with ICMP)",
        );
        for (name, v) in &snap.drops {
            reasons.get_or_create(&l(&[("reason", name)])).inc_by(*v);
        }
    }
    let mut out = String::new();
    encode(&mut out, &r).expect("writing to a String cannot fail");
    out
}

fn xvsadm_like_endpoint(a: &std::net::IpAddr, port: u16) -> String {
    match a {
        std::net::IpAddr::V4(v) => format!("{v}:{port}"),
        std::net::IpAddr::V6(v) => format!("[{v}]:{port}"),
    }
}
