//! The declarative side of the control: `apply` (a whole file, planned and checked first),
//! convergence of the table towards it, and the table changes health events ask for.

use super::*;

impl Control {
    /// `xvsadm apply`: checks the whole desired state first (in a scratch table, with the
    /// dataplane's limits, and its health checks), then changes only what differs. With health
    /// checks, the table is what the checks allow: failed servers out (or at weight 0), the
    /// sorry server in while the quorum is lost.
    pub(super) fn apply(&mut self, config: &xvs_api::config::Config, dry_run: bool, now: Instant) -> Response {
        let desired = match config.specs() {
            Ok(d) => d,
            Err(e) => return api_error(&Error::Invalid(e)),
        };
        let scratch = match scratch_of(&desired, now) {
            Ok(s) => s,
            Err(e) => return e,
        };
        // Health checks (and the scripts' settings) are planned over the whole file; a file
        // without any, applied where none ran, has an empty plan (100k services: building it
        // anyway cost a tenth of an install).
        let needs_plan = self.health.is_some()
            || config.script_user.is_some()
            || config.script_security
            || config.services.iter().any(super::part::has_health);
        let plan = if needs_plan {
            match Plan::from_specs(config, desired.clone()) {
                Ok(p) => p,
                Err(e) => return api_error(&Error::Invalid(e)),
            }
        } else {
            Plan::default()
        };
        for s in &plan.services {
            if let Some(sorry) = &s.sorry {
                let key = s.spec.core_key();
                if let Err(e) = sorry.core_config() {
                    return api_error(&Error::Invalid(format!("service {key}, sorry server: {e}")));
                }
            }
        }
        let monitored = plan.has_checks() || plan.services.iter().any(|s| s.sorry.is_some());
        let old_plan = self.health.as_ref().map(|m| m.plan().clone()).unwrap_or_default();
        let mut monitor = None;
        let mut health_events = Vec::new();
        let target = if monitored {
            let clock = std::time::Instant::now();
            let m = match self.health.clone() {
                Some(mut m) => {
                    health_events = m.reconfigure(plan.clone(), clock);
                    m
                }
                None => {
                    let (m, ev) = match self.restore_health.take() {
                        Some(saved) => Monitor::restore(plan.clone(), clock, seed(), saved),
                        None => Monitor::new(plan.clone(), clock, seed()),
                    };
                    health_events = ev;
                    m
                }
            };
            let t = m.effective();
            monitor = Some(m);
            t
        } else {
            desired
        };
        // keepalived.conf (without lvs_flush) and files that say `keep_unlisted` leave services
        // they do not define alone; a reload changes only what the file changed (so an
        // operator's drain stands), and a service the previous file defined and this one does
        // not goes, as keepalived's reload removes it. At the first apply, the file's services
        // are made as it says.
        let owned: Option<HashSet<KeySpec>> = config
            .keep_unlisted
            .then(|| self.file_target.iter().map(|(s, _)| s.key).chain(target.iter().map(|(s, _)| s.key)).collect());
        let reload = config.keep_unlisted && !self.file_target.is_empty();
        let current = self.specs();
        let scoped: Vec<(ServiceSpec, Vec<DestSpec>)> = if reload {
            self.file_target.clone()
        } else {
            current.iter().filter(|(s, _)| owned.as_ref().is_none_or(|o| o.contains(&s.key))).cloned().collect()
        };
        let mut changes = diff(&scoped, &target);
        let old_by_key: HashMap<KeySpec, &xvs_health::plan::ServicePlan> =
            old_plan.services.iter().map(|o| (o.spec.key, o)).collect();
        for s in &plan.services {
            let before = old_by_key.get(&s.spec.key).copied();
            if (before.is_some() || s.dests.iter().any(|d| !d.checks.is_empty()))
                && before.map(health_of) != Some(health_of(s))
            {
                let n: usize = s.dests.iter().map(|d| d.checks.len()).sum();
                changes.push(format!("~ health of service {}: {n} check(s)", s.spec.core_key()));
            }
        }
        // Timeouts: 0 keeps the current value, as with --set.
        let old_timeouts = self.lb.timeouts;
        let mut new_timeouts = None;
        if let Some(t) = &config.timeouts {
            let max = xvs_core::sysctl::MAX_SET_TIMEOUT;
            if t.tcp > max || t.tcpfin > max || t.udp > max {
                return api_error(&Error::Invalid(format!("timeouts are at most {max} seconds")));
            }
            let mut next = self.lb.timeouts;
            next.set(t.tcp, t.tcpfin, t.udp);
            if next.shown() != self.lb.timeouts.shown() {
                let (a, b, c) = next.shown();
                changes.push(format!("~ timeouts {a} {b} {c}"));
                new_timeouts = Some(next);
            }
        }
        // Settings: those the file names, the rest kept.
        let old_sysctl = self.lb.sysctl.clone();
        let new_sysctl = match super::sysctl::planned(&self.lb.sysctl, &config.sysctl) {
            Ok((next, c)) if !c.is_empty() => {
                changes.extend(c);
                Some(next)
            }
            Ok(_) => None,
            Err(e) => return api_error(&Error::Invalid(e)),
        };
        // Everything must fit in the dataplane's tables before anything changes: a large apply
        // never fails half way for want of room.
        if let Err(e) = self.fits(&scratch, &target, owned.as_ref()) {
            return e;
        }
        if dry_run {
            return Response::Applied { changes, base: None };
        }
        // The timeouts and settings first: if the dataplane refuses them, nothing else has
        // changed yet.
        if new_timeouts.is_some() || new_sysctl.is_some() {
            if let Some(next) = new_timeouts {
                self.lb.timeouts = next;
            }
            if let Some(next) = new_sysctl {
                self.lb.sysctl = next;
            }
            if let Err(e) = self.write_config() {
                self.lb.timeouts = old_timeouts;
                self.lb.sysctl = old_sysctl;
                let _ = self.write_config();
                return dp_error(&e);
            }
        }
        self.bulk = changes.len() > 100;
        let converged = if reload {
            let mut done = Ok(());
            for req in crate::delta::delta(&self.file_target, &target) {
                let what = format!("{req:?}");
                match self.handle(req, now) {
                    // The operator removed or re-added it meanwhile: their change stands.
                    Response::Error(e) if matches!(e.errno.as_str(), "ESRCH" | "ENOENT" | "EEXIST") => {
                        tracing::warn!(change = %what, error = %e.message, "reload: not applied")
                    }
                    Response::Error(e) => {
                        done = Err(Response::Error(e));
                        break;
                    }
                    _ => {}
                }
            }
            done
        } else {
            self.converge(&target, owned.as_ref(), now)
        };
        let mut undone = Ok(());
        if converged.is_err() {
            // Put the previous configuration back (it was valid a moment ago).
            undone = self.converge(&current, None, now);
            if self.lb.timeouts.shown() != old_timeouts.shown() || self.lb.sysctl != old_sysctl {
                self.lb.timeouts = old_timeouts;
                self.lb.sysctl = old_sysctl;
                if let Err(e) = self.write_config() {
                    undone = Err(dp_error(&e));
                }
            }
        }
        self.bulk = false;
        if let Some(refused) = refusal(converged, undone) {
            return refused;
        }
        self.file_target = if config.keep_unlisted { target.clone() } else { Vec::new() };
        if !monitored {
            if let Some(old) = &self.health {
                // Checks removed: what their services' servers reported goes away with them.
                let mut m = old.clone();
                health_events = m.reconfigure(Plan::default(), std::time::Instant::now());
            }
        }
        self.health = monitor;
        self.events.extend(health_events);
        log_changes(&changes);
        tracing::info!(changes = changes.len(), "configuration applied");
        // A plain file: the next apply may send only what it changes (control::part).
        let base = (!monitored && !config.keep_unlisted).then(|| self.base.issue());
        Response::Applied { changes, base }
    }

