//! Hit, miss, set, delete and error counters.
//!
//! Counters are striped over cache-line-padded slots, so that two threads answering hits never
//! write to the same cache line. The first [`OWNED`] threads that count anything each own a
//! stripe and bump it with a plain load and store (only the owner writes it, so nothing is
//! lost and no locked instruction is needed); later threads share the atomic-add stripes. A
//! thread's stripe goes back to the pool when it exits.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// A snapshot of a cache's counters, from [`Cache::stats`](crate::Cache::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lookups that found a live value.
    pub hits: u64,
    /// Lookups that found nothing usable (absent, expired, stale version, undecodable).
    pub misses: u64,
    /// Values written.
    pub sets: u64,
    /// Keys deleted and functions invalidated.
    pub deletes: u64,
    /// Backend failures and values that could not be encoded or decoded.
    pub errors: u64,
    /// Backend calls of async callers that went to the blocking thread pool (backends
    /// without an async form that do I/O: the filesystem, a custom backend). 0 on memcached
    /// and redis with the `tokio` feature, and in process.
    pub offloaded: u64,
}

/// Threads that get a stripe of their own.
const OWNED: usize = 64;
/// Stripes shared, with atomic adds, by the threads after those.
const SHARED: usize = 8;

#[derive(Default)]
#[repr(align(128))]
struct Stripe([AtomicU64; 6]);

/// Which counter to bump.
#[derive(Clone, Copy)]
pub(crate) enum Counter {
    Hit = 0,
    Miss = 1,
    Set = 2,
    Delete = 3,
    Error = 4,
    Offloaded = 5,
}

pub(crate) struct Counters {
    owned: Box<[Stripe; OWNED]>,
    shared: [Stripe; SHARED],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            owned: Box::new(std::array::from_fn(|_| Stripe::default())),
            shared: std::array::from_fn(|_| Stripe::default()),
        }
    }
}

/// A thread's owned stripe, handed back when the thread exits: short-lived threads (tests,
/// per-request threads) would otherwise use up the owned stripes for good.
struct StripeIndex(usize);

static NEXT: AtomicUsize = AtomicUsize::new(0);
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

impl StripeIndex {
    fn take() -> Self {
        let free = FREE.lock().unwrap_or_else(PoisonError::into_inner).pop();
        StripeIndex(free.unwrap_or_else(|| NEXT.fetch_add(1, Ordering::Relaxed)))
    }
}

impl Drop for StripeIndex {
    fn drop(&mut self) {
        // The lock orders the exiting owner's last store before the next owner's first load.
        if self.0 < OWNED {
            FREE.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self.0);
        }
    }
}

thread_local! {
    static INDEX: StripeIndex = StripeIndex::take();
}

/// This thread's stripe; a shared one while the thread is being torn down.
#[inline]
fn stripe_index() -> usize {
    INDEX.try_with(|i| i.0).unwrap_or(OWNED)
}

impl Counters {
    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let i = stripe_index();
        match self.owned.get(i) {
            Some(stripe) => {
                let c = &stripe.0[counter as usize];
                c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
            }
            None => {
                self.shared[i % SHARED].0[counter as usize].fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let sum = |c: Counter| {
            self.owned
                .iter()
                .chain(&self.shared)
                .map(|s| s.0[c as usize].load(Ordering::Relaxed))
                .sum()
        };
        Stats {
            hits: sum(Counter::Hit),
            misses: sum(Counter::Miss),
            sets: sum(Counter::Set),
            deletes: sum(Counter::Delete),
            errors: sum(Counter::Error),
            offloaded: sum(Counter::Offloaded),
        }
    }
}
