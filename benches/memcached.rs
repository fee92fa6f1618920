//! A memoized hit on memcached against a raw single `get` through the same client, on one
//! local server started by the bench (`cargo bench --bench memcached`). The hit reads two keys
//! (version and value) in one round trip; two sequential round trips would show as ~2x.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use cachemacro::{memoize, Cache};
use cachemacro_testkit::Memcached;
use criterion::Criterion;

mod support;
use support::report;

static CACHE: OnceLock<Cache> = OnceLock::new();

#[memoize(cache = CACHE.get().unwrap(), timeout = 0)]
fn ours(a: u64) -> u64 {
    a.wrapping_mul(0x9e37_79b9)
}

fn bench(c: &mut Criterion) {
    let server = Memcached::start();
    let cache = Cache::builder().memcached([server.addr()]).build().unwrap();
    CACHE.set(cache.clone()).unwrap();
    for a in 0..100 {
        ours(a);
        cache.set(&format!("raw{a}"), &a, 0).unwrap();
    }
    let keys: Vec<String> = (0..100).map(|a| format!("raw{a}")).collect();
    let mut group = c.benchmark_group("memcached_hit");
    let mut i = 0;
    group.bench_function("raw_get", |b| {
        b.iter(|| {
            i = (i + 1) % 100;
            cache.backend().get(black_box(&keys[i])).unwrap()
        })
    });
    let mut a = 0;
    group.bench_function("memoized_hit", |b| {
        b.iter(|| {
            a = (a + 1) % 100;
            ours(black_box(a))
        })
    });
    group.finish();
    drop(server);
}

fn summary() {
    let mean = |id| report::mean_ns("memcached_hit", id);
    if let (Some(raw), Some(hit)) = (mean("raw_get"), mean("memoized_hit")) {
        println!(
            "\nmemcached: raw get {:.1} µs, memoized hit {:.1} µs, ratio {:.2}x",
            raw / 1000.0,
            hit / 1000.0,
            hit / raw
        );
    }
}

fn main() {
    report::run(
        Duration::from_millis(500),
        Duration::from_secs(3),
        bench,
        summary,
    );
}
