//! ipvsadm's command line (reference §8.1–8.2), in two layers: [`Args`] is clap's literal
//! picture of the options, and [`Command::parse`] turns it into a typed command, enforcing
//! ipvsadm's rules — the command must come first, each option once, the legal combinations
//! per command — with ipvsadm's own messages and exit codes, because scripts grep them.

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};

use clap::Parser;
use xvs_api::{CsumName, DestSpec, KeySpec, ProtoName, ServiceSpec, TunnelKindName, TunnelSpec};
use xvs_core::SchedFlags;

use crate::format::{Columns, ListOptions};

/// A usage error: the message and the exit status ipvsadm would use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// What to print on stderr.
    pub message: String,
    /// 2 for option errors, 255 for the usage hint.
    pub code: i32,
}

fn err(message: impl Into<String>) -> Usage {
    Usage { message: message.into(), code: 2 }
}

/// The hint ipvsadm prints when the first option is not a command.
pub fn try_help(argv0: &str) -> Usage {
    Usage { message: format!("Try `{argv0} -h' or '{argv0} --help' for more information."), code: 255 }
}

/// The options as clap sees them; every field is one ipvsadm option.
#[derive(Parser, Debug, Default)]
#[command(name = "xvsadm", disable_help_flag = true, disable_version_flag = true, allow_negative_numbers = true)]
pub struct Args {
    #[arg(short = 'A', long = "add-service", help = "Add a virtual service")]
    add_service: bool,
    #[arg(short = 'E', long = "edit-service", help = "Edit a virtual service")]
    edit_service: bool,
    #[arg(short = 'D', long = "delete-service", help = "Delete a virtual service")]
    delete_service: bool,
    #[arg(short = 'C', long = "clear", help = "Clear the whole table")]
    clear: bool,
    #[arg(short = 'R', long = "restore", help = "Restore rules from standard input (as written by --save)")]
    restore: bool,
    #[arg(short = 'S', long = "save", help = "Save rules to standard output")]
    save: bool,
    #[arg(short = 'a', long = "add-server", help = "Add a real server to a virtual service")]
    add_server: bool,
    #[arg(short = 'e', long = "edit-server", help = "Edit a real server")]
    edit_server: bool,
    #[arg(short = 'd', long = "delete-server", help = "Delete a real server")]
    delete_server: bool,
    #[arg(short = 'L', long = "list", short_alias = 'l', help = "List the table (or one virtual service)")]
    list: bool,
    #[arg(short = 'Z', long = "zero", help = "Zero the counters of one service or of all")]
    zero: bool,
    #[arg(long = "set", num_args = 0.., help = "Set connection timeouts: tcp tcpfin udp (seconds, 0 keeps)")]
    set: Option<Vec<String>>,
    #[arg(long = "start-daemon", help = "Start the connection-synchronisation daemon (master or backup)")]
    start_daemon: Option<String>,
    #[arg(long = "stop-daemon", help = "Stop the connection-synchronisation daemon (master or backup)")]
    stop_daemon: Option<String>,
    #[arg(short = 'h', long = "help", help = "Print the usage")]
    help: bool,
    #[arg(short = 'v', long = "version", help = "Print the version")]
    version: bool,

