//! `cachemacro::session::CacheSessionStore`: a conformance suite of the `SessionStore` trait
//! (create, load, save, delete, expiry, id collisions, keys) on every backend (in memory,
//! filesystem, memcached, redis), lifetimes past memcached's 30-day limit, and an axum app
//! counting visits in a session kept in memcached, driven over real HTTP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use cachemacro::session::{CacheSessionStore, CREATE_ATTEMPTS};
use cachemacro::{Backend, Cache, Error, Value};
use cachemacro_testkit::{Memcached, Redis, ScratchDir};
use hyper::{header, StatusCode};
use serde_json::json;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;
use tower_sessions::{Session, SessionManagerLayer, SessionStore};

mod common;
mod web;

/// A record with some data of every JSON kind, expiring `lifetime` from now.
fn record(lifetime: time::Duration) -> Record {
    let data = json!({
        "user": "ada",
        "visits": 3,
        "balance": -12,
        "ratio": 0.25,
        "admin": false,
        "nothing": null,
        "tags": ["a", "b"],
        "nested": {"x": [1, {"y": "z"}]},
    });
    Record {
        id: Id::default(),
        data: serde_json::from_value(data).unwrap(),
        expiry_date: OffsetDateTime::now_utc() + lifetime,
    }
}

fn session_key(id: &Id) -> String {
    format!("session:{id}")
}

/// The keys on a memcached server (its `metadump` URL-encodes them; ids are URL-safe base64,
/// so only the prefix's `:` comes back encoded).
fn memcached_keys(server: &Memcached) -> Vec<String> {
    server
        .keys()
        .into_iter()
        .map(|k| k.replace("%3A", ":"))
        .collect()
}

/// The whole `SessionStore` contract on `cache`.
async fn conformance(cache: &Cache) {
    let store = CacheSessionStore::new(cache.clone());
    create_then_load(&store, cache).await;
    colliding_ids(&store).await;
    save(&store, cache).await;
    delete(&store, cache).await;
    keys(cache).await;
    expired_records(&store, cache).await;
    undecodable_values(&store, cache).await;
    forty_days(&store).await;
    expiry(&store, cache).await;
}

async fn create_then_load(store: &CacheSessionStore, cache: &Cache) {
    let mut r = record(time::Duration::minutes(10));
    let id = r.id;
    store.create(&mut r).await.unwrap();
    assert_eq!(r.id, id, "no collision, the id stays");
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r.clone()));
    assert!(cache.has(&session_key(&r.id)).unwrap());
    assert_eq!(
        store.load(&Id::default()).await.unwrap(),
        None,
        "unknown id"
    );
}

async fn colliding_ids(store: &CacheSessionStore) {
    let mut first = record(time::Duration::minutes(10));
    store.create(&mut first).await.unwrap();
    let taken = first.id;

    let mut second = record(time::Duration::minutes(10));
    second.id = taken;
    second.data.insert("who".into(), json!("second"));
    store.create(&mut second).await.unwrap();
    assert_ne!(second.id, taken, "a new id was drawn");
    assert_eq!(
        store.load(&taken).await.unwrap(),
        Some(first),
        "the first session is untouched"
    );
    assert_eq!(store.load(&second.id).await.unwrap(), Some(second));
}

async fn save(store: &CacheSessionStore, cache: &Cache) {
    let mut r = record(time::Duration::minutes(10));
    store.create(&mut r).await.unwrap();
    r.data.insert("visits".into(), json!(4));
    r.expiry_date += time::Duration::minutes(5);
    store.save(&r).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r.clone()));

    // Evicted (or expired) meanwhile: `save` writes it again.
    assert!(cache.delete(&session_key(&r.id)).unwrap());
    assert_eq!(store.load(&r.id).await.unwrap(), None);
    r.data.insert("visits".into(), json!(5));
    store.save(&r).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r.clone()));

    // A record never created: `save` stores it too.
    let fresh = record(time::Duration::minutes(10));
    store.save(&fresh).await.unwrap();
    assert_eq!(store.load(&fresh.id).await.unwrap(), Some(fresh));
}

