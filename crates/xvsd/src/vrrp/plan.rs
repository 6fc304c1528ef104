//! The VRRP part of a configuration, checked and resolved into what the runner needs:
//! every value keepalived would refuse is refused here, before anything runs.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use xvs_api::config::Config;
use xvs_api::vrrp::VrrpInstanceEntry;
use xvs_health::script::ScriptPolicy;
use xvs_vrrp::{Target, Tracked, Version};

/// One virtual address line (`ADDR[/LEN] [dev IF] [scope S] [brd B] [label L]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length (default /32 or /128, as keepalived).
    pub prefix: u8,
    /// The interface it is added to (default: the instance's).
    pub dev: String,
    /// rtnetlink scope number (0 global, 253 link, 254 host).
    pub scope: u8,
    /// IPv4 broadcast, only when given.
    pub brd: Option<Ipv4Addr>,
    /// IPv4 label.
    pub label: Option<String>,
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} dev {}", self.addr, self.prefix, self.dev)
    }
}

/// A `vrrp_script`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// Its name.
    pub name: String,
    /// The command.
    pub command: String,
    /// Time between runs.
    pub interval: Duration,
    /// Time a run may take.
    pub timeout: Duration,
    /// Successes in a row to be up.
    pub rise: u32,
    /// Failures in a row to be down.
    pub fall: u32,
    /// Starts failed.
    pub init_fail: bool,
    /// Who it runs as.
    pub run_as: xvs_health::script::RunAs,
}

/// Notify commands of an instance or sync group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    /// notify_master.
    pub master: Option<String>,
    /// notify_backup.
    pub backup: Option<String>,
    /// notify_fault.
    pub fault: Option<String>,
    /// notify_stop.
    pub stop: Option<String>,
    /// notify (generic, with arguments appended).
    pub any: Option<String>,
}

impl Notify {
    /// The commands to run on entering `state` (`kind` is INSTANCE or GROUP).
    pub fn commands(&self, kind: &str, name: &str, state: xvs_vrrp::State, priority: u8) -> Vec<String> {
        let specific = match state {
            xvs_vrrp::State::Master => &self.master,
            xvs_vrrp::State::Backup => &self.backup,
            xvs_vrrp::State::Fault => &self.fault,
            xvs_vrrp::State::Stop => &self.stop,
            xvs_vrrp::State::Init => &None,
        };
        let mut out: Vec<String> = specific.iter().cloned().collect();
        if let Some(n) = &self.any {
            out.push(format!("{n} {kind} {} {} {priority}", quote(name), state.name()));
        }
        out
    }
}

/// Single-quotes a word for `sh -c`.
fn quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// One instance, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The state machine's spec (its `own` address is resolved at start when not given).
    pub spec: xvs_vrrp::InstanceSpec,
    /// `unicast_src_ip`, when given.
    pub src: Option<IpAddr>,
    /// Advertised addresses.
    pub vips: Vec<Vip>,
    /// Addresses owned but not advertised.
    pub excluded: Vec<Vip>,
    /// Notify commands.
    pub notify: Notify,
}

/// The VRRP part of a configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Instances, in file order.
    pub instances: Vec<Instance>,
    /// Sync groups: name, members, notify commands.
    pub groups: Vec<(String, Vec<String>, Notify)>,
    /// Tracked scripts.
    pub scripts: Vec<Script>,
    /// Who notify commands run as.
    pub policy: Option<ScriptPolicy>,
    /// Connection synchronisation following an instance: its name and the daemon's settings.
    pub sync: Option<(String, xvs_api::SyncOptions)>,
    /// Services that take new connections only while an instance is MASTER, by instance.
    pub follow: Vec<(String, Vec<xvs_core::ServiceKey>)>,
}

