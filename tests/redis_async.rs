//! The async redis client: memoized hits with no blocking-pool hand-off, calls dropped at
//! random points under load (0 wrong values after), and kills, freezes and restarts under
//! concurrent async load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use cachemacro::backends::redis::RedisOptions;
use cachemacro::{memoize, Cache};

mod async_client;
use cachemacro_testkit::Redis;

fn options() -> RedisOptions {
    let mut o = RedisOptions::default();
    o.retry_timeout = Duration::from_millis(300);
    o
}

fn cache_on(server: &Redis, prefix: &str) -> Cache {
    Cache::builder()
        .redis(server.url())
        .redis_options(options())
        .key_prefix(prefix)
        .build()
        .unwrap()
}

/// About one I/O timeout (750 ms) for the read and one for the write, with slack.
const BOUND: Duration = Duration::from_millis(2500);

static HITS: OnceLock<Cache> = OnceLock::new();
static HIT_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = HITS.get().unwrap())]
async fn priced(item: u64) -> u64 {
    HIT_CALLS.fetch_add(1, Ordering::SeqCst);
    item * 100
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_memoized_hits_never_touch_the_blocking_pool() {
    let server = Redis::start();
    HITS.set(cache_on(&server, "hits:")).unwrap();
    let cache = HITS.get().unwrap();
    for i in 0..50 {
        assert_eq!(priced(i).await, i * 100);
    }
    let mgets = server.calls("mget");
    for i in 0..50 {
        assert_eq!(priced(i).await, i * 100);
    }
    assert_eq!(
        HIT_CALLS.load(Ordering::SeqCst),
        50,
        "the second round hits"
    );
    assert_eq!(server.calls("mget") - mgets, 50, "one MGET per hit");
    priced_delete_memoized(3).await.unwrap();
    priced_delete_memoized_all().await.unwrap();
    cache.aio().set("k", &1u32, 60).await.unwrap();
    assert_eq!(cache.aio().get::<u32>("k").await.unwrap(), Some(1));
    assert_eq!(
        cache.stats().offloaded,
        0,
        "no call went to the blocking pool"
    );
    assert_eq!(cache.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_direct_api_mirrors_the_sync_one() {
    let server = Redis::start();
    let cache = cache_on(&server, "direct:");
    async_client::direct_api(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_dropped_at_any_point_never_misdeliver_a_reply() {
    let server = Redis::start();
    let cache = cache_on(&server, "cancel:");
    async_client::cancellation(&cache).await;
}

static FAULTS: OnceLock<Cache> = OnceLock::new();

#[memoize(cache = FAULTS.get().unwrap())]
async fn tripled(a: u64) -> u64 {
    a * 3 + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_freezes_and_restarts_under_async_load() {
    let mut server = Redis::start();
    FAULTS.set(cache_on(&server, "")).unwrap();
    async_client::round(tripled, 32, 20).await;

    // Frozen: the calls in flight cost one I/O timeout, later ones fail fast; all uncached,
    // none wrong, none stalled longer.
    server.freeze();
    let frozen = async_client::round(tripled, 32, 20).await;
    server.thaw();
    assert!(frozen < BOUND, "frozen: {frozen:?}");

    // Killed, then restarted: bounded meanwhile, cached again after `retry_timeout`.
    server.kill();
    let killed = async_client::round(tripled, 32, 20).await;
    assert!(killed < BOUND, "killed: {killed:?}");
    assert!(tripled_delete_memoized_all().await.is_err());
    server.restart();
    tokio::time::sleep(options().retry_timeout + Duration::from_millis(300)).await;
    async_client::round(tripled, 32, 20).await;
    let hits = FAULTS.get().unwrap().stats().hits;
    async_client::round(tripled, 32, 20).await;
    assert!(
        FAULTS.get().unwrap().stats().hits >= hits + 600,
        "recovered: every call of the last round hits"
    );
    println!("async redis faults: frozen max {frozen:?}, killed max {killed:?}");
}
