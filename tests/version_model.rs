//! An interleaving model of the version protocol (`cachemacro-core/src/memo/mod.rs`, "Versions";
//! `backends/memcached/mod.rs`, "Failover, and why invalidations survive it"), explored with
//! shuttle: random and PCT schedules of the full configurations, and every schedule (DFS) of
//! reduced ones. `cargo test --test version_model -- --nocapture` prints the figures.
//!
//! # What is modelled
//!
//! * **The protocol**: `run_sync_slow`, `find`, `lookup`, `judge`, `version_for`,
//!   `ensure_version`, `version_read`, `replace_version`, `store`, `followed`, `delete_all`,
//!   `delete_key`, and `flight.rs`, transcribed step by step below (each model function quotes
//!   the real lines it mirrors). `memo/aio.rs` runs the same steps, awaited.
//! * **The backend**: a map; each `get`, `add`, `set` and `delete` is one atomic step. A
//!   memoized hit reads the version key and the value key in one round trip
//!   (`Backend::get_pair`), but the two keys may live on two servers that answer independently:
//!   the model reads them as **two steps**, in both orders (the version first, the value first),
//!   and other threads may run between them.
//! * **Steps**: each step is one shuttle scheduling point (`shuttle::thread::sleep`, a bare
//!   context switch) followed by the operation, during which no other thread runs; the map's
//!   lock is therefore never contended. A shuttle `Mutex` or atomic would give each step two
//!   points (acquire and release, before and after): the same behaviours, but DFS over even the
//!   smallest useful configuration would not finish. Stampede protection, which blocks, uses
//!   shuttle's `Mutex` and `Condvar`.
//! * **Versions** are "random": unique non-zero numbers from a counter (64 random bits do not
//!   collide in practice; the model takes that as given).
//! * **The database**: a generation counter the body reads. The **invalidator** bumps it, then
//!   calls the model `f_delete_memoized_all()` (or `f_delete_memoized(args)`), and only when that
//!   returns publishes "generation G is invalidated".
//! * **Callers**: threads calling the function with the same argument a few times; each call
//!   records the published generation when it starts and the generation of the value it returns
//!   (with where that value came from). Two callers are two processes (no shared in-process
//!   state), or two threads of one process sharing stampede protection (a miss waits for a
//!   concurrent computation of the same key under the same version).
//! * **The evictor**: deletes the version key (lost, evicted, `f_delete_memoized_verhash`)
//!   and/or the value, or overwrites the version key with something that is not a version
//!   (garbage, `0`), at points the scheduler picks.
//!
//! For DFS, two reductions that lose no violation: the invalidator's bump, invalidation and
//! publication are one step, and a call's start is read in its first backend step
//! ([`Setup::fused`]); the evictor's one step runs on the invalidator's thread, at every
//! position among its rounds ([`EvictBy::Inline`]).
//!
//! Not modelled: backend errors (`Lookup::Down`, `VersionRead::Failed`: the body runs uncached
//! and nothing is stored), `forced_update`, and the in-process backend's cached version
//! (`backends/simple/local_version.rs`), whose correctness rests on that backend's epoch.
//!
//! # The property
//!
//! After `f_delete_memoized_all()` returns, no call that starts afterwards, in any thread or
//! process, returns a value computed before it: `value generation >= generation published when
//! the call started`. It holds in every schedule explored, with lost and garbage version keys,
//! across processes and within one.
//!
//! # The one race the design accepts
//!
//! `f_delete_memoized(args)` deletes one value key and leaves the version alone, so a
//! computation that read the version **before** the delete and stores **after** it re-stores
//! that argument set, tagged with the still-current version: later calls are served the value
//! computed before the delete (until it expires or is invalidated again). Shuttle finds it
//! (random, PCT and DFS), and every violation found across processes has exactly that shape: a
//! hit on a value stored by a computation that read the version before the delete and wrote
//! after it. Any other kind of violation fails the test with the schedule's trace.
//!
//! Within one process, stampede protection could add a second shape of the same race: a call
//! that starts after the delete, misses, and joins a computation that read the version before
//! the delete and is still in flight, being handed its result (even one stored before the
//! delete and removed by it). This model found it; `delete_key` now detaches the key's flights
//! in this process (and a leader's drop removes only its own flight), and the same-process
//! test allows the re-store shape only.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64 as StdAtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use shuttle::scheduler::{DfsScheduler, PctScheduler, RandomScheduler, Scheduler};
use shuttle::sync::{Condvar, Mutex};
use shuttle::{thread, Config, Runner};

/// The function's version key (`Identity::version_key`).
const VK: &str = "f:version";
/// The key of the one argument set all callers use (`{name}:{32 hex}`).
const KEY: &str = "f:args";

/// The version in a warm backend.
const V0: u64 = 1;

/// Fixed seeds: CI explores the same schedules on every run (`SHUTTLE_RANDOM_SEED` overrides).
const SEED: u64 = 0x5eed_cafe_f00d;

// ---------------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------------

/// Which thread did something (for traces and provenance).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Invalidator,
    Caller(u8),
    Evictor,
    /// The entries present before the threads start.
    Earlier,
}

/// Where a computation's result came from and when (model bookkeeping, not protocol state).
#[derive(Clone, Copy, Debug)]
struct Comp {
    who: Who,
    /// Clock of the backend step that gave the version it writes under.
    version_at: u64,
    /// Clock when the body read the database.
    body_at: u64,
    /// Clock of the `set` that stored it (0: not stored yet).
    stored_at: u64,
}

/// A memoized value as stored: `cache.wrap(stored, version)`.
#[derive(Clone, Copy, Debug)]
struct Memo {
    /// The version it was written under (`Value::version`).
    tag: Option<u64>,
    /// What the body computed: the database generation it read.
    gen: u64,
    by: Comp,
}

/// What the backend holds under a key.
#[derive(Clone, Copy, Debug)]
enum Item {
    /// `Value::int`: how versions are written.
    Int(i64),
    /// Anything that is not a number.
    Garbage,
    Memo(Memo),
}

