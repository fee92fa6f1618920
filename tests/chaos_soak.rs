//! The chaos soak: four processes share one function's cache through real servers while the
//! server holding the function's version is killed and restarted and another is frozen and
//! thawed. Three processes call a memoized `read(slot)` whose body reads a "database"
//! generation; one bumps the generation, calls `read_delete_memoized_all()`, and only when
//! that returns `Ok` publishes "generation G is invalidated". A call that starts after a
//! publication and returns a value older than it is a stale read. One reader stays idle
//! across the faults (its pooled connections go stale under it).
//!
//! Bounded in operations: every process makes a fixed number of calls (paced, so that they
//! overlap the faults). Asserts 0 stale reads, 0 wrong values, 0 panics, every call bounded,
//! hits > 0, and prints the figures (`--nocapture`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cachemacro::{memoize, Cache};
use cachemacro_testkit::{Cluster, Memcached, ScratchDir};

const ROLE: &str = "CACHEMACRO_CHAOS_ROLE";
const BACKEND: &str = "CACHEMACRO_CHAOS_BACKEND";
const SERVERS: &str = "CACHEMACRO_CHAOS_SERVERS";
const DIR: &str = "CACHEMACRO_CHAOS_DIR";

/// Longest a call may take: about one I/O timeout (750 ms) for the read, one for the write,
/// and scheduling slack on a busy 2-core machine.
const BOUND: Duration = Duration::from_millis(3000);

static CACHE: OnceLock<Cache> = OnceLock::new();
static DB: OnceLock<PathBuf> = OnceLock::new();

