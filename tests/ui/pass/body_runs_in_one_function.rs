//! The body is written once: the wrapper runs the same function as `f_uncached`, so a
//! `static` in the body is one `static`. Each body returns how many times it ran before.
use std::hash::Hash;
use std::sync::atomic::{AtomicU32, Ordering};

use cachemacro::{cached, memoize};

macro_rules! runs {
    () => {{
        static RUNS: AtomicU32 = AtomicU32::new(0);
        RUNS.fetch_add(1, Ordering::SeqCst)
    }};
}

#[memoize]
fn free(a: u8) -> u32 {
    let _ = a;
    runs!()
}

#[memoize]
fn generic<const N: usize, T: Hash>(t: T, extra: impl Hash) -> u32 {
    let _ = (t, extra, N);
    runs!()
}

#[memoize]
fn mutates(mut a: u8) -> u32 {
    a += 1;
    let _ = a;
    runs!()
}

#[cached(key = format!("keyed/{a}"))]
fn keyed(a: u8) -> u32 {
    runs!()
}

#[derive(Hash)]
struct Person {
    id: u32,
}

impl Person {
    #[memoize]
    fn associated(id: u32) -> u32 {
        let _ = id;
        runs!()
    }

    #[memoize]
    fn method(&self, scope: u8) -> u32 {
        let _ = (self.id, scope);
        runs!()
    }

    #[memoize]
    fn by_value(self) -> u32 {
        let _ = self.id;
        runs!()
    }

    #[memoize]
    async fn asynchronous(&self) -> u32 {
        let _ = self.id;
        runs!()
    }
}

fn main() {
    assert_eq!(free(1), 0);
    assert_eq!(free(1), 0, "cached");
    assert_eq!(free_uncached(1), 1, "the body's static, not a copy's");

    assert_eq!(generic::<2, u8>(1, "x"), 0);
    assert_eq!(generic_uncached::<2, u8>(1, "x"), 1);

    assert_eq!(mutates(1), 0);
    assert_eq!(mutates_uncached(1), 1);

    assert_eq!(keyed(1), 0);
    assert_eq!(keyed_uncached(1), 1);

    assert_eq!(Person::associated(1), 0);
    assert_eq!(Person::associated_uncached(1), 1);

    let person = Person { id: 1 };
    assert_eq!(person.method(1), 0);
    assert_eq!(person.method_uncached(1), 1);

    assert_eq!(Person { id: 1 }.by_value(), 0);
    assert_eq!(Person { id: 1 }.by_value_uncached(), 1);

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(person.asynchronous()), 0);
    assert_eq!(rt.block_on(person.asynchronous_uncached()), 1);
}
