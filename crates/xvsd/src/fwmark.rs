//! Firewall-mark services: how marked packets reach the dataplane.
//!
//! XDP runs before netfilter, so it cannot see the mark an operator's mangle rule sets. While
//! firewall-mark services exist, xvsd keeps a veth pair, [`DEV`] and [`PEER`]; three policy rules
//! per mark (`fwmark M ipproto tcp|udp|sctp lookup` [`TABLE`], preference 0) route marked packets
//! into [`DEV`],
//! whose egress program writes the mark into the frame, and the program on [`PEER`] balances
//! them. Those rules must come before the `local` rule, or a marked packet to a VIP this host
//! holds would be delivered locally: the `local` rule is moved from preference 0 to 1 while any
//! firewall-mark service exists, and put back when the last one goes (or at `xvsd --purge`).
//! The copy carries `proto kernel`, as the kernel's own rules do, so that a network manager that
//! removes foreign rules (systemd-networkd) leaves it; xvsd re-checks its rules every
//! [`RECHECK`] and puts back what someone else removed.
//! Only a connection's first packet takes this path; the next ones meet the connection in XDP
//! on the interface they arrive on. docs/dataplane.md has the costs.
//!
//! The decisions (which rules to add and remove) are [`plan`], pure; [`Plumbing`] carries them
//! out with rtnetlink.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use futures::TryStreamExt;
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::IpVersion;
use tokio::sync::Mutex;
use xvs_core::{Family, ServiceKey, Services};

use crate::control::Control;

/// The device marked packets are routed to.
pub const DEV: &str = "xvs-fwm";
/// Its veth peer, where the dataplane receives them.
pub const PEER: &str = "xvs-fwm-p";
/// The routing table the per-mark rules look up ("xv").
pub const TABLE: u32 = 0x7876;
/// How often the rules are checked while firewall-mark services exist.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(10);
/// The kernel's `local` table.
const LOCAL: u32 = 255;
/// The protocols a firewall-mark service balances (TCP, UDP, SCTP).
const PROTOCOLS: [u8; 3] = [6, 17, 132];

/// The firewall marks of `services`, by family (`true`: IPv6).
pub fn wanted(services: &Services) -> BTreeSet<(bool, u32)> {
    services
        .iter()
        .filter_map(|(_, s)| match s.key() {
            ServiceKey::Fwmark { af, mark } => Some((*af == Family::V6, *mark)),
            _ => None,
        })
        .collect()
}

/// A policy rule of one family, as much of it as the plan needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Its preference.
    pub pref: u32,
    /// The table it looks up.
    pub table: u32,
    /// Its mark selector.
    pub fwmark: Option<u32>,
    /// Its protocol selector (`ipproto`).
    pub ipproto: Option<u8>,
    /// True when it selects by nothing at all (the kernel's own `lookup local`).
    pub plain: bool,
}

/// One change to a family's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Add `lookup local` at this preference.
    AddLocal(u32),
    /// Remove the plain `lookup local` at this preference.
    DelLocal(u32),
    /// Add `fwmark M ipproto P lookup TABLE` at preference 0.
    AddMark(u32, u8),
    /// Remove xvs's rule for mark M (and protocol P, or none).
    DelMark(u32, Option<u8>),
}

/// The changes that make one family's rules carry exactly `marks`, ahead of `local`. The local
/// rule is never absent in between: its copy at preference 1 is added before the one at 0 goes
/// (and the other way round when it is put back).
pub fn plan(rules: &[Rule], marks: &BTreeSet<u32>) -> Vec<Op> {
    let local_at = |p: u32| rules.iter().any(|r| r.plain && r.table == LOCAL && r.pref == p);
    // TCP, UDP and SCTP only: whatever else the operator marks (a ping to a VIP the director holds)
    // still reaches the host, as with IPVS.
    let wanted: BTreeSet<(u32, Option<u8>)> =
        marks.iter().flat_map(|m| PROTOCOLS.iter().map(move |p| (*m, Some(*p)))).collect();
    let ours: BTreeSet<(u32, Option<u8>)> =
        rules.iter().filter(|r| r.table == TABLE).filter_map(|r| r.fwmark.map(|m| (m, r.ipproto))).collect();
    let mut ops = Vec::new();
    if !marks.is_empty() && !rules.iter().any(|r| r.plain && r.table == LOCAL) {
        // No `lookup local` anywhere while xvs holds its place (its copy was removed): the host
        // would accept nothing for its own addresses. Put the copy back.
        ops.push(Op::AddLocal(1));
    }
    if !marks.is_empty() && local_at(0) {
        if !local_at(1) {
            ops.push(Op::AddLocal(1));
        }
        ops.push(Op::DelLocal(0));
    }
    ops.extend(ours.difference(&wanted).map(|(m, p)| Op::DelMark(*m, *p)));
    ops.extend(wanted.difference(&ours).map(|(m, p)| Op::AddMark(*m, p.expect("wanted rules name a protocol"))));
    if marks.is_empty() && local_at(1) {
        if !local_at(0) {
            ops.push(Op::AddLocal(0));
        }
        ops.push(Op::DelLocal(1));
    }
    ops
}

