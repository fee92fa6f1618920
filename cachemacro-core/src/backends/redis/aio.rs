//! The async client: the operations of `ops.rs` over the redis crate's multiplexed
//! connections (one per server, many requests in flight on it, cancellation-safe), with the
//! routing, slot map and server health of the sync client.
//!
//! Every operation runs against one deadline (`io_timeout`). A server that misses it, or
//! whose connection fails, rests for `retry_timeout` (calls on its keys fail fast) and its
//! connection is dropped, so the next attempt connects afresh; on a cluster, the slot map is
//! read again (as by the sync client), so a promoted replica is used as soon as the cluster
//! reports it. Servers are waited on independently: a frozen one never stalls the others.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use ::redis as r;
use r::aio::MultiplexedConnection;
use r::{AsyncConnectionConfig, RedisError};
use tokio::sync::oneshot;
use tokio::time::{timeout_at, Instant};

use super::node::{is_failure, Node};
use super::ops::Io;
use super::router::{group, redirected, slots_cmd, Router, Unit};
use super::{redis_err, RedisBackend};
use crate::backends::join_all;
use crate::Error;

/// A server's multiplexed connection, made on first use, with the flag that says whether
/// the runtime driving it still runs (and the sender whose drop ends the task that watches).
#[derive(Default)]
pub(super) struct Slot {
    conn: RwLock<Option<Live>>,
    /// Held while connecting: concurrent callers wait for one connection, not make many.
    connecting: tokio::sync::Mutex<()>,
}

/// A connection, the flag its runtime clears, and what ends the watching task when dropped.
type Live = (MultiplexedConnection, Arc<AtomicBool>, oneshot::Sender<()>);

/// Clears its flag when dropped: with the task that holds it, when its runtime shuts down
/// (or when the connection it watches is replaced, and nobody looks at the flag any more).
struct Running(Arc<AtomicBool>);

