//! The async client: the same operations (`ops.rs`), routing, health and protocol as the
//! sync client, over one multiplexed connection per server ([`mux`]).
//!
//! Every operation runs against one deadline (`io_timeout`) covering connect, send and
//! replies. A server that misses it is marked failing (it rests for `retry_timeout`, and
//! leaves the ring after `remove_failed` failures, exactly as for the sync client) and its
//! connection is closed, so the next attempt connects afresh; servers are waited on
//! independently, so a frozen server never stalls requests to the others.

mod mux;

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::batch::{backend_err, Batch};
use super::conn::ConnError;
use super::crawler::{metadump_key, Line};
use super::ops::Io;
use super::protocol::op;
use super::server::Server;
use super::MemcachedBackend;
use crate::backends::join_all;
use crate::Error;
use mux::{Mux, Pending, Replies};

/// The async connections of a memcached backend: one per server, made on first use.
#[derive(Default)]
pub(super) struct Pool {
    slots: Vec<Slot>,
}

#[derive(Default)]
struct Slot {
    mux: RwLock<Option<Arc<Mux>>>,
    /// Held while connecting: concurrent callers wait for one connection, not make many.
    connecting: tokio::sync::Mutex<()>,
}

impl Pool {
    pub(super) fn new(servers: usize) -> Pool {
        Pool {
            slots: (0..servers).map(|_| Slot::default()).collect(),
        }
    }
}

/// The async engine.
struct Multiplexed;

impl Io for Multiplexed {
    fn exchange<'a>(
        &'a self,
        b: &'a MemcachedBackend,
        batches: &'a mut [Batch],
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        b.exchange_async(batches)
    }

    fn list_keys<'a>(
        &'a self,
        b: &'a MemcachedBackend,
        server: &'a Server,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<Vec<Vec<u8>>>, Error>> + Send + 'a {
        b.list_keys_async(server, timeout)
    }

    fn pause(&self, d: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(d)
    }
}

/// Whether a batch may be sent again after its connection closed under it: reads, plain
/// writes and deletes may; `add` and counters may not (they may have been applied).
fn idempotent(b: &Batch) -> bool {
    b.reqs.iter().all(|r| {
        matches!(
            r.opcode,
            op::GET | op::GETK | op::GETKQ | op::SET | op::SETQ | op::DELETE | op::FLUSH
        )
    })
}

impl MemcachedBackend {
    /// The live connection to server `s`, connecting (and authenticating) if there is none.
    async fn mux(&self, s: usize, deadline: Instant) -> Result<Arc<Mux>, ConnError> {
        let slot = &self.aio.slots[s];
        let live = |slot: &Slot| {
            slot.mux
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .filter(|m| !m.is_dead())
                .cloned()
        };
        if let Some(m) = live(slot) {
            return Ok(m);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(m) = live(slot) {
            return Ok(m);
        }
        let addr = &self.servers[s].addr;
        let connect_by = deadline.min(Instant::now() + self.opts.connect_timeout);
        let timed_out = || ConnError::Io(format!("connect {addr}: timed out"));
        let stream = timeout_at(connect_by, TcpStream::connect(addr.as_str()))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| ConnError::Io(format!("connect {addr}: {e}")))?;
        let max_body = self.opts.max_value_size.saturating_add(1024);
        let mux = timeout_at(
            connect_by,
            Mux::open(addr, stream, max_body, self.credentials.as_ref()),
        )
        .await
        .map_err(|_| timed_out())??;
        let mux = Arc::new(mux);
        *slot.mux.write().unwrap_or_else(PoisonError::into_inner) = Some(mux.clone());
        Ok(mux)
    }

    /// Writes one batch to its server's connection; the receiver of its replies.
    async fn submit(&self, b: &Batch, deadline: Instant) -> Result<(Arc<Mux>, Pending), ConnError> {
        let mux = self.mux(b.server, deadline).await?;
        let reqs = b.reqs.iter().map(|r| {
            (
                r.opcode,
                r.extras.as_slice(),
                r.key.as_slice(),
                r.value.as_slice(),
            )
        });
        let pending = mux.submit(reqs, b.quiet).await?;
        Ok((mux, pending))
    }

