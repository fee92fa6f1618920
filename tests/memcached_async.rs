//! The async memcached client: memoized hits with no blocking-pool hand-off, calls dropped
//! at random points under load (0 wrong values after), and kills, freezes and restarts under
//! concurrent async load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cachemacro::backends::memcached::MemcachedOptions;
use cachemacro::{memoize, Cache};
use cachemacro_testkit::Memcached;

fn options() -> MemcachedOptions {
    let mut o = MemcachedOptions::default();
    o.retry_timeout = Duration::from_millis(300);
    o.dead_timeout = Duration::from_secs(1);
    o
}

fn cache_on(servers: &[&Memcached], prefix: &str) -> Cache {
    Cache::builder()
        .memcached(servers.iter().map(|m| m.addr()))
        .memcached_options(options())
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
    let server = Memcached::start();
    HITS.set(cache_on(&[&server], "hits:")).unwrap();
    let cache = HITS.get().unwrap();
    for i in 0..50 {
        assert_eq!(priced(i).await, i * 100);
    }
    let gets = server.stats()["cmd_get"];
    for i in 0..50 {
        assert_eq!(priced(i).await, i * 100);
    }
    assert_eq!(
        HIT_CALLS.load(Ordering::SeqCst),
        50,
        "the second round hits"
    );
    assert_eq!(
        server.stats()["cmd_get"] - gets,
        100,
        "two keys per hit, in one request"
    );
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
    let server = Memcached::start();
    let cache = cache_on(&[&server], "direct:");
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
    let server = Memcached::start();
    let cache = cache_on(&[&server], "cancel:");
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
    let mut servers = [Memcached::start(), Memcached::start()];
    FAULTS
        .set(cache_on(&[&servers[0], &servers[1]], ""))
        .unwrap();
    round(32, 20).await;
    let home = servers
        .iter()
        .position(|m| m.keys().iter().any(|k| k.ends_with("memver")))
        .unwrap();
    let other = 1 - home;

    // The server without the version frozen: its calls cost one I/O timeout, the others'
    // go on (values fail over); nothing stalls for longer.
    servers[other].freeze();
    let frozen = round(32, 20).await;
    servers[other].thaw();
    assert!(frozen < BOUND, "frozen: {frozen:?}");

    // Killed and restarted: calls stay bounded, then cached again.
    servers[other].kill();
    let killed = round(32, 20).await;
    servers[other].restart();
    assert!(killed < BOUND, "killed: {killed:?}");

    // The version's server killed: uncached meanwhile, bounded; back after its restart.
    servers[home].kill();
    let home_killed = round(32, 20).await;
    assert!(
        home_killed < BOUND,
        "version server killed: {home_killed:?}"
    );
    assert!(tripled_delete_memoized_all().await.is_err());
    servers[home].restart();
    tokio::time::sleep(options().dead_timeout + Duration::from_millis(300)).await;
    round(32, 20).await;
    let hits = FAULTS.get().unwrap().stats().hits;
    round(32, 20).await;
    assert!(
        FAULTS.get().unwrap().stats().hits >= hits + 600,
        "recovered: every call of the last round hits"
    );
    println!("async faults: frozen max {frozen:?}, killed max {killed:?}, version server killed max {home_killed:?}");
}
