//! `xvsd`: the xvs daemon.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::sync::Mutex;
use xvs_dataplane::{Attached, Director, LoadOptions};
use xvsd::control::Control;
use xvsd::options::PreallocConns;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = run(xvsd::options::Options::parse()).await {
        tracing::error!("{e:#}");
        eprintln!("xvsd: {e:#}");
        std::process::exit(1);
    }
}

/// Takes the lock that keeps one xvsd per pin directory: two daemons publishing into the same
/// tables with their own allocators would corrupt them.
fn lock_pins(pins: &std::path::Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let dir = std::path::Path::new("/run/xvs/locks");
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let name: String = pins.to_string_lossy().chars().map(|c| if c == '/' { '_' } else { c }).collect();
    let path = dir.join(format!("{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    let mut lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        let holder = holder.trim();
        let who = if holder.is_empty() { String::new() } else { format!(" (pid {holder})") };
        anyhow::anyhow!("another xvsd{who} owns {}: stop it first (lock {}: {e})", pins.display(), path.display())
    })?;
    // Who holds it, for the message a second xvsd prints.
    use std::io::{Seek, Write};
    let _ = lock.set_len(0);
    let _ = lock.rewind();
    let _ = writeln!(lock, "{}", std::process::id());
    Ok(lock)
}

async fn run(o: xvsd::options::Options) -> anyhow::Result<()> {
    let pins = xvs_abi::pin_dir(&o.pin_dir);
    let links = pins.join("links");
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("xvsd needs root (CAP_BPF, CAP_NET_ADMIN)");
    }
    let _lock = lock_pins(&pins)?;
    if o.purge {
        // Firewall-mark routing first: its device carries programs whose pins go below.
        xvsd::fwmark::Plumbing::open(links.clone())?.remove_all().await.context("remove the firewall-mark routing")?;
        if pins.exists() {
            std::fs::remove_dir_all(&pins).with_context(|| format!("remove {}", pins.display()))?;
        }
        let _ = std::fs::remove_file(&o.socket);
        let _ = std::fs::remove_file(o.state_file.clone().unwrap_or_else(|| xvsd::state::default_path(&pins)));
        println!("removed {}: the load balancer is detached and its tables are gone", pins.display());
        return Ok(());
    }
    // A bad file stops xvsd before it touches anything.
    let config = match &o.config {
        Some(path) => {
            let config = xvsd::health::load_config(path, o.config_id.as_deref())?;
            config.specs().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            xvs_health::Plan::from_config(&config).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            xvsd::vrrp::Plan::from_config(&config).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Some(config)
        }
        None => None,
    };
    if xvs_dataplane::bpffs::ensure_mounted(&pins).context("mount bpffs")? {
        tracing::warn!(path = xvs_dataplane::bpffs::DEFAULT_MOUNT, "bpffs was not mounted; mounted it");
    }
    let mut opts = LoadOptions::new(&pins);
    opts.max_conns = o.max_conns;
    opts.max_half = o.max_half_open;
    opts.max_services = o.max_services;
    opts.max_dests = o.max_dests;
    opts.prealloc = o.prealloc_conns.into();
    let director = Director::load(opts).context("load the XDP program")?;
    match director.conn_table_kinds() {
        Ok(tables) => {
            let asked = o.prealloc_conns;
            let wanted = |name: &str| match asked {
                PreallocConns::None => false,
                PreallocConns::Ipv4 => name.ends_with('4'),
                PreallocConns::All => true,
            };
            // Pinned tables hold the connections: never remade behind the operator's back.
            for &(name, pre, size) in &tables {
                if pre != wanted(name) || size != o.max_conns {
                    tracing::warn!(
                        table = name,
                        preallocated = pre,
                        entries = size,
                        "a connection table kept from the previous start differs from --prealloc-conns or \
                         --max-conns and is kept as it is; `xvsd --purge` (which drops every connection) makes it afresh"
                    );
                }
            }
            let pre: Vec<&str> = tables.iter().filter(|t| t.1).map(|t| t.0).collect();
            if !pre.is_empty() {
                tracing::info!(tables = ?pre, "connection tables preallocated");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot tell how the connection tables were made"),
    }
    // The reasons' first lines: the rest is the verifier's log.
    if let Some(why) = director.walk_unavailable() {
        let why = why.lines().next().unwrap_or_default();
        tracing::warn!(reason = %why, "large connection tables will be swept in one go, not in steps");
    } else if let Some(why) = director.walk_batch_reason() {
        let why = why.lines().next().unwrap_or_default();
        tracing::info!(reason = %why, "large connection tables will be swept in steps by batch reads (no iterator programs)");
    }
    let mut control = Control::adopt(director, xvsd::now())
        .map_err(anyhow::Error::msg)
        .context("pick up the state pinned by an earlier xvsd (`xvsd --purge` starts from scratch)")?;
    // The checkers' states of the previous xvsd: failed servers stay failed, and no script
    // runs for a state that did not change.
    let state_file = o.state_file.clone().unwrap_or_else(|| xvsd::state::default_path(&pins));
    control.restore_health = xvsd::state::load(&state_file);
    if control.restore_health.is_some() {
        tracing::info!(file = %state_file.display(), "picked up the health checks' states");
    }
    {
        let dp = control.dp.as_mut().expect("adopt loads the dataplane");
        for ifname in &o.interfaces {
            let mut native = !o.generic;
            if native && !o.native && xvs_dataplane::netdev::prefers_generic(ifname) {
                tracing::info!(
                    interface = %ifname,
                    "veth: generic XDP, so that what the director sends back reaches a peer without an XDP \
                     program (--native to override)"
                );
                native = false;
            }
            match dp
                .director
                .attach_pinned(ifname, native, &links.join(ifname))
                .with_context(|| format!("attach to {ifname}"))?
            {
                Attached::New(mode) => tracing::info!(interface = %ifname, mode = ?mode, "attached"),
                Attached::Replaced => {
                    tracing::info!(interface = %ifname, "took over from the previous xvsd without a gap")
                }
            }
            // The dataplane asks the kernel's FIB for next hops, which answers only on
            // interfaces that forward: without it every forwarded packet counts as no_route.
            let path = format!("/proc/sys/net/ipv4/conf/{ifname}/forwarding");
            if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "0") {
                tracing::warn!(
                    interface = %ifname,
                    "IPv4 forwarding is off here ({path} = 0): packets cannot be forwarded to real servers \
                     (dataplane reason no_route); set net.ipv4.ip_forward = 1 (and IPv6's forwarding for IPv6 VIPs)"
                );
            }
        }
    }
    let vrrp_plan = match &config {
        Some(c) => xvsd::vrrp::Plan::from_config(c).map_err(anyhow::Error::msg)?,
        None => xvsd::vrrp::Plan::default(),
    };
    let bgp_plan = match &config {
        Some(c) => xvsd::bgp::Plan::from_config(c).map_err(anyhow::Error::msg)?,
        None => None,
    };
    if let (Some(path), Some(config)) = (&o.config, config) {
        match control.handle(xvs_api::Request::Apply { config, dry_run: false }, xvsd::now()) {
            xvs_api::Response::Applied { changes, .. } => {
                tracing::info!(changes = changes.len(), file = %path.display(), "configuration applied")
            }
            xvs_api::Response::Error(e) => anyhow::bail!("{}: {}", path.display(), e.message),
            _ => {}
        }
    }

    // Marked packets routed to the dataplane, for the firewall-mark services just applied.
    let control = Arc::new(Mutex::new(control));
    let fwmark = xvsd::fwmark::Plumbing::open(links.clone())?;
    if let Err(e) = fwmark.sync(&control).await {
        // The other services are served all the same.
        tracing::error!("marked packets cannot reach the firewall-mark services: {e:#}");
    }
    // Rules someone else removed (a network manager's clean-up) are put back.
    let f = fwmark.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(xvsd::fwmark::RECHECK);
        loop {
            every.tick().await;
            if let Err(e) = f.recheck().await {
                tracing::error!("firewall-mark policy rules: {e:#}");
            }
        }
    });

    // Expiry and the core's timers once a second (expiry every 200 ms while a flood of
    // unassured connections is being dropped early); counters every two seconds (the
    // estimator's period), read without the lock so requests never wait for them.
    let sync_daemons = xvsd::sync::Daemons::new(control.clone());
    // VRRP after the services are in place: a director that becomes master serves at once.
    let vrrp_view = xvsd::vrrp::View::default();
    let vrrp = if vrrp_plan.is_empty() {
        None
    } else {
        let n = vrrp_plan.instances.len();
        let r = xvsd::vrrp::spawn(vrrp_plan, vrrp_view.clone(), Some(sync_daemons.clone()), Some(control.clone()))
            .context("start VRRP")?;
        tracing::info!(instances = n, "VRRP started");
        Some(r)
    };
    // Announcing once the services are in place (a VIP is announced when it can be served).
    let (bgp_handle, bgp) = match bgp_plan {
        None => (None, None),
        Some(p) => {
            let (h, r) = xvsd::bgp::spawn(p, control.clone(), xvsd::bgp::drains_path(&state_file))
                .await
                .context("start announcing the VIPs")?;
            tracing::info!("announcing the VIPs through BIRD");
            (Some(h), Some(r))
        }
    };
    let health = tokio::spawn(xvsd::health::run(control.clone(), state_file));
    let c = control.clone();
    let timers = tokio::spawn(async move {
        let mut every = tokio::time::interval(xvs_dataplane::sweep::PRESSURE_PERIOD);
        let ticks_per_second = (1000 / xvs_dataplane::sweep::PRESSURE_PERIOD.as_millis()) as u64;
        let mut tick = 0u64;
        let mut pressure = false;
        loop {
            every.tick().await;
            tick += 1;
            let second = tick % ticks_per_second == 0;
            if !second {
                if pressure {
                    pressure = xvsd::refresh::sweep(&c).await.is_some_and(|r| r.pressure);
                }
                continue;
            }
            let round = tick / ticks_per_second;
            pressure = xvsd::refresh::sweep(&c).await.is_some_and(|r| r.pressure);
            if round % 2 == 0 {
                xvsd::refresh::refresh_counters(&c).await;
            }
            c.lock().await.timers(xvsd::now());
        }
    });
    // Neighbour entries: a direct-routing packet to an unresolved neighbour is dropped (it
    // cannot be handed to the kernel), and a NAT reply from a VIP this host holds (a VRRP
    // master) is dropped by the kernel as a martian, so xvsd keeps them resolved: every 30 s
    // for all real servers, within a second for servers just added, and within 200 ms for any
    // next hop the dataplane reported missing (a client or router a new master never spoke to).
    let c = control.clone();
    tokio::spawn(async move {
        let v4 = tokio::net::UdpSocket::bind("0.0.0.0:0").await.ok();
        let v6 = tokio::net::UdpSocket::bind("[::]:0").await.ok();
        let mut tick = 0u64;
        let mut last_miss = xvsd::conns::dataplane_now_ms().wrapping_sub(1000);
        let mut every = tokio::time::interval(Duration::from_millis(200));
        loop {
            every.tick().await;
            let mut targets: std::collections::HashSet<SocketAddr> = std::collections::HashSet::new();
            {
                let mut c = c.lock().await;
                if let Some(dp) = c.dp.as_ref() {
                    for (a, ifindex, stamp) in dp.director.neigh_misses(last_miss) {
                        if (stamp.wrapping_sub(last_miss) as i32) > 0 {
                            last_miss = stamp;
                        }
                        targets.insert(match a {
                            std::net::IpAddr::V6(v6) => SocketAddr::V6(std::net::SocketAddrV6::new(v6, 9, 0, ifindex)),
                            v4 => SocketAddr::new(v4, 9),
                        });
                    }
                }
                if tick % 5 == 0 {
                    let mut t = c.take_new_servers();
                    if tick % 150 == 0 {
                        for (id, _) in c.lb.services.iter() {
                            if let Some(v) = c.lb.services.view(id) {
                                t.extend(v.iter().map(|(_, d)| d.addr()));
                            }
                        }
                    }
                    targets.extend(t.into_iter().map(|a| SocketAddr::new(a, 9)));
                }
            }
            tick += 1;
            for a in targets {
                // Port 9 (discard): the datagram only makes the kernel resolve the address.
                let sock = if a.is_ipv4() { &v4 } else { &v6 };
                if let Some(s) = sock {
                    let _ = s.send_to(b"", a).await;
                }
            }
        }
    });
    let listener =
        xvsd::server::bind(&o.socket).with_context(|| format!("create the socket {}", o.socket.display()))?;
    tracing::info!(socket = %o.socket.display(), "listening for xvsadm");
    let extras = xvsd::server::Extras {
        vrrp: Some(vrrp_view.clone()),
        sync: Some(sync_daemons.clone()),
        bgp: bgp_handle.clone(),
        fwmark: Some(fwmark.clone()),
    };
    if o.metrics != "off" {
        let addr: SocketAddr = o.metrics.parse().with_context(|| format!("metrics address '{}'", o.metrics))?;
        let first = xvsd::web::bind(addr).await;
        tokio::spawn(xvsd::web::serve(addr, first, control.clone(), extras.clone()));
    }
    let bgp_handle_r = bgp_handle;
    let server = tokio::spawn(xvsd::server::serve_with(listener, control.clone(), extras));
    // systemd (Type=notify): the dataplane is attached and the socket answers.
    // Signals are handled before readiness is told: a stop right after it must be a clean one.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let (mut server, mut health, mut timers) = (server, health, timers);
    let mut vrrp = vrrp;
    let mut bgp = bgp;
    // A task that ends has panicked (each runs for the life of the daemon): stop cleanly with
    // an error, so that systemd restarts xvsd, rather than run on without health checks or
    // expiry. The dataplane forwards meanwhile.
    let failed: Option<&str> = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break None,
            _ = term.recv() => break None,
            _ = hup.recv() => reload(&o, &control, vrrp.as_ref(), bgp_handle_r.as_ref(), &fwmark).await,
            _ = &mut server => break Some("the control socket"),
            _ = &mut health => break Some("the health checks"),
            _ = &mut timers => break Some("expiry and counters"),
            _ = async { vrrp.as_mut().expect("guarded").ended().await }, if vrrp.is_some() => break Some("VRRP"),
            _ = async { bgp.as_mut().expect("guarded").ended().await }, if bgp.is_some() => break Some("the VIP announcer"),
        }
    };
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    // Routers stop sending here first: the withdrawal goes out while this director still
    // forwards (the routers move the flows to the other directors, which continue them).
    if let Some(b) = bgp {
        b.stop().await;
    }
    // Masters step down at once (priority 0) so that a backup takes over within its skew
    // time, not three intervals.
    if let Some(v) = vrrp {
        v.stop().await;
    }
    let _ = std::fs::remove_file(&o.socket);
    // A trace that was running stops recording: the pinned program forwards on without xvsd.
    xvsd::trace::stop(&mut *control.lock().await);
    if o.detach_on_exit {
        for ifname in &o.interfaces {
            let _ = std::fs::remove_file(links.join(ifname));
        }
        // Forwarding stops: services with omega report their servers down, as keepalived does
        // when it removes them at shutdown.
        let (events, policy) = {
            let c = control.lock().await;
            let m = c.health.as_ref();
            (m.map(|m| m.omega_events()).unwrap_or_default(), m.map(|m| m.plan().scripts.clone()).unwrap_or_default())
        };
        xvsd::health::handle_and_wait(events, &policy, Duration::from_secs(1)).await;
        tracing::info!("stopped; the load balancer is detached");
    } else {
        tracing::info!("stopped; forwarding continues with the pinned program and tables until xvsd starts again");
    }
    if let Some(what) = failed {
        anyhow::bail!("{what} stopped unexpectedly (see above); exiting so that xvsd is restarted");
    }
    Ok(())
}

