//! Executes a parsed command against a [`Transport`] and produces ipvsadm's output, messages
//! and exit status.

use std::io::BufRead;

use xvs_api::{KeySpec, Request, Response, Snapshot};

use crate::args::{try_help, Command};
use crate::client::Transport;
use crate::format;

/// What a run printed and how it ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit status.
    pub code: i32,
}

impl Outcome {
    pub(crate) fn fail(stderr: String, code: i32) -> Outcome {
        Outcome { stdout: String::new(), stderr, code }
    }
}

/// ipvsadm's message for a refusal, by command and errno (reference §8.3). Where the errno
/// alone says little (EINVAL, EOPNOTSUPP, ENOMEM), xvsd's explanation follows on a second line.
pub fn kernel_message(cmd: &Command, errno: &str, detail: &str) -> String {
    let base = match (errno, cmd) {
        ("EEXIST", Command::Service { edit: false, .. }) => "Service already exists",
        ("ENOENT", Command::Service { .. }) => "Scheduler or persistence engine not found",
        ("ESRCH", Command::Service { .. } | Command::DeleteService(_) | Command::Zero(_) | Command::List { .. }) => {
            "No such service"
        }
        ("ESRCH", Command::Server { .. } | Command::DeleteServer { .. }) => "Service not defined",
        ("EEXIST", Command::Server { edit: false, .. }) => "Destination already exists",
        ("ENOENT", Command::Server { .. } | Command::DeleteServer { .. }) => "No such destination",
        ("EEXIST", Command::StartDaemon(..)) => "Daemon has already run",
        ("ESRCH", Command::StopDaemon(_)) => "No daemon is running",
        ("EINVAL", _) => "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        ("ERANGE", _) => "Numerical result out of range",
        ("ENOMEM", _) => "Memory allocation problem",
        ("EOPNOTSUPP", _) => "Operation not supported",
        ("EPERM", _) => "Permission denied (you must be root)",
        _ => return detail.to_string(),
    };
    if matches!(errno, "EINVAL" | "ENOMEM" | "EOPNOTSUPP") && !detail.is_empty() {
        format!("{base}\nxvs: {detail}")
    } else {
        base.to_string()
    }
}

fn modify(t: &mut dyn Transport, cmd: &Command, req: Request) -> Outcome {
    match t.call(&req) {
        Ok(Response::Ok) => Outcome::default(),
        Ok(Response::Error(e)) => Outcome::fail(kernel_message(cmd, &e.errno, &e.message) + "\n", 255),
        Ok(other) => Outcome::fail(format!("xvs: unexpected answer from xvsd: {other:?}\n"), 255),
        Err(e) => Outcome::fail(format!("Can't initialize ipvs: {e}\n"), 2),
    }
}

/// The daemon's snapshot, or the outcome telling why there is none.
pub(crate) fn snapshot(t: &mut dyn Transport, conns: bool) -> Result<Snapshot, Outcome> {
    match t.call(&Request::Snapshot { conns }) {
        Ok(Response::Snapshot(s)) => Ok(*s),
        Ok(Response::Error(e)) => Err(Outcome::fail(format!("{}\n", e.message), 1)),
        Ok(other) => Err(Outcome::fail(format!("xvs: unexpected answer from xvsd: {other:?}\n"), 1)),
        Err(e) => Err(Outcome::fail(format!("Can't initialize ipvs: {e}\n"), 2)),
    }
}