async fn delete(store: &CacheSessionStore, cache: &Cache) {
    let mut r = record(time::Duration::minutes(10));
    store.create(&mut r).await.unwrap();
    store.delete(&r.id).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), None);
    assert!(!cache.has(&session_key(&r.id)).unwrap());
    store.delete(&r.id).await.unwrap();
    store.delete(&Id::default()).await.unwrap();
}

async fn keys(cache: &Cache) {
    let store = CacheSessionStore::new(cache.clone());
    let mut r = record(time::Duration::minutes(10));
    store.create(&mut r).await.unwrap();
    assert_eq!(store.key(&r.id), session_key(&r.id));
    assert!(cache.has(&format!("session:{}", r.id)).unwrap());

    let custom = CacheSessionStore::new(cache.clone()).with_prefix("app1/sess/");
    assert_eq!(custom.prefix(), "app1/sess/");
    let mut c = record(time::Duration::minutes(10));
    custom.create(&mut c).await.unwrap();
    assert!(cache.has(&format!("app1/sess/{}", c.id)).unwrap());
    assert!(!cache.has(&session_key(&c.id)).unwrap());
    assert_eq!(custom.load(&c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(store.load(&c.id).await.unwrap(), None, "other prefix");
    assert_eq!(custom.load(&r.id).await.unwrap(), None, "other prefix");
    custom.delete(&c.id).await.unwrap();
    assert!(!cache.has(&format!("app1/sess/{}", c.id)).unwrap());
}

async fn expired_records(store: &CacheSessionStore, cache: &Cache) {
    // `create` of a record already past its expiry stores nothing.
    let mut past = record(-time::Duration::seconds(5));
    store.create(&mut past).await.unwrap();
    assert!(!cache.has(&session_key(&past.id)).unwrap());

    // `save` of one removes what was stored.
    let mut r = record(time::Duration::minutes(10));
    store.create(&mut r).await.unwrap();
    r.expiry_date = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    store.save(&r).await.unwrap();
    assert!(!cache.has(&session_key(&r.id)).unwrap());
    assert_eq!(store.load(&r.id).await.unwrap(), None);

    // A stored record past its expiry date (a backend that expires late) is not loaded.
    let stale = record(-time::Duration::seconds(1));
    cache.set(&session_key(&stale.id), &stale, 60).unwrap();
    assert_eq!(store.load(&stale.id).await.unwrap(), None);
}

async fn undecodable_values(store: &CacheSessionStore, cache: &Cache) {
    let id = Id::default();
    cache
        .set(&session_key(&id), &"not a session".to_owned(), 60)
        .unwrap();
    assert_eq!(store.load(&id).await.unwrap(), None);
}

/// Longer than memcached's 30-day limit of relative lifetimes.
async fn forty_days(store: &CacheSessionStore) {
    let mut r = record(time::Duration::days(40));
    store.create(&mut r).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r.clone()));
    r.data.insert("visits".into(), json!(99));
    store.save(&r).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r));
}

