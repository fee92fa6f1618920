//! One server: its idle connections and its health.
//!
//! Health follows libmemcached's knobs as MemCachier tunes them: a failure makes the server
//! sit out `retry_timeout` (its keys fail fast, without I/O); `remove_failed` consecutive
//! failures take it out of the ring for `dead_timeout` (its keys go to the other servers).
//! A success resets both.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::conn::{Conn, ConnError};
use super::Options;

pub(crate) struct Server {
    pub(crate) addr: String,
    idle: Mutex<Vec<Conn>>,
    failures: AtomicU32,
    /// Milliseconds since `origin` before which the server is not tried.
    resting_until: AtomicU64,
    /// Milliseconds since `origin` before which the server is out of the ring.
    ejected_until: AtomicU64,
    origin: Instant,
}

impl Server {
    pub(crate) fn new(addr: String) -> Server {
        Server {
            addr,
            idle: Mutex::new(Vec::new()),
            failures: AtomicU32::new(0),
            resting_until: AtomicU64::new(0),
            ejected_until: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Whether keys may be routed here (not ejected).
    pub(crate) fn in_ring(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) <= self.now()
    }

    /// Whether requests may be sent now (not resting after a failure).
    pub(crate) fn available(&self) -> bool {
        self.resting_until.load(Ordering::Relaxed) <= self.now()
    }

    /// An idle connection, or a new one.
    pub(crate) fn checkout(
        &self,
        opts: &Options,
        creds: Option<&(String, String)>,
    ) -> Result<Conn, ConnError> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match idle {
                // Something arrived while it sat in the pool: a frame nobody asked for, or
                // the server's close. Either way it cannot carry the next request.
                Some(c) if !c.idle_ok() => continue,
                Some(mut c) => {
                    c.reused = true;
                    return Ok(c);
                }
                None => return Conn::open(&self.addr, opts, creds),
            }
        }
    }

    /// Returns a connection that completed its requests cleanly; one with bytes left unread
    /// (more than its requests' replies) is closed instead.
    pub(crate) fn checkin(&self, conn: Conn, opts: &Options) {
        if !conn.is_drained() {
            tracing::debug!(target: "cachemacro", server = %self.addr,
                "memcached sent more than the replies asked for; connection closed");
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < opts.pool_size {
            idle.push(conn);
        }
    }

    pub(crate) fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
            self.resting_until.store(0, Ordering::Relaxed);
            self.ejected_until.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failure; the server's idle connections were opened before it and go too.
    pub(crate) fn failed(&self, opts: &Options, why: &str) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.now();
        self.resting_until.store(
            now + opts.retry_timeout.as_millis() as u64,
            Ordering::Relaxed,
        );
        if failures >= opts.remove_failed {
            self.ejected_until.store(
                now + opts.dead_timeout.as_millis() as u64,
                Ordering::Relaxed,
            );
            tracing::warn!(target: "cachemacro", server = %self.addr, failures, error = why,
                "memcached server out of rotation for {:?}", opts.dead_timeout);
        } else {
            tracing::warn!(target: "cachemacro", server = %self.addr, failures, error = why,
                "memcached server failing; retried in {:?}", opts.retry_timeout);
        }
    }
}
