//! [`AsyncCache`]: the direct API for async code.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::stats::Counter;
use crate::{Cache, Error, Timeout, Value};

/// The direct API for async code, from [`Cache::aio`]: the same names and results as
/// [`Cache`]'s, as futures that never block the runtime's threads.
///
/// A backend with an async form (memcached, redis; see
/// [`AsyncBackend`](crate::AsyncBackend)) is awaited directly; the in-process backends are
/// called in place; others (the filesystem, a custom backend without an async form) run on a
/// blocking thread pool. Every future is cancellation-safe: dropped at any point, it leaves
/// the cache and its connections as usable as before.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachemacro_core::Error> {
/// let cache = cachemacro_core::Cache::builder().simple().build()?;
/// cache.aio().set("greeting", &"hello".to_owned(), 60).await?;
/// let greeting = cache.aio().get::<String>("greeting").await?;
/// assert_eq!(greeting.as_deref(), Some("hello"));
/// assert_eq!(cache.aio().inc("visits", 1).await?, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AsyncCache<'c> {
    cache: &'c Cache,
}

impl Cache {
    /// The direct API as futures, for async code: `cache.aio().get::<T>("k").await`.
    pub fn aio(&self) -> AsyncCache<'_> {
        AsyncCache { cache: self }
    }
}

/// Runs one backend call from async code: awaited on the async form when the backend has
/// one, else through [`Cache::offload`] (in place, or on the blocking pool).
macro_rules! call {
    ($cache:expr, |$aio:ident| $native:expr, |$backend:ident| $offloaded:expr) => {
        match $cache.backend().as_async() {
            Some($aio) => $native.await,
            None => {
                $cache
                    .offload(move |c| {
                        let $backend = c.backend();
                        $offloaded
                    })
                    .await
            }
        }
    };
}

impl AsyncCache<'_> {
    /// As [`Cache::get`].
    pub async fn get<T>(&self, key: &str) -> Result<Option<T>, Error>
    where
        T: DeserializeOwned + Clone + 'static,
    {
        let owned = key.to_owned();
        let value = call!(self.cache, |a| a.get(key), |b| b.get(&owned));
        self.cache.finish_get(key, value)
    }

    /// As [`Cache::set`].
    pub async fn set<T>(
        &self,
        key: &str,
        value: &T,
        timeout: impl Into<Timeout>,
    ) -> Result<(), Error>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let (v, ttl) = (self.cache.prepare(value)?, self.cache.ttl(timeout));
        let owned = key.to_owned();
        let r = call!(self.cache, |a| a.set(key, v, ttl), |b| b
            .set(&owned, v, ttl));
        self.cache.finish_write(r, 1)
    }

    /// As [`Cache::add`].
    pub async fn add<T>(
        &self,
        key: &str,
        value: &T,
        timeout: impl Into<Timeout>,
    ) -> Result<bool, Error>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let (v, ttl) = (self.cache.prepare(value)?, self.cache.ttl(timeout));
        let owned = key.to_owned();
        let added = call!(self.cache, |a| a.add(key, v, ttl), |b| b
            .add(&owned, v, ttl));
        let added = self.cache.tracked(added)?;
        if added {
            self.cache.count(Counter::Set);
        }
        Ok(added)
    }

    /// As [`Cache::delete`].
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        let owned = key.to_owned();
        let deleted = call!(self.cache, |a| a.delete(key), |b| b.delete(&owned));
        self.cache.finish_delete(key, deleted)
    }

    /// As [`Cache::has`].
    pub async fn has(&self, key: &str) -> Result<bool, Error> {
        let owned = key.to_owned();
        let has = call!(self.cache, |a| a.has(key), |b| b.has(&owned));
        self.cache.tracked(has)
    }

    /// As [`Cache::get_many`].
    pub async fn get_many<T>(&self, keys: &[&str]) -> Result<Vec<Option<T>>, Error>
    where
        T: DeserializeOwned + Clone + 'static,
    {
        let owned: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        let values = call!(self.cache, |a| a.get_many(keys), |b| {
            let keys: Vec<&str> = owned.iter().map(String::as_str).collect();
            b.get_many(&keys)
        });
        self.cache.finish_get_many(keys, values)
    }

    /// As [`Cache::set_many`].
    pub async fn set_many<'a, T, I>(
        &self,
        items: I,
        timeout: impl Into<Timeout>,
    ) -> Result<(), Error>
    where
        I: IntoIterator<Item = (&'a str, &'a T)>,
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let items: Vec<(&str, Value)> = self.cache.tracked(
            items
                .into_iter()
                .map(|(k, v)| Ok((k, self.cache.prepare(v)?)))
                .collect::<Result<_, Error>>(),
        )?;
        let ttl = self.cache.ttl(timeout);
        let n = items.len() as u64;
        let r = match self.cache.backend().as_async() {
            Some(a) => a.set_many(&items, ttl).await,
            None => {
                let (keys, values): (Vec<String>, Vec<Value>) =
                    items.into_iter().map(|(k, v)| (k.to_owned(), v)).unzip();
                self.cache
                    .offload(move |c| {
                        let items: Vec<(&str, Value)> =
                            keys.iter().map(String::as_str).zip(values).collect();
                        c.backend().set_many(&items, ttl)
                    })
                    .await
            }
        };
        self.cache.finish_write(r, n)
    }

    /// As [`Cache::delete_many`].
    pub async fn delete_many(&self, keys: &[&str]) -> Result<usize, Error> {
        let owned: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        let n = call!(self.cache, |a| a.delete_many(keys), |b| {
            let keys: Vec<&str> = owned.iter().map(String::as_str).collect();
            b.delete_many(&keys)
        });
        self.cache.finish_delete_many(keys, n)
    }

    /// As [`Cache::inc`].
    pub async fn inc(&self, key: &str, delta: i64) -> Result<i64, Error> {
        let owned = key.to_owned();
        let n = call!(self.cache, |a| a.inc(key, delta), |b| b.inc(&owned, delta));
        self.cache.tracked(n)
    }

    /// As [`Cache::dec`].
    pub async fn dec(&self, key: &str, delta: i64) -> Result<i64, Error> {
        let owned = key.to_owned();
        let n = call!(self.cache, |a| a.dec(key, delta), |b| b.dec(&owned, delta));
        self.cache.tracked(n)
    }

    /// As [`Cache::clear`].
    pub async fn clear(&self) -> Result<(), Error> {
        let r = call!(self.cache, |a| a.clear(), |b| b.clear());
        self.cache.tracked(r)
    }
}