    /// The outcome of a health check: the monitor's state moves, and the table follows it.
    /// Only the servers whose state moved are touched (crate::delta): an operator's change to
    /// anything else stands.
    pub fn health_report(&mut self, id: CheckId, outcome: &Outcome, now: Instant) {
        let Some(m) = &mut self.health else { return };
        let before = m.effective();
        let events = m.report(id, outcome, std::time::Instant::now());
        let after = m.effective();
        let changes = crate::delta::delta(&before, &after);
        if !self.file_target.is_empty() {
            self.file_target = after;
        }
        self.events.extend(events);
        if changes.is_empty() {
            return;
        }
        // All of the event's changes, or none: a refusal other than "gone meanwhile" puts
        // the table back as it was before the event.
        let table = self.specs();
        for req in changes {
            let what = format!("{req:?}");
            match self.handle(req, now) {
                // The operator removed or re-added it meanwhile: their change stands.
                Response::Error(e) if matches!(e.errno.as_str(), "ESRCH" | "ENOENT" | "EEXIST") => {
                    tracing::warn!(change = %what, error = %e.message, "health change not applied")
                }
                Response::Error(e) => {
                    match self.converge(&table, None, now) {
                        Ok(()) => {
                            tracing::error!(change = %what, error = %e.message, "health change refused; the event's other changes were undone")
                        }
                        Err(_) => {
                            tracing::error!(change = %what, error = %e.message, "health change refused, and undoing the event's other changes failed too: see xvsadm -Ln")
                        }
                    }
                    return;
                }
                _ => {}
            }
        }
    }

