//! How a decorated function's return type maps to what is cached.

use std::marker::PhantomData;

use crate::__private::Cacheable;

/// How a function's return type maps to what is cached.
pub trait Shape {
    /// The function's return type.
    type Out;
    /// The type stored in the cache.
    type Stored: Cacheable;
    /// The part of `out` to cache, if any (`Ok` of a `Result`, `Some` of an `Option`).
    fn stored(out: &Self::Out) -> Option<&Self::Stored>;
    /// The return value for a cached value.
    fn rebuild(stored: Self::Stored) -> Self::Out;
}

/// Any return type, cached as it is.
pub struct Plain<T>(PhantomData<fn() -> T>);
/// `Result<T, E>`: only `Ok` values are cached.
pub struct OkOnly<T, E>(PhantomData<fn() -> (T, E)>);
/// `Option<T>`: only `Some` values are cached (use [`Plain`] to cache `None` too).
pub struct SomeOnly<T>(PhantomData<fn() -> T>);

// Every impl asks for `T: Cacheable` and nothing else: when `T` is not cacheable, the one
// unmet bound is `T: Cacheable`, the same one generated code asserts on the return type
// first, so the compiler reports it once, with `Cacheable`'s message.

impl<T: Cacheable> Shape for Plain<T> {
    type Out = T;
    type Stored = T;
    fn stored(out: &T) -> Option<&T> {
        Some(out)
    }
    fn rebuild(stored: T) -> T {
        stored
    }
}

impl<T: Cacheable, E> Shape for OkOnly<T, E> {
    type Out = Result<T, E>;
    type Stored = T;
    fn stored(out: &Result<T, E>) -> Option<&T> {
        out.as_ref().ok()
    }
    fn rebuild(stored: T) -> Result<T, E> {
        Ok(stored)
    }
}

impl<T: Cacheable> Shape for SomeOnly<T> {
    type Out = Option<T>;
    type Stored = T;
    fn stored(out: &Option<T>) -> Option<&T> {
        out.as_ref()
    }
    fn rebuild(stored: T) -> Option<T> {
        Some(stored)
    }
}
