//! The health side of a configuration, validated: each service's real servers with their
//! checks, quorum, sorry server and scripts.

use std::net::SocketAddr;

use xvs_api::config::Config;
use xvs_api::{DestSpec, KeySpec, ServiceSpec, TunnelSpec};

use crate::script::{RunAs, ScriptPolicy};
use crate::spec::{CheckSpec, Probe};

/// A real server and how its health is judged.
#[derive(Clone, Debug, PartialEq)]
pub struct DestPlan {
    /// As configured (its weight is the one restored when it comes back).
    pub spec: DestSpec,
    /// Checks; all must pass. None: always healthy.
    pub checks: Vec<CheckSpec>,
    /// A failed server stays with weight 0 instead of being removed.
    pub inhibit: bool,
    /// Starts failed until its checks pass.
    pub alpha: bool,
    /// Run when it comes up.
    pub notify_up: Option<String>,
    /// Run when it goes down.
    pub notify_down: Option<String>,
}

/// A service and its health settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePlan {
    /// The service.
    pub spec: ServiceSpec,
    /// Its real servers.
    pub dests: Vec<DestPlan>,
    /// Least sum of healthy weights.
    pub quorum: u32,
    /// Hysteresis around the quorum.
    pub hysteresis: u32,
    /// Used while the quorum is lost.
    pub sorry: Option<DestSpec>,
    /// The sorry server stays in the table with weight 0 while unused.
    pub sorry_inhibit: bool,
    /// Run the down scripts when the service goes away.
    pub omega: bool,
    /// Run when the quorum is regained.
    pub quorum_up: Option<String>,
    /// Run when the quorum is lost.
    pub quorum_down: Option<String>,
}

impl ServicePlan {
    /// The service's key.
    pub fn key(&self) -> KeySpec {
        self.spec.key
    }
}

/// Everything the health monitor needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The services.
    pub services: Vec<ServicePlan>,
    /// How scripts run.
    pub scripts: ScriptPolicy,
}

fn script(s: &Option<String>) -> Result<Option<String>, String> {
    match s {
        Some(t) if t.trim().is_empty() => Err("an empty script command".into()),
        other => Ok(other.clone()),
    }
}

impl Plan {
    /// Validates the configuration's services with their health settings.
    pub fn from_config(config: &Config) -> Result<Plan, String> {
        Plan::from_specs(config, config.specs()?)
    }

    /// As [`Plan::from_config`], with `specs` the result of `config.specs()` already at hand
    /// (validating 100k services takes a quarter of a second: once is enough).
    pub fn from_specs(config: &Config, specs: Vec<(ServiceSpec, Vec<DestSpec>)>) -> Result<Plan, String> {
        let policy = ScriptPolicy::new(config.script_user.as_deref(), config.script_security)?;
        let check_script = |s: &Option<String>| -> Result<Option<String>, String> {
            let s = script(s)?;
            if let Some(cmd) = &s {
                policy.check(cmd, &policy.run_as)?;
            }
            Ok(s)
        };
        let mut services = Vec::new();
        for ((spec, dests), entry) in specs.into_iter().zip(&config.services) {
            let at = |m: String| format!("service {}: {m}", entry.address.clone().unwrap_or_default());
            let mut plans = Vec::new();
            for (d, r) in dests.into_iter().zip(&entry.real_servers) {
                let rs = SocketAddr::new(d.addr, d.port);
                let at_rs = |m: String| at(format!("real server {rs}: {m}"));
                let mut checks = Vec::new();
                for c in &r.checks {
                    let mut check = CheckSpec::from_entry(c, rs).map_err(at_rs)?;
                    if let Probe::Misc(m) = &mut check.probe {
                        // MISC_CHECK's own `user`, else the scripts' user.
                        if m.run_as.is_none() {
                            m.run_as = Some(policy.run_as.clone());
                        }
                        let run_as = m.run_as.clone().unwrap_or_else(RunAs::root);
                        policy.check(&m.command, &run_as).map_err(at_rs)?;
                    }
                    checks.push(check);
                }
                plans.push(DestPlan {
                    checks,
                    inhibit: r.inhibit_on_failure.unwrap_or(entry.inhibit_on_failure),
                    alpha: r.alpha.unwrap_or(entry.alpha),
                    notify_up: check_script(&r.notify_up).map_err(at_rs)?,
                    notify_down: check_script(&r.notify_down).map_err(at_rs)?,
                    spec: d,
                });
            }
            let sorry = match &entry.sorry_server {
                None => None,
                Some(s) => {
                    let port = match spec.key {
                        KeySpec::Addr { port, .. } => port,
                        KeySpec::Fwmark { .. } => 0,
                    };
                    let (addr, port) = xvs_api::config::parse_endpoint(s, Some(port)).map_err(|e| at(e.to_string()))?;
                    let method = match &entry.sorry_server_method {
                        Some(m) => m.clone(),
                        None => plans.first().map_or_else(|| "masq".to_string(), |d| d.spec.method.clone()),
                    };
                    let d = DestSpec {
                        addr,
                        port,
                        method,
                        weight: 1,
                        u_threshold: 0,
                        l_threshold: 0,
                        tunnel: TunnelSpec::default(),
                    };
                    d.core_config().map_err(|e| at(format!("sorry_server: {e}")))?;
                    if plans.iter().any(|p| p.spec.addr == d.addr && p.spec.port == d.port) {
                        return Err(at(format!("sorry_server {s} is also one of its real servers")));
                    }
                    Some(d)
                }
            };
            // keepalived lowers a quorum no set of servers could reach, and keeps the hysteresis
            // below the quorum.
            let total: u64 = plans.iter().map(|d| d.spec.weight.max(0) as u64).sum();
            let mut quorum = entry.quorum.unwrap_or(1).max(1);
            if u64::from(quorum) > total && total > 0 {
                quorum = total as u32;
            }
            let hysteresis = entry.hysteresis.min(quorum - 1);
            services.push(ServicePlan {
                spec,
                dests: plans,
                quorum,
                hysteresis,
                sorry,
                sorry_inhibit: entry.sorry_server_inhibit,
                omega: entry.omega,
                quorum_up: check_script(&entry.quorum_up).map_err(at)?,
                quorum_down: check_script(&entry.quorum_down).map_err(at)?,
            });
        }
        Ok(Plan { services, scripts: policy })
    }

    /// True when any real server has a check (else there is nothing to monitor).
    pub fn has_checks(&self) -> bool {
        self.services.iter().any(|s| s.dests.iter().any(|d| !d.checks.is_empty()))
    }
}
