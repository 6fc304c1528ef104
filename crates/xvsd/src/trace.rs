//! `xvsadm trace` served on the control socket: the filter goes to the dataplane, the ring
//! buffer's records come back as [`Response::Trace`] lines, each told in words — the service
//! and server by name, the scheduler's reason from the loads the dataplane compared — until the
//! count or the time is reached or the client hangs up; then the filter is turned off. One
//! trace runs at a time (the dataplane has one filter).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;
use xvs_abi as abi;
use xvs_api::trace::{TraceEvent, TraceFilter};
use xvs_api::{ApiError, KeySpec, Response};
use xvs_dataplane::{addr_words, words_addr};

use crate::control::Control;

/// How often the ring buffer is read.
const POLL: Duration = Duration::from_millis(50);
/// Records told per read.
const BATCH: usize = 512;
/// How long a client may take to accept a batch of records.
const WRITE_WAIT: Duration = Duration::from_secs(5);

fn refuse(errno: &str, message: String) -> Response {
    Response::Error(ApiError { errno: errno.into(), message, ..Default::default() })
}

/// The dataplane's filter for `f`.
pub fn abi_filter(f: &TraceFilter) -> Result<abi::TraceFilter, String> {
    let mut out = abi::TraceFilter::default();
    let family = |a: &IpAddr| if a.is_ipv4() { abi::AF_INET } else { abi::AF_INET6 };
    if let Some(c) = &f.client {
        out.flags |= abi::trace_filter::CADDR;
        out.caddr = addr_words(c);
        out.af = family(c);
    }
    if let Some(p) = f.client_port {
        if f.client.is_none() {
            return Err("a client port needs the client's address".into());
        }
        out.flags |= abi::trace_filter::CPORT;
        out.cport = p.to_be();
    }
    match f.service {
        Some(KeySpec::Addr { proto, addr, port }) => {
            if f.client.is_some_and(|c| family(&c) != family(&addr)) {
                return Err("the client and the service are of different address families".into());
            }
            out.flags |= abi::trace_filter::VADDR | abi::trace_filter::PROTO;
            out.vaddr = addr_words(&addr);
            out.af = family(&addr);
            out.proto = xvs_core::Protocol::from(proto).number();
            if port != 0 {
                out.flags |= abi::trace_filter::VPORT;
                out.vport = port.to_be();
            }
        }
        Some(KeySpec::Fwmark { .. }) => {
            return Err("a firewall-mark service cannot be traced by its mark (the dataplane sees the mark \
                        only after the kernel set it); trace its clients with --client"
                .into())
        }
        None => {}
    }
    Ok(out)
}

