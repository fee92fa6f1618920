//! `#[memoize]`: keys, helpers and every option, on the in-memory backend.

mod common;

use std::sync::LazyLock;
use std::time::Duration;

use cachemacro::{memoize, Cache};
use common::{cache as simple, past, Calls};

static CACHE: LazyLock<Cache> = LazyLock::new(simple);

static ADD_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE)]
fn add(a: u32, b: u32) -> u32 {
    ADD_CALLS.bump();
    a + b
}

#[test]
fn memoizes_by_every_argument_and_deletes_one_argument_set() {
    assert_eq!(add(1, 2), 3);
    assert_eq!(add(1, 2), 3);
    assert_eq!(ADD_CALLS.get(), 1);
    assert_eq!(add(2, 1), 3);
    assert_eq!(ADD_CALLS.get(), 2);

    add_delete_memoized(1, 2).unwrap();
    assert_eq!(add(1, 2), 3);
    assert_eq!(ADD_CALLS.get(), 3, "(1, 2) was deleted");
    assert_eq!(add(2, 1), 3);
    assert_eq!(ADD_CALLS.get(), 3, "(2, 1) was kept");

    add_delete_memoized_all().unwrap();
    add(1, 2);
    add(2, 1);
    assert_eq!(ADD_CALLS.get(), 5, "every argument set was dropped");

    assert_eq!(add_uncached(1, 2), 3);
    assert_eq!(ADD_CALLS.get(), 6, "uncached runs the body");
    add(1, 2);
    assert_eq!(ADD_CALLS.get(), 6, "and leaves the cache alone");
}

static VERHASH_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE)]
fn verhash(a: u8) -> u8 {
    VERHASH_CALLS.bump();
    a
}

#[test]
fn deleting_the_version_hash_drops_every_entry() {
    verhash(1);
    verhash(1);
    assert_eq!(VERHASH_CALLS.get(), 1);
    verhash_delete_memoized_verhash().unwrap();
    verhash(1);
    verhash(1);
    assert_eq!(VERHASH_CALLS.get(), 2);
}

#[memoize(cache = CACHE)]
fn keyed(name: &str, n: Option<u32>) -> String {
    format!("{name}{n:?}")
}

#[test]
fn make_cache_key_is_the_key_the_call_uses() {
    let key = keyed_make_cache_key("a", Some(1));
    assert!(key.starts_with("memoize::keyed:"), "{key}");
    assert_eq!(key.len(), "memoize::keyed:".len() + 32);
    assert_eq!(key, keyed_make_cache_key("a", Some(1)));
    assert_ne!(key, keyed_make_cache_key("a", Some(2)));
    assert_ne!(key, keyed_make_cache_key("b", Some(1)));
    keyed("a", Some(1));
    // The entry is there under that key, tagged with the function version.
    assert!(CACHE.has(&key).unwrap());
    // `("ab", None)` and `("a", Some(..))` cannot meet: `str` hashes are prefix-free.
    assert_ne!(
        keyed_make_cache_key("ab", None),
        keyed_make_cache_key("a", None)
    );
}

static TIMED_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE, timeout = Duration::from_millis(300))]
fn timed(a: u8) -> u8 {
    TIMED_CALLS.bump();
    a
}

#[test]
fn entries_expire_after_their_timeout() {
    timed(1);
    timed(1);
    assert_eq!(TIMED_CALLS.get(), 1);
    past(Duration::from_millis(300));
    timed(1);
    assert_eq!(TIMED_CALLS.get(), 2, "expired after 300 ms");
}

static SECS_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE, timeout = 1)]
fn secs(a: u8) -> u8 {
    SECS_CALLS.bump();
    a
}

#[test]
fn integer_timeouts_are_seconds() {
    secs(1);
    secs(1);
    assert_eq!(SECS_CALLS.get(), 1, "still fresh");
    past(Duration::from_secs(1));
    secs(1);
    assert_eq!(SECS_CALLS.get(), 2, "expired after 1 s");
}

static NEVER: LazyLock<Cache> = LazyLock::new(|| {
    common::builder()
        .default_timeout(Duration::from_millis(200))
        .build()
        .unwrap()
});
static NEVER_CALLS: Calls = Calls::new();