fn rule_of(m: &RuleMessage) -> Rule {
    let mut r = Rule { pref: 0, table: u32::from(m.header.table), fwmark: None, ipproto: None, plain: true };
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => r.pref = *p,
            RuleAttribute::Table(t) => r.table = *t,
            RuleAttribute::FwMark(f) => {
                r.fwmark = Some(*f);
                r.plain = false;
            }
            RuleAttribute::IpProtocol(p) => {
                r.ipproto = u8::try_from(i32::from(*p)).ok();
                r.plain = false;
            }
            RuleAttribute::Source(_)
            | RuleAttribute::Destination(_)
            | RuleAttribute::Iifname(_)
            | RuleAttribute::Oifname(_)
            | RuleAttribute::Goto(_)
            | RuleAttribute::TunId(_)
            | RuleAttribute::L3MDev(_)
            | RuleAttribute::UidRange(_)
            | RuleAttribute::SourcePortRange(_)
            | RuleAttribute::DestinationPortRange(_) => r.plain = false,
            // Protocol, masks, suppressors and attributes newer than this crate select nothing.
            _ => {}
        }
    }
    if m.header.action != RuleAction::ToTable || m.header.src_len != 0 || m.header.dst_len != 0 || m.header.tos != 0 {
        r.plain = false;
    }
    r
}

/// Keeps the device, its programs, the routes and the rules in line with the services.
pub struct Plumbing {
    handle: rtnetlink::Handle,
    links: PathBuf,
    /// The marks last made reachable.
    done: Mutex<Option<BTreeSet<(bool, u32)>>>,
}

impl Plumbing {
    /// Opens rtnetlink; `links` is the directory the dataplane's links are pinned in.
    pub fn open(links: PathBuf) -> anyhow::Result<Arc<Plumbing>> {
        let (conn, handle, _) = rtnetlink::new_connection().context("open rtnetlink")?;
        tokio::spawn(conn);
        Ok(Arc::new(Plumbing { handle, links, done: Mutex::new(None) }))
    }

