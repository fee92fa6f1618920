//! The hasher argument `Hash` streams are fed into.

use std::fmt;
use std::hash::Hasher;

use xxhash_rust::xxh3::{xxh3_128_with_seed, Xxh3};

use super::ARGS_SEED;

/// Bytes hashed in one shot from an inline buffer; longer streams go through a streaming
/// XXH3.
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