impl Plan {
    /// True when there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Checks and resolves `config`'s VRRP entries.
    pub fn from_config(config: &Config) -> Result<Plan, String> {
        if config.vrrp_instances.is_empty() {
            if let Some(i) = config.services.iter().find_map(|s| s.vrrp_instance.as_ref()) {
                return Err(format!("a service follows vrrp_instance {i}, which is not defined"));
            }
            if !config.vrrp_sync_groups.is_empty() {
                return Err("vrrp_sync_group without any vrrp_instance".into());
            }
            if let Some(s) = &config.sync_daemon {
                return Err(format!("sync_daemon follows vrrp_instance {}, which is not defined", s.vrrp_instance));
            }
            return Ok(Plan::default());
        }
        let policy = ScriptPolicy::new(config.script_user.as_deref(), config.script_security)?;
        let mut scripts = Vec::new();
        for s in &config.vrrp_scripts {
            if scripts.iter().any(|x: &Script| x.name == s.name) {
                return Err(format!("vrrp_script {} is defined twice", s.name));
            }
            let run_as = match &s.user {
                Some(u) => xvs_health::script::RunAs::lookup(u).map_err(|e| format!("vrrp_script {}: {e}", s.name))?,
                None => policy.run_as.clone(),
            };
            policy.check(&s.script, &run_as).map_err(|e| format!("vrrp_script {}: {e}", s.name))?;
            let interval = secs(s.interval.unwrap_or(1.0), &format!("vrrp_script {} interval", s.name))?;
            let timeout = match s.timeout {
                Some(t) if t > 0.0 => secs(t, &format!("vrrp_script {} timeout", s.name))?,
                _ => interval,
            };
            scripts.push(Script {
                name: s.name.clone(),
                command: s.script.clone(),
                interval: interval.max(Duration::from_millis(100)),
                timeout,
                rise: s.rise.unwrap_or(1).max(1),
                fall: s.fall.unwrap_or(1).max(1),
                init_fail: s.init_fail,
                run_as,
            });
        }
        let mut instances = Vec::new();
        for e in &config.vrrp_instances {
            if instances.iter().any(|i: &Instance| i.spec.name == e.name) {
                return Err(format!("vrrp_instance {} is defined twice", e.name));
            }
            let i = instance(e, config, &policy).map_err(|m| format!("vrrp_instance {}: {m}", e.name))?;
            instances.push(i);
        }
        let mut groups = Vec::new();
        for g in &config.vrrp_sync_groups {
            let notify = Notify {
                master: g.notify_master.clone(),
                backup: g.notify_backup.clone(),
                fault: g.notify_fault.clone(),
                stop: g.notify_stop.clone(),
                any: g.notify.clone(),
            };
            check_notify(&notify, &policy).map_err(|m| format!("vrrp_sync_group {}: {m}", g.name))?;
            groups.push((g.name.clone(), g.group.clone(), notify));
        }
        // The router checks duplicate router ids and group membership.
        let specs = instances.iter().map(|i| i.spec.clone()).collect();
        xvs_vrrp::Router::new(specs, groups.iter().map(|(n, m, _)| (n.clone(), m.clone())).collect())?;
        let sync = match &config.sync_daemon {
            None => None,
            Some(s) => {
                if !instances.iter().any(|i| i.spec.name == s.vrrp_instance) {
                    return Err(format!("sync_daemon follows vrrp_instance {}, which is not defined", s.vrrp_instance));
                }
                let group = match &s.group {
                    None => None,
                    Some(g) => Some(
                        g.parse::<IpAddr>()
                            .ok()
                            .filter(|a| a.is_multicast() && a.is_ipv4())
                            .ok_or_else(|| format!("sync_daemon group '{g}' is not an IPv4 multicast address"))?,
                    ),
                };
                let o = xvs_api::SyncOptions {
                    mcast_interface: s.interface.clone(),
                    syncid: s.syncid,
                    maxlen: s.maxlen,
                    group,
                    port: s.port.unwrap_or(8848),
                    ttl: s.ttl.unwrap_or(1),
                };
                Some((s.vrrp_instance.clone(), o))
            }
        };
        let mut follow: Vec<(String, Vec<xvs_core::ServiceKey>)> = Vec::new();
        let specs = config.specs()?;
        for (entry, (spec, _)) in config.services.iter().zip(&specs) {
            let Some(name) = &entry.vrrp_instance else { continue };
            if !instances.iter().any(|i| i.spec.name == *name) {
                return Err(format!("service {}: vrrp_instance {name} is not defined", spec.core_key()));
            }
            match follow.iter_mut().find(|(n, _)| n == name) {
                Some((_, keys)) => keys.push(spec.core_key()),
                None => follow.push((name.clone(), vec![spec.core_key()])),
            }
        }
        Ok(Plan { instances, groups, scripts, policy: Some(policy), sync, follow })
    }
}