fn read_number(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Written whole or not at all (rename), so readers never see a torn number.
fn write_number(path: &Path, n: u64) {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, n.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn generation_file() -> PathBuf {
    DB.get().unwrap().join("generation")
}

fn published_file() -> PathBuf {
    DB.get().unwrap().join("published")
}

#[memoize(cache = CACHE.get().unwrap())]
fn read(slot: u32) -> (u32, u64) {
    (slot, read_number(&generation_file()))
}

fn cache_for(backend: &str, servers: &[String]) -> Cache {
    let builder = match backend {
        "memcached" => Cache::builder().memcached(servers.iter().cloned()),
        _ => Cache::builder().redis_cluster(servers.iter().cloned()),
    };
    builder.key_prefix("chaos:").build().unwrap()
}

/// A worker process: `run N PAUSE_US` makes N calls (a reader) or N invalidations (the
/// invalidator), pausing between them, then reports `done calls hits stale wrong max_us
/// errors`.
fn worker(role: &str) {
    let servers: Vec<String> = std::env::var(SERVERS)
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    DB.set(std::env::var(DIR).unwrap().into()).unwrap();
    CACHE
        .set(cache_for(&std::env::var(BACKEND).unwrap(), &servers))
        .unwrap();
    let (mut calls, mut stale, mut wrong, mut errors, mut max) =
        (0u64, 0u64, 0u64, 0u64, Duration::ZERO);
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let mut words = line.split_whitespace();
        if words.next() != Some("run") {
            break;
        }
        let n: u64 = words.next().unwrap().parse().unwrap();
        let pause = Duration::from_micros(words.next().unwrap().parse().unwrap());
        for i in 0..n {
            let t = Instant::now();
            if role == "invalidator" {
                let g = read_number(&generation_file()) + 1;
                write_number(&generation_file(), g);
                match read_delete_memoized_all() {
                    Ok(()) => write_number(&published_file(), g),
                    Err(_) => errors += 1,
                }
            } else {
                let floor = read_number(&published_file());
                let slot = (i % 50) as u32;
                let (s, g) = read(slot);
                if s != slot {
                    wrong += 1;
                }
                if g < floor {
                    stale += 1;
                }
            }
            max = max.max(t.elapsed());
            calls += 1;
            std::thread::sleep(pause);
        }
        let hits = CACHE.get().unwrap().stats().hits;
        println!(
            "done {calls} {hits} {stale} {wrong} {} {errors}",
            max.as_micros()
        );
    }
}

struct Worker {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

/// One worker's report.
#[derive(Debug, Default, Clone, Copy)]
struct Report {
    calls: u64,
    hits: u64,
    stale: u64,
    wrong: u64,
    max: Duration,
    errors: u64,
}

impl Worker {
    fn spawn(test: &str, role: &str, backend: &str, servers: &str, dir: &Path) -> Worker {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(BACKEND, backend)
            .env(SERVERS, servers)
            .env(DIR, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let to = child.stdin.take().unwrap();
        let from = BufReader::new(child.stdout.take().unwrap());
        Worker { child, to, from }
    }

    fn start(&mut self, n: u64, pause_us: u64) {
        writeln!(self.to, "run {n} {pause_us}").unwrap();
    }

    fn wait(&mut self) -> Report {
        loop {
            let mut line = String::new();
            assert!(
                self.from.read_line(&mut line).unwrap() > 0,
                "a worker exited (panicked?)"
            );
            // The test harness may print its own words before ours on the same line.
            if let Some(rest) = line.trim().split("done ").nth(1) {
                let f: Vec<u64> = rest.split(' ').map(|w| w.parse().unwrap()).collect();
                return Report {
                    calls: f[0],
                    hits: f[1],
                    stale: f[2],
                    wrong: f[3],
                    max: Duration::from_micros(f[4]),
                    errors: f[5],
                };
            }
        }
    }

    fn finish(mut self) {
        let _ = writeln!(self.to, "quit");
        drop(self.to);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "a worker failed: {status}");
    }
}

/// The faults, run while the workers make their paced calls.
trait Faults {
    fn inject(&mut self);
}

/// Runs the soak: warm-up, faults under load (one reader idle), recovery. Returns the
/// readers' and the invalidator's totals.
/// `under_faults`: calls each active reader makes while the faults run (1 ms apart, so that
/// they outlast them); the invalidator makes one every 25 ms for as long.
fn soak(
    test: &str,
    backend: &str,
    servers: &str,
    faults: &mut dyn Faults,
    under_faults: u64,
) -> (Report, Report) {
    let dir = ScratchDir::new("chaos");
    write_number(&dir.path().join("generation"), 1);
    write_number(&dir.path().join("published"), 0);
    let mut readers: Vec<Worker> = (0..3)
        .map(|_| Worker::spawn(test, "reader", backend, servers, dir.path()))
        .collect();
    let mut invalidator = Worker::spawn(test, "invalidator", backend, servers, dir.path());

    // Warm-up: everyone, no faults.
    for r in &mut readers {
        r.start(300, 0);
    }
    invalidator.start(10, 5_000);
    for r in &mut readers {
        r.wait();
    }
    invalidator.wait();

    // Faults under load; reader 2 stays idle across them.
    for r in &mut readers[..2] {
        r.start(under_faults, 1_000);
    }
    invalidator.start(under_faults / 25, 25_000);
    faults.inject();
    for r in &mut readers[..2] {
        r.wait();
    }
    invalidator.wait();

    // Recovery: everyone again, the idle reader included.
    for r in &mut readers {
        r.start(500, 0);
    }
    invalidator.start(10, 5_000);
    let totals: Vec<Report> = readers.iter_mut().map(Worker::wait).collect();
    let inv = invalidator.wait();
    let sum = totals.iter().fold(Report::default(), |a, r| Report {
        calls: a.calls + r.calls,
        hits: a.hits + r.hits,
        stale: a.stale + r.stale,
        wrong: a.wrong + r.wrong,
        max: a.max.max(r.max),
        errors: a.errors + r.errors,
    });
    readers.into_iter().for_each(Worker::finish);
    invalidator.finish();
    (sum, inv)
}

fn check(name: &str, readers: Report, invalidator: Report) {
    println!(
        "{name}: {} calls, {} hits, {} stale, {} wrong, slowest {:?}; {} invalidations ({} refused with Err, never published), slowest {:?}",
        readers.calls,
        readers.hits,
        readers.stale,
        readers.wrong,
        readers.max,
        invalidator.calls,
        invalidator.errors,
        invalidator.max
    );
    assert_eq!(readers.stale, 0, "{name}: stale reads");
    assert_eq!(readers.wrong, 0, "{name}: wrong values");
    assert!(readers.hits > 0, "{name}: no hit");
    assert!(readers.max < BOUND, "{name}: a call took {:?}", readers.max);
    assert!(
        invalidator.max < BOUND,
        "{name}: an invalidation took {:?}",
        invalidator.max
    );
    assert!(
        invalidator.errors < invalidator.calls,
        "{name}: no invalidation ever succeeded"
    );
}

struct MemcachedFaults<'a>(&'a mut [Memcached; 2]);

impl Faults for MemcachedFaults<'_> {
    fn inject(&mut self) {
        std::thread::sleep(Duration::from_millis(300));
        let home = self
            .0
            .iter()
            .position(|m| m.keys().iter().any(|k| k.ends_with("memver")))
            .expect("a server holds the version");
        let other = 1 - home;
        self.0[home].kill();
        std::thread::sleep(Duration::from_millis(300));
        self.0[home].restart();
        // Once the home server is tried again (`retry_timeout`, 2 s), the other one freezes:
        // its calls cost one I/O timeout, then fail over.
        std::thread::sleep(Duration::from_millis(2300));
        self.0[other].freeze();
        std::thread::sleep(Duration::from_secs(1));
        self.0[other].thaw();
    }
}