/// The usage text of `-h`.
pub const HELP: &str = "\
xvsadm v0.1 (ipvsadm v1.31 compatible)
Usage:
  xvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]
  xvsadm -D virtual-service
  xvsadm -C
  xvsadm -R
  xvsadm -S [-n]
  xvsadm -a|e virtual-service -r server-address [options]
  xvsadm -d virtual-service -r server-address
  xvsadm -L|l [virtual-service] [options]
  xvsadm -Z [virtual-service]
  xvsadm --set tcp tcpfin udp
  xvsadm --start-daemon {master|backup} [daemon-options]
  xvsadm --stop-daemon {master|backup}
  xvsadm apply -f FILE [--dry-run]     (xvs: replace the whole configuration at once;
                                        FILE is TOML, YAML, or a keepalived.conf; a TOML
                                        file applied before sends only what changed)
  xvsadm health [--json]               (xvs: health of checked real servers)
  xvsadm vrrp [--json]                 (xvs: VRRP instances, their state and counters)
  xvsadm top [--sort COLUMN] [--filter TEXT] [--interval SECONDS]
                                       (xvs: live view of services and servers; q quits)
  xvsadm trace [CLIENT[:PORT]] [-t|-u|--sctp-service VIP:PORT] [--count N] [--seconds N] [--json]
                                       (xvs: each decision the dataplane takes for those packets)
  xvsadm sysctl [--json | NAME=VALUE...] (xvs: IPVS's net.ipv4.vs.* settings)
  xvsadm bgp [--json]                  (xvs: VIPs announced to routers through BIRD, and why)
  xvsadm bgp drain|undrain [VIP]       (xvs: withdraw this director, or one VIP, and keep it so)
  xvsadm -h

Commands:
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --start-daemon              start connection sync daemon
  --stop-daemon               stop connection sync daemon
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --sctp-service    service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh|twos,
                                      the default scheduler is wlc.
  --pe            engine              alternate persistence engine may be sip,
                                      not set by default.
  --persistent   -p [timeout]         persistent service (default 360 seconds)
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --tun-type      type                one of ipip|gue|gre, the default tunnel type is ipip (xvs: ipip only)
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact        -X                   expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)
  --json                              (xvs) listings as JSON

Daemon Options:
  --syncid sid                        syncid for connection sync (default=0: a backup accepts any)
  --sync-maxlen length                Max sync message length (default=1472)
  --mcast-interface interface         multicast interface for connection sync (default=eth0)
  --mcast-group address               IPv4 group (default=224.0.0.81)
  --mcast-port port                   UDP port (default=8848)
  --mcast-ttl ttl                     Multicast TTL (default=1)
";

/// Runs one command line. `stdin` feeds `-R`.
pub fn run(argv: &[String], t: &mut dyn Transport, stdin: &mut dyn BufRead) -> Outcome {
    match argv.get(1).map(String::as_str) {
        Some("apply") => return apply(&argv[2..], t),
        Some("health") => return health(&argv[2..], t),
        Some("vrrp") => return vrrp(&argv[2..], t),
        Some("top") => return crate::top::run(&argv[2..], t),
        Some("trace") => return crate::trace::run(&argv[2..], t),
        Some("sysctl") => return sysctl(&argv[2..], t),
        Some("bgp") => return bgp(&argv[2..], t),
        _ => {}
    }
    let cmd = match Command::parse(argv) {
        Ok(c) => c,
        Err(u) => return Outcome::fail(format!("{}\n", u.message), u.code),
    };
    execute(&cmd, t, stdin)
}

/// The request a command that changes something sends (None for listings and the like).
fn request_of(cmd: &Command) -> Option<Request> {
    Some(match cmd {
        Command::Service { edit: false, spec } => Request::AddService { service: spec.clone() },
        Command::Service { edit: true, spec } => Request::EditService { service: spec.clone() },
        Command::DeleteService(key) => Request::DeleteService { key: *key },
        Command::Clear => Request::Clear,
        Command::Server { edit: false, key, dest } => Request::AddDest { key: *key, dest: dest.clone() },
        Command::Server { edit: true, key, dest } => Request::EditDest { key: *key, dest: dest.clone() },
        Command::DeleteServer { key, addr, port } => Request::DeleteDest { key: *key, addr: *addr, port: *port },
        Command::Zero(key) => Request::Zero { key: *key },
        Command::Set(a, b, c) => Request::SetTimeouts { tcp: *a, tcpfin: *b, udp: *c },
        Command::StartDaemon(role, options) => Request::StartDaemon { role: role.clone(), options: options.clone() },
        Command::StopDaemon(role) => Request::StopDaemon { role: role.clone() },
        _ => return None,
    })
}

