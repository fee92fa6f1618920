//! The runtime of [cachemacro](https://docs.rs/cachemacro): [`Cache`], the [`Backend`] seam,
//! the shipped backends, keys and function versions.
//!
//! Most users depend on the `cachemacro` facade, which re-exports this crate and adds the
//! `#[memoize]` and `#[cached]` attributes.
//!
//! ```
//! use cachemacro_core::Cache;
//!
//! let cache = Cache::builder().simple().threshold(100).build()?;
//! cache.set("answer", &42u32, 0)?; // 0 = never expires
//! assert_eq!(cache.get::<u32>("answer")?, Some(42));
//! assert!(!cache.add("answer", &7u32, 0)?);
//! # Ok::<(), cachemacro_core::Error>(())
//! ```
#![warn(missing_docs, unreachable_pub)]

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod aio;
mod async_backend;
mod backend;
pub mod backends;
mod builder;
mod cache;
mod config;
mod error;
mod flight;
#[cfg(feature = "minijinja")]
pub mod fragment;
mod global;
mod keys;
mod memo;
mod redact;
#[cfg(feature = "sessions")]
pub mod session;
mod stats;
mod timeout;
mod value;
#[cfg(feature = "tower")]
pub mod view;

pub use aio::AsyncCache;
pub use async_backend::{AsyncBackend, BoxFuture, Pair};
pub use backend::Backend;
pub use builder::{CacheBuilder, DEFAULT_TIMEOUT};
pub use cache::Cache;
pub use config::CacheConfig;
pub use error::Error;
pub use global::{cache, init};
pub use keys::make_template_fragment_key;
pub use stats::Stats;
pub use timeout::Timeout;
pub use value::{Object, Value};

#[cfg(test)]
mod proptests;
