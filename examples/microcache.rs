//! Seed 000's microcache as a web service: `/` returns the current time, cached for 5 seconds
//! through the view cache, shared by every worker process through memcached.
//!
//! ```sh
//! cargo run --release --example microcache                       # in-memory, one worker
//! MEMCACHIER_SERVERS=127.0.0.1:11211 WEB_CONCURRENCY=2 \
//!     cargo run --release --example microcache                   # two workers, one memcached
//! curl -i http://127.0.0.1:5000/
//! ```
//!
//! Heroku's conventions: `PORT` (default 5000), `HOST` (default 127.0.0.1), `WEB_CONCURRENCY`
//! worker processes (default 1), the cache from `MEMCACHIER_*` or `CACHE_*` (in-memory when
//! none is set; `CACHE_TYPE=null` turns caching off). With memcached every worker serves the
//! same timestamp until it is five seconds old; with the in-memory cache each worker has its
//! own. `x-served-by` names the worker process that answered; `/static` is a plain handler,
//! the baseline of `scripts/bench-web`.
//!
//! The Flask original:
//!
//! ```python
//! @app.route('/')
//! @cache.cached(timeout=MICROCACHE_TIMEOUT)
//! def index():
//!     from datetime import datetime
//!     return datetime.now().isoformat()
//! ```

use std::process::ExitCode;

use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use cachemacro::view::ViewCacheLayer;
use cachemacro::Cache;

mod heroku;

const MICROCACHE_TIMEOUT: u64 = 5;

/// `datetime.now().isoformat()`, in UTC.
async fn index() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Which worker answered (outside the cache: a hit says who served it, not who rendered it).
async fn served_by(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert("x-served-by", HeaderValue::from(std::process::id()));
    resp
}

async fn app() -> Result<Router, String> {
    cachemacro::init(Cache::from_env().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    Ok(Router::new()
        .route(
            "/",
            get(index).route_layer(ViewCacheLayer::new().timeout(MICROCACHE_TIMEOUT)),
        )
        .route("/static", get(|| async { "Hello, World!" }))
        .layer(axum::middleware::map_response(served_by)))
}

fn main() -> ExitCode {
    heroku::run("microcache", app)
}
