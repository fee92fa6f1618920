//! Sessions stored in the cache: [`CacheSessionStore`], a
//! [`tower_sessions::SessionStore`](tower_sessions_core::SessionStore) over any [`Cache`]
//! (memcached, redis, the filesystem, in memory).
//!
//! What it writes, as [Flask-Session](https://flask-session.readthedocs.io/) does over a
//! cache:
//!
//! - **keys** `session:{id}`: the prefix (Flask-Session's `SESSION_KEY_PREFIX`, default
//!   `"session:"`, changed with [`CacheSessionStore::with_prefix`]) then the session id as
//!   its cookie shows it (22 URL-safe base64 characters). The cache's own key prefix
//!   (`CACHE_KEY_PREFIX`), if any, comes before it, as for every key of that cache;
//! - **values**: the whole [`Record`] (id, data, expiry date), MessagePack-encoded by the
//!   cache like any value on a remote backend (kept as an object in memory);
//! - **lifetimes**: the record's own expiry date, as a timeout of the seconds left (rounded
//!   up). Memcached reads a timeout over 30 days as an absolute Unix time; the memcached
//!   backend converts such timeouts itself, so a session of weeks lives for weeks there too.
//!
//! And how it behaves:
//!
//! - [`create`](SessionStore::create) stores with `add`, so it never overwrites another
//!   session: on an id collision it draws a new id and tries again (up to
//!   [`CREATE_ATTEMPTS`] times);
//! - [`save`](SessionStore::save) stores with `set`, so a record the cache expired or
//!   evicted meanwhile is written again;
//! - [`load`](SessionStore::load) finds nothing when the key is missing, when the stored
//!   value does not decode as a record (the cache counts and logs that as an error), or when
//!   the record's expiry date has passed (whatever the backend's expiry granularity);
//! - [`delete`](SessionStore::delete) removes the key, whether or not it held anything;
//! - a record whose expiry date has passed is never stored: `create` writes nothing and
//!   `save` deletes the key;
//! - cache errors become [`session_store::Error::Backend`] (and an encoding failure
//!   [`session_store::Error::Encode`]).
//!
//! ```
//! use cachemacro_core::session::CacheSessionStore;
//! use cachemacro_core::Cache;
//! use time::{Duration, OffsetDateTime};
//! use tower_sessions_core::session::{Id, Record};
//! use tower_sessions_core::SessionStore;
//!
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     struct Unpark(std::thread::Thread);
//! #     impl std::task::Wake for Unpark {
//! #         fn wake(self: std::sync::Arc<Self>) { self.0.unpark() }
//! #     }
//! #     let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
//! #     let mut cx = std::task::Context::from_waker(&waker);
//! #     let mut f = std::pin::pin!(f);
//! #     loop {
//! #         if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
//! #         std::thread::park();
//! #     }
//! # }
//! # block_on(async {
//! let cache = Cache::builder().simple().build()?;
//! let store = CacheSessionStore::new(cache.clone());
//!
//! let mut record = Record {
//!     id: Id::default(),
//!     data: [("visits".to_owned(), serde_json::json!(1))].into(),
//!     expiry_date: OffsetDateTime::now_utc() + Duration::weeks(2),
//! };
//! store.create(&mut record).await?;
//! assert!(cache.has(&format!("session:{}", record.id))?);
//! assert_eq!(store.load(&record.id).await?, Some(record.clone()));
//!
//! store.delete(&record.id).await?;
//! assert_eq!(store.load(&record.id).await?, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! In an axum app, hand the store to tower-sessions' `SessionManagerLayer`; handlers then
//! take a `tower_sessions::Session`:
//!
//! ```
//! use axum::{routing::get, Router};
//! use cachemacro_core::session::CacheSessionStore;
//! use cachemacro_core::Cache;
//! use tower_sessions::{Session, SessionManagerLayer};
//!
//! async fn visits(session: Session) -> String {
//!     let n = session.get::<u64>("visits").await.unwrap().unwrap_or(0) + 1;
//!     session.insert("visits", n).await.unwrap();
//!     format!("visit {n}")
//! }
//!
//! // `Cache::builder().memcached(["127.0.0.1:11211"])` for memcached, as in production.
//! let cache = Cache::builder().simple().build()?;
//! let app: Router = Router::new()
//!     .route("/", get(visits))
//!     .layer(SessionManagerLayer::new(CacheSessionStore::new(cache)));
//! # Ok::<(), cachemacro_core::Error>(())
//! ```

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store;
use tower_sessions_core::SessionStore;

use crate::{Cache, Error};