    /// `-R`: the changes in order; when one is refused, those before it are undone and the
    /// refusal says which it was. Listings and nested batches are not changes and are refused.
    pub(super) fn batch(&mut self, requests: Vec<Request>, now: Instant) -> Response {
        if let Some(i) = requests.iter().position(|r| {
            matches!(
                r,
                Request::Batch { .. } | Request::Snapshot { .. } | Request::Apply { .. } | Request::ApplyPart { .. }
            )
        }) {
            return Response::Error(ApiError {
                errno: "EINVAL".into(),
                message: "a batch holds changes only".into(),
                failed_at: Some(i),
                ..Default::default()
            });
        }
        let before = self.specs();
        let timeouts = self.lb.timeouts;
        let sysctl = self.lb.sysctl.clone();
        for (i, req) in requests.into_iter().enumerate() {
            if let Response::Error(mut e) = self.handle_inner(req, now) {
                e.failed_at = Some(i);
                let mut undone = self.converge(&before, None, now);
                if self.lb.timeouts.shown() != timeouts.shown() || self.lb.sysctl != sysctl {
                    self.lb.timeouts = timeouts;
                    self.lb.sysctl = sysctl;
                    if let Err(err) = self.write_config() {
                        undone = Err(dp_error(&err));
                    }
                }
                if let Err(Response::Error(u)) = undone {
                    e.message =
                        format!("{}; putting the previous configuration back failed too: {}", e.message, u.message);
                    e.partial = true;
                }
                return Response::Error(e);
            }
        }
        Response::Ok
    }