impl Item {
    /// Mirrors `Value::as_version`: a number, and not 0.
    fn as_version(&self) -> Option<u64> {
        match self {
            Item::Int(i) => Some(*i as u64).filter(|&v| v != 0),
            Item::Garbage | Item::Memo(_) => None,
        }
    }
}

/// One visible step, for the trace printed with a counterexample.
#[derive(Clone, Copy, Debug)]
#[expect(dead_code, reason = "the fields are read through Debug, in traces")]
enum Op {
    Get(&'static str, Option<Item>),
    Add(&'static str, Item, bool),
    Set(&'static str, Item),
    Delete(&'static str, bool),
    BodyRead(u64),
    Bump(u64),
    Publish(u64),
    CallStart(u64),
    /// `Flights::join` made this call the leader of the flight of (key, version).
    Lead(Option<u64>),
    /// ... or a follower of the one in flight.
    Follow(Option<u64>),
    /// The leader's flight left the map (later calls no longer join it).
    Landed(Option<u64>),
    CallEnd(u64, Via),
}

#[derive(Clone, Copy, Debug)]
struct Ev {
    at: u64,
    who: Who,
    op: Op,
}

/// The global order of visible steps. A plain (non-shuttle) mutex: it is bookkeeping, taken
/// only between scheduling points, so it adds no interleavings.
#[derive(Default)]
struct Trace {
    clock: u64,
    events: Vec<Ev>,
}

impl Trace {
    fn push(&mut self, who: Who, op: Op) -> u64 {
        self.clock += 1;
        self.events.push(Ev {
            at: self.clock,
            who,
            op,
        });
        self.clock
    }
}

/// The model backend: every operation is one atomic step on one map. The map's lock is never
/// contended (it is only taken inside a step), so `try_lock` must succeed.
struct Backend {
    items: StdMutex<HashMap<&'static str, Item>>,
}

// ---------------------------------------------------------------------------------------------
// Stampede protection (`cachemacro-core/src/flight.rs`)
// ---------------------------------------------------------------------------------------------

/// Mirrors `Flights`: one computation per key and version at a time, in one process. The key
/// text is always `KEY` here, so the map is keyed by version alone.
#[derive(Default)]
struct Flights {
    map: Mutex<HashMap<Option<u64>, Arc<Flight>>>,
}

/// Mirrors `Flight`. `done` + `event` (an `AtomicBool` and an `event_listener::Event`, waited
/// on with listen / re-check / wait) are modelled as a flag under a mutex with a condvar: the
/// same semantics, no lost wake-up in either.
#[derive(Default)]
struct Flight {
    done: Mutex<bool>,
    result: Mutex<Option<Memo>>,
    event: Condvar,
}

enum Join<'w> {
    Leader(Leader<'w>),
    Follower(Arc<Flight>),
}

/// Mirrors `Leader`: finishing or dropping it releases the followers.
struct Leader<'w> {
    flights: Arc<Flights>,
    key: Option<u64>,
    flight: Arc<Flight>,
    /// For the trace.
    w: &'w World,
    who: Who,
}

impl Flights {
    /// Mirrors `Flights::join`.
    fn join<'w>(self: &Arc<Self>, c: &Client<'w>, version: Option<u64>) -> Join<'w> {
        let key = version;
        let mut map = self.map.lock().unwrap();
        if let Some(flight) = map.get(&key) {
            c.note(Op::Follow(key));
            return Join::Follower(flight.clone());
        }
        let flight = Arc::new(Flight::default());
        map.insert(key, flight.clone());
        c.note(Op::Lead(key));
        Join::Leader(Leader {
            flights: self.clone(),
            key,
            flight,
            w: c.w,
            who: c.who,
        })
    }
}

impl Leader<'_> {
    /// Mirrors `Leader::finish`.
    fn finish(self, result: Option<Memo>) {
        *self.flight.result.lock().unwrap() = result;
        // Drop releases.
    }
}

impl Drop for Leader<'_> {
    /// Mirrors `impl Drop for Leader`: its own flight out of the map (after a detach the key
    /// may belong to a newer one), then done, then notify.
    fn drop(&mut self) {
        let mut map = self.flights.map.lock().unwrap();
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
        self.w
            .trace
            .lock()
            .unwrap()
            .push(self.who, Op::Landed(self.key));
        drop(map);
        *self.flight.done.lock().unwrap() = true;
        self.flight.event.notify_all();
    }
}

impl Flight {
    /// Mirrors `Flight::wait`, then `Flight::result`.
    fn wait(&self) -> Option<Memo> {
        let mut done = self.done.lock().unwrap();
        while !*done {
            done = self.event.wait(done).unwrap();
        }
        drop(done);
        *self.result.lock().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The world of one execution
// ---------------------------------------------------------------------------------------------

/// How a call got its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// A hit: the value read from the backend.
    Hit,
    /// Handed over by a concurrent computation of the same key and version (`followed`).
    Followed,
    /// Its own body.
    Computed,
}

/// A call's result: the generation the value was computed from, and its provenance.
#[derive(Clone, Copy, Debug)]
struct Out {
    gen: u64,
    via: Via,
    by: Comp,
}

/// The order in which a caller's two reads of a hit reach their servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    VersionFirst,
    ValueFirst,
}

impl Order {
    fn other(self) -> Order {
        match self {
            Order::VersionFirst => Order::ValueFirst,
            Order::ValueFirst => Order::VersionFirst,
        }
    }
}

/// What the invalidator calls after bumping the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Invalidation {
    /// `f_delete_memoized_all()`.
    All,
    /// `f_delete_memoized(args)`, for the argument set the callers use.
    Args,
}

/// One step of the evictor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Evict {
    /// The version key is lost (evicted, expired, server restarted).
    Version,
    /// The value is lost.
    Value,
    /// The version key is overwritten with something that is not a number.
    Garbage,
    /// The version key is overwritten with `0` (not a version either).
    Zero,
}

