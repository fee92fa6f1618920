//! Memoized hit and miss latency on every backend, in one run (`cargo bench --bench
//! backends`): in-memory, memcached, redis (each on a local server the bench starts) and the
//! filesystem (a temporary directory).
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use cachemacro::{memoize, Cache};
use cachemacro_testkit::{Memcached, Redis, ScratchDir};
use criterion::Criterion;

mod support;
use support::report;

static SIMPLE: OnceLock<Cache> = OnceLock::new();
static MEMCACHED: OnceLock<Cache> = OnceLock::new();
static REDIS: OnceLock<Cache> = OnceLock::new();
static FILESYSTEM: OnceLock<Cache> = OnceLock::new();

macro_rules! memoized {
    ($name:ident, $cache:ident) => {
        #[memoize(cache = $cache.get().unwrap(), timeout = 0)]
        fn $name(a: u64) -> u64 {
            a.wrapping_mul(0x9e37_79b9)
        }
    };
}
memoized!(on_simple, SIMPLE);
memoized!(on_memcached, MEMCACHED);
memoized!(on_redis, REDIS);
memoized!(on_filesystem, FILESYSTEM);

const WARM: u64 = 100;
/// Arguments never seen before, for misses.
static FRESH: AtomicU64 = AtomicU64::new(1 << 40);

fn bench(c: &mut Criterion) {
    let memcached = Memcached::start();
    let redis = Redis::start();
    let dir = ScratchDir::new("bench-filesystem");
    SIMPLE
        .set(
            Cache::builder()
                .simple()
                .threshold(100_000)
                .build()
                .unwrap(),
        )
        .unwrap();
    MEMCACHED
        .set(
            Cache::builder()
                .memcached([memcached.addr()])
                .build()
                .unwrap(),
        )
        .unwrap();
    REDIS
        .set(Cache::builder().redis(redis.url()).build().unwrap())
        .unwrap();
    FILESYSTEM
        .set(
            Cache::builder()
                .filesystem(dir.path())
                .threshold(100_000)
                .build()
                .unwrap(),
        )
        .unwrap();
    type Memoized = fn(u64) -> u64;
    let backends: [(&str, Memoized); 4] = [
        ("simple", on_simple),
        ("memcached", on_memcached),
        ("redis", on_redis),
        ("filesystem", on_filesystem),
    ];
    for (_, f) in backends {
        for a in 0..WARM {
            f(a);
        }
    }
    let mut group = c.benchmark_group("memoized");
    for (name, f) in backends {
        let mut a = 0;
        group.bench_function(format!("{name}_hit"), |b| {
            b.iter(|| {
                a = (a + 1) % WARM;
                f(black_box(a))
            })
        });
        group.bench_function(format!("{name}_miss"), |b| {
            b.iter(|| f(black_box(FRESH.fetch_add(1, Ordering::Relaxed))))
        });
    }
    group.finish();
    drop((memcached, redis, dir));
}

fn summary() {
    let mean = |id: &str| report::mean_ns("memoized", id);
    println!("\nmemoized call latency, µs (same run)");
    for name in ["simple", "memcached", "redis", "filesystem"] {
        if let (Some(hit), Some(miss)) =
            (mean(&format!("{name}_hit")), mean(&format!("{name}_miss")))
        {
            println!(
                "  {name:<11} hit {:>9.3}   miss {:>9.3}",
                hit / 1000.0,
                miss / 1000.0
            );
        }
    }
}

fn main() {
    report::run(
        Duration::from_millis(300),
        Duration::from_secs(2),
        bench,
        summary,
    );
}
