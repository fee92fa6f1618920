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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::redis as r;
use r::cluster::{ClusterClient, ClusterConnection};
use r::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use r::{ErrorKind, IntoConnectionInfo, RedisError};

use crate::{redact, Backend, Error, Value};

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
    /// Idle connections kept.
    pub pool_size: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_millis(750),
            retry_timeout: Duration::from_secs(2),
            pool_size: 8,
        }
    }
}

const AUTH_VARS: &str = "CACHE_REDIS_URL/CACHE_REDIS_PASSWORD";

enum Target {
    Single {
        client: r::Client,
        idle: Mutex<Vec<r::Connection>>,
    },
    Cluster {
        client: ClusterClient,
        idle: Mutex<Vec<ClusterConnection>>,
    },
}

/// The redis backend.
pub struct RedisBackend {
    target: Target,
    prefix: String,
    opts: RedisOptions,
    origin: Instant,
    /// Milliseconds since `origin` before which a failed standalone server is not tried.
    resting_until: AtomicU64,
}

fn redis_err(e: &RedisError) -> Error {
    match e.kind() {
        ErrorKind::AuthenticationFailed => {
            Error::config(AUTH_VARS, format!("redis refused the credentials: {e}"))
        }
        _ => Error::Backend(format!("redis: {e}")),
    }
}

