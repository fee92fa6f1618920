//! The Flask-Cache manual's walkthrough: `user_has_membership` and `Person::has_membership`, memoized,
//! then invalidated for one argument set and for all of them.
//!
//! `cargo run --example membership`

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};

use cachemacro::memoize;

/// Stands in for the database: (user, role) pairs, and how many queries were run.
static GROUPS: LazyLock<Mutex<HashSet<(String, String)>>> =
    LazyLock::new(|| Mutex::new(HashSet::from([("demo".to_owned(), "user".to_owned())])));
static QUERIES: AtomicUsize = AtomicUsize::new(0);

fn query(user: &str, role: &str) -> bool {
    QUERIES.fetch_add(1, Ordering::SeqCst);
    GROUPS
        .lock()
        .unwrap()
        .contains(&(user.to_owned(), role.to_owned()))
}

/// `@cache.memoize(50) def user_has_membership(user, role)`.
#[memoize(timeout = 50)]
fn user_has_membership(user: &str, role: &str) -> bool {
    query(user, role)
}

/// An SQLAlchemy-style model. Its identity in cache keys is its id, as a `__repr__`
/// returning `Person(id)` would make it in Flask.
struct Person {
    id: u64,
    name: String,
}

impl Hash for Person {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl Person {
    /// `@cache.memoize(50) def has_membership(self, role_id)`.
    #[memoize(timeout = 50)]
    fn has_membership(&self, role_id: u32) -> bool {
        query(&self.name, &format!("role{role_id}"))
    }
}

fn queries() -> usize {
    QUERIES.load(Ordering::SeqCst)
}

fn main() -> Result<(), cachemacro::Error> {
    cachemacro::init(cachemacro::Cache::from_env()?)?;

    println!(
        "user_has_membership('demo', 'admin') = {}",
        user_has_membership("demo", "admin")
    );
    println!(
        "user_has_membership('demo', 'user')  = {}",
        user_has_membership("demo", "user")
    );
    user_has_membership("demo", "admin");
    user_has_membership("demo", "user");
    println!("four calls, {} queries", queries());

    // The user is given the admin role: only the ('demo', 'admin') result is stale.
    GROUPS
        .lock()
        .unwrap()
        .insert(("demo".into(), "admin".into()));
    user_has_membership_delete_memoized("demo", "admin")?;
    println!(
        "after cache.delete_memoized(user_has_membership, 'demo', 'admin'): admin = {}, user = {} ({} queries)",
        user_has_membership("demo", "admin"),
        user_has_membership("demo", "user"),
        queries()
    );

    // Every result of the function, in every process sharing the cache.
    user_has_membership_delete_memoized_all()?;
    user_has_membership("demo", "admin");
    println!(
        "after cache.delete_memoized(user_has_membership): {} queries",
        queries()
    );

    let demo = Person {
        id: 1,
        name: "demo".into(),
    };
    let same_row = Person {
        id: 1,
        name: "demo".into(),
    };
    demo.has_membership(7);
    same_row.has_membership(7);
    println!(
        "two Person objects for row 1, two calls: {} queries so far",
        queries()
    );
    demo.has_membership_delete_memoized(7)?;
    same_row.has_membership(7);
    Person::has_membership_delete_memoized_all()?;
    println!(
        "deleted through the method and for the whole method: {} queries",
        queries()
    );
    println!(
        "key for Person(1).has_membership(7): {}",
        demo.has_membership_make_cache_key(7)
    );
    Ok(())
}
