//! Errors of the dataplane layer: what was being done, and the kernel's or aya's reason.

/// A dataplane operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or verifying an eBPF object failed.
    #[error("{what}: {source}")]
    Load {
        /// What was being loaded.
        what: String,
        /// The loader's error.
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// A map operation failed.
    #[error("{what}: {source}")]
    Map {
        /// Which map and operation.
        what: String,
        /// aya's error.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// Loading, attaching or running a program failed.
    #[error("{what}: {source}")]
    Program {
        /// Which program and operation.
        what: String,
        /// aya's error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A table of the dataplane has no room; the message names the setting to raise.
    #[error("{0}")]
    Capacity(String),
    /// Something the dataplane does not handle, with what to do instead.
    #[error("{0}")]
    Unsupported(String),
}

pub(crate) trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> Context<T> for Result<T, aya::maps::MapError> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|e| Error::Map { what: what(), source: Box::new(e) })
    }
}

impl<T> Context<T> for Result<T, aya::programs::ProgramError> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|e| Error::Program { what: what(), source: Box::new(e) })
    }
}

impl<T> Context<T> for Result<T, aya::EbpfError> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|e| Error::Load { what: what(), source: Box::new(e) })
    }
}