/// Who runs the evictor's steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EvictBy {
    /// A thread of its own: each step at a point the scheduler picks.
    Thread,
    /// The invalidator's thread, after that many of its rounds. For an evictor of one step,
    /// over every position, the same schedules as a thread of its own (a schedule of four threads is one of three with the
    /// invalidator's and the evictor's steps in the same order), with far fewer scheduling
    /// points: for DFS.
    Inline(u64),
}

/// The backend before the threads start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Warm {
    /// Empty.
    Cold,
    /// The version key.
    Version,
    /// The version key and a value computed from generation 0.
    VersionAndValue,
}

#[derive(Clone, Copy, Debug)]
struct Setup {
    name: &'static str,
    invalidation: Invalidation,
    /// Invalidations in a row (each: bump, invalidate, publish).
    rounds: u64,
    /// Caller threads.
    callers: u8,
    /// Calls per caller.
    calls: usize,
    /// The callers are threads of one process sharing stampede protection (`coalesce`), rather
    /// than two processes.
    one_process: bool,
    /// The first caller's first read order; the second caller starts with the other one, and
    /// each caller alternates.
    order: Order,
    /// The evictor's steps, in this order.
    evict: &'static [Evict],
    /// Who runs them.
    evict_by: EvictBy,
    /// What the backend holds before the threads start.
    warm: Warm,
    /// A reduction for DFS: the invalidator's bump, invalidation and publication are one
    /// step, and a call reads the published generation in the step of its first backend read.
    /// It loses no violation: the protocol's control flow never depends on generations, so
    /// moving a bump later (bodies read older generations), a publication earlier and a call's
    /// start later (calls expect newer ones) turns any violating schedule into a violating
    /// fused one, with the same shape.
    fused: bool,
}

/// A finished call.
#[derive(Clone, Copy, Debug)]
struct Call {
    who: Who,
    /// Generation published when it started.
    start: u64,
    out: Out,
}

struct World {
    setup: Setup,
    backend: Backend,
    /// The "database" (read and bumped in steps).
    db: StdAtomicU64,
    /// The last generation whose invalidation has returned (read and written in steps).
    published: StdAtomicU64,
    /// `fresh_version()`: unique, non-zero (bookkeeping, not a scheduling point).
    versions: StdAtomicU64,
    trace: StdMutex<Trace>,
    /// Clock of the invalidating step of generation G, at index G.
    invalidated_at: StdMutex<Vec<u64>>,
    calls: StdMutex<Vec<Call>>,
}

/// One thread's handle: the model `Cache` as seen from that thread.
struct Client<'w> {
    who: Who,
    w: &'w World,
    /// The process's stampede protection, when `cache.inner.coalesce` matters (callers sharing
    /// a process); `None` for a process of its own.
    flights: Option<Arc<Flights>>,
    /// Clock of this thread's last backend step.
    last: Cell<u64>,
    /// Clock of the step that gave the version the current call writes under.
    version_at: Cell<u64>,
    /// The next step runs in the previous one's step.
    glued: Cell<bool>,
}

/// Mirrors `memo::VersionRead` (no `Failed`: the model backend does not fail).
enum VersionRead {
    Found(u64),
    /// Not a version (not a number, or 0).
    Foreign,
    /// Gone again between `add` and `get`.
    Gone,
}

/// Mirrors `memo::version_read`.
fn version_read(read: Option<Item>) -> VersionRead {
    // match read.map(|v| v.map(|v| v.as_version())) {
    match read.map(|v| v.as_version()) {
        // Ok(Some(Some(v))) => VersionRead::Found(v),
        Some(Some(v)) => VersionRead::Found(v),
        // Ok(Some(None)) => VersionRead::Foreign,
        Some(None) => VersionRead::Foreign,
        // Ok(None) => VersionRead::Gone,
        None => VersionRead::Gone,
    }
}

/// Mirrors `memo::Lookup` (no `Down`: the model backend does not fail).
enum Lookup {
    Hit(Memo),
    /// Nothing usable; the function version read, if any.
    Miss(Option<u64>),
}

// The backend's operations: each one step (one lock), recorded in the trace.
impl Client<'_> {
    /// One atomic step of the model: one scheduling point (shuttle's `sleep`, a bare context
    /// switch), then `f`, during which no other thread runs (shuttle runs one thread at a time
    /// and switches only at its scheduling points). One point per step, not the two of a
    /// shuttle lock (acquire, release) or atomic (before, after): the same behaviours, and few
    /// enough schedules for DFS to enumerate all of them in small configurations. After
    /// [`Client::glue`], the next step has no point of its own: it runs in the same step.
    fn atomic<R>(&self, f: impl FnOnce() -> R) -> R {
        if !self.glued.replace(false) {
            thread::sleep(Duration::ZERO);
        }
        f()
    }

    /// Runs the next step in the same step as the previous one (see [`Setup::fused`]).
    fn glue(&self) {
        self.glued.set(true);
    }

    /// A backend operation: one step, recorded in the trace; `f` gets the map and the step's
    /// clock.
    fn step<R>(&self, f: impl FnOnce(&mut HashMap<&'static str, Item>, u64) -> (R, Op)) -> R {
        self.atomic(|| {
            let mut items = self.w.backend.items.try_lock().expect("steps are atomic");
            let mut trace = self.w.trace.lock().unwrap();
            let (r, op) = f(&mut items, trace.clock + 1);
            let at = trace.push(self.who, op);
            self.last.set(at);
            r
        })
    }

    fn get(&self, key: &'static str) -> Option<Item> {
        self.step(|m, _| {
            let v = m.get(key).copied();
            (v, Op::Get(key, v))
        })
    }

    fn add(&self, key: &'static str, value: Item) -> bool {
        self.step(|m, _| {
            let added = !m.contains_key(key);
            if added {
                m.insert(key, value);
            }
            (added, Op::Add(key, value, added))
        })
    }

    /// A value written is stamped with the step's clock (bookkeeping).
    fn set(&self, key: &'static str, mut value: Item) {
        self.step(|m, at| {
            if let Item::Memo(memo) = &mut value {
                memo.by.stored_at = at;
            }
            m.insert(key, value);
            ((), Op::Set(key, value))
        })
    }

    fn delete(&self, key: &'static str) -> bool {
        self.step(|m, _| {
            let found = m.remove(key).is_some();
            (found, Op::Delete(key, found))
        })
    }

    /// `Backend::get_pair(version_key, key)`: one round trip, but two servers answering
    /// independently, so two steps in either order. The version's step is the one the call's
    /// version comes from.
    fn get_pair(&self, order: Order) -> (Option<Item>, Option<Item>) {
        match order {
            Order::VersionFirst => {
                let version = self.get(VK);
                self.version_at.set(self.last.get());
                (version, self.get(KEY))
            }
            Order::ValueFirst => {
                let value = self.get(KEY);
                let version = self.get(VK);
                self.version_at.set(self.last.get());
                (version, value)
            }
        }
    }

    /// Records a step that is not a backend operation (inside that step).
    fn note(&self, op: Op) -> u64 {
        self.w.trace.lock().unwrap().push(self.who, op)
    }
}

