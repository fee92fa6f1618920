//! Cache keys: function identities, memoize keys, version keys, fragment keys, digests.
//!
//! A memoize key is `{name}:{hash}` where `name` is the readable function identity (made safe
//! for every backend and cut to [`MAX_NAME`] bytes) and `hash` is the 128-bit XXH3 (seeded,
//! a fixed algorithm) of every argument's `Hash` stream, XORed with the XXH3 of the full
//! identity. Equal
//! inputs give equal keys in every process running the same build; distinct inputs collide
//! with probability about 2⁻¹²⁸ per pair. Every key this module builds is at most 250
//! printable ASCII bytes, a valid memcached key as it is.
//!
//! In-process backends index entries by [`digest`], a 128-bit digest of the key string that a
//! memoized call computes straight from its hash ([`MemoKey::digest`]), so a hit there builds
//! no string and hashes nothing twice.

use std::fmt;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, RwLock};

use xxhash_rust::xxh3::{xxh3_128_with_seed, Xxh3};

/// Longest readable function name kept in a key; the hash covers the rest.
pub const MAX_NAME: usize = 200;

// Fixed seeds: keys must agree across processes, so nothing here is randomly seeded.
const ARGS_SEED: u64 = 0x6361_6368_656d_6163; // "cachemac"
const PREFIX_SEED: u64 = 0x726f_2d70_7265_6678; // "ro-prefx"
const TEXT_SEED: u64 = 0x726f_2d74_6578_7431; // "ro-text1"
const INLINE: usize = 64;

/// The hasher that argument `Hash` streams are fed into: XXH3-128 over the bytes written,
/// kept inline for the usual few dozen bytes and streamed beyond.
pub struct KeyHasher {
    buf: [u8; INLINE],
    len: usize,
    stream: Option<Box<Xxh3>>,
}

impl Default for KeyHasher {
    fn default() -> Self {
        KeyHasher {
            buf: [0; INLINE],
            len: 0,
            stream: None,
        }
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHasher").finish_non_exhaustive()
    }
}

impl KeyHasher {
    /// The 128-bit digest of what was written.
    #[inline]
    pub fn finish128(&self) -> u128 {
        match &self.stream {
            Some(s) => s.digest128(),
            None => xxh3_128_with_seed(&self.buf[..self.len], ARGS_SEED),
        }
    }

    /// Past the inline buffer: everything goes through a streaming XXH3.
    #[cold]
    #[inline(never)]
    fn write_stream(&mut self, bytes: &[u8]) {
        let stream = self.stream.get_or_insert_with(|| {
            let mut s = Box::new(Xxh3::with_seed(ARGS_SEED));
            s.update(&self.buf[..self.len]);
            s
        });
        stream.update(bytes);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.finish128() as u64
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        if self.stream.is_none() && self.len + bytes.len() <= INLINE {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            self.write_stream(bytes);
        }
    }
}

/// How a function's version key ends: `{name}:{16 hex digits}:memver`.
const VERSION_SUFFIX: &str = ":memver";

/// Whether `key` has the shape of a function's [`Identity::version_key`] (a key that merely
/// ends in `:memver` does not).
pub fn is_version_key(key: &str) -> bool {
    key.strip_suffix(VERSION_SUFFIX)
        .and_then(|rest| rest.len().checked_sub(17).map(|i| &rest.as_bytes()[i..]))
        .is_some_and(|tail| tail[0] == b':' && tail[1..].iter().all(|b| b.is_ascii_hexdigit()))
}

/// The digest in-process backends index a key string by.
///
/// A key of the memoize shape, `{prefix}:{32 lowercase hex digits}`, digests to the hex value
/// mixed with the prefix's digest, which [`MemoKey::digest`] reproduces without building the
/// string; any other key digests to its XXH3-128.
pub fn digest(key: &str) -> u128 {
    let b = key.as_bytes();
    if b.len() > 32 && b[b.len() - 33] == b':' {
        if let Some(h) = parse_hex32(&b[b.len() - 32..]) {
            return h ^ prefix_digest(&key[..key.len() - 33]);
        }
    }
    xxh3_128_with_seed(b, TEXT_SEED)
}

