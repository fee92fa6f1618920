//! Cache keys: what a call of a decorated function is stored under.
//!
//! A memoize key is `{name}:{hash}` where `name` is the readable function identity (made safe
//! for every backend and cut to [`MAX_NAME`] bytes) and `hash` is the 128-bit XXH3 (seeded,
//! a fixed algorithm) of every argument's `Hash` stream, XORed with the XXH3 of the full
//! identity. Equal inputs give equal keys in every process running the same build; distinct
//! inputs collide with probability about 2⁻¹²⁸ per pair. Every key this module builds is at
//! most 250 printable ASCII bytes, a valid memcached key as it is.
//!
//! - [`hasher`]: [`KeyHasher`], which argument `Hash` streams are fed into;
//! - [`site`]: [`Site`], where generated code gets its function's [`Identity`];
//! - [`identity`]: the [`Identity`] (name, version key) and the [`MemoKey`] of one call;
//! - [`digest`](mod@digest): the 128-bit digest in-process backends index keys by, which a
//!   memoized call computes straight from its hash ([`MemoKey::digest`]), so a hit there
//!   builds no string and hashes nothing twice;
//! - [`fragment`]: Flask-Caching's template fragment keys.

mod digest;
mod fragment;
mod hasher;
mod identity;
mod site;

pub(crate) use digest::digest;
pub use fragment::make_template_fragment_key;
pub use hasher::KeyHasher;
pub(crate) use identity::{is_version_key, Identity, MemoKey};
pub use site::Site;

/// Longest readable function name kept in a key; the hash covers the rest.
pub(crate) const MAX_NAME: usize = 200;

// Fixed seeds: keys must agree across processes, so nothing here is randomly seeded.
const ARGS_SEED: u64 = 0x6361_6368_656d_6163; // "cachemac"
const PREFIX_SEED: u64 = 0x726f_2d70_7265_6678; // "ro-prefx"
const TEXT_SEED: u64 = 0x726f_2d74_6578_7431; // "ro-text1"

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{Hash, Hasher};

    use xxhash_rust::xxh3::xxh3_128_with_seed;

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
    fn long_argument_streams_hash_like_short_ones_would() {
        // Inline and streamed hashing agree on the same bytes.
        let mut a = KeyHasher::default();
        a.write(&[7; 40]);
        a.write(&[9; 40]);
        // The same bytes in small writes: the first ones inline, the rest streamed.
        let mut b = KeyHasher::default();
        for chunk in [[7u8; 40], [9u8; 40]].concat().chunks(10) {
            b.write(chunk);
        }
        assert_eq!(a.finish128(), b.finish128());
        assert_eq!(
            a.finish128(),
            xxh3_128_with_seed(&[[7u8; 40], [9u8; 40]].concat(), ARGS_SEED)
        );
    }
}