/// Runs one trace for a client of the control socket: `input` is the client's side (its
/// closing ends the trace), `out` gets the records and the end.
pub async fn serve<R, W>(
    input: &mut R,
    out: &mut W,
    control: &Arc<Mutex<Control>>,
    filter: TraceFilter,
    count: Option<u64>,
    seconds: Option<u64>,
) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let f = match abi_filter(&filter) {
        Ok(f) => f,
        Err(e) => return out.write_all(xvs_api::encode(&refuse("EINVAL", e)).as_bytes()).await,
    };
    let started = {
        let mut c = control.lock().await;
        match c.dp.as_mut() {
            None => Err(refuse("ENODEV", "xvsd runs without a dataplane: nothing to trace".into())),
            Some(dp) => match dp.director.take_trace_reader() {
                None => Err(refuse("EBUSY", "another xvsadm trace is running (one at a time)".into())),
                Some(mut r) => {
                    // Records an earlier trace left (written as it was turned off) are not ours.
                    r.read(usize::MAX);
                    match dp.director.set_trace(Some(f)) {
                        Ok(()) => Ok((r, dp.director.counter(abi::counter::TRACE_LOST).unwrap_or(0))),
                        Err(e) => {
                            dp.director.return_trace_reader(r);
                            Err(refuse("EIO", format!("cannot start the trace: {e}")))
                        }
                    }
                }
            },
        }
    };
    let (mut ring, lost_before) = match started {
        Ok(s) => s,
        Err(resp) => return out.write_all(xvs_api::encode(&resp).as_bytes()).await,
    };
    tracing::info!(?filter, ?count, ?seconds, "trace started");
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let clock = Clock::now();
    let mut names = Names::default();
    let mut traced = 0u64;
    let mut sink_ok = true;
    'trace: loop {
        if deadline.is_some_and(|d| Instant::now() >= d) || count.is_some_and(|n| traced >= n) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            r = input.fill_buf() => match r {
                Ok([]) | Err(_) => break 'trace, // the client hung up
                Ok(b) => { let n = b.len(); input.consume(n); }
            },
        }
        let mut records = ring.read(BATCH);
        if let Some(n) = count {
            records.truncate(n.saturating_sub(traced) as usize);
        }
        if records.is_empty() {
            continue;
        }
        let lines: String = {
            let c = control.lock().await;
            records
                .iter()
                .map(|r| xvs_api::encode(&Response::Trace(Box::new(describe(r, &c, &mut names, &clock)))))
                .collect()
        };
        traced += records.len() as u64;
        // A client that stops reading (a paused pager) must not hold the trace, and its filter,
        // for ever: it is given a few seconds.
        if !matches!(tokio::time::timeout(WRITE_WAIT, out.write_all(lines.as_bytes())).await, Ok(Ok(()))) {
            sink_ok = false;
            break;
        }
    }
    let lost = {
        let mut c = control.lock().await;
        match c.dp.as_mut() {
            Some(dp) => {
                if let Err(e) = dp.director.set_trace(None) {
                    tracing::error!(error = %e, "cannot turn the trace off");
                }
                ring.read(usize::MAX);
                dp.director.return_trace_reader(ring);
                dp.director.counter(abi::counter::TRACE_LOST).unwrap_or(0).saturating_sub(lost_before)
            }
            None => 0,
        }
    };
    tracing::info!(traced, lost, "trace ended");
    if sink_ok {
        let end = xvs_api::encode(&Response::TraceEnd { traced, lost });
        let _ = tokio::time::timeout(WRITE_WAIT, out.write_all(end.as_bytes())).await;
    }
    Ok(())
}

/// Turns off a trace xvsd is running when it stops: the pinned program goes on forwarding
/// without it, and must not go on recording for no one.
pub fn stop(control: &mut Control) {
    if let Some(dp) = control.dp.as_mut() {
        let _ = dp.director.set_trace(None);
    }
}

/// CLOCK_MONOTONIC (the records' clock) to the wall clock, as of the trace's start.
struct Clock {
    offset_ns: i128,
}

impl Clock {
    fn now() -> Clock {
        let mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map_or(0, |t| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()));
        let wall =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        Clock { offset_ns: wall - mono }
    }

    fn unix_ns(&self, mono_ns: u64) -> u64 {
        (i128::from(mono_ns) + self.offset_ns).max(0) as u64
    }
}

/// Service names by dataplane slot, looked up in the core when a slot is first seen in a
/// trace (and again after a second: slots are reused).
#[derive(Default)]
struct Names {
    services: HashMap<u32, (String, Instant)>,
}

impl Names {
    fn service(&mut self, c: &Control, id: u32) -> Option<String> {
        if let Some((n, at)) = self.services.get(&id) {
            if at.elapsed() < Duration::from_secs(1) {
                return Some(n.clone());
            }
        }
        let (_, s) = c.lb.services.iter().find(|(sid, _)| sid.index() == id)?;
        let name = crate::control::key_text(&xvs_api::ServiceSpec::from_core(s.key(), s.config()).key);
        self.services.insert(id, (name.clone(), Instant::now()));
        Some(name)
    }
}

