//! Every memcached operation, written once for both clients.
//!
//! An operation builds its requests, hands them to an [`Io`] (the sync engine of
//! `batch.rs`, or the multiplexed async connections of `aio/`), and reads the replies. The
//! operations are `async fn`s; the sync client runs them with `backends::now`, which polls once: its
//! [`Io`] answers with futures that are ready at once, so nothing ever waits there. So the
//! two clients cannot drift apart: one routing, one spread format, one reading of statuses.

use smallvec::SmallVec;
use std::future::Future;
use std::time::{Duration, Instant};

use super::batch::{Batch, Req, Route, RoutedKey};
use super::protocol::{self, op, status, Response};
use super::server::Server;
use super::spread::Spread;
use super::{MemcachedBackend, ITEM_OVERHEAD};
use crate::{Error, Value};

/// How batches reach the servers.
pub(super) trait Io: Sync {
    /// Sends every batch and reads every reply into it: one round trip, whatever the
    /// servers.
    fn exchange<'a>(
        &'a self,
        b: &'a MemcachedBackend,
        batches: &'a mut [Batch],
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a;

    /// The keys under the cache's prefix on `server` (`lru_crawler metadump`); `None` while
    /// its crawler is busy with another listing.
    fn list_keys<'a>(
        &'a self,
        b: &'a MemcachedBackend,
        server: &'a Server,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<Vec<Vec<u8>>>, Error>> + Send + 'a;

    /// Waits `d`.
    fn pause(&self, d: Duration) -> impl Future<Output = ()> + Send;
}

/// Raw values read, in the order asked (inline for the memoize hit's two).
type Raw = SmallVec<[Option<Vec<u8>>; 2]>;

/// Values read, in the order asked (inline for the memoize hit's two).
pub(super) type Got = SmallVec<[Option<Value>; 2]>;

fn req(opcode: u8, extras: Vec<u8>, (key, route): RoutedKey, value: Vec<u8>) -> Req {
    Req {
        opcode,
        extras,
        key,
        value,
        route,
    }
}

pub(super) fn store_error(r: &Response) -> Error {
    match r.header.status {
        status::TOO_LARGE => Error::Backend(
            "memcached refused the value: larger than the item size limit (use spreadsaslmemcached)".into(),
        ),
        s => Error::Backend(format!("memcached store failed with status {s:#06x}: {}", r.text())),
    }
}

impl MemcachedBackend {
    /// An error naming the servers failing now, if any: an operation that must reach every
    /// server returns it after reaching the others.
    fn unreachable(&self) -> Option<Error> {
        let failing: Vec<&str> = self
            .servers
            .iter()
            .filter(|s| !s.available())
            .map(|s| s.addr.as_str())
            .collect();
        (!failing.is_empty()).then(|| {
            Error::Backend(format!(
                "memcached {} failing: not reached (another process may still read there)",
                failing.join(", ")
            ))
        })
    }

    fn chunk_size(&self) -> usize {
        self.opts
            .max_value_size
            .saturating_sub(ITEM_OVERHEAD)
            .max(1024)
    }

    /// One non-quiet request to its key's server; its reply.
    async fn single(&self, io: &impl Io, r: Req) -> Result<Response, Error> {
        let (mut batches, _) = self.plan(std::iter::once(r), false)?;
        io.exchange(self, &mut batches).await?;
        batches[0].replies[0]
            .take()
            .ok_or_else(|| Error::Backend("memcached: no reply".into()))
    }

    /// Raw values of memcached keys, in one round trip.
    async fn get_raw(
        &self,
        io: &impl Io,
        keys: impl ExactSizeIterator<Item = RoutedKey>,
    ) -> Result<Raw, Error> {
        let n = keys.len();
        let reqs = keys.map(|k| req(op::GETKQ, Vec::new(), k, Vec::new()));
        let (mut batches, place) = self.plan(reqs, true)?;
        io.exchange(self, &mut batches).await?;
        let mut out = Raw::with_capacity(n);
        for (b, i) in place {
            out.push(match batches[b].replies[i].take() {
                Some(r) if r.header.status == status::OK => Some(r.into_value()),
                Some(r) if r.header.status == status::NOT_FOUND => None,
                Some(r) => {
                    return Err(Error::Backend(format!(
                        "memcached get failed with status {:#06x}: {}",
                        r.header.status,
                        r.text()
                    )))
                }
                None => None,
            });
        }
        Ok(out)
    }

    /// Stores raw values (quiet sets, one round trip).
    async fn set_raw(
        &self,
        io: &impl Io,
        items: Vec<(RoutedKey, Vec<u8>)>,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let extras = protocol::store_extras(ttl).to_vec();
        let reqs = items
            .into_iter()
            .map(|(k, value)| req(op::SETQ, extras.clone(), k, value));
        let (mut batches, _) = self.plan(reqs, true)?;
        io.exchange(self, &mut batches).await?;
        for b in &batches {
            if let Some(r) = b.replies.iter().flatten().next() {
                return Err(store_error(r));
            }
        }
        Ok(())
    }

