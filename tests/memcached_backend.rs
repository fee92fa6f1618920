//! The memcached backend against real memcached servers started by the tests.

use std::sync::OnceLock;
use std::time::Duration;

use cachemacro::backends::memcached::MemcachedOptions;
use cachemacro::{memoize, Cache, Error};
use cachemacro_testkit::Memcached;
use serde::{Deserialize, Serialize};

fn cache_on(servers: &[&Memcached], prefix: &str) -> Cache {
    Cache::builder()
        .memcached(servers.iter().map(|m| m.addr()))
        .key_prefix(prefix)
        .build()
        .unwrap()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Comment {
    author: String,
    likes: u32,
}

#[test]
fn every_backend_method() {
    let server = Memcached::start();
    let cache = cache_on(&[&server], "");
    assert_eq!(cache.backend().name(), "memcached");

    assert_eq!(cache.get::<String>("k").unwrap(), None);
    cache.set("k", &"v".to_owned(), 60).unwrap();
    assert_eq!(cache.get::<String>("k").unwrap().as_deref(), Some("v"));
    assert!(cache.has("k").unwrap());
    assert!(!cache.add("k", &"w".to_owned(), 60).unwrap());
    assert!(cache.add("k2", &"w".to_owned(), 60).unwrap());
    assert!(cache.delete("k").unwrap());
    assert!(!cache.delete("k").unwrap());

    let c = Comment {
        author: "ann".into(),
        likes: 3,
    };
    cache.set("comment", &c, 0).unwrap();
    assert_eq!(cache.get::<Comment>("comment").unwrap(), Some(c));
    assert_eq!(
        cache.get::<u32>("comment").unwrap(),
        None,
        "wrong type: a miss"
    );
    assert!(cache.stats().errors >= 1);

    let (a, b) = (1u32, 2u32);
    cache.set_many([("a", &a), ("b", &b)], 60).unwrap();
    assert_eq!(
        cache.get_many::<u32>(&["a", "nope", "b"]).unwrap(),
        vec![Some(1), None, Some(2)]
    );
    assert_eq!(cache.delete_many(&["a", "b", "nope"]).unwrap(), 2);

    assert_eq!(cache.inc("n", 1).unwrap(), 1, "missing counts as 0");
    assert_eq!(cache.inc("n", 5).unwrap(), 6);
    assert_eq!(cache.dec("n", 2).unwrap(), 4);
    assert_eq!(cache.get::<i64>("n").unwrap(), Some(4));
    assert_eq!(
        cache.dec("n", 10).unwrap(),
        0,
        "memcached counters stop at 0"
    );
    cache.set("m", &10u32, 60).unwrap();
    assert_eq!(
        cache.inc("m", 1).unwrap(),
        11,
        "counts on values written with set"
    );
    cache.set("s", &"x".to_owned(), 60).unwrap();
    assert!(matches!(cache.inc("s", 1), Err(Error::NotANumber(_))));

    cache
        .set("short", &1u8, Duration::from_millis(500))
        .unwrap();
    assert!(cache.has("short").unwrap());
    std::thread::sleep(Duration::from_millis(2100));
    assert!(
        !cache.has("short").unwrap(),
        "expired (memcached rounds up to whole seconds)"
    );

    cache.clear().unwrap();
    assert!(!cache.has("k2").unwrap());
}

#[test]
fn any_str_is_a_key() {
    let server = Memcached::start();
    let cache = cache_on(&[&server], "app:");
    let long = "k".repeat(10_000);
    for key in [
        "plain",
        "",
        "with space",
        "new\nline\r\n",
        "nul\0",
        "ключ",
        long.as_str(),
        "get x\r\nflush_all",
    ] {
        cache.set(key, &key.len(), 60).unwrap();
        assert_eq!(cache.get::<usize>(key).unwrap(), Some(key.len()), "{key:?}");
    }
    assert!(
        server
            .keys()
            .iter()
            .all(|k| k.starts_with("app%3A") || k.starts_with("app:")),
        "{:?}",
        server.keys()
    );
    assert!(server.keys().iter().all(|k| k.len() <= 250 * 3));
}

#[test]
fn sasl_credentials_good_wrong_and_missing() {
    let pass = "p@ss%w0rd";
    let server = Memcached::start_sasl("alice", pass);
    let good = Cache::builder()
        .memcached([server.addr()])
        .sasl("alice", pass)
        .build()
        .unwrap();
    good.set("k", &1u8, 60).unwrap();
    assert_eq!(good.get::<u8>("k").unwrap(), Some(1));

    let start = std::time::Instant::now();
    let wrong = Cache::builder()
        .memcached([server.addr()])
        .sasl("alice", "nope")
        .build();
    match wrong {
        Err(e @ Error::Config { .. }) => {
            assert!(e.to_string().contains("CACHE_MEMCACHED_PASSWORD"), "{e}")
        }
        other => panic!("wrong password: {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "refused at once, not after a stall"
    );

    match Cache::builder().memcached([server.addr()]).build() {
        Err(e @ Error::Config { .. }) => assert!(e.to_string().contains("requires SASL"), "{e}"),
        other => panic!("missing credentials: {other:?}"),
    }
}

#[test]
fn memcachier_variables_configure_sasl_memcached() {
    let server = Memcached::start_sasl("bob", "secret");
    let config = cachemacro::CacheConfig::from_lookup(|k| {
        Ok(match k {
            "MEMCACHIER_SERVERS" => Some(server.addr()),
            "MEMCACHIER_USERNAME" => Some("bob".into()),
            "MEMCACHIER_PASSWORD" => Some("secret".into()),
            _ => None,
        })
    })
    .unwrap();
    let cache = Cache::from_config(config).unwrap();
    cache.set("x", &5u8, 60).unwrap();
    assert_eq!(cache.get::<u8>("x").unwrap(), Some(5));
}

static EMPTY_KEY: OnceLock<Cache> = OnceLock::new();

#[memoize(cache = EMPTY_KEY.get().unwrap())]
fn unrelated(a: u64) -> u64 {
    a + 1
}

/// MemCachier-style (SASL, no prefix) and plain, with and without a prefix: the empty key is
/// a key like any other, and a request the server refuses never takes it out of rotation.
#[test]
fn the_empty_key_works_everywhere_and_refusals_never_eject_a_server() {
    let sasl = Memcached::start_sasl("carol", "pw");
    let plain = Memcached::start();
    let memcachier = Cache::from_config(
        cachemacro::CacheConfig::from_lookup(|k| {
            Ok(match k {
                "MEMCACHIER_SERVERS" => Some(sasl.addr()),
                "MEMCACHIER_USERNAME" => Some("carol".into()),
                "MEMCACHIER_PASSWORD" => Some("pw".into()),
                _ => None,
            })
        })
        .unwrap(),
    )
    .unwrap();
    let sasl_prefixed = Cache::builder()
        .memcached([sasl.addr()])
        .sasl("carol", "pw")
        .key_prefix("app:")
        .build()
        .unwrap();
    for cache in [
        &memcachier,
        &sasl_prefixed,
        &cache_on(&[&plain], ""),
        &cache_on(&[&plain], "app:"),
    ] {
        cache.set("", &7u32, 0).unwrap();
        assert_eq!(cache.get::<u32>("").unwrap(), Some(7));
        assert!(cache.delete("").unwrap());
        assert_eq!(cache.get::<u32>("").unwrap(), None);
    }
    // Everything else in the process still goes to the server, cached.
    EMPTY_KEY.set(memcachier.clone()).unwrap();
    assert_eq!(unrelated(1), 2);
    let hits = memcachier.stats().hits;
    assert_eq!(unrelated(1), 2);
    assert_eq!(memcachier.stats().hits, hits + 1, "still cached");
    assert_eq!(memcachier.stats().errors, 0);
}

#[test]
fn key_prefixes_keep_caches_apart() {
    let server = Memcached::start();
    let one = cache_on(&[&server], "one:");
    let two = cache_on(&[&server], "two:");
    one.set("k", &1u8, 60).unwrap();
    two.set("k", &2u8, 60).unwrap();
    assert_eq!(one.get::<u8>("k").unwrap(), Some(1));
    assert_eq!(two.get::<u8>("k").unwrap(), Some(2));
    one.set("long key with spaces", &1u8, 60).unwrap();
    one.clear().unwrap();
    assert_eq!(one.get::<u8>("k").unwrap(), None);
    assert_eq!(one.get::<u8>("long key with spaces").unwrap(), None);
    assert_eq!(
        two.get::<u8>("k").unwrap(),
        Some(2),
        "clear() of one prefix leaves the other's keys"
    );
}

#[test]
fn concurrent_clears_wait_for_the_servers_one_key_crawler() {
    // memcached lists keys with one crawler at a time and answers BUSY to the next listing:
    // clear() waits its turn instead of failing.
    let server = Memcached::start();
    let clearers: Vec<_> = (0..4)
        .map(|t| {
            let cache = cache_on(&[&server], &format!("c{t}:"));
            std::thread::spawn(move || {
                for i in 0..10u32 {
                    cache.set(&format!("k{i}"), &i, 60).unwrap();
                    cache.clear().unwrap();
                    assert_eq!(cache.get::<u32>(&format!("k{i}")).unwrap(), None);
                }
            })
        })
        .collect();
    for c in clearers {
        c.join().unwrap();
    }
}

static COUNTED: OnceLock<Cache> = OnceLock::new();

#[memoize(cache = COUNTED.get().unwrap())]
fn counted(a: u32) -> u32 {
    a + 1
}

#[test]
fn a_memoized_hit_reads_two_keys_and_a_miss_at_most_one_more_request() {
    let servers = [Memcached::start(), Memcached::start()];
    COUNTED
        .set(cache_on(&[&servers[0], &servers[1]], ""))
        .unwrap();
    let cmd_get = || -> u64 { servers.iter().map(|s| s.stats()["cmd_get"]).sum() };
    counted(0); // creates the function version
    let mut per_miss = Vec::new();
    let mut per_hit = Vec::new();
    for a in 1..40 {
        let before = cmd_get();
        counted(a);
        per_miss.push(cmd_get() - before);
        let before = cmd_get();
        assert_eq!(counted(a), a + 1);
        per_hit.push(cmd_get() - before);
    }
    assert!(
        per_hit.iter().all(|&n| n == 2),
        "keys read per hit: {per_hit:?}"
    );
    assert!(
        per_miss.iter().all(|&n| n == 2),
        "keys read per miss (then one write): {per_miss:?}"
    );
    // Entries of the one function spread over both servers.
    let items: Vec<u64> = servers.iter().map(|s| s.stats()["curr_items"]).collect();
    assert!(
        items.iter().all(|&n| n >= 8),
        "entries per server: {items:?}"
    );
    println!(
        "keys read per memoized hit: 2; per miss: 2 plus one write; items per server {items:?}"
    );
}

#[test]
fn keys_spread_over_servers_and_one_more_server_moves_few() {
    let servers = [Memcached::start(), Memcached::start(), Memcached::start()];
    let three = cache_on(&[&servers[0], &servers[1], &servers[2]], "");
    for i in 0..300u32 {
        three.set(&format!("k{i}"), &i, 60).unwrap();
    }
    let items: Vec<u64> = servers.iter().map(|s| s.stats()["curr_items"]).collect();
    assert!(items.iter().all(|&n| n > 50), "{items:?}");
    // The same keys through a ring of two of the servers: the third's keys miss, the rest hit.
    let two = cache_on(&[&servers[0], &servers[1]], "");
    let found = (0..300u32)
        .filter(|i| two.get::<u32>(&format!("k{i}")).unwrap() == Some(*i))
        .count();
    assert!(
        (150..260).contains(&found),
        "{found} of 300 still found with one server fewer"
    );
}

#[test]
fn spread_values_survive_the_item_limit_and_a_lost_chunk_is_a_miss() {
    let server = Memcached::start();
    let cache = Cache::builder()
        .memcached([server.addr()])
        .spread_large_values(true)
        .build()
        .unwrap();
    let big: Vec<u32> = (0..700_000).collect(); // ~2.8 MB of MessagePack
    cache.set("big", &big, 60).unwrap();
    assert_eq!(
        cache.get::<Vec<u32>>("big").unwrap().as_deref(),
        Some(&big[..])
    );
    assert!(
        server.keys().len() >= 4,
        "header and chunks: {:?}",
        server.keys().len()
    );

    // Small values stay one key and one request.
    cache.set("small", &1u8, 60).unwrap();
    let before = server.stats()["cmd_get"];
    assert_eq!(cache.get::<u8>("small").unwrap(), Some(1));
    assert_eq!(server.stats()["cmd_get"] - before, 1);

    // A chunk deleted behind the client's back: a miss, not an error or a wrong value.
    let chunk_keys: Vec<String> = server
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("%23"))
        .collect();
    assert!(chunk_keys.len() >= 3, "{chunk_keys:?}");
    let chunk = chunk_keys[1].replace("%23", "#");
    let old_chunk = server.raw_get(&chunk).expect("chunk bytes");
    server.raw_delete(&chunk);
    assert_eq!(cache.get::<Vec<u32>>("big").unwrap(), None);

    // A chunk left over from an older value (a racing writer, a partial overwrite): a miss.
    let newer: Vec<u32> = (1..700_001).collect();
    cache.set("big", &newer, 60).unwrap();
    assert_eq!(
        cache.get::<Vec<u32>>("big").unwrap().as_deref(),
        Some(&newer[..])
    );
    server.raw_set(&chunk, &old_chunk);
    assert_eq!(cache.get::<Vec<u32>>("big").unwrap(), None);

    // Without spreading, a value above the limit is refused.
    let unspread = Cache::builder().memcached([server.addr()]).build().unwrap();
    assert!(unspread.set("too big", &big, 60).is_err());
}

#[test]
fn hostile_bytes_are_a_miss() {
    let server = Memcached::start();
    let cache = cache_on(&[&server], "");
    let cases: Vec<Vec<u8>> = vec![
        vec![0xC5, 0x01, 0x00, 0xdd, 0xff, 0xff, 0xff, 0xff], // array of 4G elements
        vec![0xC5, 0x01, 0x00, 0xdb, 0xff, 0xff, 0xff, 0xff, b'a'], // str of 4 GB
        vec![0xC5, 0x01, 0x01, 1, 2],                         // truncated version
        vec![0xC5, 0xFF, 1, 2, 3],                            // bad spread header
        b"12345678901234567890123".to_vec(),                  // digits beyond i64
        vec![0xff; 1000],
        Vec::new(),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let key = format!("hostile{i}");
        server.raw_set(&key, bytes);
        assert_eq!(cache.get::<Vec<String>>(&key).unwrap(), None, "case {i}");
        assert_eq!(cache.get::<u64>(&key).unwrap(), None, "case {i}");
    }
    assert!(cache.stats().errors >= cases.len() as u64);
}

#[test]
fn unreachable_servers_at_start_are_not_an_error() {
    let port = cachemacro_testkit::free_port();
    let cache = Cache::builder()
        .memcached([format!("127.0.0.1:{port}")])
        .memcached_options({
            let mut o = MemcachedOptions::default();
            o.connect_timeout = Duration::from_millis(200);
            o
        })
        .build()
        .unwrap();
    assert!(cache.get::<u8>("k").is_err());
}
