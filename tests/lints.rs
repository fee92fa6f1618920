//! Generated code triggers no warnings and no clippy lints in the user's crate: this file
//! denies them all (`cargo clippy --all-targets -- -D warnings` lints it too).
#![deny(
    warnings,
    clippy::all,
    missing_docs,
    unreachable_pub,
    unused_qualifications
)]

use std::sync::LazyLock;

use cachemacro::{cached, memoize, Cache};

static CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().unwrap());

/// Public, documented.
#[memoize(timeout = 5)]
pub fn public(a: u32, b: &str) -> String {
    format!("{a}{b}")
}

#[memoize(cache = CACHE, ignore = [verbose])]
fn private(mut a: u32, verbose: bool) -> u32 {
    a += 1;
    if verbose {
        a += 0;
    }
    a
}

#[cached(key_prefix = "lit")]
fn literal() -> Vec<u8> {
    vec![1]
}

#[cached(cache = CACHE, key = format!("k{a}"), unless = a == 0)]
fn keyed(a: u8) -> Result<u8, String> {
    Ok(a)
}

#[memoize(cache = CACHE)]
async fn asynchronous(a: u8) -> Option<u8> {
    Some(a)
}

#[derive(Hash)]
struct Thing(u8);

impl Thing {
    #[memoize(cache = CACHE)]
    fn method(&self, x: u8) -> u8 {
        self.0 + x
    }

    #[memoize(cache = CACHE)]
    fn associated(x: u8) -> u8 {
        x
    }

    #[memoize(cache = CACHE)]
    async fn async_method(&self) -> u8 {
        self.0
    }
}

#[memoize(cache = CACHE)]
fn generic<T: std::fmt::Display + std::hash::Hash>(t: T) -> String {
    t.to_string()
}

/// Arguments the body does not read but the key does are not reported unused.
#[cached(cache = CACHE, key = format!("page/{number}"), unless = verbose)]
fn page(number: u32, verbose: bool) -> String {
    String::from("page")
}

#[memoize(cache = CACHE)]
async fn asynchronous_mut(mut a: u8, b: impl std::hash::Hash + Send) -> u8 {
    a += 1;
    let _ = b;
    a
}

impl Thing {
    #[memoize(cache = CACHE)]
    fn by_value(mut self, x: u8) -> u8 {
        self.0 += x;
        self.0
    }

    #[memoize(cache = CACHE)]
    fn by_mut(&mut self, x: u8) -> u8 {
        self.0 += x;
        self.0
    }
}

/// Where the attribute cannot see whether the function is in an `impl` (a function written
/// by a macro), the body is written twice; that is as quiet.
macro_rules! from_a_macro {
    () => {
        #[memoize(cache = CACHE)]
        fn from_a_macro(mut a: u8) -> Result<u8, String> {
            a += 1;
            if a > 100 {
                return Err("too big".to_owned());
            }
            Ok(a)
        }

        #[memoize(cache = CACHE)]
        async fn async_from_a_macro(a: u8) -> Result<u8, String> {
            let n: u8 = a.to_string().parse().map_err(|_| "unparsable".to_owned())?;
            Ok(n)
        }
    };
}
from_a_macro!();

/// The user's own lints still fire inside the body: nothing generated silences them. Here
/// `unused_variables` is expected, and an expectation nothing fulfills is itself a warning,
/// denied above.
#[expect(unused_variables)]
#[memoize(cache = CACHE)]
fn users_own_lint(a: u8) -> u8 {
    let unused = 1;
    a
}

#[test]
fn compiles_without_warnings() {
    assert_eq!(public(1, "a"), "1a");
    assert_eq!(private(1, true), 2);
    assert_eq!(literal(), vec![1]);
    assert_eq!(keyed(1), Ok(1));
    assert_eq!(Thing(1).method(1), 2);
    assert_eq!(Thing::associated(1), 1);
    assert_eq!(generic(5), "5");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(asynchronous(1)), Some(1));
    assert_eq!(rt.block_on(Thing(3).async_method()), 3);
    assert_eq!(page(1, false), "page");
    assert_eq!(rt.block_on(asynchronous_mut(1, 2)), 2);
    assert_eq!(Thing(1).by_value(1), 2);
    assert_eq!(Thing(1).by_mut(1), 2);
    assert_eq!(from_a_macro(1), Ok(2));
    assert_eq!(from_a_macro_uncached(1), Ok(2));
    assert_eq!(rt.block_on(async_from_a_macro(7)), Ok(7));
    assert_eq!(users_own_lint(1), 1);
    assert_eq!(users_own_lint_uncached(1), 1);
}
