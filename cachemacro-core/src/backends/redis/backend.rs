//! The sync client: the [`Backend`] implementation, running the operations of `ops.rs` on
//! the blocking router.

use std::future::{ready, Future};
use std::sync::Arc;
use std::time::Duration;

use ::redis as r;

use super::node::Node;
use super::ops::Io;
use super::router::Unit;
use super::{redis_err, RedisBackend};
use crate::backends::now;
use crate::{Backend, Error, Value};

/// The blocking router: every future it returns is ready at once.
struct Blocking;

impl Io for Blocking {
    fn exec<'a>(
        &'a self,
        b: &'a RedisBackend,
        units: &'a [Unit],
    ) -> impl Future<Output = Result<Vec<Vec<r::Value>>, Error>> + Send + 'a {
        ready(b.router.exec(&b.opts, units))
    }

    fn run<'a>(
        &'a self,
        b: &'a RedisBackend,
        node: &'a Node,
        cmds: &'a [r::Cmd],
    ) -> impl Future<Output = Result<Vec<r::Value>, Error>> + Send + 'a {
        ready(node.run(&b.opts, cmds).map_err(|e| redis_err(&e)))
    }

    fn masters<'a>(
        &'a self,
        b: &'a RedisBackend,
    ) -> impl Future<Output = Vec<Arc<Node>>> + Send + 'a {
        ready(b.router.masters(&b.opts))
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    #[cfg(feature = "tokio")]
    fn as_async(&self) -> Option<&dyn crate::AsyncBackend> {
        // The async connections run on tokio: elsewhere, callers take the blocking pool.
        tokio::runtime::Handle::try_current()
            .ok()
            .map(|_| self as _)
    }

    fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        Ok(self.get_many(&[key])?.pop().flatten())
    }

    /// One `MGET` on a server; on a cluster one `GET` per key, every node's written before
    /// any reply is read. One round trip either way.
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error> {
        now(self.get_many_via(&Blocking, keys))
    }

    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), Error> {
        now(self.set_via(&Blocking, key, &value, ttl))
    }

    fn add(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<bool, Error> {
        now(self.add_via(&Blocking, key, &value, ttl))
    }

    fn set_many(&self, items: &[(&str, Value)], ttl: Option<Duration>) -> Result<(), Error> {
        now(self.set_many_via(&Blocking, items, ttl))
    }

    fn delete(&self, key: &str) -> Result<bool, Error> {
        now(self.delete_via(&Blocking, key))
    }

    /// One `UNLINK` on a server; on a cluster one per key, every node's written before any
    /// reply is read. A function version among them is confirmed by a replica.
    fn delete_many(&self, keys: &[&str]) -> Result<usize, Error> {
        now(self.delete_many_via(&Blocking, keys))
    }

    fn inc(&self, key: &str, delta: i64) -> Result<i64, Error> {
        now(self.inc_via(&Blocking, key, delta))
    }

    fn dec(&self, key: &str, delta: i64) -> Result<i64, Error> {
        now(self.dec_via(&Blocking, key, delta))
    }

    /// Without a prefix: `FLUSHDB` on every master. With one: `SCAN MATCH prefix*` and
    /// `UNLINK` of each page, on every master; other keys stay.
    fn clear(&self) -> Result<(), Error> {
        now(self.clear_via(&Blocking))
    }
}
