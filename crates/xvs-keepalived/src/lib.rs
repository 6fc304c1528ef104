//! # xvs-keepalived
//!
//! Reads keepalived.conf — `virtual_server`, `virtual_server_group`, `real_server` and their
//! health checkers — into xvs's declarative configuration ([`xvs_api::config::Config`]), so an
//! operator's file runs under xvsd unchanged. Whatever xvs cannot honour is an error naming
//! the file and line; VRRP and other blocks xvs does not run yet are reported, never dropped
//! silently.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod syntax;
