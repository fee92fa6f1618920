//! Whole-view caching for axum and any tower service over `http` types: Flask-Caching's
//! `@cache.cached()` on a view, as a tower [`Layer`](tower_layer::Layer).
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use cachemacro_core::view::ViewCacheLayer;
//!
//! async fn index() -> String {
//!     "an expensive page".to_owned()
//! }
//!
//! // `GET /` is stored under `view//`, for 5 seconds, in the process-wide cache.
//! let app: Router = Router::new().route(
//!     "/",
//!     get(index).route_layer(ViewCacheLayer::new().timeout(Duration::from_secs(5))),
//! );
//! // After a write: `cachemacro::cache().delete("view//")`, as in Flask.
//! ```
//!
//! # What is looked up
//!
//! - **Keys as Flask writes them**: `view/{path}` (the path percent-decoded, as Flask's
//!   `request.path`), so `cache.delete("view//")` or [`delete_view`] drops the page in every
//!   process sharing the cache. [`ViewCacheLayer::query_string`] adds the query, its
//!   parameters sorted (repeated ones kept); [`ViewCacheLayer::key`] takes a function of the
//!   request's [`Parts`](http::request::Parts).
//! - **GET and HEAD only.** Pages are stored from GET responses; a HEAD is answered from the
//!   GET entry (headers, no body) and never stores anything, so a HEAD never poisons a GET.
//! - **`Vary` is honoured.** A stored page records the request's values of the headers its
//!   `Vary` names and is served only to requests with the same values. Other values get
//!   their own entries (under keys derived from the page's, which die with it: deleting
//!   `view//` drops every variant). One read serves a page that does not vary, or the first
//!   variant; other variants take a second read.
//! - **Requests with `Authorization`** neither read nor write the cache unless
//!   [`ViewCacheLayer::allow_authorized`].
//! - **A request's own `Cache-Control`** (a browser's reload sends `max-age=0`) does not
//!   bypass the cache: this is the server's cache, as Flask's and Django's are, and a reload
//!   must not be a way to make every worker re-render the page.
//! - **Invalidation by group**: [`ViewCacheLayer::group`] tags pages with a group's version,
//!   read with the page in the same round trip (as `#[memoize]` reads a function's version);
//!   [`delete_group`] replaces it, dropping every page of the group in every process without
//!   listing keys.
//!
//! # What is stored
//!
//! Only responses that a shared cache may keep: status 200 (or [`ViewCacheLayer::statuses`]),
//! no `Set-Cookie`, no `Cache-Control: private`, `no-store` or `no-cache`, no `Vary: *`, a
//! body within [`ViewCacheLayer::max_body`] (1 MiB by default; a larger body is streamed to
//! the client as it comes, never buffered whole) and no trailers, and whatever
//! [`ViewCacheLayer::response_filter`] keeps. The response's `s-maxage` or `max-age`, when
//! shorter than the layer's timeout, bounds how long it is kept. Hop-by-hop headers are
//! dropped; repeated headers are kept in order.
//!
//! # What is served
//!
//! A hit carries the stored headers, an `Age`, a strong `ETag` (the handler's own, or a
//! digest of the body) and `x-cache: HIT` (misses: `x-cache: MISS`; see
//! [`ViewCacheLayer::hit_header`]). A request whose `If-None-Match` matches gets
//! `304 Not Modified` straight from the cache.
//!
//! # Stampedes and failures
//!
//! In one process, one request per key runs the handler while the others wait for its page
//! (the single flight `#[memoize]` uses). [`ViewCacheLayer::lock`] extends that across
//! processes: the first worker to miss takes a lock in the cache (`add`, atomic on memcached
//! and redis), the others poll for its page until the lock's time runs out.
//!
//! The layer never blocks the runtime: memcached and redis are awaited through their async
//! clients, the in-memory cache is read in place. A cache that fails is logged and counted
//! (`Cache::stats`), and the handler runs: a page is never lost to its cache.

mod body;
mod key;
mod policy;
mod service;
mod stored;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{request, response, HeaderName, StatusCode};

pub use body::ViewBody;
pub use key::view_key;
pub use service::{ResponseFuture, ViewCache};

