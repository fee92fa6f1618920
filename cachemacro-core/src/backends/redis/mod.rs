//! `CACHE_TYPE=redis`: a redis server or a redis cluster, through the `redis` crate's
//! connections and protocol, with our own routing, pooling and health.
//!
//! Files: `node` (one server's pool and health), `slots` (a cluster's slot map), `router`
//! (where commands go; the sync engine), `ops` (every operation, written once), `backend`
//! (the sync [`Backend`](crate::Backend)), `aio` (the async client over the redis crate's
//! multiplexed connections).
//!
//! What cachelib gets wrong, done right: `add` is one atomic `SET NX` with its expiry;
//! `inc`/`dec` are atomic `INCRBY`/`DECRBY`; `clear()` removes only this cache's prefix with
//! `SCAN` + `UNLINK` in batches (never `KEYS`, and `FLUSHDB` only without a prefix);
//! `delete_many` is one request.
//!
//! A memoized hit is one round trip for two keys: one `MGET` on a server; on a cluster, a
//! pipeline that writes to every node involved before reading any reply. Keys are never
//! hash-tagged, so one function's entries spread over every slot.

#[cfg(feature = "tokio")]
mod aio;
mod backend;
mod node;
mod ops;
mod router;
mod slots;

use std::sync::Arc;
use std::time::Duration;

use ::redis as r;
use r::{ErrorKind, IntoConnectionInfo, RedisError};

use crate::{redact, Error};
use node::Node;
use router::{Cluster, Router};

/// Tuning of the redis client: the same defaults as the memcached client's.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Longest wait for a connection (and its authentication).
    pub connect_timeout: Duration,
    /// Longest wait for one command's reply.
    pub io_timeout: Duration,
    /// After a failure, how long a server (or cluster node) is skipped (calls fail fast).
    pub retry_timeout: Duration,
    /// Idle connections kept per server.
    pub pool_size: usize,
    /// A new function version (`f_delete_memoized_all`, `f_delete_memoized_verhash`) is
    /// confirmed by a replica before the call returns `Ok` (`WAIT`), so a failover cannot
    /// roll an invalidation back; `Err` when a replica is connected and none confirms
    /// within two thirds of `io_timeout`. A server without replicas has nothing to wait
    /// for. Default: `true`.
    pub confirm_versions: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_millis(750),
            retry_timeout: Duration::from_secs(2),
            pool_size: 8,
            confirm_versions: true,
        }
    }
}

const AUTH_VARS: &str = "CACHE_REDIS_URL/CACHE_REDIS_PASSWORD";

/// The redis backend.
pub struct RedisBackend {
    router: Router,
    prefix: String,
    opts: RedisOptions,
}

pub(super) fn redis_err(e: &RedisError) -> Error {
    match e.kind() {
        ErrorKind::AuthenticationFailed => {
            Error::config(AUTH_VARS, format!("redis refused the credentials: {e}"))
        }
        _ => Error::Backend(format!("redis: {e}")),
    }
}

/// A reply as `T`; an error reply is an `Err`.
pub(super) fn decode<T: r::FromRedisValue>(reply: r::Value) -> Result<T, Error> {
    let reply = reply.extract_error().map_err(|e| redis_err(&e))?;
    T::from_redis_value(reply).map_err(|e| Error::Backend(format!("redis: {e}")))
}

fn ttl_ms(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1))
}

