//! Async memoized hits against sync ones on the same local server, memcached and redis
//! (`cargo bench --bench async`):
//! * latency: one tokio task making hits, against one thread calling the sync function;
//! * throughput: 1, 16, 256 and 1024 tasks on a 2-worker runtime, against 1 to 64 OS threads
//!   calling the sync function (time per hit; lower is more hits per second).
//!
//! The summary prints the latency ratio, the throughput ratios to the best sync figure, hits/s for each configuration and
//! what the server counted per hit, for one task and for 256 (memcached `cmd_get`: keys read;
//! redis `MGET` calls).
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cachemacro::{memoize, Cache};
use cachemacro_testkit::{Memcached, Redis};
use criterion::{Criterion, Throughput};

mod support;
use support::report;

const KEYS: u64 = 100;
const THREADS: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];
const TASKS: [usize; 4] = [1, 16, 256, 1024];

static MEMCACHED: OnceLock<Cache> = OnceLock::new();
static REDIS: OnceLock<Cache> = OnceLock::new();

#[memoize(cache = MEMCACHED.get().unwrap(), timeout = 0)]
fn mc_sync(a: u64) -> u64 {
    a.wrapping_mul(0x9e37_79b9)
}

#[memoize(cache = MEMCACHED.get().unwrap(), timeout = 0)]
async fn mc_async(a: u64) -> u64 {
    a.wrapping_mul(0x9e37_79b9)
}

#[memoize(cache = REDIS.get().unwrap(), timeout = 0)]
fn redis_sync(a: u64) -> u64 {
    a.wrapping_mul(0x9e37_79b9)
}

#[memoize(cache = REDIS.get().unwrap(), timeout = 0)]
async fn redis_async(a: u64) -> u64 {
    a.wrapping_mul(0x9e37_79b9)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// How many hits one measurement makes at least: starting the workers (threads or tasks)
/// must cost little next to it, or it is the start that gets measured.
fn batch(iters: u64, workers: usize) -> u64 {
    iters.max(20_000).max(200 * workers as u64)
}

/// The time `iters` hits take at the rate measured over a whole batch.
fn scaled(elapsed: Duration, iters: u64, total: u64) -> Duration {
    elapsed.mul_f64(iters as f64 / total as f64)
}

/// `iters` sync hits spread over `threads` OS threads; the wall time.
fn on_threads(f: fn(u64) -> u64, threads: usize, iters: u64) -> Duration {
    let total = batch(iters, threads);
    let per = total.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads as u64 {
            s.spawn(move || {
                for i in 0..per {
                    black_box(f((t + i) % KEYS));
                }
            });
        }
    });
    scaled(start.elapsed(), iters, per * threads as u64)
}

/// `iters` async hits spread over `tasks` tasks; the wall time.
fn on_tasks<F, Fut>(rt: &tokio::runtime::Runtime, f: F, tasks: usize, iters: u64) -> Duration
where
    F: Fn(u64) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let total = if tasks == 1 {
        iters
    } else {
        batch(iters, tasks)
    };
    let per = total.div_ceil(tasks as u64);
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks as u64)
            .map(|t| {
                tokio::spawn(async move {
                    for i in 0..per {
                        black_box(f((t + i) % KEYS).await);
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        start.elapsed()
    });
    scaled(elapsed, iters, per * tasks as u64)
}

fn one_backend<F, Fut>(c: &mut Criterion, name: &str, sync: fn(u64) -> u64, asynchronous: F)
where
    F: Fn(u64) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let rt = runtime();
    for a in 0..KEYS {
        sync(a);
        rt.block_on(asynchronous(a));
    }
    let mut group = c.benchmark_group(format!("{name}_latency"));
    let mut a = 0;
    group.bench_function("sync_hit", |b| {
        b.iter(|| {
            a = (a + 1) % KEYS;
            sync(black_box(a))
        })
    });
    group.bench_function("async_hit", |b| {
        b.iter_custom(|iters| on_tasks(&rt, asynchronous, 1, iters))
    });
    group.finish();

    let mut group = c.benchmark_group(format!("{name}_throughput"));
    group.throughput(Throughput::Elements(1));
    // Each sample is a whole batch of hits (see `batch`): fewer, longer samples.
    group.sample_size(10);
    for threads in THREADS {
        group.bench_function(format!("sync_{threads}_threads"), |b| {
            b.iter_custom(|iters| on_threads(sync, threads, iters))
        });
    }
    for tasks in TASKS {
        group.bench_function(format!("async_{tasks}_tasks"), |b| {
            b.iter_custom(|iters| on_tasks(&rt, asynchronous, tasks, iters))
        });
    }
    group.finish();
}

/// What the server counted per async hit: one task making 1000 hits, then 256 tasks making
/// 200 each (concurrent reads of one key share a request on memcached).
fn per_hit<F, Fut>(asynchronous: F, count: impl Fn() -> u64) -> [f64; 2]
where
    F: Fn(u64) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let rt = runtime();
    [(1, 1000), (256, 256 * 200)].map(|(tasks, hits)| {
        let before = count();
        // `batch` makes exactly these many hits for these many tasks.
        on_tasks(&rt, asynchronous, tasks, hits);
        (count() - before) as f64 / hits as f64
    })
}