    /// One batch's replies, within the deadline; a connection found closed under a batch
    /// that may be sent again is replaced once.
    async fn round_trip(&self, b: &Batch, deadline: Instant) -> Replies {
        let addr = &self.servers[b.server].addr;
        let timed_out = || ConnError::Io(format!("{addr}: timed out"));
        let mut retried = false;
        loop {
            // The connection the batch went out on, once it did.
            let mut sent_on: Option<Arc<Mux>> = None;
            let attempt = async {
                let (mux, pending) = self.submit(b, deadline).await?;
                sent_on = Some(mux);
                pending.wait().await
            };
            // One timer for connecting, writing and the replies.
            match timeout_at(deadline, attempt).await {
                Err(_) => {
                    // No reply in time: the server may be frozen. The next attempt connects
                    // afresh instead of queueing behind this one.
                    if let Some(mux) = sent_on {
                        mux.close("timed out");
                    }
                    return Err(timed_out());
                }
                Ok(Err(ConnError::Stale(_))) if !retried && idempotent(b) => retried = true,
                Ok(r) => return r,
            }
        }
    }

    /// Sends every batch, each to its server's connection, then waits for every reply: one
    /// round trip, whatever the servers, each server waited on independently.
    async fn exchange_async(&self, batches: &mut [Batch]) -> Result<(), Error> {
        let deadline = Instant::now() + self.opts.io_timeout;
        let mut failure = None;
        let mut record = |server: &Server, r: Result<(), ConnError>| match r {
            Ok(()) => server.succeeded(),
            // The request was wrong, not the server: it counts as answering.
            Err(e @ ConnError::Refused(_)) => {
                server.succeeded();
                failure.get_or_insert(backend_err(&e));
            }
            // The connection closed under it (its runtime went, the server restarted): not
            // the server's failure either.
            Err(e @ ConnError::Stale(_)) => {
                failure.get_or_insert(backend_err(&e));
            }
            Err(e) => {
                server.failed(&self.opts, e.message());
                failure.get_or_insert(backend_err(&e));
            }
        };
        match batches {
            [] => {}
            [b] => {
                let r = self.round_trip(b, deadline).await;
                let server = &self.servers[b.server];
                record(server, r.map(|replies| b.replies = replies));
            }
            _ => {
                // All written first, then all read: the futures run concurrently.
                let rounds: Vec<_> = batches
                    .iter()
                    .map(|b| Box::pin(self.round_trip(b, deadline)))
                    .collect();
                let results = join_all(rounds).await;
                for (b, r) in batches.iter_mut().zip(results) {
                    let server = &self.servers[b.server];
                    record(server, r.map(|replies| b.replies = replies));
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// [`MemcachedBackend::list_keys`] on tokio.
    async fn list_keys_async(
        &self,
        server: &Server,
        timeout: Duration,
    ) -> Result<Option<Vec<Vec<u8>>>, Error> {
        let err = |e: std::io::Error| Error::Backend(format!("{}: {e}", server.addr));
        let listing = async {
            let mut stream = TcpStream::connect(server.addr.as_str())
                .await
                .map_err(err)?;
            stream
                .write_all(b"lru_crawler metadump all\r\n")
                .await
                .map_err(err)?;
            let mut lines = BufReader::new(stream).lines();
            let mut keys = Vec::new();
            while let Some(line) = lines.next_line().await.map_err(err)? {
                match metadump_key(&line, &self.prefix, &server.addr)? {
                    Some(Line::End) => break,
                    Some(Line::Busy) => return Ok(None),
                    Some(Line::Key(k)) => keys.push(k),
                    None => {}
                }
            }
            Ok(Some(keys))
        };
        tokio::time::timeout(timeout, listing).await.map_err(|_| {
            Error::Backend(format!("{}: lru_crawler metadump timed out", server.addr))
        })?
    }
}

async_via!(MemcachedBackend, Multiplexed);
