//! `CACHE_TYPE=simple`: the in-process cache.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use coarsetime::Instant;
use papaya::{Guard, HashMap, ResizeMode};

mod local_version;
mod sieve;

pub(crate) use local_version::LocalVersion;
use sieve::{Sieve, NIL};

use crate::keys::{digest, is_version_key, Identity, MemoKey};
use crate::{Backend, Error, Value};

/// Flask's default `CACHE_THRESHOLD`.
pub const DEFAULT_THRESHOLD: usize = 500;

/// Epochs are drawn from one counter, so an epoch value names one backend in one state.
static EPOCHS: AtomicU64 = AtomicU64::new(1);

/// An in-process cache of at most `threshold` entries with per-entry expiry.
///
/// Reads take no lock: entries live in a [`papaya`] map (lock-free reads under an epoch
/// guard), and a hit only sets the entry's visited bit, once. Writes
/// (`set`, `add`, `delete`, `inc`, `clear`) take one writer lock, under which they update the
/// map and the [SIEVE] eviction order: a full cache evicts before it inserts, sparing entries
/// hit since the hand last passed, so a scan of one-off keys does not flush the hot ones.
/// Expired entries are evicted first when the hand meets them, and dropped when read. Expiry
/// is checked against the coarse monotonic clock (a few milliseconds of resolution).
///
/// Values are kept unserialized ([`Value::object`]); a read as the wrong type goes through
/// the MessagePack encoding, as it would on a remote backend.
///
/// Entries are indexed by a 128-bit digest of their key. Function versions are pinned
/// (never evicted, not counted against the threshold) and every write to one moves the
/// backend's *epoch*, so a memoized hit can trust the version it read at the current epoch
/// without reading it again: the hit is one map read plus one load of a rarely written
/// atomic.
///
/// [SIEVE]: https://www.usenix.org/conference/nsdi24/presentation/zhang-yazhuo
pub struct SimpleBackend {
    map: HashMap<u128, Entry, DigestHasher>,
    /// Serializes writers and holds the eviction order; readers never take it.
    writer: Mutex<Sieve>,
    threshold: usize,
    epoch: Epoch,
}

/// Read by every memoized hit, written only when a version changes: kept on its own cache
/// lines.
#[repr(align(128))]
struct Epoch(AtomicU64);

/// 48 bytes: with its 16-byte key, one cache line's worth.
struct Entry {
    value: Value,
    /// When the entry expires, as coarse-clock ticks ([`Instant::as_u64`]); 0: never.
    expires: u64,
    /// The entry's place in the eviction order; `NIL` for function versions (pinned).
    slot: u32,
    /// Hit since the eviction hand last passed.
    visited: AtomicBool,
}

impl Entry {
    #[inline]
    fn live(&self) -> bool {
        self.expires == 0 || self.expires > Instant::now_without_cache_update().as_u64()
    }

    /// Marks a hit: one store the first time, nothing after (no cache line ping-pong between
    /// threads hitting the same entry).
    #[inline]
    fn touch(&self) {
        if !self.visited.load(Ordering::Relaxed) {
            self.visited.store(true, Ordering::Relaxed);
        }
    }
}

/// The expiry of an entry written now with `ttl`; 0 (never) for none, and for a TTL too long
/// for the coarse clock's ticks (over 68 years, where its arithmetic would overflow).
fn expiry(ttl: Option<Duration>) -> u64 {
    match ttl {
        Some(t) if t.as_secs() < 1 << 31 => Instant::now_without_cache_update()
            .checked_add(coarsetime::Duration::from(t))
            .map_or(0, |at| at.as_u64().max(1)),
        _ => 0,
    }
}

/// Digests are uniformly distributed already: the map uses them as they are.
#[derive(Clone, Default)]
struct DigestHasher;

struct DigestHash(u64);

impl BuildHasher for DigestHasher {
    type Hasher = DigestHash;
    fn build_hasher(&self) -> DigestHash {
        DigestHash(0)
    }
}

impl Hasher for DigestHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64 ^ (v >> 64) as u64;
    }
}

