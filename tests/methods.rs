//! Methods (`&self` identity from `Hash`), associated functions and generic functions.

mod common;

use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use cachemacro::{memoize, Cache};
use common::{cache as simple, Calls};

static CACHE: LazyLock<Cache> = LazyLock::new(simple);
static MEMBERSHIP_CALLS: Calls = Calls::new();

/// The Flask-Cache manual's `Person`: identity is the id, like a `__repr__` returning `Person(id)`.
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
    #[memoize(cache = CACHE, timeout = 50)]
    fn has_membership(&self, role_id: u32) -> bool {
        MEMBERSHIP_CALLS.bump();
        self.id == 1 && role_id == 7
    }
}

#[test]
fn methods_key_by_self_hash() {
    let a = Person {
        id: 1,
        name: "a".into(),
    };
    let same_id = Person {
        id: 1,
        name: "renamed".into(),
    };
    let b = Person {
        id: 2,
        name: "b".into(),
    };
    assert!(a.has_membership(7));
    assert!(same_id.has_membership(7));
    assert_eq!(MEMBERSHIP_CALLS.get(), 1, "same id, same entry");
    assert!(!b.has_membership(7));
    assert_eq!(MEMBERSHIP_CALLS.get(), 2);
    let _ = (&a.name, &same_id.name, &b.name);

    // Deleting through the bound method works (Flask-Caching silently did nothing).
    a.has_membership_delete_memoized(7).unwrap();
    a.has_membership(7);
    assert_eq!(MEMBERSHIP_CALLS.get(), 3);
    b.has_membership(7);
    assert_eq!(MEMBERSHIP_CALLS.get(), 3, "b's entry is untouched");

    Person::has_membership_delete_memoized_all().unwrap();
    a.has_membership(7);
    b.has_membership(7);
    assert_eq!(MEMBERSHIP_CALLS.get(), 5);

    let key = a.has_membership_make_cache_key(7);
    assert!(key.starts_with("methods::Person::has_membership:"), "{key}");
    assert!(a.has_membership_uncached(7));
}

mod shapes {
    use super::*;

    pub(crate) struct Circle;
    pub(crate) struct Square;

    pub(crate) static CIRCLE_CALLS: Calls = Calls::new();
    pub(crate) static SQUARE_CALLS: Calls = Calls::new();

    impl Circle {
        #[memoize(cache = CACHE)]
        pub(crate) fn make(n: u32) -> String {
            CIRCLE_CALLS.bump();
            format!("circle {n}")
        }
    }

    impl Square {
        #[memoize(cache = CACHE)]
        pub(crate) fn make(n: u32) -> String {
            SQUARE_CALLS.bump();
            format!("square {n}")
        }
    }
}

#[test]
fn associated_functions_of_two_types_in_one_module_do_not_share_entries() {
    use shapes::*;
    assert_eq!(Circle::make(1), "circle 1");
    assert_eq!(Square::make(1), "square 1");
    assert_eq!(Circle::make(1), "circle 1");
    assert_eq!(Square::make(1), "square 1");
    assert_eq!((CIRCLE_CALLS.get(), SQUARE_CALLS.get()), (1, 1));
    assert!(Circle::make_make_cache_key(1).starts_with("methods::shapes::Circle::make:"));
    Circle::make_delete_memoized_all().unwrap();
    Circle::make(1);
    Square::make(1);
    assert_eq!((CIRCLE_CALLS.get(), SQUARE_CALLS.get()), (2, 1));
}

static GENERIC_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE)]
fn parse_as<
    T: std::str::FromStr
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
        + Send
        + Sync
        + 'static,
>(
    s: &str,
) -> Option<T> {
    GENERIC_CALLS.bump();
    s.parse().ok()
}

#[test]
fn generic_instantiations_never_share_entries() {
    assert_eq!(parse_as::<u8>("7"), Some(7u8));
    assert_eq!(parse_as::<u64>("7"), Some(7u64));
    assert_eq!(parse_as::<u8>("7"), Some(7u8));
    assert_eq!(parse_as::<u64>("7"), Some(7u64));
    assert_eq!(GENERIC_CALLS.get(), 2);
    let k8 = parse_as_make_cache_key::<u8>("7");
    let k64 = parse_as_make_cache_key::<u64>("7");
    assert_ne!(k8, k64);
    assert!(k8.starts_with("methods::parse_as<u8>:"), "{k8}");
    // Invalidating one instantiation leaves the other.
    parse_as_delete_memoized_all::<u8>().unwrap();
    parse_as::<u8>("7");
    parse_as::<u64>("7");
    assert_eq!(GENERIC_CALLS.get(), 3);
}

