//! [`CacheBuilder`]: choosing and tuning a backend in code.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backends::{NullBackend, SimpleBackend, DEFAULT_THRESHOLD};
use crate::{Backend, Cache, CacheConfig, Error};

/// Flask's `CACHE_DEFAULT_TIMEOUT` default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Builds a [`Cache`]; from [`Cache::builder`].
///
/// ```
/// use cachemacro_core::Cache;
/// use std::time::Duration;
///
/// let cache = Cache::builder()
///     .simple()
///     .threshold(10_000)
///     .default_timeout(Duration::from_secs(60))
///     .build()?;
/// # Ok::<(), cachemacro_core::Error>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct CacheBuilder {
    kind: Kind,
    key_prefix: String,
    default_timeout: Duration,
    threshold: usize,
    servers: Vec<String>,
    credentials: Option<(String, String)>,
    #[cfg(feature = "memcached")]
    memcached: crate::backends::memcached::MemcachedOptions,
    redis_password: Option<String>,
    #[cfg(feature = "redis")]
    redis: crate::backends::redis::RedisOptions,
    dir: Option<std::path::PathBuf>,
    file_mode: Option<u32>,
}

#[derive(Clone)]
enum Kind {
    Simple,
    Null,
    Memcached,
    Redis,
    Filesystem,
    Custom(Arc<dyn Backend>),
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            kind: Kind::Simple,
            key_prefix: String::new(),
            default_timeout: DEFAULT_TIMEOUT,
            threshold: DEFAULT_THRESHOLD,
            servers: Vec::new(),
            credentials: None,
            #[cfg(feature = "memcached")]
            memcached: Default::default(),
            redis_password: None,
            #[cfg(feature = "redis")]
            redis: Default::default(),
            dir: None,
            file_mode: None,
        }
    }
}

