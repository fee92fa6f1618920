//! `Cache::from_env`, `Cache::from_config`, the builder, and the process-wide default.
//!
//! Environment variables are process-wide, so every case runs in one test, in order.

use cachemacro::{Cache, CacheConfig, Error};

const VARS: &[&str] = &[
    "CACHE_TYPE",
    "CACHE_DEFAULT_TIMEOUT",
    "CACHE_THRESHOLD",
    "CACHE_KEY_PREFIX",
    "CACHE_MEMCACHED_SERVERS",
    "CACHE_MEMCACHED_USERNAME",
    "CACHE_MEMCACHED_PASSWORD",
    "CACHE_REDIS_URL",
    "CACHE_DIR",
    "MEMCACHIER_SERVERS",
    "MEMCACHIER_USERNAME",
    "MEMCACHIER_PASSWORD",
];

fn with_env(vars: &[(&str, &str)]) -> Result<Cache, Error> {
    for v in VARS {
        std::env::remove_var(v);
    }
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    Cache::from_env()
}

fn names_var(result: Result<Cache, Error>, var: &str) {
    match result {
        Err(e @ Error::Config { .. }) => {
            assert!(e.to_string().contains(var), "{e} should name {var}")
        }
        Err(e) => panic!("expected a configuration error naming {var}, got {e}"),
        Ok(c) => panic!("expected a configuration error naming {var}, got {c:?}"),
    }
}

#[test]
fn from_env() {
    let c = with_env(&[]).unwrap();
    assert_eq!(c.backend().name(), "simple", "nothing set: simple");

    let c = with_env(&[("CACHE_TYPE", "null")]).unwrap();
    assert_eq!(c.backend().name(), "null");

    let c = with_env(&[
        ("CACHE_TYPE", "simple"),
        ("CACHE_DEFAULT_TIMEOUT", "60"),
        ("CACHE_THRESHOLD", "10"),
    ])
    .unwrap();
    assert_eq!(
        c.ttl(cachemacro::Timeout::Default),
        Some(std::time::Duration::from_secs(60))
    );

    let c = with_env(&[("CACHE_DEFAULT_TIMEOUT", "0")]).unwrap();
    assert_eq!(
        c.ttl(cachemacro::Timeout::Default),
        None,
        "0 = never expires"
    );

    names_var(
        with_env(&[("CACHE_DEFAULT_TIMEOUT", "5m")]),
        "CACHE_DEFAULT_TIMEOUT",
    );
    names_var(with_env(&[("CACHE_THRESHOLD", "lots")]), "CACHE_THRESHOLD");
    names_var(with_env(&[("CACHE_TYPE", "mongodb")]), "CACHE_TYPE");
    names_var(
        with_env(&[("CACHE_TYPE", "memcached")]),
        "CACHE_MEMCACHED_SERVERS",
    );

    for v in VARS {
        std::env::remove_var(v);
    }
}

#[test]
fn from_config_and_builder() {
    let config: CacheConfig =
        serde_json::from_str(r#"{"CACHE_TYPE": "simple", "CACHE_THRESHOLD": 3}"#).unwrap();
    let cache = Cache::from_config(config).unwrap();
    assert_eq!(cache.backend().name(), "simple");

    let config: CacheConfig = serde_json::from_str(r#"{"cache_type": "nope"}"#).unwrap();
    assert!(
        matches!(Cache::from_config(config), Err(Error::Config { var, .. }) if var == "CACHE_TYPE")
    );

    let cache = Cache::builder()
        .null()
        .key_prefix("app1:")
        .threshold(10)
        .default_timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    assert_eq!(cache.backend().name(), "null");
}

#[test]
fn init_once_then_refuse() {
    let first = Cache::builder().simple().build().unwrap();
    first.set("marker", &1u8, 0).unwrap();
    cachemacro::init(first).unwrap();
    assert_eq!(
        cachemacro::cache().get::<u8>("marker").unwrap(),
        Some(1),
        "init installed it"
    );
    let second = Cache::builder().null().build().unwrap();
    assert!(matches!(
        cachemacro::init(second),
        Err(Error::AlreadyInitialized)
    ));
    assert_eq!(
        cachemacro::cache().backend().name(),
        "simple",
        "the second call changed nothing"
    );
}
