//! The health monitor: keepalived's checker state machine, real-server and quorum logic, as a
//! pure value. Time is an argument and the probes run elsewhere: the monitor says which checks
//! are due, is told their outcomes, and answers with events (scripts to run, what changed) and
//! with the table the services should have.
//!
//! The state machine follows keepalived (`tcp_epilog` and friends, `update_svr_checker_state`,
//! `update_quorum_state`):
//! - a checker starts up (down with `alpha`); its first failure takes it down at once;
//! - an up checker goes down after `retry + 1` consecutive failures, `delay_before_retry` apart;
//!   one success brings it back up;
//! - a real server is alive when every one of its checkers is up;
//! - the quorum is lost when the alive weight is 0 or below `quorum - hysteresis`, and regained
//!   at `quorum + hysteresis`; while it is lost, a sorry server (if any) takes the place of the
//!   alive servers.
//!
//! Where xvs differs: one checker serves every virtual service that has the same check of the
//! same real server (keepalived runs one per pair), and the next check after a full period
//! gets a small random delay so that checks started together drift apart.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use xvs_api::health::{CheckStatus, LastResult, ServerStatus, ServiceStatus};
use xvs_api::{DestSpec, KeySpec, ServiceSpec};

use crate::plan::{Plan, ServicePlan};
use crate::probe::Outcome;
use crate::spec::{defaults, CheckSpec};

/// Identifies a running checker; stable across reconfigurations that keep the check.
pub type CheckId = u64;

#[derive(Clone, Debug)]
struct Checker {
    spec: CheckSpec,
    up: bool,
    has_run: bool,
    retry_it: u32,
    next: Instant,
    running: bool,
    last: Option<(bool, String, Instant)>,
    /// misc_dynamic: the weight the script asked for.
    weight: Option<i32>,
    /// When `up` last changed.
    since: Instant,
}

/// Something that happened, for the log and the scripts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A real server became alive.
    ServerUp {
        /// Its service.
        service: KeySpec,
        /// The server.
        server: SocketAddr,
        /// Its notify_up.
        script: Option<String>,
    },
    /// A real server failed.
    ServerDown {
        /// Its service.
        service: KeySpec,
        /// The server.
        server: SocketAddr,
        /// What failed.
        reason: String,
        /// Its notify_down.
        script: Option<String>,
    },
    /// The quorum was regained (or held at start).
    QuorumUp {
        /// The service.
        service: KeySpec,
        /// quorum_up.
        script: Option<String>,
    },
    /// The quorum was lost.
    QuorumDown {
        /// The service.
        service: KeySpec,
        /// quorum_down.
        script: Option<String>,
    },
}

/// The monitor.
#[derive(Clone, Debug)]
pub struct Monitor {
    plan: Plan,
    checkers: HashMap<CheckId, Checker>,
    /// Per service, per real server: its checkers.
    links: Vec<Vec<Vec<CheckId>>>,
    /// Per service, per real server: alive.
    alive: Vec<Vec<bool>>,
    /// Per service.
    quorum_up: Vec<bool>,
    next_id: CheckId,
    rng: u64,
    /// State saved by a previous daemon, taken by the first reconfiguration.
    restore: Option<Saved>,
}

/// Key of a distinct check: the same probe with the same timing, and the same start state.
type CheckKey = (CheckSpec, bool);

/// What a restarted daemon needs to carry on where the last one stopped: each checker's state
/// and each service's quorum, keyed by text that names the check and the service (so a check
/// that changed in the file starts afresh).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    /// Checks: key, up, the weight a dynamic script last asked for.
    pub checks: Vec<(String, bool, Option<i32>)>,
    /// Services: key, quorum up.
    pub quorum: Vec<(String, bool)>,
}

fn saved_check_key(c: &CheckSpec, alpha: bool) -> String {
    format!("{c:?} alpha={alpha}")
}

fn saved_service_key(s: &ServicePlan) -> String {
    format!("{:?}", s.key())
}

impl Monitor {
    /// Starts monitoring `plan` at `now`. Returns the start-up events (quorum at start, alpha
    /// servers down), as keepalived reports them.
    pub fn new(plan: Plan, now: Instant, seed: u64) -> (Monitor, Vec<Event>) {
        Monitor::start(plan, now, seed, None)
    }

    fn start(plan: Plan, now: Instant, seed: u64, restore: Option<Saved>) -> (Monitor, Vec<Event>) {
        let mut m = Monitor {
            plan: Plan::default(),
            checkers: HashMap::new(),
            links: Vec::new(),
            alive: Vec::new(),
            quorum_up: Vec::new(),
            next_id: 1,
            rng: seed | 1,
            restore,
        };
        let events = m.reconfigure(plan, now);
        (m, events)
    }