// ---------------------------------------------------------------------------------------------
// The protocol: `cachemacro-core/src/memo/mod.rs`, step by step
// ---------------------------------------------------------------------------------------------

impl Client<'_> {
    /// Mirrors `memo::find` on a shared backend (memcached, redis, filesystem): no in-process
    /// path, straight to `lookup`.
    fn find(&self, order: Order) -> Lookup {
        // lookup(cache, key, forced)
        self.lookup(order)
    }

    /// Mirrors `memo::lookup` (and `aio::lookup`) for a memoized key, not forced.
    fn lookup(&self, order: Order) -> Lookup {
        // let read = match (version_key, forced) {
        //     (Some(vk), false) => backend.get_pair(vk, &text),
        let read = self.get_pair(order);
        // judge(cache, version_key, &text, read)
        self.judge(read)
    }

    /// Mirrors `memo::judge` for a memoized key (the model backend does not fail: no `Down`).
    fn judge(&self, read: (Option<Item>, Option<Item>)) -> Lookup {
        // let (version, value) = match read { Ok(pair) => pair, .. };
        let (version, value) = read;
        // let version = version.and_then(|v| v.as_version());
        let version = version.and_then(|v| v.as_version());
        // if let Some(value) = value {
        //     if version_key.is_none() || (version.is_some() && value.version() == version) {
        //         if let Some(v) = cache.unwrap_value(text, Some(value)) {
        //             return hit(cache, &text, v);
        if let Some(Item::Memo(value)) = value {
            if version.is_some() && value.tag == version {
                return Lookup::Hit(value);
            }
        }
        // miss(cache, &text, version)
        Lookup::Miss(version)
    }

    /// Mirrors `memo::fresh_version`: a random non-zero u64 (here: unique).
    fn fresh_version(&self) -> u64 {
        self.w.versions.fetch_add(1, SeqCst)
    }

    /// Mirrors `memo::ensure_version` (and `aio::ensure_version`).
    fn ensure_version(&self) -> Option<u64> {
        // for _ in 0..3 {
        for _ in 0..3 {
            // let fresh = fresh_version();
            let fresh = self.fresh_version();
            // let read = match backend.add(version_key, Value::int(fresh as i64), None) {
            //     Ok(true) => return Some(created(version_key, fresh)),
            //     Ok(false) => backend.get(version_key),
            let read = if self.add(VK, Item::Int(fresh as i64)) {
                self.version_at.set(self.last.get());
                return Some(fresh);
            } else {
                self.get(VK)
            };
            // match version_read(cache, version_key, read) {
            match version_read(read) {
                // VersionRead::Found(v) => return Some(v),
                VersionRead::Found(v) => {
                    self.version_at.set(self.last.get());
                    return Some(v);
                }
                // VersionRead::Foreign => return replace_version(cache, version_key).ok(),
                VersionRead::Foreign => return self.replace_version().ok(),
                // VersionRead::Gone => continue,
                VersionRead::Gone => continue,
            }
        }
        None
    }

    /// Mirrors `memo::replace_version` (and `aio::replace_version`; the model backend does not
    /// fail, so `replaced` is `Ok(fresh)`).
    fn replace_version(&self) -> Result<u64, ()> {
        // let fresh = fresh_version();
        let fresh = self.fresh_version();
        // let r = cache.backend().set(version_key, Value::int(fresh as i64), None);
        self.set(VK, Item::Int(fresh as i64));
        self.version_at.set(self.last.get());
        // replaced(cache, version_key, fresh, r)
        Ok(fresh)
    }

    /// Mirrors `memo::store`: writes the value tagged with `version`, returns it as stored.
    fn store(&self, version: Option<u64>, out: &Out) -> Option<Memo> {
        // let value = encode_stored(cache, key, version, stored)?;   (cache.wrap(stored, version))
        let mut value = Memo {
            tag: version,
            gen: out.gen,
            by: out.by,
        };
        // let r = cache.backend().set(key, value.clone(), cache.ttl(timeout));
        self.set(KEY, Item::Memo(value));
        // (bookkeeping: the copy handed to followers knows when it was stored, as the
        // backend's copy does)
        value.by.stored_at = self.last.get();
        // stored_as(cache, key, r);
        // Some(value)
        Some(value)
    }

    /// Mirrors `memo::version_for` for a memoized key.
    fn version_for(&self, read: Option<u64>) -> Result<Option<u64>, ()> {
        // (Some(vk), None) => ensure_version(cache, vk).map(Some).ok_or(()),
        // (_, v) => Ok(v),
        match read {
            None => self.ensure_version().map(Some).ok_or(()),
            v => Ok(v),
        }
    }

    /// Mirrors `memo::followed`.
    fn followed(&self, result: Option<Memo>) -> Option<Out> {
        let v = result?;
        Some(Out {
            gen: v.gen,
            via: Via::Followed,
            by: v.by,
        })
    }

    /// The decorated function's body: reads the database.
    fn body(&self) -> Out {
        let (gen, body_at) = self.atomic(|| {
            let gen = self.w.db.load(SeqCst);
            (gen, self.note(Op::BodyRead(gen)))
        });
        Out {
            gen,
            via: Via::Computed,
            by: Comp {
                who: self.who,
                version_at: self.version_at.get(),
                body_at,
                stored_at: 0,
            },
        }
    }

    /// Mirrors `memo::run_sync_slow` (not forced, the response filter keeps everything).
    fn run_sync_slow(&self, order: Order) -> Out {
        // let read = match find::<S::Stored>(cache, &key, spec.forced_update, local_tried) {
        //     Lookup::Hit(v) => return S::rebuild(v),
        //     Lookup::Miss(read) => read,
        //     Lookup::Down => return body(),       (not modelled: the backend does not fail)
        let read = match self.find(order) {
            Lookup::Hit(v) => {
                return Out {
                    gen: v.gen,
                    via: Via::Hit,
                    by: v.by,
                }
            }
            Lookup::Miss(read) => read,
        };
        // let Ok(version) = version_for(cache, key.version_key(), read) else { return body() };
        let Ok(version) = self.version_for(read) else {
            return self.body();
        };
        // let mut leader = None;
        // if !spec.forced_update && cache.inner.coalesce {
        //     match Flights::join(cache, &text, version) {
        //         Join::Leader(l) => leader = Some(l),
        //         Join::Follower(flight) => {
        //             if let Some(out) = followed::<S>(cache, &text, flight.wait()) { return out; }
        let mut leader = None;
        if let Some(flights) = &self.flights {
            match flights.join(self, version) {
                Join::Leader(l) => leader = Some(l),
                Join::Follower(flight) => {
                    if let Some(out) = self.followed(flight.wait()) {
                        return out;
                    }
                }
            }
        }
        // let out = body();
        let out = self.body();
        // let stored = cacheable(spec, &out).and_then(|s| store(cache, &text, version, ..));
        let stored = self.store(version, &out);
        // if let Some(l) = leader { l.finish(stored); }
        if let Some(l) = leader {
            l.finish(stored);
        }
        out
    }

    /// Mirrors `memo::delete_all` (`f_delete_memoized_all`): `replace_version`.
    fn delete_all(&self) -> Result<(), ()> {
        // replace_version(cache, version_key).map(drop)
        self.replace_version().map(drop)
    }

    /// Mirrors `memo::delete_key` (`f_delete_memoized(args)`): removes one key, then
    /// (`Cache::finish_delete`) detaches its flights in this process.
    fn delete_key(&self, key: &'static str) -> Result<(), ()> {
        // cache.delete(key).map(drop)
        self.delete(key);
        // self.inner.flights.detach(key): the model's flights are all of this one key.
        if let Some(flights) = &self.flights {
            flights.map.lock().unwrap().clear();
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The threads
// ---------------------------------------------------------------------------------------------

impl World {
    fn new(setup: Setup) -> World {
        let mut items = HashMap::new();
        let mut trace = Trace::default();
        if setup.warm != Warm::Cold {
            items.insert(VK, Item::Int(V0 as i64));
            trace.push(Who::Earlier, Op::Set(VK, Item::Int(V0 as i64)));
        }
        if setup.warm == Warm::VersionAndValue {
            let at = trace.clock;
            let by = Comp {
                who: Who::Earlier,
                version_at: at,
                body_at: at,
                stored_at: at + 1,
            };
            let memo = Item::Memo(Memo {
                tag: Some(V0),
                gen: 0,
                by,
            });
            items.insert(KEY, memo);
            trace.push(Who::Earlier, Op::Set(KEY, memo));
        }
        World {
            setup,
            backend: Backend {
                items: StdMutex::new(items),
            },
            db: StdAtomicU64::new(0),
            published: StdAtomicU64::new(0),
            versions: StdAtomicU64::new(V0 + 1),
            trace: StdMutex::new(trace),
            invalidated_at: StdMutex::new(vec![0]),
            calls: StdMutex::new(Vec::new()),
        }
    }

    fn client(&self, who: Who, flights: Option<Arc<Flights>>) -> Client<'_> {
        Client {
            who,
            w: self,
            flights,
            last: Cell::new(0),
            version_at: Cell::new(0),
            glued: Cell::new(false),
        }
    }

    /// Bumps the database, invalidates, and only then publishes the generation; and runs the
    /// evictor's steps when they are inline.
    /// `flights`: the process's stampede protection, when the invalidator shares the callers'
    /// process (its deletes detach their flights).
    fn invalidator(&self, flights: Option<Arc<Flights>>) {
        let c = self.client(Who::Invalidator, flights);
        for round in 0..=self.setup.rounds {
            if self.setup.evict_by == EvictBy::Inline(round) {
                self.evictor();
            }
            if round == self.setup.rounds {
                break;
            }
            let g = c.atomic(|| {
                let g = self.db.fetch_add(1, SeqCst) + 1;
                c.note(Op::Bump(g));
                g
            });
            if self.setup.fused {
                c.glue();
            }
            match self.setup.invalidation {
                Invalidation::All => c.delete_all(),
                Invalidation::Args => c.delete_key(KEY),
            }
            .unwrap();
            self.invalidated_at.lock().unwrap().push(c.last.get());
            if self.setup.fused {
                c.glue();
            }
            c.atomic(|| {
                self.published.store(g, SeqCst);
                c.note(Op::Publish(g));
            });
        }
    }

    fn caller(&self, n: u8, flights: Option<Arc<Flights>>) {
        let c = self.client(Who::Caller(n), flights);
        let mut order = if n == 0 {
            self.setup.order
        } else {
            self.setup.order.other()
        };
        for _ in 0..self.setup.calls {
            let start = c.atomic(|| {
                let start = self.published.load(SeqCst);
                c.note(Op::CallStart(start));
                start
            });
            if self.setup.fused {
                c.glue();
            }
            let out = c.run_sync_slow(order);
            // (bookkeeping, no step: the call has returned)
            c.note(Op::CallEnd(out.gen, out.via));
            self.calls.lock().unwrap().push(Call {
                who: c.who,
                start,
                out,
            });
            order = order.other();
        }
    }

    fn evictor(&self) {
        let c = self.client(Who::Evictor, None);
        for e in self.setup.evict {
            match e {
                Evict::Version => {
                    c.delete(VK);
                }
                Evict::Value => {
                    c.delete(KEY);
                }
                Evict::Garbage => c.set(VK, Item::Garbage),
                Evict::Zero => c.set(VK, Item::Int(0)),
            }
        }
    }
}

/// What runs when every thread of an execution is done.
type Done = Arc<dyn Fn(&World) + Send + Sync>;

/// Runs one execution of `setup` under the current shuttle scheduler; the last thread to finish
/// calls `done` (no joins: they would only add scheduling points).
fn execute(setup: Setup, done: Done) {
    let w = Arc::new(World::new(setup));
    let shared = setup.one_process.then(|| Arc::new(Flights::default()));
    let threads = 1
        + usize::from(setup.callers)
        + usize::from(setup.evict_by == EvictBy::Thread && !setup.evict.is_empty());
    let running = Arc::new(AtomicUsize::new(threads));
    let finish = move |w: &World, running: &AtomicUsize, done: &Done| {
        if running.fetch_sub(1, SeqCst) == 1 {
            done(w);
        }
    };
    let spawn = |role: Box<dyn FnOnce(&World) + Send>| {
        let (w, running, done) = (w.clone(), running.clone(), done.clone());
        thread::spawn(move || {
            role(&w);
            finish(&w, &running, &done);
        });
    };
    for n in 0..setup.callers {
        let flights = shared.clone();
        spawn(Box::new(move |w: &World| w.caller(n, flights)));
    }
    if setup.evict_by == EvictBy::Thread && !setup.evict.is_empty() {
        spawn(Box::new(World::evictor));
    }
    // The invalidator is the test's own thread (fewer scheduling points than one more thread).
    w.invalidator(shared);
    finish(&w, &running, &done);
}

// ---------------------------------------------------------------------------------------------
// The property, and the shapes of its violations
// ---------------------------------------------------------------------------------------------

/// How a violation came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// The accepted race of `f_delete_memoized(args)`: served from the backend, stored by a
    /// computation that read the version before the delete and wrote after it.
    ReStored,
    /// Its in-process widening: handed over (stampede protection) by a computation that read
    /// the version before the delete, to a call that started after it.
    HandedOver,
    /// Anything else: a bug in the design.
    Unexpected,
}

