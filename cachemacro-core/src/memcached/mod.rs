//! `CACHE_TYPE=memcached` / `saslmemcached` / `spreadsaslmemcached`: our own binary-protocol
//! client.
//!
//! Why our own: the crates measured (bmemcached, memcache) lacked SASL, timeouts or
//! reconnection, or matched replies to the wrong requests after a timeout. Here every reply's
//! `opaque` is checked, a connection that saw any error is closed, SASL PLAIN runs on
//! connect, and every operation runs against a deadline.
//!
//! Every multi-key operation is one round trip: the requests for each server are written
//! (quiet commands closed by a `NOOP`) to every server involved before any reply is read. A
//! memoized hit (`get_pair`: version and value) is therefore one round trip for two keys,
//! whether they share a server or not.

mod conn;
mod protocol;
mod ring;
mod server;
mod spread;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::xxh3_128;

use crate::{Backend, Error, Value};
use conn::{Conn, ConnError};
use protocol::{op, status, Response};
use ring::Ring;
use server::Server;
use spread::Spread;

/// Tuning of the memcached client. The defaults are the seeds' libmemcached behaviours for
/// MemCachier: connect 2 s, send/receive 750 ms, `remove_failed` 1, `retry_timeout` 2 s,
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

type Options = MemcachedOptions;

/// Longest key memcached accepts.
const MAX_KEY: usize = 250;
/// Room left in an item for the key and memcached's own overhead.
const ITEM_OVERHEAD: usize = 1024;

/// The memcached backend: many servers on a consistent-hash ring, SASL, failover.
pub struct MemcachedBackend {
    servers: Vec<Server>,
    ring: Ring,
    opts: Options,
    credentials: Option<(String, String)>,
    prefix: String,
}

/// One request of a batch.
struct Req {
    opcode: u8,
    extras: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// The requests for one server, and their replies once read.
struct Batch {
    server: usize,
    reqs: Vec<Req>,
    /// Quiet commands, closed by a `NOOP`: only some requests are answered.
    quiet: bool,
    replies: Vec<Option<Response>>,
}

/// Where each request of a plan went: (batch, index in the batch).
type Placement = Vec<(usize, usize)>;

/// A batch written to its connection, awaiting its replies.
struct Sent {
    conn: Conn,
    opaques: Vec<u32>,
}

fn backend_err(e: &ConnError) -> Error {
    Error::Backend(e.message().to_owned())
}

impl MemcachedBackend {
    /// Connects to `servers` (`host:port`), authenticating with `credentials` when given, and
    /// checks each server once: refused credentials (or missing ones, on a server that wants
    /// them) are an `Err`; a server that cannot be reached now is only logged, since it may
    /// come up later.
    pub fn connect(
        servers: &[String],
        credentials: Option<(String, String)>,
        prefix: impl Into<String>,
        opts: MemcachedOptions,
    ) -> Result<MemcachedBackend, Error> {
        if servers.is_empty() {
            return Err(Error::config(
                "CACHE_MEMCACHED_SERVERS",
                "no memcached server given",
            ));
        }
        for s in servers {
            if !s.contains(':') {
                return Err(Error::config(
                    "CACHE_MEMCACHED_SERVERS",
                    format!("{s:?} is not host:port"),
                ));
            }
        }
        let backend = MemcachedBackend {
            ring: Ring::new(servers),
            servers: servers.iter().cloned().map(Server::new).collect(),
            opts,
            credentials,
            prefix: prefix.into(),
        };
        for server in &backend.servers {
            backend.probe(server)?;
        }
        Ok(backend)
    }