fn execute(cmd: &Command, t: &mut dyn Transport, stdin: &mut dyn BufRead) -> Outcome {
    let names = |port: u16, proto: &str| crate::services::name_by_port(port, proto);
    if let Some(req) = request_of(cmd) {
        return modify(t, cmd, req);
    }
    match cmd {
        Command::Help => Outcome { stdout: HELP.into(), ..Default::default() },
        Command::Version => Outcome {
            stdout: format!(
                "xvsadm v{} (ipvsadm v1.31 compatible, IPVS v{})\n",
                env!("CARGO_PKG_VERSION"),
                format::IPVS_VERSION
            ),
            ..Default::default()
        },
        Command::Save { numeric } => match snapshot(t, false) {
            Ok(s) => Outcome { stdout: format::save(&s, *numeric, &names), ..Default::default() },
            Err(o) => o,
        },
        Command::List { key, opts, conns, timeout, daemon, json } => {
            let snap = match snapshot(t, *conns) {
                Ok(s) => s,
                Err(o) => return o,
            };
            if let Some(k) = key {
                if !snap.services.iter().any(|s| s.spec.key == *k) {
                    return Outcome::fail("No such service\n".into(), 1);
                }
            }
            if *json {
                let mut s = snap.clone();
                if let Some(k) = key {
                    s.services.retain(|x| x.spec.key == *k);
                }
                return Outcome {
                    stdout: serde_json::to_string_pretty(&s).expect("snapshots serialise") + "\n",
                    ..Default::default()
                };
            }
            let stdout = if *conns {
                format::connections(&snap.conns)
            } else if *timeout {
                format::timeouts(&snap)
            } else if *daemon {
                format::daemons(&snap.daemons)
            } else {
                format::list(&snap, key.as_ref(), opts, &names)
            };
            Outcome { stdout, ..Default::default() }
        }
        Command::Restore => restore(t, stdin),
        // The commands that change something went out through request_of above.
        _ => Outcome::fail("xvs: a change without a request (a bug)\n".into(), 1),
    }
}

/// `-R`: all or nothing, where ipvsadm applies line by line. Every line is read and checked
/// first (a malformed one stops the restore before anything changes, with ipvsadm's message);
/// the changes then go to xvsd as one batch, and if one is refused none stays, and the refusal
/// is reported as ipvsadm reports that line's (docs/differences.md). A file that also lists or
/// saves runs line by line, as ipvsadm runs it.
fn restore(t: &mut dyn Transport, stdin: &mut dyn BufRead) -> Outcome {
    let mut cmds = Vec::new();
    let mut text = String::new();
    if let Err(e) = stdin.read_to_string(&mut text) {
        return Outcome::fail(format!("xvs: reading standard input: {e}\n"), 1);
    }
    for line in text.lines() {
        let mut argv: Vec<String> = vec!["ipvsadm".into()];
        argv.extend(line.split([' ', '\t', '\r']).filter(|s| !s.is_empty() && *s != "ipvsadm").map(String::from));
        if argv.len() == 1 {
            continue;
        }
        match Command::parse(&argv) {
            Ok(Command::Restore) => {
                let u = try_help("ipvsadm");
                return Outcome::fail(format!("{}\n", u.message), u.code);
            }
            Ok(c) => cmds.push(c),
            Err(u) => return Outcome::fail(format!("{}\n", u.message), u.code),
        }
    }
    let requests: Option<Vec<Request>> = cmds.iter().map(request_of).collect();
    let Some(requests) = requests else {
        return restore_line_by_line(t, &cmds);
    };
    if requests.is_empty() {
        return Outcome::default();
    }
    match t.call(&Request::Batch { requests }) {
        Ok(Response::Ok) => Outcome::default(),
        Ok(Response::Error(e)) => {
            let cmd = e.failed_at.and_then(|i| cmds.get(i)).unwrap_or(&cmds[0]);
            let mut msg = kernel_message(cmd, &e.errno, &e.message) + "\n";
            msg += if e.partial {
                "the restore stopped part way and could not all be undone (see xvsadm -Ln)\n"
            } else {
                "nothing was restored\n"
            };
            Outcome::fail(msg, 255)
        }
        Ok(other) => Outcome::fail(format!("xvs: unexpected answer from xvsd: {other:?}\n"), 255),
        Err(e) => Outcome::fail(format!("Can't initialize ipvs: {e}\n"), 2),
    }
}

