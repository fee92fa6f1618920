//! The view cache's own cost, without sockets: one request through an axum `Router` (request
//! in, body collected), for a handler returning a static string with no cache layer, the same
//! handler behind `ViewCacheLayer` answered from the in-memory cache (a hit), and a handler
//! that formats the time (the microcache's page) with no cache layer.
//!
//! `cargo bench --bench view`; the last lines print each figure as a ratio to the static
//! handler's (time per request: lower is better). `scripts/bench-web` measures the same over
//! HTTP with wrk, where the server's socket work adds the same cost to every route.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use cachemacro::view::ViewCacheLayer;
use cachemacro::Cache;
use criterion::Criterion;
use http_body_util::BodyExt;
use tower::ServiceExt;

mod support;
use support::report;

const GROUP: &str = "view_request";
const NAMES: [&str; 3] = ["static", "cached_view_hit", "uncached_time"];

async fn time_page() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn router() -> Router {
    let cache = Cache::builder().simple().build().unwrap();
    Router::new()
        .route("/static", get(|| async { "Hello, World!" }))
        .route(
            "/cached",
            get(|| async { "Hello, World!" })
                .route_layer(ViewCacheLayer::new().cache(cache).timeout(300)),
        )
        .route("/time", get(time_page))
}

/// One request to `path`, its body read whole; the body's length.
async fn request(app: &Router, path: &'static str) -> usize {
    let req = Request::get(path)
        .header("host", "bench")
        .header("user-agent", "wrk")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    body.len()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = router();
    // Store the cached page before measuring: every measured request is a hit.
    rt.block_on(request(&app, "/cached"));
    let mut group = c.benchmark_group(GROUP);
    for (name, path) in NAMES.iter().zip(["/static", "/cached", "/time"]) {
        group.bench_function(*name, |b| {
            b.iter(|| black_box(rt.block_on(request(&app, path))))
        });
    }
    group.finish();
}

/// Prints every figure of this run as a ratio to the static handler's.
fn summary() {
    report::print_ratios(
        GROUP,
        &NAMES,
        "static",
        "ns per request, and ratio to the static handler",
    );
}

fn main() {
    report::run(
        Duration::from_millis(500),
        Duration::from_secs(2),
        bench,
        summary,
    );
}
