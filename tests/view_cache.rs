//! The view cache over HTTP: an axum app on a loopback port, a real HTTP client, every rule of
//! the layer, on the in-memory cache and on a real memcached.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cachemacro::view::{delete_group, delete_view, ViewCacheLayer};
use cachemacro::Cache;
use cachemacro_testkit::Memcached;

mod web;
use web::{serve, Http};

fn memcached() -> &'static Memcached {
    static SERVER: std::sync::OnceLock<Memcached> = std::sync::OnceLock::new();
    SERVER.get_or_init(Memcached::start)
}

/// A cache on the shared test memcached, its keys under `prefix` (a process of its own, as far
/// as the view cache can tell).
fn on_memcached(prefix: impl Into<String>) -> Cache {
    Cache::builder()
        .memcached([memcached().addr()])
        .key_prefix(prefix)
        .build()
        .unwrap()
}

/// The caches every rule is checked on: in process, and a real memcached (a prefix each).
fn caches() -> Vec<(&'static str, Cache)> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    vec![
        ("simple", Cache::builder().simple().build().unwrap()),
        ("memcached", on_memcached(format!("v{n}:"))),
    ]
}

/// A handler that counts its runs and answers with its run number.
#[derive(Clone, Default)]
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn runs(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    fn next(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// An app whose every route answers `run {n}` plus what `extra` adds to the response.
fn app(
    layer: ViewCacheLayer,
    runs: &Counted,
    extra: impl Fn(&HeaderMap, &mut Response) + Clone + Send + Sync + 'static,
) -> Router {
    let runs = runs.clone();
    let handler = move |req: Request| {
        let runs = runs.clone();
        let extra = extra.clone();
        async move {
            let mut resp = format!("run {}", runs.next()).into_response();
            extra(req.headers(), &mut resp);
            resp
        }
    };
    Router::new()
        .route("/", get(handler.clone()).post(handler.clone()))
        .route("/{*rest}", get(handler.clone()).post(handler))
        .layer(layer)
}

fn plain(_: &HeaderMap, _: &mut Response) {}

async fn start(layer: ViewCacheLayer, runs: &Counted) -> Http {
    Http::new(serve(app(layer, runs, plain)).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_stored_under_flasks_key_and_dropped_with_it() {
    for (name, cache) in caches() {
        let runs = Counted::default();
        let http = start(
            ViewCacheLayer::new().cache(cache.clone()).timeout(60),
            &runs,
        )
        .await;
        let first = http.get("/").await;
        assert_eq!(
            (first.text(), first.header("x-cache")),
            ("run 1".into(), "MISS".into()),
            "{name}"
        );
        assert!(
            cache.has("view//").unwrap(),
            "{name}: stored under Flask's key"
        );
        let second = http.get("/").await;
        assert_eq!(second.text(), "run 1", "{name}");
        assert!(second.hit(), "{name}");
        assert!(
            second.headers.contains_key(header::AGE),
            "{name}: Age on hits"
        );
        assert_eq!(runs.runs(), 1, "{name}");

        cache.delete("view//").unwrap(); // seed 002's cache.delete('view//')
        assert_eq!(http.get("/").await.text(), "run 2", "{name}");
        assert!(delete_view(&cache, "/").unwrap(), "{name}");
        assert_eq!(http.get("/").await.text(), "run 3", "{name}");

        // Other paths are other pages; percent-escapes decoded as Flask's request.path.
        assert_eq!(http.get("/a%20b").await.text(), "run 4", "{name}");
        assert!(cache.has("view//a b").unwrap(), "{name}");
        assert_eq!(http.get("/").await.text(), "run 3", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_strings_are_part_of_the_key_only_when_asked() {
    for (name, cache) in caches() {
        let runs = Counted::default();
        let by_path = start(ViewCacheLayer::new().cache(cache.clone()), &runs).await;
        assert_eq!(by_path.get("/p?x=1").await.text(), "run 1", "{name}");
        assert_eq!(
            by_path.get("/p?x=2").await.text(),
            "run 1",
            "{name}: Flask's default"
        );

        let runs = Counted::default();
        let layer = ViewCacheLayer::new().cache(cache.clone()).query_string();
        let by_query = start(layer, &runs).await;
        assert_eq!(
            by_query.get("/q?b=2&a=1&b=1").await.text(),
            "run 1",
            "{name}"
        );
        assert_eq!(
            by_query.get("/q?a=1&b=1&b=2").await.text(),
            "run 1",
            "{name}: sorted"
        );
        assert_eq!(
            by_query.get("/q?a=1&b=2").await.text(),
            "run 2",
            "{name}: repeats kept"
        );
        assert!(cache.has("view//q?a=1&b=1&b=2").unwrap(), "{name}");

        let runs = Counted::default();
        let layer = ViewCacheLayer::new()
            .cache(cache.clone())
            .key(|parts| format!("custom:{}", parts.uri.path().len()));
        let custom = start(layer, &runs).await;
        assert_eq!(custom.get("/ab").await.text(), "run 1", "{name}");
        assert_eq!(
            custom.get("/cd").await.text(),
            "run 1",
            "{name}: same custom key"
        );
        assert!(cache.has("custom:3").unwrap(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_answered_from_get_and_never_poisons_it() {
    for (name, cache) in caches() {
        let runs = Counted::default();
        let http = start(ViewCacheLayer::new().cache(cache.clone()), &runs).await;
        let head = http.send(Method::HEAD, "/h", &[], "").await;
        assert_eq!(head.status, StatusCode::OK, "{name}");
        assert!(
            !cache.has("view//h").unwrap(),
            "{name}: a HEAD stores nothing"
        );
        let get = http.get("/h").await;
        assert_eq!((get.text(), get.hit()), ("run 2".into(), false), "{name}");
        let get = http.get("/h").await;
        assert_eq!((get.text(), get.hit()), ("run 2".into(), true), "{name}");
        let head = http.send(Method::HEAD, "/h", &[], "").await;
        assert!(head.hit() && head.body.is_empty(), "{name}: {head:?}");
        assert_eq!(head.header("content-length"), "5", "{name}");
        assert_eq!(runs.runs(), 2, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_get_and_head_are_cached_and_unless_bypasses() {
    for (name, cache) in caches() {
        let runs = Counted::default();
        let layer = ViewCacheLayer::new()
            .cache(cache.clone())
            .unless(|parts| parts.uri.path() == "/never");
        let http = start(layer, &runs).await;
        assert_eq!(
            http.send(Method::POST, "/", &[], "x").await.text(),
            "run 1",
            "{name}"
        );
        assert_eq!(
            http.send(Method::POST, "/", &[], "x").await.text(),
            "run 2",
            "{name}"
        );
        assert!(!cache.has("view//").unwrap(), "{name}");
        assert_eq!(http.get("/never").await.text(), "run 3", "{name}");
        let again = http.get("/never").await;
        assert_eq!(again.text(), "run 4", "{name}");
        assert_eq!(again.header("x-cache"), "", "{name}: bypassed, not a miss");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_a_shared_cache_must_not_keep_are_not_stored() {
    for (name, cache) in caches() {
        let cases: [(&str, &str, &str); 6] = [
            ("/cookie", "set-cookie", "sid=secret"),
            ("/private", "cache-control", "private, max-age=60"),
            ("/nostore", "cache-control", "no-store"),
            ("/nocache", "cache-control", "no-cache"),
            ("/star", "vary", "*"),
            ("/zero", "cache-control", "max-age=0"),
        ];
        for (path, header_name, value) in cases {
            let runs = Counted::default();
            let app = app(
                ViewCacheLayer::new().cache(cache.clone()),
                &runs,
                move |_, resp| {
                    resp.headers_mut()
                        .insert(header_name, value.parse().unwrap());
                },
            );
            let http = Http::new(serve(app).await);
            let first = http.get(path).await;
            let second = http.get(path).await;
            assert_eq!(
                (first.text(), second.text()),
                ("run 1".into(), "run 2".into()),
                "{name}: {header_name}: {value}"
            );
            assert!(!second.hit(), "{name}");
            assert!(
                !cache.has(&format!("view/{path}")).unwrap(),
                "{name}: {path}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_set_for_one_client_never_reaches_another() {
    for (name, cache) in caches() {
        let runs = Counted::default();
        let n = runs.clone();
        let app = Router::new()
            .route(
                "/",
                get(move || {
                    let n = n.next();
                    async move {
                        ([(header::SET_COOKIE, format!("sid=client{n}"))], "page").into_response()
                    }
                }),
            )
            .layer(ViewCacheLayer::new().cache(cache.clone()));
        let http = Http::new(serve(app).await);
        let a = http.get("/").await;
        let b = http.get("/").await;
        assert_eq!(a.header("set-cookie"), "sid=client1", "{name}");
        assert_eq!(b.header("set-cookie"), "sid=client2", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_200_is_stored_unless_configured() {
    for (name, cache) in caches() {
        let runs = Counted::default();
        let make = |layer: ViewCacheLayer, runs: &Counted| {
            app(layer, runs, |_, resp| {
                *resp.status_mut() = StatusCode::NOT_FOUND
            })
        };
        let http = Http::new(serve(make(ViewCacheLayer::new().cache(cache.clone()), &runs)).await);
        http.get("/missing").await;
        let again = http.get("/missing").await;
        assert_eq!(
            (again.status, again.text()),
            (StatusCode::NOT_FOUND, "run 2".into()),
            "{name}"
        );

        let runs = Counted::default();
        let layer = ViewCacheLayer::new()
            .cache(cache.clone())
            .statuses([StatusCode::OK, StatusCode::NOT_FOUND]);
        let http = Http::new(serve(make(layer, &runs)).await);
        http.get("/gone").await;
        let again = http.get("/gone").await;
        assert_eq!(
            (again.status, again.text()),
            (StatusCode::NOT_FOUND, "run 1".into()),
            "{name}"
        );
        assert!(again.hit(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_keeps_one_page_per_value_of_the_named_headers() {
    for (name, cache) in caches() {
        let runs = Counted::default();
        let app = app(
            ViewCacheLayer::new().cache(cache.clone()),
            &runs,
            |req, resp| {
                let lang = req
                    .get("accept-language")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                resp.headers_mut()
                    .insert("vary", "Accept-Language".parse().unwrap());
                resp.headers_mut()
                    .insert("content-language", lang.parse().unwrap());
            },
        );
        let http = Http::new(serve(app).await);
        let en = [("accept-language", "en")];
        let fr = [("accept-language", "fr")];
        assert_eq!(http.get_with("/", &en).await.text(), "run 1", "{name}");
        let fr1 = http.get_with("/", &fr).await;
        assert_eq!(
            (fr1.text(), fr1.header("content-language")),
            ("run 2".into(), "fr".into()),
            "{name}"
        );
        let none = http.get("/").await;
        assert_eq!(
            none.text(),
            "run 3",
            "{name}: no header is a value of its own"
        );
        for _ in 0..2 {
            let en1 = http.get_with("/", &en).await;
            assert_eq!((en1.text(), en1.hit()), ("run 1".into(), true), "{name}");
            let fr1 = http.get_with("/", &fr).await;
            assert_eq!((fr1.text(), fr1.hit()), ("run 2".into(), true), "{name}");
            assert_eq!(http.get("/").await.text(), "run 3", "{name}");
        }
        // Deleting the page drops every variant.
        cache.delete("view//").unwrap();
        assert_eq!(http.get_with("/", &fr).await.text(), "run 4", "{name}");
        assert_eq!(http.get_with("/", &en).await.text(), "run 5", "{name}");
        assert_eq!(http.get_with("/", &fr).await.text(), "run 4", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_requests_bypass_unless_allowed() {
    for (name, cache) in caches() {
        let runs = Counted::default();
        let http = start(ViewCacheLayer::new().cache(cache.clone()), &runs).await;
        http.get("/").await;
        let auth = [("authorization", "Bearer alice")];
        let a = http.get_with("/", &auth).await;
        assert_eq!(a.text(), "run 2", "{name}: not served from the cache");
        let b = http.get_with("/a", &auth).await;
        assert_eq!(b.text(), "run 3", "{name}");
        assert!(!cache.has("view//a").unwrap(), "{name}: not stored");

        let runs = Counted::default();
        let layer = ViewCacheLayer::new()
            .cache(cache.clone())
            .allow_authorized();
        let http = start(layer, &runs).await;
        http.get_with("/b", &auth).await;
        assert!(http.get_with("/b", &auth).await.hit(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_dropped_and_repeated_ones_kept_in_order() {
    for (name, cache) in caches() {
        let runs = Counted::default();
        let app = app(
            ViewCacheLayer::new().cache(cache.clone()),
            &runs,
            |_, resp| {
                let h = resp.headers_mut();
                h.append("link", "</a.css>; rel=preload".parse().unwrap());
                h.append("link", "</b.js>; rel=preload".parse().unwrap());
                h.append("link", "</c.png>; rel=preload".parse().unwrap());
                h.insert("x-private-hop", "secret".parse().unwrap());
                h.insert("connection", "x-private-hop".parse().unwrap());
            },
        );
        let http = Http::new(serve(app).await);
        http.get("/").await;
        let hit = http.get("/").await;
        assert!(hit.hit(), "{name}");
        let links: Vec<_> = hit.headers.get_all("link").iter().collect();
        assert_eq!(
            links,
            [
                "</a.css>; rel=preload",
                "</b.js>; rel=preload",
                "</c.png>; rel=preload"
            ],
            "{name}"
        );
        assert!(!hit.headers.contains_key("x-private-hop"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_answer_304_straight_from_the_cache() {
    for (name, cache) in caches() {
        let runs = Counted::default();
        let http = start(ViewCacheLayer::new().cache(cache.clone()), &runs).await;
        let first = http.get("/").await;
        let etag = first.header("etag");
        assert!(etag.starts_with('"') && etag.len() > 10, "{name}: {etag}");
        let hit = http.get("/").await;
        assert_eq!(hit.header("etag"), etag, "{name}");
        let cond = http.get_with("/", &[("if-none-match", &etag)]).await;
        assert_eq!(cond.status, StatusCode::NOT_MODIFIED, "{name}");
        assert!(cond.body.is_empty() && cond.hit(), "{name}");
        assert_eq!(cond.header("etag"), etag, "{name}");
        let weak = http
            .get_with("/", &[("if-none-match", &format!("\"x\", W/{etag}"))])
            .await;
        assert_eq!(weak.status, StatusCode::NOT_MODIFIED, "{name}");
        let other = http.get_with("/", &[("if-none-match", "\"other\"")]).await;
        assert_eq!(
            (other.status, other.text()),
            (StatusCode::OK, "run 1".into()),
            "{name}"
        );
        assert_eq!(runs.runs(), 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_stream_through_uncached() {
    for (name, cache) in caches() {
        let big = Router::new()
            .route(
                "/big",
                get(|| async {
                    // A streamed body with no declared length: read until over the limit.
                    let chunks =
                        (0..64).map(|i| Ok::<_, Infallible>(vec![b'a' + (i % 26) as u8; 1024]));
                    Body::from_stream(futures_iter(chunks))
                }),
            )
            .route("/small", get(|| async { "small" }))
            .layer(ViewCacheLayer::new().cache(cache.clone()).max_body(10_000));
        let http = Http::new(serve(big).await);
        let resp = http.get("/big").await;
        assert_eq!(resp.status, StatusCode::OK, "{name}");
        assert_eq!(resp.body.len(), 64 * 1024, "{name}");
        assert!(resp.body[..1024].iter().all(|&b| b == b'a'), "{name}");
        assert!(
            resp.body[63 * 1024..].iter().all(|&b| b == b'a' + 11),
            "{name}"
        );
        assert!(!cache.has("view//big").unwrap(), "{name}");
        assert!(!http.get("/big").await.hit(), "{name}");
        http.get("/small").await;
        assert!(http.get("/small").await.hit(), "{name}");
    }
}

/// A stream of the items of `iter`.
fn futures_iter<I: Iterator + Unpin + Send + 'static>(
    iter: I,
) -> impl futures_core::Stream<Item = I::Item> + Send {
    struct It<I>(I);
    impl<I: Iterator + Unpin> futures_core::Stream for It<I> {
        type Item = I::Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<I::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    It(iter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rebuild_per_key_in_a_process() {
    for (name, cache) in caches() {
        let runs = Counted::default();
        let n = runs.clone();
        let app = Router::new()
            .route(
                "/slow",
                get(move || {
                    let n = n.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        format!("run {}", n.next())
                    }
                }),
            )
            .layer(ViewCacheLayer::new().cache(cache.clone()));
        let http = Http::new(serve(app).await);
        let all: Vec<_> = (0..20)
            .map(|_| {
                let http = http.clone();
                tokio::spawn(async move { http.get("/slow").await.text() })
            })
            .collect();
        for t in all {
            assert_eq!(t.await.unwrap(), "run 1", "{name}");
        }
        assert_eq!(runs.runs(), 1, "{name}");
    }
}

/// Two caches on one memcached stand for two worker processes: each has its own in-process
/// single flight, so only the cross-process lock keeps them from both rebuilding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_keeps_workers_from_all_rebuilding_an_expired_page() {
    for locked in [false, true] {
        let prefix = format!("lock{locked}:");
        let runs = Counted::default();
        let mut workers = Vec::new();
        for _ in 0..2 {
            let cache = on_memcached(prefix.clone());
            let mut layer = ViewCacheLayer::new().cache(cache);
            if locked {
                layer = layer.lock(Duration::from_secs(5));
            }
            let n = runs.clone();
            let app = Router::new()
                .route(
                    "/hot",
                    get(move || {
                        let n = n.clone();
                        async move {
                            // Long enough that every request arrives while the first rebuild runs, even on a
                            // slow machine.
                            tokio::time::sleep(Duration::from_millis(1000)).await;
                            format!("run {}", n.next())
                        }
                    }),
                )
                .layer(layer);
            workers.push(Http::new(serve(app).await));
        }
        let all: Vec<_> = (0..10)
            .map(|i| {
                let http = workers[i % 2].clone();
                tokio::spawn(async move { http.get("/hot").await.text() })
            })
            .collect();
        let mut texts = Vec::new();
        for t in all {
            texts.push(t.await.unwrap());
        }
        if locked {
            assert_eq!(runs.runs(), 1, "with the lock: {texts:?}");
            assert!(texts.iter().all(|t| t == "run 1"), "{texts:?}");
        } else {
            assert_eq!(
                runs.runs(),
                2,
                "without it, one rebuild per worker: {texts:?}"
            );
        }
    }
}

/// A client that goes away mid-rebuild cancels its handler; the lock it took is released then,
/// not left for the other workers to wait out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_rebuild_releases_its_lock() {
    use tokio::io::AsyncWriteExt;

    let cache = on_memcached("lockdrop:");
    let runs = Counted::default();
    let n = runs.clone();
    let app = Router::new()
        .route(
            "/slow",
            get(move || {
                let n = n.clone();
                async move {
                    let run = n.next();
                    if run == 1 {
                        // The first rebuild outlives its client.
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    format!("run {run}")
                }
            }),
        )
        .layer(
            ViewCacheLayer::new()
                .cache(cache.clone())
                .lock(Duration::from_secs(60)),
        );
    let addr = serve(app).await;

    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..500 {
        if runs.runs() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(runs.runs(), 1, "the first request reached its handler");
    assert!(
        cache.aio().has("view//slow#lock").await.unwrap(),
        "it holds the lock"
    );
    drop(client);

    let mut released = false;
    for _ in 0..500 {
        if !cache.aio().has("view//slow#lock").await.unwrap() {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(released, "the lock outlived the cancelled rebuild");
    let next = Http::new(addr).get("/slow").await;
    assert_eq!(next.text(), "run 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_dropped_in_every_process_at_once() {
    let prefix = "group:";
    let worker = || on_memcached(prefix);
    let (a, b) = (worker(), worker());
    let runs = Counted::default();
    let http_a = start(ViewCacheLayer::new().cache(a.clone()).group("tasks"), &runs).await;
    let http_b = start(ViewCacheLayer::new().cache(b.clone()).group("tasks"), &runs).await;
    let other = start(ViewCacheLayer::new().cache(a.clone()).group("other"), &runs).await;
    assert_eq!(http_a.get("/one").await.text(), "run 1");
    assert_eq!(
        http_b.get("/one").await.text(),
        "run 1",
        "shared with worker b"
    );
    assert_eq!(http_b.get("/two").await.text(), "run 2");
    assert_eq!(other.get("/three").await.text(), "run 3");
    delete_group(&b, "tasks").unwrap();
    assert_eq!(
        http_a.get("/one").await.text(),
        "run 4",
        "worker a sees b's invalidation"
    );
    assert_eq!(http_a.get("/two").await.text(), "run 5");
    assert_eq!(
        other.get("/three").await.text(),
        "run 3",
        "other groups stay"
    );
    cachemacro::view::delete_group_async(&a, "tasks")
        .await
        .unwrap();
    assert_eq!(http_b.get("/one").await.text(), "run 6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_is_down_or_corrupt_still_serves_the_handler() {
    let dead = Cache::builder()
        .memcached([format!("127.0.0.1:{}", cachemacro_testkit::free_port())])
        .build()
        .unwrap();
    let runs = Counted::default();
    let http = start(ViewCacheLayer::new().cache(dead.clone()), &runs).await;
    for i in 1..=3 {
        let r = http.get("/").await;
        assert_eq!((r.status, r.text()), (StatusCode::OK, format!("run {i}")));
    }
    assert!(dead.stats().errors > 0);

    // Hostile bytes at the page's key are a miss, then replaced.
    let cache = on_memcached("corrupt:");
    memcached().raw_set("corrupt:view//", b"\xc1\xff\x00garbage");
    let runs = Counted::default();
    let http = start(ViewCacheLayer::new().cache(cache), &runs).await;
    assert_eq!(http.get("/").await.text(), "run 1");
    assert!(http.get("/").await.hit());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_max_age_bound_a_pages_life() {
    let cache = Cache::builder().simple().build().unwrap();
    let runs = Counted::default();
    let app = app(
        ViewCacheLayer::new().cache(cache.clone()).timeout(60),
        &runs,
        |req, resp| {
            if req.contains_key("x-short") {
                resp.headers_mut()
                    .insert("cache-control", "public, max-age=1".parse().unwrap());
            }
        },
    );
    let http = Http::new(serve(app).await);
    http.get_with("/short", &[("x-short", "1")]).await;
    assert!(http.get("/short").await.hit());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(!http.get("/short").await.hit(), "max-age=1 outlived");

    let runs = Counted::default();
    let http = start(ViewCacheLayer::new().cache(cache.clone()).timeout(1), &runs).await;
    http.get("/t").await;
    assert!(http.get("/t").await.hit());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(!http.get("/t").await.hit(), "timeout outlived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_cache_is_the_process_wide_one() {
    let runs = Counted::default();
    let http = start(ViewCacheLayer::new(), &runs).await;
    http.get("/global").await;
    assert!(cachemacro::cache().has("view//global").unwrap());
    assert!(http.get("/global").await.hit());
    let none = start(ViewCacheLayer::new().hit_header(None), &runs).await;
    assert_eq!(none.get("/global").await.header("x-cache"), "");
}
