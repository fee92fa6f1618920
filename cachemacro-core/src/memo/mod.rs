//! What `#[memoize]` and `#[cached]` expand to at run time.
//!
//! # The path of a call
//!
//! A decorated function goes macro → key → version → backend, one place each:
//!
//! 1. **macro** (`cachemacro-derive`, `expand.rs`): the wrapper asks its `static`
//!    [`Site`](crate::keys::Site) for the function's [`Identity`](crate::keys::Identity)
//!    (`keys/site.rs`) and calls [`run_sync`] or [`run_async`] with the call's [`Key`];
//! 2. **key** (`keys/`): [`Identity::call`](crate::keys::Identity::call) feeds every argument's
//!    `Hash` into a [`KeyHasher`](crate::keys::KeyHasher) (XXH3-128) and yields a
//!    `MemoKey`: the identity plus a 128-bit digest, no string yet;
//! 3. **version** (this module): the function's version is read with the value and compared
//!    with the tag the value was written under (below);
//! 4. **backend** (`backends/`): one [`Backend::get_pair`](crate::Backend::get_pair) request,
//!    or, in process, one lock-free map read.
//!
//! ## A memoized hit in process (`simple`), step by step
//!
//! Measured with `cargo bench --bench hit` and `perf annotate` on this project's 2-vCPU test
//! machine; 20 ns per hit in all (the `cached` crate's unbounded hit: 14 ns).
//!
//! | step | where | cost |
//! |---|---|---|
//! | the function's identity: one pointer comparison with the site's first instantiation | `keys/site.rs` `Site::identity` | < 1 ns |
//! | the arguments' hash, XXH3-128 from an inline buffer, mixed with the identity's digest while still in registers | `keys/identity.rs` `Identity::call`, `keys/hasher.rs` | ~2 ns |
//! | the version: one load of the backend's epoch, then the function's cached version (a seqlock, two loads) | `backends/simple/mod.rs` `version`, `backends/simple/local_version.rs` | ~1 ns |
//! | the entry: a `papaya` read under an epoch guard; the guard's release is the hit's one locked instruction | `backends/simple/mod.rs` `with_memo` | ~10 ns, 7 of them the guard |
//! | the tag check, the visited bit (one store, the first time only), the value cloned once as its own type | `hit_local` here, `value.rs` `Value::decode` | ~3 ns |
//! | the hit counted in a per-thread stripe and logged (`tracing` `debug`, off) | `stats.rs`, `note_hit` here | ~1 ns |
//!
//! No key string is built on this path: it exists only for logs and remote backends.
//!
//! ## A memoized hit on a shared backend
//!
//! The key string (`{name}:{32 hex}`) is built once, then [`Backend::get_pair`](crate::Backend::get_pair)
//! reads the version key and the value key in **one round trip** (memcached: one quiet
//! multi-get, or both servers' requests written before either reply is read; redis: one
//! `MGET` or a two-node pipeline), and the value is decoded from MessagePack. A memoized hit
//! on memcached costs 1.05–1.34× a raw `get` of one key through the same client
//! (`cargo bench --bench memcached`).
//!
//! # Versions
//!
//! Each memoized function has a version: a random non-zero 64-bit number stored, without
//! expiry, under its [`Identity::version_key`](crate::keys::Identity::version_key) in the
//! backend, so every process sharing the backend sees the same one. Values are written tagged
//! with the version current when the call started, and a hit requires the tag to equal the
//! version read *in the same backend request* ([`Backend::get_pair`](crate::Backend::get_pair)).
//! So:
//!
//! * a hit is one request for two keys, and entries still spread over servers by their own
//!   key (the version is not part of the value key);
//! * `delete_memoized_all` writes a new version: every process misses from its next call on,
//!   and a computation that started under the old version can only write an entry that is
//!   never served;
//! * a missing version (first call, evicted, expired, deleted) is created with `add` and read
//!   back when `add` loses, so concurrent first callers agree on one version; a recreated
//!   version is a fresh random number, so entries written under the lost one are never served.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Serialize;

mod aio;
mod shape;

pub use aio::{delete_all_async, delete_key_async, delete_version_async, run_async};
#[cfg(feature = "tower")]
pub(crate) use aio::{read_async, store as store_async, version_async};

pub use shape::{OkOnly, Plain, Shape, SomeOnly};

use crate::backends::SimpleBackend;
use crate::flight::{Flights, Join};
use crate::keys::MemoKey;
use crate::stats::Counter;
use crate::{Cache, Error, Timeout, Value};

