//! # xvs-dataplane
//!
//! The XDP half of xvs: compiles (at build time) and loads the eBPF programs in `bpf/`, keeps
//! their maps equal to the core's services and real servers ([`Publisher`]), reads back the
//! counters, and runs the sweep that expires connections. `docs/dataplane.md` describes the
//! maps, the packet path of each forwarding method and the decisions behind them.

#![warn(missing_docs)]

pub mod adopt;
mod alloc;
pub mod aux;
pub mod batch;
pub mod bpffs;
pub mod director;
mod error;
pub mod netdev;
pub mod publish;
pub mod readback;
pub mod sweep;
pub mod trace;
pub mod walk;

pub use alloc::RangeAlloc;
pub use aux::{Aux, BareCfg, Decap};
pub use director::{action, Attached, Director, LoadOptions, Maps, Prealloc, RunResult};
pub use error::Error;
pub use publish::{addr_words, words_addr, Publisher};
pub use readback::{ConnTables, CounterReader, DestCache};
pub use sweep::{SweepDone, SweepPlan, SweepReport, SweepRunner, SweepTarget, Sweeper};
pub use trace::TraceReader;
pub use walk::{ConnWalk, WalkStep};
