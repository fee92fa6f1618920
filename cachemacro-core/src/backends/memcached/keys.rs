//! Keys as memcached gets them, and which server each one goes to.

use xxhash_rust::xxh3::xxh3_128;

use super::{MemcachedBackend, MAX_KEY};
use crate::Error;

impl MemcachedBackend {
    /// The key as sent: prefixed, and replaced by a hash when memcached could not take it as
    /// it is (too long, spaces, control or non-ASCII bytes).
    pub(super) fn mkey(&self, key: &str) -> Vec<u8> {
        let full_len = self.prefix.len() + key.len();
        let ok = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if full_len <= MAX_KEY && ok(key) && ok(&self.prefix) {
            let mut k = Vec::with_capacity(full_len);
            k.extend_from_slice(self.prefix.as_bytes());
            k.extend_from_slice(key.as_bytes());
            return k;
        }
        let mut full = self.prefix.clone().into_bytes();
        full.extend_from_slice(key.as_bytes());
        let prefix = if self.prefix.len() <= 200 && ok(&self.prefix) {
            self.prefix.as_str()
        } else {
            ""
        };
        format!("{prefix}#{:032x}", xxh3_128(&full)).into_bytes()
    }

    pub(super) fn chunk_key(&self, key: &str, i: u32) -> Vec<u8> {
        // The NUL forces the hashed form: chunk keys are always valid and prefixed.
        self.mkey(&format!("{key}\0chunk{i}"))
    }

    /// The server for a key, or an error when none can take it now.
    pub(super) fn route(&self, key: &[u8]) -> Result<usize, Error> {
        let s = self
            .ring
            .server(key, |s| self.servers[s].in_ring())
            .ok_or_else(|| Error::Backend("no memcached server is in rotation".into()))?;
        if !self.servers[s].available() {
            return Err(Error::Backend(format!(
                "memcached server {} failed recently; retried after {:?}",
                self.servers[s].addr, self.opts.retry_timeout
            )));
        }
        Ok(s)
    }
}
