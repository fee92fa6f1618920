//! Memoized-hit cost on the in-memory backend, against peers measured in the same run:
//! the `cached` crate's `#[cached]` hit, and raw `get`s on papaya (the map under the `simple`
//! backend), quick_cache, moka and dashmap.
//!
//! `cargo bench --bench hit`; the last lines print each figure as a ratio to `cached`'s.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::{Arc, Barrier, LazyLock};
use std::thread;
use std::time::{Duration, Instant};

use cachemacro::{memoize, Cache};
use criterion::Criterion;

mod support;
use support::report;

const KEYS: u64 = 1000;

static CACHE: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .simple()
        .threshold(10 * KEYS as usize)
        .build()
        .unwrap()
});

#[memoize(cache = CACHE, timeout = 0)]
fn ours(a: u64) -> u64 {
    a.wrapping_mul(0x9e37_79b9)
}

#[memoize(cache = CACHE, timeout = 300)]
fn ours_with_ttl(a: u64) -> u64 {
    a.wrapping_mul(0x9e37_79b9)
}

#[cached::proc_macro::cached]
fn theirs(a: u64) -> u64 {
    a.wrapping_mul(0x9e37_79b9)
}

/// `cached` with what cachemacro's `simple` backend always has: a bound and a lifetime.
#[cached::proc_macro::cached(max_size = 10000, ttl_secs = 300)]
fn theirs_bounded_ttl(a: u64) -> u64 {
    a.wrapping_mul(0x9e37_79b9)
}

static QUICK: LazyLock<quick_cache::sync::Cache<u64, u64>> =
    LazyLock::new(|| quick_cache::sync::Cache::new(10 * KEYS as usize));
static PAPAYA: LazyLock<papaya::HashMap<u64, u64>> = LazyLock::new(papaya::HashMap::new);
static MOKA: LazyLock<moka::sync::Cache<u64, u64>> =
    LazyLock::new(|| moka::sync::Cache::new(10 * KEYS));
static DASH: LazyLock<dashmap::DashMap<u64, u64>> = LazyLock::new(dashmap::DashMap::new);

/// Every peer, as a name and a closure; closures (not `fn` pointers) so that each is
/// inlined into the benchmark loop as it would be into a caller.
macro_rules! for_each_peer {
    ($m:ident) => {
        $m!("cachemacro_memoize", |a| ours(a));
        $m!("cachemacro_memoize_ttl", |a| ours_with_ttl(a));
        $m!("cached_crate", |a| theirs(a));
        $m!("cached_crate_size_time", |a| theirs_bounded_ttl(a));
        $m!("raw_papaya_get", |a| PAPAYA
            .pin()
            .get(&a)
            .copied()
            .unwrap_or(0));
        $m!("raw_quick_cache_get", |a| QUICK.get(&a).unwrap_or(0));
        $m!("raw_moka_get", |a| MOKA.get(&a).unwrap_or(0));
        $m!("raw_dashmap_get", |a| DASH.get(&a).map_or(0, |v| *v));
    };
}

const NAMES: [&str; 8] = [
    "cachemacro_memoize",
    "cachemacro_memoize_ttl",
    "cached_crate",
    "cached_crate_size_time",
    "raw_papaya_get",
    "raw_quick_cache_get",
    "raw_moka_get",
    "raw_dashmap_get",
];

fn warm() {
    for a in 0..KEYS {
        ours(a);
        ours_with_ttl(a);
        theirs(a);
        theirs_bounded_ttl(a);
        PAPAYA.pin().insert(a, a);
        QUICK.insert(a, a);
        MOKA.insert(a, a);
        DASH.insert(a, a);
    }
}

/// Time per hit with `threads` threads each running `iters` hits over the warm keys.
fn run<F: Fn(u64) -> u64 + Copy + Send + 'static>(hit: F, threads: usize, iters: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let mut a = t as u64 * 17;
                for _ in 0..iters {
                    black_box(hit(black_box(a)));
                    a = (a + 1) % KEYS;
                }
                start.elapsed()
            })
        })
        .collect();
    barrier.wait();
    // Wall time of the slowest thread: per-iteration figures are time per hit per thread.
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    warm();
    for threads in [1usize, 2] {
        let mut group = c.benchmark_group(format!("hit_{threads}_thread"));
        group.throughput(criterion::Throughput::Elements(threads as u64));
        macro_rules! one {
            ($name:expr, $hit:expr) => {
                group.bench_function($name, |b| {
                    if threads == 1 {
                        let mut a = 0;
                        b.iter(|| {
                            a = (a + 1) % KEYS;
                            ($hit)(black_box(a))
                        })
                    } else {
                        b.iter_custom(|iters| run($hit, threads, iters))
                    }
                });
            };
        }
        for_each_peer!(one);
        group.finish();
    }
}

/// Prints every figure of this run as a ratio to the `cached` crate's, from criterion's
/// estimates (mean time per hit per thread; lower is better, and at 2 threads a ratio below
/// 1 is that much more throughput).
fn summary() {
    for threads in [1, 2] {
        report::print_ratios(
            &format!("hit_{threads}_thread"),
            &NAMES,
            "cached_crate",
            "ns per hit per thread, and ratio to the cached crate",
        );
    }
}

fn main() {
    report::run(
        Duration::from_millis(500),
        Duration::from_secs(2),
        bench,
        summary,
    );
}
