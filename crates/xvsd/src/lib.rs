//! # xvsd
//!
//! The xvs daemon. It owns the XDP dataplane (loading, attaching, pinning), keeps the
//! configuration in `xvs-core`, applies every change atomically, serves `xvsadm` on a Unix
//! socket only root can use, runs the periodic work (expiry, counters, rate estimation),
//! exports Prometheus metrics, and logs with `tracing`.
//!
//! The logic lives in [`control::Control`], which tests drive directly; `main.rs` wires it to
//! the socket, the timers and the signals.

#![warn(missing_docs)]

pub mod bgp;
pub mod conns;
pub mod control;
pub mod delta;
pub mod fwmark;
pub mod health;
pub mod metrics;
pub mod options;
pub mod refresh;
pub mod server;
pub mod state;
pub mod sync;
pub mod trace;
pub mod vrrp;
pub mod web;

/// The current time on the monotonic clock, as the core counts it.
pub fn now() -> xvs_core::Instant {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("the monotonic clock exists");
    xvs_core::Instant::from_nanos(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}
