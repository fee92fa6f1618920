//! One cache used from many tokio runtimes in turn, as `#[tokio::test]`s sharing a global
//! cache do, or a program that makes a short-lived runtime per job: the async connections a
//! runtime opened die with it, and that is neither an error nor a server failure. Every call
//! from the next runtime is answered from the cache (no uncached run, no error counted), on
//! memcached (`remove_failed = 1`: one failure counted would take the only server out) and
//! on redis.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

use cachemacro::{memoize, Cache, Stats};
use cachemacro_testkit::{Memcached, Redis};

/// Runtimes made in turn, each dropped before the next.
const RUNTIMES: usize = 6;

static MEMCACHED: LazyLock<Memcached> = LazyLock::new(Memcached::start);
static REDIS: LazyLock<Redis> = LazyLock::new(Redis::start);

static ON_MEMCACHED: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .memcached([MEMCACHED.addr()])
        .key_prefix("runtimes:")
        .build()
        .unwrap()
});
static ON_REDIS: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .redis(REDIS.url())
        .key_prefix("runtimes:")
        .build()
        .unwrap()
});

static MEMCACHED_RUNS: AtomicUsize = AtomicUsize::new(0);
static REDIS_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = ON_MEMCACHED, timeout = 300)]
async fn square_on_memcached(n: u64) -> u64 {
    MEMCACHED_RUNS.fetch_add(1, Ordering::SeqCst);
    n * n
}

#[memoize(cache = ON_REDIS, timeout = 300)]
async fn square_on_redis(n: u64) -> u64 {
    REDIS_RUNS.fetch_add(1, Ordering::SeqCst);
    n * n
}

/// A fresh runtime of either flavour, dropped by the caller after one use.
fn runtime(i: usize) -> tokio::runtime::Runtime {
    let mut builder = if i.is_multiple_of(2) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    };
    builder.enable_all().build().unwrap()
}

/// Runs `square` (memoized on `cache`) and the direct async API from `RUNTIMES` runtimes in
/// turn; `runs` counts the function's bodies.
fn check<F, Fut>(name: &str, cache: &Cache, square: F, runs: &AtomicUsize)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    for i in 0..RUNTIMES {
        let rt = runtime(i);
        rt.block_on(async {
            for n in 0..4 {
                assert_eq!(square(n).await, n * n, "{name}: runtime {i}");
            }
            let aio = cache.aio();
            aio.set(&format!("k{i}"), &(i as u64), 300).await.unwrap();
            for j in 0..=i {
                let got: Option<u64> = aio.get(&format!("k{j}")).await.unwrap();
                assert_eq!(got, Some(j as u64), "{name}: runtime {i} reads k{j}");
            }
        });
        drop(rt);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        4,
        "{name}: each argument ran once, then came from the cache in every later runtime"
    );
    let Stats { errors, .. } = cache.stats();
    assert_eq!(errors, 0, "{name}: a runtime's end is not a cache error");
}

#[test]
fn memcached_connections_outlive_no_runtime_and_fail_nothing() {
    check(
        "memcached",
        &ON_MEMCACHED,
        square_on_memcached,
        &MEMCACHED_RUNS,
    );
    // Each runtime opened connections of its own (the earlier ones died with theirs).
    let opened = MEMCACHED.stats()["total_connections"];
    assert!(
        opened >= RUNTIMES as u64,
        "{opened} connections for {RUNTIMES} runtimes"
    );
    // The server is still in rotation: a sync call works at once.
    ON_MEMCACHED.set("after", &1u8, 60).unwrap();
    assert_eq!(ON_MEMCACHED.get::<u8>("after").unwrap(), Some(1));
}

#[test]
fn redis_connections_outlive_no_runtime_and_fail_nothing() {
    check("redis", &ON_REDIS, square_on_redis, &REDIS_RUNS);
    ON_REDIS.set("after", &1u8, 60).unwrap();
    assert_eq!(ON_REDIS.get::<u8>("after").unwrap(), Some(1));
}