fn endpoint(af: u8, words: &[u32; 4], port_be: u16) -> SocketAddr {
    SocketAddr::new(words_addr(af, words), u16::from_be(port_be))
}

fn flags_text(proto: u8, f: u8) -> String {
    if proto == 132 {
        const EVENTS: [&str; 10] = [
            "DATA",
            "INIT",
            "INIT_ACK",
            "COOKIE_ECHO",
            "COOKIE_ACK",
            "SHUTDOWN",
            "SHUTDOWN_ACK",
            "SHUTDOWN_COMPLETE",
            "ERROR",
            "ABORT",
        ];
        let ev = EVENTS.get(usize::from(f & 0x0f)).copied().unwrap_or("?");
        return if f & 0x80 != 0 { format!("{ev}+ABORT") } else { ev.to_string() };
    }
    if proto != 6 {
        return "-".into();
    }
    let mut s = String::new();
    for (bit, c) in [(0x02, 'S'), (0x01, 'F'), (0x04, 'R')] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    if f & 0x10 != 0 {
        s.push('.');
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

fn sched_name(k: u8) -> &'static str {
    match k {
        abi::sched::RR => "rr",
        abi::sched::WRR => "wrr",
        abi::sched::LC => "lc",
        abi::sched::WLC => "wlc",
        abi::sched::LBLC => "lblc",
        abi::sched::LBLCR => "lblcr",
        abi::sched::DH => "dh",
        abi::sched::SH => "sh",
        abi::sched::SED => "sed",
        abi::sched::NQ => "nq",
        abi::sched::FO => "fo",
        abi::sched::OVF => "ovf",
        abi::sched::MH => "mh",
        abi::sched::TWOS => "twos",
        _ => "none",
    }
}

/// ip_vs_dest_conn_overhead as the dataplane computes it (`overhead()` in bpf/include/common.h).
fn overhead(active: i64, total: i64) -> i32 {
    ((active as u32) << 8).wrapping_add(total as u32) as i32
}

/// Why the scheduler chose `win` (the loads it compared are in the record).
fn why(ev: &abi::TraceEvent, win: &str, alt: Option<&str>) -> String {
    let s = sched_name(ev.sched);
    let has_win = ev.flags & abi::trace_flags::WIN != 0;
    let (wa, wt, ww) = (ev.win_active, ev.win_total, ev.win_weight);
    let (aa, at, aw) = (ev.alt_active, ev.alt_total, ev.alt_weight);
    let least = matches!(
        ev.sched,
        abi::sched::LC | abi::sched::WLC | abi::sched::SED | abi::sched::NQ | abi::sched::FO | abi::sched::OVF
    );
    match (least, alt) {
        (true, None) if has_win => format!("{s}: {win} is the only server that may take it"),
        (true, Some(alt)) => match ev.sched {
            abi::sched::LC => format!("lc: {win} overhead {} < {alt} {}", overhead(wa, wt), overhead(aa, at)),
            abi::sched::WLC => {
                format!("wlc: {win} overhead {}/{ww} < {alt} {}/{aw}", overhead(wa, wt), overhead(aa, at))
            }
            abi::sched::NQ if wa == 0 => format!("nq: {win} has no active connection"),
            abi::sched::SED | abi::sched::NQ => {
                format!("{s}: {win} (active+1)/weight {}/{ww} < {alt} {}/{aw}", wa + 1, aa + 1)
            }
            abi::sched::FO => format!("fo: {win} has the highest weight, {ww} (next {alt}, {aw})"),
            _ => format!("ovf: {win} weight {ww} with {wa} active < weight (next {alt}, weight {aw})"),
        },
        _ => match ev.sched {
            abi::sched::RR => format!("rr: {win} is next in turn"),
            abi::sched::WRR => format!("wrr: {win} is next in turn at its weight ({ww})"),
            abi::sched::SH => format!("sh: {win} holds the bucket of the client's address hash"),
            abi::sched::DH => format!("dh: {win} holds the bucket of the destination address's hash"),
            abi::sched::MH => format!("mh: {win} holds the Maglev bucket of the client's hash"),
            abi::sched::LBLC | abi::sched::LBLCR => {
                format!("{s}: {win} serves this destination (or was the least loaded when the entry was made)")
            }
            abi::sched::TWOS => format!("twos: {win} was the less loaded of two weighted random draws"),
            _ => format!("{s}: {win}"),
        },
    }
}

fn state_text(proto: u8, state: u8) -> String {
    if state == abi::UDP_STATE {
        return "UDP".into();
    }
    if proto == 132 {
        return crate::conns::sctp_state(state).map_or("?".into(), |s| s.name().to_string());
    }
    xvs_core::TcpState::from_u8(state).map_or("NONE".into(), |s| s.name().to_string())
}

fn verdict_text(v: u8) -> &'static str {
    match u32::from(v) {
        xvs_dataplane::action::REDIRECT => "forwarded",
        xvs_dataplane::action::TX => "sent back out",
        xvs_dataplane::action::PASS => "passed to the kernel",
        xvs_dataplane::action::DROP => "dropped",
        _ => "aborted",
    }
}

