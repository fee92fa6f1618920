//! The Heroku microcaching tutorial's microcache: a view cached for 5 seconds and shared by several worker processes
//! through memcached, configured from MemCachier's variables.
//!
//! ```sh
//! MEMCACHIER_SERVERS=127.0.0.1:11211 cargo run --example microcache
//! MEMCACHIER_SERVERS=… MEMCACHIER_USERNAME=… MEMCACHIER_PASSWORD=… cargo run --example microcache
//! ```
//!
//! Without `MEMCACHIER_SERVERS` it runs on the in-memory cache, where each worker has its own.
//! The parent starts three workers (this same program); each renders the page once a second
//! for eight seconds. With memcached, every worker shows the same timestamp until it is five
//! seconds old.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cachemacro::{cached, Cache};

/// `@app.route('/') @cache.cached(timeout=5) def index(): return datetime.now().isoformat()`
#[cached(timeout = 5, key = format!("view/{path}"))]
fn index(path: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{path}: rendered at {}.{:03} by process {}",
        now.as_secs(),
        now.subsec_millis(),
        std::process::id()
    )
}

fn worker(n: usize) -> Result<(), cachemacro::Error> {
    cachemacro::init(Cache::from_env()?)?;
    for _ in 0..8 {
        println!("worker {n}: {}", index("/"));
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(n) = std::env::args()
        .nth(1)
        .and_then(|a| a.strip_prefix("--worker=").map(str::to_owned))
    {
        return Ok(worker(n.parse()?)?);
    }
    let backend = Cache::from_env()?.backend().name();
    println!("cache backend: {backend} (set MEMCACHIER_SERVERS to share it between workers)");
    let me = std::env::current_exe()?;
    let workers: Vec<_> = (1..=3)
        .map(|n| Command::new(&me).arg(format!("--worker={n}")).spawn())
        .collect::<Result<_, _>>()?;
    for mut w in workers {
        w.wait()?;
    }
    Ok(())
}
