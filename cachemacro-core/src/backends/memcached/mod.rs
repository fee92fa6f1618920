//! `CACHE_TYPE=memcached` / `saslmemcached` / `spreadsaslmemcached`: our own binary-protocol
//! client.
//!
//! Why our own: the crates measured (bmemcached, memcache) lacked SASL, timeouts or
//! reconnection, or matched replies to the wrong requests after a timeout. Here every reply
//! is checked against the request it answers (opcode, `opaque`, and the key a read echoes),
//! a connection that saw any error or holds unread bytes is closed, SASL PLAIN runs on
//! connect, and every operation runs against a deadline.
//!
//! Every multi-key operation is one round trip (a large value spread over several keys adds
//! one for its chunks): the requests for each server are written
//! (quiet commands closed by a `NOOP`) to every server involved before any reply is read. A
//! memoized hit (`get_pair`: version and value) is therefore one round trip for two keys,
//! whether they share a server or not.
//!
//! Files: `options` (the knobs), `keys` (key mapping and routing), `protocol` (frames,
//! no I/O), `ops` (every operation, written once for both clients), `conn` (one sync
//! connection), `server` (a server's pool and health), `ring` (consistent hashing), `batch`
//! (the sync batching engine), `spread` (large values), `crawler` (`clear()` by prefix),
//! `backend` (the sync [`Backend`](crate::Backend)), `aio` (the async client: one
//! multiplexed connection per server).
//!
//! # Failover, and why invalidations survive it
//!
//! Whether a server is in the ring is each process's own view: a process that saw a server
//! fail sends that server's keys to the next one on the ring for `dead_timeout`, one that did
//! not (it was idle, or its pooled connection was silently replaced) keeps using it. So two
//! processes may read the same key on two servers. For values that is harmless as long as
//! every process reads **one** copy of each function's version, because a value is served
//! only when it carries the version read in the same round trip:
//!
//! * **A function's version key never fails over.** It lives on its home server (its owner
//!   on the full ring, whatever any process thinks of the servers' health). While that server
//!   is unreachable, memoized calls of the function run uncached and
//!   `f_delete_memoized_all()` returns `Err`; it is retried after `retry_timeout`, not
//!   `dead_timeout`, so calls are cached again as soon as the server answers.
//! * So `f_delete_memoized_all()` returning `Ok` means the one copy now holds a version no
//!   value was written under before: every call that starts afterwards, in any process, reads
//!   that version (or none, and runs its body) and can only be served a value written under
//!   it, i.e. computed by a call that read the version after the invalidation.
//! * A restarted, empty home server gets a fresh random version on first use, so values
//!   written under versions from before the restart (on it or on a fallback server) are
//!   never served; a fallback server never holds a version, so no old version can come back
//!   from it when the home server fails again.
//! * A delete of any other key (`f_delete_memoized(args)`, `cache.delete`) goes to every
//!   server in one round trip, since another process may hold or read that key on a server
//!   this one would not pick; while a server is unreachable such deletes return `Err`.

#[cfg(feature = "tokio")]
mod aio;
mod backend;
mod batch;
mod conn;
mod crawler;
mod keys;
mod ops;
mod options;
pub(crate) mod protocol;
mod ring;
mod server;
pub(crate) mod spread;

use std::time::Instant;

use crate::Error;
use conn::{Conn, ConnError};
pub use options::MemcachedOptions;
use protocol::{op, status};
use ring::Ring;
use server::Server;

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
    /// The async client's connections.
    #[cfg(feature = "tokio")]
    aio: aio::Pool,
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
            #[cfg(feature = "tokio")]
            aio: aio::Pool::new(servers.len()),
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
            .and_then(|()| conn.expect(&server.addr, op::GET, o, &[], deadline));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(prefix: &str) -> MemcachedBackend {
        MemcachedBackend {
            #[cfg(feature = "tokio")]
            aio: aio::Pool::new(1),
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
        // The empty key too, with and without a prefix.
        for b in [backend(""), backend("app:")] {
            let m = b.mkey("");
            assert!(!m.is_empty() && m.len() <= MAX_KEY && m.iter().all(u8::is_ascii_graphic));
        }
        assert_ne!(backend("other:").mkey("with space"), b.mkey("with space"));
    }
}
