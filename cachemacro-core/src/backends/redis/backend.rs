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

    sync_via!(Blocking);
}
