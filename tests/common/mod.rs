//! Shared by the integration tests.
//!
//! The contract tests run on the in-memory backend, and again with
//! `CACHEMACRO_TEST_BACKEND` set to `memcached`, `redis` or `filesystem` (as `scripts/test`
//! does): `cache()` and `builder()` hand out caches of the selected backend, each under a key
//! prefix (or directory) of its own, on a real server this test process starts.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachemacro::backends::SimpleBackend;
use cachemacro::{Backend, Cache, Error, Value};
use cachemacro_testkit::{scratch, Memcached, Redis};

fn selected() -> String {
    std::env::var("CACHEMACRO_TEST_BACKEND").unwrap_or_default()
}

/// Whether this run targets memcached.
pub fn on_memcached() -> bool {
    selected() == "memcached"
}

/// The redis server of this test process (started on first use, stopped when the process
/// exits).
fn redis_server() -> &'static Redis {
    static SERVER: std::sync::OnceLock<Redis> = std::sync::OnceLock::new();
    SERVER.get_or_init(Redis::start)
}

/// A directory of this test process, removed when the process exits.
fn fs_dir(n: usize) -> std::path::PathBuf {
    scratch::process_dir().join("fs").join(n.to_string())
}

/// The memcached server of this test process (started on first use, stopped when the
/// process exits).
fn server() -> &'static Memcached {
    static SERVER: std::sync::OnceLock<Memcached> = std::sync::OnceLock::new();
    SERVER.get_or_init(Memcached::start)
}

/// A builder for the selected backend, with a key prefix of its own.
pub fn builder() -> cachemacro::CacheBuilder {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let prefix = format!("t{}-{n}:", std::process::id());
    match selected().as_str() {
        "memcached" => Cache::builder()
            .memcached([server().addr()])
            .key_prefix(prefix),
        "redis" => Cache::builder()
            .redis(redis_server().url())
            .key_prefix(prefix),
        "filesystem" => Cache::builder().filesystem(fs_dir(n)).threshold(10_000),
        "" => Cache::builder().simple().threshold(10_000),
        other => {
            panic!("CACHEMACRO_TEST_BACKEND={other:?}: expected memcached, redis or filesystem")
        }
    }
}

/// A fresh cache of the selected backend.
pub fn cache() -> Cache {
    builder().build().unwrap()
}

/// Two caches sharing one store, as two processes sharing one memcached would.
pub fn two_processes() -> (Cache, Cache) {
    let prefix = format!("shared{}:", std::process::id());
    let b = || match selected().as_str() {
        "memcached" => Some(
            Cache::builder()
                .memcached([server().addr()])
                .key_prefix(prefix.clone()),
        ),
        "redis" => Some(
            Cache::builder()
                .redis(redis_server().url())
                .key_prefix(prefix.clone()),
        ),
        "filesystem" => Some(Cache::builder().filesystem(fs_dir(usize::MAX))),
        _ => None,
    };
    match (b(), b()) {
        (Some(x), Some(y)) => (x.build().unwrap(), y.build().unwrap()),
        _ => {
            let shared = Arc::new(SimpleBackend::new(10_000));
            (
                Cache::builder().backend(shared.clone()).build().unwrap(),
                Cache::builder().backend(shared).build().unwrap(),
            )
        }
    }
}

