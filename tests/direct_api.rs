//! The Flask-named direct API on `Cache`, on the `simple` and `null` backends.

use std::time::Duration;

use cachemacro::{make_template_fragment_key, Cache, Timeout};
use serde::{Deserialize, Serialize};

mod common;

use common::{cache as simple, on_memcached, past};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Comment {
    author: String,
    likes: u32,
}

#[test]
fn get_set_add_delete_has() {
    let cache = simple();
    assert_eq!(cache.get::<String>("k").unwrap(), None);
    cache.set("k", &"v".to_owned(), 60).unwrap();
    assert_eq!(cache.get::<String>("k").unwrap().as_deref(), Some("v"));
    assert!(cache.has("k").unwrap());
    assert!(
        !cache.add("k", &"other".to_owned(), 60).unwrap(),
        "add does not overwrite"
    );
    assert_eq!(cache.get::<String>("k").unwrap().as_deref(), Some("v"));
    assert!(cache.add("fresh", &1u8, 60).unwrap());
    assert!(cache.delete("k").unwrap());
    assert!(!cache.delete("k").unwrap());
    assert!(!cache.has("k").unwrap());

    let c = Comment {
        author: "ann".into(),
        likes: 3,
    };
    cache.set("comment", &c, Timeout::Never).unwrap();
    assert_eq!(cache.get::<Comment>("comment").unwrap(), Some(c));
}

#[test]
fn wrong_type_reads_are_misses_counted_as_errors() {
    let cache = simple();
    cache.set("k", &"text".to_owned(), 60).unwrap();
    assert_eq!(cache.get::<u32>("k").unwrap(), None);
    assert_eq!(cache.stats().errors, 1);
    // Compatible encodings read across types, as they would from a remote backend.
    cache.set("n", &7u8, 60).unwrap();
    assert_eq!(cache.get::<u64>("n").unwrap(), Some(7));
}

#[test]
fn many_at_once() {
    let cache = simple();
    let (a, b) = (1u32, 2u32);
    cache.set_many([("a", &a), ("b", &b)], 60).unwrap();
    assert_eq!(
        cache.get_many::<u32>(&["a", "missing", "b"]).unwrap(),
        vec![Some(1), None, Some(2)]
    );
    assert_eq!(cache.delete_many(&["a", "b", "missing"]).unwrap(), 2);
    assert_eq!(
        cache.get_many::<u32>(&["a", "b"]).unwrap(),
        vec![None, None]
    );
}

#[test]
fn counters() {
    let cache = simple();
    assert_eq!(cache.inc("n", 1).unwrap(), 1, "missing counts as 0");
    assert_eq!(cache.inc("n", 5).unwrap(), 6);
    assert_eq!(cache.dec("n", 2).unwrap(), 4);
    assert_eq!(cache.get::<i64>("n").unwrap(), Some(4));
    cache.set("m", &10u32, 60).unwrap();
    assert_eq!(
        cache.inc("m", 1).unwrap(),
        11,
        "works on values written with set"
    );
    cache.set("s", &"x".to_owned(), 60).unwrap();
    assert!(cache.inc("s", 1).is_err(), "not a number");
    if !on_memcached() {
        assert!(
            cache.inc("n", i64::MAX).is_err(),
            "overflow is an error, not a wrap"
        );
    }
}

#[test]
fn expiry_per_entry() {
    let cache = simple();
    cache
        .set("short", &1u8, Duration::from_millis(100))
        .unwrap();
    cache.set("long", &1u8, 60).unwrap();
    cache.set("forever", &1u8, 0).unwrap();
    assert!(cache.has("short").unwrap());
    past(Duration::from_millis(100));
    assert!(!cache.has("short").unwrap());
    assert_eq!(cache.get::<u8>("short").unwrap(), None);
    assert!(
        cache.add("short", &2u8, 60).unwrap(),
        "an expired key can be added again"
    );
    assert!(cache.has("long").unwrap() && cache.has("forever").unwrap());
}