fn secs(v: f64, what: &str) -> Result<Duration, String> {
    if !(0.0..=86_400.0).contains(&v) || v.is_nan() {
        return Err(format!("{what} {v} is not a time in seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn check_notify(n: &Notify, policy: &ScriptPolicy) -> Result<(), String> {
    for c in [&n.master, &n.backup, &n.fault, &n.stop, &n.any].into_iter().flatten() {
        policy.check(c, &policy.run_as)?;
    }
    Ok(())
}

fn instance(e: &VrrpInstanceEntry, config: &Config, policy: &ScriptPolicy) -> Result<Instance, String> {
    if e.interface.is_empty() {
        return Err("needs an interface".into());
    }
    let vrid = u8::try_from(e.virtual_router_id)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| format!("virtual_router_id {} is not from 1 to 255", e.virtual_router_id))?;
    let vips = e.virtual_ipaddress.iter().map(|l| vip(l, &e.interface)).collect::<Result<Vec<_>, _>>()?;
    let excluded = e.virtual_ipaddress_excluded.iter().map(|l| vip(l, &e.interface)).collect::<Result<Vec<_>, _>>()?;
    let src: Option<IpAddr> = match &e.unicast_src_ip {
        Some(s) => Some(s.parse().map_err(|_| format!("unicast_src_ip '{s}' is not an address"))?),
        None => None,
    };
    let peers = e
        .unicast_peer
        .iter()
        .map(|p| p.parse::<IpAddr>().map_err(|_| format!("unicast_peer '{p}' is not an address")))
        .collect::<Result<Vec<_>, _>>()?;
    // The family is the first address's (keepalived: the first VIP, else the first peer).
    let v4 = vips.first().map(|v| v.addr.is_ipv4()).or(peers.first().map(IpAddr::is_ipv4)).unwrap_or(true);
    if let Some(v) = vips.iter().find(|v| v.addr.is_ipv4() != v4) {
        return Err(format!(
            "virtual_ipaddress {} is not of the instance's family (one instance per family; \
             put the other family's addresses in another instance or in virtual_ipaddress_excluded)",
            v.addr
        ));
    }
    if let Some(p) = peers.iter().chain(&src).find(|p| p.is_ipv4() != v4) {
        return Err(format!("{p} is not of the instance's family"));
    }
    if vips.is_empty() {
        return Err("needs at least one virtual_ipaddress".into());
    }
    let version = match e.version {
        None if v4 => Version::V2,
        None | Some(3) => Version::V3,
        Some(2) if v4 => Version::V2,
        Some(2) => return Err("IPv6 needs VRRP version 3".into()),
        Some(v) => return Err(format!("version {v} is not 2 or 3")),
    };
    let start_master = match e.state.as_deref() {
        None | Some("BACKUP") => false,
        Some("MASTER") => true,
        Some(s) => return Err(format!("state '{s}' is not MASTER or BACKUP")),
    };
    let priority = match e.priority {
        Some(p @ 1..=255) => p as u8,
        Some(p) => return Err(format!("priority {p} is not from 1 to 255")),
        None if start_master => 255,
        None => 100,
    };
    let interval = e.advert_int.unwrap_or(1.0);
    let interval_cs = match version {
        // Version 2 counts whole seconds, version 3 hundredths (at most 40.95 s).
        Version::V2 if (1.0..=255.0).contains(&interval) => (interval.round() as u16) * 100,
        Version::V3 if (0.01..=40.95).contains(&interval) => (interval * 100.0).round() as u16,
        _ => return Err(format!("advert_int {interval} is out of range for version {}", version.number())),
    };
    let password = match (&e.auth_pass, version) {
        (None, _) => None,
        (Some(_), Version::V3) => return Err("VRRP version 3 has no authentication: remove auth_pass".into()),
        (Some(p), Version::V2) => Some(xvs_vrrp::wire::password(p)),
    };
    if (e.nopreempt || e.preempt_delay.is_some_and(|d| d > 0.0)) && start_master {
        return Err("nopreempt and preempt_delay need state BACKUP (as keepalived)".into());
    }
    let mut tracked = Vec::new();
    if !e.dont_track_primary {
        tracked.push(Tracked { what: Target::Interface(e.interface.clone()), weight: 0, reverse: false });
    }
    for t in &e.track_interface {
        tracked.push(Tracked {
            what: Target::Interface(t.name.clone()),
            weight: t.weight.unwrap_or(0),
            reverse: t.reverse,
        });
    }
    for t in &e.track_script {
        let s = config
            .vrrp_scripts
            .iter()
            .find(|s| s.name == t.name)
            .ok_or_else(|| format!("track_script {}: no vrrp_script of that name", t.name))?;
        let weight = t.weight.or(s.weight).unwrap_or(0);
        if priority == 255 && weight != 0 {
            return Err(format!(
                "track_script {}: the address owner (priority 255) cannot track with a weight",
                t.name
            ));
        }
        tracked.push(Tracked { what: Target::Script(t.name.clone()), weight, reverse: t.reverse || s.reverse });
    }
    let notify = Notify {
        master: e.notify_master.clone(),
        backup: e.notify_backup.clone(),
        fault: e.notify_fault.clone(),
        stop: e.notify_stop.clone(),
        any: e.notify.clone(),
    };
    check_notify(&notify, policy)?;
    let cfg = xvs_vrrp::Config {
        version,
        vrid,
        priority,
        interval_cs,
        preempt: !e.nopreempt,
        preempt_delay: secs(e.preempt_delay.unwrap_or(0.0), "preempt_delay")?,
        start_master,
        addrs: vips.iter().map(|v| v.addr).collect(),
        password,
        own: src.unwrap_or(if v4 {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        }),
        garp_repeat: e.garp_master_repeat.unwrap_or(5),
        garp_delay: secs(e.garp_master_delay.unwrap_or(5.0), "garp_master_delay")?,
        garp_refresh: secs(e.garp_master_refresh.unwrap_or(0.0), "garp_master_refresh")?,
        check_addrs: !e.skip_check_adv_addr,
    };
    Ok(Instance {
        spec: xvs_vrrp::InstanceSpec {
            name: e.name.clone(),
            interface: e.interface.clone(),
            unicast_peers: peers,
            config: cfg,
            tracked,
        },
        src,
        vips,
        excluded,
        notify,
    })
}

/// Reads one `virtual_ipaddress` line.
pub fn vip(line: &str, default_dev: &str) -> Result<Vip, String> {
    let mut words = line.split_whitespace();
    let first = words.next().ok_or("an empty virtual_ipaddress line")?;
    let (a, len) = match first.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (first, None),
    };
    let addr: IpAddr = a.parse().map_err(|_| format!("virtual_ipaddress '{first}' is not an address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match len {
        None => max,
        Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| format!("'{first}': bad prefix length"))?,
    };
    let mut v = Vip { addr, prefix, dev: default_dev.to_string(), scope: 0, brd: None, label: None };
    while let Some(k) = words.next() {
        let mut val = || words.next().ok_or_else(|| format!("virtual_ipaddress '{line}': {k} needs a value"));
        match k {
            "dev" => v.dev = val()?.to_string(),
            "scope" => {
                let s = val()?;
                v.scope = match s {
                    "global" | "universe" => 0,
                    "site" => 200,
                    "link" => 253,
                    "host" => 254,
                    "nowhere" => 255,
                    n => n.parse().map_err(|_| format!("virtual_ipaddress '{line}': unknown scope '{n}'"))?,
                };
            }
            "brd" | "broadcast" => {
                let b = val()?;
                let IpAddr::V4(a4) = addr else {
                    return Err(format!("virtual_ipaddress '{line}': IPv6 has no broadcast"));
                };
                v.brd = Some(match b {
                    "+" | "-" if prefix <= 30 => {
                        let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                        if b == "+" {
                            Ipv4Addr::from(u32::from(a4) | host)
                        } else {
                            Ipv4Addr::from(u32::from(a4) & !host)
                        }
                    }
                    b => b.parse().map_err(|_| format!("virtual_ipaddress '{line}': bad broadcast '{b}'"))?,
                });
            }
            "label" => {
                let l = val()?;
                if addr.is_ipv6() {
                    return Err(format!("virtual_ipaddress '{line}': IPv6 addresses have no label"));
                }
                if l.len() > 15 {
                    return Err(format!("virtual_ipaddress '{line}': label '{l}' is longer than 15 characters"));
                }
                v.label = Some(l.to_string());
            }
            "no_track" | "-nodad" | "nodad" | "home" | "noprefixroute" => {}
            other => return Err(format!("virtual_ipaddress '{line}': '{other}' is not supported by xvs")),
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lines_as_keepalived_reads_them() {
        let v = vip("198.18.0.100", "eth1").unwrap();
        assert_eq!((v.prefix, v.dev.as_str(), v.scope, v.brd, v.label), (32, "eth1", 0, None, None));
        let v = vip("198.18.0.100/24 dev eth2 brd + scope link label eth2:vip", "eth1").unwrap();
        assert_eq!(v.prefix, 24);
        assert_eq!(v.dev, "eth2");
        assert_eq!(v.brd, Some("198.18.0.255".parse().unwrap()));
        assert_eq!(v.scope, 253);
        assert_eq!(v.label.as_deref(), Some("eth2:vip"));
        assert_eq!(vip("2001:2::100", "eth1").unwrap().prefix, 128);
        assert!(vip("198.18.0.300", "eth1").unwrap_err().contains("not an address"));
        assert!(vip("198.18.0.1/33", "eth1").unwrap_err().contains("prefix"));
        assert!(vip("198.18.0.1 dev", "eth1").unwrap_err().contains("dev needs a value"));
        assert!(vip("2001:2::1 label x", "eth1").unwrap_err().contains("no label"));
        assert!(vip("198.18.0.1 use_vmac", "eth1").unwrap_err().contains("not supported"));
    }

    fn plan(toml: &str) -> Result<Plan, String> {
        Plan::from_config(&xvs_api::config::Config::parse(toml).unwrap())
    }

    #[test]
    fn what_keepalived_refuses_is_refused_with_the_instance_named() {
        let base = "[[vrrp_instance]]\nname = \"V\"\ninterface = \"e0\"\nvirtual_router_id = 5\n";
        let ok = plan(&format!("{base}virtual_ipaddress = [\"198.18.5.100\"]\n")).unwrap();
        let i = &ok.instances[0].spec;
        assert_eq!((i.config.version, i.config.priority, i.config.interval_cs), (Version::V2, 100, 100));
        assert_eq!(i.tracked[0].what, Target::Interface("e0".into()), "its own interface is tracked");
        for (extra, want) in [
            ("virtual_ipaddress = [\"198.18.5.100\"]\nversion = 3\nauth_pass = \"x\"", "no authentication"),
            ("virtual_ipaddress = [\"2001:2::100\"]\nversion = 2", "IPv6 needs VRRP version 3"),
            ("virtual_ipaddress = [\"198.18.5.100\", \"2001:2::100\"]", "not of the instance's family"),
            ("virtual_ipaddress = [\"198.18.5.100\"]\nstate = \"MASTER\"\nnopreempt = true", "need state BACKUP"),
            ("virtual_ipaddress = [\"198.18.5.100\"]\ntrack_script = [{ name = \"nope\" }]", "no vrrp_script"),
            ("virtual_ipaddress = [\"198.18.5.100\"]\nadvert_int = 0.5", "out of range for version 2"),
            ("virtual_ipaddress = [\"198.18.5.100\"]\npriority = 300", "not from 1 to 255"),
            ("", "at least one virtual_ipaddress"),
        ] {
            let e = plan(&format!("{base}{extra}\n")).unwrap_err();
            assert!(e.starts_with("vrrp_instance V: ") && e.contains(want), "{extra}: {e}");
        }
        let two = format!("{base}virtual_ipaddress = [\"198.18.5.100\"]\n{}", base.replace("\"V\"", "\"W\""));
        let e = plan(&format!("{two}virtual_ipaddress = [\"198.18.5.101\"]\n")).unwrap_err();
        assert!(e.contains("both use virtual_router_id 5 on e0"), "{e}");
        // Services may follow an instance of the file, and only that.
        let svc = "[[service]]\naddress = \"198.18.5.100:80\"\nvrrp_instance = \"V\"\n";
        let p = plan(&format!("{svc}{base}virtual_ipaddress = [\"198.18.5.100\"]\n")).unwrap();
        assert_eq!(p.follow, [("V".to_string(), vec![xvs_core::ServiceKey::tcp("198.18.5.100".parse().unwrap(), 80)])]);
        let e = plan(&format!("{}{base}virtual_ipaddress = [\"198.18.5.100\"]\n", svc.replace("\"V\"", "\"W\"")))
            .unwrap_err();
        assert!(e.contains("vrrp_instance W is not defined"), "{e}");
        assert!(plan(svc).unwrap_err().contains("not defined"));
        // state MASTER without a priority is the owner, as keepalived.
        let m = plan(&format!("{base}virtual_ipaddress = [\"198.18.5.100\"]\nstate = \"MASTER\"\n")).unwrap();
        assert_eq!(m.instances[0].spec.config.priority, 255);
    }

    #[test]
    fn notify_arguments_as_keepalived_appends_them() {
        let n = Notify { master: Some("/m.sh".into()), any: Some("/n.sh x".into()), ..Default::default() };
        assert_eq!(
            n.commands("INSTANCE", "VI_1", xvs_vrrp::State::Master, 100),
            ["/m.sh", "/n.sh x INSTANCE VI_1 MASTER 100"]
        );
        assert_eq!(n.commands("GROUP", "my group", xvs_vrrp::State::Fault, 0), ["/n.sh x GROUP 'my group' FAULT 0"]);
    }
}
