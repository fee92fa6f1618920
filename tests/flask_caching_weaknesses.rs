//! One test per weakness measured in Flask-Caching 2.5.1, showing cachemacro does not have it,
//! and the rule that a memoized function never fails because of its cache.

mod common;

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Barrier, LazyLock};
use std::thread;
use std::time::Duration;

use cachemacro::{memoize, Cache, Timeout, Value};
use common::{cache as simple, Broken, Calls, Counting};

static COUNTED: LazyLock<(Cache, Arc<Counting>)> = LazyLock::new(Counting::cache);
static COUNTED_CACHE: LazyLock<Cache> = LazyLock::new(|| COUNTED.0.clone());

#[memoize(cache = COUNTED_CACHE, timeout = 1)]
fn counted(a: u32) -> u32 {
    a * 2
}

#[test]
fn a_memoized_hit_is_one_backend_request_for_at_most_two_keys() {
    let backend = &COUNTED.1;
    counted(1); // miss: read, create version, write
    let (requests, keys) = (backend.requests(), backend.keys_read());
    for _ in 0..10 {
        assert_eq!(counted(1), 2);
    }
    assert_eq!(backend.requests() - requests, 10, "one request per hit");
    assert_eq!(backend.keys_read() - keys, 20, "two keys per hit");

    // The version key never expires, whatever the function's timeout
    // (Flask-Caching wrote it with the timeout and lost every entry when it expired).
    let writes = backend.writes.lock().unwrap();
    let version_writes: Vec<_> = writes
        .iter()
        .filter(|(k, _)| k.ends_with(":memver"))
        .collect();
    assert_eq!(version_writes.len(), 1);
    assert_eq!(version_writes[0].1, None);
    let value_writes: Vec<_> = writes
        .iter()
        .filter(|(k, _)| !k.ends_with(":memver"))
        .collect();
    assert_eq!(value_writes[0].1, Some(Duration::from_secs(1)));
}

static LOST: LazyLock<Cache> = LazyLock::new(simple);
static LOST_CALLS: Calls = Calls::new();

#[memoize(cache = LOST)]
fn lost_version(a: u32) -> usize {
    let _ = a;
    LOST_CALLS.bump()
}

#[test]
fn a_lost_version_key_invalidates_safely_and_recovers() {
    assert_eq!(lost_version(1), 1);
    assert_eq!(lost_version(1), 1);
    // As if memcached evicted the version key: the old entry must not be served…
    lost_version_delete_memoized_verhash().unwrap();
    assert_eq!(lost_version(1), 2);
    // …and the new version caches again.
    assert_eq!(lost_version(1), 2);
    assert_eq!(LOST_CALLS.get(), 2);
}

static FOREIGN: LazyLock<(Cache, Arc<Counting>)> = LazyLock::new(Counting::cache);
static FOREIGN_COUNTED: LazyLock<Cache> = LazyLock::new(|| FOREIGN.0.clone());
static FOREIGN_SIMPLE: LazyLock<Cache> = LazyLock::new(simple);
static FOREIGN_CALLS: Calls = Calls::new();

fn foreign_name(_: &str) -> String {
    "flask_caching_weaknesses::foreign".to_owned()
}

/// The same function (one name, so one version key) on a backend reached through the trait
/// and on the in-process fast path.
#[memoize(cache = FOREIGN_COUNTED, make_name = foreign_name)]
fn foreign_counted(_a: u32) -> usize {
    FOREIGN_CALLS.bump()
}

#[memoize(cache = FOREIGN_SIMPLE, make_name = foreign_name)]
fn foreign_simple(_a: u32) -> usize {
    FOREIGN_CALLS.bump()
}

#[test]
fn a_version_key_overwritten_by_a_foreign_writer_invalidates_and_recovers() {
    let first = foreign_counted(1);
    assert_eq!(foreign_counted(1), first);
    let version_key = FOREIGN.1.writes.lock().unwrap()[0].0.clone();
    assert!(version_key.ends_with(":memver"), "{version_key}");
    type Call = fn(u32) -> usize;
    for (cache, call) in [
        (&*FOREIGN_COUNTED, foreign_counted as Call),
        (&*FOREIGN_SIMPLE, foreign_simple as Call),
    ] {
        let cached = call(1);
        assert_eq!(call(1), cached);
        // 0 (never a version) and a string: the old entry is not served, and the function
        // caches again under a new version.
        cache.set(&version_key, &0i64, Timeout::Never).unwrap();
        let after_zero = call(1);
        assert_ne!(after_zero, cached);
        assert_eq!(call(1), after_zero);
        cache
            .set(&version_key, &"junk".to_owned(), Timeout::Never)
            .unwrap();
        let after_junk = call(1);
        assert_ne!(after_junk, after_zero);
        assert_eq!(call(1), after_junk);
    }
}

