//! The async memcached client: memoized hits with no blocking-pool hand-off, calls dropped
//! at random points under load (0 wrong values after), and kills, freezes and restarts under
//! concurrent async load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use cachemacro::backends::memcached::MemcachedOptions;
use cachemacro::{memoize, Cache};

mod async_client;
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
    async_client::direct_api(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_dropped_at_any_point_never_misdeliver_a_reply() {
    let server = Memcached::start();
    let cache = cache_on(&[&server], "cancel:");
    async_client::cancellation(&cache).await;
}

/// Concurrent reads of one key share one request on the wire (the server counts fewer `get`s
/// than there were reads), and every one of them gets the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_of_one_key_share_a_request() {
    const TASKS: usize = 256;
    const READS: usize = 20;
    let server = Memcached::start();
    let cache = cache_on(&[&server], "shared:");
    cache.aio().set("hot", &7u64, 0).await.unwrap();
    let before = server.stats()["cmd_get"];
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for _ in 0..READS {
                    assert_eq!(cache.aio().get::<u64>("hot").await.unwrap(), Some(7));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let gets = (server.stats()["cmd_get"] - before) as usize;
    println!("{} reads, {gets} gets on the server", TASKS * READS);
    assert!(
        gets < TASKS * READS,
        "{gets} gets for {} reads",
        TASKS * READS
    );
    assert_eq!(cache.stats().errors, 0);
}

/// A read that starts after a write finished sees that write, however many reads of the key
/// are in flight to be shared: only reads not yet sent are joined. The writes come from
/// another connection (another process, as far as the server can tell), so the order of one
/// connection's replies does not decide it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_read_never_predates_a_finished_write() {
    let server = Memcached::start();
    let cache = cache_on(&[&server], "order:");
    let writer = cache_on(&[&server], "order:");
    writer.aio().set("n", &0u64, 0).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Readers that keep reads of the key queued and in flight all along.
    let background: Vec<_> = (0..32)
        .map(|_| {
            let (cache, stop) = (cache.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    cache.aio().get::<u64>("n").await.unwrap();
                }
            })
        })
        .collect();
    let mut stale = 0;
    for n in 1..=300u64 {
        writer.aio().set("n", &n, 0).await.unwrap();
        let reads: Vec<_> = (0..4)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.aio().get::<u64>("n").await.unwrap() })
            })
            .collect();
        for r in reads {
            if r.await.unwrap() != Some(n) {
                stale += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in background {
        t.await.unwrap();
    }
    assert_eq!(
        stale, 0,
        "reads that missed a write finished before they began"
    );
    assert_eq!(cache.stats().errors, 0);
}

static FAULTS: OnceLock<Cache> = OnceLock::new();

#[memoize(cache = FAULTS.get().unwrap())]
async fn tripled(a: u64) -> u64 {
    a * 3 + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_freezes_and_restarts_under_async_load() {
    let mut servers = [Memcached::start(), Memcached::start()];
    FAULTS
        .set(cache_on(&[&servers[0], &servers[1]], ""))
        .unwrap();
    async_client::round(tripled, 32, 20).await;
    let home = servers
        .iter()
        .position(|m| m.keys().iter().any(|k| k.ends_with("memver")))
        .unwrap();
    let other = 1 - home;

    // The server without the version frozen: its calls cost one I/O timeout, the others'
    // go on (values fail over); nothing stalls for longer.
    servers[other].freeze();
    let frozen = async_client::round(tripled, 32, 20).await;
    servers[other].thaw();
    assert!(frozen < BOUND, "frozen: {frozen:?}");

    // Killed and restarted: calls stay bounded, then cached again.
    servers[other].kill();
    let killed = async_client::round(tripled, 32, 20).await;
    servers[other].restart();
    assert!(killed < BOUND, "killed: {killed:?}");

    // The version's server killed: uncached meanwhile, bounded; back after its restart.
    servers[home].kill();
    let home_killed = async_client::round(tripled, 32, 20).await;
    assert!(
        home_killed < BOUND,
        "version server killed: {home_killed:?}"
    );
    assert!(tripled_delete_memoized_all().await.is_err());
    servers[home].restart();
    tokio::time::sleep(options().dead_timeout + Duration::from_millis(300)).await;
    async_client::round(tripled, 32, 20).await;
    let hits = FAULTS.get().unwrap().stats().hits;
    async_client::round(tripled, 32, 20).await;
    assert!(
        FAULTS.get().unwrap().stats().hits >= hits + 600,
        "recovered: every call of the last round hits"
    );
    println!("async faults: frozen max {frozen:?}, killed max {killed:?}, version server killed max {home_killed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_client_authenticates_on_sasl_servers() {
    let server = Memcached::start_sasl("dave", "pw");
    let cache = Cache::builder()
        .memcached([server.addr()])
        .sasl("dave", "pw")
        .build()
        .unwrap();
    cache.aio().set("k", &5u32, 60).await.unwrap();
    assert_eq!(cache.aio().get::<u32>("k").await.unwrap(), Some(5));
    assert_eq!(cache.stats().offloaded, 0, "through the async client");
}
