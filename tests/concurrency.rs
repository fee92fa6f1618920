//! Eight threads hammering memoized functions while others invalidate them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread;
use std::time::Duration;

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

/// A fixed amount of work, whatever the backend's speed: reader threads call each argument
/// twice in a row (the second call is a hit unless an invalidation landed between), writer
/// threads invalidate a fixed number of times.
const READERS: u32 = 6;
const PAIRS_PER_READER: u64 = 1000;
const WRITERS: u64 = 2;
const INVALIDATIONS_PER_WRITER: u64 = 250;

/// Counts its thread as finished when dropped, also when the thread panics.
struct Finished(Arc<AtomicU64>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn no_value_from_a_deleted_version_is_served_after_the_delete_returned() {
    // The generation whose invalidation has completed: any call that starts after this
    // was published must see at least this generation.
    let completed = Arc::new(AtomicU64::new(0));
    // Reader calls made so far, and readers finished: the writers pace their invalidations
    // on the readers' progress (not on the clock), so both overlap on any backend.
    let progress = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|t| {
            let (completed, progress) = (completed.clone(), progress.clone());
            let finished = Finished(finished.clone());
            thread::spawn(move || {
                let _finished = finished;
                let mut calls = 0u64;
                let mut i = t;
                for _ in 0..PAIRS_PER_READER {
                    for _ in 0..2 {
                        let floor = completed.load(Ordering::SeqCst);
                        let (slot, seen) = read_generation(i % 300);
                        assert_eq!(slot, i % 300);
                        assert!(
                            seen >= floor,
                            "served generation {seen} after generation {floor}'s delete returned"
                        );
                        calls += 1;
                        progress.fetch_add(1, Ordering::SeqCst);
                    }
                    i = i.wrapping_add(7);
                }
                calls
            })
        })
        .collect();
    // The invalidations, alternating between the writers, spread evenly over the calls.
    let every =
        u64::from(READERS) * PAIRS_PER_READER * 2 / (WRITERS * INVALIDATIONS_PER_WRITER + 1);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (completed, progress, finished) =
                (completed.clone(), progress.clone(), finished.clone());
            thread::spawn(move || {
                let mut n = 0;
                for k in 0..INVALIDATIONS_PER_WRITER {
                    let due = every * (k * WRITERS + w + 1);
                    while progress.load(Ordering::SeqCst) < due
                        && finished.load(Ordering::SeqCst) < u64::from(READERS)
                    {
                        thread::sleep(Duration::from_micros(200));
                    }
                    let g = GENERATION.fetch_add(1, Ordering::SeqCst) + 1;
                    if w == 0 {
                        read_generation_delete_memoized_all().unwrap();
                    } else {
                        read_generation_delete_memoized_verhash().unwrap();
                    }
                    completed.fetch_max(g, Ordering::SeqCst);
                    n += 1;
                }
                n
            })
        })
        .collect();
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
