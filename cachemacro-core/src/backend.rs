//! The seam every backend plugs into.

use std::any::Any;
use std::time::Duration;

use crate::{AsyncBackend, Error, Value};

/// A storage backend: what `simple`, `null`, memcached, redis and the filesystem implement,
/// and what a custom backend implements to plug into [`Cache`](crate::Cache).
///
/// Keys arrive as the caller wrote them: a backend that cannot store some keys as they are
/// (length, characters) maps them consistently, and applies its own key prefix. `ttl` is
/// `None` for entries that never expire.
///
/// # Cost
///
/// Each method documents its cost in *round trips* (request–reply exchanges with a server;
/// for in-process backends read "lock-protected map operations"). The memoize hit path relies
/// on [`Backend::get_pair`] costing one round trip, so a remote backend must keep that
/// promise, even when the two keys live on different servers (write both requests before
/// reading either reply).
///
/// # Blocking
///
/// Methods are synchronous. A backend that does I/O and has an async form offers it with
/// [`Backend::as_async`] (memcached and redis do, with the `tokio` feature): async callers
/// await that. Otherwise a backend that does I/O says so with [`Backend::is_blocking`], and
/// async callers run its calls on a blocking thread pool instead of the async runtime's
/// threads; in-process backends return `false` and are called directly.
pub trait Backend: Any + Send + Sync {
    /// A short name for logs (`"simple"`, `"memcached"`, …).
    fn name(&self) -> &'static str;

    /// Whether calls may block on I/O. Default: `true`.
    fn is_blocking(&self) -> bool {
        true
    }

    /// Whether the backend keeps [`Value`]s as they are, in process, so callers may hand it
    /// unserialized objects ([`Value::object`]). Default: `false`, values arrive encoded.
    fn keeps_objects(&self) -> bool {
        false
    }

    /// This backend's async form, if it has one: async callers then await it instead of
    /// running the methods below on the blocking pool. Default: `None`.
    fn as_async(&self) -> Option<&dyn AsyncBackend> {
        None
    }

    /// The live value at `key`. Cost: one round trip.
    fn get(&self, key: &str) -> Result<Option<Value>, Error>;

    /// The live values at two keys, fetched together. Cost: one round trip.
    ///
    /// This is the memoize hit path (function version + value). The default goes through
    /// [`Backend::get_many`].
    fn get_pair(&self, first: &str, second: &str) -> Result<(Option<Value>, Option<Value>), Error> {
        let mut both = self.get_many(&[first, second])?.into_iter();
        Ok((both.next().flatten(), both.next().flatten()))
    }

    /// The live values at `keys`, in order. Cost: one round trip, whatever the number of
    /// keys and servers.
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error>;

    /// Whether a live value exists at `key`. Cost: one round trip.
    fn has(&self, key: &str) -> Result<bool, Error> {
        Ok(self.get(key)?.is_some())
    }

    /// Stores `value` at `key`, replacing what was there. Cost: one round trip.
    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), Error>;

    /// Stores `value` at `key` only if no live value is there, atomically with respect to
    /// every other writer of the backend. `Ok(false)`: a value existed, nothing was written.
    /// Cost: one round trip.
    fn add(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<bool, Error>;

    /// Stores every item. Cost: one round trip.
    fn set_many(&self, items: &[(&str, Value)], ttl: Option<Duration>) -> Result<(), Error>;

    /// Removes `key`; `Ok(true)` if a value was there. Cost: one round trip.
    fn delete(&self, key: &str) -> Result<bool, Error>;

    /// Removes every key; returns how many held a value. Cost: one round trip.
    fn delete_many(&self, keys: &[&str]) -> Result<usize, Error>;

    /// Adds `delta` to the integer at `key` atomically (a missing key counts as 0) and
    /// returns the new value. Cost: one round trip (more on a backend without a native
    /// counter, which then documents it).
    fn inc(&self, key: &str, delta: i64) -> Result<i64, Error>;

    /// Subtracts `delta`; see [`Backend::inc`].
    fn dec(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.inc(
            key,
            delta
                .checked_neg()
                .ok_or_else(|| Error::NotANumber(key.to_owned()))?,
        )
    }

    /// Removes every entry of this cache: only keys under its prefix where the backend can
    /// tell them apart. Cost: proportional to the number of entries.
    fn clear(&self) -> Result<(), Error>;
}
