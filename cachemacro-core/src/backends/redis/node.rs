//! One redis server (standalone, or a node of a cluster): its idle connections and its
//! health, and the exchange of packed commands with it.
//!
//! A connection that saw any error is dropped, never reused (a reply may still be in
//! flight). A pooled connection found dead (the server restarted) is replaced by a fresh one
//! once, without counting as a failure. After a failure the node rests for `retry_timeout`:
//! requests to it fail fast, without I/O, so a frozen server costs one I/O timeout, not one
//! per call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use ::redis as r;
use r::{RedisError, RedisResult};

use super::RedisOptions;

pub(super) struct Node {
    /// `host:port`, as the cluster names the node.
    pub(super) addr: String,
    pub(super) client: r::Client,
    /// The async client's connection (the redis crate's multiplexed one), made on first use.
    #[cfg(feature = "tokio")]
    pub(super) multiplexed: super::aio::Slot,
    idle: Mutex<Vec<r::Connection>>,
    /// Milliseconds since `origin` before which the node is not tried.
    resting_until: AtomicU64,
    origin: Instant,
}

/// A batch written to a node's connection, awaiting its replies.
pub(super) struct Sent {
    conn: r::Connection,
    reused: bool,
    replies: usize,
}

impl Node {
    pub(super) fn new(addr: String, info: r::ConnectionInfo) -> RedisResult<Node> {
        Ok(Node {
            addr,
            client: r::Client::open(info)?,
            #[cfg(feature = "tokio")]
            multiplexed: Default::default(),
            idle: Mutex::new(Vec::new()),
            resting_until: AtomicU64::new(0),
            origin: Instant::now(),
        })
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Whether requests may be sent now (not resting after a failure).
    pub(super) fn available(&self) -> bool {
        self.resting_until.load(Ordering::Relaxed) <= self.now()
    }

    /// Records a failure: the node's idle connections go, and it rests.
    pub(super) fn failed(&self, opts: &RedisOptions, e: &RedisError) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.resting_until.store(
            self.now() + opts.retry_timeout.as_millis() as u64,
            Ordering::Relaxed,
        );
        tracing::warn!(target: "cachemacro", server = %self.addr, error = %e,
            "redis failing; retried in {:?}", opts.retry_timeout);
    }

    /// A fresh connection, with the I/O timeout on both directions.
    pub(super) fn connect(&self, opts: &RedisOptions) -> RedisResult<r::Connection> {
        let conn = self
            .client
            .get_connection_with_timeout(opts.connect_timeout)?;
        conn.set_read_timeout(Some(opts.io_timeout))?;
        conn.set_write_timeout(Some(opts.io_timeout))?;
        Ok(conn)
    }

    /// Writes `packed` (`replies` commands) on a pooled connection, or a fresh one.
    pub(super) fn send(
        &self,
        opts: &RedisOptions,
        packed: &[u8],
        replies: usize,
    ) -> RedisResult<Sent> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect(opts)?,
        };
        match conn.send_packed_command(packed) {
            Ok(()) => Ok(Sent {
                conn,
                reused,
                replies,
            }),
            Err(e) if reused && stale(&e) => {
                let mut conn = self.connect(opts)?;
                conn.send_packed_command(packed)?;
                Ok(Sent {
                    conn,
                    reused: false,
                    replies,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the replies of a batch written with [`Node::send`]; a pooled connection found
    /// dead is replaced once and the batch written again. The connection goes back to the
    /// pool only after every reply was read.
    pub(super) fn receive(
        &self,
        opts: &RedisOptions,
        sent: Sent,
        packed: &[u8],
    ) -> RedisResult<Vec<r::Value>> {
        let Sent {
            mut conn,
            reused,
            replies,
        } = sent;
        let out = match read_all(&mut conn, replies) {
            // Nothing was read: the server closed the idle connection before our requests
            // reached it, so none ran; once more on a fresh connection.
            Err((0, e)) if reused && stale(&e) => {
                conn = self.connect(opts)?;
                conn.send_packed_command(packed)?;
                read_all(&mut conn, replies).map_err(|(_, e)| e)?
            }
            r => r.map_err(|(_, e)| e)?,
        };
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < opts.pool_size {
            idle.push(conn);
        }
        Ok(out)
    }
}

/// Every reply, or the error and how many replies came before it.
fn read_all(
    conn: &mut r::Connection,
    replies: usize,
) -> Result<Vec<r::Value>, (usize, RedisError)> {
    let mut out = Vec::with_capacity(replies);
    for i in 0..replies {
        out.push(conn.recv_response().map_err(|e| (i, e))?);
    }
    Ok(out)
}

/// A pooled connection that the server closed while it sat idle (it restarted): worth one
/// retry on a fresh connection. A timeout is not: the server may be frozen.
fn stale(e: &RedisError) -> bool {
    (e.is_connection_dropped() || e.is_io_error()) && !e.is_timeout()
}

/// Whether an error is the server's or the network's (the node rests), rather than a reply.
pub(super) fn is_failure(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

impl Node {
    /// Sends `cmds` and reads their replies (one round trip); failures are the caller's to
    /// record.
    pub(super) fn run(&self, opts: &RedisOptions, cmds: &[r::Cmd]) -> RedisResult<Vec<r::Value>> {
        let packed: Vec<u8> = cmds.iter().flat_map(|c| c.get_packed_command()).collect();
        let sent = self.send(opts, &packed, cmds.len())?;
        self.receive(opts, sent, &packed)
    }
}