/// A restore file that also lists or saves: each line on its own, as ipvsadm runs them.
fn restore_line_by_line(t: &mut dyn Transport, cmds: &[Command]) -> Outcome {
    let mut out = Outcome::default();
    for cmd in cmds {
        let o = execute(cmd, t, &mut std::io::empty());
        out.stdout += &o.stdout;
        out.stderr += &o.stderr;
        out.code = o.code;
    }
    out
}

fn apply(args: &[String], t: &mut dyn Transport) -> Outcome {
    let mut file = None;
    let mut dry_run = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-f" | "--file" => file = it.next().cloned(),
            "--dry-run" | "-n" => dry_run = true,
            other => {
                return Outcome::fail(
                    format!("xvsadm apply: unexpected argument {other}\nusage: xvsadm apply -f FILE [--dry-run]\n"),
                    2,
                )
            }
        }
    }
    let Some(file) = file else {
        return Outcome::fail("usage: xvsadm apply -f FILE [--dry-run]\n".into(), 2);
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => return Outcome::fail(format!("xvsadm apply: {file}: {e}\n"), 1),
    };
    // A TOML file applied before through this socket: only the services that differ, when
    // xvsd's table is still the one that apply left (crate::applied).
    let toml = !xvs_keepalived::is_keepalived_path(&file)
        && xvs_api::config::Syntax::of_path(&file) == xvs_api::config::Syntax::Toml;
    let memory = t.applied_memory().filter(|_| toml);
    let canonical = std::fs::canonicalize(&file).map_or_else(|_| file.clone(), |p| p.to_string_lossy().into_owned());
    let part = memory
        .as_deref()
        .and_then(crate::applied::load)
        .and_then(|last| crate::applied::part_request(&last, &canonical, &text, dry_run));
    if let Some(part) = part {
        match t.call(&part.request) {
            Ok(Response::Applied { changes, base }) => {
                remember(memory.as_deref(), base.as_deref(), &canonical, Some(&part.body), dry_run);
                return applied(changes, dry_run, String::new());
            }
            // Refused because the table changed meanwhile (ESTALE), or the part is wrong
            // (EINVAL): the whole file, which says what is wrong with its lines. Anything
            // else happened to the part itself and is said as it is.
            Ok(Response::Error(e)) if !e.partial && matches!(e.errno.as_str(), "ESTALE" | "EINVAL") => {}
            Ok(Response::Error(e)) => return refused(&file, &e),
            Ok(other) => return Outcome::fail(format!("xvs: unexpected answer from xvsd: {other:?}\n"), 1),
            Err(e) => return Outcome::fail(format!("xvsadm apply: {e}\n"), 2),
        }
    }
    let mut notices = String::new();
    let parsed = if xvs_keepalived::is_keepalived_path(&file) {
        xvs_keepalived::load_str(std::path::Path::new(&file), &text).map_err(|e| e.to_string()).map(|l| {
            notices = l.notices.iter().map(|n| format!("xvsadm apply: note: {n}\n")).collect();
            l.config
        })
    } else {
        xvs_api::config::Config::parse_file(&file, &text).map_err(|e| format!("{file}: {e}"))
    };
    let config = match parsed {
        Ok(c) => c,
        Err(e) => return Outcome::fail(format!("xvsadm apply: {e}\n"), 1),
    };
    let keys: Vec<xvs_api::KeySpec> = match config.specs() {
        Ok(specs) => specs.into_iter().map(|(s, _)| s.key).collect(),
        Err(e) => return Outcome::fail(format!("xvsadm apply: {file}: {e}\n"), 1),
    };
    match t.call(&Request::Apply { config, dry_run }) {
        Ok(Response::Applied { changes, base }) => {
            let body = if memory.is_some() && base.is_some() { crate::applied::memory_of(&text, &keys) } else { None };
            remember(memory.as_deref(), base.as_deref(), &canonical, body.as_deref(), dry_run);
            applied(changes, dry_run, notices)
        }
        Ok(Response::Error(e)) => refused(&file, &e),
        Ok(other) => Outcome::fail(format!("xvs: unexpected answer from xvsd: {other:?}\n"), 1),
        Err(e) => Outcome::fail(format!("xvsadm apply: {e}\n"), 2),
    }
}