struct Wrapper<T>(T);

impl<T: Hash> Hash for Wrapper<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

static WRAPPER_CALLS: Calls = Calls::new();

impl<T: Hash + std::fmt::Debug> Wrapper<T> {
    #[memoize(cache = CACHE)]
    fn describe(&self) -> String {
        WRAPPER_CALLS.bump();
        format!("{:?}", self.0)
    }
}

#[test]
fn methods_of_generic_types_key_by_the_concrete_self() {
    assert_eq!(Wrapper(1u8).describe(), "1");
    assert_eq!(Wrapper(1u64).describe(), "1");
    assert_eq!(Wrapper(1u8).describe(), "1");
    assert_eq!(WRAPPER_CALLS.get(), 2);
    assert_ne!(
        Wrapper(1u8).describe_make_cache_key(),
        Wrapper(1u64).describe_make_cache_key()
    );
    Wrapper::<u8>::describe_delete_memoized_all().unwrap();
    Wrapper(1u8).describe();
    Wrapper(1u64).describe();
    assert_eq!(WRAPPER_CALLS.get(), 3);
}

static NAMED_CALLS: Calls = Calls::new();

struct Named<T>(std::marker::PhantomData<T>);

impl<T> Named<T> {
    /// No receiver and no argument of type `T`: only `Self` tells the instantiations apart.
    #[memoize(cache = CACHE)]
    fn type_label(prefix: &'static str) -> String {
        NAMED_CALLS.bump();
        format!("{prefix}{}", std::any::type_name::<T>())
    }
}

#[test]
fn associated_fns_of_generic_types_key_by_the_concrete_self() {
    assert_eq!(Named::<u8>::type_label("t:"), "t:u8");
    assert_eq!(Named::<String>::type_label("t:"), "t:alloc::string::String");
    assert_eq!(Named::<u8>::type_label("t:"), "t:u8");
    assert_eq!(NAMED_CALLS.get(), 2);
    let k8 = Named::<u8>::type_label_make_cache_key("t:");
    assert!(k8.starts_with("methods::Named<u8>::type_label:"), "{k8}");
    assert_ne!(k8, Named::<String>::type_label_make_cache_key("t:"));
    // The helpers find the same identity as the wrapper, per instantiation.
    Named::<u8>::type_label_delete_memoized_all().unwrap();
    Named::<u8>::type_label("t:");
    Named::<String>::type_label("t:");
    assert_eq!(NAMED_CALLS.get(), 3);
}

static CONST_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE)]
fn scaled<const N: u32>(a: u32) -> u32 {
    CONST_CALLS.bump();
    a * N
}

#[test]
fn const_generics_are_part_of_the_key() {
    assert_eq!(scaled::<2>(5), 10);
    assert_eq!(scaled::<3>(5), 15);
    assert_eq!(scaled::<2>(5), 10);
    assert_eq!(CONST_CALLS.get(), 2);
}

static IMPL_CALLS: Calls = Calls::new();

#[memoize(cache = CACHE)]
fn impl_trait_arg(x: impl Hash + std::fmt::Display) -> String {
    IMPL_CALLS.bump();
    x.to_string()
}

#[test]
fn impl_trait_arguments_work() {
    impl_trait_arg(5u8);
    impl_trait_arg(5u8);
    impl_trait_arg("five");
    assert_eq!(IMPL_CALLS.get(), 2);
}

struct Counter {
    count: u32,
}

impl Hash for Counter {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.count.hash(state);
    }
}

impl Counter {
    #[memoize(cache = CACHE)]
    fn bump(&mut self) -> u32 {
        self.count += 1;
        self.count
    }

    #[memoize(cache = CACHE)]
    fn into_count(self) -> u32 {
        self.count
    }
}

#[test]
fn other_receivers_work() {
    let mut c = Counter { count: 0 };
    assert_eq!(c.bump(), 1);
    assert_eq!(c.bump(), 2);
    assert_eq!(Counter { count: 5 }.into_count(), 5);
    assert_eq!(Counter { count: 5 }.into_count(), 5);
}