/// The per-call options of a decorated function.
pub struct Spec<S: Shape> {
    /// How long results live.
    pub timeout: Timeout,
    /// Recompute and overwrite instead of reading.
    pub forced_update: bool,
    /// `false` = do not cache this result.
    pub response_filter: Option<fn(&S::Stored) -> bool>,
}

/// The key of one call of a decorated function.
#[derive(Debug, Clone)]
pub enum Key<'a> {
    /// A `#[memoize]` call: versioned, addressable by digest on in-process backends.
    Memo(MemoKey),
    /// A `#[cached]` key: the text as written, no version.
    Text(Cow<'a, str>),
}

impl std::fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Memo(m) => m.fmt(f),
            Key::Text(t) => f.write_str(t),
        }
    }
}

impl Key<'_> {
    fn text(&self) -> Cow<'_, str> {
        match self {
            Key::Memo(m) => Cow::Owned(m.text()),
            Key::Text(t) => Cow::Borrowed(t),
        }
    }

    fn version_key(&self) -> Option<&'static str> {
        match self {
            Key::Memo(m) => Some(m.identity().version_key()),
            Key::Text(_) => None,
        }
    }

    fn into_owned(self) -> Key<'static> {
        match self {
            Key::Memo(m) => Key::Memo(m),
            Key::Text(t) => Key::Text(Cow::Owned(t.into_owned())),
        }
    }
}

pub(crate) enum Lookup<T, M = Option<u64>> {
    Hit(T),
    /// Nothing usable; by default, the function version read, if any.
    Miss(M),
    /// The backend failed: run the body and leave the cache alone.
    Down,
}

/// Counts and logs a hit.
#[inline]
fn note_hit(cache: &Cache, key: &(impl std::fmt::Display + ?Sized)) {
    cache.count(Counter::Hit);
    tracing::debug!(target: "cachemacro", key = %key, "hit");
}

fn hit<T>(cache: &Cache, key: &dyn std::fmt::Display, v: T) -> Lookup<T> {
    note_hit(cache, key);
    Lookup::Hit(v)
}

fn miss<T>(cache: &Cache, key: &dyn std::fmt::Display, version: Option<u64>) -> Lookup<T> {
    cache.count(Counter::Miss);
    tracing::debug!(target: "cachemacro", key = %key, "miss");
    Lookup::Miss(version)
}

/// A memoized hit on an in-process backend: no key string, one map read (the version comes
/// from the per-function cache while the backend's epoch holds).
#[inline]
fn hit_local<T>(cache: &Cache, simple: &SimpleBackend, key: &MemoKey) -> Option<T>
where
    T: DeserializeOwned + Clone + 'static,
{
    let version = simple.version(key.identity())?;
    // Decoded from the entry in place: an in-process value is cloned once, as its own type.
    // The hit is counted and logged inside the read too: the read ends with the map guard's
    // one locked instruction, and loads queued behind it would wait for it (measured: 3 ns
    // per hit when counted after).
    let decoded = simple.with_memo(key, |value| {
        if value.version() != Some(version) {
            return None;
        }
        let decoded = value.decode::<T>();
        if decoded.is_ok() {
            note_hit(cache, key);
        }
        Some(decoded)
    })??;
    match decoded {
        Ok(v) => Some(v),
        Err(e) => {
            undecodable(cache, key, &e);
            None
        }
    }
}

#[cold]
#[inline(never)]
fn undecodable(cache: &Cache, key: &MemoKey, e: &Error) {
    cache.swallow(&key.to_string(), "decode", e);
}