/// After an apply that changed the table: the file and xvsd's token for the table, or nothing
/// when xvsd gave none (health checks, `keep_unlisted`, another syntax) or the file cannot be
/// read in parts.
fn remember(memory: Option<&std::path::Path>, base: Option<&str>, file: &str, body: Option<&str>, dry_run: bool) {
    match (memory, base, body) {
        _ if dry_run => {}
        (Some(m), Some(b), Some(body)) => crate::applied::store(m, b, file, body),
        (Some(m), _, _) => crate::applied::forget(m),
        (None, _, _) => {}
    }
}

fn applied(changes: Vec<String>, dry_run: bool, notices: String) -> Outcome {
    let mut stdout: String = changes.iter().map(|c| format!("{c}\n")).collect();
    if changes.is_empty() {
        stdout = "no changes\n".into();
    } else if dry_run {
        stdout += "(dry run: nothing changed)\n";
    }
    Outcome { stdout, stderr: notices, code: 0 }
}

fn refused(file: &str, e: &xvs_api::ApiError) -> Outcome {
    if e.partial {
        return Outcome::fail(
            format!(
                "xvsadm apply: {file}: {}\nthe change stopped part way and could not all be undone: \
                 the table is neither the old one nor the new one (see xvsadm -Ln)\n",
                e.message
            ),
            1,
        );
    }
    Outcome::fail(format!("xvsadm apply: {file}: {}\nnothing was changed\n", e.message), 1)
}

/// `xvsadm health [--json]`: each checked service's quorum, and each real server's state and
/// its checks' last results (keepalived logs this; xvs shows it on demand).
fn health(args: &[String], t: &mut dyn Transport) -> Outcome {
    let json = match args {
        [] => false,
        [j] if j == "--json" => true,
        _ => return Outcome::fail("usage: xvsadm health [--json]\n".into(), 2),
    };
    let snap = match snapshot(t, false) {
        Ok(s) => s,
        Err(o) => return o,
    };
    if json {
        return Outcome {
            stdout: serde_json::to_string_pretty(&snap.health).expect("health serialises") + "\n",
            ..Default::default()
        };
    }
    Outcome { stdout: format::health(&snap.health), ..Default::default() }
}

/// `xvsadm vrrp [--json]`: each VRRP instance xvsd runs, its state, priority, master and
/// advertisement counters.
fn vrrp(args: &[String], t: &mut dyn Transport) -> Outcome {
    let json = match args {
        [] => false,
        [j] if j == "--json" => true,
        _ => return Outcome::fail("usage: xvsadm vrrp [--json]\n".into(), 2),
    };
    let snap = match snapshot(t, false) {
        Ok(s) => s,
        Err(o) => return o,
    };
    if json {
        return Outcome {
            stdout: serde_json::to_string_pretty(&snap.vrrp).expect("VRRP states serialise") + "\n",
            ..Default::default()
        };
    }
    Outcome { stdout: format::vrrp(&snap.vrrp), ..Default::default() }
}