/// Sleeps until an entry written now with lifetime `ttl` has surely expired: memcached
/// counts whole seconds.
pub fn past(ttl: Duration) {
    let wait = if on_memcached() {
        Duration::from_secs(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
            + Duration::from_millis(1100)
    } else {
        ttl + Duration::from_millis(150)
    };
    std::thread::sleep(wait);
}

/// Counts the requests that reach the backend (a real `SimpleBackend` behind it).
pub struct Counting {
    pub inner: SimpleBackend,
    pub requests: AtomicUsize,
    pub keys_read: AtomicUsize,
    /// Every key written with `set` or `add`, and its lifetime.
    pub writes: Mutex<Vec<(String, Option<Duration>)>>,
}

impl Counting {
    pub fn cache() -> (Cache, Arc<Counting>) {
        let backend = Arc::new(Counting {
            inner: SimpleBackend::new(10_000),
            requests: AtomicUsize::new(0),
            keys_read: AtomicUsize::new(0),
            writes: Mutex::new(Vec::new()),
        });
        let cache = Cache::builder().backend(backend.clone()).build().unwrap();
        (cache, backend)
    }
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn keys_read(&self) -> usize {
        self.keys_read.load(Ordering::SeqCst)
    }
    fn hit(&self, keys: usize) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.keys_read.fetch_add(keys, Ordering::SeqCst);
    }
}

impl Backend for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn is_blocking(&self) -> bool {
        false
    }
    fn keeps_objects(&self) -> bool {
        true
    }
    fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        self.hit(1);
        self.inner.get(key)
    }
    fn get_pair(&self, a: &str, b: &str) -> Result<(Option<Value>, Option<Value>), Error> {
        self.hit(2);
        self.inner.get_pair(a, b)
    }
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error> {
        self.hit(keys.len());
        self.inner.get_many(keys)
    }
    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), Error> {
        self.hit(0);
        self.writes.lock().unwrap().push((key.to_owned(), ttl));
        self.inner.set(key, value, ttl)
    }
    fn add(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<bool, Error> {
        self.hit(0);
        self.writes.lock().unwrap().push((key.to_owned(), ttl));
        self.inner.add(key, value, ttl)
    }
    fn set_many(&self, items: &[(&str, Value)], ttl: Option<Duration>) -> Result<(), Error> {
        self.hit(0);
        self.inner.set_many(items, ttl)
    }
    fn delete(&self, key: &str) -> Result<bool, Error> {
        self.hit(0);
        self.inner.delete(key)
    }
    fn delete_many(&self, keys: &[&str]) -> Result<usize, Error> {
        self.hit(0);
        self.inner.delete_many(keys)
    }
    fn inc(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.hit(0);
        self.inner.inc(key, delta)
    }
    fn clear(&self) -> Result<(), Error> {
        self.hit(0);
        self.inner.clear()
    }
}

/// A backend that fails every request, as an unreachable server would.
pub struct Broken;

impl Backend for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn get(&self, _: &str) -> Result<Option<Value>, Error> {
        Err(Error::Backend("connection refused".into()))
    }
    fn get_many(&self, _: &[&str]) -> Result<Vec<Option<Value>>, Error> {
        Err(Error::Backend("connection refused".into()))
    }
    fn set(&self, _: &str, _: Value, _: Option<Duration>) -> Result<(), Error> {
        Err(Error::Backend("connection refused".into()))
    }
    fn add(&self, _: &str, _: Value, _: Option<Duration>) -> Result<bool, Error> {
        Err(Error::Backend("connection refused".into()))
    }
    fn set_many(&self, _: &[(&str, Value)], _: Option<Duration>) -> Result<(), Error> {
        Err(Error::Backend("connection refused".into()))
    }
    fn delete(&self, _: &str) -> Result<bool, Error> {
        Err(Error::Backend("connection refused".into()))
    }
    fn delete_many(&self, _: &[&str]) -> Result<usize, Error> {
        Err(Error::Backend("connection refused".into()))
    }
    fn inc(&self, _: &str, _: i64) -> Result<i64, Error> {
        Err(Error::Backend("connection refused".into()))
    }
    fn clear(&self) -> Result<(), Error> {
        Err(Error::Backend("connection refused".into()))
    }
}

/// A call counter for function bodies.
#[derive(Default)]
pub struct Calls(AtomicUsize);

impl Calls {
    pub const fn new() -> Self {
        Calls(AtomicUsize::new(0))
    }
    pub fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}