/// The lookup of one call: on an in-process backend, a hit without a key string, and a miss
/// that only re-reads the cached version (no second map read); elsewhere, one request.
/// `local_tried`: the in-process hit was already looked for, and missed.
fn find<T>(cache: &Cache, key: &Key<'_>, forced: bool, local_tried: bool) -> Lookup<T>
where
    T: DeserializeOwned + Clone + 'static,
{
    if let (Key::Memo(m), Some(simple), false) = (key, &cache.inner.simple, forced) {
        if !local_tried {
            if let Some(v) = hit_local(cache, simple, m) {
                return Lookup::Hit(v);
            }
        }
        return miss(cache, m, simple.version(m.identity()));
    }
    lookup(cache, key, forced)
}

fn lookup<T>(cache: &Cache, key: &Key<'_>, forced: bool) -> Lookup<T>
where
    T: DeserializeOwned + Clone + 'static,
{
    read_sync(cache, key.version_key(), &key.text(), forced)
}

/// One read of `text` (with the version at `version_key`, in the same backend request)
/// through the sync backend; `forced`: the version only (the call recomputes). The view
/// cache's hit path on in-process backends reads with it too.
pub(crate) fn read_sync<T>(
    cache: &Cache,
    version_key: Option<&str>,
    text: &str,
    forced: bool,
) -> Lookup<T>
where
    T: DeserializeOwned + Clone + 'static,
{
    let backend = cache.backend();
    let read = match (version_key, forced) {
        (Some(vk), false) => backend.get_pair(vk, text),
        (Some(vk), true) => backend.get(vk).map(|v| (v, None)),
        (None, false) => backend.get(text).map(|v| (None, v)),
        (None, true) => Ok((None, None)),
    };
    judge(cache, version_key, text, read)
}

/// What one read of (version, value) means: a hit when the value carries the version read
/// with it (or needs none), a miss with the version read, or `Down` when the backend failed.
fn judge<T>(
    cache: &Cache,
    version_key: Option<&str>,
    text: &str,
    read: Result<(Option<Value>, Option<Value>), Error>,
) -> Lookup<T>
where
    T: DeserializeOwned + Clone + 'static,
{
    let (version, value) = match read {
        Ok(pair) => pair,
        Err(e) => {
            cache.swallow(text, "read", &e);
            return Lookup::Down;
        }
    };
    let version = version.and_then(|v| v.as_version());
    if let Some(value) = value {
        if version_key.is_none() || (version.is_some() && value.version() == version) {
            if let Some(v) = cache.unwrap_value(text, Some(value)) {
                return hit(cache, &text, v);
            }
        }
    }
    miss(cache, &text, version)
}

pub(crate) fn fresh_version() -> u64 {
    fastrand::u64(1..)
}

/// The function's current version, created if missing; `None` if the backend failed.
fn ensure_version(cache: &Cache, version_key: &str) -> Option<u64> {
    let backend = cache.backend();
    for _ in 0..3 {
        let fresh = fresh_version();
        let read = match backend.add(version_key, Value::int(fresh as i64), None) {
            Ok(true) => return Some(created(version_key, fresh)),
            // Another writer won: use its version.
            Ok(false) => backend.get(version_key),
            Err(e) => Err(e),
        };
        match version_read(cache, version_key, read) {
            VersionRead::Found(v) => return Some(v),
            VersionRead::Foreign => return replace_version(cache, version_key).ok(),
            VersionRead::Gone => continue,
            VersionRead::Failed => return None,
        }
    }
    None
}

fn created(version_key: &str, fresh: u64) -> u64 {
    tracing::debug!(target: "cachemacro", key = version_key, version = fresh, "new version");
    fresh
}

/// What reading a version back after a lost `add` gave.
enum VersionRead {
    Found(u64),
    /// Not a version (not a number, or 0): whatever wrote it, a new version invalidates
    /// safely.
    Foreign,
    /// Gone again between `add` and `get` (evicted, deleted): retry.
    Gone,
    Failed,
}

fn version_read(
    cache: &Cache,
    version_key: &str,
    read: Result<Option<Value>, Error>,
) -> VersionRead {
    match read.map(|v| v.map(|v| v.as_version())) {
        Ok(Some(Some(v))) => VersionRead::Found(v),
        Ok(Some(None)) => VersionRead::Foreign,
        Ok(None) => VersionRead::Gone,
        Err(e) => {
            cache.swallow(version_key, "version read", &e);
            VersionRead::Failed
        }
    }
}

/// Writes a new version for the function: every entry written before is stale everywhere.
pub(crate) fn replace_version(cache: &Cache, version_key: &str) -> Result<u64, Error> {
    let fresh = fresh_version();
    let r = cache
        .backend()
        .set(version_key, Value::int(fresh as i64), None);
    replaced(cache, version_key, fresh, r)
}

fn replaced(
    cache: &Cache,
    version_key: &str,
    fresh: u64,
    r: Result<(), Error>,
) -> Result<u64, Error> {
    r.inspect_err(|_| cache.count(Counter::Error))?;
    cache.count(Counter::Delete);
    tracing::debug!(target: "cachemacro", key = version_key, version = fresh, "invalidate all");
    Ok(fresh)
}

/// Writes the cacheable `stored`; returns the value as stored, for waiting callers.
fn store<T>(
    cache: &Cache,
    key: &str,
    version: Option<u64>,
    timeout: Timeout,
    stored: &T,
) -> Option<Value>
where
    T: Serialize + Clone + Send + Sync + 'static,
{
    let value = encode_stored(cache, key, version, stored)?;
    let r = cache.backend().set(key, value.clone(), cache.ttl(timeout));
    stored_as(cache, key, r);
    Some(value)
}

fn encode_stored<T>(cache: &Cache, key: &str, version: Option<u64>, stored: &T) -> Option<Value>
where
    T: Serialize + Clone + Send + Sync + 'static,
{
    cache
        .wrap(stored, version)
        .inspect_err(|e| cache.swallow(key, "encode", e))
        .ok()
}

fn stored_as(cache: &Cache, key: &str, r: Result<(), Error>) {
    match r {
        Ok(()) => {
            cache.count(Counter::Set);
            tracing::debug!(target: "cachemacro", key, "set");
        }
        Err(e) => cache.swallow(key, "write", &e),
    }
}

/// The part of `out` to cache, if any and if the filter keeps it.
fn cacheable<'o, S: Shape>(spec: &Spec<S>, out: &'o S::Out) -> Option<&'o S::Stored> {
    S::stored(out).filter(|s| spec.response_filter.is_none_or(|keep| keep(s)))
}