impl fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Simple => "simple",
            Kind::Null => "null",
            Kind::Memcached => "memcached",
            Kind::Redis => "redis",
            Kind::Filesystem => "filesystem",
            Kind::Custom(b) => b.name(),
        };
        f.debug_struct("CacheBuilder")
            .field("kind", &kind)
            .field("key_prefix", &self.key_prefix)
            .field("default_timeout", &self.default_timeout)
            .field("threshold", &self.threshold)
            .field(
                "servers",
                &self
                    .servers
                    .iter()
                    .map(|s| crate::redact::url(s))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl CacheBuilder {
    /// The in-process backend (the default).
    pub fn simple(mut self) -> Self {
        self.kind = Kind::Simple;
        self
    }

    /// A backend that caches nothing.
    pub fn null(mut self) -> Self {
        self.kind = Kind::Null;
        self
    }

    /// memcached on these `host:port` servers.
    pub fn memcached<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.kind = Kind::Memcached;
        self.servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Timeouts, failover and pool settings of the memcached client (libmemcached's behaviours
    /// as MemCachier recommends them, by default).
    #[cfg(feature = "memcached")]
    pub fn memcached_options(
        mut self,
        options: crate::backends::memcached::MemcachedOptions,
    ) -> Self {
        let spread = self.memcached.spread;
        self.memcached = options;
        self.memcached.spread |= spread;
        self
    }

    /// Splits memcached values above the item size limit over several keys
    /// (`spreadsaslmemcached`).
    #[cfg(feature = "memcached")]
    pub fn spread_large_values(mut self, spread: bool) -> Self {
        self.memcached.spread = spread;
        self
    }

    /// A redis server (`redis://[user:password@]host:port/db`); a server in cluster mode
    /// makes a cluster client.
    pub fn redis(self, url: impl Into<String>) -> Self {
        self.redis_cluster([url.into()])
    }

    /// A redis cluster, from one or more of its nodes' URLs.
    pub fn redis_cluster<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.kind = Kind::Redis;
        self.servers = urls.into_iter().map(Into::into).collect();
        self
    }

    /// The redis password, when it is not in the URL.
    pub fn redis_password(mut self, password: impl Into<String>) -> Self {
        self.redis_password = Some(password.into());
        self
    }

    /// Timeouts and pool settings of the redis client.
    #[cfg(feature = "redis")]
    pub fn redis_options(mut self, options: crate::backends::redis::RedisOptions) -> Self {
        self.redis = options;
        self
    }

    /// Files under `dir`, one per key (`CACHE_DIR`). The directory is created with mode
    /// 0700 and files are written 0600 unless [`CacheBuilder::filesystem_mode`] says
    /// otherwise.
    pub fn filesystem(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.kind = Kind::Filesystem;
        self.dir = Some(dir.into());
        self
    }

    /// Permissions of the filesystem backend's files (before the umask), e.g. `0o640` to
    /// share the cache with a group. Default: `0o600`.
    pub fn filesystem_mode(mut self, mode: u32) -> Self {
        self.file_mode = Some(mode);
        self
    }

    /// SASL PLAIN credentials for memcached.
    pub fn sasl(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((username.into(), password.into()));
        self
    }

    /// Any [`Backend`], e.g. one of your own.
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.kind = Kind::Custom(backend);
        self
    }

    /// Prepended to every key on shared backends (ignored in process, where nothing is
    /// shared).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The lifetime of entries written with [`Timeout::Default`](crate::Timeout::Default);
    /// `Duration::ZERO` = never expire. Default: 300 s.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// The most entries the in-process and filesystem backends keep. Default: 500.
    pub fn threshold(mut self, threshold: usize) -> Self {
        self.threshold = threshold;
        self
    }

    /// A builder set up from a [`CacheConfig`].
    pub fn from_config(config: CacheConfig) -> Result<CacheBuilder, Error> {
        let mut b = CacheBuilder::default();
        if let Some(secs) = config.cache_default_timeout {
            b = b.default_timeout(Duration::from_secs(secs));
        }
        if let Some(t) = config.cache_threshold {
            b = b.threshold(t);
        }
        if let Some(p) = config.cache_key_prefix {
            b = b.key_prefix(p);
        }
        let kind = config
            .cache_type
            .as_deref()
            .unwrap_or("simple")
            .trim()
            .to_ascii_lowercase();
        b.kind = match kind.as_str() {
            "simple" => Kind::Simple,
            "null" => Kind::Null,
            "memcached" | "saslmemcached" | "spreadsaslmemcached" => {
                let servers = config.cache_memcached_servers.unwrap_or_default();
                if servers.is_empty() {
                    return Err(Error::config(
                        "CACHE_MEMCACHED_SERVERS",
                        format!("CACHE_TYPE={kind} needs at least one host:port"),
                    ));
                }
                b.servers = servers;
                if let Some(user) = config.cache_memcached_username {
                    b.credentials =
                        Some((user, config.cache_memcached_password.unwrap_or_default()));
                }
                Kind::Memcached
            }
            "redis" => {
                b.servers = match (config.cache_redis_url, config.cache_redis_host) {
                    (Some(urls), _) => urls
                        .split(',')
                        .map(|u| u.trim().to_owned())
                        .filter(|u| !u.is_empty())
                        .collect(),
                    (None, host) => vec![format!(
                        "redis://{}:{}/{}",
                        host.as_deref().unwrap_or("localhost"),
                        config.cache_redis_port.unwrap_or(6379),
                        config.cache_redis_db.unwrap_or(0)
                    )],
                };
                b.redis_password = config.cache_redis_password;
                Kind::Redis
            }
            "filesystem" => {
                let dir = config.cache_dir.ok_or_else(|| {
                    Error::config("CACHE_DIR", "CACHE_TYPE=filesystem needs a directory")
                })?;
                b.dir = Some(dir.into());
                Kind::Filesystem
            }
            other => {
                return Err(Error::config(
                    "CACHE_TYPE",
                    format!(
                        "unknown cache type {other:?}; expected one of null, simple, filesystem, \
                         memcached, saslmemcached, spreadsaslmemcached, redis"
                    ),
                ))
            }
        };
        Ok(b)
    }

    /// The cache.
    pub fn build(self) -> Result<Cache, Error> {
        let timeout = (!self.default_timeout.is_zero()).then_some(self.default_timeout);
        match self.kind {
            Kind::Simple => Ok(Cache::assemble(
                Arc::new(SimpleBackend::new(self.threshold)),
                timeout,
                true,
            )),
            // Caches nothing, so concurrent calls are not merged either.
            Kind::Null => Ok(Cache::assemble(Arc::new(NullBackend), timeout, false)),
            Kind::Custom(backend) => Ok(Cache::assemble(backend, timeout, true)),
            #[cfg(feature = "memcached")]
            Kind::Memcached => {
                let backend = crate::backends::memcached::MemcachedBackend::connect(
                    &self.servers,
                    self.credentials,
                    self.key_prefix,
                    self.memcached,
                )?;
                Ok(Cache::assemble(Arc::new(backend), timeout, true))
            }
            #[cfg(not(feature = "memcached"))]
            Kind::Memcached => Err(Error::config(
                "CACHE_TYPE",
                "memcached support is not compiled in: enable cachemacro's `memcached` feature",
            )),
            #[cfg(feature = "redis")]
            Kind::Redis => {
                let backend = crate::backends::redis::RedisBackend::connect(
                    &self.servers,
                    self.redis_password,
                    self.key_prefix,
                    self.redis,
                )?;
                Ok(Cache::assemble(Arc::new(backend), timeout, true))
            }
            #[cfg(feature = "filesystem")]
            Kind::Filesystem => {
                let dir = self.dir.unwrap_or_default();
                let mode = self
                    .file_mode
                    .unwrap_or(crate::backends::filesystem::DEFAULT_MODE);
                let backend = crate::backends::filesystem::FilesystemBackend::open_with_mode(
                    dir,
                    self.threshold,
                    mode,
                )?;
                Ok(Cache::assemble(Arc::new(backend), timeout, true))
            }
            #[cfg(not(feature = "redis"))]
            Kind::Redis => Err(Error::config(
                "CACHE_TYPE",
                "redis support is not compiled in: enable cachemacro's `redis` feature",
            )),
            #[cfg(not(feature = "filesystem"))]
            Kind::Filesystem => Err(Error::config(
                "CACHE_TYPE",
                "filesystem support is not compiled in: enable cachemacro's `filesystem` feature",
            )),
        }
    }
}
