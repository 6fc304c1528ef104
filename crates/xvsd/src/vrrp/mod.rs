//! VRRP in xvsd: the [`xvs_vrrp::Router`] state machine wired to sockets, timers, tracked
//! scripts and interfaces, the virtual addresses and the notify scripts.
//!
//! One task owns the router. Packets come from a task per receiving socket, script results
//! from a task per `vrrp_script`, interface states from a poll every 500 ms; timers are the
//! router's own. After each input the router's events are carried out in order: send,
//! add or remove addresses, announce them, notify. What the instances are doing is published
//! in a [`View`] that listings and metrics read without waiting for the task.

pub mod net;
pub mod plan;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use xvs_api::vrrp::VrrpStatus;
use xvs_vrrp::{Event, Router, State, Target};

pub use plan::Plan;

/// The instances' states, as the last change left them.
pub type View = Arc<std::sync::Mutex<Vec<VrrpStatus>>>;

/// How often tracked interfaces are looked at.
const LINK_POLL: Duration = Duration::from_millis(500);
/// How often the virtual addresses are checked against the states: a master puts back one
/// that went missing (removed by hand, refused at takeover), a backup removes one it holds.
const ADDRESS_CHECK: Duration = Duration::from_secs(5);

/// The running VRRP task.
pub struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    /// The plan it runs (a reload with another one needs a restart).
    pub plan: Plan,
}

impl Running {
    /// Stops every instance (masters send priority 0 and release their addresses, stop
    /// scripts run) and waits for it, at most 3 s.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }

