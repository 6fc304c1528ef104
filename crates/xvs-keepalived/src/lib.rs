//! # xvs-keepalived
//!
//! Reads keepalived.conf — `virtual_server`, `virtual_server_group`, `real_server` and their
//! health checkers — into xvs's declarative configuration ([`xvs_api::config::Config`]), so an
//! operator's file runs under xvsd unchanged. Whatever xvs cannot honour is an error naming
//! the file and line; its VRRP blocks become xvs's VRRP entries; blocks xvs does not run are reported, never dropped
//! silently.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod convert;
pub mod params;
pub mod syntax;
mod vrrp;

pub use convert::{Loaded, Notice};

use std::path::Path;

/// Reads a keepalived.conf (with its includes) into a configuration, for this host's
/// configuration id ([`default_config_id`]); errors name the file and line.
pub fn load(path: &Path) -> Result<Loaded, syntax::ParseError> {
    load_for(path, default_config_id().as_deref())
}

/// [`load`] for the configuration id `config_id` (keepalived's `-i`; `@ID` lines).
pub fn load_for(path: &Path, config_id: Option<&str>) -> Result<Loaded, syntax::ParseError> {
    convert::convert(&syntax::parse_file(path, config_id)?)
}

/// Reads keepalived.conf text as if it were the file `name`, for this host's configuration id.
pub fn load_str(name: &Path, text: &str) -> Result<Loaded, syntax::ParseError> {
    convert::convert(&syntax::parse_str(name, text, default_config_id().as_deref())?)
}

/// [`load_str`] for the configuration id `config_id`.
pub fn load_str_for(name: &Path, text: &str, config_id: Option<&str>) -> Result<Loaded, syntax::ParseError> {
    convert::convert(&syntax::parse_str(name, text, config_id)?)
}

/// keepalived's configuration id when it is run without `-i`: the host name up to its first
/// dot.
pub fn default_config_id() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let short = name.trim().split('.').next()?.to_string();
    (!short.is_empty()).then_some(short)
}

/// True when a configuration file should be read as keepalived.conf: its name ends in `.conf`
/// (xvs's own files are `.toml`, `.yaml` or `.yml`).
pub fn is_keepalived_path(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".conf")
}