/// Figures over all executions of one run (shared by the executions: plain atomics).
#[derive(Default)]
struct Figures {
    executions: AtomicUsize,
    calls: AtomicUsize,
    /// Calls served from the backend that started after an invalidation returned.
    hits_after: AtomicUsize,
    /// Values stored under a version read before an invalidation returned, written after it
    /// (the race happened; whether such a value is served is the property).
    late_stores: AtomicUsize,
    violating_executions: AtomicUsize,
    re_stored: AtomicUsize,
    handed_over: AtomicUsize,
    /// Handed over, and stored before the delete: the delete did remove it from the backend.
    handed_over_stored_before: AtomicUsize,
    /// The trace of the first violation of each allowed shape.
    examples: StdMutex<Vec<(Shape, String)>>,
}

/// The totals of one or more runs.
#[derive(Default, Debug)]
struct Run {
    schedules: usize,
    calls: usize,
    hits_after: usize,
    late_stores: usize,
    violating_executions: usize,
    re_stored: usize,
    handed_over: usize,
    handed_over_stored_before: usize,
    examples: Vec<(Shape, String)>,
}

impl Run {
    fn of(f: &Figures) -> Run {
        Run {
            schedules: f.executions.load(SeqCst),
            calls: f.calls.load(SeqCst),
            hits_after: f.hits_after.load(SeqCst),
            late_stores: f.late_stores.load(SeqCst),
            violating_executions: f.violating_executions.load(SeqCst),
            re_stored: f.re_stored.load(SeqCst),
            handed_over: f.handed_over.load(SeqCst),
            handed_over_stored_before: f.handed_over_stored_before.load(SeqCst),
            examples: f.examples.lock().unwrap().clone(),
        }
    }

