//! Why a configuration request is refused, with the kernel's errno for each reason.

use core::fmt;

/// The kernel errno that IPVS returns for a refused request. ipvsadm picks its message from the
/// errno and the command, so the CLI needs it to print the same words.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    /// `EEXIST`: the object already exists.
    Exist,
    /// `ESRCH`: no such service.
    Srch,
    /// `ENOENT`: no such destination, or unknown scheduler/persistence engine.
    NoEnt,
    /// `EINVAL`: an invalid value.
    Inval,
    /// `ERANGE`: a value out of range.
    Range,
    /// `ENOMEM`: a table is full.
    NoMem,
    /// `EOPNOTSUPP`: valid, but not supported here.
    OpNotSupp,
}

impl Errno {
    /// The numeric errno (Linux values).
    pub const fn code(self) -> i32 {
        match self {
            Errno::Exist => 17,
            Errno::Srch => 3,
            Errno::NoEnt => 2,
            Errno::Inval => 22,
            Errno::Range => 34,
            Errno::NoMem => 12,
            Errno::OpNotSupp => 95,
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Errno::Exist => "EEXIST",
            Errno::Srch => "ESRCH",
            Errno::NoEnt => "ENOENT",
            Errno::Inval => "EINVAL",
            Errno::Range => "ERANGE",
            Errno::NoMem => "ENOMEM",
            Errno::OpNotSupp => "EOPNOTSUPP",
        };
        f.write_str(name)
    }
}

/// A refused configuration request. Every variant leaves the state exactly as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A service with this key exists already.
    #[error("service already exists")]
    ServiceExists,
    /// The service does not exist.
    #[error("no such service")]
    NoSuchService,
    /// The scheduler name is not one of the 14 IPVS schedulers (or `none`).
    #[error("scheduler '{0}' not found (known: rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos)")]
    SchedulerNotFound(String),
    /// The persistence engine is unknown.
    #[error("persistence engine '{0}' not found")]
    PeNotFound(String),
    /// The real server exists already in this service.
    #[error("destination already exists")]
    DestExists,
    /// The real server is not in this service.
    #[error("no such destination")]
    NoSuchDest,
    /// The weight is negative.
    #[error("weight {0} out of range (0..2147483647)")]
    WeightRange(i64),
    /// The lower threshold is above the upper one.
    #[error("lower threshold {lower} is above upper threshold {upper}")]
    ThresholdRange {
        /// The upper threshold.
        upper: u32,
        /// The lower threshold.
        lower: u32,
    },
    /// A value the kernel rejects with `EINVAL`; the text says which and why.
    #[error("{0}")]
    Invalid(String),
    /// Valid for IPVS, but this implementation cannot do it; the text says what to use instead.
    #[error("{0}")]
    Unsupported(String),
    /// A table has no room left; the text names the limit to raise.
    #[error("{0}")]
    Full(String),
}

impl Error {
    /// The errno the kernel returns for this refusal.
    pub fn errno(&self) -> Errno {
        match self {
            Error::ServiceExists | Error::DestExists => Errno::Exist,
            Error::NoSuchService => Errno::Srch,
            Error::SchedulerNotFound(_) | Error::PeNotFound(_) | Error::NoSuchDest => Errno::NoEnt,
            Error::WeightRange(_) | Error::ThresholdRange { .. } => Errno::Range,
            Error::Invalid(_) => Errno::Inval,
            Error::Unsupported(_) => Errno::OpNotSupp,
            Error::Full(_) => Errno::NoMem,
        }
    }
}
