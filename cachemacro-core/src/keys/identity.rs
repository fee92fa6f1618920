//! Function identities, memoize keys and version keys.

use std::fmt;
use std::hash::Hasher;

use super::digest::{digest, hex32, prefix_digest};
use super::{KeyHasher, MAX_NAME};
use crate::backends::LocalVersion;

/// How a function's version key ends: `{name}:{16 hex digits}:memver`.
const VERSION_SUFFIX: &str = ":memver";

/// Whether `key` has the shape of a function's [`Identity::version_key`] (a key that merely
/// ends in `:memver` does not).
pub(crate) fn is_version_key(key: &str) -> bool {
    key.strip_suffix(VERSION_SUFFIX)
        .and_then(|rest| rest.len().checked_sub(17).map(|i| &rest.as_bytes()[i..]))
        .is_some_and(|tail| tail[0] == b':' && tail[1..].iter().all(|b| b.is_ascii_hexdigit()))
}

/// The identity of one decorated function (one instantiation, for generic ones), prepared
/// once: its readable name, the digests its keys derive from, its version key.
#[derive(Debug)]
pub struct Identity {
    /// The type name of a closure in the function that asked for this identity: it names
    /// one instantiation, with every generic argument (of `Self` and of the function).
    pub(super) instance: &'static str,
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

impl MemoKey {
    /// The key as text, `{name}:{32 hex}`, in one allocation of its exact size.
    pub(crate) fn text(&self) -> String {
        let mut s = String::with_capacity(self.id.name.len() + 33);
        s.push_str(&self.id.name);
        s.push(':');
        s.push_str(std::str::from_utf8(&hex32(self.hash())).unwrap_or_default());
        s
    }
}

impl fmt::Display for MemoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id.name)?;
        f.write_str(":")?;
        f.write_str(std::str::from_utf8(&hex32(self.hash())).unwrap_or_default())
    }
}

/// Keeps only printable ASCII other than space (what memcached accepts), cut to `max` bytes.
fn sanitize(s: &str, max: usize) -> String {
    s.bytes()
        .take(max)
        .map(|b| if b.is_ascii_graphic() { b as char } else { '_' })
        .collect()
}
