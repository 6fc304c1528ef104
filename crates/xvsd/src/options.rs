//! xvsd's command line, in the library so that the package's man page and shell completions
//! are generated from the same definition (`xvs-package`).

use std::path::PathBuf;

use clap::Parser;

/// Which connection tables `--prealloc-conns` preallocates.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreallocConns {
    /// None: memory follows the connections present.
    None,
    /// The IPv4 connection and reply tables.
    Ipv4,
    /// The IPv4 and IPv6 tables.
    All,
}

impl From<PreallocConns> for xvs_dataplane::Prealloc {
    fn from(p: PreallocConns) -> Self {
        match p {
            PreallocConns::None => xvs_dataplane::Prealloc::None,
            PreallocConns::Ipv4 => xvs_dataplane::Prealloc::Ipv4,
            PreallocConns::All => xvs_dataplane::Prealloc::All,
        }
    }
}

/// The xvs daemon: loads the XDP load balancer, keeps its configuration, serves xvsadm.
///
/// Example: `xvsd -i eth0 -i eth1` balances the services configured with xvsadm on traffic
/// arriving on eth0 and eth1. Stopping xvsd leaves forwarding running (the program and its
/// tables are pinned); starting it again picks everything back up. `xvsd --purge` removes it all.
#[derive(Parser, Debug)]
#[command(name = "xvsd", version)]
pub struct Options {
    /// Interface to attach the load balancer to (repeat for each).
    #[arg(short = 'i', long = "interface")]
    pub interfaces: Vec<String>,
    /// Use generic (skb) XDP instead of trying native mode first. Without it, veth
    /// interfaces get generic mode anyway unless --native is given: native XDP on a veth loses
    /// what it sends back to a peer that runs no XDP program (ICMP errors, redirects).
    #[arg(long, conflicts_with = "native")]
    pub generic: bool,
    /// Try native XDP on every interface, veth included (for peers that run XDP programs).
    #[arg(long)]
    pub native: bool,
    /// Control socket for xvsadm.
    #[arg(long, default_value = xvs_api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Where the maps and links are pinned (a versioned directory is made inside).
    #[arg(long, default_value = "/sys/fs/bpf/xvs")]
    pub pin_dir: PathBuf,
    /// Address of the Prometheus metrics (/metrics) and the status page (/) ("off" to disable).
    #[arg(long, default_value = "127.0.0.1:9642")]
    pub metrics: String,
    /// Connections per address family. Nothing evicts a connection: a full table refuses new
    /// ones. Memory is taken per connection present (about 100 bytes, twice that with NAT), plus
    /// 16 bytes per entry of bucket array at start.
    #[arg(long, default_value_t = 4_194_304)]
    pub max_conns: u32,
    /// Take the connection and NAT reply tables' memory when they are created, as Katran's and
    /// Cilium's preallocated tables do: `ipv4` (about 170 bytes × --max-conns: 700 MB at the
    /// default), `all` (IPv6 too: about 240 bytes more a connection), or `none` (memory per
    /// connection present). A new connection then takes a free entry instead of allocating one,
    /// and its entries cannot fail for want of memory (persistence templates are still
    /// allocated one by one). Only tables made at this start are
    /// affected: tables pinned by an earlier xvsd keep how they were made (`xvsd --purge`
    /// starts afresh, dropping every connection).
    #[arg(long, value_enum, default_value_t = PreallocConns::None)]
    pub prealloc_conns: PreallocConns,
    /// Connections not yet assured (TCP before ESTABLISHED, UDP before its second packet),
    /// both families; past it new connections are refused, so a SYN flood holds at most this
    /// many entries and never takes the room of established ones.
    #[arg(long, default_value_t = 262_144)]
    pub max_half_open: u32,
    /// Most virtual services.
    #[arg(long, default_value_t = 131_072)]
    pub max_services: u32,
    /// Most real servers.
    #[arg(long, default_value_t = 262_144)]
    pub max_dests: u32,
    /// Configuration to apply at start and on SIGHUP (as `xvsadm apply -f`): xvs's TOML or
    /// YAML, or a keepalived.conf (a name ending in .conf) with its health checks. Its VRRP
    /// instances run too (started once; a reload does not change them).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// keepalived.conf's configuration id (keepalived's -i): `@ID` lines apply only to it
    /// (default: the host name up to its first dot, as keepalived).
    #[arg(long = "config-id")]
    pub config_id: Option<String>,
    /// Where the health checkers' states are kept across restarts (default: under
    /// /run/xvs/state, named after the pin directory).
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// Detach the program when xvsd stops (forwarding stops with it).
    #[arg(long)]
    pub detach_on_exit: bool,
    /// Remove every pinned map and link (stops forwarding and forgets the configuration), then exit.
    #[arg(long)]
    pub purge: bool,
}
