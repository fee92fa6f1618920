//! The [`Backend`] implementation: values (spread over several keys when large), counters,
//! `clear()`.

use std::time::Duration;

use super::batch::{Batch, Req, Route, RoutedKey};
use super::protocol::{self, op, status, Response};
use super::spread::Spread;
use super::{MemcachedBackend, ITEM_OVERHEAD};
use crate::{Backend, Error, Value};

impl MemcachedBackend {
    pub(super) fn chunk_size(&self) -> usize {
        self.opts
            .max_value_size
            .saturating_sub(ITEM_OVERHEAD)
            .max(1024)
    }

    /// The stored form of `value` at `key`: its bytes, or, when spreading and too large, the
    /// chunks (written here) and the header to store under the key.
    pub(super) fn prepare(
        &self,
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
        self.set_raw(items, ttl)?;
        Ok(header)
    }

    /// Values as read back: spread values are reassembled (one more round trip for all of
    /// them); incomplete ones are misses.
    pub(super) fn finish(
        &self,
        keys: &[&str],
        raw: Vec<Option<Vec<u8>>>,
    ) -> Result<Vec<Option<Value>>, Error> {
        // Only a spreading cache reads headers, and only headers this cache could have
        // written: bytes from elsewhere never make it fetch chunks it did not write.
        let spreads: Vec<(usize, Spread)> = raw
            .iter()
            .enumerate()
            .filter(|_| self.opts.spread)
            .filter_map(|(i, r)| Some((i, Spread::parse(r.as_deref()?)?)))
            .filter(|(_, s)| s.plausible(self.chunk_size()))
            .collect();
        let mut out: Vec<Option<Vec<u8>>> = raw;
        if !spreads.is_empty() {
            let chunk_keys: Vec<RoutedKey> = spreads
                .iter()
                .flat_map(|(i, s)| (0..s.chunks).map(move |c| self.chunk_key(keys[*i], c)))
                .collect();
            let mut chunks = self.get_raw(chunk_keys)?.into_iter();
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

    pub(super) fn counter(
        &self,
        key: &str,
        up: bool,
        delta: u64,
        initial: u64,
    ) -> Result<i64, Error> {
        let opcode = if up { op::INCREMENT } else { op::DECREMENT };
        let r = self.single(
            opcode,
            protocol::counter_extras(delta, initial).to_vec(),
            self.routed(key),
            Vec::new(),
        )?;
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

    /// One SET or ADD of `value` at `key`.
    pub(super) fn store(
        &self,
        opcode: u8,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<Response, Error> {
        let bytes = self.prepare(key, value, ttl)?;
        self.single(
            opcode,
            protocol::store_extras(ttl).to_vec(),
            self.routed(key),
            bytes,
        )
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

impl Backend for MemcachedBackend {
    fn name(&self) -> &'static str {
        "memcached"
    }

    fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        Ok(self.get_many(&[key])?.pop().flatten())
    }

    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error> {
        let raw = self.get_raw(keys.iter().map(|k| self.routed(k)).collect())?;
        self.finish(keys, raw)
    }

    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), Error> {
        let r = self.store(op::SET, key, &value, ttl)?;
        match r.header.status {
            status::OK => Ok(()),
            _ => Err(store_error(&r)),
        }
    }

    fn add(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<bool, Error> {
        let r = self.store(op::ADD, key, &value, ttl)?;
        match r.header.status {
            status::OK => Ok(true),
            status::EXISTS | status::NOT_STORED => Ok(false),
            _ => Err(store_error(&r)),
        }
    }

    fn set_many(&self, items: &[(&str, Value)], ttl: Option<Duration>) -> Result<(), Error> {
        let items = items
            .iter()
            .map(|(k, v)| Ok((self.routed(k), self.prepare(k, v, ttl)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        self.set_raw(items, ttl)
    }

    fn delete(&self, key: &str) -> Result<bool, Error> {
        Ok(self.delete_many(&[key])? == 1)
    }

    /// A function version is deleted on its home server. Any other key is deleted on every
    /// server, in the same round trip: a process whose view of the ring differs (it saw a
    /// server fail, or not) may hold or read the key on another server than this process
    /// would, and a delete that returned `Ok` must reach them all. So while a server is
    /// unreachable, deletes return `Err`.
    fn delete_many(&self, keys: &[&str]) -> Result<usize, Error> {
        let mut reqs = Vec::new();
        let mut owner = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let (key, route) = self.routed(k);
            let req = Req {
                opcode: op::DELETE,
                extras: Vec::new(),
                key,
                value: Vec::new(),
                route,
            };
            if route == Route::Home {
                reqs.push(req);
                owner.push(i);
                continue;
            }
            for s in 0..self.servers.len() {
                reqs.push(Req {
                    route: Route::Server(s),
                    ..req.clone()
                });
                owner.push(i);
            }
        }
        let (mut batches, place) = self.plan(reqs, false)?;
        self.exchange(&mut batches)?;
        let mut deleted = vec![false; keys.len()];
        for ((b, i), key) in place.into_iter().zip(owner) {
            let ok = batches[b].replies[i]
                .as_ref()
                .is_some_and(|r| r.header.status == status::OK);
            deleted[key] |= ok;
        }
        Ok(deleted.into_iter().filter(|&d| d).count())
    }

    /// memcached counters are unsigned: a count taken below zero stays at 0, and a value
    /// written as a negative number cannot be counted on (`Error::NotANumber`).
    fn inc(&self, key: &str, delta: i64) -> Result<i64, Error> {
        if delta >= 0 {
            self.counter(key, true, delta as u64, delta as u64)
        } else {
            self.counter(key, false, delta.unsigned_abs(), 0)
        }
    }

    fn dec(&self, key: &str, delta: i64) -> Result<i64, Error> {
        if delta >= 0 {
            self.counter(key, false, delta as u64, 0)
        } else {
            self.counter(key, true, delta.unsigned_abs(), delta.unsigned_abs())
        }
    }

    /// Without a key prefix: `flush_all` on every server. With one: on plain servers, the
    /// keys under the prefix, found with `lru_crawler metadump`, are deleted, and other
    /// prefixes' keys stay; SASL servers offer no way to list keys, so there it is an error
    /// rather than a flush of other applications' data.
    fn clear(&self) -> Result<(), Error> {
        if self.prefix.is_empty() {
            let mut batches: Vec<Batch> = (0..self.servers.len())
                .filter(|&s| self.servers[s].in_ring())
                .map(|server| Batch {
                    server,
                    reqs: vec![Req {
                        opcode: op::FLUSH,
                        extras: Vec::new(),
                        key: Vec::new(),
                        value: Vec::new(),
                        route: Route::Server(server),
                    }],
                    quiet: false,
                    replies: Vec::new(),
                })
                .collect();
            return self.exchange(&mut batches);
        }
        if self.credentials.is_some() {
            return Err(Error::Backend(format!(
                "clear() of key prefix {:?}: SASL memcached cannot list keys; delete them, or use an empty prefix to flush",
                self.prefix
            )));
        }
        for server in self.servers.iter().filter(|s| s.in_ring()) {
            self.clear_prefix(server)?;
        }
        Ok(())
    }
}
