//! The sync client: the [`Backend`] implementation, running the operations of `ops.rs` on
//! the blocking engine of `batch.rs`.

use std::future::{ready, Future};
use std::time::Duration;

use super::batch::Batch;
use super::ops::Io;
use super::server::Server;
use super::MemcachedBackend;
use crate::backends::now;
use crate::{Backend, Error, Value};

/// The blocking engine: every future it returns is ready at once.
pub(super) struct Blocking;

impl Io for Blocking {
    fn exchange<'a>(
        &'a self,
        b: &'a MemcachedBackend,
        batches: &'a mut [Batch],
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        ready(b.exchange(batches))
    }

    fn list_keys<'a>(
        &'a self,
        b: &'a MemcachedBackend,
        server: &'a Server,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<Vec<Vec<u8>>>, Error>> + Send + 'a {
        ready(b.list_keys(server, timeout))
    }

    fn pause(&self, d: Duration) -> impl Future<Output = ()> + Send {
        std::thread::sleep(d);
        ready(())
    }
}

impl Backend for MemcachedBackend {
    fn name(&self) -> &'static str {
        "memcached"
    }

    sync_via!(Blocking);
}