/// After a miss: the version to write under, or `Err` to run uncached.
fn version_for(
    cache: &Cache,
    version_key: Option<&str>,
    read: Option<u64>,
) -> Result<Option<u64>, ()> {
    match (version_key, read) {
        (Some(vk), None) => ensure_version(cache, vk).map(Some).ok_or(()),
        (_, v) => Ok(v),
    }
}

fn followed<S: Shape>(cache: &Cache, key: &str, result: Option<Value>) -> Option<S::Out> {
    let v = cache.unwrap_value::<S::Stored>(key, result)?;
    cache.count(Counter::Hit);
    tracing::debug!(target: "cachemacro", key, "hit (waited for a concurrent call)");
    Some(S::rebuild(v))
}

/// The body of a synchronous `#[memoize]` or `#[cached]` function.
#[inline]
pub fn run_sync<S: Shape>(
    cache: &Cache,
    key: Key<'_>,
    spec: &Spec<S>,
    body: impl FnOnce() -> S::Out,
) -> S::Out {
    if let (Key::Memo(m), Some(simple), false) = (&key, &cache.inner.simple, spec.forced_update) {
        if let Some(v) = hit_local(cache, simple, m) {
            return S::rebuild(v);
        }
        return run_sync_slow(cache, key, spec, body, true);
    }
    run_sync_slow(cache, key, spec, body, false)
}

/// Everything but the in-process hit, kept out of line: the hit path above is inlined into
/// every caller. `local_tried`: that hit was just looked for and missed.
fn run_sync_slow<S: Shape>(
    cache: &Cache,
    key: Key<'_>,
    spec: &Spec<S>,
    body: impl FnOnce() -> S::Out,
    local_tried: bool,
) -> S::Out {
    let read = match find::<S::Stored>(cache, &key, spec.forced_update, local_tried) {
        Lookup::Hit(v) => return S::rebuild(v),
        Lookup::Miss(read) => read,
        Lookup::Down => return body(),
    };
    let Ok(version) = version_for(cache, key.version_key(), read) else {
        return body();
    };
    let text = key.text();
    let mut leader = None;
    if !spec.forced_update && cache.inner.coalesce {
        match Flights::join(cache, &text, version) {
            Join::Leader(l) => leader = Some(l),
            Join::Follower(flight) => {
                if let Some(out) = followed::<S>(cache, &text, flight.wait()) {
                    return out;
                }
            }
        }
    }
    let out = body();
    let stored = cacheable(spec, &out).and_then(|s| store(cache, &text, version, spec.timeout, s));
    if let Some(l) = leader {
        l.finish(stored);
    }
    out
}

/// `f_delete_memoized` / `g_delete_cached`: removes one key.
pub fn delete_key(cache: &Cache, key: &str) -> Result<(), Error> {
    cache.delete(key).map(drop)
}

/// `f_delete_memoized_all`: replaces the function's version.
pub fn delete_all(cache: &Cache, version_key: &str) -> Result<(), Error> {
    replace_version(cache, version_key).map(drop)
}

/// `f_delete_memoized_verhash`: removes the function's version key.
pub fn delete_version(cache: &Cache, version_key: &str) -> Result<(), Error> {
    cache.delete(version_key).map(drop)
}