    /// Starts monitoring `plan` where a previous daemon left off (`saved`, from
    /// [`Monitor::save`]), as keepalived's own restart would like to: a server that was down
    /// stays down until its checks pass, and no event (so no script) reports a state that did
    /// not change. Checks and services the saved state does not know start as in [`Monitor::new`].
    pub fn restore(plan: Plan, now: Instant, seed: u64, saved: Saved) -> (Monitor, Vec<Event>) {
        Monitor::start(plan, now, seed, Some(saved))
    }

    /// The state to hand to a restarted daemon ([`Monitor::restore`]).
    pub fn save(&self) -> Saved {
        let mut checks = Vec::new();
        for (si, s) in self.plan.services.iter().enumerate() {
            for (di, d) in s.dests.iter().enumerate() {
                for id in &self.links[si][di] {
                    let c = &self.checkers[id];
                    let key = saved_check_key(&c.spec, d.alpha);
                    if !checks.iter().any(|(k, _, _): &(String, bool, Option<i32>)| *k == key) {
                        checks.push((key, c.up, c.weight));
                    }
                }
            }
        }
        let quorum = self.plan.services.iter().zip(&self.quorum_up).map(|(s, q)| (saved_service_key(s), *q)).collect();
        Saved { checks, quorum }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: enough to spread timers, and reproducible in tests.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn random_within(&mut self, d: Duration) -> Duration {
        if d.is_zero() {
            return Duration::ZERO;
        }
        let r = self.random() % 1_000_000;
        d.mul_f64(r as f64 / 1_000_000.0)
    }

    /// Replaces the plan. Checks that stay keep their state (keepalived's reload does the
    /// same); new ones start as at start-up; servers and services that go away report their
    /// down events (keepalived runs their scripts on reload).
    pub fn reconfigure(&mut self, plan: Plan, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let restore = self.restore.take();
        let saved_checks: HashMap<&str, (bool, Option<i32>)> =
            restore.iter().flat_map(|r| r.checks.iter().map(|(k, up, w)| (k.as_str(), (*up, *w)))).collect();
        let saved_quorum: HashMap<&str, bool> =
            restore.iter().flat_map(|r| r.quorum.iter().map(|(k, q)| (k.as_str(), *q))).collect();
        let mut restored_dests: std::collections::HashSet<(KeySpec, SocketAddr)> = std::collections::HashSet::new();
        // Down events for what disappears.
        let new_by_key: HashMap<KeySpec, &ServicePlan> = plan.services.iter().map(|s| (s.key(), s)).collect();
        for (si, old) in self.plan.services.iter().enumerate() {
            let new = new_by_key.get(&old.key()).copied();
            for (di, d) in old.dests.iter().enumerate() {
                let stays = new.is_some_and(|n| n.dests.iter().any(|x| same_server(&x.spec, &d.spec)));
                if !stays && self.alive[si][di] {
                    events.push(Event::ServerDown {
                        service: old.key(),
                        server: addr(&d.spec),
                        reason: "removed from the configuration".into(),
                        script: d.notify_down.clone(),
                    });
                }
            }
            if new.is_none() && self.quorum_up[si] {
                events.push(Event::QuorumDown { service: old.key(), script: old.quorum_down.clone() });
            }
        }
        let mut old_checkers = std::mem::take(&mut self.checkers);
        let mut old_by_spec: HashMap<CheckSpec, CheckId> =
            old_checkers.iter().map(|(id, c)| (c.spec.clone(), *id)).collect();
        let mut kept: HashMap<CheckKey, CheckId> = HashMap::new();
        let mut links = Vec::new();
        for s in &plan.services {
            let mut per_dest = Vec::new();
            for d in &s.dests {
                let mut ids = Vec::new();
                for c in &d.checks {
                    let key = (c.clone(), d.alpha);
                    if let Some(id) = kept.get(&key) {
                        ids.push(*id);
                        continue;
                    }
                    // A running check with the same probe keeps its state, whatever its start mode.
                    let reuse = old_by_spec.remove(c).and_then(|id| old_checkers.remove(&id).map(|o| (id, o)));
                    let (id, checker) = match reuse {
                        Some(x) => x,
                        None => {
                            let id = self.next_id;
                            self.next_id += 1;
                            let first = now + defaults::BOOTSTRAP + self.random_within(c.warmup);
                            let saved = saved_checks.get(saved_check_key(c, d.alpha).as_str()).copied();
                            if saved.is_some() {
                                restored_dests.insert((s.key(), addr(&d.spec)));
                            }
                            let checker = Checker {
                                spec: c.clone(),
                                // As the previous daemon left it: a failed check stays failed
                                // until it passes (one success, as for any down checker).
                                up: saved.map_or(!d.alpha, |(up, _)| up),
                                has_run: saved.is_some(),
                                retry_it: c.retry,
                                next: first,
                                running: false,
                                last: None,
                                weight: saved.and_then(|(_, w)| w),
                                since: now,
                            };
                            (id, checker)
                        }
                    };
                    self.checkers.insert(id, checker);
                    kept.insert(key, id);
                    ids.push(id);
                }
                per_dest.push(ids);
            }
            links.push(per_dest);
        }
        let old_quorum: HashMap<KeySpec, bool> =
            self.plan.services.iter().zip(&self.quorum_up).map(|(s, q)| (s.key(), *q)).collect();
        let old_alive: HashMap<(KeySpec, SocketAddr), bool> = self
            .plan
            .services
            .iter()
            .enumerate()
            .flat_map(|(si, s)| {
                let alive = &self.alive;
                s.dests.iter().enumerate().map(move |(di, d)| ((s.key(), addr(&d.spec)), alive[si][di]))
            })
            .collect();
        self.plan = plan;
        self.links = links;
        self.alive = self
            .links
            .iter()
            .map(|per| per.iter().map(|ids| ids.iter().all(|id| self.checkers[id].up)).collect())
            .collect();
        self.quorum_up = vec![false; self.plan.services.len()];
        for si in 0..self.plan.services.len() {
            let key = self.plan.services[si].key();
            for di in 0..self.plan.services[si].dests.len() {
                let server = addr(&self.plan.services[si].dests[di].spec);
                let was = old_alive.get(&(key, server)).copied();
                let is = self.alive[si][di];
                if was.is_none() && !is && !restored_dests.contains(&(key, server)) {
                    // alpha: keepalived reports the server down at start.
                    let d = &self.plan.services[si].dests[di];
                    events.push(Event::ServerDown {
                        service: key,
                        server,
                        reason: "alpha: waiting for its first successful check".into(),
                        script: d.notify_down.clone(),
                    });
                }
            }
            match old_quorum.get(&key) {
                Some(q) => {
                    self.quorum_up[si] = *q;
                    self.update_quorum(si, &mut events);
                }
                None if saved_quorum.contains_key(saved_service_key(&self.plan.services[si]).as_str()) => {
                    // Restored: the quorum is what it was; an event only if it moved since.
                    self.quorum_up[si] = saved_quorum[saved_service_key(&self.plan.services[si]).as_str()];
                    self.update_quorum(si, &mut events);
                }
                None => {
                    // At start the quorum is judged once servers are in: met → quorum_up runs;
                    // not met → down, and quorum_down runs only if a sorry server takes over.
                    let s = &self.plan.services[si];
                    let sum = self.alive_weight(si);
                    if sum > 0 && sum >= u64::from(s.quorum) {
                        self.quorum_up[si] = true;
                        events.push(Event::QuorumUp { service: key, script: s.quorum_up.clone() });
                    } else if s.sorry.is_some() {
                        events.push(Event::QuorumDown { service: key, script: s.quorum_down.clone() });
                    }
                }
            }
        }
        events
    }

    /// When the next check is due (None: nothing to check).
    pub fn next_due(&self) -> Option<Instant> {
        self.checkers.values().filter(|c| !c.running).map(|c| c.next).min()
    }

    /// The checks due at `now`, marked as running until their outcome is reported.
    pub fn take_due(&mut self, now: Instant) -> Vec<(CheckId, CheckSpec)> {
        let mut due: Vec<(CheckId, CheckSpec, Instant)> = self
            .checkers
            .iter_mut()
            .filter(|(_, c)| !c.running && c.next <= now)
            .map(|(id, c)| {
                c.running = true;
                (*id, c.spec.clone(), c.next)
            })
            .collect();
        due.sort_by_key(|(id, _, next)| (*next, *id));
        due.into_iter().map(|(id, spec, _)| (id, spec)).collect()
    }

    /// Puts a check that could not be started back in the queue, `after` from now.
    pub fn postpone(&mut self, id: CheckId, now: Instant, after: Duration) {
        if let Some(c) = self.checkers.get_mut(&id) {
            c.running = false;
            c.next = now + after;
        }
    }

    /// Takes the outcome of a check that finished at `now`. Outcomes of checks that no longer
    /// exist are ignored.
    pub fn report(&mut self, id: CheckId, outcome: &Outcome, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let jitter_max = match self.checkers.get(&id) {
            Some(c) => (c.spec.delay_loop / 10).min(Duration::from_secs(1)),
            None => return events,
        };
        let jitter = self.random_within(jitter_max);
        let c = self.checkers.get_mut(&id).expect("checked above");
        c.running = false;
        c.last = Some((outcome.ok, outcome.reason.clone(), now));
        let was_up = c.up;
        let old_weight = c.weight;
        let mut delay = c.spec.delay_loop + jitter;
        if outcome.ok || ((c.up || !c.has_run) && c.retry_it >= c.spec.retry) {
            c.retry_it = 0;
            if outcome.ok {
                c.up = true;
                c.weight = outcome.weight;
            } else {
                c.up = false;
                c.weight = None;
            }
        } else if c.up {
            delay = c.spec.delay_before_retry;
            c.retry_it += 1;
        }
        c.has_run = true;
        c.next = now + delay;
        if c.up != was_up {
            c.since = now;
        }
        let changed = c.up != was_up || c.weight != old_weight;
        if !changed {
            return events;
        }
        // Every (service, real server) using this checker re-evaluates.
        for si in 0..self.links.len() {
            let mut touched = false;
            for di in 0..self.links[si].len() {
                if !self.links[si][di].contains(&id) {
                    continue;
                }
                touched = true;
                let alive = self.links[si][di].iter().all(|x| self.checkers[x].up);
                if alive != self.alive[si][di] {
                    self.alive[si][di] = alive;
                    let s = &self.plan.services[si];
                    let d = &s.dests[di];
                    if alive {
                        events.push(Event::ServerUp {
                            service: s.key(),
                            server: addr(&d.spec),
                            script: d.notify_up.clone(),
                        });
                    } else {
                        events.push(Event::ServerDown {
                            service: s.key(),
                            server: addr(&d.spec),
                            reason: format!(
                                "{} {}: {}",
                                c_kind(&self.checkers[&id]),
                                self.checkers[&id].spec.probe.target(),
                                outcome.reason
                            ),
                            script: d.notify_down.clone(),
                        });
                    }
                }
            }
            if touched {
                self.update_quorum(si, &mut events);
            }
        }
        events
    }

    /// The weight a real server has while alive: its configured weight plus what dynamic
    /// scripts add (keepalived's `effective_weight`), never below 0.
    fn weight(&self, si: usize, di: usize) -> i32 {
        let d = &self.plan.services[si].dests[di];
        let base = d.spec.weight;
        let delta: i64 = self.links[si][di]
            .iter()
            .filter_map(|id| self.checkers[id].weight)
            .map(|w| i64::from(w) - i64::from(base))
            .sum();
        (i64::from(base) + delta).clamp(0, i64::from(i32::MAX)) as i32
    }

    fn alive_weight(&self, si: usize) -> u64 {
        (0..self.plan.services[si].dests.len())
            .filter(|di| self.alive[si][*di])
            .map(|di| self.weight(si, di) as u64)
            .sum()
    }

    fn update_quorum(&mut self, si: usize, events: &mut Vec<Event>) {
        let s = &self.plan.services[si];
        let sum = self.alive_weight(si);
        let q = u64::from(s.quorum);
        let h = u64::from(s.hysteresis);
        if self.quorum_up[si] {
            if sum == 0 || sum < q.saturating_sub(h) {
                self.quorum_up[si] = false;
                events.push(Event::QuorumDown { service: s.key(), script: s.quorum_down.clone() });
            }
        } else if sum >= q + h && sum > 0 {
            self.quorum_up[si] = true;
            events.push(Event::QuorumUp { service: s.key(), script: s.quorum_up.clone() });
        }
    }

    /// The services as the table should hold them now: failed servers removed (or at weight
    /// 0 with inhibit_on_failure), dynamic weights applied, and the sorry server in place of
    /// the alive servers while the quorum is lost.
    pub fn effective(&self) -> Vec<(ServiceSpec, Vec<DestSpec>)> {
        self.plan
            .services
            .iter()
            .enumerate()
            .map(|(si, s)| {
                let sorry_active = !self.quorum_up[si] && s.sorry.is_some();
                let mut dests = Vec::new();
                for (di, d) in s.dests.iter().enumerate() {
                    let alive = self.alive[si][di];
                    let weight = match (alive && !sorry_active, d.inhibit) {
                        (true, _) => Some(self.weight(si, di)),
                        (false, true) => Some(0),
                        (false, false) => None,
                    };
                    if let Some(w) = weight {
                        let mut spec = d.spec.clone();
                        spec.weight = w;
                        dests.push(spec);
                    }
                }
                if let Some(sorry) = &s.sorry {
                    if sorry_active || s.sorry_inhibit {
                        let mut spec = sorry.clone();
                        spec.weight = i32::from(sorry_active);
                        dests.push(spec);
                    }
                }
                (s.spec.clone(), dests)
            })
            .collect()
    }

    /// Every checked service and whether its quorum holds.
    pub fn quorums(&self) -> impl Iterator<Item = (KeySpec, bool)> + '_ {
        self.plan.services.iter().zip(&self.quorum_up).map(|(s, q)| (s.key(), *q))
    }