    /// Brings the plumbing in line with `control`'s services; cheap when nothing changed.
    pub async fn sync(&self, control: &Arc<Mutex<Control>>) -> anyhow::Result<()> {
        let mut done = self.done.lock().await;
        let marks = wanted(&control.lock().await.lb.services);
        if done.as_ref() == Some(&marks) {
            return Ok(());
        }
        let v6_marks = marks.iter().any(|(v6, _)| *v6);
        if !marks.is_empty() {
            self.ensure_device(v6_marks).await?;
            let mut c = control.lock().await;
            if let Some(dp) = c.dp.as_mut() {
                dp.director.attach_fwmark(DEV, PEER, &self.links).context("attach the firewall-mark programs")?;
            }
        }
        for v6 in [false, true] {
            let family: BTreeSet<u32> = marks.iter().filter(|(f, _)| *f == v6).map(|(_, m)| *m).collect();
            match self.rules(v6, &family).await {
                // A host without IPv6 (ipv6.disable=1) has no IPv6 rules to keep.
                Err(e) if v6 && !v6_marks => tracing::debug!("IPv6 policy rules not read: {e:#}"),
                r => drop(r?),
            }
        }
        if marks.is_empty() {
            self.remove_device().await?;
        }
        // The kernel forwards each connection's first packet into the device: without
        // forwarding it drops them, and the service would never see a client.
        for (v6, path) in [(false, "/proc/sys/net/ipv4/ip_forward"), (true, "/proc/sys/net/ipv6/conf/all/forwarding")] {
            if marks.iter().any(|(f, _)| *f == v6) && std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "0") {
                tracing::warn!(
                    "{} forwarding is off ({path} = 0): the first packet of each connection to a firewall-mark \
                     service is forwarded by the kernel, so none will be balanced",
                    if v6 { "IPv6" } else { "IPv4" }
                );
            }
        }
        tracing::info!(marks = ?marks, "firewall marks routed to the dataplane");
        *done = Some(marks);
        Ok(())
    }

    /// Puts back rules someone else removed or moved (a network manager's clean-up, an
    /// operator's `ip rule del`) while firewall-mark services exist; nothing to do otherwise.
    pub async fn recheck(&self) -> anyhow::Result<()> {
        let done = self.done.lock().await;
        let Some(marks) = done.as_ref().filter(|m| !m.is_empty()) else { return Ok(()) };
        let v6_marks = marks.iter().any(|(v6, _)| *v6);
        for v6 in [false, true] {
            let family: BTreeSet<u32> = marks.iter().filter(|(f, _)| *f == v6).map(|(_, m)| *m).collect();
            match self.rules(v6, &family).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    changes = n,
                    family = if v6 { "IPv6" } else { "IPv4" },
                    "firewall-mark policy rules had been changed by someone else; put back"
                ),
                Err(e) if v6 && !v6_marks => tracing::debug!("IPv6 policy rules not read: {e:#}"),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The interface's index in this network namespace (asked without rtnetlink, whose link
    /// parser warns about every attribute newer than itself).
    fn index(name: &str) -> Option<u32> {
        nix::net::if_::if_nametoindex(name).ok()
    }

    async fn ensure_device(&self, v6_marks: bool) -> anyhow::Result<()> {
        let dev = match Self::index(DEV) {
            Some(i) => i,
            None => {
                self.handle
                    .link()
                    .add()
                    .veth(DEV.into(), PEER.into())
                    .execute()
                    .await
                    .with_context(|| format!("create the veth pair {DEV}/{PEER}"))?;
                Self::index(DEV).with_context(|| format!("{DEV} vanished"))?
            }
        };
        let peer = Self::index(PEER).with_context(|| format!("{PEER} is missing (delete {DEV} and retry)"))?;
        for name in [DEV, PEER] {
            // No addresses and no neighbour discovery: nothing but marked packets goes in, and
            // the peer hands what it balances to the FIB, which needs forwarding on it.
            for (path, value) in [
                (format!("/proc/sys/net/ipv6/conf/{name}/addr_gen_mode"), "1"),
                (format!("/proc/sys/net/ipv6/conf/{name}/accept_ra"), "0"),
                (format!("/proc/sys/net/ipv4/conf/{name}/forwarding"), "1"),
                (format!("/proc/sys/net/ipv6/conf/{name}/forwarding"), "1"),
            ] {
                match std::fs::write(&path, value) {
                    Ok(()) => {}
                    // IPv6 may be off on this host; it matters only for IPv6 marks.
                    Err(_) if path.contains("/ipv6/") && !v6_marks => {}
                    Err(e) => return Err(e).with_context(|| format!("write {path}")),
                }
            }
        }
        // The peer takes whatever the device sends: one MAC for both, no ARP, room for any packet.
        let mac = nix::ifaddrs::getifaddrs().ok().and_then(|mut addrs| {
            addrs.find_map(|a| {
                let link = a.address.as_ref()?.as_link_addr()?;
                (a.interface_name == DEV).then(|| link.addr()).flatten()
            })
        });
        for index in [dev, peer] {
            let mut set = self.handle.link().set(index).arp(false).mtu(65535).up();
            if let (Some(m), true) = (mac, index == peer) {
                set = set.address(m.to_vec());
            }
            set.execute().await.context("set up the firewall-mark device")?;
        }
        for v6 in [false, true] {
            // (replace() after v4()/v6(), which make a new request without it.)
            let add = self.handle.route().add().table_id(TABLE).output_interface(dev);
            let r = if v6 {
                add.v6().destination_prefix(std::net::Ipv6Addr::UNSPECIFIED, 0).replace().execute().await
            } else {
                add.v4().destination_prefix(std::net::Ipv4Addr::UNSPECIFIED, 0).replace().execute().await
            };
            if let Err(e) = r {
                if v6 && !v6_marks {
                    continue;
                }
                return Err(e).with_context(|| format!("route table {TABLE} into {DEV}"));
            }
        }
        Ok(())
    }

    async fn remove_device(&self) -> anyhow::Result<()> {
        if let Some(i) = Self::index(DEV) {
            self.handle.link().del(i).execute().await.with_context(|| format!("delete {DEV}"))?;
        }
        for f in [format!("{DEV}-tc"), format!("{PEER}-xdp")] {
            let _ = std::fs::remove_file(self.links.join(f));
        }
        Ok(())
    }

    /// Applies [`plan`] for one family; returns how many changes it made.
    async fn rules(&self, v6: bool, marks: &BTreeSet<u32>) -> anyhow::Result<usize> {
        let version = if v6 { IpVersion::V6 } else { IpVersion::V4 };
        let listed: Vec<RuleMessage> =
            self.handle.rule().get(version.clone()).execute().try_collect().await.context("list the policy rules")?;
        let family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        let listed: Vec<RuleMessage> = listed.into_iter().filter(|m| m.header.family == family).collect();
        let rules: Vec<Rule> = listed.iter().map(rule_of).collect();
        let ops = plan(&rules, marks);
        let n = ops.len();
        for op in ops {
            let add = |table: u32, pref: u32, mark: Option<(u32, u8)>| {
                let mut r = self.handle.rule().add().table_id(table).priority(pref).action(RuleAction::ToTable);
                if let Some((m, p)) = mark {
                    r = r.fw_mark(m);
                    r.message_mut()
                        .attributes
                        .push(RuleAttribute::IpProtocol(netlink_packet_route::IpProtocol::from(i32::from(p))));
                }
                r
            };
            let del = |pick: &dyn Fn(&Rule) -> bool| {
                listed.iter().zip(&rules).filter(|(_, r)| pick(r)).map(|(m, _)| m.clone()).collect::<Vec<_>>()
            };
            let what = format!("{op:?}");
            let result = match op {
                Op::AddLocal(p) => {
                    // As the kernel tags its own: network managers leave `proto kernel` rules.
                    let mut r = add(LOCAL, p, None);
                    r.message_mut()
                        .attributes
                        .push(RuleAttribute::Protocol(netlink_packet_route::route::RouteProtocol::Kernel));
                    exec_add(r, v6).await
                }
                Op::AddMark(m, p) => exec_add(add(TABLE, 0, Some((m, p))), v6).await,
                Op::DelLocal(p) => {
                    let mut r = Ok(());
                    for m in del(&|r: &Rule| r.plain && r.table == LOCAL && r.pref == p) {
                        r = r.and(self.handle.rule().del(m).execute().await);
                    }
                    r
                }
                Op::DelMark(mark, proto) => {
                    let mut r = Ok(());
                    for m in del(&|r: &Rule| r.table == TABLE && r.fwmark == Some(mark) && r.ipproto == proto) {
                        r = r.and(self.handle.rule().del(m).execute().await);
                    }
                    r
                }
            };
            result.with_context(|| format!("policy rule change {what} ({})", if v6 { "IPv6" } else { "IPv4" }))?;
        }
        Ok(n)
    }

    /// Takes everything away: rules, the moved `local` rule back, the device (`xvsd --purge`).
    pub async fn remove_all(&self) -> anyhow::Result<()> {
        self.rules(false, &BTreeSet::new()).await?;
        if let Err(e) = self.rules(true, &BTreeSet::new()).await {
            tracing::debug!("IPv6 policy rules not read: {e:#}");
        }
        self.remove_device().await
    }
}

