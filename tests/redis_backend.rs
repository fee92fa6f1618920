//! The redis backend against real redis servers (standalone and a 3-master cluster) started
//! by the tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cachemacro::{memoize, Cache, Error};
use cachemacro_testkit::{round, Cluster, Redis};

fn cache_on(url: &str, prefix: &str) -> Cache {
    Cache::builder()
        .redis(url)
        .key_prefix(prefix)
        .build()
        .unwrap()
}

#[test]
fn every_backend_method() {
    let server = Redis::start();
    let cache = cache_on(&server.url(), "app:");
    assert_eq!(cache.backend().name(), "redis");
    assert_eq!(cache.get::<String>("k").unwrap(), None);
    cache.set("k", &"v".to_owned(), 60).unwrap();
    assert_eq!(cache.get::<String>("k").unwrap().as_deref(), Some("v"));
    assert!(cache.has("k").unwrap());
    assert!(!cache.add("k", &"w".to_owned(), 60).unwrap());
    assert!(cache.add("fresh", &"w".to_owned(), 60).unwrap());
    // `add` is one SET NX carrying its expiry: no window where the key lives forever.
    let pttl: i64 = server
        .command(&["PTTL", "app:fresh"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((1..=60_000).contains(&pttl), "{pttl}");
    assert_eq!(server.calls("setnx") + server.calls("expire"), 0);
    assert!(cache.delete("k").unwrap());
    assert!(!cache.delete("k").unwrap());

    let (a, b) = (1u32, 2u32);
    cache.set_many([("a", &a), ("b", &b)], 60).unwrap();
    assert_eq!(
        cache.get_many::<u32>(&["a", "nope", "b"]).unwrap(),
        vec![Some(1), None, Some(2)]
    );
    let unlinks = server.calls("unlink");
    assert_eq!(cache.delete_many(&["a", "b", "nope"]).unwrap(), 2);
    assert_eq!(
        server.calls("unlink") - unlinks,
        1,
        "delete_many is one request"
    );

    assert_eq!(cache.inc("n", 1).unwrap(), 1);
    assert_eq!(cache.inc("n", 5).unwrap(), 6);
    assert_eq!(cache.dec("n", 10).unwrap(), -4, "redis counters are signed");
    assert_eq!(cache.get::<i64>("n").unwrap(), Some(-4));
    cache.set("s", &"x".to_owned(), 60).unwrap();
    assert!(matches!(cache.inc("s", 1), Err(Error::NotANumber(_))));

    cache
        .set("short", &1u8, Duration::from_millis(150))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!cache.has("short").unwrap());

    let long = "x".repeat(10_000);
    for key in ["with space", "nul\0", "ключ", long.as_str(), "*glob?[x]"] {
        cache.set(key, &key.len(), 60).unwrap();
        assert_eq!(cache.get::<usize>(key).unwrap(), Some(key.len()));
    }
}

#[test]
fn clear_removes_only_this_prefix_with_scan_and_unlink() {
    let server = Redis::start();
    let one = cache_on(&server.url(), "one*:");
    let two = cache_on(&server.url(), "two:");
    for i in 0..2500u32 {
        one.set(&format!("k{i}"), &i, 60).unwrap();
    }
    two.set("k", &1u8, 60).unwrap();
    server.command(&["SET", "onex:other", "1"]).unwrap(); // matches `one*` only as a glob
    one.clear().unwrap();
    assert_eq!(one.get::<u32>("k1").unwrap(), None);
    assert_eq!(two.get::<u8>("k").unwrap(), Some(1), "other prefixes stay");
    assert_eq!(
        server.command(&["GET", "onex:other"]).unwrap().trim(),
        "1",
        "the prefix is not a glob"
    );
    assert_eq!(
        server.calls("keys") + server.calls("flushdb"),
        0,
        "never KEYS, never FLUSHDB with a prefix"
    );
    assert!(server.calls("scan") >= 1);
    // Without a prefix, FLUSHDB.
    cache_on(&server.url(), "").clear().unwrap();
    assert_eq!(server.dbsize(), 0);
}

#[test]
fn passwords_right_wrong_and_missing() {
    let server = Redis::start_with_password("s3cr@t%");
    let good = Cache::builder()
        .redis(server.url())
        .redis_password("s3cr@t%")
        .build()
        .unwrap();
    good.set("k", &1u8, 60).unwrap();
    assert_eq!(good.get::<u8>("k").unwrap(), Some(1));
    let start = Instant::now();
    match Cache::builder()
        .redis(server.url())
        .redis_password("wrong")
        .build()
    {
        Err(e @ Error::Config { .. }) => assert!(e.to_string().contains("CACHE_REDIS"), "{e}"),
        other => panic!("wrong password: {other:?}"),
    }
    match Cache::builder().redis(server.url()).build() {
        Err(e @ Error::Config { .. }) => assert!(e.to_string().contains("password"), "{e}"),
        other => panic!("missing password: {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    // Host/port/password/db variables, as Flask-Cache's.
    let config = cachemacro::CacheConfig::from_lookup(|k| {
        Ok(match k {
            "CACHE_TYPE" => Some("redis".into()),
            "CACHE_REDIS_HOST" => Some("127.0.0.1".into()),
            "CACHE_REDIS_PORT" => Some(server.port.to_string()),
            "CACHE_REDIS_PASSWORD" => Some("s3cr@t%".into()),
            "CACHE_REDIS_DB" => Some("3".into()),
            _ => None,
        })
    })
    .unwrap();
    let cache = Cache::from_config(config).unwrap();
    cache.set("in-db-3", &1u8, 60).unwrap();
    assert_eq!(good.get::<u8>("in-db-3").unwrap(), None, "another database");
    assert_eq!(cache.get::<u8>("in-db-3").unwrap(), Some(1));
}

static SINGLE: OnceLock<Cache> = OnceLock::new();
static SINGLE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = SINGLE.get().unwrap())]
fn on_single(a: u64) -> u64 {
    SINGLE_CALLS.fetch_add(1, Ordering::SeqCst);
    a * 3 + 1
}

#[test]
fn a_memoized_hit_is_one_mget_and_faults_never_give_a_wrong_value() {
    let mut server = Redis::start();
    SINGLE.set(cache_on(&server.url(), "")).unwrap();
    on_single(0);
    for a in 1..20 {
        on_single(a);
        let (mget, get) = (server.calls("mget"), server.calls("get"));
        assert_eq!(on_single(a), a * 3 + 1);
        assert_eq!(
            (server.calls("mget") - mget, server.calls("get") - get),
            (1, 0),
            "one MGET per hit"
        );
    }

    let timed = |n: u64| {
        let r = round(on_single, &SINGLE_CALLS, 0..n);
        (r.max, r.total)
    };
    server.freeze();
    let (frozen_max, frozen_total) = timed(20);
    assert!(frozen_max < Duration::from_millis(2500), "{frozen_max:?}");
    server.thaw();
    server.kill();
    let (dead_max, dead_total) = timed(20);
    assert!(dead_max < Duration::from_millis(2500));
    server.restart();
    std::thread::sleep(Duration::from_millis(2200)); // retry_timeout
    timed(20);
    let before = SINGLE_CALLS.load(Ordering::SeqCst);
    timed(20);
    assert_eq!(
        SINGLE_CALLS.load(Ordering::SeqCst),
        before,
        "recovered after the restart"
    );
    println!(
        "redis faults: frozen max {frozen_max:?} total {frozen_total:?}; killed max {dead_max:?} total {dead_total:?}; errors {}",
        SINGLE.get().unwrap().stats().errors
    );
}

static CLUSTER: OnceLock<Cache> = OnceLock::new();
static CLUSTER_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = CLUSTER.get().unwrap())]
fn on_cluster(a: u64) -> u64 {
    CLUSTER_CALLS.fetch_add(1, Ordering::SeqCst);
    a * 3 + 1
}

