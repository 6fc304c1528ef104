//! Announcing VIPs to routers through a routing daemon, as a pure library (no I/O, no clock).
//!
//! Many directors behind a router's ECMP each announce the VIPs they can serve as host routes
//! (/32, /128) over BGP; the router spreads flows over the directors that announce. The BGP
//! speaker is a real routing daemon (BIRD); xvsd decides *what* to announce and tells the daemon
//! through its own control interface. This crate holds the decisions:
//!
//! - [`readiness`]: whether a VIP can be served here, from its services' states (real servers
//!   left, quorum, VRRP standby), with the reason when it cannot;
//! - [`Announcer`]: the announced set, the operator's drain and the daemon's stop, and the
//!   pushes to the routing daemon with retries (driven by `handle_*`/`poll` with time passed in);
//! - [`bird`]: the file BIRD includes (static routes through the liveness interface) and the
//!   replies of BIRD's control socket.
//!
//! The routes point at an interface that xvsd holds open (a TUN device that the kernel removes
//! when xvsd's last descriptor closes): when xvsd dies, BIRD sees the interface go and withdraws
//! every route at once, with no help from xvsd.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod announcer;
pub mod bird;
pub mod ready;

pub use announcer::{Announcer, Push, Settings, VipStatus};
pub use ready::{readiness, Policy, Reason, ServiceInput};
