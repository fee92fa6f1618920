//! `async fn` with both attributes, on a current-thread and a multi-thread tokio runtime.

mod common;

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use cachemacro::{cached, memoize, Backend, Cache, Error, Value};
use common::{cache as simple, Calls};

static CACHE: LazyLock<Cache> = LazyLock::new(simple);
static FETCH_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE, timeout = 60)]
async fn fetch_user(id: u32) -> Result<String, String> {
    FETCH_CALLS.bump();
    tokio::time::sleep(Duration::from_millis(10)).await;
    if id == 0 {
        return Err("no user 0".into());
    }
    let name = format!("user{id}");
    Ok(name)
}

#[tokio::test]
async fn async_memoize_and_helpers() {
    assert_eq!(fetch_user(1).await.unwrap(), "user1");
    assert_eq!(fetch_user(1).await.unwrap(), "user1");
    assert_eq!(FETCH_CALLS.get(), 1);
    assert!(fetch_user(0).await.is_err());
    assert!(fetch_user(0).await.is_err());
    assert_eq!(FETCH_CALLS.get(), 3, "errors are not cached");

    fetch_user_delete_memoized(1).await.unwrap();
    fetch_user(1).await.unwrap();
    assert_eq!(FETCH_CALLS.get(), 4);
    fetch_user_delete_memoized_all().await.unwrap();
    fetch_user(1).await.unwrap();
    assert_eq!(FETCH_CALLS.get(), 5);
    fetch_user_delete_memoized_verhash().await.unwrap();
    fetch_user(1).await.unwrap();
    assert_eq!(FETCH_CALLS.get(), 6);
    assert!(fetch_user_make_cache_key(1)
        .await
        .starts_with("async_fns::fetch_user:"));
    assert_eq!(fetch_user_uncached(1).await.unwrap(), "user1");
    assert_eq!(FETCH_CALLS.get(), 7);
}

static PAGE_CALLS: Calls = Calls::new();

#[cached(cache = CACHE, key = format!("view/{path}"), timeout = 5)]
async fn page(path: &str) -> String {
    PAGE_CALLS.bump();
    format!("<p>{path}</p>")
}

#[tokio::test]
async fn async_cached_and_helpers() {
    assert_eq!(page("/a").await, "<p>/a</p>");
    assert_eq!(page("/a").await, "<p>/a</p>");
    assert_eq!(PAGE_CALLS.get(), 1);
    assert_eq!(page_make_cache_key("/a").await, "view//a");
    assert!(CACHE.has("view//a").unwrap());
    page_delete_cached("/a").await.unwrap();
    page("/a").await;
    assert_eq!(PAGE_CALLS.get(), 2);
}

static STAMPEDE_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE)]
async fn slow(a: u32) -> u32 {
    STAMPEDE_CALLS.bump();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_async_misses_wait_without_blocking_the_runtime() {
    // On one thread, followers must yield to let the leader finish.
    let all = futures_join(vec![slow(5), slow(5), slow(5), slow(5)]).await;
    assert_eq!(all, vec![5, 5, 5, 5]);
    assert_eq!(STAMPEDE_CALLS.get(), 1);
}

async fn futures_join<F: std::future::Future<Output = u32> + Send + 'static>(
    futs: Vec<F>,
) -> Vec<u32> {
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

struct Person {
    id: u64,
}

impl std::hash::Hash for Person {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

static METHOD_CALLS: Calls = Calls::new();

impl Person {
    #[memoize(cache = CACHE)]
    async fn roles(&self, scope: u8) -> Vec<u64> {
        METHOD_CALLS.bump();
        vec![self.id, u64::from(scope)]
    }
}

#[tokio::test]
async fn async_methods() {
    let p = Person { id: 9 };
    assert_eq!(p.roles(1).await, vec![9, 1]);
    assert_eq!(p.roles(1).await, vec![9, 1]);
    assert_eq!(METHOD_CALLS.get(), 1);
    p.roles_delete_memoized(1).await.unwrap();
    p.roles(1).await;
    Person::roles_delete_memoized_all().await.unwrap();
    p.roles(1).await;
    assert_eq!(METHOD_CALLS.get(), 3);
}

/// A backend that blocks (like a network client) and records which threads called it.
struct Slow {
    inner: cachemacro::backends::SimpleBackend,
    threads: Mutex<Vec<String>>,
}

impl Slow {
    fn note(&self) {
        std::thread::sleep(Duration::from_millis(5));
        let name = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        self.threads.lock().unwrap().push(name);
    }
}

impl Backend for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }
    fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        self.note();
        self.inner.get(key)
    }
    fn get_pair(&self, a: &str, b: &str) -> Result<(Option<Value>, Option<Value>), Error> {
        self.note();
        self.inner.get_pair(a, b)
    }
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error> {
        self.note();
        self.inner.get_many(keys)
    }
    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), Error> {
        self.note();
        self.inner.set(key, value, ttl)
    }
    fn add(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<bool, Error> {
        self.note();
        self.inner.add(key, value, ttl)
    }
    fn set_many(&self, items: &[(&str, Value)], ttl: Option<Duration>) -> Result<(), Error> {
        self.note();
        self.inner.set_many(items, ttl)
    }
    fn delete(&self, key: &str) -> Result<bool, Error> {
        self.note();
        self.inner.delete(key)
    }
    fn delete_many(&self, keys: &[&str]) -> Result<usize, Error> {
        self.note();
        self.inner.delete_many(keys)
    }
    fn inc(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.note();
        self.inner.inc(key, delta)
    }
    fn clear(&self) -> Result<(), Error> {
        self.note();
        self.inner.clear()
    }
}

static SLOW: LazyLock<Arc<Slow>> = LazyLock::new(|| {
    Arc::new(Slow {
        inner: cachemacro::backends::SimpleBackend::new(100),
        threads: Mutex::new(Vec::new()),
    })
});
static SLOW_CACHE: LazyLock<Cache> =
    LazyLock::new(|| Cache::builder().backend(SLOW.clone()).build().unwrap());

#[memoize(cache = SLOW_CACHE)]
async fn through_slow_backend(a: u32) -> u32 {
    a + 1
}

#[test]
fn blocking_backends_are_called_off_the_runtime_threads() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tokio-worker")
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(through_slow_backend(1).await, 2);
        assert_eq!(through_slow_backend(1).await, 2);
        through_slow_backend_delete_memoized_all().await.unwrap();
    });
    let threads = SLOW.threads.lock().unwrap();
    assert!(threads.len() >= 4, "{threads:?}");
    assert!(
        threads.iter().all(|t| !t.starts_with("tokio-worker")),
        "backend called on a runtime thread: {threads:?}"
    );
}
