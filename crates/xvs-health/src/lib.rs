//! # xvs-health
//!
//! Health checks of real servers with keepalived's semantics.
//!
//! - [`spec`]: checks as validated values (TCP_CHECK, HTTP_GET, SSL_GET, UDP_CHECK, DNS_CHECK,
//!   MISC_CHECK and their options, with keepalived's defaults).
//! - [`plan`]: a configuration's services with their checks, quorum and sorry server.
//! - [`monitor`]: the state machines — retries, alpha, real servers alive when all their checks
//!   pass, quorum with hysteresis, sorry server — as a pure value driven by time and outcomes,
//!   and the table the services should have.
//! - [`probe`]: one attempt of a check, with its timeout always enforced.
//! - [`script`]: notify, quorum and MISC_CHECK scripts, run as keepalived runs them.
//!
//! `xvsd` runs the probes (bounded in number), feeds the outcomes to the monitor, and applies
//! the table it asks for; `docs/health.md` compares the behaviour with keepalived's.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod monitor;
pub mod plan;
pub mod probe;
pub mod script;
pub mod spec;

pub use monitor::{CheckId, Event, Monitor, Saved};
pub use plan::Plan;
pub use probe::Outcome;
pub use spec::CheckSpec;
pub use xvs_api::health::{CheckStatus, LastResult, ServerStatus, ServiceStatus};
