//! Keys as memcached gets them, and which server each one goes to.

use xxhash_rust::xxh3::xxh3_128;

use super::batch::{Route, RoutedKey};
use super::{MemcachedBackend, MAX_KEY};
use crate::keys::is_version_key;
use crate::Error;

impl MemcachedBackend {
    /// The key as sent and where it goes: function versions to their home server only,
    /// every other key through the ring.
    pub(super) fn routed(&self, key: &str) -> RoutedKey {
        let route = if is_version_key(key) {
            Route::Home
        } else {
            Route::Ring
        };
        (self.mkey(key), route)
    }

    /// The key as sent: prefixed, and replaced by a hash when memcached could not take it as
    /// it is (empty, too long, spaces, control or non-ASCII bytes).
    pub(super) fn mkey(&self, key: &str) -> Vec<u8> {
        let full_len = self.prefix.len() + key.len();
        let ok = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        // A key shaped like a hashed key (`#` and 32 hex digits) is hashed too, so no key
        // can be sent as another's hashed form.
        let hashed_shape = key.len() == 33 && key.starts_with('#');
        if (1..=MAX_KEY).contains(&full_len) && ok(key) && ok(&self.prefix) && !hashed_shape {
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

    pub(super) fn chunk_key(&self, key: &str, i: u32) -> RoutedKey {
        // The NUL forces the hashed form: chunk keys are always valid and prefixed.
        (self.mkey(&format!("{key}\0chunk{i}")), Route::Ring)
    }

    /// The server for a key, or an error when it cannot take it now.
    pub(super) fn route(&self, key: &[u8], route: Route) -> Result<usize, Error> {
        let s = match route {
            Route::Ring => self.ring.server(key, |s| self.servers[s].in_ring()),
            Route::Home => self.ring.server(key, |_| true),
            Route::Server(s) => Some(s),
        }
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
