//! [`ViewCache`]: the service the layer wraps a handler in, and the path of a request.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::body::{collect, declared_length, Collected, ViewBody};
use super::policy::{
    etag_of, lifetime, matches, not_modified, not_modified_headers, refusal, strip_hop_by_hop,
    variant_key, vary_names, vary_values,
};
use super::stored::{unix_now, Headers, StoredView};
use super::Config;
use crate::flight::{Flights, Join, Leader};
use crate::memo::{fresh_version, read_async, read_sync, store_async, version_async, Lookup};
use crate::stats::Counter;
use crate::{BoxFuture, Cache, Timeout};

/// A service whose GET responses are cached whole: what [`ViewCacheLayer`](super::ViewCacheLayer)
/// wraps a handler (or a router) in.
#[derive(Clone)]
pub struct ViewCache<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> ViewCache<S> {
    pub(super) fn new(inner: S, config: Arc<Config>) -> Self {
        ViewCache { inner, config }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for ViewCache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewCache")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ViewCache<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Send,
{
    type Response = Response<ViewBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let look = match look(&self.config, &parts) {
            Look::Read {
                read: Some(Lookup::Hit(page)),
                ..
            } if matches(&page, &parts.headers) => {
                let head = parts.method == Method::HEAD;
                let resp = respond(&self.config, &parts.headers, head, page, Served::Hit);
                return ResponseFuture(Either::Ready(Some(resp)));
            }
            look => look,
        };
        // The clone is the one to keep; the one that was polled ready serves this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture(Either::Served(Box::pin(serve(
            self.config.clone(),
            inner,
            Request::from_parts(parts, body),
            look,
        ))))
    }
}

/// The future of a [`ViewCache`] response: ready at once for a hit on an in-process cache,
/// the whole path otherwise.
pub struct ResponseFuture<R, E>(Either<R, E>);