    fn add(&mut self, o: Run) {
        self.schedules += o.schedules;
        self.calls += o.calls;
        self.hits_after += o.hits_after;
        self.late_stores += o.late_stores;
        self.violating_executions += o.violating_executions;
        self.re_stored += o.re_stored;
        self.handed_over += o.handed_over;
        self.handed_over_stored_before += o.handed_over_stored_before;
        for (shape, trace) in o.examples {
            if !self.examples.iter().any(|(s, _)| *s == shape) {
                self.examples.push((shape, trace));
            }
        }
    }

    fn print(&self, name: &str, how: &str, took: Duration) {
        println!(
            "{name:<48} {how:<13} {:>7} schedules {:>7.2?}: {} calls, {} hits after an \
             invalidation, {} late stores; violating schedules: {} ({} re-stored, {} handed \
             over, {} of them stored before the delete)",
            self.schedules,
            took,
            self.calls,
            self.hits_after,
            self.late_stores,
            self.violating_executions,
            self.re_stored,
            self.handed_over,
            self.handed_over_stored_before,
        );
    }

    fn example(&self, shape: Shape) -> Option<&str> {
        self.examples
            .iter()
            .find(|(s, _)| *s == shape)
            .map(|(_, t)| t.as_str())
    }
}

/// Checks one execution: every violation is classified; one not `allowed` panics with the
/// execution's trace (and shuttle prints the schedule to replay).
fn check(w: &World, figures: &Figures, allowed: &[Shape]) {
    let calls = w.calls.lock().unwrap();
    let inv = w.invalidated_at.lock().unwrap();
    let trace = w.trace.lock().unwrap();
    figures.executions.fetch_add(1, SeqCst);
    figures.calls.fetch_add(calls.len(), SeqCst);
    let late = trace
        .events
        .iter()
        .filter(|e| match e.op {
            Op::Set(KEY, Item::Memo(m)) => {
                inv[1..].iter().any(|&t| m.by.version_at < t && t < e.at)
            }
            _ => false,
        })
        .count();
    figures.late_stores.fetch_add(late, SeqCst);
    let mut violated = false;
    for call in calls.iter() {
        // The body runs after the version it writes under was read.
        assert!(call.out.by.version_at <= call.out.by.body_at, "{call:?}");
        if call.start > 0 && call.out.via == Via::Hit {
            figures.hits_after.fetch_add(1, SeqCst);
        }
        if call.out.gen >= call.start {
            continue;
        }
        violated = true;
        // The invalidation the call saw published returned at step `t`.
        let t = inv[call.start as usize];
        let by = call.out.by;
        let shape = match call.out.via {
            Via::Hit if by.version_at < t && by.stored_at > t => Shape::ReStored,
            Via::Followed if by.version_at < t && by.who != call.who => Shape::HandedOver,
            _ => Shape::Unexpected,
        };
        let what = format!(
            "{}: {shape:?} violation: {:?} started after generation {} was invalidated (at step \
             {t}) and returned generation {}, {:?}, computed by {:?}\n{}",
            w.setup.name,
            call.who,
            call.start,
            call.out.gen,
            call.out.via,
            by,
            render(&trace.events)
        );
        assert!(allowed.contains(&shape), "{what}");
        match shape {
            Shape::ReStored => figures.re_stored.fetch_add(1, SeqCst),
            Shape::HandedOver => {
                if by.stored_at < t {
                    figures.handed_over_stored_before.fetch_add(1, SeqCst);
                }
                figures.handed_over.fetch_add(1, SeqCst)
            }
            Shape::Unexpected => 0,
        };
        let mut examples = figures.examples.lock().unwrap();
        if !examples.iter().any(|(s, _)| *s == shape) {
            examples.push((shape, what));
        }
    }
    if violated {
        figures.violating_executions.fetch_add(1, SeqCst);
    }
}

