//! Rounds of memoized calls under a fault: every value checked, latency and recomputations
//! measured. A round is a fixed list of calls; what it measures is reported, and bounded only
//! where the bound is behaviour (a call returns within about one I/O timeout).

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What one round of calls cost.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// The slowest call.
    pub max: Duration,
    /// All the calls.
    pub total: Duration,
    /// Bodies run (misses), from the function's call counter.
    pub computed: usize,
}

/// Calls `f` over `args`, checking each value is `3a + 1` (what the tests' functions return).
pub fn round(f: fn(u64) -> u64, calls: &AtomicUsize, args: Range<u64>) -> Round {
    let before = calls.load(Ordering::SeqCst);
    let (mut max, start) = (Duration::ZERO, Instant::now());
    for a in args {
        let t = Instant::now();
        assert_eq!(f(a), a * 3 + 1, "wrong value for {a}");
        max = max.max(t.elapsed());
    }
    Round {
        max,
        total: start.elapsed(),
        computed: calls.load(Ordering::SeqCst) - before,
    }
}
