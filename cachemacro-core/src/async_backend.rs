//! The async side of the [`Backend`](crate::Backend) seam.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::{Error, Value};

/// A boxed future that may move between threads: what [`AsyncBackend`] methods return, so the
/// trait stays usable as `&dyn AsyncBackend`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a read of two keys gives: the value at each, if any.
pub type Pair = (Option<Value>, Option<Value>);

/// A backend's async form: what async callers (`async fn` marked `#[memoize]` or
/// `#[cached]`, [`Cache::aio`](crate::Cache::aio)) await directly, without handing the call
/// to a blocking thread pool.
///
/// A [`Backend`](crate::Backend) offers it through
/// [`Backend::as_async`](crate::Backend::as_async). Backends without one (the filesystem, a
/// custom backend that does not implement it) are called on the blocking pool when they
/// say they block ([`Backend::is_blocking`](crate::Backend::is_blocking)), and in place when
/// they do not (the in-process ones).
///
/// # Cost
///
/// As for the sync methods, each method documents its cost in round trips; the memoized hit
/// relies on [`AsyncBackend::get_pair`] costing one. A method's future must be
/// **cancellation-safe**: dropped at any point (an HTTP client went away), it leaves the
/// backend's connections usable and its reply is never handed to another caller.
pub trait AsyncBackend: Send + Sync {
    /// The live value at `key`. Cost: one round trip.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, Error>>;

    /// The live values at two keys, fetched together. Cost: one round trip (the memoize hit
    /// path: function version and value).
    fn get_pair<'a>(
        &'a self,
        first: &'a str,
        second: &'a str,
    ) -> BoxFuture<'a, Result<Pair, Error>>;

    /// The live values at `keys`, in order. Cost: one round trip.
    fn get_many<'a>(
        &'a self,
        keys: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<Option<Value>>, Error>>;

    /// Whether a live value exists at `key`. Cost: one round trip.
    fn has<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move { Ok(self.get(key).await?.is_some()) })
    }

    /// Stores `value` at `key`. Cost: one round trip.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Value,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Stores `value` only if no live value is at `key`; `Ok(false)`: nothing written.
    /// Cost: one round trip.
    fn add<'a>(
        &'a self,
        key: &'a str,
        value: Value,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<bool, Error>>;

    /// Stores every item. Cost: one round trip.
    fn set_many<'a>(
        &'a self,
        items: &'a [(&'a str, Value)],
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Removes `key`; `Ok(true)` if a value was there. Cost: one round trip.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>>;

    /// Removes every key; how many held a value. Cost: one round trip.
    fn delete_many<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<usize, Error>>;

    /// Adds `delta` to the integer at `key` (missing = 0). Cost: one round trip.
    fn inc<'a>(&'a self, key: &'a str, delta: i64) -> BoxFuture<'a, Result<i64, Error>>;

    /// Subtracts `delta` from the integer at `key`. Cost: one round trip.
    fn dec<'a>(&'a self, key: &'a str, delta: i64) -> BoxFuture<'a, Result<i64, Error>>;

    /// Removes every entry of this cache (only its prefix where the backend can tell).
    /// Cost: proportional to the number of entries.
    fn clear(&self) -> BoxFuture<'_, Result<(), Error>>;
}