    /// Refuses a target the dataplane's tables cannot hold (services, real servers, list and
    /// bucket pools), counting what stays and what a publication holds twice for a moment.
    pub(super) fn fits(
        &self,
        scratch: &xvs_core::Services,
        target: &[(ServiceSpec, Vec<DestSpec>)],
        owned: Option<&HashSet<KeySpec>>,
    ) -> Result<(), Response> {
        let Some(dp) = &self.dp else { return Ok(()) };
        let o = &dp.director.options;
        let wanted: HashSet<KeySpec> = target.iter().map(|(s, _)| s.key).collect();
        let table_len = |s: &xvs_core::Service| match s.scheduler().map(|x| x.table()) {
            Some(xvs_core::sched::SchedTable::Buckets(b)) => b.len() as u64,
            _ => 0,
        };
        let mut services = target.len() as u64;
        let mut lists: Vec<u64> = target.iter().map(|(_, d)| d.len() as u64).collect();
        let mut tables: Vec<u64> = scratch.iter().map(|(_, s)| table_len(s)).collect();
        // Real-server slots: the result's, plus the trash, plus every server leaving the table
        // now (it keeps its slot while it carries connections).
        let staying: HashSet<(KeySpec, std::net::IpAddr, u16)> =
            target.iter().flat_map(|(s, d)| d.iter().map(move |d| (s.key, d.addr, d.port))).collect();
        let mut leaving = 0u64;
        // Services that stay as they are: not in the file and not the file's to delete (with
        // `owned`; without, the file is the whole table). Told apart by id, not by key: an
        // apply of one change at 100k services hashed 200k keys here.
        let mut changing: Vec<ServiceId> = match owned {
            Some(o) => o.iter().chain(wanted.iter()).filter_map(|k| self.lb.services.find(&(*k).into())).collect(),
            None => Vec::new(),
        };
        changing.sort_unstable();
        // One pass over the table.
        for (id, s) in self.lb.services.iter() {
            let Some(v) = self.lb.services.view(id) else { continue };
            if owned.is_some() && changing.binary_search(&id).is_err() {
                services += 1;
                lists.push(v.len() as u64);
                tables.push(table_len(s));
            } else {
                let k = KeySpec::from(*s.key());
                leaving += v.iter().filter(|(_, d)| !staying.contains(&(k, d.addr(), d.port()))).count() as u64;
            }
        }
        let dests = lists.iter().sum::<u64>() + self.lb.services.trash().count() as u64 + leaving;
        let need = |what: &str, n: u64, cap: u32, flag: &str| -> Result<(), Response> {
            if n > u64::from(cap) {
                return Err(Response::Error(ApiError {
                    errno: "ENOMEM".into(),
                    message: format!(
                        "the dataplane holds {cap} {what}; this needs {n} (raise {flag}); nothing was changed"
                    ),
                    ..Default::default()
                }));
            }
            Ok(())
        };
        need("services", services, o.max_services, "--max-services")?;
        need("real-server slots", dests, o.max_dests, "--max-dests")?;
        // A republished list or table takes its new range before the old one is released.
        let twice = |v: &[u64]| v.iter().sum::<u64>() + v.iter().copied().max().unwrap_or(0);
        need("list entries", twice(&lists), o.max_dests, "--max-dests")?;
        need("scheduler buckets", twice(&tables), o.table_slots, "the table pool")?;
        Ok(())
    }

