//! Stampede protection: one computation per key and version at a time, in each process.
//!
//! The first caller to miss becomes the leader and runs the body; callers that miss the same
//! key under the same function version while it runs wait for its result instead of running
//! the body too. Keying by version matters: a caller that saw a newer version (after a
//! `delete_memoized_all`) never takes a result computed under an older one. Deleting a key
//! (`f_delete_memoized(args)`, `cache.delete`) detaches its computations in flight, so a
//! caller that starts after the delete returned never takes their result either.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use event_listener::{Event, Listener};

use crate::{Cache, Value};

type FlightKey = (String, Option<u64>);

#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<FlightKey, Arc<Flight>>>,
}

#[derive(Default)]
pub(crate) struct Flight {
    done: AtomicBool,
    result: Mutex<Option<Value>>,
    event: Event,
}

pub(crate) enum Join {
    /// Run the body, then [`Leader::finish`].
    Leader(Leader),
    /// Another caller is running the body: wait for it.
    Follower(Arc<Flight>),
}

/// Held by the caller running the body; finishing or dropping it (a panic, a cancelled
/// future) releases the followers.
pub(crate) struct Leader {
    cache: Cache,
    key: FlightKey,
    flight: Arc<Flight>,
}

impl Flights {
    pub(crate) fn join(cache: &Cache, key: &str, version: Option<u64>) -> Join {
        let key = (key.to_owned(), version);
        let mut map = cache
            .inner
            .flights
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = map.get(&key) {
            return Join::Follower(flight.clone());
        }
        let flight = Arc::new(Flight::default());
        map.insert(key.clone(), flight.clone());
        Join::Leader(Leader {
            cache: cache.clone(),
            key,
            flight,
        })
    }
}

impl Flights {
    /// Detaches the computations in flight for `key` (every version): later callers start
    /// their own; the detached leaders' followers still get their results.
    pub(crate) fn detach(&self, key: &str) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(k, _), _| k != key);
    }
}

impl Leader {
    /// Hands `result` (the value as cached, `None` if it was not cacheable) to the followers.
    pub(crate) fn finish(self, result: Option<Value>) {
        *self
            .flight
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = result;
        // Drop releases.
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut map = self
            .cache
            .inner
            .flights
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only this leader's own flight: after a detach, the key may belong to a newer one.
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
        drop(map);
        self.flight.done.store(true, Ordering::SeqCst);
        self.flight.event.notify(usize::MAX);
    }
}

impl Flight {
    fn result(&self) -> Option<Value> {
        self.result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Blocks the thread until the leader is done; its result, if it had a cacheable one.
    pub(crate) fn wait(&self) -> Option<Value> {
        while !self.done.load(Ordering::SeqCst) {
            let listener = self.event.listen();
            if self.done.load(Ordering::SeqCst) {
                break;
            }
            listener.wait();
        }
        self.result()
    }

    /// Waits without blocking the thread.
    pub(crate) async fn wait_async(&self) -> Option<Value> {
        while !self.done.load(Ordering::SeqCst) {
            let listener = self.event.listen();
            if self.done.load(Ordering::SeqCst) {
                break;
            }
            listener.await;
        }
        self.result()
    }
}