impl SimpleBackend {
    /// A cache holding at most `threshold` entries (at least 1), besides function versions.
    pub fn new(threshold: usize) -> Self {
        let threshold = threshold.max(1);
        SimpleBackend {
            // Not sized for the threshold up front: a table that grows with the entries keeps
            // a small working set in the CPU caches, which is most of a hit's cost.
            // Blocking resizes: writers are serialized anyway, and readers then always find
            // entries in one table.
            map: HashMap::builder()
                .hasher(DigestHasher)
                .resize_mode(ResizeMode::Blocking)
                .build(),
            writer: Mutex::new(Sieve::new()),
            threshold,
            epoch: Epoch(AtomicU64::new(EPOCHS.fetch_add(1, Ordering::SeqCst))),
        }
    }

    /// How many entries are held, function versions and expired entries included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// After the map changed a version: cached versions from before are no longer trusted.
    fn moved(&self) {
        self.epoch
            .0
            .store(EPOCHS.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, Sieve> {
        // The order is consistent between statements, so a writer that panicked left it whole.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the live entry at `d`, marking the hit; drops the entry if it expired.
    #[inline]
    fn read<R>(&self, d: u128, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let guard = self.map.guard();
        let entry = self.map.get(&d, &guard)?;
        if entry.live() {
            entry.touch();
            return Some(f(entry));
        }
        drop(guard);
        self.drop_expired(d);
        None
    }

    #[cold]
    fn drop_expired(&self, d: u128) {
        let mut order = self.lock();
        let guard = self.map.guard();
        if self.map.get(&d, &guard).is_some_and(|e| !e.live()) {
            self.remove(&mut order, d, &guard);
        }
    }

    fn live(&self, d: u128) -> Option<Value> {
        self.read(d, |e| e.value.clone())
    }

    /// Removes `d` from the map and the order; whether a live entry was there.
    fn remove(&self, order: &mut Sieve, d: u128, guard: &impl Guard) -> bool {
        match self.map.remove(&d, guard) {
            Some(old) => {
                if old.slot != NIL {
                    order.remove(old.slot, d);
                }
                old.live()
            }
            None => false,
        }
    }

    /// Stores `value` at `key` (writer lock held), evicting first when a new entry would go
    /// over the threshold.
    fn insert(&self, order: &mut Sieve, key: &str, value: Value, expires: u64, guard: &impl Guard) {
        let d = digest(key);
        let (slot, visited) = match self.map.get(&d, guard) {
            // Rewriting an entry counts as a use of it.
            Some(old) => (old.slot, true),
            None if is_version_key(key) => (NIL, false),
            None => {
                while order.len() >= self.threshold {
                    let victim = order.evict(|d| {
                        self.map
                            .get(&d, guard)
                            .is_some_and(|e| e.live() && e.visited.swap(false, Ordering::Relaxed))
                    });
                    match victim {
                        Some(victim) => {
                            self.map.remove(&victim, guard);
                        }
                        None => break,
                    }
                }
                (order.push(d), false)
            }
        };
        let entry = Entry {
            value,
            expires,
            slot,
            visited: AtomicBool::new(visited),
        };
        self.map.insert(d, entry, guard);
        if slot == NIL {
            self.moved();
        }
    }

    /// The current version of `id`'s function, from the version cache while the epoch holds.
    #[inline]
    pub(crate) fn version(&self, id: &Identity) -> Option<u64> {
        let epoch = self.epoch.0.load(Ordering::SeqCst);
        if let Some(v) = id.local_version.get(epoch) {
            return Some(v);
        }
        let guard = self.map.guard();
        let entry = self.map.get(&id.version_digest(), &guard)?;
        let version = entry.value.as_version()?;
        // A version written with an expiry (by hand) is read every time.
        if entry.expires == 0 {
            id.local_version.put(epoch, version);
        } else if !entry.live() {
            return None;
        }
        Some(version)
    }

    /// Runs `f` on the live value of a memoized call, without copying it.
    #[inline]
    pub(crate) fn with_memo<R>(&self, key: &MemoKey, f: impl FnOnce(&Value) -> R) -> Option<R> {
        self.read(key.digest(), |e| f(&e.value))
    }

    /// Under the writer lock: `f` gets the live value at `key`, if any, and says what to
    /// store there (keeping a live entry's expiry; a new one gets `ttl`) and what to return.
    fn upsert<T>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        f: impl FnOnce(Option<&Value>) -> Result<(Option<Value>, T), Error>,
    ) -> Result<T, Error> {
        let mut order = self.lock();
        let guard = self.map.guard();
        let current = self.map.get(&digest(key), &guard).filter(|e| e.live());
        let expires = match current {
            Some(e) => e.expires,
            None => expiry(ttl),
        };
        let (new, out) = f(current.map(|e| &e.value))?;
        if let Some(value) = new {
            self.insert(&mut order, key, value, expires, &guard);
        }
        Ok(out)
    }
}

impl Backend for SimpleBackend {
    fn name(&self) -> &'static str {
        "simple"
    }
    fn is_blocking(&self) -> bool {
        false
    }
    fn keeps_objects(&self) -> bool {
        true
    }
    fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        Ok(self.live(digest(key)))
    }
    fn get_pair(&self, first: &str, second: &str) -> Result<(Option<Value>, Option<Value>), Error> {
        Ok((self.live(digest(first)), self.live(digest(second))))
    }
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error> {
        Ok(keys.iter().map(|k| self.live(digest(k))).collect())
    }
    fn has(&self, key: &str) -> Result<bool, Error> {
        Ok(self.read(digest(key), |_| ()).is_some())
    }
    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), Error> {
        let mut order = self.lock();
        self.insert(&mut order, key, value, expiry(ttl), &self.map.guard());
        Ok(())
    }
    fn add(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<bool, Error> {
        self.upsert(key, ttl, |current| {
            Ok(match current {
                Some(_) => (None, false),
                None => (Some(value), true),
            })
        })
    }
    fn set_many(&self, items: &[(&str, Value)], ttl: Option<Duration>) -> Result<(), Error> {
        // Copies are made before the lock: a value's `Clone` is user code.
        let items: Vec<(&str, Value)> = items.iter().map(|(k, v)| (*k, v.clone())).collect();
        let expires = expiry(ttl);
        let mut order = self.lock();
        let guard = self.map.guard();
        for (key, value) in items {
            self.insert(&mut order, key, value, expires, &guard);
        }
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<bool, Error> {
        let mut order = self.lock();
        let deleted = self.remove(&mut order, digest(key), &self.map.guard());
        if is_version_key(key) {
            self.moved();
        }
        Ok(deleted)
    }
    fn delete_many(&self, keys: &[&str]) -> Result<usize, Error> {
        let mut n = 0;
        for key in keys {
            n += usize::from(self.delete(key)?);
        }
        Ok(n)
    }
    fn inc(&self, key: &str, delta: i64) -> Result<i64, Error> {
        let overflow = || Error::NotANumber(key.to_owned());
        self.upsert(key, None, |current| {
            let n = match current {
                Some(v) => v
                    .as_i64()
                    .ok_or_else(overflow)?
                    .checked_add(delta)
                    .ok_or_else(overflow)?,
                None => delta,
            };
            Ok((Some(Value::int(n)), n))
        })
    }
    fn clear(&self) -> Result<(), Error> {
        let mut order = self.lock();
        self.map.pin().clear();
        order.clear();
        self.moved();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_beyond_the_clock_never_expire() {
        assert_eq!(expiry(None), 0);
        assert_eq!(expiry(Some(Duration::from_secs(u64::MAX))), 0);
        assert_eq!(expiry(Some(Duration::MAX)), 0);
        assert!(expiry(Some(Duration::from_secs(60))) > 0);
    }

    #[test]
    fn an_entry_and_its_key_fit_in_a_cache_line() {
        assert_eq!(std::mem::size_of::<Value>(), 32);
        assert_eq!(
            std::mem::size_of::<Entry>() + std::mem::size_of::<u128>(),
            64
        );
    }
}