#[test]
fn default_timeout_applies_to_timeout_default() {
    let cache = common::builder()
        .default_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    cache.set("d", &1u8, Timeout::Default).unwrap();
    cache.set("n", &1u8, Timeout::Never).unwrap();
    past(Duration::from_millis(100));
    assert!(!cache.has("d").unwrap());
    assert!(cache.has("n").unwrap());
}

#[test]
fn threshold_bounds_the_entry_count() {
    let backend = std::sync::Arc::new(cachemacro::backends::SimpleBackend::new(50));
    let cache = Cache::builder().backend(backend.clone()).build().unwrap();
    for i in 0..1000u32 {
        cache.set(&format!("k{i}"), &i, 60).unwrap();
    }
    assert!(backend.len() <= 50, "{} entries", backend.len());
    assert!(backend.len() >= 25, "{} entries", backend.len());
    // The newest entries are there.
    assert_eq!(cache.get::<u32>("k999").unwrap(), Some(999));
}

#[test]
fn clear_removes_everything() {
    let cache = simple();
    cache.set("a", &1u8, 60).unwrap();
    cache.clear().unwrap();
    assert!(!cache.has("a").unwrap());
}

#[test]
fn any_str_is_a_key() {
    let cache = simple();
    let long = "x".repeat(10_000);
    for key in [
        "",
        " spaces and\nnewlines ",
        "../../etc/passwd",
        "\0nul",
        long.as_str(),
        "ключ",
    ] {
        cache.set(key, &key.len(), 60).unwrap();
        assert_eq!(cache.get::<usize>(key).unwrap(), Some(key.len()), "{key:?}");
    }
}

#[test]
fn null_caches_nothing() {
    let cache = Cache::builder().null().build().unwrap();
    cache.set("a", &1u8, 60).unwrap();
    assert_eq!(cache.get::<u8>("a").unwrap(), None);
    assert!(!cache.has("a").unwrap());
    assert!(cache.add("a", &1u8, 60).unwrap());
    assert!(!cache.delete("a").unwrap());
    assert_eq!(cache.get_many::<u8>(&["a", "b"]).unwrap(), vec![None, None]);
    assert_eq!(cache.inc("a", 3).unwrap(), 3);
    cache.clear().unwrap();
}

#[test]
fn template_fragment_keys_match_flask_caching() {
    assert_eq!(
        make_template_fragment_key("item", &["7"]),
        "_template_fragment_cache_item_7"
    );
    assert_eq!(
        make_template_fragment_key("item", &["a", "b"]),
        "_template_fragment_cache_item_a_b"
    );
    assert_eq!(
        make_template_fragment_key("sidebar", &[]),
        "_template_fragment_cache_sidebar"
    );
}

#[test]
fn cache_is_cheap_to_clone_and_shared() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<Cache>();
    let a = simple();
    let b = a.clone();
    a.set("x", &1u8, 60).unwrap();
    assert_eq!(b.get::<u8>("x").unwrap(), Some(1));
    assert_eq!(b.stats().sets, 1, "clones share counters");
}

#[test]
fn timeouts_from_numbers_and_durations() {
    assert_eq!(Timeout::from(0u64), Timeout::Never);
    assert_eq!(Timeout::from(0), Timeout::Never);
    assert_eq!(Timeout::from(5), Timeout::After(Duration::from_secs(5)));
    assert_eq!(Timeout::from(Duration::ZERO), Timeout::Never);
    assert_eq!(Timeout::from(None::<Duration>), Timeout::Default);
}

#[test]
fn the_selected_backend_is_the_one_in_use() {
    let expected = match std::env::var("CACHEMACRO_TEST_BACKEND")
        .unwrap_or_default()
        .as_str()
    {
        "" => "simple".to_owned(),
        other => other.to_owned(),
    };
    assert_eq!(simple().backend().name(), expected);
}
