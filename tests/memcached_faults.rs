//! Faults: memcached servers killed, frozen (SIGSTOP) and restarted under memoized calls.
//! No wrong value ever, no panic, bounded latency, recovery. Each test prints its latency
//! and error figures (`--nocapture` shows them).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use cachemacro::backends::memcached::MemcachedOptions;
use cachemacro::{memoize, Cache};
use cachemacro_testkit::{round, Memcached};

/// MemCachier's recommended I/O timeout, with short failover windows so the tests see recovery quickly.
fn options() -> MemcachedOptions {
    let mut o = MemcachedOptions::default();
    o.retry_timeout = Duration::from_millis(300);
    o.dead_timeout = Duration::from_secs(1);
    o
}

fn cache_on(servers: &[&Memcached]) -> Cache {
    Cache::builder()
        .memcached(servers.iter().map(|m| m.addr()))
        .memcached_options(options())
        .build()
        .unwrap()
}

/// Bound on any one call: the 750 ms I/O timeout plus scheduling slack. A hang fails it.
const BOUND: Duration = Duration::from_millis(2500);

static KILL: OnceLock<Cache> = OnceLock::new();
static KILL_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = KILL.get().unwrap())]
fn under_kill(a: u64) -> u64 {
    KILL_CALLS.fetch_add(1, Ordering::SeqCst);
    a * 3 + 1
}

/// Which of `servers` holds the function versions (their keys end in `:memver`, listed
/// percent-encoded).
fn version_home(servers: &[Memcached]) -> usize {
    servers
        .iter()
        .position(|m| m.keys().iter().any(|k| k.ends_with("memver")))
        .expect("a server holds the version")
}

#[test]
fn a_killed_server_costs_misses_not_errors_and_comes_back() {
    let mut servers = [Memcached::start(), Memcached::start()];
    KILL.set(cache_on(&[&servers[0], &servers[1]])).unwrap();
    let cache = KILL.get().unwrap();
    round(under_kill, &KILL_CALLS, 0..100);
    let warm = round(under_kill, &KILL_CALLS, 0..100);
    assert_eq!(warm.computed, 0, "all hits before the fault");
    let home = version_home(&servers);
    let other = 1 - home;

    // The server without the version: its keys fail over to the other one.
    servers[other].kill();
    let errors = cache.stats().errors;
    let during = round(under_kill, &KILL_CALLS, 0..100);
    let again = round(under_kill, &KILL_CALLS, 0..100);
    assert!(during.max < BOUND, "{:?}", during.max);
    assert!(during.computed > 0, "the dead server's keys are recomputed");
    assert!(
        again.computed < during.computed,
        "and cached on the survivor"
    );
    let fault_errors = cache.stats().errors - errors;
    println!(
        "kill: max {:?}, total {:?} for 100 calls, {} recomputed, {} cache errors; next round {} recomputed",
        during.max, during.total, during.computed, fault_errors, again.computed
    );

    servers[other].restart();
    std::thread::sleep(options().dead_timeout + Duration::from_millis(200));
    let back = round(under_kill, &KILL_CALLS, 0..100);
    let settled = round(under_kill, &KILL_CALLS, 0..100);
    assert!(back.max < BOUND);
    assert_eq!(
        settled.computed, 0,
        "after the restart everything is cached again"
    );
    assert!(
        servers[other].stats()["curr_items"] > 0,
        "the restarted server is back in the ring"
    );
    println!(
        "restart: {} recomputed once back, then {}",
        back.computed, settled.computed
    );

    // The version's home: the version never fails over, so calls run uncached (correct
    // values, bounded) and an invalidation cannot be promised.
    servers[home].kill();
    let during = round(under_kill, &KILL_CALLS, 0..100);
    let again = round(under_kill, &KILL_CALLS, 0..100);
    assert!(during.max < BOUND && again.max < BOUND, "{:?}", again.max);
    assert_eq!(
        (during.computed, again.computed),
        (100, 100),
        "no cached value without the version"
    );
    assert!(under_kill_delete_memoized_all().is_err());
    // Back after `retry_timeout` (not `dead_timeout`): a fresh version, then hits.
    servers[home].restart();
    std::thread::sleep(options().retry_timeout + Duration::from_millis(200));
    round(under_kill, &KILL_CALLS, 0..100);
    let settled = round(under_kill, &KILL_CALLS, 0..100);
    assert_eq!(
        settled.computed, 0,
        "cached again once the home server is back"
    );
    assert!(under_kill_delete_memoized_all().is_ok());
    println!(
        "version home killed: every call uncached, max {:?}; cached again after its restart",
        during.max
    );
}

