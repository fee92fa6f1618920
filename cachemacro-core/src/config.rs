//! [`CacheConfig`]: Flask-Caching's `CACHE_*` settings, from the environment or any serde
//! source.

use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::{redact, Error};

/// Cache settings with Flask-Caching's names.
///
/// Fields deserialize from their snake-case names (`cache_type`) or Flask's upper-case ones
/// (`CACHE_TYPE`), so a TOML table, a JSON object or an env-reading crate all work:
///
/// ```
/// use cachemacro_core::{Cache, CacheConfig};
///
/// let config: CacheConfig = serde_json::from_str(
///     r#"{ "CACHE_TYPE": "simple", "CACHE_DEFAULT_TIMEOUT": 60, "CACHE_THRESHOLD": 1000 }"#,
/// ).unwrap();
/// let cache = Cache::from_config(config)?;
/// # Ok::<(), cachemacro_core::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CacheConfig {
    /// `null`, `simple`, `filesystem`, `memcached`, `saslmemcached`, `spreadsaslmemcached`,
    /// `redis`. Unset: `saslmemcached` when MemCachier servers are given, else `simple`.
    #[serde(alias = "CACHE_TYPE")]
    pub cache_type: Option<String>,
    /// Default entry lifetime in seconds; `0` = never expires. Unset: 300.
    #[serde(alias = "CACHE_DEFAULT_TIMEOUT")]
    pub cache_default_timeout: Option<u64>,
    /// Most entries kept by `simple` and `filesystem`. Unset: 500.
    #[serde(alias = "CACHE_THRESHOLD")]
    pub cache_threshold: Option<usize>,
    /// Prepended to every key on shared backends, to keep applications apart.
    #[serde(alias = "CACHE_KEY_PREFIX")]
    pub cache_key_prefix: Option<String>,
    /// memcached servers, `host:port`; a comma-separated string or a list.
    #[serde(alias = "CACHE_MEMCACHED_SERVERS", deserialize_with = "servers")]
    pub cache_memcached_servers: Option<Vec<String>>,
    /// SASL user name for memcached.
    #[serde(alias = "CACHE_MEMCACHED_USERNAME")]
    pub cache_memcached_username: Option<String>,
    /// SASL password for memcached.
    #[serde(alias = "CACHE_MEMCACHED_PASSWORD")]
    pub cache_memcached_password: Option<String>,
    /// `redis://[user:password@]host:port/db`; several, comma-separated, for a cluster.
    #[serde(alias = "CACHE_REDIS_URL")]
    pub cache_redis_url: Option<String>,
    /// The redis host, when no URL is given. Unset: `localhost`.
    #[serde(alias = "CACHE_REDIS_HOST")]
    pub cache_redis_host: Option<String>,
    /// The redis port, when no URL is given. Unset: 6379.
    #[serde(alias = "CACHE_REDIS_PORT")]
    pub cache_redis_port: Option<u16>,
    /// The redis password (with a URL or a host).
    #[serde(alias = "CACHE_REDIS_PASSWORD")]
    pub cache_redis_password: Option<String>,
    /// The redis database number, when no URL is given. Unset: 0.
    #[serde(alias = "CACHE_REDIS_DB")]
    pub cache_redis_db: Option<u32>,
    /// The directory of the `filesystem` backend.
    #[serde(alias = "CACHE_DIR")]
    pub cache_dir: Option<String>,
}

/// Passwords show as `***`, and so does the password in a redis URL's userinfo.
impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| redact::MASK);
        f.debug_struct("CacheConfig")
            .field("cache_type", &self.cache_type)
            .field("cache_default_timeout", &self.cache_default_timeout)
            .field("cache_threshold", &self.cache_threshold)
            .field("cache_key_prefix", &self.cache_key_prefix)
            .field("cache_memcached_servers", &self.cache_memcached_servers)
            .field("cache_memcached_username", &self.cache_memcached_username)
            .field(
                "cache_memcached_password",
                &secret(&self.cache_memcached_password),
            )
            .field(
                "cache_redis_url",
                &self.cache_redis_url.as_deref().map(redact::url),
            )
            .field("cache_redis_host", &self.cache_redis_host)
            .field("cache_redis_port", &self.cache_redis_port)
            .field("cache_redis_password", &secret(&self.cache_redis_password))
            .field("cache_redis_db", &self.cache_redis_db)
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

fn servers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Servers {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Servers>::deserialize(d)? {
        None => None,
        Some(Servers::One(s)) => Some(split_servers(&s)),
        Some(Servers::Many(v)) => Some(v),
    })
}

