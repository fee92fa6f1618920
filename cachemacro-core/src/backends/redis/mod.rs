//! `CACHE_TYPE=redis`: a redis server or a redis cluster, through the `redis` crate's sync
//! client.
//!
//! What cachelib gets wrong, done right: `add` is one atomic `SET NX` with its expiry;
//! `inc`/`dec` are atomic `INCRBY`/`DECRBY`; `clear()` removes only this cache's prefix with
//! `SCAN` + `UNLINK` in batches (never `KEYS`, and `FLUSHDB` only without a prefix);
//! `delete_many` is one request.
//!
//! A memoized hit is one round trip for two keys: one `MGET` on a server; on a cluster, a
//! pipeline that writes to every node involved before reading any reply. Keys are never
//! hash-tagged, so one function's entries spread over every slot.

mod node;
mod router;
mod slots;

use std::sync::Arc;
use std::time::Duration;

use ::redis as r;
use r::{ErrorKind, IntoConnectionInfo, RedisError};

use crate::keys::is_version_key;
use crate::{redact, Backend, Error, Value};
use node::Node;
use router::{Cluster, Router, Unit};

/// Tuning of the redis client: the same defaults as the memcached client's.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Longest wait for a connection (and its authentication).
    pub connect_timeout: Duration,
    /// Longest wait for one command's reply.
    pub io_timeout: Duration,
    /// After a failure, how long a standalone server is skipped (calls fail fast).
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

fn redis_err(e: &RedisError) -> Error {
    match e.kind() {
        ErrorKind::AuthenticationFailed => {
            Error::config(AUTH_VARS, format!("redis refused the credentials: {e}"))
        }
        _ => Error::Backend(format!("redis: {e}")),
    }
}

