//! # xvs-core
//!
//! The behaviour of Linux IPVS as a deterministic library: virtual services and real servers
//! with the kernel's validation, the 14 schedulers, connections with the TCP and UDP state
//! machines and their timeouts, persistence templates, connection thresholds, statistics and
//! the rate estimator.
//!
//! It does no I/O: no sockets, no files, no threads, no clock. Time is an argument
//! ([`Instant`]), randomness is an argument ([`RandomSource`]), and decisions are returned as
//! values ([`Verdict`]). That makes every behaviour testable without root, and lets the same
//! code serve three users:
//!
//! * `xvsd`, which keeps its configuration in [`Services`] and computes the tables that the
//!   XDP dataplane indexes (sh, dh and mh buckets, wrr state);
//! * the dataplane tests, which replay packet sequences through [`Balancer`] and through the
//!   eBPF programs and compare the real servers each picks;
//! * the golden tests, which pin each scheduler to sequences derived from the kernel.
//!
//! `shared/reference/ipvs.md` is the specification; `docs/schedulers.md` maps each scheduler
//! to its section and its tests.

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod addr;
mod arena;
mod balancer;
pub mod conn;
mod dest;
pub mod model;
pub mod pe_sip;
pub mod sched;
mod service;
pub mod stats;
pub mod sysctl;
pub mod time;

pub use addr::Family;
pub use balancer::{Balancer, DropReason, Forward, Packet, Verdict};
pub use conn::{Conn, ConnFlags, ConnId, ConnState, ConnTable, SctpChunks, SctpState, TcpFlags, TcpState};
pub use dest::{Dest, DestId, DestView};
pub use model::{
    DestConfig, Errno, Error, ForwardMethod, Netmask, Protocol, SchedFlags, ServiceConfig, ServiceKey, SourcePrefix,
    Tunnel, TunnelCsum, TunnelKind,
};
pub use sched::{RandomSource, SchedKind, SplitMix64};
pub use service::{DestCounters, Service, ServiceId, Services};
pub use stats::{Counters, Rates, Stats};
pub use sysctl::{Sysctl, Timeouts};
pub use time::Instant;
