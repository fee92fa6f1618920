//! Two processes of this test binary share one memcached: one memoizes, the other invalidates
//! with `f_delete_memoized_all()` and `f_delete_memoized(args)`, and the first recomputes on
//! its very next call.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use cachemacro::{memoize, Cache};
use cachemacro_testkit::Memcached;

const SERVER_ENV: &str = "CACHEMACRO_CHILD_MEMCACHED";

static CACHE: OnceLock<Cache> = OnceLock::new();
static COMPUTED: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = CACHE.get().unwrap())]
fn price(item: u32) -> u64 {
    COMPUTED.fetch_add(1, Ordering::SeqCst);
    u64::from(item) * 100
}

fn cache_on(addr: &str) -> Cache {
    Cache::builder()
        .memcached([addr.to_owned()])
        .key_prefix("xproc:")
        .build()
        .unwrap()
}

/// The memoizing process: answers `call N` with how many bodies it has run so far.
fn child(addr: &str) {
    CACHE.set(cache_on(addr)).unwrap();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let Some(item) = line.strip_prefix("call ") else {
            break;
        };
        let item: u32 = item.parse().unwrap();
        assert_eq!(price(item), u64::from(item) * 100);
        println!("computed {}", COMPUTED.load(Ordering::SeqCst));
    }
}

#[test]
fn invalidation_in_one_process_is_seen_by_another_at_once() {
    if let Ok(addr) = std::env::var(SERVER_ENV) {
        return child(&addr);
    }
    let server = Memcached::start();
    CACHE.set(cache_on(&server.addr())).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "invalidation_in_one_process_is_seen_by_another_at_once",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SERVER_ENV, server.addr())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap());
    let mut call = |item: u32| -> usize {
        writeln!(to_child, "call {item}").unwrap();
        loop {
            let mut line = String::new();
            assert!(from_child.read_line(&mut line).unwrap() > 0, "child exited");
            if let Some(n) = line.split("computed ").nth(1) {
                return n.trim().parse().unwrap();
            }
        }
    };

    assert_eq!(call(1), 1);
    assert_eq!(call(1), 1, "cached");
    assert_eq!(call(2), 2);

    // This process invalidates every argument set: the other one recomputes right away.
    price_delete_memoized_all().unwrap();
    assert_eq!(call(1), 3);
    assert_eq!(call(2), 4);
    assert_eq!(call(1), 4, "and caches again");

    // One argument set only.
    price_delete_memoized(2).unwrap();
    assert_eq!(call(1), 4, "other argument sets stay");
    assert_eq!(call(2), 5);

    // This process reads what the other cached (same keys, same version).
    let before = COMPUTED.load(Ordering::SeqCst);
    assert_eq!(price(1), 100);
    assert_eq!(
        COMPUTED.load(Ordering::SeqCst),
        before,
        "a hit on the other process's entry"
    );

    // Deleting the version hash is seen at once too.
    price_delete_memoized_verhash().unwrap();
    assert_eq!(call(1), 6);

    drop(to_child);
    assert!(child.wait().unwrap().success());
}
