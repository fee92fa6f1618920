//! `rediss://` (feature `redis-tls`) against a TLS-only redis-server with a self-signed
//! certificate.
#![cfg(feature = "redis-tls")]

use cachemacro::{memoize, Cache, Error};
use cachemacro_testkit::Redis;
use std::sync::OnceLock;

static CACHE: OnceLock<Cache> = OnceLock::new();

#[memoize(cache = CACHE.get().unwrap())]
fn over_tls(a: u32) -> u32 {
    a + 1
}

#[test]
fn rediss_urls_connect_over_tls_and_an_untrusted_certificate_is_an_error() {
    let server = Redis::start_tls();
    // The certificate is self-signed: verification refuses it, clearly, when the cache is built.
    match Cache::builder().redis(server.url()).build() {
        Err(e @ Error::Config { .. }) => assert!(e.to_string().contains("CACHE_REDIS_URL"), "{e}"),
        other => panic!("an untrusted certificate: {other:?}"),
    }
    // `#insecure` skips verification (for test setups like this one).
    let cache = Cache::builder()
        .redis(format!("{}#insecure", server.url()))
        .build()
        .unwrap();
    cache.set("k", &5u8, 60).unwrap();
    assert_eq!(cache.get::<u8>("k").unwrap(), Some(5));
    CACHE.set(cache).unwrap();
    assert_eq!(over_tls(1), 2);
    assert_eq!(over_tls(1), 2);
    assert_eq!(CACHE.get().unwrap().stats().hits, 2);
}
