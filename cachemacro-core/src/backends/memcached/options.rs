//! Tuning of the memcached client.

use std::time::Duration;

/// Tuning of the memcached client. The defaults are libmemcached's behaviours as MemCachier
/// recommends them: connect 2 s, send/receive 750 ms, `remove_failed` 1, `retry_timeout` 2 s,
/// `dead_timeout` 30 s.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemcachedOptions {
    /// Longest wait for a TCP connection (and SASL handshake).
    pub connect_timeout: Duration,
    /// Longest wait for one operation's writes and replies.
    pub io_timeout: Duration,
    /// Consecutive failures that take a server out of the ring.
    pub remove_failed: u32,
    /// How long a failing server is skipped (its keys fail fast) before it is tried again.
    pub retry_timeout: Duration,
    /// How long a server out of the ring stays out (its keys go to the other servers).
    pub dead_timeout: Duration,
    /// Idle connections kept per server.
    pub pool_size: usize,
    /// The servers' item size limit (memcached `-I`, 1 MiB by default).
    pub max_value_size: usize,
    /// Split values above the item size limit over several keys.
    pub spread: bool,
}

impl Default for MemcachedOptions {
    fn default() -> Self {
        MemcachedOptions {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_millis(750),
            remove_failed: 1,
            retry_timeout: Duration::from_secs(2),
            dead_timeout: Duration::from_secs(30),
            pool_size: 8,
            max_value_size: 1024 * 1024,
            spread: false,
        }
    }
}
