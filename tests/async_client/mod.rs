//! What the async clients' tests share: the async direct API's contract, calls dropped at
//! random points under load, and timed rounds of concurrent memoized calls.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachemacro::Cache;

/// Every method of `cache.aio()`, as the sync API behaves.
pub async fn direct_api(cache: &Cache) {
    let a = cache.aio();
    a.set("a", &1u32, 60).await.unwrap();
    assert!(!a.add("a", &2u32, 60).await.unwrap());
    assert!(a.add("b", &2u32, 60).await.unwrap());
    assert!(a.has("a").await.unwrap());
    assert_eq!(
        a.get_many::<u32>(&["a", "b", "c"]).await.unwrap(),
        [Some(1), Some(2), None]
    );
    let (x, y) = (7u32, 8u32);
    a.set_many([("x", &x), ("y", &y)], 60).await.unwrap();
    assert_eq!(
        cache.get::<u32>("y").unwrap(),
        Some(8),
        "the sync API sees it"
    );
    assert_eq!(a.delete_many(&["x", "y", "z"]).await.unwrap(), 2);
    assert!(a.delete("a").await.unwrap());
    assert_eq!(a.inc("n", 5).await.unwrap(), 5);
    assert_eq!(a.dec("n", 2).await.unwrap(), 3);
    // Any key, the empty one included.
    a.set("", &9u32, 60).await.unwrap();
    assert_eq!(a.get::<u32>("").await.unwrap(), Some(9));
    a.clear().await.unwrap();
    assert_eq!(a.get::<u32>("b").await.unwrap(), None);
    assert_eq!(cache.stats().offloaded, 0);
}

/// Thousands of calls dropped at random points (queued, written, halfway through their
/// replies) while 64 tasks run: 0 wrong values then and after.
pub async fn cancellation(cache: &Cache) {
    const KEYS: u64 = 200;
    for i in 0..KEYS {
        cache.aio().set(&format!("k{i}"), &i, 0).await.unwrap();
    }
    let wrong = Arc::new(AtomicUsize::new(0));
    let (completed, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let cache = cache.clone();
            let (wrong, completed, dropped) = (wrong.clone(), completed.clone(), dropped.clone());
            tokio::spawn(async move {
                for n in 0..100u64 {
                    let i = (t * 31 + n * 7) % KEYS;
                    let j = (i + 1) % KEYS;
                    let key = format!("k{i}");
                    let key2 = format!("k{j}");
                    // A deadline of 0 to 1.5 ms: many calls are dropped while queued, written
                    // or halfway through their replies.
                    let limit = Duration::from_micros(fastrand_u64(t, n) % 1500);
                    let call = async {
                        let a = cache.aio();
                        (
                            a.get::<u64>(&key).await,
                            a.get_many::<u64>(&[&key, &key2]).await,
                        )
                    };
                    match tokio::time::timeout(limit, call).await {
                        Ok((one, many)) => {
                            completed.fetch_add(1, Ordering::Relaxed);
                            if one.unwrap() != Some(i) || many.unwrap() != [Some(i), Some(j)] {
                                wrong.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Everything read afterwards is right, on the same connection.
    for i in 0..KEYS {
        let v = cache.aio().get::<u64>(&format!("k{i}")).await.unwrap();
        if v != Some(i) {
            wrong.fetch_add(1, Ordering::Relaxed);
        }
    }
    let (completed, dropped) = (
        completed.load(Ordering::Relaxed),
        dropped.load(Ordering::Relaxed),
    );
    println!(
        "cancellation: {completed} calls completed, {dropped} dropped in flight, then {KEYS} reads"
    );
    assert_eq!(wrong.load(Ordering::Relaxed), 0, "wrong values");
    assert!(
        dropped >= 100 && completed >= 10,
        "{completed} completed, {dropped} dropped"
    );
    assert_eq!(cache.stats().errors, 0);
}

/// A deterministic spread of numbers from two seeds.
pub fn fastrand_u64(a: u64, b: u64) -> u64 {
    let mut x = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    x.wrapping_mul(0x94d0_49bb_1331_11eb) >> 7
}

/// `tasks` tasks making `calls` calls each of `f` (which must return `3a + 1`); the slowest.
pub async fn round<F, Fut>(f: F, tasks: u64, calls: u64) -> Duration
where
    F: Fn(u64) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = u64> + Send + 'static,
{
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            tokio::spawn(async move {
                let mut max = Duration::ZERO;
                for n in 0..calls {
                    let a = (t * calls + n) % 200;
                    let start = Instant::now();
                    assert_eq!(f(a).await, a * 3 + 1, "wrong value");
                    max = max.max(start.elapsed());
                }
                max
            })
        })
        .collect();
    let mut max = Duration::ZERO;
    for h in handles {
        max = max.max(h.await.unwrap());
    }
    max
}