#[memoize(cache = NEVER, timeout = 0)]
fn never_expires(a: u8) -> u8 {
    NEVER_CALLS.bump();
    a
}

static DEFAULT_CALLS: Calls = Calls::new();

#[memoize(cache = NEVER)]
fn default_timeout(a: u8) -> u8 {
    DEFAULT_CALLS.bump();
    a
}

#[test]
fn zero_means_never_and_absent_means_the_cache_default() {
    never_expires(1);
    default_timeout(1);
    past(Duration::from_millis(200));
    never_expires(1);
    default_timeout(1);
    assert_eq!(NEVER_CALLS.get(), 1);
    assert_eq!(DEFAULT_CALLS.get(), 2);
}

static UNLESS_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE, unless = skip)]
fn unless(a: u8, skip: bool) -> u8 {
    let _ = skip;
    UNLESS_CALLS.bump();
    a
}

#[test]
fn unless_bypasses_the_cache_entirely() {
    let before = CACHE.stats();
    unless(1, true);
    unless(1, true);
    assert_eq!(UNLESS_CALLS.get(), 2);
    assert!(
        !CACHE.has(&unless_make_cache_key(1, true)).unwrap(),
        "nothing written"
    );
    unless(1, false);
    unless(1, false);
    assert_eq!(UNLESS_CALLS.get(), 3);
    let after = CACHE.stats();
    assert!(after.hits > before.hits);
}

static FORCED_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE, forced_update = force)]
fn forced(a: u8, force: bool) -> usize {
    let _ = (a, force);
    FORCED_CALLS.bump()
}

#[test]
fn forced_update_recomputes_and_overwrites() {
    assert_eq!(forced(1, false), 1);
    assert_eq!(forced(1, false), 1);
    // `force` is part of the key, so use the same key through ignore-less arguments:
    // a forced call with the same arguments overwrites its own entry.
    assert_eq!(forced(1, true), 2);
    assert_eq!(forced(1, true), 3);
    assert_eq!(FORCED_CALLS.get(), 3);
}

static FORCED_IGNORED_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE, forced_update = force, ignore = [force])]
fn forced_ignored(a: u8, force: bool) -> usize {
    let _ = (a, force);
    FORCED_IGNORED_CALLS.bump()
}

#[test]
fn forced_update_overwrites_what_normal_calls_read() {
    assert_eq!(forced_ignored(1, false), 1);
    assert_eq!(forced_ignored(1, true), 2);
    assert_eq!(forced_ignored(1, false), 2, "reads the overwritten value");
}

fn only_even(v: &u32) -> bool {
    v.is_multiple_of(2)
}

static FILTER_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE, response_filter = only_even)]
fn filtered(a: u32) -> u32 {
    FILTER_CALLS.bump();
    a
}

#[test]
fn response_filter_decides_what_is_cached() {
    filtered(2);
    filtered(2);
    assert_eq!(FILTER_CALLS.get(), 1);
    filtered(3);
    filtered(3);
    assert_eq!(FILTER_CALLS.get(), 3, "odd results are not cached");
}

static IGNORE_CALLS: Calls = Calls::new();

struct Db;

#[memoize(cache = CACHE, ignore = [db, trace_id])]
fn ignoring(db: &Db, user: u32, trace_id: u64) -> u32 {
    let _ = db;
    IGNORE_CALLS.bump();
    let _ = trace_id;
    user
}

#[test]
fn ignored_arguments_are_left_out_of_the_key() {
    ignoring(&Db, 7, 1);
    ignoring(&Db, 7, 2);
    assert_eq!(IGNORE_CALLS.get(), 1);
    assert_eq!(
        ignoring_make_cache_key(&Db, 7, 1),
        ignoring_make_cache_key(&Db, 7, 99)
    );
    ignoring(&Db, 8, 1);
    assert_eq!(IGNORE_CALLS.get(), 2);
}

fn versioned_name(name: &str) -> String {
    format!("{name}/v2")
}

#[memoize(cache = CACHE, make_name = versioned_name)]
fn named(a: u8) -> u8 {
    a
}

