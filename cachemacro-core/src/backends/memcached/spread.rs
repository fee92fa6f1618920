//! Values above the item size limit, split over several keys (Flask-Caching's
//! `SpreadSASLMemcachedCache`), with what it lacks: every chunk carries the id of the value it
//! belongs to and the whole carries a checksum, so a chunk that is missing (evicted) or left
//! over from an older value makes the read a miss, never a wrong value or a decode error.
//!
//! The main key holds a small header; chunks are written first, the header last.

use xxhash_rust::xxh3::xxh3_64;

const MAGIC: [u8; 2] = [0xC5, 0xFF];
const HEADER: usize = 2 + 8 + 4 + 8 + 8;

/// The header stored under the main key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spread {
    pub(crate) id: u64,
    pub(crate) chunks: u32,
    pub(crate) total: u64,
    pub(crate) checksum: u64,
}

impl Spread {
    pub(crate) fn parse(bytes: &[u8]) -> Option<Spread> {
        if bytes.len() != HEADER || bytes[..2] != MAGIC {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
        Some(Spread {
            id: u64_at(2),
            chunks: u32::from_le_bytes(bytes[10..14].try_into().unwrap_or_default()),
            total: u64_at(14),
            checksum: u64_at(22),
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.chunks.to_le_bytes());
        out.extend_from_slice(&self.total.to_le_bytes());
        out.extend_from_slice(&self.checksum.to_le_bytes());
        out
    }

    /// Splits `value` into chunk payloads (each prefixed with the value's id) and the header.
    pub(crate) fn split(value: &[u8], chunk: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let id = fastrand::u64(..);
        let chunks: Vec<Vec<u8>> = value
            .chunks(chunk)
            .map(|c| {
                let mut v = Vec::with_capacity(8 + c.len());
                v.extend_from_slice(&id.to_le_bytes());
                v.extend_from_slice(c);
                v
            })
            .collect();
        let header = Spread {
            id,
            chunks: chunks.len() as u32,
            total: value.len() as u64,
            checksum: xxh3_64(value),
        };
        (header.encode(), chunks)
    }

    /// Whether a cache splitting values into `chunk`-byte pieces could have written this
    /// header: a total of at most 1 GiB, in as many chunks as that takes. Anything else (a
    /// foreign or forged value) is not worth fetching a single chunk for.
    pub(crate) fn plausible(&self, chunk: usize) -> bool {
        self.total <= 1 << 30 && u64::from(self.chunks) == self.total.div_ceil(chunk as u64)
    }

    /// The value, if every chunk is there, belongs to this value, and the whole checks out.
    /// Nothing is allocated before the chunks were checked against the header.
    pub(crate) fn join(&self, chunks: Vec<Option<Vec<u8>>>) -> Option<Vec<u8>> {
        if chunks.len() != self.chunks as usize {
            return None;
        }
        let mut len = 0u64;
        for chunk in &chunks {
            let chunk = chunk.as_ref()?;
            if chunk.len() < 8 || chunk[..8] != self.id.to_le_bytes() {
                return None;
            }
            len += (chunk.len() - 8) as u64;
        }
        if len != self.total {
            return None;
        }
        let mut out = Vec::with_capacity(usize::try_from(len).ok()?);
        for chunk in chunks.into_iter().flatten() {
            out.extend_from_slice(&chunk[8..]);
        }
        (xxh3_64(&out) == self.checksum).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join() {
        let value: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let (header, chunks) = Spread::split(&value, 1000);
        let h = Spread::parse(&header).unwrap();
        assert_eq!(h.chunks, 3);
        assert_eq!(
            h.join(chunks.iter().cloned().map(Some).collect()).unwrap(),
            value
        );
        // A missing chunk, a chunk of another value, a truncated chunk: a miss.
        let mut missing: Vec<_> = chunks.iter().cloned().map(Some).collect();
        missing[1] = None;
        assert_eq!(h.join(missing), None);
        let (_, other) = Spread::split(&value, 1000);
        let mut mixed: Vec<_> = chunks.iter().cloned().map(Some).collect();
        mixed[2] = Some(other[2].clone());
        assert_eq!(h.join(mixed), None);
        let mut short: Vec<_> = chunks.iter().cloned().map(Some).collect();
        short[0].as_mut().unwrap().truncate(4);
        assert_eq!(h.join(short), None);
        assert_eq!(Spread::parse(b"not a header"), None);
    }
}
