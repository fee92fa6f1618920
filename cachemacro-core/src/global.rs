//! The process-wide default cache.

use std::sync::OnceLock;

use crate::{Cache, Error};

static GLOBAL: OnceLock<Cache> = OnceLock::new();

/// Installs the process-wide default cache, used by `#[memoize]` and `#[cached]` functions
/// without a `cache = …` option. Call it once, early in `main`.
///
/// A second call, or a call after the default was already used (which creates an in-memory
/// one), returns [`Error::AlreadyInitialized`] and changes nothing.
///
/// ```
/// cachemacro_core::init(cachemacro_core::Cache::builder().simple().build()?)?;
/// assert!(cachemacro_core::init(cachemacro_core::Cache::builder().null().build()?).is_err());
/// # Ok::<(), cachemacro_core::Error>(())
/// ```
pub fn init(cache: Cache) -> Result<(), Error> {
    GLOBAL.set(cache).map_err(|_| Error::AlreadyInitialized)
}

/// The process-wide default cache: the one given to [`init`], or an in-memory cache with
/// default settings created on first use when `init` was not called.
pub fn cache() -> &'static Cache {
    GLOBAL.get_or_init(|| {
        crate::CacheBuilder::default()
            .build()
            .expect("the default in-memory cache always builds")
    })
}