/// Two `Cache` handles on one store stand for two processes sharing one memcached.
static PROCESSES: LazyLock<(Cache, Cache)> = LazyLock::new(common::two_processes);
static PROCESS_A: LazyLock<Cache> = LazyLock::new(|| PROCESSES.0.clone());
static PROCESS_B: LazyLock<Cache> = LazyLock::new(|| PROCESSES.1.clone());
static RACE_CALLS: Calls = Calls::new();

#[memoize(cache = PROCESS_A)]
fn race_a(a: usize) -> usize {
    RACE_CALLS.bump();
    a
}

#[memoize(cache = PROCESS_B, make_name = race_a_name)]
fn race_b(a: usize) -> usize {
    RACE_CALLS.bump();
    a
}

fn race_a_name(_: &str) -> String {
    "flask_caching_weaknesses::race_a".to_owned()
}

#[test]
fn concurrent_first_callers_agree_on_one_version() {
    assert_eq!(
        race_a_make_cache_key(1),
        race_b_make_cache_key(1),
        "same function in two processes"
    );
    let n = 16;
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                if i % 2 == 0 {
                    race_a(i)
                } else {
                    race_b(i)
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(RACE_CALLS.get(), n);
    // No entry was orphaned by a competing version: every one is a hit, from either side.
    for i in 0..n {
        assert_eq!(race_a(i), i);
        assert_eq!(race_b(i), i);
    }
    assert_eq!(RACE_CALLS.get(), n);
}

static NONE_CACHE: LazyLock<Cache> = LazyLock::new(simple);
static NONE_CALLS: Calls = Calls::new();

#[memoize(cache = NONE_CACHE, cache_none = true)]
fn find(id: u32) -> Option<String> {
    NONE_CALLS.bump();
    (id == 1).then(|| "one".to_owned())
}

#[test]
fn cached_none_reads_back_as_a_hit() {
    assert_eq!(find(2), None);
    assert_eq!(find(2), None);
    assert_eq!(NONE_CALLS.get(), 1, "None was cached and served");
    assert_eq!(find(1).as_deref(), Some("one"));
    assert_eq!(find(1).as_deref(), Some("one"));
    assert_eq!(NONE_CALLS.get(), 2);
}

static FALSY: LazyLock<Cache> = LazyLock::new(simple);

#[memoize(cache = FALSY)]
fn describe(n: Option<i64>, s: Option<&str>, b: Option<bool>) -> String {
    format!("{n:?} {s:?} {b:?}")
}

#[test]
fn falsy_values_are_keyed_apart_from_none() {
    let keys = [
        describe_make_cache_key(None, None, None),
        describe_make_cache_key(Some(0), None, None),
        describe_make_cache_key(None, Some(""), None),
        describe_make_cache_key(None, None, Some(false)),
    ];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(describe(None, None, None), "None None None");
    assert_eq!(describe(Some(0), None, None), "Some(0) None None");
    assert_eq!(describe(None, Some(""), None), "None Some(\"\") None");
    assert_eq!(describe(None, None, Some(false)), "None None Some(false)");
}

struct Person {
    id: u64,
}

impl Hash for Person {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

static PEOPLE: LazyLock<Cache> = LazyLock::new(simple);

impl Person {
    #[memoize(cache = PEOPLE)]
    fn roles(&self) -> Vec<u32> {
        vec![self.id as u32]
    }
}

#[test]
fn keys_do_not_depend_on_memory_addresses() {
    let a = Box::new(Person { id: 3 });
    let b = Box::new(Person { id: 3 });
    assert_ne!(&*a as *const Person, &*b as *const Person);
    assert_eq!(a.roles_make_cache_key(), b.roles_make_cache_key());
}

/// The key printed by a second process of this test binary.
const CHILD_ENV: &str = "CACHEMACRO_KEY_CHILD";

#[test]
fn keys_are_equal_across_processes() {
    let key = Person { id: 42 }.roles_make_cache_key();
    if std::env::var_os(CHILD_ENV).is_some() {
        println!("KEY={key}");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "keys_are_equal_across_processes",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let child_key = stdout
        .lines()
        .find_map(|l| {
            l.split_once("KEY=")
                .map(|(_, k)| k.split_whitespace().next().unwrap_or(""))
        })
        .unwrap_or_else(|| panic!("child printed no key: {stdout}"));
    assert_eq!(child_key, key);
}

static BOUND: LazyLock<Cache> = LazyLock::new(simple);
static BOUND_CALLS: Calls = Calls::new();

impl Person {
    #[memoize(cache = BOUND)]
    fn score(&self, round: u8) -> u64 {
        BOUND_CALLS.bump();
        self.id + u64::from(round)
    }
}

#[test]
fn deleting_through_a_bound_method_deletes() {
    let p = Person { id: 1 };
    p.score(1);
    p.score(1);
    assert_eq!(BOUND_CALLS.get(), 1);
    p.score_delete_memoized(1).unwrap();
    p.score(1);
    assert_eq!(BOUND_CALLS.get(), 2);
}

static STAMPEDE: LazyLock<Cache> = LazyLock::new(simple);
static STAMPEDE_CALLS: Calls = Calls::new();

#[memoize(cache = STAMPEDE)]
fn slow_report(day: u32) -> String {
    STAMPEDE_CALLS.bump();
    thread::sleep(Duration::from_millis(200));
    format!("report {day}")
}

#[test]
fn concurrent_misses_run_the_body_once() {
    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                slow_report(1)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), "report 1");
    }
    assert_eq!(
        STAMPEDE_CALLS.get(),
        1,
        "one computation for 8 concurrent callers"
    );
}