    fn probe(&self, server: &Server) -> Result<(), Error> {
        let auth_vars = "CACHE_MEMCACHED_USERNAME/CACHE_MEMCACHED_PASSWORD";
        let mut conn = match Conn::open(&server.addr, &self.opts, self.credentials.as_ref()) {
            Ok(c) => c,
            Err(ConnError::Auth(m)) => return Err(Error::config(auth_vars, m)),
            Err(e) => {
                tracing::warn!(target: "cachemacro", server = %server.addr, error = e.message(),
                    "memcached server unreachable at start");
                return Ok(());
            }
        };
        let deadline = Instant::now() + self.opts.io_timeout;
        let mut out = Vec::new();
        let o = conn.opaque();
        // A read, since SASL servers answer VERSION and NOOP without authentication.
        protocol::request(&mut out, op::GET, o, &[], b"cachemacro:probe", &[]);
        let reply = conn
            .send(&server.addr, &out, deadline)
            .and_then(|()| conn.expect(&server.addr, o, deadline));
        match reply {
            Ok(r) if r.header.status == status::AUTH_ERROR => Err(Error::config(
                auth_vars,
                format!(
                    "{} requires SASL authentication and no credentials were given",
                    server.addr
                ),
            )),
            Ok(_) => {
                server.checkin(conn, &self.opts);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(target: "cachemacro", server = %server.addr, error = e.message(),
                    "memcached server did not answer at start");
                Ok(())
            }
        }
    }

    /// The key as sent: prefixed, and replaced by a hash when memcached could not take it as
    /// it is (too long, spaces, control or non-ASCII bytes).
    fn mkey(&self, key: &str) -> Vec<u8> {
        let full_len = self.prefix.len() + key.len();
        let ok = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if full_len <= MAX_KEY && ok(key) && ok(&self.prefix) {
            let mut k = Vec::with_capacity(full_len);
            k.extend_from_slice(self.prefix.as_bytes());
            k.extend_from_slice(key.as_bytes());
            return k;
        }
        let mut full = self.prefix.clone().into_bytes();
        full.extend_from_slice(key.as_bytes());
        let prefix = if self.prefix.len() <= 200 && ok(&self.prefix) {
            self.prefix.as_str()
        } else {
            ""
        };
        format!("{prefix}#{:032x}", xxh3_128(&full)).into_bytes()
    }

    fn chunk_key(&self, key: &str, i: u32) -> Vec<u8> {
        // The NUL forces the hashed form: chunk keys are always valid and prefixed.
        self.mkey(&format!("{key}\0chunk{i}"))
    }

    /// The server for a key, or an error when none can take it now.
    fn route(&self, key: &[u8]) -> Result<usize, Error> {
        let s = self
            .ring
            .server(key, |s| self.servers[s].in_ring())
            .ok_or_else(|| Error::Backend("no memcached server is in rotation".into()))?;
        if !self.servers[s].available() {
            return Err(Error::Backend(format!(
                "memcached server {} failed recently; retried after {:?}",
                self.servers[s].addr, self.opts.retry_timeout
            )));
        }
        Ok(s)
    }

    /// Groups requests by server; returns the batches and, per request, (batch, index).
    fn plan(&self, reqs: Vec<Req>, quiet: bool) -> Result<(Vec<Batch>, Placement), Error> {
        let mut batches: Vec<Batch> = Vec::new();
        let mut place = Vec::with_capacity(reqs.len());
        for req in reqs {
            let server = self.route(&req.key)?;
            let b = match batches.iter().position(|b| b.server == server) {
                Some(b) => b,
                None => {
                    batches.push(Batch {
                        server,
                        reqs: Vec::new(),
                        quiet,
                        replies: Vec::new(),
                    });
                    batches.len() - 1
                }
            };
            place.push((b, batches[b].reqs.len()));
            batches[b].reqs.push(req);
        }
        Ok((batches, place))
    }