enum Either<R, E> {
    Ready(Option<R>),
    Served(BoxFuture<'static, Result<R, E>>),
}

// Neither variant is structurally pinned (the other future is boxed).
impl<R, E> Unpin for ResponseFuture<R, E> {}

impl<R, E> std::fmt::Debug for ResponseFuture<R, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<R, E> std::future::Future for ResponseFuture<R, E> {
    type Output = Result<R, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R, E>> {
        match &mut self.get_mut().0 {
            Either::Ready(r) => Poll::Ready(Ok(r.take().expect("polled after completion"))),
            Either::Served(f) => f.as_mut().poll(cx),
        }
    }
}

/// What `call` decided before the request's future: whether the cache is used, the page's
/// key, and, on an in-process cache, the page read already (one map read, in place: a hit is
/// then answered without a future's worth of state).
enum Look {
    Bypass,
    Read {
        key: String,
        read: Option<Lookup<StoredView>>,
    },
}

fn look(config: &Config, parts: &http::request::Parts) -> Look {
    let get = parts.method == Method::GET || parts.method == Method::HEAD;
    if !get || config.bypass(parts) {
        return Look::Bypass;
    }
    let key = config.key(parts);
    let cache = config.cache();
    let read = cache
        .is_in_process()
        .then(|| read_sync::<StoredView>(cache, config.version_key.as_deref(), &key, false));
    Look::Read { key, read }
}

/// Where a missed page goes.
struct Target {
    key: String,
    /// The group's version to tag it with (no group: `None`).
    version: Option<u64>,
    generation: u64,
}

enum Found {
    Hit(StoredView),
    Miss(Target),
    /// The cache failed: run the handler, leave the cache alone.
    Down,
}

#[derive(Clone, Copy)]
enum Served {
    Hit,
    Miss,
}

async fn serve<S, ReqB, ResB>(
    config: Arc<Config>,
    mut inner: S,
    req: Request<ReqB>,
    look: Look,
) -> Result<Response<ViewBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body<Data = Bytes>,
{
    let head = req.method() == Method::HEAD;
    let (parts, body) = req.into_parts();
    let Look::Read { key, read } = look else {
        let resp = inner.call(Request::from_parts(parts, body)).await?;
        return Ok(resp.map(ViewBody::stream));
    };
    let cache = config.cache().clone();
    let target = match find(&cache, &config, &parts.headers, key, read).await {
        Found::Hit(page) => return Ok(respond(&config, &parts.headers, head, page, Served::Hit)),
        Found::Miss(target) if !head => target,
        // A HEAD response has no body to store: never stored, so never served to a GET.
        Found::Miss(_) | Found::Down => {
            let resp = inner.call(Request::from_parts(parts, body)).await?;
            return Ok(mark(&config, resp.map(ViewBody::stream), Served::Miss));
        }
    };
    let mut leader: Option<Leader> = None;
    if cache.inner.coalesce {
        match Flights::join(&cache, &target.key, target.version) {
            Join::Leader(l) => leader = Some(l),
            Join::Follower(flight) => {
                let value = flight.wait_async().await;
                if let Some(page) = cache.unwrap_value::<StoredView>(&target.key, value) {
                    if matches(&page, &parts.headers) {
                        cache.count(Counter::Hit);
                        return Ok(respond(&config, &parts.headers, head, page, Served::Hit));
                    }
                }
            }
        }
    }
    let lock = match config.lock {
        Some(max_wait) => match lock(&cache, &config, &target, &parts.headers, max_wait).await {
            Locked::Served(page) => {
                return Ok(respond(&config, &parts.headers, head, page, Served::Hit))
            }
            Locked::Held(guard) => Some(guard),
            Locked::Not => None,
        },
        None => None,
    };
    let req_headers = parts.headers.clone();
    let resp = inner.call(Request::from_parts(parts, body)).await?;
    let page = keep(&cache, &config, &target, &req_headers, resp).await;
    let out = match page {
        Ok(page) => {
            let value = store_async(&cache, &target.key, target.version, page.1, &page.0).await;
            if let Some(l) = leader.take() {
                l.finish(value);
            }
            Ok(respond(&config, &req_headers, false, page.0, Served::Miss))
        }
        Err(passed) => Ok(mark(&config, passed, Served::Miss)),
    };
    if let Some(guard) = lock {
        guard.release().await;
    }
    out
}

/// The cross-process rebuild lock this request holds. Released once the page is stored; if
/// the request's future is dropped first (the client went away mid-rebuild), the release is
/// spawned on the runtime, so the other workers need not wait out the lock's `max_wait`.
struct LockGuard {
    cache: Cache,
    /// `None` once released.
    key: Option<String>,
}

impl LockGuard {
    async fn release(mut self) {
        if let Some(key) = self.key.take() {
            unlock(&self.cache, &key).await;
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        // Without a runtime (dropped outside one) the lock expires after its `max_wait`.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let cache = self.cache.clone();
            rt.spawn(async move { unlock(&cache, &key).await });
        }
    }
}

/// Releases the cross-process lock (it expires anyway if this fails).
async fn unlock(cache: &Cache, lock_key: &str) {
    if let Err(e) = cache.aio().delete(lock_key).await {
        cache.swallow(lock_key, "unlock", &e);
    }
}

/// Looks the page up (`read`: the page's own read, when `call` made it already): the page
/// itself, or the variant for this request's `Vary` values.
async fn find(
    cache: &Cache,
    config: &Config,
    req: &HeaderMap,
    key: String,
    read: Option<Lookup<StoredView>>,
) -> Found {
    let vk = config.version_key.as_deref();
    let read = match read {
        Some(read) => read,
        None => read_async::<StoredView>(cache, vk, &key).await,
    };
    let (version, target_key, generation) = match read {
        Lookup::Down => return Found::Down,
        Lookup::Miss(version) => (version, key, fresh_version()),
        Lookup::Hit(page) if matches(&page, req) => return Found::Hit(page),
        Lookup::Hit(page) => {
            let values = vary_values(req, page.vary.iter().map(|(n, _)| n.clone()));
            let variant = variant_key(&key, page.generation, &values);
            match read_async::<StoredView>(cache, vk, &variant).await {
                Lookup::Down => return Found::Down,
                Lookup::Hit(v) if matches(&v, req) => return Found::Hit(v),
                Lookup::Hit(_) => (None, variant, page.generation),
                Lookup::Miss(version) => (version, variant, page.generation),
            }
        }
    };
    let version = match (vk, version) {
        (Some(vk), None) => match version_async(cache, vk).await {
            Some(v) => Some(v),
            None => return Found::Down,
        },
        (_, v) => v,
    };
    Found::Miss(Target {
        key: target_key,
        version,
        generation,
    })
}

enum Locked {
    /// Another process stored the page while this one waited.
    Served(StoredView),
    /// This process holds the lock.
    Held(LockGuard),
    /// No lock (the cache failed, or the wait ran out): run the handler.
    Not,
}

/// The cross-process rebuild lock: take it, or wait for whoever holds it to store the page.
async fn lock(
    cache: &Cache,
    config: &Config,
    target: &Target,
    req: &HeaderMap,
    max_wait: Duration,
) -> Locked {
    let lock_key = format!("{}#lock", target.key);
    let vk = config.version_key.as_deref();
    match cache.aio().add(&lock_key, &1u8, max_wait).await {
        // The previous holder may have stored the page between this miss and this lock.
        Ok(true) => {
            let guard = LockGuard {
                cache: cache.clone(),
                key: Some(lock_key),
            };
            return match read_async::<StoredView>(cache, vk, &target.key).await {
                Lookup::Hit(page) if matches(&page, req) => {
                    guard.release().await;
                    Locked::Served(page)
                }
                _ => Locked::Held(guard),
            };
        }
        Ok(false) => {}
        Err(_) => return Locked::Not,
    }
    let deadline = Instant::now() + max_wait;
    let mut pause = Duration::from_millis(5);
    while Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
        match read_async::<StoredView>(cache, vk, &target.key).await {
            Lookup::Hit(page) if matches(&page, req) => return Locked::Served(page),
            Lookup::Down => return Locked::Not,
            _ => {}
        }
    }
    Locked::Not
}

