//! The `simple` backend's eviction (SIEVE over a lock-free map): what survives a full cache,
//! expired entries first, pinned function versions, and readers racing writers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread;
use std::time::Duration;

use cachemacro::backends::SimpleBackend;
use cachemacro::{memoize, Cache, Timeout};

fn simple(threshold: usize) -> (Arc<SimpleBackend>, Cache) {
    let backend = Arc::new(SimpleBackend::new(threshold));
    let cache = Cache::builder().backend(backend.clone()).build().unwrap();
    (backend, cache)
}

#[test]
fn hot_entries_survive_a_scan_of_one_off_keys() {
    let (backend, cache) = simple(100);
    for i in 0..100u32 {
        cache.set(&format!("hot{i}"), &i, Timeout::Never).unwrap();
    }
    // A thousand one-off keys stream through while the first ten are read between writes.
    for i in 0..1000u32 {
        for h in 0..10u32 {
            assert_eq!(cache.get::<u32>(&format!("hot{h}")).unwrap(), Some(h));
        }
        cache.set(&format!("once{i}"), &i, Timeout::Never).unwrap();
        assert!(backend.len() <= 100, "{} entries", backend.len());
    }
    for h in 0..10u32 {
        assert!(cache.has(&format!("hot{h}")).unwrap(), "hot{h} was evicted");
    }
    // The newest entry is there: eviction makes room before an insert.
    assert_eq!(cache.get::<u32>("once999").unwrap(), Some(999));
}

#[test]
fn expired_entries_are_evicted_even_when_visited() {
    let (_, cache) = simple(2);
    cache.set("short", &0u8, Duration::from_millis(30)).unwrap();
    cache.set("a", &1u8, Timeout::Never).unwrap();
    // Read, so SIEVE would spare it if it were live; "a" was never read.
    assert!(cache.has("short").unwrap());
    thread::sleep(Duration::from_millis(60));
    cache.set("b", &2u8, Timeout::Never).unwrap();
    assert!(cache.has("a").unwrap() && cache.has("b").unwrap());
}

#[test]
fn add_and_inc_keep_the_bound() {
    let (backend, cache) = simple(10);
    for i in 0..100 {
        assert!(cache.add(&format!("a{i}"), &i, Timeout::Never).unwrap());
        assert_eq!(cache.inc(&format!("n{i}"), 2).unwrap(), 2);
        assert!(backend.len() <= 10, "{} entries", backend.len());
    }
    // Rewriting an entry neither adds one nor loses its place.
    assert_eq!(cache.inc("n99", 3).unwrap(), 5);
    assert!(cache.delete("n99").unwrap());
    assert!(!cache.delete("n99").unwrap());
    assert!(backend.len() <= 9);
}

static SMALL: LazyLock<Cache> = LazyLock::new(|| Cache::builder().threshold(5).build().unwrap());

#[memoize(cache = SMALL)]
fn square(n: u64) -> u64 {
    n * n
}

#[test]
fn function_versions_are_never_evicted() {
    // A version entry (its key ends in `:memver`) outlives any number of evictions...
    let (backend, cache) = simple(5);
    let version = "app::f:0123456789abcdef:memver";
    cache.set(version, &7i64, Timeout::Never).unwrap();
    for i in 0..100 {
        cache.set(&format!("k{i}"), &i, Timeout::Never).unwrap();
    }
    assert_eq!(cache.get::<i64>(version).unwrap(), Some(7));
    // ...and does not count against the threshold.
    assert_eq!(backend.len(), 6);

    // End to end: after 200 misses through a 5-entry cache, the function's version is the
    // one its entries were written under, also once it is read from the map again (deleting
    // any version moves the epoch that the per-function version cache trusts).
    for n in 0..200 {
        assert_eq!(square(n), n * n);
    }
    SMALL.delete("other:0000000000000000:memver").unwrap();
    let before = SMALL.stats();
    assert_eq!(square(199), 199 * 199);
    assert_eq!(SMALL.stats().hits, before.hits + 1);
}

#[test]
fn readers_racing_writers_and_evictions_only_see_their_own_values() {
    // A fixed number of operations per thread, whatever the machine's speed. The readers
    // start once the writers are under way (or done), so they race writes and evictions, and
    // each of their sweeps over the 500 keys meets entries the writers left.
    const OPS: u64 = 20_000;
    let (backend, cache) = simple(64);
    let written = Arc::new(AtomicU64::new(0));
    let spawn = |t: u64| {
        let (cache, written) = (cache.clone(), written.clone());
        thread::spawn(move || {
            let mut i = t;
            let mut seen = 0u64;
            for _ in 0..OPS {
                let key = format!("k{}", i % 500);
                if t.is_multiple_of(2) {
                    cache.set(&key, &(i % 500), Timeout::Never).unwrap();
                    if i.is_multiple_of(7) {
                        cache.delete(&key).unwrap();
                    }
                    written.fetch_add(1, Ordering::Relaxed);
                } else if let Some(v) = cache.get::<u64>(&key).unwrap() {
                    assert_eq!(v, i % 500, "{key} held another key's value");
                    seen += 1;
                }
                i = i.wrapping_add(13);
            }
            seen
        })
    };
    let writers = [spawn(0), spawn(2)];
    while written.load(Ordering::Relaxed) < 1000 && !writers.iter().all(|w| w.is_finished()) {
        thread::yield_now();
    }
    let readers = [spawn(1), spawn(3)];
    let hits: u64 = writers
        .into_iter()
        .chain(readers)
        .map(|t| t.join().unwrap())
        .sum();
    assert!(hits > 0);
    assert!(backend.len() <= 64, "{} entries", backend.len());
}
