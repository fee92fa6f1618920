//! Every redis operation, written once for both clients: requests are built here and
//! handed to an [`Io`] (the sync router of `router.rs`, or the redis crate's multiplexed
//! async connections of `aio.rs`), as for memcached.

use smallvec::SmallVec;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis as r;

use super::node::Node;
use super::router::{Router, Unit};
use super::{decode, redis_err, RedisBackend};
use crate::keys::is_version_key;
use crate::{Error, Value};

/// How requests reach the servers.
pub(super) trait Io: Sync {
    /// Sends every unit to its key's server (every server's written before any reply is
    /// read) and returns the replies, unit by unit.
    fn exec<'a>(
        &'a self,
        b: &'a RedisBackend,
        units: &'a [Unit],
    ) -> impl Future<Output = Result<Vec<Vec<r::Value>>, Error>> + Send + 'a;

    /// Runs `cmds` on one server.
    fn run<'a>(
        &'a self,
        b: &'a RedisBackend,
        node: &'a Node,
        cmds: &'a [r::Cmd],
    ) -> impl Future<Output = Result<Vec<r::Value>, Error>> + Send + 'a;

    /// Every master.
    fn masters<'a>(
        &'a self,
        b: &'a RedisBackend,
    ) -> impl Future<Output = Vec<Arc<Node>>> + Send + 'a;
}

impl RedisBackend {
    /// One command on `key`'s server; its reply.
    async fn one<T: r::FromRedisValue>(
        &self,
        io: &impl Io,
        key: &str,
        cmd: r::Cmd,
    ) -> Result<T, Error> {
        // A standalone server routes nothing: no key to keep.
        let k = match self.router {
            Router::Single(_) => Vec::new(),
            Router::Cluster(_) => self.key(key),
        };
        let mut replies = io.exec(self, &[Unit::one(k, cmd)]).await?;
        let reply = replies
            .pop()
            .and_then(|mut r| r.pop())
            .unwrap_or(r::Value::Nil);
        decode(reply)
    }

    /// A write of `key`; for a function version, confirmed by a replica (see
    /// [`RedisOptions::confirm_versions`]): `ROLE` tells how many replicas the key's master
    /// has (`WAIT` for one of none would only wait out its timeout), then the write and a
    /// `WAIT` for one of them go together. Two round trips, for the rare version writes.
    async fn write<T: r::FromRedisValue>(
        &self,
        io: &impl Io,
        key: &str,
        cmd: r::Cmd,
    ) -> Result<T, Error> {
        if !(self.opts.confirm_versions && is_version_key(key)) {
            return self.one(io, key, cmd).await;
        }
        let role: r::Value = self.one(io, key, r::cmd("ROLE")).await?;
        let replicas = match role {
            r::Value::Array(fields) => match fields.get(2) {
                Some(r::Value::Array(replicas)) => replicas.len(),
                _ => 0,
            },
            _ => 0,
        };
        if replicas == 0 {
            return self.one(io, key, cmd).await;
        }
        let wait_ms = (self.opts.io_timeout.as_millis() as u64 * 2 / 3).max(1);
        let mut wait = r::cmd("WAIT");
        wait.arg(1).arg(wait_ms);
        let unit = Unit {
            key: self.key(key),
            cmds: smallvec::smallvec![cmd, wait],
        };
        let mut replies = io.exec(self, &[unit]).await?.pop().unwrap_or_default();
        let acked: i64 = decode(replies.pop().unwrap_or(r::Value::Nil)).unwrap_or(0);
        let out = decode(replies.pop().unwrap_or(r::Value::Nil))?;
        if acked == 0 {
            return Err(Error::Backend(format!(
                "redis: the new version of {key:?} was not confirmed by any of {replicas} replicas within {wait_ms} ms; a failover now could undo it"
            )));
        }
        Ok(out)
    }

    async fn counter(
        &self,
        io: &impl Io,
        key: &str,
        op: &'static str,
        delta: i64,
    ) -> Result<i64, Error> {
        let mut c = r::cmd(op);
        c.arg(self.key(key)).arg(delta);
        self.one(io, key, c).await.map_err(|e| match e {
            Error::Backend(m) if m.contains("not an integer") || m.contains("overflow") => {
                Error::NotANumber(key.to_owned())
            }
            e => e,
        })
    }

