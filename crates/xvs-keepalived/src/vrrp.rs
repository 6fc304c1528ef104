//! keepalived's VRRP blocks (`vrrp_instance`, `vrrp_sync_group`, `vrrp_script` and the VRRP
//! settings of `global_defs`) into xvs's [`xvs_api::vrrp`] entries, keyword for keyword.
//! Values are checked where keepalived checks them; what xvs cannot honour (IPsec AH,
//! VMACs) is an error at its line.

use xvs_api::config::Config;
use xvs_api::vrrp::{SyncDaemonEntry, TrackEntry, VrrpInstanceEntry, VrrpScriptEntry, VrrpSyncGroupEntry};

use crate::convert::{block, flag, no_args, no_block, number, one, script as command, timer, Notice, R};
use crate::syntax::Node;

/// Keywords of `vrrp_instance` read and not acted on (they concern e-mail, SNMP or logging).
const INSTANCE_NOTED: &[&str] =
    &["smtp_alert", "debug", "accept", "no_accept", "notify_deleted", "lvs_sync_daemon_interface"];

/// `vrrp_instance NAME { ... }`.
pub(crate) fn instance(n: &Node, notices: &mut Vec<Notice>) -> R<VrrpInstanceEntry> {
    let mut e = VrrpInstanceEntry { name: one(n)?.to_string(), ..Default::default() };
    for s in block(n)? {
        let kw = s.keyword();
        match kw {
            "state" => match one(s)? {
                v @ ("MASTER" | "BACKUP") => e.state = Some(v.to_string()),
                v => return Err(s.error(format!("state '{v}' is not MASTER or BACKUP"))),
            },
            "interface" => e.interface = one(s)?.to_string(),
            "virtual_router_id" => e.virtual_router_id = number(s, 1, 255)? as u32,
            "priority" => e.priority = Some(number(s, 1, 255)? as u32),
            "advert_int" => e.advert_int = Some(timer(s)?),
            "version" => e.version = Some(number(s, 2, 3)? as u8),
            "nopreempt" => e.nopreempt = flag(s)?,
            "preempt" => e.nopreempt = !flag(s)?,
            "preempt_delay" => e.preempt_delay = Some(timer(s)?),
            "authentication" => {
                for a in block(s)? {
                    match (a.keyword(), a.args()) {
                        ("auth_type", [t]) if t == "PASS" => {}
                        ("auth_type", [t]) if t == "AH" => {
                            return Err(a.error("auth_type AH (IPsec) is not supported by xvs; use PASS or none"))
                        }
                        ("auth_type", _) => return Err(a.error("auth_type is PASS or AH")),
                        ("auth_pass", [p]) => e.auth_pass = Some(p.clone()),
                        (k, _) => return Err(a.error(format!("unknown keyword '{k}' in authentication"))),
                    }
                }
            }
            "virtual_ipaddress" => e.virtual_ipaddress = address_lines(s)?,
            "virtual_ipaddress_excluded" => e.virtual_ipaddress_excluded = address_lines(s)?,
            "unicast_src_ip" | "mcast_src_ip" => e.unicast_src_ip = Some(one(s)?.to_string()),
            "unicast_peer" => {
                for p in block(s)? {
                    no_block(p)?;
                    if !p.args().is_empty() {
                        return Err(p.error("unicast_peer options (min_ttl, max_ttl) are not supported by xvs"));
                    }
                    e.unicast_peer.push(p.keyword().to_string());
                }
            }
            "garp_master_delay" => e.garp_master_delay = Some(timer(s)?),
            "garp_master_repeat" => e.garp_master_repeat = Some(number(s, 1, 255)? as u32),
            "garp_master_refresh" => e.garp_master_refresh = Some(timer(s)?),
            "track_interface" => e.track_interface = tracks(s)?,
            "track_script" => e.track_script = tracks(s)?,
            k @ ("track_file" | "track_process" | "track_bfd") => {
                return Err(s.error(format!(
                    "{k} in vrrp_instance is not supported by xvs (track_script and track_interface are)"
                )))
            }
            "dont_track_primary" => e.dont_track_primary = flag(s)?,
            "skip_check_adv_addr" => e.skip_check_adv_addr = flag(s)?,
            "notify_master" => e.notify_master = Some(command(s)?),
            "notify_backup" => e.notify_backup = Some(command(s)?),
            "notify_fault" => e.notify_fault = Some(command(s)?),
            "notify_stop" => e.notify_stop = Some(command(s)?),
            "notify" => e.notify = Some(command(s)?),
            "use_vmac" | "vmac_xmit_base" => {
                return Err(s.error(format!("{kw}: virtual MAC interfaces are not supported by xvs")))
            }
            "virtual_routes" | "virtual_rules" | "static_routes" | "static_rules" => {
                return Err(s.error(format!(
                    "{kw}: routes and rules that follow the VRRP state are not supported by xvs (a notify script can \
                     add and remove them)"
                )))
            }
            k if INSTANCE_NOTED.contains(&k) => notices.push(Notice {
                pos: s.pos.clone(),
                message: format!("vrrp_instance {}: {k} is not used by xvs", e.name),
            }),
            k => return Err(s.error(format!("unknown keyword '{k}' in vrrp_instance"))),
        }
    }
    if e.interface.is_empty() {
        return Err(n.error(format!("vrrp_instance {} needs an interface", e.name)));
    }
    if e.virtual_router_id == 0 {
        return Err(n.error(format!("vrrp_instance {} needs a virtual_router_id", e.name)));
    }
    Ok(e)
}