fn render(trace: &[Ev]) -> String {
    let mut s = String::from("  step  thread        operation\n");
    for e in trace {
        let who = format!("{:?}", e.who);
        let _ = writeln!(s, "  {:>4}  {who:<12}  {:?}", e.at, e.op);
    }
    s
}

/// Explores `setup` with `scheduler`.
fn explore<S: Scheduler + 'static>(setup: Setup, scheduler: S, allowed: &'static [Shape]) -> Run {
    let figures = Arc::new(Figures::default());
    let f = figures.clone();
    let done: Done = Arc::new(move |w: &World| check(w, &f, allowed));
    let n = Runner::new(scheduler, Config::new()).run(move || execute(setup, done.clone()));
    assert_eq!(n, figures.executions.load(SeqCst));
    Run::of(&figures)
}

/// `check_random` with a fixed seed.
fn random(setup: Setup, iterations: usize, allowed: &'static [Shape]) -> Run {
    let started = Instant::now();
    let scheduler = RandomScheduler::new_from_seed(SEED, iterations);
    let run = explore(setup, scheduler, allowed);
    run.print(setup.name, "random", started.elapsed());
    run
}

/// `check_pct` (depth 3) with a fixed seed.
fn pct(setup: Setup, iterations: usize, allowed: &'static [Shape]) -> Run {
    let started = Instant::now();
    let scheduler = PctScheduler::new_from_seed(SEED, 3, iterations);
    let run = explore(setup, scheduler, allowed);
    run.print(setup.name, "pct(3)", started.elapsed());
    run
}

/// `check_dfs` without a bound: every schedule of each setup (which must be small).
fn dfs(name: &str, setups: &[Setup], allowed: &'static [Shape]) -> Run {
    let started = Instant::now();
    let mut run = Run::default();
    for &setup in setups {
        run.add(explore(setup, DfsScheduler::new(None, false), allowed));
    }
    let how = format!("dfs(all)x{}", setups.len());
    run.print(name, &how, started.elapsed());
    run
}

/// Every placement of each of `evictions` (one step) among the invalidator's rounds, in both
/// read orders, from each starting state: as if the evictor were a thread of its own.
fn inline_evictions(base: Setup, evictions: &'static [&'static [Evict]]) -> Vec<Setup> {
    let mut setups = Vec::new();
    for &evict in evictions {
        for at in 0..=base.rounds {
            for order in [Order::VersionFirst, Order::ValueFirst] {
                for warm in [Warm::Cold, Warm::Version, Warm::VersionAndValue] {
                    setups.push(Setup {
                        evict,
                        evict_by: EvictBy::Inline(at),
                        order,
                        warm,
                        ..base
                    });
                }
            }
        }
    }
    setups
}

const NONE: &[Shape] = &[];
const RE_STORED: &[Shape] = &[Shape::ReStored];

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// Two processes, two calls each, two invalidations; the value and the version key lost at
/// points the scheduler picks.
const TWO_PROCESSES: Setup = Setup {
    name: "2 processes x 2 calls, 2 invalidations",
    invalidation: Invalidation::All,
    rounds: 2,
    callers: 2,
    calls: 2,
    one_process: false,
    order: Order::VersionFirst,
    evict: &[Evict::Value, Evict::Version],
    evict_by: EvictBy::Thread,
    warm: Warm::VersionAndValue,
    fused: false,
};

/// Two threads of one process (stampede protection shared), from an empty backend.
const ONE_PROCESS: Setup = Setup {
    name: "1 process, 2 threads x 2 calls, cold",
    one_process: true,
    order: Order::ValueFirst,
    evict: &[Evict::Value],
    warm: Warm::Cold,
    ..TWO_PROCESSES
};

/// For DFS: two callers, one call each, one invalidation, fused steps.
const DFS_TWO_CALLERS: Setup = Setup {
    name: "dfs: 2 callers x 1 call, 1 invalidation",
    rounds: 1,
    calls: 1,
    evict: &[],
    warm: Warm::Version,
    fused: true,
    ..TWO_PROCESSES
};

/// For DFS: one caller, three calls, two invalidations, fused steps.
const DFS_ONE_CALLER: Setup = Setup {
    name: "dfs: 1 caller x 3 calls, 2 invalidations",
    callers: 1,
    calls: 3,
    rounds: 2,
    evict: &[],
    fused: true,
    ..TWO_PROCESSES
};