/// One record in words, with the names the director and the core know now.
fn describe(ev: &abi::TraceEvent, c: &Control, names: &mut Names, clock: &Clock) -> TraceEvent {
    let dest = |id: u32| -> Option<abi::Dest> {
        (id != u32::MAX).then(|| c.dp.as_ref()?.director.maps.dests.get(&id, 0).ok()).flatten()
    };
    let dest_name = |d: &abi::Dest| endpoint(d.af, &d.addr, d.port);
    let server = dest(ev.dest_id);
    let alt = (ev.flags & abi::trace_flags::ALT != 0).then(|| dest(ev.alt_id)).flatten();
    let connection = match ev.conn {
        abi::trace_conn::HIT => "existing",
        abi::trace_conn::NEW => "new",
        abi::trace_conn::REPLY => "reply",
        abi::trace_conn::ONEPACKET => "one-packet",
        _ => "none",
    };
    let scheduled = matches!(ev.conn, abi::trace_conn::NEW | abi::trace_conn::ONEPACKET)
        || (ev.conn == abi::trace_conn::NONE && ev.sched != abi::sched::NONE);
    let tpl_hit = ev.flags & abi::trace_flags::TPL_HIT != 0;
    let template = if tpl_hit {
        Some("kept".to_string())
    } else if ev.flags & abi::trace_flags::TPL_NEW != 0 {
        Some("new".to_string())
    } else {
        None
    };
    let why = match (&server, scheduled && !tpl_hit) {
        (Some(s), true) => {
            Some(why(ev, &dest_name(s).to_string(), alt.as_ref().map(|a| dest_name(a).to_string()).as_deref()))
        }
        _ => None,
    };
    let dst = endpoint(ev.af, &ev.daddr, ev.dport);
    let rewrite = server.as_ref().filter(|_| ev.conn != abi::trace_conn::NONE).map(|d| {
        let to = dest_name(d);
        match (ev.conn, ev.method) {
            (abi::trace_conn::REPLY, _) => format!("source rewritten from {to} to the virtual service"),
            (_, abi::FWD_MASQ) => format!("NAT to {to}"),
            (_, abi::FWD_TUNNEL) => format!("tunnelled to {}", to.ip()),
            (_, abi::FWD_LOCAL) => "to this host's stack".to_string(),
            _ => format!("direct routing to {}", to.ip()),
        }
    });
    let interface = nix::net::if_::if_indextoname(ev.ifindex)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("if{}", ev.ifindex));
    TraceEvent {
        unix_ns: clock.unix_ns(ev.ts_ns),
        proto: match ev.proto {
            6 => "TCP",
            17 => "UDP",
            132 => "SCTP",
            _ => "IP",
        }
        .into(),
        flags: flags_text(ev.proto, ev.tcp_flags),
        src: endpoint(ev.af, &ev.saddr, ev.sport),
        dst,
        interface,
        service: (ev.svc_id != u32::MAX).then(|| names.service(c, ev.svc_id)).flatten(),
        connection: connection.into(),
        replaced: ev.flags & abi::trace_flags::REPLACED != 0,
        server: server.as_ref().map(dest_name),
        scheduler: scheduled.then(|| sched_name(ev.sched).to_string()),
        why,
        template,
        rewrite,
        state: (ev.conn != abi::trace_conn::NONE && ev.conn != abi::trace_conn::ONEPACKET)
            .then(|| state_text(ev.proto, ev.state)),
        verdict: verdict_text(ev.verdict).into(),
        reason: (ev.reason != abi::TRACE_NO_REASON)
            .then(|| abi::REASONS.iter().find(|(n, _)| *n == u32::from(ev.reason)).map(|(_, name)| name.to_string()))
            .flatten(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(sched: u8) -> abi::TraceEvent {
        abi::TraceEvent {
            sched,
            flags: abi::trace_flags::WIN | abi::trace_flags::ALT,
            win_active: 0,
            win_total: 3,
            win_weight: 1,
            alt_active: 0,
            alt_total: 7,
            alt_weight: 3,
            ..Default::default()
        }
    }

    #[test]
    fn the_scheduler_says_why() {
        assert_eq!(why(&ev(abi::sched::WLC), "rs2", Some("rs1")), "wlc: rs2 overhead 3/1 < rs1 7/3");
        assert_eq!(why(&ev(abi::sched::LC), "rs2", Some("rs1")), "lc: rs2 overhead 3 < rs1 7");
        assert_eq!(why(&ev(abi::sched::NQ), "rs2", Some("rs1")), "nq: rs2 has no active connection");
        assert_eq!(why(&ev(abi::sched::SED), "rs2", Some("rs1")), "sed: rs2 (active+1)/weight 1/1 < rs1 1/3");
        assert_eq!(why(&ev(abi::sched::WLC), "rs2", None), "wlc: rs2 is the only server that may take it");
        assert_eq!(why(&ev(abi::sched::RR), "rs2", None), "rr: rs2 is next in turn");
    }

    #[test]
    fn filters() {
        let f = abi_filter(&TraceFilter {
            client: Some("198.18.1.100".parse().unwrap()),
            client_port: Some(40000),
            service: Some(KeySpec::Addr {
                proto: xvs_api::ProtoName::Tcp,
                addr: "198.18.0.100".parse().unwrap(),
                port: 80,
            }),
        })
        .unwrap();
        assert_eq!(f.flags, 0x1f);
        assert_eq!((f.cport, f.vport, f.proto, f.af), (40000u16.to_be(), 80u16.to_be(), 6, abi::AF_INET));
        let port_alone = TraceFilter { client_port: Some(1), ..Default::default() };
        assert!(abi_filter(&port_alone).unwrap_err().contains("needs the client's address"));
        let mixed = TraceFilter {
            client: Some("2001:2::1".parse().unwrap()),
            service: Some(KeySpec::Addr {
                proto: xvs_api::ProtoName::Udp,
                addr: "198.18.0.100".parse().unwrap(),
                port: 53,
            }),
            ..Default::default()
        };
        assert!(abi_filter(&mixed).unwrap_err().contains("different address families"));
        let fwm = TraceFilter { service: Some(KeySpec::Fwmark { mark: 1, ipv6: false }), ..Default::default() };
        assert!(abi_filter(&fwm).unwrap_err().contains("--client"));
        assert_eq!(flags_text(6, 0x12), "S.");
        assert_eq!(flags_text(132, 0x81), "INIT+ABORT");
    }
}