static PER_HIT: OnceLock<([f64; 2], [f64; 2])> = OnceLock::new();

fn bench(c: &mut Criterion) {
    let memcached = Memcached::start();
    let redis = Redis::start();
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
    one_backend(c, "memcached", mc_sync, mc_async);
    one_backend(c, "redis", redis_sync, redis_async);
    let _ = PER_HIT.set((
        per_hit(mc_async, || memcached.stats()["cmd_get"]),
        per_hit(redis_async, || redis.calls("mget")),
    ));
    assert_eq!(
        MEMCACHED.get().unwrap().stats().offloaded + REDIS.get().unwrap().stats().offloaded,
        0,
        "an async hit went to the blocking pool"
    );
}

fn summary() {
    for name in ["memcached", "redis"] {
        let latency = format!("{name}_latency");
        let throughput = format!("{name}_throughput");
        if let (Some(sync), Some(asy)) = (
            report::mean_ns(&latency, "sync_hit"),
            report::mean_ns(&latency, "async_hit"),
        ) {
            println!(
                "\n{name}: one task's async hit {:.1} µs, one thread's sync hit {:.1} µs: {:.2}x",
                asy / 1000.0,
                sync / 1000.0,
                asy / sync
            );
        }
        let hits_per_s = |id: &str| report::mean_ns(&throughput, id).map(|ns| 1e9 / ns);
        let mut best_sync: Option<(usize, f64)> = None;
        for threads in THREADS {
            if let Some(h) = hits_per_s(&format!("sync_{threads}_threads")) {
                println!("  sync, {threads:>4} threads: {h:>10.0} hits/s");
                if best_sync.is_none_or(|(_, b)| h > b) {
                    best_sync = Some((threads, h));
                }
            }
        }
        for tasks in TASKS {
            if let Some(h) = hits_per_s(&format!("async_{tasks}_tasks")) {
                let ratio = best_sync.map_or(f64::NAN, |(_, b)| h / b);
                println!("  async, {tasks:>4} tasks: {h:>10.0} hits/s, {ratio:.2}x the best sync");
            }
        }
        if let Some((threads, _)) = best_sync {
            println!("  (best sync: {threads} threads)");
        }
    }
    if let Some((mc, redis)) = PER_HIT.get() {
        println!(
            "\nper async hit, 1 task: memcached cmd_get {:.2} (keys: version and value, one request); redis MGET {:.2}",
            mc[0], redis[0]
        );
        println!(
            "per async hit, 256 tasks: memcached cmd_get {:.2} (concurrent reads of a key share a request); redis MGET {:.2}",
            mc[1], redis[1]
        );
    }
}

fn main() {
    report::run(
        Duration::from_millis(300),
        Duration::from_secs(1),
        bench,
        summary,
    );
}