    /// Resolves when the task ends: only on stop, or on a panic.
    pub async fn ended(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Opens the sockets and starts the instances of `plan`; errors (an interface without an
/// address, no permission) stop xvsd before anything is claimed.
pub fn spawn(
    mut plan: Plan,
    view: View,
    sync: Option<Arc<crate::sync::Daemons>>,
    control: Option<Arc<tokio::sync::Mutex<crate::control::Control>>>,
) -> anyhow::Result<Running> {
    let addresses = net::Addresses::open()?;
    let mut senders = Vec::new();
    let mut listen: HashSet<(String, bool)> = HashSet::new();
    for i in &mut plan.instances {
        let iface = i.spec.interface.clone();
        net::ifindex(&iface).with_context(|| format!("vrrp_instance {}", i.spec.name))?;
        let v4 = i.spec.config.addrs.first().is_none_or(IpAddr::is_ipv4);
        let own = match i.src {
            Some(a) => a,
            None => net::primary(&iface, v4, &i.spec.config.addrs).ok_or_else(|| {
                anyhow::anyhow!(
                    "vrrp_instance {}: {iface} has no {} address to advertise from",
                    i.spec.name,
                    if v4 { "IPv4" } else { "IPv6 link-local" }
                )
            })?,
        };
        i.spec.config.own = own;
        senders.push(net::Sender::open(&iface, own).with_context(|| format!("vrrp_instance {}", i.spec.name))?);
        listen.insert((iface, v4));
    }
    let router = Router::new(
        plan.instances.iter().map(|i| i.spec.clone()).collect(),
        plan.groups.iter().map(|(n, m, _)| (n.clone(), m.clone())).collect(),
    )
    .map_err(anyhow::Error::msg)?;
    let (pkt_tx, pkt_rx) = mpsc::channel(1024);
    for (iface, v4) in listen {
        let r = net::Receiver::open(&iface, v4)?;
        let tx = pkt_tx.clone();
        tokio::spawn(async move {
            loop {
                match r.recv().await {
                    Ok(p) => {
                        if tx.send((iface.clone(), p)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(interface = %iface, error = %e, "VRRP receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    let (script_tx, script_rx) = mpsc::channel(64);
    let mut scripts = Vec::new();
    for s in &plan.scripts {
        scripts.push(tokio::spawn(track_script(s.clone(), script_tx.clone())));
    }
    let sync_tx = match (sync, &plan.sync) {
        (Some(d), Some((_, o))) => {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(sync_worker(d, o.clone(), rx));
            Some(tx)
        }
        _ => None,
    };
    let (stop, stop_rx) = oneshot::channel();
    let p = plan.clone();
    let task = tokio::spawn(async move {
        let mut r = Runner {
            plan: p,
            router,
            senders,
            addresses,
            view,
            since: HashMap::new(),
            groups: HashMap::new(),
            sync_tx,
            control,
        };
        r.run(pkt_rx, script_rx, stop_rx).await;
        for s in scripts {
            s.abort();
        }
    });
    Ok(Running { stop, task, plan })
}

/// keepalived's `lvs_sync_daemon`: the sync master runs while the instance is MASTER, the
/// sync backup otherwise (one stops before the other starts), changes in the order given;
/// at the end of the VRRP task both stop.
async fn sync_worker(d: Arc<crate::sync::Daemons>, o: xvs_api::SyncOptions, mut rx: mpsc::UnboundedReceiver<State>) {
    use crate::sync::Role;
    while let Some(state) = rx.recv().await {
        let (stop, start) = match state {
            State::Master => (Some(Role::Backup), Some(Role::Master)),
            State::Stop => (None, None),
            _ => (Some(Role::Master), Some(Role::Backup)),
        };
        let stops: Vec<Role> = match stop {
            Some(r) => vec![r],
            None => vec![Role::Master, Role::Backup],
        };
        for r in stops {
            if d.is_running(r) {
                let _ = d.stop(r).await;
            }
        }
        if let Some(r) = start.filter(|r| !d.is_running(*r)) {
            if let xvs_api::Response::Error(e) = d.start(r, o.clone()) {
                tracing::error!(role = r.name(), "synchronisation daemon not started: {}", e.message);
            }
        }
    }
}

/// Runs a `vrrp_script` for ever, sending its verdict when it changes (and once at start).
async fn track_script(s: plan::Script, tx: mpsc::Sender<(String, bool)>) {
    let mut state = xvs_vrrp::track::ScriptState::new(s.rise, s.fall, s.init_fail);
    let mut first = true;
    let mut every = tokio::time::interval(s.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let ok = match xvs_health::script::run(&s.command, &s.run_as, s.timeout).await {
            Ok(r) => r.code == Some(0),
            Err(e) => {
                tracing::warn!(script = %s.name, error = %e, "vrrp_script did not run");
                false
            }
        };
        // The first verdict comes from a real run (keepalived holds the instance until then).
        if state.handle_result(ok) || first {
            if !first {
                tracing::info!(script = %s.name, ok = state.good(), "vrrp_script changed");
            }
            first = false;
            if tx.send((s.name.clone(), state.good())).await.is_err() {
                return;
            }
        }
    }
}

struct Runner {
    plan: Plan,
    router: Router,
    /// One per instance, in order.
    senders: Vec<net::Sender>,
    addresses: net::Addresses,
    view: View,
    /// When each instance last changed state.
    since: HashMap<usize, xvs_core::Instant>,
    /// Each sync group's last notified state.
    groups: HashMap<String, State>,
    /// Role changes for the synchronisation daemons' worker ([`sync_worker`]).
    sync_tx: Option<mpsc::UnboundedSender<State>>,
    /// The table, for the services that follow an instance (`plan.follow`).
    control: Option<Arc<tokio::sync::Mutex<crate::control::Control>>>,
}

impl Runner {
    async fn run(
        &mut self,
        mut packets: mpsc::Receiver<(String, net::Received)>,
        mut scripts: mpsc::Receiver<(String, bool)>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let now = crate::now();
        // Addresses left by an earlier run that died (keepalived removes residual VIPs too):
        // only the master may hold them, and nobody is master yet.
        for i in &self.plan.instances {
            for v in i.vips.iter().chain(&i.excluded) {
                if self.addresses.present(v).await {
                    tracing::info!(vip = %v, "removing a virtual address left from an earlier run");
                    let _ = self.addresses.remove(v).await;
                }
            }
        }
        self.poll_links(now);
        // Synchronisation starts as a backup, and following services on standby: nobody is
        // master yet.
        self.follow_sync(State::Backup);
        for (name, _) in self.plan.follow.clone() {
            self.follow_services(&name, State::Backup).await;
        }
        // The first verdict of each script before starting, so a failing one starts in FAULT
        // (a script slower than its timeout, 10 s at most, is taken as it is assumed).
        let longest = self.plan.scripts.iter().map(|s| s.timeout).max().unwrap_or_default();
        let deadline = tokio::time::Instant::now() + longest.min(Duration::from_secs(10)) + Duration::from_millis(100);
        let mut pending: HashSet<&str> = self.plan.scripts.iter().map(|s| s.name.as_str()).collect();
        while !pending.is_empty() {
            match tokio::time::timeout_at(deadline, scripts.recv()).await {
                Ok(Some((name, ok))) => {
                    pending.remove(name.as_str());
                    self.router.set_tracked(now, Target::Script(name), ok);
                }
                _ => break,
            }
        }
        self.router.start(crate::now());
        self.carry_out().await;
        let mut links = tokio::time::interval(LINK_POLL);
        let mut addresses = tokio::time::interval(ADDRESS_CHECK);
        addresses.tick().await;
        loop {
            let wait = self
                .router
                .poll_timeout()
                .map(|t| t.saturating_duration_since(crate::now()))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = &mut stop => {
                    self.router.stop(crate::now());
                    self.carry_out().await;
                    self.follow_sync(State::Stop);
                    break;
                }
                Some((iface, p)) = packets.recv() => {
                    if let Err(e) = self.router.handle_packet(crate::now(), &iface, p.src, p.dst, p.ttl, &p.payload) {
                        match e {
                            xvs_vrrp::Dropped::Own | xvs_vrrp::Dropped::UnknownVrid(_) => {
                                tracing::trace!(interface = %iface, src = %p.src, "VRRP packet ignored: {e}")
                            }
                            _ => tracing::warn!(interface = %iface, src = %p.src, "VRRP advertisement refused: {e}"),
                        }
                    }
                }
                Some((name, ok)) = scripts.recv() => self.router.set_tracked(crate::now(), Target::Script(name), ok),
                _ = links.tick() => self.poll_links(crate::now()),
                _ = addresses.tick() => self.check_addresses().await,
                _ = tokio::time::sleep(wait) => self.router.handle_timeout(crate::now()),
            }
            self.carry_out().await;
        }
        self.publish(crate::now());
    }

    fn poll_links(&mut self, now: xvs_core::Instant) {
        let mut seen = HashSet::new();
        let targets: Vec<String> = self
            .plan
            .instances
            .iter()
            .flat_map(|i| i.spec.tracked.iter())
            .filter_map(|t| match &t.what {
                Target::Interface(n) => Some(n.clone()),
                Target::Script(_) => None,
            })
            .filter(|n| seen.insert(n.clone()))
            .collect();
        for n in targets {
            self.router.set_tracked(now, Target::Interface(n.clone()), net::link_up(&n));
        }
    }

    /// Puts the addresses back in line with the states (see [`ADDRESS_CHECK`]).
    async fn check_addresses(&self) {
        let states: Vec<State> = self.router.instances().map(|(_, i)| i.state()).collect();
        for (inst, state) in self.plan.instances.iter().zip(states) {
            for v in inst.vips.iter().chain(&inst.excluded) {
                let present = self.addresses.present(v).await;
                if state == State::Master && !present {
                    tracing::warn!(instance = %inst.spec.name, vip = %v, "virtual address missing on the master; adding it back");
                    match self.addresses.add(v).await {
                        Ok(()) => {
                            if let Err(e) = net::announce(&v.dev, &[v.addr], inst.spec.config.garp_repeat) {
                                tracing::warn!(instance = %inst.spec.name, "{e:#}");
                            }
                        }
                        Err(e) => tracing::error!(instance = %inst.spec.name, "{e:#}"),
                    }
                } else if state != State::Master && present {
                    tracing::warn!(instance = %inst.spec.name, vip = %v, "virtual address held while not master; removing it");
                    if let Err(e) = self.addresses.remove(v).await {
                        tracing::error!(instance = %inst.spec.name, "{e:#}");
                    }
                }
            }
        }
    }

    /// Carries out the router's events in order.
    async fn carry_out(&mut self) {
        let mut changed = false;
        // Stop scripts run side by side, after every instance has let go of its addresses.
        let mut waits = Vec::new();
        while let Some((i, e)) = self.router.poll_event() {
            let inst = &self.plan.instances[i];
            match e {
                Event::Send(adv) => {
                    let index = net::ifindex(&inst.spec.interface).unwrap_or(0);
                    let dsts: Vec<IpAddr> = if inst.spec.unicast_peers.is_empty() {
                        vec![if inst.spec.config.own.is_ipv4() {
                            IpAddr::V4(xvs_vrrp::wire::GROUP4)
                        } else {
                            IpAddr::V6(xvs_vrrp::wire::GROUP6)
                        }]
                    } else {
                        inst.spec.unicast_peers.clone()
                    };
                    for d in dsts {
                        if let Err(e) = self.senders[i].send(&adv, d, index) {
                            tracing::warn!(instance = %inst.spec.name, to = %d, error = %e, "advertisement not sent");
                        }
                    }
                }
                Event::AddAddresses => {
                    // Services in service before the VIP is answered for: a SYN that reaches
                    // this director once it holds the VIP must be scheduled, not reset.
                    let name = inst.spec.name.clone();
                    self.follow_services(&name, State::Master).await;
                    let inst = &self.plan.instances[i];
                    for v in inst.vips.iter().chain(&inst.excluded) {
                        if let Err(e) = self.addresses.add(v).await {
                            tracing::error!(instance = %inst.spec.name, "{e:#}");
                        }
                    }
                }
                Event::RemoveAddresses => {
                    for v in inst.vips.iter().chain(&inst.excluded) {
                        if let Err(e) = self.addresses.remove(v).await {
                            tracing::error!(instance = %inst.spec.name, "{e:#}");
                        }
                    }
                    let name = inst.spec.name.clone();
                    self.follow_services(&name, State::Backup).await;
                }
                Event::Announce(n) => {
                    let mut by_dev: HashMap<&str, Vec<IpAddr>> = HashMap::new();
                    for v in inst.vips.iter().chain(&inst.excluded) {
                        by_dev.entry(v.dev.as_str()).or_default().push(v.addr);
                    }
                    for (dev, addrs) in by_dev {
                        if let Err(e) = net::announce(dev, &addrs, n) {
                            tracing::warn!(instance = %inst.spec.name, interface = dev, "{e:#}");
                        }
                    }
                }
                Event::Changed { from, to } => {
                    changed = true;
                    let now = crate::now();
                    self.since.insert(i, now);
                    let prio = self.router.instances().nth(i).map(|(_, x)| x.priority()).unwrap_or(0);
                    tracing::info!(instance = %inst.spec.name, from = from.name(), to = to.name(), priority = prio, "VRRP state");
                    let mut cmds = inst.notify.commands("INSTANCE", &inst.spec.name, to, prio);
                    if let Some(g) = self.router.group(i).map(str::to_string) {
                        if self.groups.get(&g) != Some(&to) {
                            self.groups.insert(g.clone(), to);
                            if let Some((_, _, n)) = self.plan.groups.iter().find(|(name, _, _)| *name == g) {
                                cmds.extend(n.commands("GROUP", &g, to, 0));
                            }
                        }
                    }
                    waits.extend(self.notify(cmds, to == State::Stop));
                    if self.plan.sync.as_ref().is_some_and(|(name, _)| *name == inst.spec.name) && to != State::Stop {
                        self.follow_sync(to);
                    }
                }
            }
        }
        for w in waits {
            let _ = w.await;
        }
        if changed || self.view.lock().map(|v| v.is_empty()).unwrap_or(true) {
            self.publish(crate::now());
        } else {
            self.publish_counters();
        }
    }

    /// keepalived's `lvs_sync_daemon`: the sync master runs while the instance is MASTER, the
    /// sync backup otherwise (one stops before the other starts).
    /// Hands the role change to the sync worker: adverts must not wait for a daemon to stop,
    /// and changes are carried out in order.
    fn follow_sync(&self, state: State) {
        if let Some(tx) = &self.sync_tx {
            let _ = tx.send(state);
        }
    }

    /// Services that follow instance `name` take new connections only while it is MASTER.
    /// When xvsd stops they are left as they are (forwarding continues with the pinned tables;
    /// the next xvsd starts them on standby until it is master again).
    async fn follow_services(&self, name: &str, state: State) {
        let (Some(control), Some((_, keys))) = (&self.control, self.plan.follow.iter().find(|(n, _)| n == name)) else {
            return;
        };
        if state == State::Stop {
            return;
        }
        let standby = state != State::Master;
        if let Err(e) = control.lock().await.set_standby(keys, standby) {
            tracing::error!(
                instance = name,
                "services not switched to {}: {e}",
                if standby { "standby" } else { "service" }
            );
        } else {
            tracing::info!(instance = name, services = keys.len(), standby, "services follow the VRRP state");
        }
    }

    /// Runs notify commands without waiting (as keepalived); at stop (1 s at most each) it
    /// returns them, for the caller to wait for together.
    fn notify(&self, cmds: Vec<String>, wait: bool) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(policy) = &self.plan.policy else { return Vec::new() };
        let mut tasks = Vec::new();
        for c in cmds {
            let run_as = policy.run_as.clone();
            let timeout = if wait { Duration::from_secs(1) } else { Duration::from_secs(60) };
            tasks.push(tokio::spawn(async move {
                match xvs_health::script::run(&c, &run_as, timeout).await {
                    Ok(r) if r.code == Some(0) => tracing::debug!(command = %c, "notify script ran"),
                    Ok(r) => tracing::warn!(command = %c, code = ?r.code, output = %r.output, "notify script failed"),
                    Err(e) => tracing::warn!(command = %c, error = %e, "notify script did not run"),
                }
            }));
        }
        if wait {
            tasks
        } else {
            Vec::new()
        }
    }

    fn status(&self, now: xvs_core::Instant) -> Vec<VrrpStatus> {
        self.router
            .instances()
            .enumerate()
            .map(|(k, (spec, i))| {
                let st = i.stats();
                let master = i.master();
                VrrpStatus {
                    name: spec.name.clone(),
                    interface: spec.interface.clone(),
                    vrid: spec.config.vrid,
                    version: spec.config.version.number(),
                    state: i.state().name().into(),
                    priority: i.priority(),
                    base_priority: spec.config.priority,
                    master: master.map(|(a, _)| a.to_string()),
                    master_priority: master.map(|(_, p)| p),
                    group: self.router.group(k).map(str::to_string),
                    vips: self.plan.instances[k].vips.iter().map(|v| format!("{}/{}", v.addr, v.prefix)).collect(),
                    since_s: self.since.get(&k).map(|t| now.saturating_duration_since(*t).as_secs()).unwrap_or(0),
                    adverts_sent: st.sent,
                    adverts_received: st.received,
                    adverts_invalid: st.invalid,
                    transitions: st.transitions,
                    became_master: st.became_master,
                }
            })
            .collect()
    }

    fn publish(&self, now: xvs_core::Instant) {
        let s = self.status(now);
        if let Ok(mut v) = self.view.lock() {
            *v = s;
        }
    }

    /// Counters change with every packet; states only on changes. Cheap either way.
    fn publish_counters(&self) {
        self.publish(crate::now());
    }
}