fn ttl_ms(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|t| (t.as_millis() as u64).max(1))
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
            if let Some(p) = &password {
                let settings = info.redis_settings().clone().set_password(p);
                info = info.set_redis_settings(settings);
            }
            infos.push(info);
        }
        let first = infos
            .first()
            .cloned()
            .ok_or_else(|| Error::config("CACHE_REDIS_URL", "no redis server given"))?;
        let client = r::Client::open(first).map_err(|e| config_err(&e))?;
        let cluster = infos.len() > 1 || Self::cluster_enabled(&client, &opts)?;
        let target = if cluster {
            let mut b = ClusterClient::builder(infos)
                .connection_timeout(opts.connect_timeout)
                .response_timeout(opts.io_timeout)
                .retries(1);
            if let Some(p) = &password {
                b = b.password(p.clone());
            }
            let client = b.build().map_err(|e| config_err(&e))?;
            Target::Cluster {
                client,
                idle: Mutex::new(Vec::new()),
            }
        } else {
            Target::Single {
                client,
                idle: Mutex::new(Vec::new()),
            }
        };
        Ok(RedisBackend {
            target,
            prefix: prefix.into(),
            opts,
            origin: Instant::now(),
            resting_until: AtomicU64::new(0),
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
        matches!(self.target, Target::Cluster { .. })
    }

    fn key(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn fresh_single(client: &r::Client, opts: &RedisOptions) -> r::RedisResult<r::Connection> {
        let conn = client.get_connection_with_timeout(opts.connect_timeout)?;
        conn.set_read_timeout(Some(opts.io_timeout))?;
        conn.set_write_timeout(Some(opts.io_timeout))?;
        Ok(conn)
    }

    /// Runs `single` or `cluster` on a pooled connection (a fresh one if the pooled one turns
    /// out dead). A connection that saw an error is dropped, never reused.
    fn run<T>(
        &self,
        single: impl Fn(&mut r::Connection) -> r::RedisResult<T>,
        cluster: impl Fn(&mut ClusterConnection) -> r::RedisResult<T>,
    ) -> Result<T, Error> {
        match &self.target {
            Target::Single { client, idle } => {
                if self.resting_until.load(Ordering::Relaxed) > self.now() {
                    return Err(Error::Backend(format!(
                        "redis failed recently; retried after {:?}",
                        self.opts.retry_timeout
                    )));
                }
                let pooled = idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let reused = pooled.is_some();
                let attempt = |conn: Option<r::Connection>| -> r::RedisResult<(r::Connection, T)> {
                    let mut conn = match conn {
                        Some(c) => c,
                        None => Self::fresh_single(client, &self.opts)?,
                    };
                    let out = single(&mut conn)?;
                    Ok((conn, out))
                };
                let result = match attempt(pooled) {
                    Err(e)
                        if reused
                            && (e.is_connection_dropped() || e.is_io_error())
                            && !e.is_timeout() =>
                    {
                        attempt(None)
                    }
                    r => r,
                };
                match result {
                    Ok((conn, out)) => {
                        let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
                        if idle.len() < self.opts.pool_size {
                            idle.push(conn);
                        }
                        Ok(out)
                    }
                    Err(e) => {
                        if e.is_io_error()
                            || e.is_timeout()
                            || e.is_connection_dropped()
                            || e.is_connection_refusal()
                        {
                            idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
                            self.resting_until.store(
                                self.now() + self.opts.retry_timeout.as_millis() as u64,
                                Ordering::Relaxed,
                            );
                            tracing::warn!(target: "cachemacro", error = %e, "redis failing; retried in {:?}", self.opts.retry_timeout);
                        }
                        Err(redis_err(&e))
                    }
                }
            }
            Target::Cluster { client, idle } => {
                let pooled = idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let mut conn = match pooled {
                    Some(c) => c,
                    None => {
                        let c = client.get_connection().map_err(|e| redis_err(&e))?;
                        c.set_read_timeout(Some(self.opts.io_timeout))
                            .map_err(|e| redis_err(&e))?;
                        c.set_write_timeout(Some(self.opts.io_timeout))
                            .map_err(|e| redis_err(&e))?;
                        c
                    }
                };
                match cluster(&mut conn) {
                    Ok(out) => {
                        let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
                        if idle.len() < self.opts.pool_size {
                            idle.push(conn);
                        }
                        Ok(out)
                    }
                    Err(e) => Err(redis_err(&e)),
                }
            }
        }
    }

    /// Runs one command, the same on a server or a cluster.
    fn run_cmd<T: r::FromRedisValue>(&self, cmd: impl Fn() -> r::Cmd) -> Result<T, Error> {
        self.run(|c| cmd().query(c), |c| cmd().query(c))
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
        let k = self.key(key);
        let cmd = || {
            let mut c = r::cmd(op);
            c.arg(&k).arg(delta);
            c
        };
        self.run_cmd(cmd).map_err(|e| match e {
            Error::Backend(m) if m.contains("not an integer") || m.contains("overflow") => {
                Error::NotANumber(key.to_owned())
            }
            e => e,
        })
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

/// The `host:port` of every master, from `CLUSTER NODES`.
fn masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let flags = fields.get(2)?;
            if !flags.contains("master") || flags.contains("fail") {
                return None;
            }
            let addr = fields.get(1)?.split('@').next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        Ok(self.get_many(&[key])?.pop().flatten())
    }

    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let ks: Vec<Vec<u8>> = keys.iter().map(|k| self.key(k)).collect();
        let raw: Vec<Option<Vec<u8>>> = self.run(
            |c| r::cmd("MGET").arg(&ks).query(c),
            |c| {
                let mut p = r::cluster::cluster_pipe();
                for k in &ks {
                    p.cmd("GET").arg(k);
                }
                p.query(c)
            },
        )?;
        Ok(raw.into_iter().map(|v| v.map(Value::from_bytes)).collect())
    }

    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), Error> {
        let bytes = value.to_bytes()?;
        self.run_cmd(|| self.set_cmd(key, &bytes, ttl, false))
    }

    fn add(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<bool, Error> {
        let bytes = value.to_bytes()?;
        let reply: Option<String> = self.run_cmd(|| self.set_cmd(key, &bytes, ttl, true))?;
        Ok(reply.is_some())
    }

    fn set_many(&self, items: &[(&str, Value)], ttl: Option<Duration>) -> Result<(), Error> {
        let items = items
            .iter()
            .map(|(k, v)| Ok((*k, v.to_bytes()?)))
            .collect::<Result<Vec<_>, Error>>()?;
        self.run(
            |c| {
                let mut p = r::pipe();
                for (k, b) in &items {
                    p.add_command(self.set_cmd(k, b, ttl, false)).ignore();
                }
                p.query::<()>(c)
            },
            |c| {
                let mut p = r::cluster::cluster_pipe();
                for (k, b) in &items {
                    p.add_command(self.set_cmd(k, b, ttl, false)).ignore();
                }
                p.query::<()>(c)
            },
        )
    }

    fn delete(&self, key: &str) -> Result<bool, Error> {
        Ok(self.delete_many(&[key])? == 1)
    }

    fn delete_many(&self, keys: &[&str]) -> Result<usize, Error> {
        if keys.is_empty() {
            return Ok(0);
        }
        let ks: Vec<Vec<u8>> = keys.iter().map(|k| self.key(k)).collect();
        self.run(
            |c| r::cmd("UNLINK").arg(&ks).query::<usize>(c),
            |c| {
                // Keys of different slots cannot share one UNLINK on a cluster: one command per
                // key, all in one pipeline (one round trip per node, written to all first).
                let mut p = r::cluster::cluster_pipe();
                for k in &ks {
                    p.cmd("UNLINK").arg(k);
                }
                Ok(p.query::<Vec<usize>>(c)?.into_iter().sum())
            },
        )
    }

    fn inc(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.counter(key, "INCRBY", delta)
    }

    fn dec(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.counter(key, "DECRBY", delta)
    }

    /// Without a prefix: `FLUSHDB` (on every master of a cluster). With one: `SCAN MATCH
    /// prefix*` and `UNLINK` of each page, on every master; other keys stay.
    fn clear(&self) -> Result<(), Error> {
        if self.prefix.is_empty() {
            return self.run_cmd(|| r::cmd("FLUSHDB"));
        }
        match &self.target {
            Target::Single { .. } => self.run(
                |c| {
                    let mut cursor = 0u64;
                    loop {
                        let (next, keys): (u64, Vec<Vec<u8>>) = self.scan_cmd(cursor).query(c)?;
                        if !keys.is_empty() {
                            r::cmd("UNLINK").arg(&keys).query::<()>(c)?;
                        }
                        if next == 0 {
                            return Ok(());
                        }
                        cursor = next;
                    }
                },
                |_| unreachable!(),
            ),
            Target::Cluster { .. } => {
                let nodes: String = self.run(
                    |_| unreachable!(),
                    |c| r::cmd("CLUSTER").arg("NODES").query(c),
                )?;
                for (host, port) in masters(&nodes) {
                    let route =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    self.run(
                        |_| unreachable!(),
                        |c| {
                            let mut cursor = 0u64;
                            loop {
                                let page =
                                    c.route_command(&self.scan_cmd(cursor), route.clone())?;
                                let (next, keys): (u64, Vec<Vec<u8>>) =
                                    r::FromRedisValue::from_redis_value(page)?;
                                if !keys.is_empty() {
                                    let mut p = r::cluster::cluster_pipe();
                                    for k in &keys {
                                        p.cmd("UNLINK").arg(k).ignore();
                                    }
                                    p.query::<()>(c)?;
                                }
                                if next == 0 {
                                    return Ok(());
                                }
                                cursor = next;
                            }
                        },
                    )?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("app:*[x]?\\"), "app:\\*\\[x\\]\\?\\\\");
    }

    #[test]
    fn masters_from_cluster_nodes() {
        let nodes = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                     b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n\
                     c3 127.0.0.1:7002@17002 master,fail - 0 0 3 connected 10923-16383\n\
                     d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected\n";
        assert_eq!(
            masters(nodes),
            vec![("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7001)]
        );
    }
}
