//! `CACHE_TYPE=simple`: the in-process cache.

use std::time::{Duration, Instant};

use quick_cache::sync::{Cache as Map, EntryAction, EntryResult};

use crate::{Backend, Error, Value};

/// Flask's default `CACHE_THRESHOLD`.
pub const DEFAULT_THRESHOLD: usize = 500;

/// An in-process cache of at most `threshold` entries with per-entry expiry.
///
/// Built on [`quick_cache`]: hits take one shard's read lock (never a global lock) and
/// eviction is its S3-FIFO policy, so a scan of one-off keys does not flush the hot ones.
/// Values are kept unserialized ([`Value::object`]); a read as the wrong type goes through
/// the MessagePack encoding, as it would on a remote backend. Expired entries are dropped
/// when read and count against the threshold until then.
pub struct SimpleBackend {
    map: Map<String, Entry>,
}

#[derive(Clone)]
struct Entry {
    value: Value,
    expires: Option<Instant>,
}

impl Entry {
    fn new(value: Value, ttl: Option<Duration>) -> Self {
        Entry {
            value,
            expires: ttl.map(|t| Instant::now() + t),
        }
    }
    fn live(&self, now: Option<Instant>) -> bool {
        match (self.expires, now) {
            (None, _) => true,
            (Some(at), Some(now)) => at > now,
            (Some(at), None) => at > Instant::now(),
        }
    }
}

impl SimpleBackend {
    /// A cache holding at most `threshold` entries (at least 1).
    pub fn new(threshold: usize) -> Self {
        SimpleBackend {
            map: Map::new(threshold.max(1)),
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

    fn live(&self, key: &str, now: Option<Instant>) -> Option<Value> {
        let entry = self.map.get(key)?;
        if entry.live(now) {
            return Some(entry.value);
        }
        self.map.remove_if(key, |e| !e.live(None));
        None
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
        let result = self.map.entry(key, None, |_, e| {
            if !e.live(None) {
                return EntryAction::ReplaceWithGuard;
            }
            outcome = Some(occupied(e));
            EntryAction::Retain(())
        });
        match result {
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
        }
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
        Ok(self.live(key, None))
    }
    fn get_pair(&self, first: &str, second: &str) -> Result<(Option<Value>, Option<Value>), Error> {
        Ok((self.live(first, None), self.live(second, None)))
    }
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error> {
        let now = Some(Instant::now());
        Ok(keys.iter().map(|k| self.live(k, now)).collect())
    }
    fn has(&self, key: &str) -> Result<bool, Error> {
        Ok(self.map.get(key).is_some_and(|e| e.live(None)))
    }
    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), Error> {
        self.map.insert(key.to_owned(), Entry::new(value, ttl));
        Ok(())
    }
    fn add(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<bool, Error> {
        self.upsert(key, |_| Ok(false), || (Entry::new(value, ttl), true))
    }
    fn set_many(&self, items: &[(&str, Value)], ttl: Option<Duration>) -> Result<(), Error> {
        for (key, value) in items {
            self.set(key, value.clone(), ttl)?;
        }
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<bool, Error> {
        Ok(self.map.remove(key).is_some_and(|(_, e)| e.live(None)))
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
            || (Entry::new(Value::int(delta), None), delta),
        )
    }
    fn clear(&self) -> Result<(), Error> {
        self.map.clear();
        Ok(())
    }
}
