//! An `apply` that sends only what changed since the last one (`Request::ApplyPart`): with
//! 100k services, reading, checking and comparing the whole file took seconds for a change of
//! one weight. The part is trusted to be the difference from the last applied file only while
//! the table is exactly what that apply left, which [`Base`] keeps track of; otherwise, and for
//! anything with health checks, the part is refused with `ESTALE` and xvsadm applies the whole
//! file.

use xvs_api::config::{Config, ServiceEntry};

use super::apply::{diff, log_changes, refusal, scratch_of};
use super::*;

/// The token of the table the last plain apply left: a random number for this process (a
/// restarted daemon knows no earlier token) and a count. Any change to the table forgets it.
pub(super) struct Base {
    nonce: u64,
    issued: u64,
    current: Option<String>,
}

impl Base {
    pub(super) fn new(nonce: u64) -> Base {
        Base { nonce, issued: 0, current: None }
    }

    /// A new token for the table as it is now.
    pub(super) fn issue(&mut self) -> String {
        self.issued += 1;
        let t = format!("{:016x}.{}", self.nonce, self.issued);
        self.current = Some(t.clone());
        t
    }

    /// Before a request is handled: a part must name the current token; any request that may
    /// change the table forgets it (an apply that succeeds issues the next).
    pub(super) fn admit(&mut self, req: &Request) -> Result<(), Response> {
        if let Request::ApplyPart { base, .. } = req {
            if self.current.as_deref() != Some(base.as_str()) {
                return Err(stale("the table changed since the last apply"));
            }
        }
        if modifies(req) {
            self.current = None;
        }
        Ok(())
    }
}

/// Whether a request may change the services, their servers or the settings.
fn modifies(req: &Request) -> bool {
    match req {
        Request::Snapshot { .. }
        | Request::Zero { .. }
        | Request::Trace { .. }
        | Request::StartDaemon { .. }
        | Request::StopDaemon { .. }
        | Request::Drain { .. } => false,
        Request::Apply { dry_run, .. } | Request::ApplyPart { dry_run, .. } => !dry_run,
        _ => true,
    }
}

fn stale(why: &str) -> Response {
    Response::Error(ApiError {
        errno: "ESTALE".into(),
        message: format!("{why}: apply the whole file"),
        ..Default::default()
    })
}

/// Whether a service uses anything of the health checks (which need the whole file: its
/// script settings, and a monitor that follows the whole table): all a health plan can
/// refuse or act on.
pub(super) fn has_health(s: &ServiceEntry) -> bool {
    s.sorry_server.is_some()
        || s.quorum_up.is_some()
        || s.quorum_down.is_some()
        || s.real_servers.iter().any(|r| !r.checks.is_empty() || r.notify_up.is_some() || r.notify_down.is_some())
}

impl Control {
    /// `Request::ApplyPart` once admitted: the services the file no longer has (`removed`) and
    /// those it has anew (`added`) are checked and changed as a whole apply would check and
    /// change them; the rest of the table, unchanged in the file, is left alone.
    pub(super) fn apply_part(
        &mut self,
        removed: &[KeySpec],
        added: Vec<ServiceEntry>,
        dry_run: bool,
        now: Instant,
    ) -> Response {
        if self.health.is_some() || !self.file_target.is_empty() || added.iter().any(has_health) {
            return stale("health checks are planned over the whole file");
        }
        let config = Config { services: added, ..Default::default() };
        let target = match config.specs() {
            Ok(d) => d,
            Err(e) => return api_error(&Error::Invalid(e)),
        };
        let gone: HashSet<KeySpec> = removed.iter().copied().collect();
        if gone.iter().any(|k| self.lb.services.find(&(*k).into()).is_none()) {
            return stale("a service the last apply made is missing");
        }
        for (s, _) in &target {
            if !gone.contains(&s.key) && self.lb.services.find(&s.core_key()).is_some() {
                return api_error(&Error::Invalid(format!(
                    "service {}: the same service is listed twice",
                    s.core_key()
                )));
            }
        }
        let scratch = match scratch_of(&target, now) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let owned: HashSet<KeySpec> = gone.iter().copied().chain(target.iter().map(|(s, _)| s.key)).collect();
        let current = self.specs_of(&owned);
        let changes = diff(&current, &target);
        if let Err(e) = self.fits(&scratch, &target, Some(&owned)) {
            return e;
        }
        if dry_run {
            return Response::Applied { changes, base: None };
        }
        self.bulk = changes.len() > 100;
        let converged = self.converge(&target, Some(&owned), now);
        let undone = if converged.is_err() { self.converge(&current, Some(&owned), now) } else { Ok(()) };
        self.bulk = false;
        if let Some(refused) = refusal(converged, undone) {
            return refused;
        }
        log_changes(&changes);
        tracing::info!(
            changes = changes.len(),
            services = owned.len(),
            "configuration applied (the changed services only)"
        );
        Response::Applied { changes, base: Some(self.base.issue()) }
    }

    /// The current configuration of the services `keys` names that exist, in the table's order
    /// (as [`Control::specs`] lists them, so that changes are listed as a whole apply lists
    /// them).
    pub(super) fn specs_of(&self, keys: &HashSet<KeySpec>) -> Vec<(ServiceSpec, Vec<DestSpec>)> {
        let mut ids: Vec<(u64, ServiceId)> = keys
            .iter()
            .filter_map(|k| self.lb.services.find(&(*k).into()))
            .filter_map(|id| Some((self.lb.services.get(id)?.seq(), id)))
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| self.spec_at(id)).collect()
    }
}
