//! [`Cache`]: a backend plus defaults, counters and the Flask-named direct API.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backends::SimpleBackend;
use crate::flight::Flights;
use crate::stats::{Counter, Counters};
use crate::{Backend, CacheBuilder, CacheConfig, Error, Stats, Timeout, Value};

/// A cache: what `#[memoize]` and `#[cached]` read and write, and the Flask-named direct API.
///
/// Cheap to clone (one reference count); clones share the backend and the counters.
///
/// ```
/// use cachemacro_core::Cache;
///
/// let cache = Cache::builder().simple().build()?;
/// cache.set("greeting", &"hello".to_owned(), 60)?;
/// assert_eq!(cache.get::<String>("greeting")?.as_deref(), Some("hello"));
/// assert_eq!(cache.inc("visits", 1)?, 1);
/// # Ok::<(), cachemacro_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) backend: Arc<dyn Backend>,
    /// The same backend when it is the in-process one (memoized hits take its fast path).
    pub(crate) simple: Option<Arc<SimpleBackend>>,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) counters: Counters,
    pub(crate) flights: Flights,
    /// Whether values are handed over unserialized (in-process backends).
    pub(crate) objects: bool,
    pub(crate) blocking: bool,
    /// Whether concurrent misses of one key wait for a single computation.
    pub(crate) coalesce: bool,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend.name())
            .field("default_timeout", &self.inner.default_timeout)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A builder: `Cache::builder().simple().threshold(1000).build()`.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// A cache configured from `CACHE_*` (and, when `CACHE_TYPE` is unset, `MEMCACHIER_*`)
    /// environment variables; see [`CacheConfig::from_env`]. Nothing set: `simple`.
    pub fn from_env() -> Result<Cache, Error> {
        Cache::from_config(CacheConfig::from_env()?)
    }

    /// A cache from a deserialized configuration.
    pub fn from_config(config: CacheConfig) -> Result<Cache, Error> {
        CacheBuilder::from_config(config)?.build()
    }

    /// A cache over any backend, with the given default timeout (`None` = never expires).
    ///
    /// Concurrent misses of one key in this process wait for a single computation
    /// (stampede protection).
    pub fn with_backend(backend: Arc<dyn Backend>, default_timeout: Option<Duration>) -> Cache {
        Cache::assemble(backend, default_timeout, true)
    }

    pub(crate) fn assemble(
        backend: Arc<dyn Backend>,
        default_timeout: Option<Duration>,
        coalesce: bool,
    ) -> Cache {
        let objects = backend.keeps_objects();
        let blocking = backend.is_blocking();
        // The in-process backend gets a memoized-hit path that builds no key string; it is
        // recognized by its type, so the `Backend` seam names no concrete backend.
        let any: Arc<dyn std::any::Any + Send + Sync> = backend.clone();
        let simple = any.downcast::<SimpleBackend>().ok();
        Cache {
            inner: Arc::new(Inner {
                backend,
                simple,
                default_timeout,
                counters: Counters::default(),
                flights: Flights::default(),
                objects,
                blocking,
                coalesce,
            }),
        }
    }

    /// The backend behind this cache.
    pub fn backend(&self) -> &dyn Backend {
        &*self.inner.backend
    }

    /// A snapshot of the hit, miss, set, delete and error counters.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// The lifetime `timeout` stands for in this cache (`None` = never expires).
    pub fn ttl(&self, timeout: impl Into<Timeout>) -> Option<Duration> {
        timeout.into().resolve(self.inner.default_timeout)
    }

    #[inline]
    pub(crate) fn count(&self, counter: Counter) {
        self.inner.counters.add(counter, 1);
    }

    /// Counts and logs a failure that a memoized function swallows.
    pub(crate) fn swallow(&self, key: &str, what: &str, e: &Error) {
        self.count(Counter::Error);
        tracing::warn!(target: "cachemacro", key, error = %e, "cache {what} failed; running uncached");
    }

    /// Counts a failed backend call as an error, and passes the result on.
    pub(crate) fn tracked<R>(&self, r: Result<R, Error>) -> Result<R, Error> {
        if r.is_err() {
            self.count(Counter::Error);
        }
        r
    }

    pub(crate) fn add_count(&self, counter: Counter, n: u64) {
        self.inner.counters.add(counter, n);
    }

    /// A value for the direct API's writes (no version).
    pub(crate) fn prepare<T>(&self, value: &T) -> Result<Value, Error>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        self.tracked(self.wrap(value, None))
    }

    /// After a read: decoded, counted.
    pub(crate) fn finish_get<T>(
        &self,
        key: &str,
        value: Result<Option<Value>, Error>,
    ) -> Result<Option<T>, Error>
    where
        T: DeserializeOwned + Clone + 'static,
    {
        let out = self.unwrap_value(key, self.tracked(value)?);
        self.count(if out.is_some() {
            Counter::Hit
        } else {
            Counter::Miss
        });
        Ok(out)
    }

    /// After a read of several keys: decoded, counted.
    pub(crate) fn finish_get_many<T>(
        &self,
        keys: &[&str],
        values: Result<Vec<Option<Value>>, Error>,
    ) -> Result<Vec<Option<T>>, Error>
    where
        T: DeserializeOwned + Clone + 'static,
    {
        let values = self.tracked(values)?;
        Ok(keys
            .iter()
            .zip(values)
            .map(|(k, v)| {
                let out = self.unwrap_value(k, v);
                self.count(if out.is_some() {
                    Counter::Hit
                } else {
                    Counter::Miss
                });
                out
            })
            .collect())
    }

    /// After `n` values were written.
    pub(crate) fn finish_write(&self, r: Result<(), Error>, n: u64) -> Result<(), Error> {
        self.tracked(r)?;
        self.add_count(Counter::Set, n);
        Ok(())
    }

    /// After a delete of several keys: as [`Cache::finish_delete`] for each.
    pub(crate) fn finish_delete_many(
        &self,
        keys: &[&str],
        r: Result<usize, Error>,
    ) -> Result<usize, Error> {
        let n = self.tracked(r)?;
        for key in keys {
            self.inner.flights.detach(key);
        }
        self.add_count(Counter::Delete, keys.len() as u64);
        Ok(n)
    }

    /// After a delete: computations of `key` in flight in this process are detached too.
    pub(crate) fn finish_delete(&self, key: &str, r: Result<bool, Error>) -> Result<bool, Error> {
        let deleted = self.tracked(r)?;
        self.inner.flights.detach(key);
        self.count(Counter::Delete);
        tracing::debug!(target: "cachemacro", key, "delete");
        Ok(deleted)
    }

    /// The value to hand to the backend: the object itself for in-process backends, its
    /// encoding for the others.
    pub(crate) fn wrap<T>(&self, value: &T, version: Option<u64>) -> Result<Value, Error>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        if !self.inner.objects {
            return Value::encoded(value, version);
        }
        let v = Value::object(value.clone());
        Ok(match version {
            Some(ver) => v.with_version(ver),
            None => v,
        })
    }

    /// Decodes a value read back, turning undecodable ones into a logged, counted miss.
    pub(crate) fn unwrap_value<T>(&self, key: &str, value: Option<Value>) -> Option<T>
    where
        T: DeserializeOwned + Clone + 'static,
    {
        match value?.into_decoded() {
            Ok(v) => Some(v),
            Err(e) => {
                self.swallow(key, "decode", &e);
                None
            }
        }
    }

    /// Whether the backend lives in this process and never blocks (`simple`, `null`): async
    /// callers may call it in place.
    #[cfg(feature = "tower")]
    pub(crate) fn is_in_process(&self) -> bool {
        !self.inner.blocking && self.backend().as_async().is_none()
    }

    /// Runs `f` against the backend without blocking an async runtime: in place for
    /// in-process backends, on a blocking thread pool for those that do I/O.
    pub(crate) fn offload<R, F>(&self, f: F) -> Offload<R>
    where
        F: FnOnce(&Cache) -> R + Send + 'static,
        R: Send + 'static,
    {
        if self.inner.blocking {
            self.count(Counter::Offloaded);
            let cache = self.clone();
            Offload::Pool(blocking::unblock(move || f(&cache)))
        } else {
            Offload::Ready(Some(f(self)))
        }
    }

    /// The value at `key` as a `T`; `Ok(None)` when absent, expired, or not decodable as `T`
    /// (logged and counted as an error).
    pub fn get<T>(&self, key: &str) -> Result<Option<T>, Error>
    where
        T: DeserializeOwned + Clone + 'static,
    {
        self.finish_get(key, self.inner.backend.get(key))
    }

    /// Stores `value` at `key` for `timeout` (`50`, `Duration`, `Timeout::Never`, …).
    pub fn set<T>(&self, key: &str, value: &T, timeout: impl Into<Timeout>) -> Result<(), Error>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let v = self.prepare(value)?;
        self.finish_write(self.inner.backend.set(key, v, self.ttl(timeout)), 1)
    }

    /// Stores `value` only if `key` holds nothing; `Ok(false)` when it did (nothing written).
    pub fn add<T>(&self, key: &str, value: &T, timeout: impl Into<Timeout>) -> Result<bool, Error>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let v = self.prepare(value)?;
        let added = self.tracked(self.inner.backend.add(key, v, self.ttl(timeout)))?;
        if added {
            self.count(Counter::Set);
        }
        Ok(added)
    }

    /// Removes `key`; `Ok(true)` if it held a value.
    pub fn delete(&self, key: &str) -> Result<bool, Error> {
        self.finish_delete(key, self.inner.backend.delete(key))
    }

    /// Whether `key` holds a live value.
    pub fn has(&self, key: &str) -> Result<bool, Error> {
        self.tracked(self.inner.backend.has(key))
    }

    /// The values at `keys`, in order, in one backend request.
    pub fn get_many<T>(&self, keys: &[&str]) -> Result<Vec<Option<T>>, Error>
    where
        T: DeserializeOwned + Clone + 'static,
    {
        self.finish_get_many(keys, self.inner.backend.get_many(keys))
    }

    /// Stores every `(key, value)` pair in one backend request.
    pub fn set_many<'a, T, I>(&self, items: I, timeout: impl Into<Timeout>) -> Result<(), Error>
    where
        I: IntoIterator<Item = (&'a str, &'a T)>,
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let items = items
            .into_iter()
            .map(|(k, v)| Ok((k, self.wrap(v, None)?)))
            .collect::<Result<Vec<_>, Error>>();
        let items = self.tracked(items)?;
        let n = items.len() as u64;
        self.finish_write(self.inner.backend.set_many(&items, self.ttl(timeout)), n)
    }

    /// Removes every key in one backend request; returns how many held a value.
    pub fn delete_many(&self, keys: &[&str]) -> Result<usize, Error> {
        self.finish_delete_many(keys, self.inner.backend.delete_many(keys))
    }

    /// Adds `delta` to the integer at `key` (missing = 0) and returns the result.
    pub fn inc(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.tracked(self.inner.backend.inc(key, delta))
    }

    /// Subtracts `delta` from the integer at `key` (missing = 0) and returns the result.
    pub fn dec(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.tracked(self.inner.backend.dec(key, delta))
    }

    /// Removes every entry of this cache (only this cache's key prefix where the backend
    /// can tell keys apart).
    pub fn clear(&self) -> Result<(), Error> {
        self.tracked(self.inner.backend.clear())
    }
}

/// A backend call made from async code: done in place, or running on the blocking pool.
pub(crate) enum Offload<R> {
    Ready(Option<R>),
    Pool(blocking::Task<R>),
}

// Neither variant is structurally pinned (`Task` is `Unpin`).
impl<R> Unpin for Offload<R> {}

impl<R: Send + 'static> Future for Offload<R> {
    type Output = R;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        match self.get_mut() {
            Offload::Ready(r) => Poll::Ready(r.take().expect("polled after completion")),
            Offload::Pool(task) => Pin::new(task).poll(cx),
        }
    }
}
