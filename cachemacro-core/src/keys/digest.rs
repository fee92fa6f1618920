//! The 128-bit digests in-process backends index key strings by, and the hex codec memoize
//! keys are written with.

use xxhash_rust::xxh3::xxh3_128_with_seed;

use super::{PREFIX_SEED, TEXT_SEED};

/// The digest in-process backends index a key string by.
///
/// A key of the memoize shape, `{prefix}:{32 lowercase hex digits}`, digests to the hex value
/// mixed with the prefix's digest, which [`MemoKey::digest`](super::MemoKey::digest) reproduces without building the
/// string; any other key digests to its XXH3-128.
pub(crate) fn digest(key: &str) -> u128 {
    let b = key.as_bytes();
    if b.len() > 32 && b[b.len() - 33] == b':' {
        if let Some(h) = parse_hex32(&b[b.len() - 32..]) {
            return h ^ prefix_digest(&key[..key.len() - 33]);
        }
    }
    xxh3_128_with_seed(b, TEXT_SEED)
}

pub(crate) fn prefix_digest(prefix: &str) -> u128 {
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

pub(crate) fn hex32(v: u128) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, byte) in v.to_be_bytes().iter().enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    out
}
