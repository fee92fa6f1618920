use std::sync::LazyLock;
use std::time::Duration;

use cachemacro::{cached, memoize, Cache};

static CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().unwrap());

fn keep(v: &u32) -> bool {
    *v > 0
}

fn rename(name: &str) -> String {
    format!("{name}!")
}

#[memoize(
    timeout = 50,
    cache = CACHE,
    unless = a == 0,
    forced_update = b == 1,
    response_filter = keep,
    cache_none = false,
    ignore = [b],
    make_name = rename,
    source_check = true,
    crate = "cachemacro"
)]
fn all_memoize(a: u32, b: u32) -> Option<u32> {
    Some(a + b)
}

#[cached(
    timeout = Duration::from_secs(5),
    cache = CACHE,
    unless = false,
    forced_update = false,
    response_filter = keep,
    cache_none = true,
    key = format!("k{a}")
)]
fn all_cached(a: u32) -> u32 {
    a
}

#[cached(key_prefix = "literal")]
fn literal() -> u32 {
    1
}

#[cached]
fn by_identity() -> u32 {
    1
}

fn main() {
    all_memoize(1, 2);
    all_cached(1);
    literal();
    by_identity();
}