async fn exec_add(r: rtnetlink::RuleAddRequest, v6: bool) -> Result<(), rtnetlink::Error> {
    let r = if v6 { r.v6().execute().await } else { r.v4().execute().await };
    match r {
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_defaults() -> Vec<Rule> {
        let plain = |pref, table| Rule { pref, table, fwmark: None, ipproto: None, plain: true };
        vec![plain(0, LOCAL), plain(32766, 254), plain(32767, 253)]
    }

    fn ours(mark: u32, proto: u8) -> Rule {
        Rule { pref: 0, table: TABLE, fwmark: Some(mark), ipproto: Some(proto), plain: false }
    }

    fn marks(m: &[u32]) -> BTreeSet<u32> {
        m.iter().copied().collect()
    }

    #[test]
    fn the_first_mark_moves_local_after_it_without_a_gap() {
        let ops = plan(&kernel_defaults(), &marks(&[5, 7]));
        assert_eq!(
            ops,
            vec![
                Op::AddLocal(1),
                Op::DelLocal(0),
                Op::AddMark(5, 6),
                Op::AddMark(5, 17),
                Op::AddMark(5, 132),
                Op::AddMark(7, 6),
                Op::AddMark(7, 17),
                Op::AddMark(7, 132)
            ]
        );
    }

    #[test]
    fn later_changes_touch_only_the_marks() {
        let mut rules = kernel_defaults();
        rules[0].pref = 1;
        rules.extend([ours(5, 6), ours(5, 17), ours(5, 132), ours(7, 6), ours(7, 17), ours(7, 132)]);
        assert_eq!(plan(&rules, &marks(&[5, 7])), vec![]);
        assert_eq!(
            plan(&rules, &marks(&[7, 9])),
            vec![
                Op::DelMark(5, Some(6)),
                Op::DelMark(5, Some(17)),
                Op::DelMark(5, Some(132)),
                Op::AddMark(9, 6),
                Op::AddMark(9, 17),
                Op::AddMark(9, 132)
            ]
        );
        // The last one gone: local goes back to 0, its copy at 1 removed after.
        let ops = plan(&rules, &marks(&[]));
        assert_eq!(&ops[6..], &[Op::AddLocal(0), Op::DelLocal(1)]);
        // A rule without a protocol (an earlier xvsd's) is replaced.
        let mut old = kernel_defaults();
        old[0].pref = 1;
        old.push(Rule { pref: 0, table: TABLE, fwmark: Some(5), ipproto: None, plain: false });
        assert_eq!(
            plan(&old, &marks(&[5])),
            vec![Op::DelMark(5, None), Op::AddMark(5, 6), Op::AddMark(5, 17), Op::AddMark(5, 132)]
        );
    }

    #[test]
    fn an_operator_who_moved_local_elsewhere_is_left_alone() {
        let mut rules = kernel_defaults();
        rules[0].pref = 1000;
        assert_eq!(plan(&rules, &marks(&[5])), vec![Op::AddMark(5, 6), Op::AddMark(5, 17), Op::AddMark(5, 132)]);
        assert_eq!(plan(&rules, &marks(&[])), vec![]);
        // A half-done move (a crash between the two steps) is finished.
        let mut both = kernel_defaults();
        both.push(Rule { pref: 1, table: LOCAL, fwmark: None, ipproto: None, plain: true });
        assert_eq!(
            plan(&both, &marks(&[5])),
            vec![Op::DelLocal(0), Op::AddMark(5, 6), Op::AddMark(5, 17), Op::AddMark(5, 132)]
        );
        assert_eq!(plan(&both, &marks(&[])), vec![Op::DelLocal(1)]);
    }

    #[test]
    fn a_removed_copy_of_local_is_put_back_while_marks_exist() {
        let mut rules = kernel_defaults();
        rules.remove(0); // local gone from everywhere (a network manager's clean-up)
        rules.extend([ours(5, 6), ours(5, 17), ours(5, 132)]);
        assert_eq!(plan(&rules, &marks(&[5])), vec![Op::AddLocal(1)]);
        // Without marks it is not xvs's to restore.
        let mut none = kernel_defaults();
        none.remove(0);
        assert_eq!(plan(&none, &marks(&[])), vec![]);
    }

    #[test]
    fn a_rule_with_selectors_is_not_the_local_rule() {
        let mut rules = kernel_defaults();
        rules.push(Rule { pref: 1, table: LOCAL, fwmark: Some(3), ipproto: None, plain: false });
        let ops = plan(&rules, &marks(&[5]));
        assert_eq!(&ops[..2], &[Op::AddLocal(1), Op::DelLocal(0)]);
    }
}