#[test]
fn a_cluster_spreads_one_function_and_survives_a_dead_master() {
    let mut cluster = Cluster::start();
    // One node's URL is enough: cluster mode is detected.
    let cache = cache_on(&cluster.urls()[0], "");
    assert!(cache.backend().name() == "redis");
    CLUSTER.set(cache.clone()).unwrap();

    for a in 0..300 {
        assert_eq!(on_cluster(a), a * 3 + 1);
    }
    let sizes: Vec<u64> = cluster.nodes.iter().map(Redis::dbsize).collect();
    assert!(
        sizes.iter().all(|&n| n > 50),
        "one function's entries spread over the masters: {sizes:?}"
    );

    // A hit: two GETs in one pipeline, routed to their nodes.
    let gets = || -> u64 { cluster.nodes.iter().map(|n| n.calls("get")).sum() };
    let before_calls = CLUSTER_CALLS.load(Ordering::SeqCst);
    let before = gets();
    for a in 0..300 {
        assert_eq!(on_cluster(a), a * 3 + 1);
    }
    assert_eq!(
        CLUSTER_CALLS.load(Ordering::SeqCst),
        before_calls,
        "all hits"
    );
    assert_eq!(gets() - before, 600, "two keys per hit");

    // The direct API on a cluster.
    let (x, y) = (1u8, 2u8);
    cache.set_many([("x", &x), ("y", &y)], 60).unwrap();
    assert_eq!(
        cache.get_many::<u8>(&["x", "y", "z"]).unwrap(),
        vec![Some(1), Some(2), None]
    );
    assert_eq!(cache.delete_many(&["x", "y", "z"]).unwrap(), 2);
    assert_eq!(cache.inc("counter", 2).unwrap(), 2);
    assert!(cache.add("once", &1u8, 60).unwrap() && !cache.add("once", &1u8, 60).unwrap());

    // A master killed mid-test: correct values, bounded latency; its slots recompute.
    cluster.nodes[1].kill();
    let (mut max, start, mut errors_seen) = (Duration::ZERO, Instant::now(), 0);
    let errors = cache.stats().errors;
    for a in 0..300 {
        let t = Instant::now();
        assert_eq!(on_cluster(a), a * 3 + 1);
        max = max.max(t.elapsed());
    }
    errors_seen += cache.stats().errors - errors;
    assert!(max < Duration::from_millis(3000), "{max:?}");
    println!(
        "cluster, master killed: max {max:?}, total {:?} for 300 calls, {errors_seen} cache errors",
        start.elapsed()
    );

    // It comes back with its slots (nodes.conf): everything caches again.
    cluster.nodes[1].restart();
    cluster.wait_ok();
    for a in 0..300 {
        assert_eq!(on_cluster(a), a * 3 + 1);
    }
    let before = CLUSTER_CALLS.load(Ordering::SeqCst);
    for a in 0..300 {
        assert_eq!(on_cluster(a), a * 3 + 1);
    }
    assert_eq!(CLUSTER_CALLS.load(Ordering::SeqCst), before, "recovered");

    // clear() with a prefix on a cluster: SCAN + UNLINK on every master.
    let prefixed = cache_on(&cluster.urls()[2], "p:");
    for i in 0..100u32 {
        prefixed.set(&format!("k{i}"), &i, 60).unwrap();
    }
    prefixed.clear().unwrap();
    assert!((0..100u32).all(|i| prefixed.get::<u32>(&format!("k{i}")).unwrap().is_none()));
    assert_eq!(on_cluster(1), 4, "unprefixed entries stay");
}

