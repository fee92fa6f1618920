//! Cache keys: function identities, memoize keys, version keys, fragment keys.
//!
//! A memoize key is `{name}:{hash}` where `name` is the readable function identity (made safe
//! for every backend and cut to [`MAX_NAME`] bytes) and `hash` is 128 bits of SipHash-1-3,
//! under fixed keys, over the full identity and every argument's `Hash` stream. Equal inputs
//! give equal keys in every process running the same build; distinct inputs collide with
//! probability about 2⁻¹²⁸ per pair. Every key is at most 250 printable ASCII bytes, so it is
//! a valid memcached key as it is.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::{OnceLock, RwLock};

use siphasher::sip128::{Hasher128, SipHasher13};

/// Longest readable function name kept in a key; the hash covers the rest.
pub const MAX_NAME: usize = 200;
/// Longest key this module builds (memcached's limit).
pub const MAX_KEY: usize = 250;

// Fixed keys: keys must agree across processes, so the hasher is never randomly seeded.
const K0: u64 = 0x6361_6368_656d_6163; // "cachemac"
const K1: u64 = 0x726f_2d6b_6579_7331; // "ro-keys1"

/// The hasher that argument `Hash` streams are fed into.
#[derive(Clone, Debug)]
pub struct KeyHasher(SipHasher13);

impl Default for KeyHasher {
    fn default() -> Self {
        KeyHasher(SipHasher13::new_with_keys(K0, K1))
    }
}