fn print_example(run: &Run, shape: Shape) {
    if let Some(trace) = run.example(shape) {
        println!("first {shape:?} counterexample found:\n{trace}");
    }
}

#[test]
fn delete_memoized_all_no_later_call_returns_a_value_computed_before_it() {
    let started = Instant::now();
    let mut total = Run::default();
    total.add(random(TWO_PROCESSES, 4000, NONE));
    total.add(pct(TWO_PROCESSES, 4000, NONE));
    let value_first = Setup {
        name: "2 processes x 2 calls, value read first",
        order: Order::ValueFirst,
        ..TWO_PROCESSES
    };
    total.add(pct(value_first, 2000, NONE));
    total.add(random(ONE_PROCESS, 3000, NONE));
    total.add(pct(ONE_PROCESS, 3000, NONE));
    let both_orders = [Order::VersionFirst, Order::ValueFirst].map(|order| Setup {
        order,
        ..DFS_TWO_CALLERS
    });
    total.add(dfs(DFS_TWO_CALLERS.name, &both_orders, NONE));
    let one_caller: Vec<Setup> = [Order::VersionFirst, Order::ValueFirst]
        .into_iter()
        .flat_map(|order| {
            [Warm::Cold, Warm::Version, Warm::VersionAndValue].map(|warm| Setup {
                order,
                warm,
                ..DFS_ONE_CALLER
            })
        })
        .collect();
    total.add(dfs(DFS_ONE_CALLER.name, &one_caller, NONE));
    // Not vacuous: calls after an invalidation are served from the cache, and computations
    // that read the old version do store after the invalidation (never served).
    assert!(total.hits_after > 0 && total.late_stores > 0, "{total:?}");
    total.print("delete_memoized_all: total", "", started.elapsed());
}

#[test]
fn delete_memoized_all_survives_a_lost_version_key() {
    let started = Instant::now();
    let mut total = Run::default();
    let lost = Setup {
        name: "2 processes, version key lost twice",
        evict: &[Evict::Version, Evict::Version],
        ..TWO_PROCESSES
    };
    total.add(random(lost, 2000, NONE));
    total.add(pct(lost, 2000, NONE));
    let lost = Setup {
        name: "1 process, version key and value lost",
        evict: &[Evict::Version, Evict::Value],
        ..ONE_PROCESS
    };
    total.add(random(lost, 1500, NONE));
    total.add(pct(lost, 1500, NONE));
    let setups = inline_evictions(DFS_ONE_CALLER, &[&[Evict::Version], &[Evict::Value]]);
    total.add(dfs(
        "dfs: 1 caller x 3 calls, version or value lost",
        &setups,
        NONE,
    ));
    assert!(total.hits_after > 0 && total.late_stores > 0, "{total:?}");
    total.print("lost version key: total", "", started.elapsed());
}

#[test]
fn delete_memoized_all_survives_a_garbage_version_key() {
    let started = Instant::now();
    let mut total = Run::default();
    let garbage = Setup {
        name: "2 processes, version key garbage, then 0",
        evict: &[Evict::Garbage, Evict::Zero],
        ..TWO_PROCESSES
    };
    total.add(random(garbage, 2000, NONE));
    total.add(pct(garbage, 2000, NONE));
    let garbage = Setup {
        name: "1 process, version key garbage, then lost",
        evict: &[Evict::Garbage, Evict::Version],
        ..ONE_PROCESS
    };
    total.add(random(garbage, 1500, NONE));
    total.add(pct(garbage, 1500, NONE));
    let setups = inline_evictions(DFS_ONE_CALLER, &[&[Evict::Garbage], &[Evict::Zero]]);
    total.add(dfs(
        "dfs: 1 caller x 3 calls, version garbage or 0",
        &setups,
        NONE,
    ));
    assert!(total.hits_after > 0 && total.late_stores > 0, "{total:?}");
    total.print("garbage version key: total", "", started.elapsed());
}

/// `f_delete_memoized(args)` across processes: shuttle finds the accepted race, and every
/// violation it finds has exactly its shape (any other fails the test).
#[test]
fn delete_memoized_args_has_exactly_the_accepted_race() {
    let started = Instant::now();
    let args = |s: Setup| Setup {
        invalidation: Invalidation::Args,
        ..s
    };
    let mut total = Run::default();
    for run in [
        random(args(TWO_PROCESSES), 3000, RE_STORED),
        pct(args(TWO_PROCESSES), 3000, RE_STORED),
        dfs(DFS_TWO_CALLERS.name, &[args(DFS_TWO_CALLERS)], RE_STORED),
        dfs(
            "dfs: 1 caller x 3 calls, version/value/garbage",
            &inline_evictions(
                args(DFS_ONE_CALLER),
                &[&[], &[Evict::Version], &[Evict::Value], &[Evict::Garbage]],
            ),
            RE_STORED,
        ),
    ] {
        assert!(
            run.re_stored > 0,
            "the accepted race was not found: {run:?}"
        );
        total.add(run);
    }
    print_example(&total, Shape::ReStored);
    total.print("delete_memoized(args): total", "", started.elapsed());
}

/// `f_delete_memoized(args)` within one process, stampede protection on: the re-store is the
/// only violation (the delete detaches the key's flights, so no later call joins a stale one).
#[test]
fn delete_memoized_args_in_one_process() {
    let started = Instant::now();
    let setup = Setup {
        invalidation: Invalidation::Args,
        ..ONE_PROCESS
    };
    let small = Setup {
        name: "1 process, 2 threads x 1 call, 1 invalidation",
        invalidation: Invalidation::Args,
        rounds: 1,
        calls: 1,
        evict: &[],
        warm: Warm::Version,
        ..ONE_PROCESS
    };
    let mut total = Run::default();
    total.add(random(setup, 2000, RE_STORED));
    total.add(pct(setup, 2000, RE_STORED));
    total.add(pct(small, 2000, RE_STORED));
    assert!(total.re_stored > 0, "{total:?}");
    assert_eq!(total.handed_over, 0, "{total:?}");
    total.print(
        "delete_memoized(args), 1 process: total",
        "",
        started.elapsed(),
    );
}