    /// The stored form of `value` at `key`: its bytes, or, when spreading and too large, the
    /// chunks (written here) and the header to store under the key.
    async fn prepare(
        &self,
        io: &impl Io,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<Vec<u8>, Error> {
        let bytes = value.to_bytes()?;
        if !self.opts.spread || bytes.len() <= self.chunk_size() {
            return Ok(bytes);
        }
        let (header, chunks) = Spread::split(&bytes, self.chunk_size());
        let items = chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| (self.chunk_key(key, i as u32), c))
            .collect();
        self.set_raw(io, items, ttl).await?;
        Ok(header)
    }

    /// Values as read back: spread values are reassembled (one more round trip for all of
    /// them); incomplete ones are misses.
    async fn finish(&self, io: &impl Io, keys: &[&str], raw: Raw) -> Result<Got, Error> {
        // Only a spreading cache reads headers, and only headers this cache could have
        // written: bytes from elsewhere never make it fetch chunks it did not write.
        let spreads: Vec<(usize, Spread)> = raw
            .iter()
            .enumerate()
            .filter(|_| self.opts.spread)
            .filter_map(|(i, r)| Some((i, Spread::parse(r.as_deref()?)?)))
            .filter(|(_, s)| s.plausible(self.chunk_size()))
            .collect();
        let mut out = raw;
        if !spreads.is_empty() {
            let chunk_keys: Vec<RoutedKey> = spreads
                .iter()
                .flat_map(|(i, s)| (0..s.chunks).map(move |c| self.chunk_key(keys[*i], c)))
                .collect();
            let mut chunks = self.get_raw(io, chunk_keys.into_iter()).await?.into_iter();
            for (i, s) in spreads {
                let mine: Vec<_> = chunks.by_ref().take(s.chunks as usize).collect();
                out[i] = s.join(mine);
                if out[i].is_none() {
                    tracing::warn!(target: "cachemacro", key = keys[i], "spread value incomplete or stale; a miss");
                }
            }
        }
        Ok(out.into_iter().map(|v| v.map(Value::from_bytes)).collect())
    }