impl RedisBackend {
    /// Connects to `urls` (`redis://[user:password@]host:port/db`). One URL of a server in
    /// cluster mode, or several URLs, make a cluster client. Wrong credentials are an `Err`;
    /// a server that cannot be reached now is only logged.
    pub fn connect(
        urls: &[String],
        password: Option<String>,
        prefix: impl Into<String>,
        opts: RedisOptions,
    ) -> Result<RedisBackend, Error> {
        // Whatever the redis crate's messages quote, no password leaves in an error.
        let mut secrets: Vec<&str> = urls
            .iter()
            .filter_map(|u| redact::url_password(u))
            .collect();
        secrets.extend(password.as_deref());
        let config_err = |e: &dyn std::fmt::Display| {
            Error::config("CACHE_REDIS_URL", redact::scrub(&e.to_string(), &secrets))
        };
        let mut infos = Vec::with_capacity(urls.len());
        for url in urls {
            let mut info = url
                .as_str()
                .into_connection_info()
                .map_err(|e| config_err(&format_args!("{:?}: {e}", redact::url(url))))?;
            let mut settings = info.redis_settings().clone();
            if let Some(p) = &password {
                settings = settings.set_password(p);
            }
            // No `CLIENT SETINFO` round trips on connect: a new connection to a frozen
            // server would wait for them with the full connect timeout.
            info = info.set_redis_settings(settings.set_skip_set_lib_name());
            infos.push(info);
        }
        let first = infos
            .first()
            .cloned()
            .ok_or_else(|| Error::config("CACHE_REDIS_URL", "no redis server given"))?;
        let client = r::Client::open(first.clone()).map_err(|e| config_err(&e))?;
        let cluster = infos.len() > 1 || Self::cluster_enabled(&client, &opts)?;
        let router = if cluster {
            let c = Cluster::new(first, infos);
            c.refresh(&opts, true);
            Router::Cluster(Box::new(c))
        } else {
            let node = Node::new(router::addr_of(&first), first).map_err(|e| config_err(&e))?;
            Router::Single(Arc::new(node))
        };
        Ok(RedisBackend {
            router,
            prefix: prefix.into(),
            opts,
        })
    }

    /// Whether the server runs in cluster mode; also where wrong credentials show up.
    fn cluster_enabled(client: &r::Client, opts: &RedisOptions) -> Result<bool, Error> {
        let mut conn = match client.get_connection_with_timeout(opts.connect_timeout) {
            Ok(c) => c,
            Err(e)
                if e.kind() == ErrorKind::AuthenticationFailed
                    || e.to_string().contains("WRONGPASS")
                    || e.to_string().contains("NOAUTH") =>
            {
                return Err(Error::config(
                    AUTH_VARS,
                    format!("redis refused the credentials: {e}"),
                ))
            }
            // Not up yet: it may come up later.
            Err(e) if e.is_connection_refusal() || e.is_timeout() => {
                tracing::warn!(target: "cachemacro", error = %e, "redis unreachable at start");
                return Ok(false);
            }
            // Anything else (a TLS certificate refused, TLS not compiled in, an unknown host)
            // is the configuration's fault.
            Err(e) => {
                return Err(Error::config(
                    "CACHE_REDIS_URL",
                    format!("cannot connect to redis: {e}"),
                ))
            }
        };
        let _ = conn.set_read_timeout(Some(opts.io_timeout));
        match r::cmd("INFO").arg("cluster").query::<String>(&mut conn) {
            Ok(info) => Ok(info.contains("cluster_enabled:1")),
            Err(e) if e.to_string().contains("NOAUTH") => Err(Error::config(
                AUTH_VARS,
                "redis requires a password and none was given",
            )),
            Err(e) => {
                tracing::warn!(target: "cachemacro", error = %e, "redis did not answer at start");
                Ok(false)
            }
        }
    }

    /// Whether this backend talks to a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.router, Router::Cluster(_))
    }

    /// `key` under this cache's prefix, as a command argument written straight into the
    /// command (no key string made on the way).
    pub(super) fn arg<'k>(&'k self, key: &'k str) -> Prefixed<'k> {
        Prefixed(&self.prefix, key)
    }

    pub(super) fn key(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    pub(super) fn set_cmd(
        &self,
        key: &str,
        bytes: &[u8],
        ttl: Option<Duration>,
        nx: bool,
    ) -> r::Cmd {
        let mut c = r::cmd("SET");
        c.arg(self.key(key)).arg(bytes);
        if nx {
            c.arg("NX");
        }
        if let Some(ms) = ttl_ms(ttl) {
            c.arg("PX").arg(ms);
        }
        c
    }

    pub(super) fn scan_cmd(&self, cursor: u64) -> r::Cmd {
        let mut c = r::cmd("SCAN");
        c.arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", glob_escape(&self.prefix)))
            .arg("COUNT")
            .arg(1000);
        c
    }
}

/// Escapes glob characters so `SCAN MATCH` takes the prefix literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("app:*[x]?\\"), "app:\\*\\[x\\]\\?\\\\");
    }
}

/// A key under a prefix, written into a command as one argument.
pub(super) struct Prefixed<'k>(&'k str, &'k str);

impl r::ToRedisArgs for Prefixed<'_> {
    fn write_redis_args<W: ?Sized + r::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut w = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = w.write_all(self.0.as_bytes());
        let _ = w.write_all(self.1.as_bytes());
    }
}