    /// Every service's health, for listings and metrics.
    pub fn status(&self, now: Instant) -> Vec<ServiceStatus> {
        let mut users: HashMap<CheckId, usize> = HashMap::new();
        for ids in self.links.iter().flatten().flatten() {
            *users.entry(*ids).or_default() += 1;
        }
        let effective = self.effective();
        self.plan
            .services
            .iter()
            .enumerate()
            .map(|(si, s)| {
                let in_table = &effective[si].1;
                ServiceStatus {
                    service: s.key(),
                    quorum_up: self.quorum_up[si],
                    alive_weight: self.alive_weight(si),
                    quorum: s.quorum,
                    sorry_active: s.sorry.as_ref().filter(|_| !self.quorum_up[si]).map(addr),
                    servers: s
                        .dests
                        .iter()
                        .enumerate()
                        .map(|(di, d)| ServerStatus {
                            server: addr(&d.spec),
                            alive: self.alive[si][di],
                            weight: in_table.iter().find(|x| same_server(x, &d.spec)).map(|x| x.weight),
                            checks: self.links[si][di]
                                .iter()
                                .map(|id| {
                                    let c = &self.checkers[id];
                                    CheckStatus {
                                        kind: c_kind(c).into(),
                                        target: c.spec.probe.target(),
                                        up: c.up,
                                        retries: c.retry_it.min(c.spec.retry),
                                        last: c.last.as_ref().map(|(ok, reason, at)| LastResult {
                                            ok: *ok,
                                            reason: reason.clone(),
                                            ago_ms: now.saturating_duration_since(*at).as_millis() as u64,
                                        }),
                                        shared_with: users.get(id).copied().unwrap_or(1) - 1,
                                    }
                                })
                                .collect(),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The plan being monitored.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Distinct checkers running (one per distinct check of a real server).
    pub fn checker_count(&self) -> usize {
        self.checkers.len()
    }

    /// The services a shutdown with `omega` reports down: each alive server's notify_down,
    /// then the service's quorum_down.
    pub fn omega_events(&self) -> Vec<Event> {
        let mut events = Vec::new();
        for (si, s) in self.plan.services.iter().enumerate().filter(|(_, s)| s.omega) {
            for (di, d) in s.dests.iter().enumerate() {
                if self.alive[si][di] {
                    events.push(Event::ServerDown {
                        service: s.key(),
                        server: addr(&d.spec),
                        reason: "shutting down (omega)".into(),
                        script: d.notify_down.clone(),
                    });
                }
            }
            events.push(Event::QuorumDown { service: s.key(), script: s.quorum_down.clone() });
        }
        events
    }

    /// The service plans (for callers that map events back to services).
    pub fn services(&self) -> &[ServicePlan] {
        &self.plan.services
    }
}

fn c_kind(c: &Checker) -> &'static str {
    c.spec.probe.kind()
}

fn addr(d: &DestSpec) -> SocketAddr {
    SocketAddr::new(d.addr, d.port)
}

fn same_server(a: &DestSpec, b: &DestSpec) -> bool {
    a.addr == b.addr && a.port == b.port
}

#[cfg(test)]
mod tests {
    use super::*;
    use xvs_api::config::Config;

    fn plan(toml: &str) -> Plan {
        Plan::from_config(&Config::parse(toml).unwrap()).unwrap()
    }

    fn ok() -> Outcome {
        Outcome { ok: true, weight: None, reason: "ok".into() }
    }

    fn bad() -> Outcome {
        Outcome { ok: false, weight: None, reason: "connection refused".into() }
    }

    /// Runs every due check with `f` deciding each outcome, `step` at a time, until `until`.
    fn drive(
        m: &mut Monitor,
        t0: Instant,
        from: Duration,
        until: Duration,
        f: &dyn Fn(&CheckSpec) -> Outcome,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let mut t = from;
        while t <= until {
            for (id, spec) in m.take_due(t0 + t) {
                events.extend(m.report(id, &f(&spec), t0 + t));
            }
            t += Duration::from_millis(100);
        }
        events
    }

    fn weights(m: &Monitor) -> Vec<(String, i32)> {
        m.effective()[0].1.iter().map(|d| (format!("{}", d.addr), d.weight)).collect()
    }

    const TWO: &str = r#"
[[service]]
address = "198.18.0.1:80"
  [[service.real_server]]
  address = "198.18.2.2"
    [[service.real_server.check]]
    type = "tcp"
    delay_loop = 2
    retry = 2
    delay_before_retry = 0.5
    warmup = 0
  [[service.real_server]]
  address = "198.18.2.3"
    [[service.real_server.check]]
    type = "tcp"
    delay_loop = 2
    warmup = 0
"#;

    #[test]
    fn a_server_fails_after_retry_plus_one_failures_and_one_success_brings_it_back() {
        let t0 = Instant::now();
        let (mut m, ev) = Monitor::new(plan(TWO), t0, 7);
        assert_eq!(ev, vec![Event::QuorumUp { service: m.services()[0].key(), script: None }]);
        assert_eq!(m.next_due(), Some(t0 + Duration::from_secs(1)), "bootstrap delay, warmup 0");
        // Healthy for a while.
        assert!(drive(&mut m, t0, Duration::ZERO, Duration::from_secs(5), &|_| ok()).is_empty());
        // .2 starts failing at 5 s: it has retry 2, so 3 failures 0.5 s apart (plus the wait for
        // its next regular check) take it down.
        let fail_2 = |s: &CheckSpec| if s.probe.target().starts_with("198.18.2.2") { bad() } else { ok() };
        let mut down_at = None;
        let mut t = Duration::from_secs(5);
        while t < Duration::from_secs(12) && down_at.is_none() {
            for (id, spec) in m.take_due(t0 + t) {
                if m.report(id, &fail_2(&spec), t0 + t).iter().any(|e| matches!(e, Event::ServerDown { .. })) {
                    down_at = Some(t);
                }
            }
            t += Duration::from_millis(100);
        }
        let down_at = down_at.expect("went down");
        // The last success was at most delay_loop + jitter before 5 s; failures at the next
        // check, +0.5, +1.0.
        assert!(down_at >= Duration::from_secs(6) && down_at <= Duration::from_millis(8300), "{down_at:?}");
        assert_eq!(weights(&m), vec![("198.18.2.3".into(), 1)]);
        // One success brings it back.
        let ev = drive(&mut m, t0, down_at + Duration::from_millis(100), down_at + Duration::from_secs(4), &|_| ok());
        assert!(matches!(ev.as_slice(), [Event::ServerUp { .. }]), "{ev:?}");
        assert_eq!(weights(&m).len(), 2);
    }

    #[test]
    fn a_restarted_monitor_keeps_down_servers_down_and_reports_nothing_unchanged() {
        let t0 = Instant::now();
        let sorry = TWO.replace("[[service]]\n", "[[service]]\nsorry_server = \"198.18.9.9:80\"\nquorum = 2\n");
        let (mut m, _) = Monitor::new(plan(&sorry), t0, 7);
        // .2 fails for good: down, quorum lost, the sorry server in.
        let fail_2 = |s: &CheckSpec| if s.probe.target().starts_with("198.18.2.2") { bad() } else { ok() };
        drive(&mut m, t0, Duration::from_secs(1), Duration::from_secs(12), &fail_2);
        let before = m.effective();
        assert_eq!(before[0].1.iter().map(|d| d.addr.to_string()).collect::<Vec<_>>(), ["198.18.9.9"]);
        // A new daemon with the saved state: the same table, and no event at all.
        let saved = m.save();
        let text = serde_json::to_string(&saved).unwrap();
        let saved: Saved = serde_json::from_str(&text).unwrap();
        let t1 = Instant::now();
        let (mut again, ev) = Monitor::restore(plan(&sorry), t1, 9, saved.clone());
        assert_eq!(ev, vec![], "nothing changed, nothing to report");
        assert_eq!(again.effective(), before);
        // Its first checks: .2 still fails (no event), .3 still passes (no event).
        let ev = drive(&mut again, t1, Duration::ZERO, Duration::from_secs(3), &fail_2);
        assert_eq!(ev, vec![]);
        // .2 recovers with one success: up, quorum back, sorry server out.
        let ev = drive(&mut again, t1, Duration::from_secs(3), Duration::from_secs(6), &|_| ok());
        assert!(ev.iter().any(|e| matches!(e, Event::ServerUp { .. })), "{ev:?}");
        assert!(ev.iter().any(|e| matches!(e, Event::QuorumUp { .. })), "{ev:?}");
        // A check that changed in the file starts afresh (up, as keepalived starts it).
        let changed = sorry.replace("delay_loop = 2\n    retry = 2", "delay_loop = 3\n    retry = 2");
        let (fresh, _) = Monitor::restore(plan(&changed), t1, 9, saved);
        assert_eq!(fresh.effective()[0].1.len(), 2, "both servers in (quorum met again)");
    }

    #[test]
    fn the_first_failure_at_start_takes_a_server_down_at_once() {
        let t0 = Instant::now();
        let (mut m, _) = Monitor::new(plan(TWO), t0, 7);
        let ev = drive(&mut m, t0, Duration::from_secs(1), Duration::from_secs(1), &|_| bad());
        assert_eq!(ev.iter().filter(|e| matches!(e, Event::ServerDown { .. })).count(), 2, "{ev:?}");
        assert!(ev.iter().any(|e| matches!(e, Event::QuorumDown { .. })));
        assert!(weights(&m).is_empty());
    }

    #[test]
    fn alpha_servers_start_down_and_join_after_a_success() {
        let t0 = Instant::now();
        let (mut m, ev) = Monitor::new(plan(&TWO.replace("[[service]]\n", "[[service]]\nalpha = true\n")), t0, 7);
        assert_eq!(ev.iter().filter(|e| matches!(e, Event::ServerDown { .. })).count(), 2, "{ev:?}");
        assert!(weights(&m).is_empty());
        let ev = drive(&mut m, t0, Duration::ZERO, Duration::from_secs(1), &|_| ok());
        assert_eq!(ev.iter().filter(|e| matches!(e, Event::ServerUp { .. })).count(), 2, "{ev:?}");
        assert!(ev.iter().any(|e| matches!(e, Event::QuorumUp { .. })));
        assert_eq!(weights(&m).len(), 2);
    }

    #[test]
    fn inhibit_on_failure_keeps_the_server_at_weight_zero() {
        let t0 = Instant::now();
        let (mut m, _) =
            Monitor::new(plan(&TWO.replace("[[service]]\n", "[[service]]\ninhibit_on_failure = true\n")), t0, 7);
        drive(&mut m, t0, Duration::ZERO, Duration::from_secs(1), &|s| {
            if s.probe.target().starts_with("198.18.2.2") {
                bad()
            } else {
                ok()
            }
        });
        assert_eq!(weights(&m), vec![("198.18.2.2".into(), 0), ("198.18.2.3".into(), 1)]);
    }

    #[test]
    fn every_check_must_pass() {
        let t0 = Instant::now();
        let toml = TWO.replace(
            "    type = \"tcp\"\n    delay_loop = 2\n    warmup = 0\n",
            "    type = \"tcp\"\n    delay_loop = 2\n    warmup = 0\n    [[service.real_server.check]]\n    type = \"tcp\"\n    connect_port = 8080\n    delay_loop = 2\n    warmup = 0\n",
        );
        let (mut m, _) = Monitor::new(plan(&toml), t0, 7);
        let ev = drive(&mut m, t0, Duration::ZERO, Duration::from_secs(1), &|s| {
            if s.probe.target().ends_with(":8080") {
                bad()
            } else {
                ok()
            }
        });
        assert!(
            matches!(ev.as_slice(), [Event::ServerDown { server, .. }] if server.to_string() == "198.18.2.3:80"),
            "{ev:?}"
        );
    }

    #[test]
    fn one_checker_serves_every_service_with_the_same_check() {
        let t0 = Instant::now();
        let one = |vip: &str| {
            format!("[[service]]\naddress = \"{vip}:80\"\n[[service.real_server]]\naddress = \"198.18.2.2\"\n[[service.real_server.check]]\ntype = \"http_get\"\nwarmup = 0\n[[service.real_server.check.url]]\npath = \"/\"\n")
        };
        let toml: String = ["198.18.0.1", "198.18.0.2", "198.18.0.3"].iter().map(|v| one(v)).collect();
        let (mut m, _) = Monitor::new(plan(&toml), t0, 7);
        assert_eq!(m.checker_count(), 1);
        let due = m.take_due(t0 + Duration::from_secs(1));
        assert_eq!(due.len(), 1, "one probe for three services");
        let ev = m.report(due[0].0, &bad(), t0 + Duration::from_secs(1));
        assert_eq!(ev.iter().filter(|e| matches!(e, Event::ServerDown { .. })).count(), 3, "{ev:?}");
        assert_eq!(m.status(t0)[0].servers[0].checks[0].shared_with, 2);
    }

    #[test]
    fn quorum_with_hysteresis_and_a_sorry_server() {
        let t0 = Instant::now();
        let mut toml = String::from(
            "[[service]]\naddress = \"198.18.0.1:80\"\nquorum = 4\nhysteresis = 1\nsorry_server = \"198.18.9.9:80\"\nquorum_down = \"/bin/true down\"\nquorum_up = \"/bin/true up\"\n",
        );
        for i in 2..5 {
            toml += &format!("[[service.real_server]]\naddress = \"198.18.2.{i}\"\nmethod = \"masq\"\nweight = 2\n[[service.real_server.check]]\ntype = \"tcp\"\ndelay_loop = 1\nretry = 0\nwarmup = 0\n");
        }
        let (mut m, ev) = Monitor::new(plan(&toml), t0, 7);
        assert!(matches!(&ev[..], [Event::QuorumUp { script: Some(s), .. }] if s == "/bin/true up"));
        let down = std::cell::RefCell::new(std::collections::BTreeSet::<&str>::new());
        let f = |s: &CheckSpec| {
            let t = s.probe.target();
            if down.borrow().iter().any(|d| t.starts_with(d)) {
                bad()
            } else {
                ok()
            }
        };
        let mut t = Duration::ZERO;
        let mut step = |m: &mut Monitor, secs: u64| {
            let ev = drive(m, t0, t, t + Duration::from_secs(secs), &f);
            t += Duration::from_secs(secs) + Duration::from_millis(100);
            ev
        };
        step(&mut m, 2);
        down.borrow_mut().insert("198.18.2.2:");
        let ev = step(&mut m, 3);
        assert!(!ev.iter().any(|e| matches!(e, Event::QuorumDown { .. })), "4 alive >= 4-1: {ev:?}");
        down.borrow_mut().insert("198.18.2.3:");
        let ev = step(&mut m, 3);
        assert!(ev.iter().any(|e| matches!(e, Event::QuorumDown { .. })), "2 alive < 3: {ev:?}");
        // The sorry server replaces the alive servers.
        assert_eq!(weights(&m), vec![("198.18.9.9".into(), 1)]);
        down.borrow_mut().remove("198.18.2.2:");
        let ev = step(&mut m, 3);
        assert!(!ev.iter().any(|e| matches!(e, Event::QuorumUp { .. })), "4 alive < 4+1: {ev:?}");
        assert_eq!(weights(&m), vec![("198.18.9.9".into(), 1)]);
        down.borrow_mut().clear();
        let ev = step(&mut m, 3);
        assert!(ev.iter().any(|e| matches!(e, Event::QuorumUp { .. })), "6 alive >= 5: {ev:?}");
        assert_eq!(weights(&m).len(), 3);
        assert!(weights(&m).iter().all(|(_, w)| *w == 2));
    }

    #[test]
    fn dynamic_weights_from_scripts() {
        let t0 = Instant::now();
        let toml = "[[service]]\naddress = \"198.18.0.1:80\"\n[[service.real_server]]\naddress = \"198.18.2.2\"\nweight = 5\n[[service.real_server.check]]\ntype = \"misc\"\nmisc_path = \"/bin/true\"\nmisc_dynamic = true\nwarmup = 0\n";
        let (mut m, _) = Monitor::new(plan(toml), t0, 7);
        let due = m.take_due(t0 + Duration::from_secs(1));
        m.report(
            due[0].0,
            &Outcome { ok: true, weight: Some(40), reason: "exit 42".into() },
            t0 + Duration::from_secs(1),
        );
        assert_eq!(weights(&m), vec![("198.18.2.2".into(), 40)]);
        let due = m.take_due(t0 + Duration::from_secs(70));
        m.report(due[0].0, &ok(), t0 + Duration::from_secs(70));
        assert_eq!(weights(&m), vec![("198.18.2.2".into(), 5)], "exit 0 restores the configured weight");
    }

    #[test]
    fn a_reload_keeps_health_and_reports_what_went_away() {
        let t0 = Instant::now();
        let toml =
            TWO.replace("address = \"198.18.2.3\"\n", "address = \"198.18.2.3\"\nnotify_down = \"/bin/echo gone\"\n");
        let (mut m, _) = Monitor::new(plan(&toml), t0, 7);
        drive(&mut m, t0, Duration::ZERO, Duration::from_secs(1), &|s| {
            if s.probe.target().starts_with("198.18.2.2") {
                bad()
            } else {
                ok()
            }
        });
        // Same checks, plus a new service: .2 stays down, nothing is re-announced.
        let more = format!("{toml}[[service]]\naddress = \"198.18.0.2:80\"\n");
        let ev = m.reconfigure(plan(&more), t0 + Duration::from_secs(2));
        assert!(!ev.iter().any(|e| matches!(e, Event::ServerDown { .. } | Event::ServerUp { .. })), "{ev:?}");
        assert_eq!(weights(&m), vec![("198.18.2.3".into(), 1)]);
        // .3 removed from the file: its notify_down runs.
        let less = toml.replace("  [[service.real_server]]\n  address = \"198.18.2.3\"\nnotify_down = \"/bin/echo gone\"\n    [[service.real_server.check]]\n    type = \"tcp\"\n    delay_loop = 2\n    warmup = 0\n", "");
        let ev = m.reconfigure(plan(&less), t0 + Duration::from_secs(3));
        assert!(
            ev.iter().any(|e| matches!(e, Event::ServerDown { script: Some(s), .. } if s == "/bin/echo gone")),
            "{ev:?}"
        );
    }
}