    /// One SET or ADD of `value` at `key`.
    async fn store(
        &self,
        io: &impl Io,
        opcode: u8,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<Response, Error> {
        let bytes = self.prepare(io, key, value, ttl).await?;
        let extras = protocol::store_extras(ttl).to_vec();
        self.single(io, req(opcode, extras, self.routed(key), bytes))
            .await
    }

    pub(super) async fn get_many_via(&self, io: &impl Io, keys: &[&str]) -> Result<Got, Error> {
        let raw = self
            .get_raw(io, keys.iter().map(|k| self.routed(k)))
            .await?;
        self.finish(io, keys, raw).await
    }

    pub(super) async fn set_via(
        &self,
        io: &impl Io,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let r = self.store(io, op::SET, key, value, ttl).await?;
        match r.header.status {
            status::OK => Ok(()),
            _ => Err(store_error(&r)),
        }
    }

    pub(super) async fn add_via(
        &self,
        io: &impl Io,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<bool, Error> {
        let r = self.store(io, op::ADD, key, value, ttl).await?;
        match r.header.status {
            status::OK => Ok(true),
            status::EXISTS | status::NOT_STORED => Ok(false),
            _ => Err(store_error(&r)),
        }
    }

    pub(super) async fn set_many_via(
        &self,
        io: &impl Io,
        items: &[(&str, Value)],
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let mut raw = Vec::with_capacity(items.len());
        for (k, v) in items {
            raw.push((self.routed(k), self.prepare(io, k, v, ttl).await?));
        }
        self.set_raw(io, raw, ttl).await
    }

    pub(super) async fn delete_via(&self, io: &impl Io, key: &str) -> Result<bool, Error> {
        Ok(self.delete_many_via(io, &[key]).await? == 1)
    }

    /// A function version is deleted on its home server. Any other key is deleted on every
    /// server, in the same round trip: a process whose view of the ring differs (it saw a
    /// server fail, or not) may hold or read the key on another server than this process
    /// would, and a delete that returned `Ok` must reach them all. So while a server is
    /// unreachable, deletes return `Err`.
    pub(super) async fn delete_many_via(
        &self,
        io: &impl Io,
        keys: &[&str],
    ) -> Result<usize, Error> {
        let mut reqs = Vec::new();
        let mut owner = Vec::new();
        // Servers failing now are skipped (their keys cannot be reached), and the delete
        // reports it once the others have it.
        let unreachable = self.unreachable();
        for (i, k) in keys.iter().enumerate() {
            let r = req(op::DELETE, Vec::new(), self.routed(k), Vec::new());
            if r.route == Route::Home {
                reqs.push(r);
                owner.push(i);
                continue;
            }
            for s in (0..self.servers.len()).filter(|&s| self.servers[s].available()) {
                reqs.push(Req {
                    route: Route::Server(s),
                    ..r.clone()
                });
                owner.push(i);
            }
        }
        let (mut batches, place) = self.plan(reqs.into_iter(), false)?;
        io.exchange(self, &mut batches).await?;
        unreachable.map_or(Ok(()), Err)?;
        let mut deleted = vec![false; keys.len()];
        for ((b, i), key) in place.into_iter().zip(owner) {
            let ok = batches[b].replies[i]
                .as_ref()
                .is_some_and(|r| r.header.status == status::OK);
            deleted[key] |= ok;
        }
        Ok(deleted.into_iter().filter(|&d| d).count())
    }

    async fn counter(
        &self,
        io: &impl Io,
        key: &str,
        up: bool,
        delta: u64,
        initial: u64,
    ) -> Result<i64, Error> {
        let opcode = if up { op::INCREMENT } else { op::DECREMENT };
        let extras = protocol::counter_extras(delta, initial).to_vec();
        let r = self
            .single(io, req(opcode, extras, self.routed(key), Vec::new()))
            .await?;
        match r.header.status {
            status::OK => {
                let v: [u8; 8] = r
                    .value()
                    .try_into()
                    .map_err(|_| Error::Backend("memcached: bad counter reply".into()))?;
                Ok(i64::try_from(u64::from_be_bytes(v)).unwrap_or(i64::MAX))
            }
            status::NON_NUMERIC => Err(Error::NotANumber(key.to_owned())),
            s => Err(Error::Backend(format!(
                "memcached counter failed with status {s:#06x}: {}",
                r.text()
            ))),
        }
    }

    /// memcached counters are unsigned: a count taken below zero stays at 0, and a value
    /// written as a negative number cannot be counted on (`Error::NotANumber`).
    pub(super) async fn inc_via(&self, io: &impl Io, key: &str, delta: i64) -> Result<i64, Error> {
        if delta >= 0 {
            self.counter(io, key, true, delta as u64, delta as u64)
                .await
        } else {
            self.counter(io, key, false, delta.unsigned_abs(), 0).await
        }
    }

    pub(super) async fn dec_via(&self, io: &impl Io, key: &str, delta: i64) -> Result<i64, Error> {
        if delta >= 0 {
            self.counter(io, key, false, delta as u64, 0).await
        } else {
            let d = delta.unsigned_abs();
            self.counter(io, key, true, d, d).await
        }
    }

    /// Without a key prefix: `flush_all` on every server. With one: on plain servers, the
    /// keys under the prefix, found with `lru_crawler metadump`, are deleted, and other
    /// prefixes' keys stay; SASL servers offer no way to list keys, so there it is an error
    /// rather than a flush of other applications' data.
    pub(super) async fn clear_via(&self, io: &impl Io) -> Result<(), Error> {
        // Every server, in the ring or not: one out of it may still hold entries that a
        // process with another view reads. Those failing now are reported after the others.
        let unreachable = self.unreachable();
        if self.prefix.is_empty() {
            let mut batches: Vec<Batch> = (0..self.servers.len())
                .filter(|&s| self.servers[s].available())
                .map(|server| Batch {
                    server,
                    reqs: smallvec::smallvec![req(
                        op::FLUSH,
                        Vec::new(),
                        (Vec::new(), Route::Server(server)),
                        Vec::new(),
                    )],
                    quiet: false,
                    replies: Default::default(),
                })
                .collect();
            io.exchange(self, &mut batches).await?;
            return unreachable.map_or(Ok(()), Err);
        }
        if self.credentials.is_some() {
            return Err(Error::Backend(format!(
                "clear() of key prefix {:?}: SASL memcached cannot list keys; delete them, or use an empty prefix to flush",
                self.prefix
            )));
        }
        for (index, server) in self.servers.iter().enumerate() {
            if server.available() {
                self.clear_prefix(io, index, server).await?;
            }
        }
        unreachable.map_or(Ok(()), Err)
    }

    /// Deletes every key under this cache's prefix on one plain (non-SASL) server.
    async fn clear_prefix(&self, io: &impl Io, index: usize, server: &Server) -> Result<(), Error> {
        // A server runs one crawler at a time and answers BUSY to the next request: another
        // client's `clear()` is listing keys. Wait for it, within the listing's own timeout.
        let timeout = self.opts.io_timeout.max(Duration::from_secs(10));
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(10);
        let keys = loop {
            match io.list_keys(self, server, timeout).await? {
                Some(keys) => break keys,
                None if Instant::now() + pause < deadline => {
                    io.pause(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                None => {
                    return Err(Error::Backend(format!(
                        "{}: lru_crawler metadump: still busy after {timeout:?}",
                        server.addr
                    )))
                }
            }
        };
        // Keys were listed by this server: delete them there, whatever the ring says now.
        for chunk in keys.chunks(1000) {
            let reqs = chunk
                .iter()
                .map(|k| {
                    req(
                        op::DELETE,
                        Vec::new(),
                        (k.clone(), Route::Server(index)),
                        Vec::new(),
                    )
                })
                .collect();
            let mut batch = [Batch {
                server: index,
                reqs,
                quiet: false,
                replies: Default::default(),
            }];
            io.exchange(self, &mut batch).await?;
        }
        Ok(())
    }
}