/// A reply as `T`; an error reply is an `Err`.
fn decode<T: r::FromRedisValue>(reply: r::Value) -> Result<T, Error> {
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

    fn key(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// One command on `key`'s server; its reply.
    fn one<T: r::FromRedisValue>(&self, key: &str, cmd: r::Cmd) -> Result<T, Error> {
        let k = self.key(key);
        let mut replies = self.router.exec(&self.opts, &[Unit::one(k, cmd)])?;
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
    fn write<T: r::FromRedisValue>(&self, key: &str, cmd: r::Cmd) -> Result<T, Error> {
        if !(self.opts.confirm_versions && is_version_key(key)) {
            return self.one(key, cmd);
        }
        let role: r::Value = self.one(key, r::cmd("ROLE"))?;
        let replicas = match role {
            r::Value::Array(fields) => match fields.get(2) {
                Some(r::Value::Array(replicas)) => replicas.len(),
                _ => 0,
            },
            _ => 0,
        };
        if replicas == 0 {
            return self.one(key, cmd);
        }
        let wait_ms = (self.opts.io_timeout.as_millis() as u64 * 2 / 3).max(1);
        let mut wait = r::cmd("WAIT");
        wait.arg(1).arg(wait_ms);
        let unit = Unit {
            key: self.key(key),
            cmds: vec![cmd, wait],
        };
        let mut replies = self
            .router
            .exec(&self.opts, &[unit])?
            .pop()
            .unwrap_or_default();
        let acked: i64 = decode(replies.pop().unwrap_or(r::Value::Nil)).unwrap_or(0);
        let out = decode(replies.pop().unwrap_or(r::Value::Nil))?;
        if acked == 0 {
            return Err(Error::Backend(format!(
                "redis: the new version of {key:?} was not confirmed by any of {replicas} replicas within {wait_ms} ms; a failover now could undo it"
            )));
        }
        Ok(out)
    }

    fn set_cmd(&self, key: &str, bytes: &[u8], ttl: Option<Duration>, nx: bool) -> r::Cmd {
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

    fn counter(&self, key: &str, op: &'static str, delta: i64) -> Result<i64, Error> {
        let mut c = r::cmd(op);
        c.arg(self.key(key)).arg(delta);
        self.one(key, c).map_err(|e| match e {
            Error::Backend(m) if m.contains("not an integer") || m.contains("overflow") => {
                Error::NotANumber(key.to_owned())
            }
            e => e,
        })
    }

    /// Every key under this cache's prefix on one master, `SCAN` page by page, each page
    /// removed with `UNLINK` (one command per key on a cluster: keys of a page may belong
    /// to different slots).
    fn clear_prefix(&self, node: &Node) -> Result<(), Error> {
        let cluster = self.is_cluster();
        let mut cursor = 0u64;
        loop {
            let page = node
                .run(&self.opts, &[self.scan_cmd(cursor)])
                .map_err(|e| redis_err(&e))?
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
                for reply in node.run(&self.opts, &cmds).map_err(|e| redis_err(&e))? {
                    reply.extract_error().map_err(|e| redis_err(&e))?;
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    fn scan_cmd(&self, cursor: u64) -> r::Cmd {
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

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        Ok(self.get_many(&[key])?.pop().flatten())
    }

    /// One `MGET` on a server; on a cluster one `GET` per key, every node's written before
    /// any reply is read. One round trip either way.
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error> {
        let raw: Vec<Option<Vec<u8>>> = match (&self.router, keys) {
            (_, []) => Vec::new(),
            (Router::Single(_), [first, ..]) => {
                let mut c = r::cmd("MGET");
                for k in keys {
                    c.arg(self.key(k));
                }
                self.one(first, c)?
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
                self.router
                    .exec(&self.opts, &units)?
                    .into_iter()
                    .map(|mut replies| decode(replies.pop().unwrap_or(r::Value::Nil)))
                    .collect::<Result<_, Error>>()?
            }
        };
        Ok(raw.into_iter().map(|v| v.map(Value::from_bytes)).collect())
    }

    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), Error> {
        let bytes = value.to_bytes()?;
        self.write(key, self.set_cmd(key, &bytes, ttl, false))
    }

    fn add(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<bool, Error> {
        let bytes = value.to_bytes()?;
        // A new version that a failover loses only makes a fresh one: nothing to confirm.
        let reply: Option<String> = self.one(key, self.set_cmd(key, &bytes, ttl, true))?;
        Ok(reply.is_some())
    }

    fn set_many(&self, items: &[(&str, Value)], ttl: Option<Duration>) -> Result<(), Error> {
        let units = items
            .iter()
            .map(|(k, v)| {
                Ok(Unit::one(
                    self.key(k),
                    self.set_cmd(k, &v.to_bytes()?, ttl, false),
                ))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        for reply in self.router.exec(&self.opts, &units)?.into_iter().flatten() {
            reply.extract_error().map_err(|e| redis_err(&e))?;
        }
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<bool, Error> {
        let mut c = r::cmd("UNLINK");
        c.arg(self.key(key));
        Ok(self.write::<usize>(key, c)? == 1)
    }

    /// One `UNLINK` on a server; on a cluster one per key (keys of different slots cannot
    /// share one), every node's written before any reply is read. A function version among
    /// them is confirmed by a replica, as for [`Backend::set`].
    fn delete_many(&self, keys: &[&str]) -> Result<usize, Error> {
        let version = keys.iter().copied().find(|k| is_version_key(k));
        match (&self.router, keys) {
            (_, []) => Ok(0),
            (Router::Single(_), [first, ..]) => {
                let mut c = r::cmd("UNLINK");
                for k in keys {
                    c.arg(self.key(k));
                }
                self.write(version.unwrap_or(first), c)
            }
            (Router::Cluster(_), _) => {
                let mut n = 0;
                for k in keys {
                    if Some(*k) == version {
                        n += usize::from(self.delete(k)?);
                    }
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
                for reply in self.router.exec(&self.opts, &units)?.into_iter().flatten() {
                    n += decode::<usize>(reply)?;
                }
                Ok(n)
            }
        }
    }

    fn inc(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.counter(key, "INCRBY", delta)
    }

    fn dec(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.counter(key, "DECRBY", delta)
    }

    /// Without a prefix: `FLUSHDB` on every master. With one: `SCAN MATCH prefix*` and
    /// `UNLINK` of each page, on every master; other keys stay.
    fn clear(&self) -> Result<(), Error> {
        for node in self.router.masters(&self.opts) {
            if self.prefix.is_empty() {
                for reply in node
                    .run(&self.opts, &[r::cmd("FLUSHDB")])
                    .map_err(|e| redis_err(&e))?
                {
                    reply.extract_error().map_err(|e| redis_err(&e))?;
                }
            } else {
                self.clear_prefix(&node)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("app:*[x]?\\"), "app:\\*\\[x\\]\\?\\\\");
    }
}
