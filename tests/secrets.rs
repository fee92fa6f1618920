//! Secrets never leave the process: passwords and the userinfo of URLs appear in no `Debug`,
//! `Display`, error or log line.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use cachemacro::{Cache, CacheConfig};

const SECRETS: [&str; 6] = [
    "S3cret-memcached",
    "S3cret-redis-url",
    "S3cret-redis-pass",
    "S3cret-bad-url",
    "S3cret-builder",
    "S3cret-sasl",
];

/// Every event and span field, formatted, into one string.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        span.record(&mut Fields(&mut self.0.lock().unwrap()));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Fields(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut out = self.0.lock().unwrap();
        out.push('\n');
        event.record(&mut Fields(&mut out));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows a secret: {text}");
    }
}

#[test]
fn no_secret_in_debug_display_errors_or_logs() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).unwrap();
    let mut shown = String::new();

    // Configurations, as loaded from JSON (or the environment).
    let config: CacheConfig = serde_json::from_value(serde_json::json!({
        "CACHE_TYPE": "redis",
        "CACHE_MEMCACHED_USERNAME": "app",
        "CACHE_MEMCACHED_PASSWORD": SECRETS[0],
        "CACHE_REDIS_URL": format!("redis://app:{}@127.0.0.1:1/0", SECRETS[1]),
        "CACHE_REDIS_PASSWORD": SECRETS[2],
    }))
    .unwrap();
    writeln!(shown, "{config:?} {config:#?}").unwrap();
    assert!(shown.contains("***"), "{shown}");

    // An unparsable URL: the error names the variable, not the password.
    let bad: CacheConfig = serde_json::from_value(serde_json::json!({
        "CACHE_TYPE": "redis",
        "CACHE_REDIS_URL": format!("redis://app:{}@127.0.0.1:notaport/0", SECRETS[3]),
    }))
    .unwrap();
    let err = Cache::from_config(bad).unwrap_err();
    writeln!(shown, "{err} {err:?}").unwrap();
    assert!(err.to_string().contains("CACHE_REDIS_URL"), "{err}");

    // Builders, and caches over servers that are not there (their errors are logged).
    let builder = Cache::builder()
        .redis(format!("redis://:{}@127.0.0.1:1/0", SECRETS[4]))
        .redis_password(SECRETS[2]);
    writeln!(shown, "{builder:?}").unwrap();
    if let Ok(cache) = builder.build() {
        writeln!(shown, "{cache:?}").unwrap();
        let err = cache.get::<u32>("k").unwrap_err();
        writeln!(shown, "{err} {err:?}").unwrap();
    }
    let builder = Cache::builder()
        .memcached(["127.0.0.1:1"])
        .sasl("app", SECRETS[5]);
    writeln!(shown, "{builder:?}").unwrap();
    let cache = builder.build().unwrap();
    writeln!(shown, "{cache:?}").unwrap();
    let err = cache.set("k", &1u32, 0).unwrap_err();
    writeln!(shown, "{err} {err:?}").unwrap();
    match Cache::from_config(config) {
        Ok(cache) => writeln!(shown, "{cache:?} {:?}", cache.get::<u32>("k")).unwrap(),
        Err(e) => writeln!(shown, "{e} {e:?}").unwrap(),
    }

    assert_clean("formatting", &shown);
    let logs = capture.0.lock().unwrap().clone();
    assert!(
        logs.contains("127.0.0.1:1"),
        "the failures were logged: {logs}"
    );
    assert_clean("the logs", &logs);
}