/// SIGHUP: read the configuration file again and apply it (as keepalived reloads on SIGHUP).
async fn reload(
    o: &xvsd::options::Options,
    control: &Arc<Mutex<Control>>,
    vrrp: Option<&xvsd::vrrp::Running>,
    bgp: Option<&xvsd::bgp::Announce>,
    fwmark: &xvsd::fwmark::Plumbing,
) {
    let Some(path) = &o.config else {
        tracing::warn!("SIGHUP: no --config file to reload");
        return;
    };
    let config = match xvsd::health::load_config(path, o.config_id.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload refused, nothing changed: {e:#}");
            return;
        }
    };
    // VRRP instances keep running as they are: restarting them would hand the addresses to
    // the backup and back. A changed VRRP part is refused (the services part still applies).
    match xvsd::vrrp::Plan::from_config(&config) {
        Err(e) => tracing::error!("reload: VRRP part refused, VRRP unchanged: {}: {e}", path.display()),
        Ok(p) => {
            // The running plan has its source addresses resolved; compare the rest.
            let mut running = vrrp.map(|r| r.plan.clone()).unwrap_or_default();
            for (r, n) in running.instances.iter_mut().zip(&p.instances) {
                r.spec.config.own = n.spec.config.own;
            }
            if p != running {
                tracing::warn!(
                    "reload: the VRRP instances changed; they take effect when xvsd restarts (VRRP unchanged)"
                );
            }
        }
    }
    // The announcer's settings likewise; the VIPs themselves follow the services at once.
    match xvsd::bgp::Plan::from_config(&config) {
        Err(e) => tracing::error!("reload: [bgp] refused, announcements unchanged: {}: {e}", path.display()),
        Ok(p) if p.as_ref() != bgp.map(|b| b.plan()) => {
            tracing::warn!("reload: [bgp] changed; it takes effect when xvsd restarts (announcements unchanged)")
        }
        Ok(_) => {}
    }
    // The lock is let go before the firewall-mark routing takes it again.
    let applied = control.lock().await.handle(xvs_api::Request::Apply { config, dry_run: false }, xvsd::now());
    match applied {
        xvs_api::Response::Applied { changes, .. } => {
            tracing::info!(changes = changes.len(), file = %path.display(), "configuration reloaded");
            if let Err(e) = fwmark.sync(control).await {
                tracing::error!("reload: marked packets cannot reach the firewall-mark services: {e:#}");
            }
        }
        xvs_api::Response::Error(e) => {
            tracing::error!("reload refused, nothing changed: {}: {}", path.display(), e.message)
        }
        _ => {}
    }
}