/// The handler's response as a page to store, with its lifetime; or, when it may not be
/// stored, the response to pass on (its body streamed).
async fn keep<B: Body<Data = Bytes>>(
    cache: &Cache,
    config: &Config,
    target: &Target,
    req: &HeaderMap,
    resp: Response<B>,
) -> Result<(StoredView, Timeout), Response<ViewBody<B>>> {
    let (mut parts, body) = resp.into_parts();
    let ttl = cache.ttl(config.timeout);
    let refused = if !config.statuses.contains(&parts.status) {
        Some("of its status")
    } else if declared_length(&parts.headers).is_some_and(|n| n > config.max_body as u64) {
        Some("its body is over the size limit")
    } else {
        refusal(&parts.headers)
    };
    if let Some(why) = refused {
        tracing::debug!(target: "cachemacro", key = %target.key, "not stored: {why}");
        return Err(Response::from_parts(parts, ViewBody::stream(body)));
    }
    let body = match collect(body, config.max_body).await {
        Collected::Whole(body) => body,
        Collected::Passed(body) => return Err(Response::from_parts(parts, body)),
    };
    if config
        .response_filter
        .as_ref()
        .is_some_and(|keep| !keep(&parts, &body))
    {
        return Err(Response::from_parts(parts, ViewBody::full(body)));
    }
    let ttl = match (ttl, lifetime(&parts.headers)) {
        (Some(ttl), Some(life)) => Some(ttl.min(life)),
        (ttl, life) => ttl.or(life),
    };
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::ETAG) {
        if let Some(v) = etag_of(&body) {
            parts.headers.insert(header::ETAG, v);
        }
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let page = StoredView {
        status: parts.status.as_u16(),
        vary: vary_values(req, vary_names(&parts.headers)),
        headers: Headers(parts.headers),
        body,
        stored_at: unix_now(),
        generation: target.generation,
    };
    let timeout = match ttl {
        Some(ttl) => Timeout::from(ttl),
        None => Timeout::Never,
    };
    Ok((page, timeout))
}

/// A stored page as the response to this request: the page, its headers only (HEAD), or
/// `304 Not Modified`.
fn respond<B: Body>(
    config: &Config,
    req: &HeaderMap,
    head: bool,
    page: StoredView,
    served: Served,
) -> Response<ViewBody<B>> {
    let age = matches!(served, Served::Hit).then(|| page.age());
    let mut resp = if not_modified(req, &page.headers.0) {
        let mut resp = Response::new(ViewBody::empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        *resp.headers_mut() = not_modified_headers(&page.headers.0);
        resp
    } else {
        let status = page.status().unwrap_or(StatusCode::OK);
        let body = if head {
            ViewBody::empty()
        } else {
            ViewBody::full(page.body)
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = page.headers.0;
        resp
    };
    if let Some(age) = age {
        resp.headers_mut().insert(header::AGE, age_value(age));
    }
    mark(config, resp, served)
}

/// `Age: {age}`, without an allocation for the ages a short timeout gives.
fn age_value(age: u64) -> HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match SMALL.get(age as usize) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(age),
    }
}

/// Adds the hit indication header, if configured.
fn mark<B>(config: &Config, mut resp: Response<B>, served: Served) -> Response<B> {
    if let Some(name) = &config.hit_header {
        let value = match served {
            Served::Hit => "HIT",
            Served::Miss => "MISS",
        };
        resp.headers_mut()
            .insert(name.clone(), HeaderValue::from_static(value));
    }
    resp
}