    /// Sends every batch, then reads every reply: one round trip, whatever the servers.
    fn exchange(&self, batches: &mut [Batch]) -> Result<(), Error> {
        let deadline = Instant::now() + self.opts.io_timeout;
        let mut sent: Vec<Option<Sent>> = Vec::with_capacity(batches.len());
        let mut failure = None;
        for b in batches.iter() {
            let server = &self.servers[b.server];
            match self.send_batch(server, b, deadline, false) {
                Ok(s) => sent.push(Some(s)),
                Err(e) => {
                    server.failed(&self.opts, e.message());
                    failure.get_or_insert(backend_err(&e));
                    sent.push(None);
                }
            }
        }
        for (b, slot) in batches.iter_mut().zip(sent) {
            let Some(Sent { conn, opaques }) = slot else {
                continue;
            };
            let server = &self.servers[b.server];
            let result = match self.read_batch(server, conn, b, &opaques, deadline) {
                Err(ConnError::Stale(_)) => {
                    // The pooled connection was dead (server restarted): once more, fresh.
                    self.send_batch(server, b, deadline, true)
                        .and_then(|s| self.read_batch(server, s.conn, b, &s.opaques, deadline))
                }
                r => r,
            };
            match result {
                Ok(conn) => {
                    server.succeeded();
                    server.checkin(conn, &self.opts);
                }
                Err(e) => {
                    server.failed(&self.opts, e.message());
                    failure.get_or_insert(backend_err(&e));
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    fn send_batch(
        &self,
        server: &Server,
        b: &Batch,
        deadline: Instant,
        fresh: bool,
    ) -> Result<Sent, ConnError> {
        let mut conn = if fresh {
            Conn::open(&server.addr, &self.opts, self.credentials.as_ref())?
        } else {
            server.checkout(&self.opts, self.credentials.as_ref())?
        };
        let mut frames = Vec::new();
        let mut opaques = Vec::with_capacity(b.reqs.len() + 1);
        for r in &b.reqs {
            let o = conn.opaque();
            opaques.push(o);
            protocol::request(&mut frames, r.opcode, o, &r.extras, &r.key, &r.value);
        }
        if b.quiet {
            let o = conn.opaque();
            opaques.push(o);
            protocol::request(&mut frames, op::NOOP, o, &[], &[], &[]);
        }
        match conn.send(&server.addr, &frames, deadline) {
            Ok(()) => Ok(Sent { conn, opaques }),
            Err(ConnError::Stale(_)) if !fresh => self.send_batch(server, b, deadline, true),
            Err(e) => Err(e),
        }
    }

    fn read_batch(
        &self,
        server: &Server,
        mut conn: Conn,
        b: &mut Batch,
        opaques: &[u32],
        deadline: Instant,
    ) -> Result<Conn, ConnError> {
        let addr = &server.addr;
        b.replies = (0..b.reqs.len()).map(|_| None).collect();
        if b.quiet {
            let noop = opaques[b.reqs.len()];
            let mut next = 0;
            loop {
                let r = conn.read(addr, deadline)?;
                if r.header.opaque == noop && r.header.opcode == op::NOOP {
                    return Ok(conn);
                }
                // Quiet replies come in request order, some skipped; anything else means the
                // stream is out of step.
                match opaques[next..b.reqs.len()]
                    .iter()
                    .position(|&o| o == r.header.opaque)
                {
                    Some(i) => {
                        next += i;
                        if r.header.status == status::AUTH_ERROR {
                            return Err(ConnError::Auth(format!("{addr}: not authenticated")));
                        }
                        b.replies[next] = Some(r);
                        next += 1;
                    }
                    None => {
                        return Err(ConnError::Io(format!(
                            "{addr}: unexpected reply to request {}; closing the connection",
                            r.header.opaque
                        )))
                    }
                }
            }
        }
        for (i, &o) in opaques.iter().enumerate().take(b.reqs.len()) {
            let r = conn.expect(addr, o, deadline)?;
            if r.header.status == status::AUTH_ERROR {
                return Err(ConnError::Auth(format!("{addr}: not authenticated")));
            }
            b.replies[i] = Some(r);
        }
        Ok(conn)
    }

    /// One non-quiet request to the key's server; its reply.
    fn single(
        &self,
        opcode: u8,
        extras: Vec<u8>,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<Response, Error> {
        let (mut batches, _) = self.plan(
            vec![Req {
                opcode,
                extras,
                key,
                value,
            }],
            false,
        )?;
        self.exchange(&mut batches)?;
        batches[0].replies[0]
            .take()
            .ok_or_else(|| Error::Backend("memcached: no reply".into()))
    }

    /// Raw values of memcached keys, in one round trip.
    fn get_raw(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let n = keys.len();
        let reqs = keys
            .into_iter()
            .map(|key| Req {
                opcode: op::GETKQ,
                extras: Vec::new(),
                key,
                value: Vec::new(),
            })
            .collect();
        let (mut batches, place) = self.plan(reqs, true)?;
        self.exchange(&mut batches)?;
        let mut out = Vec::with_capacity(n);
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
    fn set_raw(&self, items: Vec<(Vec<u8>, Vec<u8>)>, ttl: Option<Duration>) -> Result<(), Error> {
        let extras = protocol::store_extras(ttl).to_vec();
        let reqs = items
            .into_iter()
            .map(|(key, value)| Req {
                opcode: op::SETQ,
                extras: extras.clone(),
                key,
                value,
            })
            .collect();
        let (mut batches, _) = self.plan(reqs, true)?;
        self.exchange(&mut batches)?;
        for b in &batches {
            if let Some(r) = b.replies.iter().flatten().next() {
                return Err(store_error(r));
            }
        }
        Ok(())
    }

    fn chunk_size(&self) -> usize {
        self.opts
            .max_value_size
            .saturating_sub(ITEM_OVERHEAD)
            .max(1024)
    }

    /// The stored form of `value` at `key`: its bytes, or, when spreading and too large, the
    /// chunks (written here) and the header to store under the key.
    fn prepare(&self, key: &str, value: &Value, ttl: Option<Duration>) -> Result<Vec<u8>, Error> {
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
    fn finish(
        &self,
        keys: &[&str],
        raw: Vec<Option<Vec<u8>>>,
    ) -> Result<Vec<Option<Value>>, Error> {
        let spreads: Vec<(usize, Spread)> = raw
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, Spread::parse(r.as_deref()?)?)))
            .collect();
        let mut out: Vec<Option<Vec<u8>>> = raw;
        if !spreads.is_empty() {
            let chunk_keys: Vec<Vec<u8>> = spreads
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

    fn counter(&self, key: &str, up: bool, delta: u64, initial: u64) -> Result<i64, Error> {
        let opcode = if up { op::INCREMENT } else { op::DECREMENT };
        let r = self.single(
            opcode,
            protocol::counter_extras(delta, initial).to_vec(),
            self.mkey(key),
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

    /// Deletes every key under this cache's prefix on one plain (non-SASL) server, found with
    /// `lru_crawler metadump`.
    fn clear_prefix(&self, server: &Server) -> Result<(), Error> {
        // A server runs one crawler at a time and answers BUSY to the next request: another
        // client's `clear()` is listing keys. Wait for it, within the listing's own timeout.
        let timeout = self.opts.io_timeout.max(Duration::from_secs(10));
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(10);
        let keys = loop {
            match self.list_keys(server, timeout)? {
                Some(keys) => break keys,
                None if Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
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
        for chunk in keys.chunks(1000) {
            let reqs = chunk
                .iter()
                .map(|k| Req {
                    opcode: op::DELETE,
                    extras: Vec::new(),
                    key: k.clone(),
                    value: Vec::new(),
                })
                .collect();
            // Keys were listed by this server: delete them there, whatever the ring says now.
            let index = self
                .servers
                .iter()
                .position(|s| std::ptr::eq(s, server))
                .unwrap_or(0);
            let mut batch = [Batch {
                server: index,
                reqs,
                quiet: false,
                replies: Vec::new(),
            }];
            self.exchange(&mut batch)?;
        }
        Ok(())
    }

    /// One SET or ADD of `value` at `key`.
    fn store(
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
            self.mkey(key),
            bytes,
        )
    }

    /// The keys under this cache's prefix on `server`; `None` when its crawler is busy.
    fn list_keys(&self, server: &Server, timeout: Duration) -> Result<Option<Vec<Vec<u8>>>, Error> {
        let err = |e: std::io::Error| Error::Backend(format!("{}: {e}", server.addr));
        let mut stream = TcpStream::connect(&server.addr).map_err(err)?;
        stream.set_read_timeout(Some(timeout)).map_err(err)?;
        stream
            .write_all(b"lru_crawler metadump all\r\n")
            .map_err(err)?;
        let mut keys = Vec::new();
        for line in BufReader::new(stream).lines() {
            let line = line.map_err(err)?;
            if line == "END" {
                break;
            }
            if line.starts_with("BUSY") {
                return Ok(None);
            }
            if line.starts_with("ERROR") || line.starts_with("CLIENT_ERROR") {
                return Err(Error::Backend(format!(
                    "{}: lru_crawler metadump: {line}",
                    server.addr
                )));
            }
            if let Some(k) = line.strip_prefix("key=").and_then(|r| r.split(' ').next()) {
                let k = percent_decode(k);
                if k.starts_with(self.prefix.as_bytes()) {
                    keys.push(k);
                }
            }
        }
        Ok(Some(keys))
    }
}

fn store_error(r: &Response) -> Error {
    match r.header.status {
        status::TOO_LARGE => Error::Backend(
            "memcached refused the value: larger than the item size limit (use spreadsaslmemcached)".into(),
        ),
        s => Error::Backend(format!("memcached store failed with status {s:#06x}: {}", r.text())),
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

impl Backend for MemcachedBackend {
    fn name(&self) -> &'static str {
        "memcached"
    }

    fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        Ok(self.get_many(&[key])?.pop().flatten())
    }

    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error> {
        let raw = self.get_raw(keys.iter().map(|k| self.mkey(k)).collect())?;
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
            .map(|(k, v)| Ok((self.mkey(k), self.prepare(k, v, ttl)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        self.set_raw(items, ttl)
    }

    fn delete(&self, key: &str) -> Result<bool, Error> {
        Ok(self.delete_many(&[key])? == 1)
    }

    fn delete_many(&self, keys: &[&str]) -> Result<usize, Error> {
        let reqs = keys
            .iter()
            .map(|k| Req {
                opcode: op::DELETE,
                extras: Vec::new(),
                key: self.mkey(k),
                value: Vec::new(),
            })
            .collect();
        let (mut batches, _) = self.plan(reqs, false)?;
        self.exchange(&mut batches)?;
        Ok(batches
            .iter()
            .flat_map(|b| b.replies.iter().flatten())
            .filter(|r| r.header.status == status::OK)
            .count())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(prefix: &str) -> MemcachedBackend {
        MemcachedBackend {
            servers: vec![Server::new("127.0.0.1:1".into())],
            ring: Ring::new(&["127.0.0.1:1"]),
            opts: Options::default(),
            credentials: None,
            prefix: prefix.into(),
        }
    }

    #[test]
    fn keys_memcached_cannot_take_are_hashed_consistently() {
        let b = backend("app:");
        assert_eq!(b.mkey("user:1"), b"app:user:1");
        let long = "x".repeat(300);
        for k in [long.as_str(), "with space", "new\nline", "nul\0", "ключ"] {
            let m = b.mkey(k);
            assert!(
                m.len() <= MAX_KEY && m.iter().all(u8::is_ascii_graphic),
                "{k:?}"
            );
            assert!(m.starts_with(b"app:#"));
            assert_eq!(m, b.mkey(k));
        }
        assert_ne!(b.mkey("with space"), b.mkey("with  space"));
        assert_ne!(backend("other:").mkey("with space"), b.mkey("with space"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Ab%20c"), b"a:b c");
        assert_eq!(percent_decode("100%"), b"100%");
    }
}