fn split_servers(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl CacheConfig {
    /// Reads `CACHE_TYPE`, `CACHE_DEFAULT_TIMEOUT`, `CACHE_THRESHOLD`, `CACHE_KEY_PREFIX`,
    /// `CACHE_MEMCACHED_SERVERS`, `CACHE_MEMCACHED_USERNAME`, `CACHE_MEMCACHED_PASSWORD`,
    /// `CACHE_REDIS_URL`, `CACHE_REDIS_HOST`, `CACHE_REDIS_PORT`, `CACHE_REDIS_PASSWORD`,
    /// `CACHE_REDIS_DB` and `CACHE_DIR`; when `CACHE_TYPE` is unset, also MemCachier's
    /// `MEMCACHIER_SERVERS`, `MEMCACHIER_USERNAME` and `MEMCACHIER_PASSWORD`. Empty
    /// variables count as unset. A value that does not parse is an `Err` naming its variable.
    pub fn from_env() -> Result<CacheConfig, Error> {
        Self::from_lookup(|name| match std::env::var(name) {
            Ok(v) if v.is_empty() => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(Error::config(name, "the value is not valid UTF-8"))
            }
        })
    }

    /// As [`CacheConfig::from_env`], reading variables through `var` (tests, other sources).
    pub fn from_lookup(
        mut var: impl FnMut(&str) -> Result<Option<String>, Error>,
    ) -> Result<CacheConfig, Error> {
        fn number<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<Option<T>, Error> {
            v.map(|s| {
                s.trim().parse().map_err(|_| {
                    Error::config(name, format!("{s:?} is not a non-negative whole number"))
                })
            })
            .transpose()
        }
        let mut config = CacheConfig {
            cache_type: var("CACHE_TYPE")?,
            cache_default_timeout: number("CACHE_DEFAULT_TIMEOUT", var("CACHE_DEFAULT_TIMEOUT")?)?,
            cache_threshold: number("CACHE_THRESHOLD", var("CACHE_THRESHOLD")?)?,
            cache_key_prefix: var("CACHE_KEY_PREFIX")?,
            cache_memcached_servers: var("CACHE_MEMCACHED_SERVERS")?.map(|s| split_servers(&s)),
            cache_memcached_username: var("CACHE_MEMCACHED_USERNAME")?,
            cache_memcached_password: var("CACHE_MEMCACHED_PASSWORD")?,
            cache_redis_url: var("CACHE_REDIS_URL")?,
            cache_redis_host: var("CACHE_REDIS_HOST")?,
            cache_redis_port: number("CACHE_REDIS_PORT", var("CACHE_REDIS_PORT")?)?,
            cache_redis_password: var("CACHE_REDIS_PASSWORD")?,
            cache_redis_db: number("CACHE_REDIS_DB", var("CACHE_REDIS_DB")?)?,
            cache_dir: var("CACHE_DIR")?,
        };
        if config.cache_type.is_none() {
            if let Some(servers) = var("MEMCACHIER_SERVERS")? {
                config.cache_type = Some("saslmemcached".into());
                config.cache_memcached_servers = Some(split_servers(&servers));
                config.cache_memcached_username = var("MEMCACHIER_USERNAME")?;
                config.cache_memcached_password = var("MEMCACHIER_PASSWORD")?;
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<CacheConfig, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CacheConfig::from_lookup(|k| Ok(map.get(k).filter(|v| !v.is_empty()).cloned()))
    }

    #[test]
    fn bad_numbers_name_their_variable() {
        for var in ["CACHE_DEFAULT_TIMEOUT", "CACHE_THRESHOLD"] {
            let err = from(&[(var, "fifty")]).unwrap_err();
            assert!(
                matches!(&err, Error::Config { var: v, .. } if v == var),
                "{err}"
            );
            assert!(err.to_string().contains(var));
        }
        assert!(from(&[("CACHE_THRESHOLD", "-3")]).is_err());
    }

    #[test]
    fn memcachier_variables_select_sasl_memcached() {
        let c = from(&[
            ("MEMCACHIER_SERVERS", "a:11211, b:11211"),
            ("MEMCACHIER_USERNAME", "u"),
            ("MEMCACHIER_PASSWORD", "p@%"),
        ])
        .unwrap();
        assert_eq!(c.cache_type.as_deref(), Some("saslmemcached"));
        assert_eq!(c.cache_memcached_servers.unwrap(), ["a:11211", "b:11211"]);
        assert_eq!(c.cache_memcached_password.as_deref(), Some("p@%"));
        // An explicit CACHE_TYPE wins over MemCachier's convention.
        let c = from(&[("CACHE_TYPE", "simple"), ("MEMCACHIER_SERVERS", "a:1")]).unwrap();
        assert_eq!(c.cache_type.as_deref(), Some("simple"));
        assert_eq!(c.cache_memcached_servers, None);
    }

    #[test]
    fn deserializes_from_either_spelling() {
        let a: CacheConfig =
            serde_json::from_str(r#"{"CACHE_TYPE":"null","CACHE_MEMCACHED_SERVERS":"x:1,y:2"}"#)
                .unwrap();
        let b: CacheConfig = serde_json::from_str(
            r#"{"cache_type":"null","cache_memcached_servers":["x:1","y:2"]}"#,
        )
        .unwrap();
        assert_eq!(a, b);
    }
}
