//! The one error type of cachemacro.

use std::fmt;

/// What went wrong in a cache operation or in configuring a cache.
///
/// Memoized and cached functions never return this: they log it and run their body.
/// The direct API on [`Cache`](crate::Cache) and the generated `*_delete_*` helpers do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable or configuration field holds a value that cannot be used.
    Config {
        /// The variable or field, e.g. `CACHE_DEFAULT_TIMEOUT`.
        var: String,
        /// Why the value was refused.
        reason: String,
    },
    /// [`init`](crate::init) was called after the process-wide cache was already set or used.
    AlreadyInitialized,
    /// The backend could not carry out the request (I/O error, timeout, refused command).
    Backend(String),
    /// A value could not be encoded, or bytes read back could not be decoded as the
    /// requested type.
    Codec(String),
    /// The operation does not apply to the stored value (e.g. `inc` on a non-integer).
    NotANumber(String),
}

impl Error {
    /// A [`Error::Config`] naming the variable or field at fault.
    pub fn config(var: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            var: var.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { var, reason } => {
                write!(f, "invalid cache configuration: {var}: {reason}")
            }
            Error::AlreadyInitialized => f.write_str(
                "cachemacro::init called after the process-wide cache was already set or used",
            ),
            Error::Backend(msg) => write!(f, "cache backend error: {msg}"),
            Error::Codec(msg) => write!(f, "cache value codec error: {msg}"),
            Error::NotANumber(key) => write!(f, "cache value at {key:?} is not an integer"),
        }
    }
}

impl std::error::Error for Error {}