use crate::keys::Identity;
use crate::{Cache, Error, Timeout};

type KeyFn = dyn Fn(&request::Parts) -> String + Send + Sync;
type RequestFn = dyn Fn(&request::Parts) -> bool + Send + Sync;
type ResponseFn = dyn Fn(&response::Parts, &Bytes) -> bool + Send + Sync;

/// A tower [`Layer`](tower_layer::Layer) that caches whole responses: on one route
/// (`MethodRouter::route_layer`, `.layer`) or a whole `Router`. See the [module
/// docs](self) for what it stores and serves.
///
/// Built in code, with Flask's defaults: the process-wide [`cache()`](crate::cache), the
/// cache's default timeout, keys `view/{path}`.
#[derive(Clone)]
pub struct ViewCacheLayer {
    config: Arc<Config>,
}

#[derive(Clone)]
pub(crate) struct Config {
    cache: Option<Cache>,
    pub(crate) timeout: Timeout,
    key: Key,
    unless: Option<Arc<RequestFn>>,
    pub(crate) response_filter: Option<Arc<ResponseFn>>,
    pub(crate) statuses: Vec<StatusCode>,
    pub(crate) hit_header: Option<HeaderName>,
    pub(crate) max_body: usize,
    authorized: bool,
    pub(crate) version_key: Option<String>,
    pub(crate) lock: Option<Duration>,
}

#[derive(Clone)]
enum Key {
    Path,
    QueryString,
    Custom(Arc<KeyFn>),
}

impl Default for ViewCacheLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ViewCacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        f.debug_struct("ViewCacheLayer")
            .field("timeout", &c.timeout)
            .field("statuses", &c.statuses)
            .field("max_body", &c.max_body)
            .field("group", &c.version_key)
            .field("lock", &c.lock)
            .finish_non_exhaustive()
    }
}