    /// Changes the live configuration into `desired`, touching only what differs. Services
    /// not in `desired` are deleted when `owned` is `None`, or only those in `owned` (the
    /// services an earlier apply of the same kind of file defined).
    pub(super) fn converge(
        &mut self,
        desired: &[(ServiceSpec, Vec<DestSpec>)],
        owned: Option<&HashSet<KeySpec>>,
        now: Instant,
    ) -> Result<(), Response> {
        // Only the owned services can change (the desired ones are among them).
        debug_assert!(owned.is_none_or(|o| desired.iter().all(|(d, _)| o.contains(&d.key))));
        let current = match owned {
            Some(o) => self.specs_of(o),
            None => self.specs(),
        };
        let cur: HashMap<KeySpec, &(ServiceSpec, Vec<DestSpec>)> = current.iter().map(|e| (e.0.key, e)).collect();
        {
            let want: HashSet<KeySpec> = desired.iter().map(|(d, _)| d.key).collect();
            for (c, _) in &current {
                if !want.contains(&c.key) && owned.is_none_or(|o| o.contains(&c.key)) {
                    if let Response::Error(e) = self.handle(Request::DeleteService { key: c.key }, now) {
                        return Err(Response::Error(e));
                    }
                }
            }
        }
        let mut new = Vec::new();
        for (d, ddests) in desired {
            let key = d.core_key();
            let Some((c, cdests)) = cur.get(&d.key).map(|e| (&e.0, &e.1)) else {
                new.push((d, ddests));
                continue;
            };
            if c != d {
                let r = self.edit_service(d, now);
                if let Response::Error(_) = r {
                    return Err(r);
                }
            }
            for r in cdests {
                if !ddests.iter().any(|x| x.addr == r.addr && x.port == r.port) {
                    let resp = self.handle(Request::DeleteDest { key: d.key, addr: r.addr, port: r.port }, now);
                    if let Response::Error(_) = resp {
                        return Err(resp);
                    }
                }
            }
            for r in ddests {
                let resp = match cdests.iter().find(|x| x.addr == r.addr && x.port == r.port) {
                    None => self.add_dest(&key, r),
                    Some(x) if x != r => self.edit_dest(&key, r),
                    Some(_) => Response::Ok,
                };
                if let Response::Error(_) = resp {
                    return Err(resp);
                }
            }
        }
        // New services last, all in one batch of map writes: nothing live refers to what they
        // write until their records land, in the batch's last write.
        self.begin_batch();
        let mut added = Ok(());
        for (d, ddests) in new {
            let r = self.add_service_with_dests(d, ddests, now);
            if let Response::Error(_) = r {
                added = Err(r);
                break;
            }
        }
        // What was held is written even after a refusal: the services before it are in the
        // core's table, and undoing them unpublishes them.
        let flushed = self.end_batch();
        added?;
        flushed.map_err(|e| dp_error(&e))
    }

    fn begin_batch(&mut self) {
        if let Some(dp) = &mut self.dp {
            dp.publisher.begin_batch();
        }
    }

    fn end_batch(&mut self) -> Result<(), xvs_dataplane::Error> {
        match &mut self.dp {
            Some(dp) => dp.publisher.end_batch(&mut dp.director),
            None => Ok(()),
        }
    }

    /// A new service with its real servers, published once (not once per server).
    pub(super) fn add_service_with_dests(&mut self, spec: &ServiceSpec, dests: &[DestSpec], now: Instant) -> Response {
        let key = spec.core_key();
        // The kernel finds an existing service before it looks at the scheduler's name.
        if self.lb.services.find(&key).is_some() {
            return api_error(&Error::ServiceExists);
        }
        let config = match spec.core_config() {
            Ok(c) => c,
            Err(e) => return api_error(&e),
        };
        if let Err(e) = check_service(&key) {
            return api_error(&e);
        }
        let id = match self.lb.add_service(key, config, now) {
            Ok(id) => id,
            Err(e) => return api_error(&e),
        };
        for d in dests {
            let added = dest_config(&key, d).and_then(|c| self.lb.services.add_dest(&key, d.addr, d.port, c).map(drop));
            if let Err(e) = added {
                let _ = self.lb.services.delete_service(&key, now);
                return api_error(&e);
            }
        }
        if let Err(e) = self.publish(id) {
            let _ = self.lb.services.delete_service(&key, now);
            return dp_error(&e);
        }
        self.new_servers.extend(dests.iter().map(|d| d.addr));
        if !self.bulk {
            if dests.is_empty() {
                tracing::info!(service = %key, scheduler = %spec.scheduler, "service added");
            } else {
                tracing::info!(service = %key, scheduler = %spec.scheduler, real_servers = dests.len(), "service added");
            }
        }
        Response::Ok
    }
}

/// The answer to an apply whose changes failed (`None`: they did not): the refusal, which says
/// the table is mixed when putting the previous configuration back (`undone`) failed too —
/// never "nothing was changed" when something was.
pub(super) fn refusal(converged: Result<(), Response>, undone: Result<(), Response>) -> Option<Response> {
    let Err(Response::Error(mut e)) = converged else { return None };
    if let Err(Response::Error(u)) = undone {
        e.message = format!("{}; putting the previous configuration back failed too: {}", e.message, u.message);
        e.partial = true;
        tracing::error!(error = %e.message, "apply failed and could not be undone");
    }
    Some(Response::Error(e))
}