/// `xvsadm bgp [--json]`: the VIPs announced to routers and why; `xvsadm bgp drain|undrain
/// [VIP]` takes this director (or one VIP) out of the routers' paths and back.
fn bgp(args: &[String], t: &mut dyn Transport) -> Outcome {
    let usage = || Outcome::fail("usage: xvsadm bgp [--json] | xvsadm bgp drain|undrain [VIP]\n".into(), 2);
    let (drain, vip) = match args {
        [] => (None, None),
        [j] if j == "--json" => {
            let snap = match snapshot(t, false) {
                Ok(s) => s,
                Err(o) => return o,
            };
            return Outcome {
                stdout: serde_json::to_string_pretty(&snap.bgp).expect("BGP state serialises") + "\n",
                ..Default::default()
            };
        }
        [c, rest @ ..] if (c == "drain" || c == "undrain") && rest.len() <= 1 => {
            let vip = match rest.first().map(|v| v.parse::<std::net::IpAddr>()) {
                None => None,
                Some(Ok(v)) => Some(v),
                Some(Err(_)) => {
                    return Outcome::fail(format!("xvsadm bgp {c}: '{}' is not an IP address\n", rest[0]), 2)
                }
            };
            (Some(c == "drain"), vip)
        }
        _ => return usage(),
    };
    if let Some(drain) = drain {
        return match t.call(&Request::Drain { drain, vip }) {
            Ok(Response::Ok) => Outcome::default(),
            Ok(Response::Error(e)) => Outcome::fail(format!("xvsadm bgp: {}\n", e.message), 1),
            Ok(other) => Outcome::fail(format!("xvs: unexpected answer from xvsd: {other:?}\n"), 1),
            Err(e) => Outcome::fail(format!("xvsadm bgp: {e}\n"), 2),
        };
    }
    let snap = match snapshot(t, false) {
        Ok(s) => s,
        Err(o) => return o,
    };
    Outcome { stdout: format::bgp(snap.bgp.as_ref()), ..Default::default() }
}

/// `xvsadm sysctl`: lists IPVS's settings as `sysctl net.ipv4.vs` prints them; with
/// `NAME=VALUE` arguments, sets each in order (the `net.ipv4.vs.` prefix is optional).
fn sysctl(args: &[String], t: &mut dyn Transport) -> Outcome {
    let usage = || Outcome::fail("usage: xvsadm sysctl [--json | NAME=VALUE...]\n".into(), 2);
    let list = match args {
        [] => Some(false),
        [j] if j == "--json" => Some(true),
        _ => None,
    };
    match list {
        Some(json) => {
            let snap = match snapshot(t, false) {
                Ok(s) => s,
                Err(o) => return o,
            };
            let stdout = if !json {
                snap.sysctl.iter().map(|(k, v)| format!("net.ipv4.vs.{k} = {v}\n")).collect()
            } else {
                serde_json::to_string_pretty(&snap.sysctl).expect("settings serialise") + "\n"
            };
            Outcome { stdout, ..Default::default() }
        }
        None => {
            let mut sets = Vec::new();
            for a in args {
                let Some((name, value)) = a.split_once('=') else { return usage() };
                let name = name.trim().trim_start_matches("net.ipv4.vs.").to_string();
                let Ok(value) = value.trim().parse::<u64>() else {
                    return Outcome::fail(format!("xvsadm sysctl: {name}: '{value}' is not a number\n"), 2);
                };
                sets.push((name, value));
            }
            for (name, value) in sets {
                match t.call(&Request::SetSysctl { name: name.clone(), value }) {
                    Ok(Response::Ok) => {}
                    Ok(Response::Error(e)) => return Outcome::fail(format!("xvsadm sysctl: {}\n", e.message), 1),
                    Ok(other) => return Outcome::fail(format!("xvs: unexpected answer from xvsd: {other:?}\n"), 1),
                    Err(e) => return Outcome::fail(format!("xvsadm sysctl: {e}\n"), 2),
                }
            }
            Outcome::default()
        }
    }
}

/// Which service a listing of one service asks for (for callers building requests).
pub fn only(cmd: &Command) -> Option<KeySpec> {
    match cmd {
        Command::List { key, .. } => *key,
        _ => None,
    }
}
