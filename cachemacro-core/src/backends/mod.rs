//! The backends that ship with cachemacro.

mod null;
mod sieve;
mod simple;

pub use null::NullBackend;
pub use simple::{SimpleBackend, DEFAULT_THRESHOLD};
