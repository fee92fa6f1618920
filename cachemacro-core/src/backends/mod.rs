//! The backends that ship with cachemacro, each behind its Cargo feature.
//!
//! [`SimpleBackend`] (in-process, the default) and [`NullBackend`] are always there;
//! [`memcached`], [`redis`] and [`filesystem`] come with the features of the same names, all
//! on by default. `Cache::builder()` and `Cache::from_env()` choose among them; a backend of
//! your own implements [`Backend`](crate::Backend).

#[cfg(feature = "filesystem")]
pub mod filesystem;
#[cfg(feature = "memcached")]
pub mod memcached;
mod null;
#[cfg(feature = "redis")]
pub mod redis;
mod simple;

pub use null::NullBackend;
pub(crate) use simple::LocalVersion;
pub use simple::{SimpleBackend, DEFAULT_THRESHOLD};
