//! The quick start: `cargo run --example quickstart`. In-memory, no server needed.
//!
//! Shows `#[memoize]`, `#[cached]`, the generated delete helpers and what each call cost.

use std::thread::sleep;
use std::time::{Duration, Instant};

use cachemacro::{cached, memoize, Cache};

/// A slow lookup: 200 ms the first time for each (user, role).
#[memoize(timeout = 50)]
fn user_has_membership(user: &str, role: &str) -> bool {
    sleep(Duration::from_millis(200));
    user == "demo" && role == "admin"
}

/// A slow listing, cached under one literal key.
#[cached(timeout = 50, key_prefix = "all_comments")]
fn get_all_comments() -> Vec<String> {
    sleep(Duration::from_millis(200));
    vec!["first!".to_owned(), "nice post".to_owned()]
}

/// A view cached per path, as Flask's `@cache.cached` on a route.
#[cached(timeout = 5, key = format!("view/{path}"))]
fn render(path: &str) -> String {
    sleep(Duration::from_millis(100));
    format!("<h1>{path}</h1>")
}

fn timed<T: std::fmt::Debug>(label: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    println!("{label:<48} -> {out:?} in {:?}", start.elapsed());
    out
}

fn main() -> Result<(), cachemacro::Error> {
    // CACHE_TYPE etc. from the environment; in-memory when nothing is set.
    cachemacro::init(Cache::from_env()?)?;
    let cache = cachemacro::cache();

    timed("user_has_membership(demo, admin)  [miss]", || {
        user_has_membership("demo", "admin")
    });
    timed("user_has_membership(demo, admin)  [hit]", || {
        user_has_membership("demo", "admin")
    });
    timed("user_has_membership(demo, user)   [miss]", || {
        user_has_membership("demo", "user")
    });

    user_has_membership_delete_memoized("demo", "user")?;
    println!("deleted the (demo, user) entry only");
    timed("user_has_membership(demo, admin)  [hit]", || {
        user_has_membership("demo", "admin")
    });
    timed("user_has_membership(demo, user)   [miss]", || {
        user_has_membership("demo", "user")
    });

    user_has_membership_delete_memoized_all()?;
    println!("deleted every entry of user_has_membership");
    timed("user_has_membership(demo, admin)  [miss]", || {
        user_has_membership("demo", "admin")
    });

    timed("get_all_comments()                [miss]", get_all_comments);
    timed("get_all_comments()                [hit]", get_all_comments);
    cache.delete("all_comments")?;
    timed("get_all_comments() after delete   [miss]", get_all_comments);

    timed("render(/about)                    [miss]", || {
        render("/about")
    });
    timed("render(/about)                    [hit]", || {
        render("/about")
    });
    render_delete_cached("/about")?;
    timed("render(/about) after delete       [miss]", || {
        render("/about")
    });

    println!(
        "key of user_has_membership(demo, admin): {}",
        user_has_membership_make_cache_key("demo", "admin")
    );
    let s = cache.stats();
    println!(
        "stats: {} hits, {} misses, {} sets, {} deletes, {} errors",
        s.hits, s.misses, s.sets, s.deletes, s.errors
    );
    Ok(())
}
