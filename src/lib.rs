//! # cachemacro
//!
//! What Flask-Caching gives Flask apps, for Rust: put `#[memoize]` or `#[cached]` on a
//! function, invalidate one function or one argument set with generated helpers, and choose
//! the backend in `main`.
//!
//! ```
//! use cachemacro::{cached, memoize};
//!
//! #[memoize(timeout = 50)]
//! fn user_has_membership(user: &str, role: &str) -> bool {
//!     // an expensive query…
//!     user == "demo" && role == "admin"
//! }
//!
//! #[cached(timeout = 50, key_prefix = "all_comments")]
//! fn get_all_comments() -> Vec<String> {
//!     vec!["first!".to_owned()]
//! }
//!
//! fn main() -> Result<(), cachemacro::Error> {
//!     cachemacro::init(cachemacro::Cache::from_env()?)?;
//!     assert!(user_has_membership("demo", "admin")); // computed
//!     assert!(user_has_membership("demo", "admin")); // from the cache
//!     user_has_membership_delete_memoized("demo", "admin")?; // this argument set
//!     user_has_membership_delete_memoized_all()?; // every argument set, every process
//!     assert_eq!(get_all_comments(), ["first!"]);
//!     cachemacro::cache().delete("all_comments")?;
//!     Ok(())
//! }
//! ```
//!
//! Every option, the generated helpers, the key format and the return-type rules are
//! documented on [`memoize`] and [`cached`]; the backends and their settings on
//! [`backends`] and [`CacheBuilder`]. The README maps Flask-Caching's names to these.
//!
//! For web services, three opt-in features integrate with the crates they already use:
//! `tower` (whole views: `view::ViewCacheLayer`, a tower `Layer` for axum routers),
//! `minijinja` (template fragments: `fragment::FragmentCache`) and `sessions`
//! (`session::CacheSessionStore`, a `tower_sessions::SessionStore` over any cache).
#![warn(missing_docs, unreachable_pub)]

pub use cachemacro_core::{
    backends, cache, init, make_template_fragment_key, AsyncBackend, AsyncCache, Backend,
    BoxFuture, Cache, CacheBuilder, CacheConfig, Error, Object, Pair, Stats, Timeout, Value,
    DEFAULT_TIMEOUT,
};
pub use cachemacro_derive::{cached, memoize};

#[cfg(feature = "minijinja")]
pub use cachemacro_core::fragment;
#[cfg(feature = "sessions")]
pub use cachemacro_core::session;
#[cfg(feature = "tower")]
pub use cachemacro_core::view;

/// What generated code calls. Not a stable API: names and signatures change without notice.
#[doc(hidden)]
pub use cachemacro_core::__private;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