    #[arg(short = 't', long = "tcp-service", help = "TCP virtual service: host[:port]")]
    tcp: Option<String>,
    #[arg(short = 'u', long = "udp-service", help = "UDP virtual service: host[:port]")]
    udp: Option<String>,
    #[arg(long = "sctp-service", help = "SCTP virtual service: host[:port]")]
    sctp: Option<String>,
    #[arg(short = 'f', long = "fwmark-service", help = "Firewall-mark virtual service: a mark greater than zero")]
    fwmark: Option<String>,
    #[arg(short = '6', long = "ipv6", help = "The firewall-mark service is IPv6")]
    ipv6: bool,
    #[arg(
        short = 's',
        long = "scheduler",
        help = "Scheduler: rr, wrr, lc, wlc (default), lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh or twos"
    )]
    scheduler: Option<String>,
    #[arg(short = 'p', long = "persistent", num_args = 0..=1, default_missing_value = "360", help = "Persistent service, for this many seconds (default 360)")]
    persistent: Option<String>,
    #[arg(short = 'M', long = "netmask", help = "Persistence granularity: an IPv4 netmask or IPv6 prefix length")]
    netmask: Option<String>,
    #[arg(long = "pe", help = "Persistence engine (sip)")]
    pe: Option<String>,
    #[arg(
        short = 'b',
        long = "sched-flags",
        help = "Scheduler flags, comma-separated (sh-fallback, sh-port, mh-fallback, mh-port)"
    )]
    sched_flags: Option<String>,
    #[arg(short = 'o', long = "ops", help = "One-packet scheduling (UDP)")]
    ops: bool,
    #[arg(short = 'r', long = "real-server", help = "Real server: host[:port]")]
    real_server: Option<String>,
    #[arg(short = 'g', long = "gatewaying", help = "Forward by direct routing (default)")]
    gatewaying: bool,
    #[arg(short = 'i', long = "ipip", help = "Forward by tunnelling")]
    ipip: bool,
    #[arg(short = 'm', long = "masquerading", help = "Forward by NAT (masquerading)")]
    masquerading: bool,
    #[arg(short = 'w', long = "weight", help = "Weight of the real server")]
    weight: Option<String>,
    #[arg(short = 'x', long = "u-threshold", help = "Upper threshold of connections")]
    u_threshold: Option<String>,
    #[arg(short = 'y', long = "l-threshold", help = "Lower threshold of connections")]
    l_threshold: Option<String>,
    #[arg(long = "tun-type", help = "Tunnel type: ipip (default), gue or gre")]
    tun_type: Option<String>,
    #[arg(long = "tun-port", help = "Destination port of GUE tunnels")]
    tun_port: Option<String>,
    #[arg(long = "tun-nocsum", help = "Tunnel without checksum")]
    tun_nocsum: bool,
    #[arg(long = "tun-csum", help = "Tunnel with checksum")]
    tun_csum: bool,
    #[arg(long = "tun-remcsum", help = "Tunnel with remote checksum offload")]
    tun_remcsum: bool,
    #[arg(short = 'n', long = "numeric", help = "Numeric addresses and ports")]
    numeric: bool,
    #[arg(short = 'c', long = "connection", help = "List the connections")]
    connection: bool,
    #[arg(long = "timeout", help = "List the timeouts (tcp tcpfin udp)")]
    timeout: bool,
    #[arg(long = "daemon", help = "List the synchronisation daemons")]
    daemon: bool,
    #[arg(long = "stats", help = "List with statistics")]
    stats: bool,
    #[arg(long = "rate", help = "List with rates")]
    rate: bool,
    #[arg(long = "thresholds", help = "List with thresholds")]
    thresholds: bool,
    #[arg(long = "persistent-conn", help = "List with persistent connections")]
    persistent_conn: bool,
    #[arg(long = "tun-info", help = "List with tunnel settings")]
    tun_info: bool,
    #[arg(long = "nosort", help = "Do not sort services and servers")]
    nosort: bool,
    #[arg(long = "sort", help = "Does nothing (compatibility)")]
    sort: bool,
    #[arg(short = 'X', long = "exact", help = "Expand numbers in listings")]
    exact: bool,
    #[arg(long = "mcast-interface", help = "Synchronisation: multicast interface (default eth0)")]
    mcast_interface: Option<String>,
    #[arg(long = "syncid", help = "Synchronisation: sync ID (0: a backup accepts any)")]
    syncid: Option<String>,
    #[arg(long = "sync-maxlen", help = "Synchronisation: largest message")]
    sync_maxlen: Option<String>,
    #[arg(long = "mcast-group", help = "Synchronisation: multicast group (default 224.0.0.81)")]
    mcast_group: Option<String>,
    #[arg(long = "mcast-port", help = "Synchronisation: UDP port (default 8848)")]
    mcast_port: Option<String>,
    #[arg(long = "mcast-ttl", help = "Synchronisation: multicast TTL (default 1)")]
    mcast_ttl: Option<String>,
    /// xvs: listings as JSON.
    #[arg(long = "json")]
    json: bool,
    #[arg(trailing_var_arg = false, hide = true)]
    rest: Vec<String>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `-A` / `-E`.
    Service {
        /// `-E` rather than `-A`.
        edit: bool,
        /// The service.
        spec: ServiceSpec,
    },
    /// `-D`.
    DeleteService(KeySpec),
    /// `-C`.
    Clear,
    /// `-a` / `-e`.
    Server {
        /// `-e` rather than `-a`.
        edit: bool,
        /// The service.
        key: KeySpec,
        /// The real server.
        dest: DestSpec,
    },
    /// `-d`.
    DeleteServer {
        /// The service.
        key: KeySpec,
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
    },
    /// `-L`.
    List {
        /// One service only.
        key: Option<KeySpec>,
        /// Columns and sorting.
        opts: ListOptions,
        /// `-c`.
        conns: bool,
        /// `--timeout`.
        timeout: bool,
        /// `--daemon`.
        daemon: bool,
        /// `--json`.
        json: bool,
    },
    /// `-Z`.
    Zero(Option<KeySpec>),
    /// `--set`.
    Set(u32, u32, u32),
    /// `-S`.
    Save {
        /// `-n`.
        numeric: bool,
    },
    /// `-R`.
    Restore,
    /// `--start-daemon`.
    StartDaemon(String, xvs_api::SyncOptions),
    /// `--stop-daemon`.
    StopDaemon(String),
    /// `-h`.
    Help,
    /// `-v`.
    Version,
}