fn prefix_digest(prefix: &str) -> u128 {
    xxh3_128_with_seed(prefix.as_bytes(), PREFIX_SEED)
}

fn parse_hex32(hex: &[u8]) -> Option<u128> {
    hex.iter().try_fold(0u128, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u128::from(d))
    })
}

fn hex32(v: u128) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, byte) in v.to_be_bytes().iter().enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    out
}

/// The identity of one decorated function (one instantiation, for generic ones), prepared
/// once: its readable name, the digests its keys derive from, its version key.
#[derive(Debug)]
pub struct Identity {
    /// The type name of a closure in the function that asked for this identity: it names
    /// one instantiation, with every generic argument (of `Self` and of the function).
    instance: &'static str,
    name: String,
    id_hash: u128,
    prefix_digest: u128,
    version_key: String,
    version_digest: u128,
    pub(crate) local_version: LocalVersion,
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
        let mut h = KeyHasher::default();
        h.write(full.as_bytes());
        h.write_u8(0xff);
        if let Some(source) = source {
            h.write_u64(source);
        }
        let id_hash = h.finish128();
        let name = sanitize(&full, MAX_NAME);
        let version_key = format!(
            "{name}:{}{VERSION_SUFFIX}",
            &std::str::from_utf8(&hex32(id_hash)).unwrap_or_default()[..16]
        );
        Identity {
            instance: "",
            prefix_digest: prefix_digest(&name),
            version_digest: digest(&version_key),
            name,
            id_hash,
            version_key,
            local_version: LocalVersion::default(),
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

    /// The [`digest`] of the version key.
    pub fn version_digest(&self) -> u128 {
        self.version_digest
    }

    /// The key of one call: `feed` writes every argument that is part of the key.
    #[inline]
    pub fn call(&'static self, feed: impl FnOnce(&mut KeyHasher)) -> MemoKey {
        let mut h = KeyHasher::default();
        feed(&mut h);
        // The identity is mixed in afterwards rather than hashed along: short argument
        // streams stay on XXH3's fastest paths, and two calls still collide only if their
        // 128-bit digests do. The digest is computed here, while the hash is still in
        // registers: reassembled later from the key in memory, a 128-bit value stalls the
        // hit on store forwarding.
        MemoKey {
            id: self,
            digest: h.finish128() ^ self.id_hash ^ self.prefix_digest,
        }
    }
}

/// The key of one memoized call: its function and the hash of its arguments. Displays as the
/// key string, `{name}:{32 hex digits}`.
#[derive(Debug, Clone, Copy)]
pub struct MemoKey {
    pub(crate) id: &'static Identity,
    /// The [`digest`] of the key string; the argument hash is this mixed with the prefix's.
    digest: u128,
}

impl MemoKey {
    /// The function this call belongs to.
    pub fn identity(&self) -> &'static Identity {
        self.id
    }

    /// The [`digest`] of the key string, computed without building it.
    #[inline]
    pub fn digest(&self) -> u128 {
        self.digest
    }

    /// The 128-bit hash of the call (identity and arguments), as the key string shows it.
    fn hash(&self) -> u128 {
        self.digest ^ self.id.prefix_digest
    }
}

impl fmt::Display for MemoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id.name)?;
        f.write_str(":")?;
        f.write_str(std::str::from_utf8(&hex32(self.hash())).unwrap_or_default())
    }
}

/// A function's version as last read from an in-process backend, with the backend epoch it
/// was read at; valid while the backend's epoch has not moved. A seqlock: readers only load.
/// Aligned to its own cache lines: every hit of the function reads it, and a neighbour
/// written by another thread would otherwise evict it from every reader's cache.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct LocalVersion {
    epoch: AtomicU64,
    version: AtomicU64,
    write: Mutex<()>,
}

impl LocalVersion {
    #[inline]
    pub(crate) fn get(&self, current_epoch: u64) -> Option<u64> {
        let e1 = self.epoch.load(Ordering::SeqCst);
        if e1 != current_epoch || e1 == 0 {
            return None;
        }
        let version = self.version.load(Ordering::SeqCst);
        (self.epoch.load(Ordering::SeqCst) == e1).then_some(version)
    }