impl Running {
    async fn until(self, replaced: oneshot::Receiver<()>) {
        let _ = replaced.await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn timed_out(node: &Node) -> Error {
    Error::Backend(format!("redis {}: timed out", node.addr))
}

impl Node {
    /// The live multiplexed connection, connecting if there is none.
    async fn multiplexed(
        &self,
        b: &RedisBackend,
        deadline: Instant,
    ) -> Result<MultiplexedConnection, Error> {
        // A connection is driven by a task of the runtime that made it: one made under
        // another runtime that has since shut down (a test's, a short-lived one) is dead,
        // through no fault of the server.
        let live = || {
            self.multiplexed
                .conn
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .filter(|(_, running, _)| running.load(Ordering::SeqCst))
                .map(|(c, _, _)| c.clone())
        };
        if let Some(c) = live() {
            return Ok(c);
        }
        let _connecting = self.multiplexed.connecting.lock().await;
        if let Some(c) = live() {
            return Ok(c);
        }
        // No response timeout of the connection's own: every call already runs against its
        // deadline (one timer per call, not two).
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(b.opts.connect_timeout))
            .set_response_timeout(None);
        let conn = timeout_at(
            deadline,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| timed_out(self))?
        .map_err(|e| self.failure(b, &e))?;
        let running = Arc::new(AtomicBool::new(true));
        let (replaced, watch) = oneshot::channel();
        tokio::spawn(Running(running.clone()).until(watch));
        *self
            .multiplexed
            .conn
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some((conn.clone(), running, replaced));
        Ok(conn)
    }

    /// Records a failure of this server: it rests, its connection goes.
    fn failure(&self, b: &RedisBackend, e: &RedisError) -> Error {
        if is_failure(e) {
            self.failed(&b.opts, e);
            self.forget();
        }
        redis_err(e)
    }

    fn forget(&self) {
        *self
            .multiplexed
            .conn
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// `cmds` on this server's multiplexed connection, within the deadline.
    async fn run_async(
        &self,
        b: &RedisBackend,
        cmds: &[&r::Cmd],
        deadline: Instant,
    ) -> Result<Vec<r::Value>, Error> {
        if !self.available() {
            return Err(Error::Backend(format!(
                "redis {} failed recently; retried after {:?}",
                self.addr, b.opts.retry_timeout
            )));
        }
        let attempt = async {
            let mut conn = self.multiplexed(b, deadline).await?;
            let sent = match cmds {
                // One command (a memoized hit's MGET): sent as it is, no pipeline made.
                [one] => conn.send_packed_command(one).await.map(|v| vec![v]),
                _ => {
                    let mut pipe = r::pipe();
                    for c in cmds {
                        pipe.add_command((*c).clone());
                    }
                    conn.send_packed_commands(&pipe, 0, cmds.len()).await
                }
            };
            sent.map_err(|e| self.failure(b, &e))
        };
        match timeout_at(deadline, attempt).await {
            Ok(r) => r,
            Err(_) => {
                // No reply in time: the server may be frozen. It rests, and the next
                // attempt connects afresh instead of queueing behind this one.
                let e = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
                self.failed(&b.opts, &e);
                self.forget();
                Err(timed_out(self))
            }
        }
    }
}

impl RedisBackend {
    /// Reads the cluster's slot map again, on the async connections.
    async fn refresh_async(&self, force: bool) {
        let Router::Cluster(c) = &self.router else {
            return;
        };
        let Some((_reading, candidates)) = c.begin_refresh(force) else {
            return;
        };
        let cmd = slots_cmd();
        for node in candidates {
            let deadline = Instant::now() + self.opts.io_timeout;
            if let Ok(replies) = node.run_async(self, &[&cmd], deadline).await {
                if c.install(&node, replies.first()) {
                    return;
                }
            }
        }
        tracing::warn!(target: "cachemacro", "no redis cluster node answered CLUSTER SLOTS");
    }

    /// The commands of `members` on `node`, one round trip.
    async fn round(
        &self,
        node: &Node,
        members: &[usize],
        units: &[Unit],
        deadline: Instant,
    ) -> Result<Vec<r::Value>, Error> {
        let cmds: Vec<&r::Cmd> = members.iter().flat_map(|&i| &units[i].cmds).collect();
        node.run_async(self, &cmds, deadline).await
    }

    async fn exec_once(&self, units: &[Unit]) -> Result<Vec<Vec<r::Value>>, Error> {
        let deadline = Instant::now() + self.opts.io_timeout;
        if let Router::Cluster(c) = &self.router {
            if c.is_empty() {
                self.refresh_async(true).await;
            }
        }
        if let Router::Cluster(c) = &self.router {
            // A slot the map does not cover (a cluster reshaped): read the map once.
            if units.iter().any(|u| c.master_of(&u.key).is_none()) {
                self.refresh_async(true).await;
            }
        }
        let batches = group(units, |key| match &self.router {
            Router::Single(n) => Some(n.clone()),
            Router::Cluster(c) => c.master_of(key),
        })?;
        let results = match batches.as_slice() {
            // One node (every standalone call): awaited in place.
            [(node, members)] => vec![self.round(node, members, units, deadline).await],
            _ => {
                let rounds = batches
                    .iter()
                    .map(|(node, members)| Box::pin(self.round(node, members, units, deadline)))
                    .collect();
                join_all(rounds).await
            }
        };
        let mut out: Vec<Vec<r::Value>> = units.iter().map(|_| Vec::new()).collect();
        let mut failure = None;
        for ((_, members), r) in batches.iter().zip(results) {
            match r {
                Ok(replies) => {
                    let mut replies = replies.into_iter();
                    for &i in members {
                        out[i] = replies.by_ref().take(units[i].cmds.len()).collect();
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => {
                // A promoted replica may serve the failed node's slots by now.
                self.refresh_async(false).await;
                Err(e)
            }
            None => Ok(out),
        }
    }
}

/// The async engine.
struct Multiplexed;

impl Io for Multiplexed {
    async fn exec(&self, b: &RedisBackend, units: &[Unit]) -> Result<Vec<Vec<r::Value>>, Error> {
        let mut out = b.exec_once(units).await?;
        if matches!(b.router, Router::Cluster(_)) && out.iter().flatten().any(redirected) {
            b.refresh_async(true).await;
            out = b.exec_once(units).await?;
        }
        Ok(out)
    }

    async fn run(
        &self,
        b: &RedisBackend,
        node: &Node,
        cmds: &[r::Cmd],
    ) -> Result<Vec<r::Value>, Error> {
        let cmds: Vec<&r::Cmd> = cmds.iter().collect();
        let deadline = Instant::now() + b.opts.io_timeout;
        node.run_async(b, &cmds, deadline).await
    }

    async fn masters(&self, b: &RedisBackend) -> Vec<Arc<Node>> {
        match &b.router {
            Router::Single(n) => vec![n.clone()],
            Router::Cluster(c) => {
                if c.is_empty() {
                    b.refresh_async(true).await;
                }
                c.current_masters()
            }
        }
    }
}

async_via!(RedisBackend, Multiplexed);