#[test]
fn chaos_soak_on_two_memcached_servers() {
    const TEST: &str = "chaos_soak_on_two_memcached_servers";
    if let Ok(role) = std::env::var(ROLE) {
        return worker(&role);
    }
    let mut servers = [Memcached::start(), Memcached::start()];
    let addrs = format!("{},{}", servers[0].addr(), servers[1].addr());
    let (readers, invalidator) = soak(
        TEST,
        "memcached",
        &addrs,
        &mut MemcachedFaults(&mut servers),
        4000,
    );
    check("memcached", readers, invalidator);
}

struct ClusterFaults<'a>(&'a mut Cluster);

impl ClusterFaults<'_> {
    /// The master holding the function's version key now.
    fn version_home(&self) -> usize {
        self.0
            .nodes
            .iter()
            .position(|n| {
                n.is_running()
                    && n.is_master()
                    && n.command(&["--scan", "--pattern", "chaos:*memver"])
                        .is_some_and(|keys| !keys.trim().is_empty())
            })
            .expect("a master holds the version")
    }
}

impl Faults for ClusterFaults<'_> {
    fn inject(&mut self) {
        std::thread::sleep(Duration::from_millis(300));
        let home = self.version_home();
        // Another master: frozen past the node timeout, so its replica is promoted.
        let other = (0..self.0.nodes.len())
            .find(|&i| i != home && self.0.nodes[i].is_master())
            .expect("another master");
        self.0.nodes[home].kill();
        std::thread::sleep(Duration::from_millis(300));
        self.0.nodes[home].restart();
        std::thread::sleep(Duration::from_millis(2300));
        self.0.nodes[other].freeze();
        std::thread::sleep(Duration::from_secs(4));
        self.0.nodes[other].thaw();
        // Its replica was promoted meanwhile: once thawed, it rejoins as a replica.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.0.nodes[other].is_master() {
            assert!(
                Instant::now() < deadline,
                "no replica took over the frozen master"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn chaos_soak_on_a_redis_cluster_with_replicas() {
    const TEST: &str = "chaos_soak_on_a_redis_cluster_with_replicas";
    if let Ok(role) = std::env::var(ROLE) {
        return worker(&role);
    }
    let mut cluster = Cluster::start_with_replicas(1);
    let urls = cluster.urls().join(",");
    let (readers, invalidator) = soak(TEST, "redis", &urls, &mut ClusterFaults(&mut cluster), 8000);
    check("redis cluster", readers, invalidator);
}
