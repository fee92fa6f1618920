//! What an `async` `#[memoize]` or `#[cached]` function runs: the same protocol as
//! [`run_sync`](super::run_sync), never blocking the runtime.
//!
//! Three ways to reach the backend, chosen per cache:
//! * in process (`simple`, `null`): called in place, the hit still one map read;
//! * a backend with an async form (memcached, redis with the `tokio` feature): awaited
//!   directly, no thread hand-off; the steps are those of the sync path, each awaited
//!   ([`lookup`], [`ensure_version`], [`replace_version`], [`store`]);
//! * any other backend that does I/O: its sync calls run on the blocking pool.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    cacheable, created, encode_stored, find, followed, fresh_version, judge, replaced, stored_as,
    version_for, version_read, Key, Lookup, Shape, Spec, VersionRead,
};
use crate::flight::{Flights, Join, Leader};
use crate::{AsyncBackend, Cache, Error, Timeout, Value};

/// The body of an `async` `#[memoize]` or `#[cached]` function.
pub async fn run_async<S, F>(cache: &Cache, key: Key<'_>, spec: Spec<S>, body: F) -> S::Out
where
    S: Shape + 'static,
    F: Future<Output = S::Out>,
{
    let forced = spec.forced_update;
    let (version, text) = match cache.backend().as_async() {
        Some(aio) => {
            let text = key.text().into_owned();
            let read = lookup::<S::Stored>(cache, aio, &key, &text, forced).await;
            let version = match read {
                Lookup::Hit(v) => return S::rebuild(v),
                Lookup::Miss(read) => match (key.version_key(), read) {
                    (Some(vk), None) => ensure_version(cache, aio, vk).await.map(Some),
                    (_, v) => Some(v),
                },
                Lookup::Down => None,
            };
            (version, text)
        }
        None => {
            let key = key.into_owned();
            let k = key.clone();
            // In place for in-process backends (a hit stays one map read), on the blocking
            // pool for the others.
            let read = cache
                .offload(move |c| match find::<S::Stored>(c, &k, forced, false) {
                    Lookup::Hit(v) => Lookup::Hit(v),
                    Lookup::Miss(read) => Lookup::Miss(version_for(c, k.version_key(), read)),
                    Lookup::Down => Lookup::Down,
                })
                .await;
            let version = match read {
                Lookup::Hit(v) => return S::rebuild(v),
                Lookup::Miss(Ok(version)) => Some(version),
                Lookup::Miss(Err(())) | Lookup::Down => None,
            };
            (version, key.text().into_owned())
        }
    };
    // No version could be read or made: run uncached, leave the cache alone.
    let Some(version) = version else {
        return body.await;
    };
    let mut leader: Option<Leader> = None;
    if !forced && cache.inner.coalesce {
        match Flights::join(cache, &text, version) {
            Join::Leader(l) => leader = Some(l),
            Join::Follower(flight) => {
                if let Some(out) = followed::<S>(cache, &text, flight.wait_async().await) {
                    return out;
                }
            }
        }
    }
    let out = body.await;
    let stored = match cacheable(&spec, &out) {
        Some(stored) => store(cache, &text, version, spec.timeout, stored).await,
        None => None,
    };
    if let Some(l) = leader {
        l.finish(stored);
    }
    out
}

/// As the sync `lookup`: one round trip for version and value.
async fn lookup<T>(
    cache: &Cache,
    aio: &dyn AsyncBackend,
    key: &Key<'_>,
    text: &str,
    forced: bool,
) -> Lookup<T>
where
    T: DeserializeOwned + Clone + 'static,
{
    let version_key = key.version_key();
    let read = match (version_key, forced) {
        (Some(vk), false) => aio.get_pair(vk, text).await,
        (Some(vk), true) => aio.get(vk).await.map(|v| (v, None)),
        (None, false) => aio.get(text).await.map(|v| (None, v)),
        (None, true) => Ok((None, None)),
    };
    judge(cache, version_key, text, read)
}

/// As the sync `ensure_version`.
async fn ensure_version(cache: &Cache, aio: &dyn AsyncBackend, version_key: &str) -> Option<u64> {
    for _ in 0..3 {
        let fresh = fresh_version();
        let read = match aio.add(version_key, Value::int(fresh as i64), None).await {
            Ok(true) => return Some(created(version_key, fresh)),
            Ok(false) => aio.get(version_key).await,
            Err(e) => Err(e),
        };
        match version_read(cache, version_key, read) {
            VersionRead::Found(v) => return Some(v),
            VersionRead::Foreign => return replace_version(cache, aio, version_key).await.ok(),
            VersionRead::Gone => continue,
            VersionRead::Failed => return None,
        }
    }
    None
}

/// As the sync `replace_version`.
async fn replace_version(
    cache: &Cache,
    aio: &dyn AsyncBackend,
    version_key: &str,
) -> Result<u64, Error> {
    let fresh = fresh_version();
    let r = aio.set(version_key, Value::int(fresh as i64), None).await;
    replaced(cache, version_key, fresh, r)
}

/// As the sync `store`, on whichever path the cache takes (the view cache stores pages with
/// it too).
pub(crate) async fn store<T>(
    cache: &Cache,
    key: &str,
    version: Option<u64>,
    timeout: Timeout,
    stored: &T,
) -> Option<crate::Value>
where
    T: Serialize + Clone + Send + Sync + 'static,
{
    let value = encode_stored(cache, key, version, stored)?;
    let ttl = cache.ttl(timeout);
    let r = match cache.backend().as_async() {
        Some(aio) => aio.set(key, value.clone(), ttl).await,
        None => {
            let (k, v) = (key.to_owned(), value.clone());
            cache.offload(move |c| c.backend().set(&k, v, ttl)).await
        }
    };
    stored_as(cache, key, r);
    Some(value)
}

/// Async form of [`delete_key`](super::delete_key).
pub async fn delete_key_async(cache: &Cache, key: String) -> Result<(), Error> {
    cache.aio().delete(&key).await.map(drop)
}

/// Async form of [`delete_all`](super::delete_all).
pub async fn delete_all_async(cache: &Cache, version_key: &str) -> Result<(), Error> {
    match cache.backend().as_async() {
        Some(aio) => replace_version(cache, aio, version_key).await.map(drop),
        None => {
            let vk = version_key.to_owned();
            cache.offload(move |c| super::delete_all(c, &vk)).await
        }
    }
}

/// Async form of [`delete_version`](super::delete_version).
pub async fn delete_version_async(cache: &Cache, version_key: &'static str) -> Result<(), Error> {
    cache.aio().delete(version_key).await.map(drop)
}

/// One read of `text` (with the version at `version_key`, in the same round trip) from
/// async code, on whichever path the cache takes: what the view cache looks up.
#[cfg(feature = "tower")]
pub(crate) async fn read_async<T>(cache: &Cache, version_key: Option<&str>, text: &str) -> Lookup<T>
where
    T: DeserializeOwned + Clone + 'static,
{
    let read = match (cache.backend().as_async(), version_key) {
        (Some(aio), Some(vk)) => aio.get_pair(vk, text).await,
        (Some(aio), None) => aio.get(text).await.map(|v| (None, v)),
        (None, vk) => {
            let (vk, t) = (vk.map(str::to_owned), text.to_owned());
            cache
                .offload(move |c| match vk {
                    Some(vk) => c.backend().get_pair(&vk, &t),
                    None => c.backend().get(&t).map(|v| (None, v)),
                })
                .await
        }
    };
    judge(cache, version_key, text, read)
}

/// The current version at `version_key`, created if missing; `None` if the backend failed.
#[cfg(feature = "tower")]
pub(crate) async fn version_async(cache: &Cache, version_key: &str) -> Option<u64> {
    match cache.backend().as_async() {
        Some(aio) => ensure_version(cache, aio, version_key).await,
        None => {
            let vk = version_key.to_owned();
            cache.offload(move |c| super::ensure_version(c, &vk)).await
        }
    }
}