/// The key prefix of sessions unless [`CacheSessionStore::with_prefix`] sets another:
/// Flask-Session's default `SESSION_KEY_PREFIX`.
pub const DEFAULT_PREFIX: &str = "session:";

/// How many ids [`CacheSessionStore`]'s `create` tries before giving up: a collision of
/// random 128-bit ids is already next to impossible, so a run of them means something else
/// is wrong (e.g. a backend whose `add` always refuses).
pub const CREATE_ATTEMPTS: usize = 8;

/// A [`tower_sessions::SessionStore`](SessionStore) that keeps sessions in a [`Cache`]; see
/// the [module docs](self) for keys, values and lifetimes.
///
/// Cheap to clone (a cache handle and the prefix).
#[derive(Debug, Clone)]
pub struct CacheSessionStore {
    /// `None`: the process-wide cache, looked up at each call.
    cache: Option<Cache>,
    prefix: String,
}

impl CacheSessionStore {
    /// A store in `cache`, with keys `session:{id}`.
    pub fn new(cache: Cache) -> Self {
        CacheSessionStore {
            cache: Some(cache),
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }

    /// A store in the process-wide cache ([`crate::cache`]), looked up at each call: the
    /// store may be created before [`crate::init`] installs that cache.
    pub fn global() -> Self {
        CacheSessionStore {
            cache: None,
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }

    /// The same store with keys `{prefix}{id}` (Flask-Session's `SESSION_KEY_PREFIX`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The prefix of this store's keys.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The cache this store writes to.
    pub fn cache(&self) -> &Cache {
        self.cache.as_ref().unwrap_or_else(|| crate::cache())
    }

    /// The key of session `id`: `{prefix}{id}`, the id as its cookie shows it.
    pub fn key(&self, id: &Id) -> String {
        format!("{}{id}", self.prefix)
    }
}

impl Default for CacheSessionStore {
    /// [`CacheSessionStore::global`].
    fn default() -> Self {
        CacheSessionStore::global()
    }
}

/// The lifetime left to a record expiring at `expiry`: whole seconds, rounded up; `None`
/// when it has already expired.
fn time_left(expiry: OffsetDateTime) -> Option<Duration> {
    let left = expiry - OffsetDateTime::now_utc();
    let secs = left
        .whole_seconds()
        .saturating_add(i64::from(left.subsec_nanoseconds() > 0));
    u64::try_from(secs)
        .ok()
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
}

/// A cache error as tower-sessions sees it.
fn store_error(e: Error) -> session_store::Error {
    match e {
        Error::Codec(msg) => session_store::Error::Encode(msg),
        e => session_store::Error::Backend(e.to_string()),
    }
}

#[async_trait]
impl SessionStore for CacheSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let Some(ttl) = time_left(record.expiry_date) else {
            return Ok(());
        };
        let cache = self.cache().aio();
        for _ in 0..CREATE_ATTEMPTS {
            if cache
                .add(&self.key(&record.id), &*record, ttl)
                .await
                .map_err(store_error)?
            {
                return Ok(());
            }
            tracing::debug!(target: "cachemacro", "session id collision; drawing another id");
            record.id = Id::default();
        }
        Err(session_store::Error::Backend(format!(
            "no free session id after {CREATE_ATTEMPTS} attempts"
        )))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let cache = self.cache().aio();
        let key = self.key(&record.id);
        match time_left(record.expiry_date) {
            Some(ttl) => cache.set(&key, record, ttl).await.map_err(store_error),
            None => cache.delete(&key).await.map(drop).map_err(store_error),
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let record = self
            .cache()
            .aio()
            .get::<Record>(&self.key(id))
            .await
            .map_err(store_error)?;
        Ok(record.filter(|r| r.expiry_date > OffsetDateTime::now_utc()))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.cache()
            .aio()
            .delete(&self.key(id))
            .await
            .map(drop)
            .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_rounds_up_and_refuses_the_past() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(time_left(now - time::Duration::seconds(1)), None);
        assert_eq!(time_left(now), None);
        assert_eq!(
            time_left(now + time::Duration::milliseconds(1500)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            time_left(now + time::Duration::days(40) + time::Duration::milliseconds(500)),
            Some(Duration::from_secs(40 * 86_400 + 1))
        );
    }

    #[test]
    fn keys_are_the_prefix_then_the_cookie_id() {
        let id = Id(1);
        let store = CacheSessionStore::global();
        assert_eq!(store.key(&id), format!("session:{id}"));
        assert_eq!(store.key(&id), "session:AQAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(store.with_prefix("s/").key(&id), "s/AQAAAAAAAAAAAAAAAAAAAA");
    }
}
