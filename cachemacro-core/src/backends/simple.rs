//! `CACHE_TYPE=simple`: the in-process cache.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coarsetime::Instant;

use quick_cache::sync::{Cache as Map, EntryAction, EntryResult};
use quick_cache::{Lifecycle, UnitWeighter};

use crate::keys::{digest, Identity, MemoKey};
use crate::{Backend, Error, Value};

/// Flask's default `CACHE_THRESHOLD`.
pub const DEFAULT_THRESHOLD: usize = 500;

/// Version keys end so; their entries are pinned and their writes move the epoch.
const VERSION_SUFFIX: &str = ":memver";

/// Epochs are drawn from one counter, so an epoch value names one backend in one state.
static EPOCHS: AtomicU64 = AtomicU64::new(1);

/// An in-process cache of at most `threshold` entries with per-entry expiry.
///
/// Built on [`quick_cache`]: reads take one shard's read lock (never a global lock) and
/// eviction is its S3-FIFO policy, so a scan of one-off keys does not flush the hot ones.
/// Values are kept unserialized ([`Value::object`]); a read as the wrong type goes through
/// the MessagePack encoding, as it would on a remote backend. Expired entries are dropped
/// when read and count against the threshold until then; expiry is checked against the
/// coarse monotonic clock (a few milliseconds of resolution).
///
/// Entries are indexed by the 128-bit [`digest`] of their key. Function versions are pinned
/// (never evicted) and every write to one moves the backend's *epoch*, so a memoized hit can
/// trust the version it read at the current epoch without reading it again: the hit is one
/// map read plus one load of a rarely written atomic.
pub struct SimpleBackend {
    map: Map<u128, Entry, UnitWeighter, DigestHasher, PinVersions>,
    epoch: Epoch,
}

/// Read by every memoized hit, written only when a version changes: kept on its own cache
/// lines.
#[repr(align(128))]
struct Epoch(AtomicU64);

#[derive(Clone)]
struct Entry {
    value: Value,
    expires: Option<Instant>,
    version: bool,
}

impl Entry {
    fn new(key: &str, value: Value, ttl: Option<Duration>) -> Self {
        Entry {
            value,
            expires: ttl
                .map(|t| Instant::now_without_cache_update() + coarsetime::Duration::from(t)),
            version: key.ends_with(VERSION_SUFFIX),
        }
    }
    fn live(&self) -> bool {
        self.expires
            .is_none_or(|at| at > Instant::now_without_cache_update())
    }
}

/// Digests are uniformly distributed already: the map uses their low bits as they are.
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

/// Versions are never evicted: they are few (one per memoized function) and losing one
/// would drop every entry of its function.
#[derive(Clone)]
struct PinVersions;

impl Lifecycle<u128, Entry> for PinVersions {
    type RequestState = ();
    fn is_pinned(&self, _: &u128, e: &Entry) -> bool {
        e.version
    }
    fn begin_request(&self) {}
}

impl SimpleBackend {
    /// A cache holding at most `threshold` entries (at least 1), besides function versions.
    pub fn new(threshold: usize) -> Self {
        let threshold = threshold.max(1);
        SimpleBackend {
            map: Map::with(
                threshold,
                threshold as u64,
                UnitWeighter,
                DigestHasher,
                PinVersions,
            ),
            epoch: Epoch(AtomicU64::new(EPOCHS.fetch_add(1, Ordering::SeqCst))),
        }
    }

    /// How many entries are held, expired ones included until they are read or evicted.
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

    fn after_write(&self, key: &str) {
        if key.ends_with(VERSION_SUFFIX) {
            self.moved();
        }
    }

    fn live(&self, d: u128) -> Option<Value> {
        let entry = self.map.get(&d)?;
        if entry.live() {
            return Some(entry.value);
        }
        self.map.remove_if(&d, |e| !e.live());
        None
    }

    /// The current version of `id`'s function, from the version cache while the epoch holds.
    #[inline]
    pub(crate) fn version(&self, id: &Identity) -> Option<u64> {
        let epoch = self.epoch.0.load(Ordering::SeqCst);
        if let Some(v) = id.local_version.get(epoch) {
            return Some(v);
        }
        let entry = self.map.get(&id.version_digest())?;
        let version = entry.value.as_i64()? as u64;
        // A version written with an expiry (by hand) is read every time.
        if entry.expires.is_none() {
            id.local_version.put(epoch, version);
        } else if !entry.live() {
            return None;
        }
        Some(version)
    }

    /// The live value of a memoized call.
    #[inline]
    pub(crate) fn get_memo(&self, key: &MemoKey) -> Option<Value> {
        self.live(key.digest())
    }

    /// Runs `occupied` on the live value at `key` under the shard lock, or inserts
    /// `vacant()` when there is none; atomic with respect to every other writer.
    fn upsert<T>(
        &self,
        key: &str,
        occupied: impl FnOnce(&mut Entry) -> Result<T, Error>,
        vacant: impl FnOnce() -> (Entry, T),
    ) -> Result<T, Error> {
        let mut outcome = None;
        let result = self.map.entry(&digest(key), None, |_, e| {
            if !e.live() {
                return EntryAction::ReplaceWithGuard;
            }
            outcome = Some(occupied(e));
            EntryAction::Retain(())
        });
        let out = match result {
            EntryResult::Retained(()) => outcome.expect("set by the callback"),
            EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => {
                let (entry, out) = vacant();
                // A concurrent plain `set` may have taken the slot; it wins, as it would
                // had it come just after us.
                let _ = guard.insert(entry);
                Ok(out)
            }
            EntryResult::Removed(..) | EntryResult::Timeout => Err(Error::Backend(
                "in-memory entry vanished during update".into(),
            )),
        };
        self.after_write(key);
        out
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
    fn into_simple(self: Arc<Self>) -> Option<Arc<SimpleBackend>> {
        Some(self)
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
        Ok(self.map.get(&digest(key)).is_some_and(|e| e.live()))
    }
    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), Error> {
        self.map.insert(digest(key), Entry::new(key, value, ttl));
        self.after_write(key);
        Ok(())
    }
    fn add(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<bool, Error> {
        self.upsert(key, |_| Ok(false), || (Entry::new(key, value, ttl), true))
    }
    fn set_many(&self, items: &[(&str, Value)], ttl: Option<Duration>) -> Result<(), Error> {
        for (key, value) in items {
            self.set(key, value.clone(), ttl)?;
        }
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<bool, Error> {
        let deleted = self.map.remove(&digest(key)).is_some_and(|(_, e)| e.live());
        self.after_write(key);
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
        self.upsert(
            key,
            |e| {
                let n = e
                    .value
                    .as_i64()
                    .ok_or_else(overflow)?
                    .checked_add(delta)
                    .ok_or_else(overflow)?;
                e.value = Value::int(n);
                Ok(n)
            },
            || (Entry::new(key, Value::int(delta), None), delta),
        )
    }
    fn clear(&self) -> Result<(), Error> {
        self.map.clear();
        self.moved();
        Ok(())
    }
}