/// Records live until their expiry date, in the backend too (memcached counts whole
/// seconds: at most 2 s here).
async fn expiry(store: &CacheSessionStore, cache: &Cache) {
    let mut created = record(time::Duration::seconds(1));
    store.create(&mut created).await.unwrap();
    let mut saved = record(time::Duration::minutes(10));
    store.create(&mut saved).await.unwrap();
    saved.expiry_date = OffsetDateTime::now_utc() + time::Duration::seconds(1);
    store.save(&saved).await.unwrap();
    let lasting = {
        let mut r = record(time::Duration::minutes(10));
        store.create(&mut r).await.unwrap();
        r
    };
    assert!(store.load(&created.id).await.unwrap().is_some());
    assert!(store.load(&saved.id).await.unwrap().is_some());

    tokio::time::sleep(Duration::from_millis(3200)).await;
    for r in [&created, &saved] {
        assert_eq!(store.load(&r.id).await.unwrap(), None);
        assert!(
            !cache.has(&session_key(&r.id)).unwrap(),
            "the backend expired it too"
        );
    }
    assert_eq!(store.load(&lasting.id).await.unwrap(), Some(lasting));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_in_memory() {
    conformance(&Cache::builder().simple().build().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_the_filesystem() {
    let dir = ScratchDir::new("sessions");
    conformance(&Cache::builder().filesystem(dir.path()).build().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_memcached() {
    let server = Memcached::start();
    let cache = Cache::builder()
        .memcached([server.addr()])
        .key_prefix("conf:")
        .build()
        .unwrap();
    conformance(&cache).await;
    assert_eq!(cache.stats().errors, 1, "only the undecodable value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_redis() {
    let server = Redis::start();
    let cache = Cache::builder()
        .redis(server.url())
        .key_prefix("conf:")
        .build()
        .unwrap();
    conformance(&cache).await;
    assert_eq!(cache.stats().errors, 1, "only the undecodable value");
}

/// On the wire, without a cache key prefix: the key is exactly `session:{id}`, and a
/// 40-day lifetime (sent as an absolute time) keeps the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_keeps_forty_day_sessions_under_flask_session_keys() {
    let server = Memcached::start();
    let cache = Cache::builder().memcached([server.addr()]).build().unwrap();
    let store = CacheSessionStore::new(cache);
    let mut r = record(time::Duration::days(40));
    store.create(&mut r).await.unwrap();
    assert_eq!(memcached_keys(&server), vec![session_key(&r.id)]);
    assert!(server.raw_get(&session_key(&r.id)).is_some());
    // Still there a couple of memcached clock ticks later (a 40-day lifetime sent as
    // relative seconds would be a 1970 date, expired at once).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r.clone()));
    r.data.insert("visits".into(), json!(7));
    store.save(&r).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r));
}

/// The lifetime reaches the backend: redis reports the seconds left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_expires_sessions_at_their_expiry_date() {
    let server = Redis::start();
    let cache = Cache::builder().redis(server.url()).build().unwrap();
    let store = CacheSessionStore::new(cache);
    let mut r = record(time::Duration::days(40));
    store.create(&mut r).await.unwrap();
    let ttl: i64 = server
        .command(&["TTL", &session_key(&r.id)])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let forty_days = 40 * 86_400;
    assert!(
        (forty_days - 5..=forty_days + 1).contains(&ttl),
        "TTL {ttl}"
    );
}

/// The lifetime handed to the backend: the seconds left, rounded up.
#[tokio::test]
async fn lifetimes_are_the_seconds_left_rounded_up() {
    let (cache, backend) = common::Counting::cache();
    let store = CacheSessionStore::new(cache);
    let mut r = record(time::Duration::days(40) + time::Duration::milliseconds(500));
    store.create(&mut r).await.unwrap();
    r.expiry_date = OffsetDateTime::now_utc() + time::Duration::milliseconds(300);
    store.save(&r).await.unwrap();
    let writes = backend.writes.lock().unwrap().clone();
    let key = session_key(&r.id);
    assert_eq!(
        writes,
        vec![
            (key.clone(), Some(Duration::from_secs(40 * 86_400 + 1))),
            (key, Some(Duration::from_secs(1))),
        ]
    );
}

/// `CacheSessionStore::global()` (and `Default`) use the process-wide cache.
#[tokio::test]
async fn the_global_store_uses_the_process_wide_cache() {
    let store = CacheSessionStore::default();
    let mut r = record(time::Duration::minutes(10));
    store.create(&mut r).await.unwrap();
    assert!(cachemacro::cache().has(&session_key(&r.id)).unwrap());
    assert_eq!(
        CacheSessionStore::global().load(&r.id).await.unwrap(),
        Some(r)
    );
}

#[tokio::test]
async fn cache_errors_are_backend_errors() {
    let cache = Cache::builder()
        .backend(Arc::new(common::Broken))
        .build()
        .unwrap();
    let store = CacheSessionStore::new(cache);
    let mut r = record(time::Duration::minutes(10));
    let is_backend = |e: session_store::Error| matches!(e, session_store::Error::Backend(_));
    assert!(is_backend(store.create(&mut r).await.unwrap_err()));
    assert!(is_backend(store.save(&r).await.unwrap_err()));
    assert!(is_backend(store.load(&r.id).await.unwrap_err()));
    assert!(is_backend(store.delete(&r.id).await.unwrap_err()));
}

/// A backend whose `add` always finds the key taken (and counts its calls).
#[derive(Default)]
struct Taken {
    adds: AtomicUsize,
}

impl Backend for Taken {
    fn name(&self) -> &'static str {
        "taken"
    }
    fn get(&self, _: &str) -> Result<Option<Value>, Error> {
        Ok(None)
    }
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error> {
        Ok(vec![None; keys.len()])
    }
    fn set(&self, _: &str, _: Value, _: Option<Duration>) -> Result<(), Error> {
        Ok(())
    }
    fn add(&self, _: &str, _: Value, _: Option<Duration>) -> Result<bool, Error> {
        self.adds.fetch_add(1, Ordering::SeqCst);
        Ok(false)
    }
    fn set_many(&self, _: &[(&str, Value)], _: Option<Duration>) -> Result<(), Error> {
        Ok(())
    }
    fn delete(&self, _: &str) -> Result<bool, Error> {
        Ok(false)
    }
    fn delete_many(&self, _: &[&str]) -> Result<usize, Error> {
        Ok(0)
    }
    fn inc(&self, _: &str, delta: i64) -> Result<i64, Error> {
        Ok(delta)
    }
    fn clear(&self) -> Result<(), Error> {
        Ok(())
    }
}

#[tokio::test]
async fn create_gives_up_after_a_bounded_number_of_collisions() {
    let taken = Arc::new(Taken::default());
    let cache = Cache::builder().backend(taken.clone()).build().unwrap();
    let store = CacheSessionStore::new(cache.clone());
    let mut r = record(time::Duration::minutes(10));
    let err = store.create(&mut r).await.unwrap_err();
    assert!(matches!(err, session_store::Error::Backend(_)), "{err}");
    assert_eq!(cache.stats().sets, 0);
    assert_eq!(taken.adds.load(Ordering::SeqCst), CREATE_ATTEMPTS);
}

/// The visit counter of the end-to-end test.
async fn visit(session: Session) -> String {
    let n = session.get::<u64>("visits").await.unwrap().unwrap_or(0) + 1;
    session.insert("visits", n).await.unwrap();
    n.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_app_counts_visits_in_a_memcached_session() {
    let server = Memcached::start();
    let cache = Cache::builder().memcached([server.addr()]).build().unwrap();
    let store = CacheSessionStore::new(cache);
    let app = Router::new()
        .route("/", get(visit))
        .layer(SessionManagerLayer::new(store.clone()).with_secure(false));
    let http = web::Http::new(web::serve(app).await);
    // One browser: sends back the cookie it was given.
    let mut cookie: Option<String> = None;
    let browse = |cookie: Option<String>| {
        let http = http.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                cookie.iter().map(|c| ("cookie", c.as_str())).collect();
            let reply = http.get_with("/", &headers).await;
            assert_eq!(reply.status, StatusCode::OK);
            let set_cookie = reply
                .headers
                .get(header::SET_COOKIE)
                .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
            (reply.text(), set_cookie)
        }
    };
    for expected in 1..=3 {
        let (body, set_cookie) = browse(cookie.clone()).await;
        assert_eq!(body, expected.to_string());
        if let Some(c) = set_cookie {
            cookie = Some(c);
        }
    }

    // The session is in memcached under `session:{id}`, with the count.
    let cookie = cookie.expect("a session cookie");
    let id: Id = cookie.strip_prefix("id=").unwrap().parse().unwrap();
    assert_eq!(memcached_keys(&server), vec![session_key(&id)]);
    let record = store.load(&id).await.unwrap().unwrap();
    assert_eq!(record.data["visits"], json!(3));

    // Another browser (no cookie) starts its own count.
    let (body, other) = browse(None).await;
    assert_eq!(body, "1");
    assert_ne!(other.as_deref(), Some(cookie.as_str()));
    assert_eq!(memcached_keys(&server).len(), 2);

    // A deleted session starts again.
    store.delete(&id).await.unwrap();
    let (body, _) = browse(Some(cookie)).await;
    assert_eq!(body, "1");
}