#[test]
fn make_name_changes_the_identity() {
    let key = named_make_cache_key(1);
    assert!(key.starts_with("memoize::named/v2:"), "{key}");
}

#[memoize(cache = CACHE, source_check = true)]
fn checked_a(a: u8) -> u8 {
    a + 1
}

#[memoize(cache = CACHE, source_check = true, make_name = same_name)]
fn checked_b(a: u8) -> u8 {
    a + 2
}

#[memoize(cache = CACHE, make_name = same_name)]
fn unchecked_c(a: u8) -> u8 {
    a + 3
}

#[memoize(cache = CACHE, make_name = same_name)]
fn unchecked_d(a: u8) -> u8 {
    a + 3
}

fn same_name(_: &str) -> String {
    "shared".to_owned()
}

#[test]
fn source_check_puts_the_body_in_the_identity() {
    // Same identity name, different bodies: with source_check the keys differ…
    let _ = checked_a_make_cache_key(1);
    assert_ne!(checked_b_make_cache_key(1), unchecked_c_make_cache_key(1));
    // …without it, two functions given the same name share keys (as Flask's make_name does).
    assert_eq!(unchecked_c_make_cache_key(1), unchecked_d_make_cache_key(1));
    assert_eq!(checked_a(1), 2);
    assert_eq!(checked_b(1), 3);
}

static RESULT_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE)]
fn fallible(a: i32) -> Result<i32, String> {
    RESULT_CALLS.bump();
    if a < 0 {
        Err("negative".into())
    } else {
        Ok(a)
    }
}

#[test]
fn results_cache_only_ok() {
    assert_eq!(fallible(1), Ok(1));
    assert_eq!(fallible(1), Ok(1));
    assert_eq!(RESULT_CALLS.get(), 1);
    assert!(fallible(-1).is_err());
    assert!(fallible(-1).is_err());
    assert_eq!(RESULT_CALLS.get(), 3, "errors are recomputed");
}

static QUESTION_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE)]
fn parse_twice(s: &str) -> Result<u64, std::num::ParseIntError> {
    QUESTION_CALLS.bump();
    let n: u64 = s.parse()?;
    if n > 100 {
        return Ok(100);
    }
    Ok(n * 2)
}

#[test]
fn question_mark_and_return_keep_their_meaning() {
    assert_eq!(parse_twice("21"), Ok(42));
    assert_eq!(parse_twice("500"), Ok(100));
    assert!(parse_twice("x").is_err());
    assert_eq!(parse_twice("21"), Ok(42));
    assert_eq!(QUESTION_CALLS.get(), 3);
}

static OPTION_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE)]
fn lookup(id: u32) -> Option<String> {
    OPTION_CALLS.bump();
    (id == 1).then(|| "one".to_owned())
}

#[test]
fn options_cache_only_some_by_default() {
    lookup(1);
    lookup(1);
    assert_eq!(OPTION_CALLS.get(), 1);
    assert_eq!(lookup(2), None);
    assert_eq!(lookup(2), None);
    assert_eq!(OPTION_CALLS.get(), 3);
}

#[memoize(cache = CACHE)]
fn unit_returning(a: u8) {
    let _ = a;
}

#[test]
fn unit_return_types_work() {
    unit_returning(1);
    unit_returning(1);
}

#[test]
fn stats_count_hits_misses_sets_and_deletes() {
    #[memoize(cache = CACHE_FOR_STATS)]
    fn f(a: u8) -> u8 {
        a
    }
    static CACHE_FOR_STATS: LazyLock<Cache> = LazyLock::new(simple);
    f(1);
    f(1);
    f(1);
    f_delete_memoized(1).unwrap();
    let s = CACHE_FOR_STATS.stats();
    assert_eq!(
        (s.hits, s.misses, s.sets, s.deletes, s.errors),
        (2, 1, 1, 1, 0)
    );
}

#[memoize]
fn on_the_default_cache(a: u8) -> u8 {
    a
}

#[test]
fn without_cache_option_the_process_default_is_used() {
    on_the_default_cache(3);
    assert!(cachemacro::cache()
        .has(&on_the_default_cache_make_cache_key(3))
        .unwrap());
}