impl KeyHasher {
    /// The 128-bit digest of what was written.
    pub fn finish128(&self) -> u128 {
        self.0.finish128().as_u128()
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0.finish()
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
}

/// A key built on the stack: memoize hits allocate nothing.
#[derive(Clone, Copy)]
pub struct KeyBuf {
    buf: [u8; MAX_KEY],
    len: u8,
}

impl KeyBuf {
    fn new() -> Self {
        KeyBuf {
            buf: [0; MAX_KEY],
            len: 0,
        }
    }
    fn push(&mut self, bytes: &[u8]) {
        let at = usize::from(self.len);
        let n = bytes.len().min(MAX_KEY - at);
        self.buf[at..at + n].copy_from_slice(&bytes[..n]);
        self.len = (at + n) as u8;
    }
    fn push_hex(&mut self, v: u128, digits: usize) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, o) in out[..digits].iter_mut().enumerate() {
            *o = HEX[((v >> (4 * (digits - 1 - i))) & 0xf) as usize];
        }
        self.push(&out[..digits]);
    }
    /// The key.
    pub fn as_str(&self) -> &str {
        // Built only from ASCII.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Deref for KeyBuf {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for KeyBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for KeyBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity of one decorated function (one instantiation, for generic ones), prepared
/// once: its readable name, the hasher state after the identity, and its version key.
#[derive(Debug)]
pub struct Identity {
    self_ty: Option<&'static str>,
    generics: Vec<&'static str>,
    name: String,
    hasher: KeyHasher,
    version_key: String,
}

impl Identity {
    /// Prepares the identity of `path` (the function's module path and name, or `Self`'s type
    /// name and the method name), its generic arguments' type names, an optional hash of its
    /// source, and an optional `make_name` applied to the readable identity.
    pub fn new(
        path: &str,
        generics: &[&str],
        source: Option<u64>,
        make_name: Option<fn(&str) -> String>,
    ) -> Self {
        let mut full = path.to_owned();
        if !generics.is_empty() {
            full.push('<');
            full.push_str(&generics.join(","));
            full.push('>');
        }
        if let Some(make_name) = make_name {
            full = make_name(&full);
        }
        let mut hasher = KeyHasher::default();
        full.hash(&mut hasher);
        source.hash(&mut hasher);
        let name = sanitize(&full, MAX_NAME);
        let mut version_key = KeyBuf::new();
        version_key.push(name.as_bytes());
        version_key.push(b":");
        version_key.push_hex(hasher.finish128(), 16);
        version_key.push(b":memver");
        Identity {
            self_ty: None,
            generics: Vec::new(),
            name,
            hasher,
            version_key: version_key.as_str().to_owned(),
        }
    }

    /// The readable function identity as it appears in keys.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key under which the function's current version lives in the backend.
    pub fn version_key(&self) -> &str {
        &self.version_key
    }

    /// The key of one call: `feed` writes every argument that is part of the key.
    #[inline]
    pub fn key(&self, feed: impl FnOnce(&mut KeyHasher)) -> KeyBuf {
        let mut h = self.hasher.clone();
        feed(&mut h);
        let mut key = KeyBuf::new();
        key.push(self.name.as_bytes());
        key.push(b":");
        key.push_hex(h.finish128(), 32);
        key
    }
}

/// Keeps only printable ASCII other than space (what memcached accepts), cut to `max` bytes.
fn sanitize(s: &str, max: usize) -> String {
    s.bytes()
        .take(max)
        .map(|b| if b.is_ascii_graphic() { b as char } else { '_' })
        .collect()
}

/// One decorated function's place in the program: prepares its [`Identity`] on first use and
/// keeps it.
///
/// Generated code declares a marker type and a `static Site` inside each function it writes
/// for a decorated function (the wrapper and every helper). The marker's type name is the
/// enclosing function's full path, `Self` type included for associated functions
/// (`app::Person::has_membership::__CmSite`), so the wrapper and its helpers agree on the
/// identity without knowing whether they sit in an `impl` block. Generic functions and
/// methods of generic types share the static across instantiations, so each identity is
/// looked up by the instantiation's type names (string comparisons, no hashing).
#[derive(Debug)]
pub struct Site {
    method: &'static str,
    source: Option<u64>,
    make_name: Option<fn(&str) -> String>,
    first: OnceLock<&'static Identity>,
    others: RwLock<Vec<&'static Identity>>,
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

    /// The identity for this instantiation. `marker` is the type name of the marker type
    /// declared in the calling function, `self_ty` is `Self`'s type name for methods (so that
    /// `Wrapper<u32>` and `Wrapper<u64>` differ), `generics` the type names of the decorated
    /// function's own type parameters.
    #[inline]
    pub fn identity(
        &self,
        marker: &'static str,
        self_ty: Option<&'static str>,
        generics: &[&'static str],
    ) -> &'static Identity {
        let matches = |id: &Identity| id.self_ty == self_ty && id.generics == generics;
        let first = *self
            .first
            .get_or_init(|| self.prepare(marker, self_ty, generics));
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
        let id = self.prepare(marker, self_ty, generics);
        others.push(id);
        id
    }

    fn prepare(
        &self,
        marker: &'static str,
        self_ty: Option<&'static str>,
        generics: &[&'static str],
    ) -> &'static Identity {
        let path = match self_ty {
            Some(ty) => format!("{ty}::{}", self.method),
            None => {
                // `path::to::enclosing_fn::__CmSite` -> `path::to`; the body of an
                // `async fn` adds a `{{closure}}` segment after the function's name.
                let mut enclosing = marker.rsplit_once("::").map_or(marker, |(p, _)| p);
                while let Some(outer) = enclosing.strip_suffix("::{{closure}}") {
                    enclosing = outer;
                }
                let parent = enclosing.rsplit_once("::").map_or("", |(p, _)| p);
                format!("{parent}::{}", self.method)
            }
        };
        let mut id = Identity::new(&path, generics, self.source, self.make_name);
        id.self_ty = self_ty;
        id.generics = generics.to_vec();
        // One per instantiation of a decorated function: bounded by the program's code.
        Box::leak(Box::new(id))
    }
}

/// The key Flask-Caching's `{% cache %}` tag uses for a template fragment.
///
/// ```
/// use cachemacro_core::make_template_fragment_key;
/// assert_eq!(make_template_fragment_key("item", &["7"]), "_template_fragment_cache_item_7");
/// assert_eq!(make_template_fragment_key("item", &[]), "_template_fragment_cache_item");
/// ```
pub fn make_template_fragment_key(name: &str, vary_on: &[&str]) -> String {
    if vary_on.is_empty() {
        format!("_template_fragment_cache_{name}")
    } else {
        format!("_template_fragment_cache_{name}_{}", vary_on.join("_"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_memcached_keys_whatever_the_identity() {
        let long = format!("{}<&'a str, (u8, Vec<String>)>\n\0", "m::".repeat(200));
        let id = Identity::new(&long, &["dyn Fn(u8) -> u8"], Some(1), None);
        for key in [
            id.key(|h| 1u8.hash(h)).to_string(),
            id.version_key().to_owned(),
        ] {
            assert!(key.len() <= MAX_KEY, "{} bytes", key.len());
            assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{key}");
        }
    }

    #[test]
    fn identity_parts_all_change_the_key() {
        let key = |id: &Identity| id.key(|h| 5u32.hash(h)).to_string();
        let base = Identity::new("m::f", &[], None, None);
        assert_eq!(key(&base), key(&Identity::new("m::f", &[], None, None)));
        for other in [
            Identity::new("m::g", &[], None, None),
            Identity::new("m::f", &["u32"], None, None),
            Identity::new("m::f", &[], Some(7), None),
        ] {
            assert_ne!(key(&base), key(&other));
            assert_ne!(base.version_key(), other.version_key());
        }
        assert!(key(&base).starts_with("m::f:"));
    }

    #[test]
    fn truncated_names_still_differ_by_hash() {
        let a = Identity::new(&format!("{}a", "x".repeat(300)), &[], None, None);
        let b = Identity::new(&format!("{}b", "x".repeat(300)), &[], None, None);
        assert_eq!(a.name(), b.name());
        assert_ne!(a.version_key(), b.version_key());
        assert_ne!(a.key(|_| {}).to_string(), b.key(|_| {}).to_string());
    }
}
