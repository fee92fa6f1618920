//! Eight threads hammering memoized functions while others invalidate them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread;
use std::time::{Duration, Instant};

use cachemacro::{memoize, Cache};

mod common;

static CACHE: LazyLock<Cache> = LazyLock::new(|| common::builder().threshold(256).build().unwrap());

/// The "database": bumped before every invalidation.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Returns the generation the body saw.
#[memoize(cache = CACHE)]
fn read_generation(slot: u32) -> (u32, u64) {
    (slot, GENERATION.load(Ordering::SeqCst))
}

#[test]
fn no_value_from_a_deleted_version_is_served_after_the_delete_returned() {
    let stop = Arc::new(AtomicBool::new(false));
    // The generation whose invalidation has completed: any call that starts after this
    // was published must see at least this generation.
    let completed = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..6)
        .map(|t| {
            let (stop, completed) = (stop.clone(), completed.clone());
            thread::spawn(move || {
                let mut calls = 0u64;
                let mut i = t;
                while !stop.load(Ordering::SeqCst) {
                    let floor = completed.load(Ordering::SeqCst);
                    let (slot, seen) = read_generation(i % 300);
                    assert_eq!(slot, i % 300);
                    assert!(
                        seen >= floor,
                        "served generation {seen} after generation {floor}'s delete returned"
                    );
                    calls += 1;
                    i = i.wrapping_add(7);
                }
                calls
            })
        })
        .collect();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (stop, completed) = (stop.clone(), completed.clone());
            thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let g = GENERATION.fetch_add(1, Ordering::SeqCst) + 1;
                    if w == 0 {
                        read_generation_delete_memoized_all().unwrap();
                    } else {
                        read_generation_delete_memoized_verhash().unwrap();
                    }
                    completed.fetch_max(g, Ordering::SeqCst);
                    n += 1;
                    thread::sleep(Duration::from_micros(200));
                }
                n
            })
        })
        .collect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    let calls: u64 = readers.into_iter().map(|t| t.join().unwrap()).sum();
    let invalidations: u64 = writers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(calls > 1000, "{calls} calls");
    assert!(invalidations > 100, "{invalidations} invalidations");
    let s = CACHE.stats();
    assert!(s.hits > 0 && s.misses > 0, "{s:?}");
    assert_eq!(s.errors, 0);
}

#[memoize(cache = CACHE)]
fn square(a: u64) -> u64 {
    a * a
}

#[test]
fn eight_threads_agree_with_the_uncached_function_under_eviction() {
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..20_000u64 {
                    let a = (i * 31 + t) % 1000; // more keys than the threshold: evictions
                    assert_eq!(square(a), a * a);
                    if i % 997 == 0 {
                        square_delete_memoized(a).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
