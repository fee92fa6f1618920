//! Where a decorated function's identity comes from: the type name of a closure written in
//! the generated code, parsed once per instantiation.

use std::sync::{OnceLock, RwLock};

use super::Identity;

/// One decorated function's place in the program: prepares its `Identity` on first use and
/// keeps it.
///
/// Generated code declares a `static Site` inside each function it writes for a decorated
/// function (the wrapper and every helper) and passes the type name of a closure written
/// there. That name is the enclosing function's full path with every generic argument
/// filled in: `Self`'s (`app::Repo<u32>::load::{{closure}}`, for associated functions with or
/// without a receiver, which `Self`-less code cannot name) and the function's own
/// (`app::f<u8>::{{closure}}`). So the wrapper and its helpers agree on the identity without
/// knowing whether they sit in an `impl` block, and instantiations never share one. Generic
/// functions share the static across instantiations; each identity is looked up by that
/// name (a pointer comparison, then a string comparison).
#[derive(Debug)]
pub struct Site {
    method: &'static str,
    source: Option<u64>,
    make_name: Option<fn(&str) -> String>,
    first: OnceLock<&'static Identity>,
    others: RwLock<Vec<&'static Identity>>,
}

/// Whether two type names are the same (usually the same static string).
#[inline]
fn same(a: &str, b: &str) -> bool {
    (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || a == b
}

/// `path` without its last segment, `<...>` nesting respected (the arrow of a `fn() -> T`
/// argument is not a bracket): `a::B<c::D>::f<e::G>` -> `a::B<c::D>`.
fn parent(path: &str) -> &str {
    let b = path.as_bytes();
    let mut depth = 0usize;
    let mut i = b.len();
    while i > 0 {
        i -= 1;
        match b[i] {
            b'>' if i == 0 || b[i - 1] != b'-' => depth += 1,
            b'<' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && i > 0 && b[i - 1] == b':' => return &path[..i - 1],
            _ => {}
        }
    }
    ""
}

impl Site {
    /// A site for the decorated function `method`, with an optional hash of its source and
    /// an optional `make_name`.
    pub const fn new(
        method: &'static str,
        source: Option<u64>,
        make_name: Option<fn(&str) -> String>,
    ) -> Self {
        Site {
            method,
            source,
            make_name,
            first: OnceLock::new(),
            others: RwLock::new(Vec::new()),
        }
    }

    /// The identity for this instantiation. `instance` is the type name of a closure written
    /// in the calling function, `self_ty` is `Self`'s type name for methods, `generics` the
    /// type names of the decorated function's own type parameters.
    #[inline]
    pub fn identity(
        &self,
        instance: &'static str,
        self_ty: Option<&'static str>,
        generics: &[&'static str],
    ) -> &'static Identity {
        if let Some(first) = self.first.get() {
            if same(first.instance, instance) {
                return first;
            }
        }
        self.identity_slow(instance, self_ty, generics)
    }

    /// The first call, and instantiations other than the first one.
    #[cold]
    #[inline(never)]
    fn identity_slow(
        &self,
        instance: &'static str,
        self_ty: Option<&'static str>,
        generics: &[&'static str],
    ) -> &'static Identity {
        let matches = |id: &Identity| same(id.instance, instance);
        let first = *self
            .first
            .get_or_init(|| self.prepare(instance, self_ty, generics));
        if matches(first) {
            return first;
        }
        let others = self.others.read().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = others.iter().find(|id| matches(id)) {
            return id;
        }
        drop(others);
        let mut others = self.others.write().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = others.iter().find(|id| matches(id)) {
            return id;
        }
        let id = self.prepare(instance, self_ty, generics);
        others.push(id);
        id
    }

    fn prepare(
        &self,
        instance: &'static str,
        self_ty: Option<&'static str>,
        generics: &[&'static str],
    ) -> &'static Identity {
        let path = match self_ty {
            Some(ty) => format!("{ty}::{}", self.method),
            None => {
                // `path::to::enclosing_fn<..>::{{closure}}` -> `path::to`; the body of an
                // `async fn` adds a `{{closure}}` segment after the function's name. The
                // enclosing function is the wrapper or a helper; its own generic arguments
                // are appended from `generics`, as for methods.
                let mut enclosing = instance;
                while let Some(outer) = enclosing.strip_suffix("::{{closure}}") {
                    enclosing = outer;
                }
                format!("{}::{}", parent(enclosing), self.method)
            }
        };
        let mut id = Identity::new(&path, generics, self.source, self.make_name);
        id.instance = instance;
        // One per instantiation of a decorated function: bounded by the program's code.
        Box::leak(Box::new(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_of_type_paths_respect_generic_arguments() {
        assert_eq!(parent("a::B<c::D>::f<e::G>"), "a::B<c::D>");
        assert_eq!(parent("m::f<fn(u8) -> u8>"), "m");
        assert_eq!(parent("<a::R<s::S> as a::T>::new"), "<a::R<s::S> as a::T>");
        assert_eq!(parent("f"), "");
    }
}
