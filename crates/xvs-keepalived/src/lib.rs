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
pub mod syntax;
mod vrrp;

pub use convert::{Loaded, Notice};

use std::path::Path;

/// Reads a keepalived.conf (with its includes) into a configuration; errors name the file and
/// line.
pub fn load(path: &Path) -> Result<Loaded, syntax::ParseError> {
    convert::convert(&syntax::parse_file(path)?)
}

/// Reads keepalived.conf text as if it were the file `name`.
pub fn load_str(name: &Path, text: &str) -> Result<Loaded, syntax::ParseError> {
    convert::convert(&syntax::parse_str(name, text)?)
}

/// True when a configuration file should be read as keepalived.conf: its name ends in `.conf`
/// (xvs's own files are `.toml`, `.yaml` or `.yml`).
pub fn is_keepalived_path(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".conf")
}
