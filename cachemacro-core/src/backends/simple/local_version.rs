//! The per-function version cache that lets an in-process memoized hit skip reading the
//! version entry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// A function's version as last read from an in-process backend, with the backend epoch it
/// was read at; valid while the backend's epoch has not moved. A seqlock: readers only load.
/// Aligned to its own cache lines: every hit of the function reads it, and a neighbour
/// written by another thread would otherwise evict it from every reader's cache.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct LocalVersion {
    epoch: AtomicU64,
    version: AtomicU64,
    write: Mutex<()>,
}

impl LocalVersion {
    #[inline]
    pub(crate) fn get(&self, current_epoch: u64) -> Option<u64> {
        let e1 = self.epoch.load(Ordering::SeqCst);
        if e1 != current_epoch || e1 == 0 {
            return None;
        }
        let version = self.version.load(Ordering::SeqCst);
        (self.epoch.load(Ordering::SeqCst) == e1).then_some(version)
    }

    pub(crate) fn put(&self, epoch: u64, version: u64) {
        let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.store(0, Ordering::SeqCst);
        self.version.store(version, Ordering::SeqCst);
        self.epoch.store(epoch, Ordering::SeqCst);
    }
}