/// An apply's changes in the log, one line each unless there are more than 100.
pub(super) fn log_changes(changes: &[String]) {
    if changes.len() <= 100 {
        for c in changes {
            tracing::info!(change = %c, "apply");
        }
    }
}

/// `desired` built in a table of its own, with the core's and the dataplane's checks: a
/// refusal names the service (and server) before anything changes.
pub(super) fn scratch_of(
    desired: &[(ServiceSpec, Vec<DestSpec>)],
    now: Instant,
) -> Result<xvs_core::Services, Response> {
    let mut scratch = xvs_core::Services::new();
    for (s, dests) in desired {
        let key = s.core_key();
        let checked = s
            .core_config()
            .and_then(|c| check_service(&key).map(|()| c))
            .and_then(|c| scratch.add_service(key, c, now).map(drop));
        if let Err(e) = checked {
            return Err(api_error(&Error::Invalid(format!("service {key}: {e}"))));
        }
        for d in dests {
            let r = dest_config(&key, d).and_then(|c| scratch.add_dest(&key, d.addr, d.port, c).map(drop));
            if let Err(e) = r {
                return Err(api_error(&Error::Invalid(format!(
                    "service {key}, real server {}:{}: {e}",
                    d.addr, d.port
                ))));
            }
        }
    }
    Ok(scratch)
}

/// The changes from `current` to `target`, one line each (`+`, `-`, `~`).
pub(super) fn diff(current: &[(ServiceSpec, Vec<DestSpec>)], target: &[(ServiceSpec, Vec<DestSpec>)]) -> Vec<String> {
    let mut changes = Vec::new();
    let describe = |s: &ServiceSpec| format!("{} {}", s.core_key(), s.scheduler);
    let rs = |d: &DestSpec| format!("{}:{} {} weight {}", d.addr, d.port, d.method, d.weight);
    let wanted: HashSet<KeySpec> = target.iter().map(|(d, _)| d.key).collect();
    let cur: HashMap<KeySpec, &(ServiceSpec, Vec<DestSpec>)> = current.iter().map(|e| (e.0.key, e)).collect();
    for (c, _) in current {
        if !wanted.contains(&c.key) {
            changes.push(format!("- service {}", c.core_key()));
        }
    }
    for (d, ddests) in target {
        match cur.get(&d.key).map(|e| (&e.0, &e.1)) {
            None => {
                changes.push(format!("+ service {}", describe(d)));
                for r in ddests.iter() {
                    changes.push(format!("+   real server {}", rs(r)));
                }
            }
            Some((c, cdests)) => {
                if c != d {
                    changes.push(format!("~ service {}", describe(d)));
                }
                for r in cdests {
                    if !ddests.iter().any(|x| x.addr == r.addr && x.port == r.port) {
                        changes.push(format!("-   real server {}:{} of {}", r.addr, r.port, d.core_key()));
                    }
                }
                for r in ddests {
                    match cdests.iter().find(|x| x.addr == r.addr && x.port == r.port) {
                        None => changes.push(format!("+   real server {} of {}", rs(r), d.core_key())),
                        Some(x) if x != r => changes.push(format!("~   real server {} of {}", rs(r), d.core_key())),
                        Some(_) => {}
                    }
                }
            }
        }
    }
    changes
}

/// A service's health settings, without its table entries (to tell what an apply changes).
fn health_of(s: &xvs_health::plan::ServicePlan) -> String {
    let dests: Vec<String> = s
        .dests
        .iter()
        .map(|d| format!("{:?}{}{}{:?}{:?}", d.checks, d.inhibit, d.alpha, d.notify_up, d.notify_down))
        .collect();
    format!(
        "{dests:?}{}{}{:?}{}{}{:?}{:?}",
        s.quorum, s.hysteresis, s.sorry, s.sorry_inhibit, s.omega, s.quorum_up, s.quorum_down
    )
}