static PANICKY: LazyLock<Cache> = LazyLock::new(simple);
static PANICKY_CALLS: Calls = Calls::new();
/// Set by the first body once it runs (and is about to panic).
static LEADER_IN_BODY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[memoize(cache = PANICKY)]
fn panics_first(a: u8) -> u8 {
    if PANICKY_CALLS.bump() == 1 {
        LEADER_IN_BODY.store(true, std::sync::atomic::Ordering::SeqCst);
        thread::sleep(Duration::from_millis(150));
        panic!("first call fails");
    }
    a
}

#[test]
fn a_panicking_leader_releases_the_waiters() {
    let leader = thread::spawn(|| panics_first(1));
    // The follower starts once the leader is inside the body, whatever the backend's start-up.
    while !LEADER_IN_BODY.load(std::sync::atomic::Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
    let follower = thread::spawn(|| panics_first(1));
    assert!(leader.join().is_err());
    assert_eq!(follower.join().unwrap(), 1);
}

static BROKEN: LazyLock<Cache> =
    LazyLock::new(|| Cache::builder().backend(Arc::new(Broken)).build().unwrap());
static BROKEN_CALLS: Calls = Calls::new();

#[memoize(cache = BROKEN)]
fn on_broken_backend(a: u32) -> u32 {
    BROKEN_CALLS.bump();
    a + 1
}

#[test]
fn a_failing_backend_never_fails_the_function() {
    assert_eq!(on_broken_backend(1), 2);
    assert_eq!(on_broken_backend(1), 2);
    assert_eq!(BROKEN_CALLS.get(), 2);
    assert!(BROKEN.stats().errors >= 2);
    assert!(
        on_broken_backend_delete_memoized(1).is_err(),
        "the helpers report the failure"
    );
}

static CORRUPT: LazyLock<Cache> = LazyLock::new(simple);
static CORRUPT_CALLS: Calls = Calls::new();

#[memoize(cache = CORRUPT)]
fn corrupted(a: u32) -> Vec<u32> {
    CORRUPT_CALLS.bump();
    vec![a]
}

#[test]
fn a_value_of_the_wrong_type_is_a_miss() {
    assert_eq!(corrupted(1), vec![1]);
    // Something else overwrites the entry with a string.
    CORRUPT
        .set(&corrupted_make_cache_key(1), &"garbage".to_owned(), 0)
        .unwrap();
    let errors = CORRUPT.stats().errors;
    assert_eq!(corrupted(1), vec![1]);
    assert_eq!(CORRUPT_CALLS.get(), 2);
    // Plain `set` carries no version, so it is stale rather than undecodable: no error.
    assert_eq!(CORRUPT.stats().errors, errors);
    // Hostile bytes (a versioned header, then no valid MessagePack) are a miss, not a panic.
    let mut hostile = vec![0xC5, 1, 1];
    hostile.extend_from_slice(&[0xff; 8]);
    hostile.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
    CORRUPT
        .backend()
        .set(
            &corrupted_make_cache_key(1),
            Value::from_bytes(hostile),
            None,
        )
        .unwrap();
    assert_eq!(corrupted(1), vec![1]);
    assert_eq!(CORRUPT_CALLS.get(), 3);
    assert_eq!(corrupted(1), vec![1]);
    assert_eq!(CORRUPT_CALLS.get(), 3);
}
