//! # xvsadm
//!
//! The command line of xvs. It takes ipvsadm's options and prints ipvsadm's formats and
//! messages with its exit codes, so scripts written for ipvsadm work unchanged; it adds
//! `--json` listings, `xvsadm apply -f FILE` and the live view `xvsadm top`. The work is done by `xvsd`, reached over its
//! Unix socket.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod applied;
pub mod args;
pub mod client;
pub mod format;
pub mod run;
pub mod services;
pub mod top;
pub mod trace;