/// The option names of the legality table, in its column order (reference §8.2).
const OPTS: [&str; 34] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
];

/// Per command: `+` required, `x` illegal, `1` exclusive group, ` ` optional.
const LEGAL: [(&str, &str); 10] = [
    ("add-service", "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx"),
    ("edit-service", "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx"),
    ("delete-service", "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("list", " 11xxxxxxxxx11       xxxxxxx xxxxx"),
    ("add-server", "xx+xxx+    xxxxxxxxxxxxxxxxxx     "),
    ("edit-server", "xx+xxx+    xxxxxxxxxxxxxxxxxx     "),
    ("delete-server", "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("start-daemon", "xxxxxxxxxxx xxxxxxx xxxx    xxxxxx"),
    ("stop-daemon", "xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx"),
    ("zero", "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
];

impl Args {
    fn present(&self) -> [bool; 34] {
        let svc = self.tcp.is_some() || self.udp.is_some() || self.sctp.is_some() || self.fwmark.is_some();
        [
            self.numeric,
            self.connection,
            svc,
            self.scheduler.is_some(),
            self.persistent.is_some(),
            self.netmask.is_some(),
            self.real_server.is_some(),
            self.gatewaying || self.ipip || self.masquerading,
            self.weight.is_some(),
            self.u_threshold.is_some(),
            self.l_threshold.is_some(),
            self.mcast_interface.is_some(),
            self.timeout,
            self.daemon,
            self.stats,
            self.rate,
            self.thresholds,
            self.persistent_conn,
            self.nosort,
            self.syncid.is_some(),
            self.exact,
            self.ops,
            self.pe.is_some(),
            self.sched_flags.is_some(),
            self.mcast_group.is_some(),
            self.mcast_port.is_some(),
            self.mcast_ttl.is_some(),
            self.sync_maxlen.is_some(),
            self.tun_info,
            self.tun_type.is_some(),
            self.tun_port.is_some(),
            self.tun_nocsum,
            self.tun_csum,
            self.tun_remcsum,
        ]
    }

    fn check_legal(&self, cmd: &str) -> Result<(), Usage> {
        let Some((_, row)) = LEGAL.iter().find(|(c, _)| *c == cmd) else {
            // flush, set, restore, save: everything illegal but what the command takes.
            if let Some(i) = self.present().iter().position(|p| *p) {
                if !(cmd == "save" && i == 0) {
                    return Err(err(format!("Illegal '{}' option with the '{cmd}' command", OPTS[i])));
                }
            }
            return Ok(());
        };
        let present = self.present();
        let mut group: Option<usize> = None;
        for (i, rule) in row.bytes().enumerate() {
            match rule {
                b'x' if present[i] => {
                    return Err(err(format!("Illegal '{}' option with the '{cmd}' command", OPTS[i])))
                }
                b'+' if !present[i] => {
                    return Err(err(format!("You need to supply the '{}' option for the '{cmd}' command", OPTS[i])))
                }
                b'1' if present[i] => {
                    if let Some(g) = group {
                        return Err(err(format!(
                            "The option '{}' conflicts with the '{}' option in the '{cmd}' command",
                            OPTS[i], OPTS[g]
                        )));
                    }
                    group = Some(i);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn service(&self, cmd: &str) -> Result<Option<KeySpec>, Usage> {
        let addr = |s: &str, proto: ProtoName| -> Result<KeySpec, Usage> {
            let (addr, port) =
                parse_host_port(s, proto).ok_or_else(|| err("illegal virtual server address[:port] specified"))?;
            Ok(KeySpec::Addr { proto, addr, port })
        };
        if self.ipv6 && self.fwmark.is_none() {
            // ipvsadm's fail() ends the line it was given, which already ends in \n.
            return Err(err("-6 used before -f\n"));
        }
        let kinds = [self.tcp.is_some(), self.udp.is_some(), self.sctp.is_some(), self.fwmark.is_some()];
        if kinds.iter().filter(|k| **k).count() > 1 {
            return Err(err("multiple 'service-address' options specified"));
        }
        let key = if let Some(s) = &self.tcp {
            Some(addr(s, ProtoName::Tcp)?)
        } else if let Some(s) = &self.udp {
            Some(addr(s, ProtoName::Udp)?)
        } else if let Some(s) = &self.sctp {
            Some(addr(s, ProtoName::Sctp)?)
        } else if let Some(f) = &self.fwmark {
            let mark: u32 = f
                .parse()
                .ok()
                .filter(|m| *m > 0)
                .ok_or_else(|| err(format!("invalid fwmark value '{f}' specified")))?;
            Some(KeySpec::Fwmark { mark, ipv6: self.ipv6 })
        } else {
            None
        };
        let _ = cmd;
        Ok(key)
    }
}

/// `host[:port]` as ipvsadm reads it: a literal or a name (first address), `[v6]:port`, a port
/// number or service name. A bare number is refused.
pub fn parse_host_port(s: &str, proto: ProtoName) -> Option<(IpAddr, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        // ipvsadm takes brackets only with a port after them.
        let (h, after) = rest.split_once(']')?;
        (h, Some(after.strip_prefix(':')?))
    } else if s.matches(':').count() > 1 {
        (s, None) // an unbracketed IPv6 literal carries no port
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let addr = match host.parse::<IpAddr>() {
        Ok(a) => a,
        Err(_) => (host, 0).to_socket_addrs().ok()?.find(|a| a.is_ipv4()).map(|a| a.ip())?,
    };
    let port = match port {
        None => 0,
        Some(p) => match p.parse::<u16>() {
            Ok(n) => n,
            Err(_) => crate::services::port_by_name(p, proto)?,
        },
    };
    Some((addr, port))
}

fn number(s: &Option<String>, what: &str, max: u64) -> Result<Option<u64>, Usage> {
    match s {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= max)
            .map(Some)
            .ok_or_else(|| err(format!("illegal {what} specified"))),
    }
}

/// The command letters and long names, for the "command first" rule.
fn is_command(arg: &str) -> bool {
    const LONG: [&str; 16] = [
        "--add-service",
        "--edit-service",
        "--delete-service",
        "--clear",
        "--restore",
        "--save",
        "--add-server",
        "--edit-server",
        "--delete-server",
        "--list",
        "--zero",
        "--set",
        "--start-daemon",
        "--stop-daemon",
        "--help",
        "--version",
    ];
    if let Some(long) = arg.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or(long);
        return LONG.contains(&format!("--{name}").as_str());
    }
    matches!(arg.as_bytes(), [b'-', c, ..] if b"AEDCRSaedLlZhv".contains(c))
}

impl Command {
    /// Parses ipvsadm's command line (`argv[0]` first).
    pub fn parse(argv: &[String]) -> Result<Command, Usage> {
        let argv0 = argv.first().map_or("xvsadm", String::as_str);
        if argv.len() == 1 {
            return Ok(Command::List {
                key: None,
                opts: ListOptions::default(),
                conns: false,
                timeout: false,
                daemon: false,
                json: false,
            });
        }
        if !is_command(&argv[1]) {
            return Err(try_help(argv0));
        }
        let argv = popt_quirks(argv)?;
        let argv = &argv[..];
        let args = match Args::try_parse_from(argv) {
            Ok(a) => a,
            Err(e) => return Err(map_clap(&e, argv)),
        };
        if let Some(extra) = args.rest.first() {
            return Err(err(format!("unexpected argument {extra}")));
        }
        let commands = [
            (args.add_service, "add-service"),
            (args.edit_service, "edit-service"),
            (args.delete_service, "delete-service"),
            (args.clear, "flush"),
            (args.restore, "restore"),
            (args.save, "save"),
            (args.add_server, "add-server"),
            (args.edit_server, "edit-server"),
            (args.delete_server, "delete-server"),
            (args.list, "list"),
            (args.zero, "zero"),
            (args.set.is_some(), "set"),
            (args.start_daemon.is_some(), "start-daemon"),
            (args.stop_daemon.is_some(), "stop-daemon"),
            (args.help, "help"),
            (args.version, "version"),
        ];
        let mut chosen = commands.iter().filter(|(on, _)| *on).map(|(_, n)| *n);
        let cmd = chosen.next().ok_or_else(|| try_help(argv0))?;
        if chosen.next().is_some() {
            // A second command typed as such was refused by popt_quirks already.
            return Err(err("multiple commands specified"));
        }
        match cmd {
            "help" => return Ok(Command::Help),
            "version" => return Ok(Command::Version),
            _ => {}
        }
        if [args.gatewaying, args.ipip, args.masquerading].iter().filter(|m| **m).count() > 1 {
            return Err(err("multiple 'forwarding-method' options specified"));
        }
        args.check_legal(cmd)?;
        let key = args.service(cmd)?;
        match cmd {
            "add-service" | "edit-service" => {
                let key = key.expect("checked: required");
                let scheduler = args.scheduler.clone().unwrap_or_else(|| "wlc".into());
                let persistence = match &args.persistent {
                    None => None,
                    Some(p) => Some(
                        p.parse::<u32>()
                            .ok()
                            .filter(|t| (1..=xvs_core::model::MAX_PERSISTENCE_TIMEOUT).contains(t))
                            .ok_or_else(|| err(format!("invalid timeout value '{p}' specified")))?,
                    ),
                };
                let netmask = match (&args.netmask, &key) {
                    (None, _) => None,
                    (Some(m), KeySpec::Addr { addr: IpAddr::V6(_), .. })
                    | (Some(m), KeySpec::Fwmark { ipv6: true, .. }) => {
                        let p: u8 = m
                            .parse()
                            .ok()
                            .filter(|p| (1..=128).contains(p))
                            .ok_or_else(|| err("illegal ipv6 netmask specified"))?;
                        (p != 128).then(|| p.to_string())
                    }
                    (Some(m), _) => {
                        let a: Ipv4Addr =
                            m.parse().map_err(|_| err("illegal virtual server persistent mask specified"))?;
                        (a != Ipv4Addr::BROADCAST).then(|| a.to_string())
                    }
                };
                let flags = match &args.sched_flags {
                    None => 0,
                    Some(f) => SchedFlags::parse(f, &scheduler).map_err(err)?.bits(),
                };
                if let KeySpec::Addr { port: 0, .. } = key {
                    if persistence.is_none() {
                        return Err(err("Zero port specified for non-persistent service"));
                    }
                }
                if args.ops && !matches!(key, KeySpec::Addr { proto: ProtoName::Udp, .. } | KeySpec::Fwmark { .. }) {
                    return Err(err("One-Packet Scheduling is only for UDP virtual services"));
                }
                let spec = ServiceSpec {
                    key,
                    scheduler,
                    flags,
                    persistence,
                    netmask: if persistence.is_some() { netmask } else { None },
                    one_packet: args.ops,
                    pe: args.pe.clone(),
                    // Not an ipvsadm option: an edit keeps the service's list (xvsd).
                    allowed_sources: Vec::new(),
                };
                Ok(Command::Service { edit: cmd == "edit-service", spec })
            }
            "delete-service" => Ok(Command::DeleteService(key.expect("checked: required"))),
            "flush" => Ok(Command::Clear),
            "add-server" | "edit-server" | "delete-server" => {
                let key = key.expect("checked: required");
                let proto = match key {
                    KeySpec::Addr { proto, .. } => proto,
                    KeySpec::Fwmark { .. } => ProtoName::Tcp,
                };
                let rs = args.real_server.as_deref().expect("checked: required");
                let (addr, mut port) =
                    parse_host_port(rs, proto).ok_or_else(|| err("illegal real server address[:port] specified"))?;
                let svc_port = match key {
                    KeySpec::Addr { port, .. } => port,
                    KeySpec::Fwmark { .. } => 0,
                };
                if port == 0 {
                    port = svc_port;
                }
                if cmd == "delete-server" {
                    return Ok(Command::DeleteServer { key, addr, port });
                }
                let method = if args.masquerading {
                    "masq"
                } else if args.ipip {
                    "tunnel"
                } else {
                    "route"
                };
                if method != "masq" && !matches!(key, KeySpec::Fwmark { .. }) {
                    port = svc_port; // ipvsadm forces the service port for DR and tunnels
                }
                let weight = number(&args.weight, "weight", i32::MAX as u64)?.unwrap_or(1) as i32;
                let u = number(&args.u_threshold, "u_threshold", i32::MAX as u64)?.unwrap_or(0) as u32;
                let l = number(&args.l_threshold, "l_threshold", i32::MAX as u64)?.unwrap_or(0) as u32;
                let svc_v6 =
                    matches!(key, KeySpec::Addr { addr: IpAddr::V6(_), .. } | KeySpec::Fwmark { ipv6: true, .. });
                if addr.is_ipv6() != svc_v6 && method != "tunnel" {
                    return Err(err("Different address family is allowed only for tunneling servers"));
                }
                let tunnel = tunnel_spec(&args, method)?;
                let dest =
                    DestSpec { addr, port, method: method.into(), weight, u_threshold: u, l_threshold: l, tunnel };
                Ok(Command::Server { edit: cmd == "edit-server", key, dest })
            }
            "list" => {
                if (args.connection || args.timeout || args.daemon)
                    && (args.stats || args.rate || args.thresholds || args.persistent_conn)
                    || ((args.timeout || args.daemon) && args.persistent_conn)
                {
                    return Err(err("options conflicts in the list command"));
                }
                let columns = if args.stats {
                    Columns::Stats
                } else if args.rate {
                    Columns::Rate
                } else if args.thresholds {
                    Columns::Thresholds
                } else if args.persistent_conn {
                    Columns::PersistentConn
                } else if args.tun_info {
                    Columns::TunInfo
                } else {
                    Columns::Default
                };
                Ok(Command::List {
                    key,
                    opts: ListOptions { columns, exact: args.exact, nosort: args.nosort, numeric: args.numeric },
                    conns: args.connection,
                    timeout: args.timeout,
                    daemon: args.daemon,
                    json: args.json,
                })
            }
            "zero" => Ok(Command::Zero(key)),
            "set" => {
                let v = args.set.clone().unwrap_or_default();
                if v.len() != 3 {
                    return Err(err("--set option requires 3 timeout values"));
                }
                let mut t = [0u32; 3];
                for (i, s) in v.iter().enumerate() {
                    t[i] = s
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n <= xvs_core::sysctl::MAX_SET_TIMEOUT)
                        .ok_or_else(|| err(format!("invalid timeout value '{s}' specified")))?;
                }
                Ok(Command::Set(t[0], t[1], t[2]))
            }
            "save" => Ok(Command::Save { numeric: args.numeric }),
            "restore" => Ok(Command::Restore),
            "start-daemon" => {
                let role = args.start_daemon.clone().unwrap_or_default();
                if role != "master" && role != "backup" {
                    return Err(err("illegal start-daemon parameter specified"));
                }
                Ok(Command::StartDaemon(role, sync_options(&args)?))
            }
            "stop-daemon" => Ok(Command::StopDaemon(args.stop_daemon.clone().unwrap_or_default())),
            _ => Err(try_help(argv0)),
        }
    }
}

/// The synchronisation daemon's options, checked with ipvsadm's messages.
fn sync_options(args: &Args) -> Result<xvs_api::SyncOptions, Usage> {
    let mut o = xvs_api::SyncOptions::default();
    if let Some(i) = &args.mcast_interface {
        if i.is_empty() || i.len() > 15 {
            return Err(err("illegal mcast-interface specified"));
        }
        o.mcast_interface = i.clone();
    }
    let num = |v: &Option<String>, min: u64, max: u64, what: &str| -> Result<Option<u64>, Usage> {
        match v {
            None => Ok(None),
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .map(Some)
                .ok_or_else(|| err(format!("illegal {what} specified"))),
        }
    };
    if let Some(n) = num(&args.syncid, 0, 255, "syncid")? {
        o.syncid = n as u8;
    }
    if let Some(n) = num(&args.sync_maxlen, 1, 65535 - 28, "sync-maxlen")? {
        o.maxlen = n as u16;
    }
    if let Some(n) = num(&args.mcast_port, 1, 65535, "mcast-port")? {
        o.port = n as u16;
    }
    if let Some(n) = num(&args.mcast_ttl, 1, 255, "mcast-ttl")? {
        o.ttl = n as u8;
    }
    if let Some(g) = &args.mcast_group {
        match g.parse::<std::net::IpAddr>() {
            Ok(a) if a.is_multicast() => o.group = Some(a),
            _ => return Err(err("illegal mcast-group specified")),
        }
    }
    Ok(o)
}

fn tunnel_spec(args: &Args, method: &str) -> Result<TunnelSpec, Usage> {
    let any =
        args.tun_type.is_some() || args.tun_port.is_some() || args.tun_nocsum || args.tun_csum || args.tun_remcsum;
    if any && method != "tunnel" {
        return Err(err("Tunnel options conflict with forward method"));
    }
    let kind = match args.tun_type.as_deref() {
        None | Some("ipip") => TunnelKindName::Ipip,
        Some("gue") => TunnelKindName::Gue,
        Some("gre") => TunnelKindName::Gre,
        Some(_) => return Err(err("illegal tunnel type specified")),
    };
    let port = match &args.tun_port {
        None => 0,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| err("illegal tunnel port specified"))?,
    };
    let csums = [args.tun_nocsum, args.tun_csum, args.tun_remcsum].iter().filter(|b| **b).count();
    match kind {
        TunnelKindName::Ipip if args.tun_port.is_some() || csums > 0 => {
            return Err(err("Illegal 'tun-port' option with the 'tunnel type' command"))
        }
        TunnelKindName::Gue if args.tun_port.is_none() => {
            return Err(err("You need to supply the 'tun-port' option for the 'tunnel type' command"))
        }
        TunnelKindName::Gre if args.tun_remcsum || args.tun_port.is_some() => {
            return Err(err("Illegal 'tun-remcsum' option with the 'tunnel type' command"))
        }
        _ if csums > 1 => {
            return Err(err(
                "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'tunnel type' command",
            ))
        }
        _ => {}
    }
    let csum = if args.tun_csum {
        CsumName::Csum
    } else if args.tun_remcsum {
        CsumName::Remcsum
    } else {
        CsumName::Nocsum
    };
    Ok(TunnelSpec { kind, port, csum })
}

/// What popt does before clap could: `-6` (which clap would take for a negative number) is
/// `--ipv6`, valid only after `-f`; a negative number after `-p` (whose argument is optional)
/// or among `--set`'s values is an unknown option, as popt sees it.
fn popt_quirks(argv: &[String]) -> Result<Vec<String>, Usage> {
    // A second command, even the same one again, is an invalid option to popt.
    if let Some(second) = argv.iter().skip(1).filter(|a| is_command(a)).nth(1) {
        return Err(err(format!("invalid option `{second}'")));
    }
    let mut out = Vec::with_capacity(argv.len());
    let mut fwmark_seen = false;
    let mut in_set = false;
    let numeric = |a: &str| a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| c.is_ascii_digit());
    for (i, a) in argv.iter().enumerate() {
        if i > 0 && (a == "-6" || a == "--ipv6") {
            if !fwmark_seen {
                return Err(err("-6 used before -f\n"));
            }
            out.push("--ipv6".to_string());
            continue;
        }
        if a.starts_with("-f") || a.starts_with("--fwmark-service") {
            fwmark_seen = true;
        }
        let prev = if i > 0 { argv[i - 1].as_str() } else { "" };
        if numeric(a) && (matches!(prev, "-p" | "--persistent") || in_set) {
            return Err(Usage { message: format!("{a}: unknown option"), code: 255 });
        }
        if a == "--set" {
            in_set = true;
        } else if a.starts_with('-') && !numeric(a) {
            in_set = false;
        }
        out.push(a.clone());
    }
    Ok(out)
}

/// Turns clap's error into ipvsadm's wording.
fn map_clap(e: &clap::Error, argv: &[String]) -> Usage {
    use clap::error::{ContextKind, ErrorKind};
    let arg = e.get(ContextKind::InvalidArg).map(|v| v.to_string()).unwrap_or_default();
    let name =
        arg.split_whitespace().next().unwrap_or("").trim_start_matches('-').split(['=', ' ', '<']).next().unwrap_or("");
    match e.kind() {
        ErrorKind::ArgumentConflict => {
            Usage { message: format!("multiple '{}' options specified", long_name(name)), code: 2 }
        }
        ErrorKind::UnknownArgument => Usage { message: format!("{arg}: unknown option"), code: 255 },
        ErrorKind::InvalidValue | ErrorKind::NoEquals | ErrorKind::WrongNumberOfValues | ErrorKind::TooFewValues => {
            // popt names the option as it was typed (`-s`, not `--scheduler`): the last one.
            let typed = argv.iter().rev().find(|a| a.starts_with('-')).cloned();
            let named = arg.split_whitespace().next().unwrap_or("").to_string();
            Usage { message: format!("{}: missing argument", typed.unwrap_or(named)), code: 255 }
        }
        _ => try_help(argv.first().map_or("xvsadm", String::as_str)),
    }
}

fn long_name(short: &str) -> String {
    let map = [
        ("t", "service-address"),
        ("u", "service-address"),
        ("f", "service-address"),
        ("s", "scheduler"),
        ("p", "persistent"),
        ("M", "netmask"),
        ("r", "real-server"),
        ("w", "weight"),
        ("x", "u-threshold"),
        ("y", "l-threshold"),
        ("n", "numeric"),
        ("c", "connection"),
    ];
    map.iter().find(|(s, _)| *s == short).map_or(short.to_string(), |(_, l)| l.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, Usage> {
        let argv: Vec<String> = std::iter::once("ipvsadm").chain(line.split_whitespace()).map(String::from).collect();
        Command::parse(&argv)
    }

    #[test]
    fn persistent_takes_an_optional_value_defaulting_to_360() {
        let p = |l: &str| match parse(l).unwrap() {
            Command::Service { spec, .. } => spec.persistence,
            c => panic!("{c:?}"),
        };
        assert_eq!(p("-A -t 198.18.0.1:80 -p"), Some(360));
        assert_eq!(p("-A -t 198.18.0.1:80 -p 60"), Some(60));
        assert_eq!(p("-A -t 198.18.0.1:80 --persistent=60"), Some(60));
        assert_eq!(p("-A -t 198.18.0.1:80"), None);
    }

    #[test]
    fn clustered_list_flags() {
        assert!(matches!(parse("-Ln").unwrap(), Command::List { opts: ListOptions { numeric: true, .. }, .. }));
        assert!(matches!(parse("-Lnc").unwrap(), Command::List { conns: true, .. }));
        assert!(matches!(parse("-l").unwrap(), Command::List { .. }));
    }

    #[test]
    fn ipvsadm_messages() {
        let e = |l: &str| parse(l).unwrap_err();
        assert_eq!(e("-n -L"), try_help("ipvsadm"));
        assert_eq!(e("-A -t 198.18.0.1"), err("Zero port specified for non-persistent service"));
        assert_eq!(e("-A -t 80"), err("illegal virtual server address[:port] specified"));
        assert_eq!(e("-A -t 198.18.0.1:80 -o"), err("One-Packet Scheduling is only for UDP virtual services"));
        assert_eq!(e("-A -t 198.18.0.1:84 -s rr -b sh-port"), err("incompatible scheduler flag 'sh-port'"));
        assert_eq!(e("-A -f 0 -s rr"), err("invalid fwmark value '0' specified"));
        assert_eq!(e("-A -t 198.18.0.1:86 -s rr -p 0"), err("invalid timeout value '0' specified"));
        assert_eq!(e("-a -t 198.18.0.1:80 -r 198.18.2.4:80 -m -w -1"), err("illegal weight specified"));
        assert_eq!(e("-a -t 198.18.0.1:80 -r 198.18.2.6:80 -m -x -1"), err("illegal u_threshold specified"));
        assert_eq!(
            e("-a -t 198.18.0.1:80 -m"),
            err("You need to supply the 'real-server' option for the 'add-server' command")
        );
        assert_eq!(e("-D -t 198.18.0.1:80 -s rr"), err("Illegal 'scheduler' option with the 'delete-service' command"));
        assert_eq!(e("--set 1 2"), err("--set option requires 3 timeout values"));
        assert_eq!(e("-L -c --stats"), err("options conflicts in the list command"));
        assert_eq!(parse("--foo").unwrap_err().code, 255);
    }

    #[test]
    fn direct_routing_forces_the_service_port_and_weight_65536_is_accepted() {
        match parse("-a -t 198.18.0.1:80 -r 198.18.2.2:8080 -g -w 65536").unwrap() {
            Command::Server { dest, .. } => {
                assert_eq!((dest.port, dest.weight, dest.method.as_str()), (80, 65536, "route"))
            }
            c => panic!("{c:?}"),
        }
        match parse("-a -t 198.18.0.1:80 -r 198.18.2.2:8080 -m").unwrap() {
            Command::Server { dest, .. } => assert_eq!(dest.port, 8080),
            c => panic!("{c:?}"),
        }
    }
}