    pub(crate) fn put(&self, epoch: u64, version: u64) {
        let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.store(0, Ordering::SeqCst);
        self.version.store(version, Ordering::SeqCst);
        self.epoch.store(epoch, Ordering::SeqCst);
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
    use std::hash::Hash;

    fn leak(id: Identity) -> &'static Identity {
        Box::leak(Box::new(id))
    }

    #[test]
    fn keys_are_valid_memcached_keys_whatever_the_identity() {
        let long = format!("{}<&'a str, (u8, Vec<String>)>\n\0", "m::".repeat(200));
        let id = leak(Identity::new(&long, &["dyn Fn(u8) -> u8"], Some(1), None));
        for key in [
            id.call(|h| 1u8.hash(h)).to_string(),
            id.version_key().to_owned(),
        ] {
            assert!(key.len() <= 250, "{} bytes", key.len());
            assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{key}");
        }
    }

    #[test]
    fn identity_parts_all_change_the_key() {
        let key = |id: &'static Identity| id.call(|h| 5u32.hash(h)).to_string();
        let base = leak(Identity::new("m::f", &[], None, None));
        assert_eq!(key(base), key(leak(Identity::new("m::f", &[], None, None))));
        for other in [
            Identity::new("m::g", &[], None, None),
            Identity::new("m::f", &["u32"], None, None),
            Identity::new("m::f", &[], Some(7), None),
        ] {
            let other = leak(other);
            assert_ne!(key(base), key(other));
            assert_ne!(base.version_key(), other.version_key());
        }
        assert!(key(base).starts_with("m::f:"));
    }

    #[test]
    fn truncated_names_still_differ_by_hash() {
        let a = leak(Identity::new(
            &format!("{}a", "x".repeat(300)),
            &[],
            None,
            None,
        ));
        let b = leak(Identity::new(
            &format!("{}b", "x".repeat(300)),
            &[],
            None,
            None,
        ));
        assert_eq!(a.name(), b.name());
        assert_ne!(a.version_key(), b.version_key());
        assert_ne!(a.call(|_| {}).to_string(), b.call(|_| {}).to_string());
    }

    #[test]
    fn digests_of_memo_keys_match_their_strings() {
        let id = leak(Identity::new("m::f", &[], None, None));
        for i in 0..100u32 {
            let k = id.call(|h| i.hash(h));
            assert_eq!(k.digest(), digest(&k.to_string()));
        }
        assert_eq!(id.version_digest(), digest(id.version_key()));
        // Same hex, other prefix: other digest.
        let hex = "0123456789abcdef0123456789abcdef";
        assert_ne!(
            digest(&format!("user:{hex}")),
            digest(&format!("session:{hex}"))
        );
        assert_ne!(digest("a"), digest("b"));
    }

    #[test]
    fn only_keys_shaped_like_versions_are_versions() {
        let id = Identity::new("app::f", &[], None, None);
        assert!(is_version_key(id.version_key()), "{}", id.version_key());
        assert!(is_version_key(":0123456789ABCDEF:memver"));
        for key in [
            "x:memver",
            ":memver",
            "app::f:0123456789abcdeg:memver",
            "f0123456789abcdef:memver",
        ] {
            assert!(!is_version_key(key), "{key}");
        }
    }

    #[test]
    fn parents_of_type_paths_respect_generic_arguments() {
        assert_eq!(parent("a::B<c::D>::f<e::G>"), "a::B<c::D>");
        assert_eq!(parent("m::f<fn(u8) -> u8>"), "m");
        assert_eq!(parent("<a::R<s::S> as a::T>::new"), "<a::R<s::S> as a::T>");
        assert_eq!(parent("f"), "");
    }

    #[test]
    fn long_argument_streams_hash_like_short_ones_would() {
        // Inline and streamed hashing agree on the same bytes.
        let mut a = KeyHasher::default();
        a.write(&[7; 40]);
        a.write(&[9; 40]);
        let mut b = KeyHasher::default();
        b.write(&[7; 40]);
        b.write(&[9; 40]);
        assert_eq!(a.finish128(), b.finish128());
        assert_eq!(
            a.finish128(),
            xxh3_128_with_seed(&[[7u8; 40], [9u8; 40]].concat(), ARGS_SEED)
        );
    }
}