/// Lines of `virtual_ipaddress { ... }`, each kept whole (`ADDR[/LEN] [dev IF] ...`).
fn address_lines(n: &Node) -> R<Vec<String>> {
    let mut out = Vec::new();
    for l in block(n)? {
        no_block(l)?;
        let mut words = vec![l.keyword().to_string()];
        words.extend(l.args().iter().cloned());
        out.push(words.join(" "));
    }
    Ok(out)
}

/// `track_interface { eth0 [weight W [reverse]] }` / `track_script { chk [weight W [reverse]] }`.
fn tracks(n: &Node) -> R<Vec<TrackEntry>> {
    let mut out = Vec::new();
    for t in block(n)? {
        no_block(t)?;
        let mut e = TrackEntry { name: t.keyword().to_string(), ..Default::default() };
        match t.args() {
            [] => {}
            [w, v, rest @ ..] if w == "weight" => {
                let weight: i32 = v
                    .parse()
                    .ok()
                    .filter(|w: &i32| (-254..=254).contains(w))
                    .ok_or_else(|| t.error(format!("weight '{v}' is not a number from -254 to 254")))?;
                // keepalived takes ±254 as ±253.
                e.weight = Some(weight.clamp(-253, 253));
                match rest {
                    [] => {}
                    [r] if r == "reverse" => e.reverse = true,
                    [r] if r == "noreverse" => {}
                    _ => return Err(t.error("after the weight only 'reverse' or 'noreverse' may follow")),
                }
            }
            _ => return Err(t.error(format!("{} takes 'weight W [reverse]'", t.keyword()))),
        }
        out.push(e);
    }
    Ok(out)
}

/// `vrrp_sync_group NAME { group { A B } notify_* }`.
pub(crate) fn sync_group(n: &Node, notices: &mut Vec<Notice>) -> R<VrrpSyncGroupEntry> {
    let mut e = VrrpSyncGroupEntry { name: one(n)?.to_string(), ..Default::default() };
    for s in block(n)? {
        match s.keyword() {
            "group" => {
                for m in block(s)? {
                    no_block(m)?;
                    no_args(m)?;
                    e.group.push(m.keyword().to_string());
                }
            }
            "notify_master" => e.notify_master = Some(command(s)?),
            "notify_backup" => e.notify_backup = Some(command(s)?),
            "notify_fault" => e.notify_fault = Some(command(s)?),
            "notify_stop" => e.notify_stop = Some(command(s)?),
            "notify" => e.notify = Some(command(s)?),
            k @ ("smtp_alert" | "global_tracking" | "sync_group_tracking_weight") => notices.push(Notice {
                pos: s.pos.clone(),
                message: format!("vrrp_sync_group {}: {k} is not used by xvs", e.name),
            }),
            k @ ("track_interface" | "track_script" | "track_file" | "track_process" | "track_bfd") => {
                return Err(s.error(format!(
                    "{k} in a sync group is not supported by xvs; track in each vrrp_instance instead"
                )))
            }
            k => return Err(s.error(format!("unknown keyword '{k}' in vrrp_sync_group"))),
        }
    }
    if e.group.is_empty() {
        return Err(n.error(format!("vrrp_sync_group {} has no group {{ }} of instances", e.name)));
    }
    Ok(e)
}