static REPLICATED: OnceLock<Cache> = OnceLock::new();

#[memoize(cache = REPLICATED.get().unwrap())]
fn replicated(a: u64) -> u64 {
    a + 1
}

/// `Ok` from `f_delete_memoized_all()` means a replica has the new version, so a failover
/// cannot bring the old one back; a replica that does not confirm in time makes it `Err`.
#[test]
fn an_invalidation_is_ok_only_once_a_replica_has_it() {
    let master = Redis::start();
    let replica = Redis::start();
    replica.replicate(&master);
    REPLICATED.set(cache_on(&master.url(), "")).unwrap();
    assert_eq!(replicated(1), 2);
    replicated_delete_memoized_all().unwrap();
    replicated_delete_memoized_verhash().unwrap();

    // The replica's link backs up (frozen): no confirmation, and the caller is told.
    replica.freeze();
    let t = Instant::now();
    let err = replicated_delete_memoized_all().unwrap_err();
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert!(err.to_string().contains("not confirmed"), "{err}");
    assert!(replicated_delete_memoized_verhash().is_err());
    assert_eq!(replicated(1), 2, "calls go on meanwhile");

    replica.thaw();
    replicated_delete_memoized_all().unwrap();

    // A master without replicas has nothing to wait for.
    let alone = Redis::start();
    let cache = cache_on(&alone.url(), "");
    let version_key = "app::f:0123456789abcdef:memver";
    let t = Instant::now();
    cache.set(version_key, &7u64, 0).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}