    /// Every key under this cache's prefix on one master, `SCAN` page by page, each page
    /// removed with `UNLINK` (one command per key on a cluster: keys of a page may belong
    /// to different slots).
    async fn clear_prefix(&self, io: &impl Io, node: &Node) -> Result<(), Error> {
        let cluster = self.is_cluster();
        let mut cursor = 0u64;
        loop {
            let page = io
                .run(self, node, &[self.scan_cmd(cursor)])
                .await?
                .pop()
                .unwrap_or(r::Value::Nil);
            let (next, keys): (u64, Vec<Vec<u8>>) = decode(page)?;
            if !keys.is_empty() {
                let cmds: Vec<r::Cmd> = if cluster {
                    keys.iter()
                        .map(|k| {
                            let mut c = r::cmd("UNLINK");
                            c.arg(k);
                            c
                        })
                        .collect()
                } else {
                    let mut c = r::cmd("UNLINK");
                    c.arg(&keys);
                    vec![c]
                };
                for reply in io.run(self, node, &cmds).await? {
                    reply.extract_error().map_err(|e| redis_err(&e))?;
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// One `MGET` on a server; on a cluster one `GET` per key, every node's written before
    /// any reply is read. One round trip either way.
    pub(super) async fn get_many_via(
        &self,
        io: &impl Io,
        keys: &[&str],
    ) -> Result<SmallVec<[Option<Value>; 2]>, Error> {
        let raw: Vec<Option<Vec<u8>>> = match (&self.router, keys) {
            (_, []) => Vec::new(),
            (Router::Single(_), [first, ..]) => {
                // Sized once: the command's buffers grow no further.
                let bytes = keys
                    .iter()
                    .map(|k| self.prefix.len() + k.len())
                    .sum::<usize>();
                let mut c = r::Cmd::with_capacity(keys.len() + 1, bytes + 4);
                c.arg("MGET");
                for k in keys {
                    c.arg(self.arg(k));
                }
                self.one(io, first, c).await?
            }
            (Router::Cluster(_), _) => {
                let units: Vec<Unit> = keys
                    .iter()
                    .map(|k| {
                        let key = self.key(k);
                        let mut c = r::cmd("GET");
                        c.arg(&key);
                        Unit::one(key, c)
                    })
                    .collect();
                io.exec(self, &units)
                    .await?
                    .into_iter()
                    .map(|mut replies| decode(replies.pop().unwrap_or(r::Value::Nil)))
                    .collect::<Result<_, Error>>()?
            }
        };
        Ok(raw.into_iter().map(|v| v.map(Value::from_bytes)).collect())
    }

    pub(super) async fn set_via(
        &self,
        io: &impl Io,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let bytes = value.to_bytes()?;
        self.write(io, key, self.set_cmd(key, &bytes, ttl, false))
            .await
    }

    pub(super) async fn add_via(
        &self,
        io: &impl Io,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<bool, Error> {
        let bytes = value.to_bytes()?;
        // A new version that a failover loses only makes a fresh one: nothing to confirm.
        let reply: Option<String> = self
            .one(io, key, self.set_cmd(key, &bytes, ttl, true))
            .await?;
        Ok(reply.is_some())
    }

    pub(super) async fn set_many_via(
        &self,
        io: &impl Io,
        items: &[(&str, Value)],
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let units = items
            .iter()
            .map(|(k, v)| {
                Ok(Unit::one(
                    self.key(k),
                    self.set_cmd(k, &v.to_bytes()?, ttl, false),
                ))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        for reply in io.exec(self, &units).await?.into_iter().flatten() {
            reply.extract_error().map_err(|e| redis_err(&e))?;
        }
        Ok(())
    }

    pub(super) async fn delete_via(&self, io: &impl Io, key: &str) -> Result<bool, Error> {
        let mut c = r::cmd("UNLINK");
        c.arg(self.key(key));
        Ok(self.write::<usize>(io, key, c).await? == 1)
    }

    /// One `UNLINK` on a server; on a cluster one per key (keys of different slots cannot
    /// share one), every node's written before any reply is read. A function version among
    /// them is confirmed by a replica, as for `set`.
    pub(super) async fn delete_many_via(
        &self,
        io: &impl Io,
        keys: &[&str],
    ) -> Result<usize, Error> {
        match (&self.router, keys) {
            (_, []) => Ok(0),
            (Router::Single(_), [first, ..]) => {
                let mut c = r::cmd("UNLINK");
                for k in keys {
                    c.arg(self.key(k));
                }
                // One UNLINK: confirmed as a version write if any key is a version.
                let version = keys.iter().copied().find(|k| is_version_key(k));
                self.write(io, version.unwrap_or(first), c).await
            }
            (Router::Cluster(_), _) => {
                let mut n = 0;
                for k in keys.iter().filter(|k| is_version_key(k)) {
                    n += usize::from(self.delete_via(io, k).await?);
                }
                let units: Vec<Unit> = keys
                    .iter()
                    .filter(|k| !is_version_key(k))
                    .map(|k| {
                        let key = self.key(k);
                        let mut c = r::cmd("UNLINK");
                        c.arg(&key);
                        Unit::one(key, c)
                    })
                    .collect();
                for reply in io.exec(self, &units).await?.into_iter().flatten() {
                    n += decode::<usize>(reply)?;
                }
                Ok(n)
            }
        }
    }

    pub(super) async fn inc_via(&self, io: &impl Io, key: &str, delta: i64) -> Result<i64, Error> {
        self.counter(io, key, "INCRBY", delta).await
    }

    pub(super) async fn dec_via(&self, io: &impl Io, key: &str, delta: i64) -> Result<i64, Error> {
        self.counter(io, key, "DECRBY", delta).await
    }

    /// Without a prefix: `FLUSHDB` on every master. With one: `SCAN MATCH prefix*` and
    /// `UNLINK` of each page, on every master; other keys stay.
    pub(super) async fn clear_via(&self, io: &impl Io) -> Result<(), Error> {
        for node in io.masters(self).await {
            if self.prefix.is_empty() {
                for reply in io.run(self, &node, &[r::cmd("FLUSHDB")]).await? {
                    reply.extract_error().map_err(|e| redis_err(&e))?;
                }
            } else {
                self.clear_prefix(io, &node).await?;
            }
        }
        Ok(())
    }
}