static FREEZE: OnceLock<Cache> = OnceLock::new();
static FREEZE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = FREEZE.get().unwrap())]
fn under_freeze(a: u64) -> u64 {
    FREEZE_CALLS.fetch_add(1, Ordering::SeqCst);
    a * 3 + 1
}

#[test]
fn a_frozen_server_times_out_once_and_never_answers_for_another_key() {
    let servers = [Memcached::start(), Memcached::start()];
    FREEZE.set(cache_on(&[&servers[0], &servers[1]])).unwrap();
    let cache = FREEZE.get().unwrap();
    round(under_freeze, &FREEZE_CALLS, 0..100);

    servers[0].freeze();
    let errors = cache.stats().errors;
    let during = round(under_freeze, &FREEZE_CALLS, 0..100);
    assert!(during.max < BOUND, "{:?}", during.max);
    assert!(
        during.max >= Duration::from_millis(500),
        "the first call waited for the timeout: {:?}",
        during.max
    );
    assert!(
        during.total < Duration::from_secs(5),
        "only the first call waits: {:?}",
        during.total
    );
    let fault_errors = cache.stats().errors - errors;

    // The frozen server resumes with replies to requests that timed out still queued: they
    // must never be taken as answers to later requests.
    servers[0].thaw();
    std::thread::sleep(options().dead_timeout + Duration::from_millis(200));
    let after = round(under_freeze, &FREEZE_CALLS, 0..100);
    let settled = round(under_freeze, &FREEZE_CALLS, 0..100);
    assert!(after.max < BOUND);
    assert_eq!(settled.computed, 0);
    println!(
        "freeze: max {:?}, total {:?} for 100 calls, {} recomputed, {} cache errors; after thaw {} recomputed, then {}",
        during.max, during.total, during.computed, fault_errors, after.computed, settled.computed
    );
}

static ALONE: OnceLock<Cache> = OnceLock::new();
static ALONE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = ALONE.get().unwrap())]
fn only_server(a: u64) -> u64 {
    ALONE_CALLS.fetch_add(1, Ordering::SeqCst);
    a * 3 + 1
}

#[test]
fn the_only_server_frozen_then_killed_then_restarted() {
    let mut server = Memcached::start();
    ALONE.set(cache_on(&[&server])).unwrap();
    round(only_server, &ALONE_CALLS, 0..20);

    server.freeze();
    let frozen = round(only_server, &ALONE_CALLS, 0..20);
    assert!(frozen.max < BOUND, "{:?}", frozen.max);
    assert_eq!(frozen.computed, 20, "nowhere to cache: every body runs");
    server.thaw();

    server.kill();
    let dead = round(only_server, &ALONE_CALLS, 0..20);
    assert!(dead.max < BOUND);
    assert_eq!(dead.computed, 20);

    server.restart();
    std::thread::sleep(options().dead_timeout + Duration::from_millis(200));
    round(only_server, &ALONE_CALLS, 0..20);
    let settled = round(only_server, &ALONE_CALLS, 0..20);
    assert_eq!(settled.computed, 0, "recovered");
    println!(
        "only server: frozen max {:?} total {:?}; killed max {:?} total {:?}",
        frozen.max, frozen.total, dead.max, dead.total
    );
}

#[test]
fn a_restart_between_requests_costs_nothing() {
    let mut server = Memcached::start();
    let cache = cache_on(&[&server]);
    cache.set("k", &1u8, 60).unwrap();
    assert_eq!(cache.get::<u8>("k").unwrap(), Some(1));
    // Pooled connections now point at a process that is gone.
    server.restart();
    let errors = cache.stats().errors;
    assert_eq!(
        cache.get::<u8>("k").unwrap(),
        None,
        "a fresh server, reached at once"
    );
    cache.set("k", &2u8, 60).unwrap();
    assert_eq!(cache.get::<u8>("k").unwrap(), Some(2));
    assert_eq!(
        cache.stats().errors,
        errors,
        "stale pooled connections are replaced, not failed"
    );
}