/// `vrrp_script NAME { script ... interval ... }`.
pub(crate) fn script(n: &Node) -> R<VrrpScriptEntry> {
    let mut e = VrrpScriptEntry { name: one(n)?.to_string(), ..Default::default() };
    for s in block(n)? {
        match s.keyword() {
            "script" => e.script = command(s)?,
            "interval" => e.interval = Some(timer(s)?),
            "timeout" => e.timeout = Some(timer(s)?),
            "weight" => {
                let (w, rest) = match s.args() {
                    [w, rest @ ..] => (w, rest),
                    [] => return Err(s.error("weight needs a value")),
                };
                e.weight = Some(
                    w.parse()
                        .ok()
                        .filter(|w: &i32| (-253..=253).contains(w))
                        .ok_or_else(|| s.error(format!("weight '{w}' is not a number from -253 to 253")))?,
                );
                match rest {
                    [] => {}
                    [r] if r == "reverse" => e.reverse = true,
                    _ => return Err(s.error("after the weight only 'reverse' may follow")),
                }
            }
            "rise" => e.rise = Some(number(s, 1, 1_000_000)? as u32),
            "fall" => e.fall = Some(number(s, 1, 1_000_000)? as u32),
            "init_fail" => e.init_fail = flag(s)?,
            "user" => {
                e.user = Some(match s.args() {
                    [u] => u.clone(),
                    [u, g] => format!("{u}:{g}"),
                    _ => return Err(s.error("user takes USER [GROUP]")),
                })
            }
            k => return Err(s.error(format!("unknown keyword '{k}' in vrrp_script"))),
        }
    }
    if e.script.is_empty() {
        return Err(n.error(format!("vrrp_script {} needs a script", e.name)));
    }
    Ok(e)
}

/// A VRRP setting of `global_defs`: a default for every instance, applied by [`finish`].
pub(crate) fn global(g: &Node, k: &str, _notices: &mut [Notice]) -> R<()> {
    match k {
        "vrrp_version" => {
            number(g, 2, 3)?;
        }
        "vrrp_garp_master_delay" | "vrrp_garp_master_refresh" => {
            timer(g)?;
        }
        "vrrp_garp_master_repeat" => {
            number(g, 1, 255)?;
        }
        _ => {
            flag(g)?;
        }
    }
    Ok(())
}

/// Applies `global_defs`' VRRP defaults to the instances that do not set their own (the
/// defaults hold wherever global_defs sits in the file, as in keepalived).
pub(crate) fn finish(nodes: &[Node], config: &mut Config) -> R<()> {
    for g in nodes.iter().filter(|n| n.keyword() == "global_defs").flat_map(|n| n.block.as_deref().unwrap_or(&[])) {
        for e in &mut config.vrrp_instances {
            match g.keyword() {
                "vrrp_version" => e.version = e.version.or(Some(number(g, 2, 3)? as u8)),
                "vrrp_garp_master_delay" => e.garp_master_delay = e.garp_master_delay.or(Some(timer(g)?)),
                "vrrp_garp_master_refresh" => e.garp_master_refresh = e.garp_master_refresh.or(Some(timer(g)?)),
                "vrrp_garp_master_repeat" => {
                    e.garp_master_repeat = e.garp_master_repeat.or(Some(number(g, 1, 255)? as u32))
                }
                "vrrp_skip_check_adv_addr" => e.skip_check_adv_addr |= flag(g)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// `lvs_sync_daemon IF INSTANCE [id N] [maxlen N] [port N] [ttl N] [group ADDR]`.
pub(crate) fn sync_daemon(g: &Node) -> R<SyncDaemonEntry> {
    let args = g.args();
    let (Some(iface), Some(inst)) = (args.first(), args.get(1)) else {
        return Err(
            g.error("lvs_sync_daemon takes INTERFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group ADDR]")
        );
    };
    let mut e = SyncDaemonEntry { interface: iface.clone(), vrrp_instance: inst.clone(), ..Default::default() };
    let mut rest = args[2..].iter();
    while let Some(k) = rest.next() {
        let v = rest.next().ok_or_else(|| g.error(format!("lvs_sync_daemon: {k} needs a value")))?;
        let bad = || g.error(format!("lvs_sync_daemon: {k} '{v}' is out of range"));
        match k.as_str() {
            "id" => e.syncid = v.parse().map_err(|_| bad())?,
            "maxlen" => e.maxlen = v.parse().ok().filter(|m| *m >= 1).ok_or_else(bad)?,
            "port" => e.port = Some(v.parse().ok().filter(|p| *p >= 1).ok_or_else(bad)?),
            "ttl" => e.ttl = Some(v.parse().ok().filter(|t| *t >= 1).ok_or_else(bad)?),
            "group" => e.group = Some(v.clone()),
            other => return Err(g.error(format!("lvs_sync_daemon: unknown option '{other}'"))),
        }
    }
    Ok(e)
}