impl ViewCacheLayer {
    /// A layer with Flask's defaults: [`cache()`](crate::cache) (looked up per request, so
    /// `cachemacro::init` may come after the router is built), the cache's default timeout,
    /// keys `view/{path}`, status 200 only, bodies up to 1 MiB, `x-cache` on responses.
    pub fn new() -> Self {
        ViewCacheLayer {
            config: Arc::new(Config {
                cache: None,
                timeout: Timeout::Default,
                key: Key::Path,
                unless: None,
                response_filter: None,
                statuses: vec![StatusCode::OK],
                hit_header: Some(HeaderName::from_static("x-cache")),
                max_body: 1 << 20,
                authorized: false,
                version_key: None,
                lock: None,
            }),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Stores pages in `cache` instead of the process-wide one.
    pub fn cache(self, cache: Cache) -> Self {
        self.with(|c| c.cache = Some(cache))
    }

    /// How long pages live: seconds (`0` = never expire) or a `Duration`; default: the
    /// cache's default timeout. Flask's `timeout=`.
    pub fn timeout(self, timeout: impl Into<Timeout>) -> Self {
        let timeout = timeout.into();
        self.with(|c| c.timeout = timeout)
    }

    /// Keys pages by path and query (`view/{path}?{query}`, parameters sorted, repeated ones
    /// kept), so `/?page=2` and `/?page=3` are different pages. Flask's `query_string=True`.
    pub fn query_string(self) -> Self {
        self.with(|c| c.key = Key::QueryString)
    }

    /// Keys pages by `key(&parts)`: the whole cache key, as the direct API sees it (Flask's
    /// `key_prefix` callable).
    pub fn key(self, key: impl Fn(&request::Parts) -> String + Send + Sync + 'static) -> Self {
        self.with(|c| c.key = Key::Custom(Arc::new(key)))
    }

    /// Requests for which `unless(&parts)` is `true` bypass the cache entirely (seed 002's
    /// `unless=is_post`; GET and HEAD are the only methods cached anyway).
    pub fn unless(self, unless: impl Fn(&request::Parts) -> bool + Send + Sync + 'static) -> Self {
        self.with(|c| c.unless = Some(Arc::new(unless)))
    }

    /// Responses for which `keep(&parts, &body)` is `false` are served but not stored
    /// (Flask's `response_filter`); checked after the built-in rules.
    pub fn response_filter(
        self,
        keep: impl Fn(&response::Parts, &Bytes) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.with(|c| c.response_filter = Some(Arc::new(keep)))
    }

    /// The statuses that may be stored; default: 200 only.
    pub fn statuses(self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        let statuses = statuses.into_iter().collect();
        self.with(|c| c.statuses = statuses)
    }

    /// The header that tells hits (`HIT`) from misses (`MISS`): `Some(name)`, or `None` for
    /// none; default `x-cache`. Flask's `response_hit_indication`.
    pub fn hit_header(self, name: Option<HeaderName>) -> Self {
        self.with(|c| c.hit_header = name)
    }

    /// The largest body stored, in bytes (default 1 MiB). A larger response is streamed to
    /// the client as it comes, and not stored.
    pub fn max_body(self, bytes: usize) -> Self {
        self.with(|c| c.max_body = bytes)
    }

    /// Lets requests that carry `Authorization` read and write the cache. Off by default: an
    /// authorized page is usually someone's own.
    pub fn allow_authorized(self) -> Self {
        self.with(|c| c.authorized = true)
    }

    /// Puts the pages of this layer in group `name`: [`delete_group`] drops them all, in
    /// every process sharing the cache. A hit then reads the group's version with the page,
    /// in the same round trip.
    pub fn group(self, name: &str) -> Self {
        let key = group_version_key(name);
        self.with(|c| c.version_key = Some(key))
    }

    /// Across processes, one rebuild of an expired page at a time: the first worker to miss
    /// takes a lock in the cache for at most `max_wait`, the others poll for its page
    /// meanwhile and run the handler themselves only if it has not come when that time is up.
    pub fn lock(self, max_wait: Duration) -> Self {
        self.with(|c| c.lock = Some(max_wait))
    }
}

impl<S> tower_layer::Layer<S> for ViewCacheLayer {
    type Service = ViewCache<S>;

    fn layer(&self, inner: S) -> ViewCache<S> {
        ViewCache::new(inner, self.config.clone())
    }
}

impl Config {
    /// The cache pages go to.
    pub(crate) fn cache(&self) -> &Cache {
        self.cache.as_ref().unwrap_or_else(|| crate::cache())
    }

    /// Whether this request bypasses the cache (method aside).
    pub(crate) fn bypass(&self, req: &request::Parts) -> bool {
        (!self.authorized && req.headers.contains_key(http::header::AUTHORIZATION))
            || self.unless.as_ref().is_some_and(|unless| unless(req))
    }

    /// The key of this request's page.
    pub(crate) fn key(&self, req: &request::Parts) -> String {
        match &self.key {
            Key::Path => view_key(req.uri.path()),
            Key::QueryString => key::with_query(req.uri.path(), req.uri.query()),
            Key::Custom(f) => f(req),
        }
    }
}

fn group_version_key(group: &str) -> String {
    Identity::new(
        &format!("cachemacro::view::group::{group}"),
        &[],
        None,
        None,
    )
    .version_key()
    .to_owned()
}

/// Drops the page at `path` (its key `view/{path}`; every `Vary` variant with it) in every
/// process sharing `cache`: `cache.delete("view//")` for `/`. `Ok(true)` if one was stored.
pub fn delete_view(cache: &Cache, path: &str) -> Result<bool, Error> {
    cache.delete(&view_key(path))
}

/// [`delete_view`] for async code.
pub async fn delete_view_async(cache: &Cache, path: &str) -> Result<bool, Error> {
    cache.aio().delete(&view_key(path)).await
}

/// Drops every page of group `name` ([`ViewCacheLayer::group`]) in every process sharing
/// `cache`, by replacing the group's version.
pub fn delete_group(cache: &Cache, name: &str) -> Result<(), Error> {
    crate::memo::delete_all(cache, &group_version_key(name))
}

/// [`delete_group`] for async code.
pub async fn delete_group_async(cache: &Cache, name: &str) -> Result<(), Error> {
    crate::memo::delete_all_async(cache, &group_version_key(name)).await
}
