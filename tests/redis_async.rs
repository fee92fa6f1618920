//! The async redis client: memoized hits with no blocking-pool hand-off, calls dropped at
//! random points under load (0 wrong values after), and kills, freezes and restarts under
//! concurrent async load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cachemacro::backends::redis::RedisOptions;
use cachemacro::{memoize, Cache};
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
    let a = cache.aio();
    a.set("a", &1u32, 60).await.unwrap();
    assert!(!a.add("a", &2u32, 60).await.unwrap());
    assert!(a.add("b", &2u32, 60).await.unwrap());
    assert!(a.has("a").await.unwrap());
    assert_eq!(
        a.get_many::<u32>(&["a", "b", "c"]).await.unwrap(),
        [Some(1), Some(2), None]
    );
    let (x, y) = (7u32, 8u32);
    a.set_many([("x", &x), ("y", &y)], 60).await.unwrap();
    assert_eq!(
        cache.get::<u32>("y").unwrap(),
        Some(8),
        "the sync API sees it"
    );
    assert_eq!(a.delete_many(&["x", "y", "z"]).await.unwrap(), 2);
    assert!(a.delete("a").await.unwrap());
    assert_eq!(a.inc("n", 5).await.unwrap(), 5);
    assert_eq!(a.dec("n", 2).await.unwrap(), 3);
    // Any key, the empty one included.
    a.set("", &9u32, 60).await.unwrap();
    assert_eq!(a.get::<u32>("").await.unwrap(), Some(9));
    a.clear().await.unwrap();
    assert_eq!(a.get::<u32>("b").await.unwrap(), None);
    assert_eq!(cache.stats().offloaded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_dropped_at_any_point_never_misdeliver_a_reply() {
    let server = Redis::start();
    let cache = cache_on(&server, "cancel:");
    const KEYS: u64 = 200;
    for i in 0..KEYS {
        cache.aio().set(&format!("k{i}"), &i, 0).await.unwrap();
    }
    let wrong = Arc::new(AtomicUsize::new(0));
    let (completed, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let cache = cache.clone();
            let (wrong, completed, dropped) = (wrong.clone(), completed.clone(), dropped.clone());
            tokio::spawn(async move {
                for n in 0..100u64 {
                    let i = (t * 31 + n * 7) % KEYS;
                    let j = (i + 1) % KEYS;
                    let key = format!("k{i}");
                    let key2 = format!("k{j}");
                    // A deadline of 0 to 1.5 ms: many calls are dropped while queued, written
                    // or halfway through their replies.
                    let limit = Duration::from_micros(fastrand_u64(t, n) % 1500);
                    let call = async {
                        let a = cache.aio();
                        (
                            a.get::<u64>(&key).await,
                            a.get_many::<u64>(&[&key, &key2]).await,
                        )
                    };
                    match tokio::time::timeout(limit, call).await {
                        Ok((one, many)) => {
                            completed.fetch_add(1, Ordering::Relaxed);
                            if one.unwrap() != Some(i) || many.unwrap() != [Some(i), Some(j)] {
                                wrong.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Everything read afterwards is right, on the same connection.
    for i in 0..KEYS {
        let v = cache.aio().get::<u64>(&format!("k{i}")).await.unwrap();
        if v != Some(i) {
            wrong.fetch_add(1, Ordering::Relaxed);
        }
    }
    let (completed, dropped) = (
        completed.load(Ordering::Relaxed),
        dropped.load(Ordering::Relaxed),
    );
    println!(
        "cancellation: {completed} calls completed, {dropped} dropped in flight, then {KEYS} reads"
    );
    assert_eq!(wrong.load(Ordering::Relaxed), 0, "wrong values");
    assert!(
        dropped >= 100 && completed >= 10,
        "{completed} completed, {dropped} dropped"
    );
    assert_eq!(cache.stats().errors, 0);
}

/// A deterministic spread of numbers from two seeds.
fn fastrand_u64(a: u64, b: u64) -> u64 {
    let mut x = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    x.wrapping_mul(0x94d0_49bb_1331_11eb) >> 7
}

static FAULTS: OnceLock<Cache> = OnceLock::new();

#[memoize(cache = FAULTS.get().unwrap())]
async fn tripled(a: u64) -> u64 {
    a * 3 + 1
}

/// Rounds of concurrent calls; the slowest call, and whether every value was right.
async fn round(tasks: u64, calls: u64) -> Duration {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            tokio::spawn(async move {
                let mut max = Duration::ZERO;
                for n in 0..calls {
                    let a = (t * calls + n) % 200;
                    let start = Instant::now();
                    assert_eq!(tripled(a).await, a * 3 + 1, "wrong value");
                    max = max.max(start.elapsed());
                }
                max
            })
        })
        .collect();
    let mut max = Duration::ZERO;
    for h in handles {
        max = max.max(h.await.unwrap());
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_freezes_and_restarts_under_async_load() {
    let mut server = Redis::start();
    FAULTS.set(cache_on(&server, "")).unwrap();
    round(32, 20).await;

    // Frozen: the calls in flight cost one I/O timeout, later ones fail fast; all uncached,
    // none wrong, none stalled longer.
    server.freeze();
    let frozen = round(32, 20).await;
    server.thaw();
    assert!(frozen < BOUND, "frozen: {frozen:?}");

    // Killed, then restarted: bounded meanwhile, cached again after `retry_timeout`.
    server.kill();
    let killed = round(32, 20).await;
    assert!(killed < BOUND, "killed: {killed:?}");
    assert!(tripled_delete_memoized_all().await.is_err());
    server.restart();
    tokio::time::sleep(options().retry_timeout + Duration::from_millis(300)).await;
    round(32, 20).await;
    let hits = FAULTS.get().unwrap().stats().hits;
    round(32, 20).await;
    assert!(
        FAULTS.get().unwrap().stats().hits >= hits + 600,
        "recovered: every call of the last round hits"
    );
    println!("async redis faults: frozen max {frozen:?}, killed max {killed:?}");
}
