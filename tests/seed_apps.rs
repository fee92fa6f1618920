//! The two example web services, run as real processes and tested over HTTP, and the task
//! list once in a headless browser.
//!
//! - `examples/microcache.rs` (seed 000): `/` is the current time (RFC 3339) cached 5 s by the
//!   view layer; with memcached and two worker processes every worker serves the same
//!   timestamp until it is five seconds old, then a new one, shared again. The in-memory
//!   default, `CACHE_TYPE=null`, `/static`, a malformed `PORT`, and the Heroku process model:
//!   SIGTERM to the master stops every worker, and so does the master's death (SIGKILL), the
//!   workers' stdin pipe closing.
//! - `examples/tasks.rs` (seed 002, MemCachier's Flask tutorial): list, add, delete, the
//!   empty-name flash, invalidation on every write (SQLite reusing a deleted task's id must not
//!   bring back its cached row), on the in-memory cache and on memcached; two workers sharing
//!   memcached; on memcached a warm reload of `/` is exactly one `get` (one hit) on the server.
//! - The task list in headless Chromium: a screenshot and the DOM (names escaped, title, the
//!   "New Task" card, one "Delete" button per task).
//!
//! The examples are run from the target directory (`target/debug/examples/`, next to this
//! test's `deps/`); the test builds them there first (`cargo test --all-targets` builds
//! examples only as test harnesses). Each service runs under `setpriv --pdeathsig KILL` (the
//! testkit), on a free port, with its log and database in a scratch directory; memcached is a
//! real server of the testkit. Chromium comes from `scripts/install-deps` (Debian `chromium`).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cachemacro_testkit::process::{start_on_free_port, Launch, ServerProcess};
use cachemacro_testkit::{Memcached, ScratchDir};
use http::{Method, StatusCode};

mod web;
use web::{Http, Reply};

/// How long a service may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the workers may take to go away once their master is gone.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one Chromium run may take.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);
/// The microcache's timeout (`MICROCACHE_TIMEOUT` in the example).
const MICROCACHE: Duration = Duration::from_secs(5);
/// Fresh connections made, at most, to meet every worker.
const MAX_REQUESTS: usize = 200;
/// Fresh connections made after each write, to load the page from every worker.
const LOADS_PER_WRITE: usize = 16;
const FLASH: &str = "Task name is required.";

// ---------------------------------------------------------------------------------------------
// Starting the examples
// ---------------------------------------------------------------------------------------------

/// The built example `name`: `<target>/<profile>/examples/NAME`, this test being
/// `<target>/<profile>/deps/seed_apps-HASH` (whatever `CARGO_TARGET_DIR` is).
///
/// `cargo test --all-targets` builds examples only as test harnesses, and `cargo test --test
/// seed_apps` not at all, never as the programs this file runs, so the first call builds the
/// workspace's examples with the cargo that runs this test, into the same target directory
/// and profile (a no-op when they are fresh). Cargo releases its build lock while tests run.
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let examples = BUILT.get_or_init(build_examples);
    let path = examples.join(name);
    assert!(
        path.is_file(),
        "the example `{name}` is not at {} after `cargo build --examples`",
        path.display()
    );
    path
}

/// Builds the workspace's examples as `cargo build --workspace --examples` would, for this
/// test's profile and target directory; returns their directory.
fn build_examples() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of this test binary");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in <target>/<profile>/deps/", exe.display()));
    let target_dir = profile_dir
        .parent()
        .unwrap_or_else(|| panic!("{} has no target directory", profile_dir.display()));
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("{} names no profile", profile_dir.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "--workspace",
            "--examples",
            "--profile",
            profile,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    assert!(
        status.success(),
        "`cargo build --workspace --examples --profile {profile}` failed: {status}"
    );
    profile_dir.join("examples")
}

/// The cache a service runs with.
#[derive(Clone, Copy)]
enum Backend<'a> {
    /// Nothing set: the in-memory default.
    Memory,
    /// `MEMCACHIER_SERVERS=<this server>`.
    Memcached(&'a Memcached),
    /// `CACHE_TYPE=null`: caching off.
    Null,
}

/// One example running: the master process (and its workers) on `addr`.
struct Service {
    /// Declared first: killed before `dir` (its log and database) is removed.
    process: ServerProcess,
    name: String,
    addr: SocketAddr,
    workers: usize,
    dir: ScratchDir,
}

impl Service {
    /// Starts example `name` with `workers` worker processes (`WEB_CONCURRENCY`, left unset
    /// for 1, the default) and waits until every worker listens and the service answers HTTP.
    fn start(name: &str, backend: Backend<'_>, workers: usize) -> Service {
        refuse_inherited_configuration();
        let program = example(name);
        let dir = ScratchDir::new(name);
        let log = dir.join(format!("{name}.log"));
        let (process, port) = start_on_free_port(|port| {
            let mut launch = Launch::new(&program)
                .env("PORT", port.to_string())
                // The task list's database (ignored by the microcache).
                .env("DATABASE_URL", dir.join("tasks.db"))
                .log(&log);
            if workers != 1 {
                launch = launch.env("WEB_CONCURRENCY", workers.to_string());
            }
            launch = match backend {
                Backend::Memory => launch,
                Backend::Memcached(server) => launch.env("MEMCACHIER_SERVERS", server.addr()),
                Backend::Null => launch.env("CACHE_TYPE", "null"),
            };
            let process = ServerProcess::spawn(format!("{name} on 127.0.0.1:{port}"), launch);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            process.wait_ready(START_TIMEOUT, |_| {
                listeners(port) >= workers && answers_http(addr)
            })?;
            Ok((process, port))
        });
        Service {
            process,
            name: name.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            workers,
            dir,
        }
    }

    /// A client with a connection pool of its own (keeps its connection to one worker).
    fn http(&self) -> Http {
        Http::new(self.addr)
    }

    /// `GET path` on a new connection, closed after: the kernel picks the worker.
    async fn fresh_get(&self, path: &str) -> Reply {
        self.http().get_with(path, &[("connection", "close")]).await
    }

    /// Everything the service wrote to stdout and stderr so far.
    fn log(&self) -> String {
        let path = self.dir.join(format!("{}.log", self.name));
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits until nothing listens on the port any more (every worker gone).
    fn assert_port_closes(&self, after: &str, workers: &[u32]) {
        let closed = wait_until(STOP_TIMEOUT, || {
            listeners(self.port()) == 0 && TcpStream::connect(self.addr).is_err()
        });
        assert!(
            closed,
            "{after}, {} worker(s) still listen on {} after {STOP_TIMEOUT:?} (worker pids \
             {workers:?}); log:\n{}",
            listeners(self.port()),
            self.addr,
            self.log()
        );
    }
}

/// Settings in the test's own environment would change every service started here (they
/// inherit it): refuse them rather than test something else than intended.
fn refuse_inherited_configuration() {
    let inherited: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| {
            k.starts_with("CACHE_") || k.starts_with("MEMCACHIER_") || k == "WEB_CONCURRENCY"
        })
        .collect();
    assert!(
        inherited.is_empty(),
        "unset {inherited:?} to run these tests: the example services inherit them"
    );
}

/// How many sockets listen on loopback `port` (one per worker: they bind with SO_REUSEPORT).
fn listeners(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields
                        .get(1)
                        .and_then(|local| local.rsplit_once(':'))
                        .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
                    local_port == Some(port) && fields.get(3) == Some(&"0A") // LISTEN
                })
                .map(|_| ())
                .collect::<Vec<_>>()
        })
        .count()
}

/// Whether something at `addr` answers an HTTP request (any status).
fn answers_http(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /static HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply)?;
        Ok(reply.starts_with(b"HTTP/1.1 "))
    };
    attempt().unwrap_or(false)
}

/// Polls `done` every 20 ms for up to `timeout`.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The PIDs of `pid`'s children (its workers), for failure messages.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The microcache
// ---------------------------------------------------------------------------------------------

/// Whether `s` is an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(digits(0..4) && at(4, b'-') && digits(5..7) && at(7, b'-') && digits(8..10))
        || !(matches!(b.get(10), Some(b'T' | b't'))
            && digits(11..13)
            && at(13, b':')
            && digits(14..16)
            && at(16, b':')
            && digits(17..19))
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    let offset = rest.as_bytes();
    rest == "Z"
        || (offset.len() == 6
            && matches!(offset[0], b'+' | b'-')
            && offset[1..3].iter().all(u8::is_ascii_digit)
            && offset[3] == b':'
            && offset[4..6].iter().all(u8::is_ascii_digit))
}

/// One answer of the microcache: the timestamp, the worker that served it, whether a hit.
#[derive(Debug)]
struct Stamp {
    body: String,
    served_by: u32,
    hit: bool,
}

async fn stamp(service: &Service) -> Stamp {
    let reply = service.fresh_get("/").await;
    assert_eq!(reply.status, StatusCode::OK, "GET /: {reply:?}");
    let body = reply.text();
    assert!(is_rfc3339(&body), "GET / is not an RFC 3339 time: {body:?}");
    let served_by = reply.header("x-served-by");
    Stamp {
        served_by: served_by
            .parse()
            .unwrap_or_else(|_| panic!("x-served-by is not a pid: {served_by:?} ({reply:?})")),
        hit: reply.hit(),
        body,
    }
}

/// Requests `/` on fresh connections until every worker has answered (at most
/// [`MAX_REQUESTS`], and only while `deadline` is ahead, so that all are within one window).
async fn stamps_from_every_worker(service: &Service, deadline: Instant) -> Vec<Stamp> {
    let mut stamps: Vec<Stamp> = Vec::new();
    let mut workers = std::collections::BTreeSet::new();
    while stamps.len() < MAX_REQUESTS
        && workers.len() < service.workers
        && Instant::now() < deadline
    {
        let s = stamp(service).await;
        workers.insert(s.served_by);
        stamps.push(s);
    }
    stamps
}

/// Every stamp carries `body`, and at least two workers served it.
fn assert_shared(stamps: &[Stamp], body: &str, window: &str) {
    let differ: Vec<&Stamp> = stamps.iter().filter(|s| s.body != body).collect();
    assert!(
        differ.is_empty(),
        "{window}: every worker must serve {body:?}, these did not: {differ:?}"
    );
    let workers: std::collections::BTreeSet<u32> = stamps.iter().map(|s| s.served_by).collect();
    assert!(
        workers.len() >= 2,
        "{window}: only worker(s) {workers:?} answered {} requests on fresh connections",
        stamps.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microcache_workers_share_one_timestamp_through_memcached() {
    let memcached = Memcached::start();
    let service = Service::start("microcache", Backend::Memcached(&memcached), 2);

    // The first window: rendered once, then served by every worker until it is 5 s old
    // (memcached's clock ticks in seconds: an entry of 5 s lives at least 4).
    let started = Instant::now();
    let first = stamp(&service).await;
    assert!(!first.hit, "the first GET / must render: {first:?}");
    let window = started + MICROCACHE - Duration::from_millis(1500);
    let stamps = stamps_from_every_worker(&service, window).await;
    assert_shared(&stamps, &first.body, "within 5 s");
    assert!(
        stamps.iter().all(|s| s.hit),
        "every later GET / is a hit: {stamps:?}"
    );

    // Once 5 s old, a new timestamp, shared again.
    tokio::time::sleep_until((started + MICROCACHE + Duration::from_millis(500)).into()).await;
    let restarted = Instant::now();
    let second = stamp(&service).await;
    assert_ne!(
        second.body, first.body,
        "after 5.5 s the timestamp must be new"
    );
    assert!(
        !second.hit,
        "the first GET / after 5 s must render: {second:?}"
    );
    let window = restarted + MICROCACHE - Duration::from_millis(1500);
    let stamps = stamps_from_every_worker(&service, window).await;
    assert_shared(&stamps, &second.body, "the second window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microcache_in_memory_by_default() {
    let service = Service::start("microcache", Backend::Memory, 1);
    let first = stamp(&service).await;
    let again = stamp(&service).await;
    assert!(
        !first.hit && again.hit,
        "MISS then HIT: {first:?}, {again:?}"
    );
    assert_eq!(again.body, first.body, "cached for 5 s");
    assert_eq!(again.served_by, first.served_by, "one worker");
    let log = service.log();
    assert!(
        log.contains("1 worker(s), cache: simple"),
        "the master names the in-memory cache: {log}"
    );

    let hello = service.http().get("/static").await;
    assert_eq!(hello.status, StatusCode::OK);
    assert_eq!(hello.text(), "Hello, World!");
    assert_eq!(hello.header("x-served-by"), first.served_by.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microcache_cache_type_null_turns_caching_off() {
    let service = Service::start("microcache", Backend::Null, 1);
    let first = stamp(&service).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = stamp(&service).await;
    assert!(
        !first.hit && !again.hit,
        "never a hit: {first:?}, {again:?}"
    );
    assert_ne!(again.body, first.body, "every GET / renders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microcache_exits_naming_a_malformed_port() {
    refuse_inherited_configuration();
    let dir = ScratchDir::new("microcache-bad-port");
    let log = dir.join("microcache.log");
    let process = ServerProcess::spawn(
        "microcache with PORT=notaport",
        Launch::new(example("microcache"))
            .env("PORT", "notaport")
            .log(&log),
    );
    let failure = process
        .wait_ready(START_TIMEOUT, |_| false)
        .expect_err("microcache must not run with PORT=notaport");
    let message = failure.to_string();
    assert!(
        message.contains("exited at start"),
        "it must exit: {message}"
    );
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log.contains("PORT") && log.contains("notaport"),
        "the error names PORT and its value: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microcache_sigterm_to_the_master_stops_every_worker() {
    let service = Service::start("microcache", Backend::Memory, 2);
    let master = service.process.pid().expect("the master runs");
    let workers = children_of(master);
    assert!(
        service.process.terminate(),
        "SIGTERM to the master {master}"
    );
    assert!(
        wait_until(STOP_TIMEOUT * 2, || !service.process.is_running()),
        "the master must exit on SIGTERM; log:\n{}",
        service.log()
    );
    service.assert_port_closes("after SIGTERM to the master", &workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microcache_workers_follow_a_killed_master() {
    let service = Service::start("microcache", Backend::Memory, 2);
    let workers = service.process.pid().map(children_of).unwrap_or_default();
    // Served before: an open pooled connection must not keep a worker alive either.
    let http = service.http();
    assert_eq!(http.get("/static").await.text(), "Hello, World!");
    service.process.kill(); // SIGKILL: no chance to stop the workers itself
    service.assert_port_closes("after SIGKILL to the master", &workers);
}

// ---------------------------------------------------------------------------------------------
// The task list
// ---------------------------------------------------------------------------------------------

/// `application/x-www-form-urlencoded` for one value.
fn form_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Text as minijinja escaped it in the page, back to itself.
fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

/// The tasks a page lists: `(id, name)` of each row, in order.
fn tasks_on(page: &str) -> Vec<(i64, String)> {
    const NAME: &str = "<td class=\"table-text\">";
    let mut tasks = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(NAME) {
        rest = &rest[start + NAME.len()..];
        let (name, after) = rest
            .split_once("</td>")
            .expect("a task name ends with </td>");
        let (_, action) = after
            .split_once("action=\"/")
            .expect("each task row has a delete form");
        let (id, _) = action
            .split_once("/delete\"")
            .expect("the delete form posts to /{id}/delete");
        let id = id.parse().expect("a task id is a number");
        tasks.push((id, unescape(name)));
        rest = after;
    }
    tasks
}

/// The names a page lists.
fn names_on(page: &str) -> Vec<String> {
    tasks_on(page).into_iter().map(|(_, name)| name).collect()
}

/// `POST /` with `name`: the page it answers with.
async fn add_task(http: &Http, name: &str) -> Reply {
    let reply = http
        .send(
            Method::POST,
            "/",
            &[("content-type", "application/x-www-form-urlencoded")],
            &format!("name={}", form_value(name)),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "POST / name={name:?}: {reply:?}"
    );
    reply
}

/// `POST /{id}/delete`: a redirect to the list.
async fn delete_task(http: &Http, id: i64) {
    let reply = http
        .send(Method::POST, &format!("/{id}/delete"), &[], "")
        .await;
    assert_eq!(
        reply.status,
        StatusCode::FOUND,
        "POST /{id}/delete: {reply:?}"
    );
    assert_eq!(
        reply.header("location"),
        "/",
        "POST /{id}/delete: {reply:?}"
    );
}

/// `GET /`: the page, checked to be the task list.
async fn list(http: &Http) -> Reply {
    let reply = http.get("/").await;
    assert_eq!(reply.status, StatusCode::OK, "GET /: {reply:?}");
    let page = reply.text();
    assert!(page.contains("New Task"), "GET / is the task list: {page}");
    assert!(!page.contains(FLASH), "no flash on a plain GET /: {page}");
    reply
}

/// Adding, listing, deleting and the empty-name flash, each write seen on the next load.
async fn add_list_delete(service: &Service) {
    let http = service.http();
    let db = service.dir.join("tasks.db");
    assert!(
        db.is_file(),
        "DATABASE_URL {} is created on start",
        db.display()
    );

    let empty = list(&http).await;
    assert!(!empty.hit(), "the first GET / renders: {empty:?}");
    assert_eq!(names_on(&empty.text()), Vec::<String>::new());
    let again = list(&http).await;
    assert!(again.hit(), "the second GET / is a hit: {again:?}");
    assert_eq!(again.text(), empty.text());

    // Adding: the POST answers with the list, and the next GET shows it too.
    let added = add_task(&http, "Buy milk").await;
    assert_eq!(names_on(&added.text()), ["Buy milk"]);
    assert_eq!(
        tasks_on(&list(&http).await.text()),
        [(1, "Buy milk".into())]
    );
    add_task(&http, "Walk the dog").await;
    let page = list(&http).await;
    assert_eq!(
        tasks_on(&page.text()),
        [(1, "Buy milk".into()), (2, "Walk the dog".into())]
    );
    assert!(list(&http).await.hit(), "cached again once rendered");

    // An empty name: the flash, in this response only, and nothing added.
    for name in ["", "   "] {
        let refused = add_task(&http, name).await;
        assert!(
            refused.text().contains(FLASH),
            "POST / name={name:?} must flash {FLASH:?}: {}",
            refused.text()
        );
        assert_eq!(
            refused.header("cache-control"),
            "private, no-store",
            "a page with a message is for one user"
        );
        assert_eq!(names_on(&refused.text()), ["Buy milk", "Walk the dog"]);
    }
    assert_eq!(
        names_on(&list(&http).await.text()),
        ["Buy milk", "Walk the dog"]
    );

    // Deleting: a redirect, and the next GET no longer shows it.
    delete_task(&http, 1).await;
    assert_eq!(
        tasks_on(&list(&http).await.text()),
        [(2, "Walk the dog".into())]
    );
    delete_task(&http, 2).await;
    assert_eq!(names_on(&list(&http).await.text()), Vec::<String>::new());
    delete_task(&http, 99).await; // no such task: the same redirect, nothing changes

    // SQLite reuses ids: task 1 again, under a new name, not the deleted one's cached row.
    add_task(&http, "Call Alice").await;
    assert_eq!(
        tasks_on(&list(&http).await.text()),
        [(1, "Call Alice".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_in_memory() {
    let service = Service::start("tasks", Backend::Memory, 1);
    add_list_delete(&service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_on_memcached() {
    let memcached = Memcached::start();
    let service = Service::start("tasks", Backend::Memcached(&memcached), 1);
    add_list_delete(&service).await;
    // `lru_crawler metadump` lists keys percent-encoded.
    let keys: Vec<String> = memcached.keys().iter().map(|k| percent_decode(k)).collect();
    for key in ["view//", "_template_fragment_cache_task-fragment_1"] {
        assert!(
            keys.iter().any(|k| k == key),
            "{key} is cached in memcached: {keys:?}"
        );
    }
}

/// `%XX` escapes decoded.
fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        let hex = |b: Option<u8>| b.and_then(|b| (b as char).to_digit(16));
        match b {
            b'%' => {
                let (hi, lo) = (bytes.next(), bytes.next());
                match (hex(hi), hex(lo)) {
                    (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                    _ => out.extend([Some(b), hi, lo].into_iter().flatten()),
                }
            }
            _ => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_warm_reload_is_one_get_on_memcached() {
    let memcached = Memcached::start();
    let service = Service::start("tasks", Backend::Memcached(&memcached), 1);
    let http = service.http();
    add_task(&http, "Buy milk").await;
    add_task(&http, "Walk the dog").await;
    list(&http).await;
    assert!(list(&http).await.hit(), "warm after two loads");
    for reload in 1..=3 {
        let before = memcached.stats();
        let page = list(&http).await;
        let after = memcached.stats();
        assert!(page.hit(), "reload {reload} is a hit: {page:?}");
        assert_eq!(names_on(&page.text()), ["Buy milk", "Walk the dog"]);
        let delta = |stat: &str| after[stat] - before[stat];
        assert_eq!(
            (delta("cmd_get"), delta("get_hits")),
            (1, 1),
            "reload {reload}: one get, one hit on memcached (cmd_get, get_hits; \
             get_misses +{}, cmd_set +{})",
            delta("get_misses"),
            delta("cmd_set")
        );
    }
}

/// Loads `/` on [`LOADS_PER_WRITE`] fresh connections (spread over the workers): each shows
/// exactly `expected`.
///
/// The task list names no worker, but the kernel hashes each new connection (its source port)
/// over the listening sockets: 16 connections all reaching one of two workers is a 2^-15 chance.
async fn every_worker_lists(service: &Service, expected: &[(i64, &str)], after: &str) {
    let expected: Vec<(i64, String)> = expected
        .iter()
        .map(|(id, name)| (*id, name.to_string()))
        .collect();
    for load in 1..=LOADS_PER_WRITE {
        let reply = service.fresh_get("/").await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{after}: GET / {load}: {reply:?}"
        );
        assert_eq!(
            tasks_on(&reply.text()),
            expected,
            "{after}: GET / {load} on a fresh connection (x-cache: {})",
            reply.header("x-cache")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_two_workers_share_memcached() {
    let memcached = Memcached::start();
    let service = Service::start("tasks", Backend::Memcached(&memcached), 2);
    // Each write on a fresh connection too: any worker takes it.
    let write = || Http::new(service.addr);
    every_worker_lists(&service, &[], "at start").await;
    add_task(&write(), "Buy milk").await;
    every_worker_lists(&service, &[(1, "Buy milk")], "after adding task 1").await;
    add_task(&write(), "Walk the dog").await;
    every_worker_lists(
        &service,
        &[(1, "Buy milk"), (2, "Walk the dog")],
        "after adding task 2",
    )
    .await;
    delete_task(&write(), 1).await;
    every_worker_lists(&service, &[(2, "Walk the dog")], "after deleting task 1").await;
    delete_task(&write(), 2).await;
    every_worker_lists(&service, &[], "after deleting task 2").await;
    // Task 1 again: no worker shows the deleted task's row.
    add_task(&write(), "Call Alice").await;
    every_worker_lists(&service, &[(1, "Call Alice")], "after reusing id 1").await;
    assert_eq!(listeners(service.port()), 2, "both workers still listen");
}

// ---------------------------------------------------------------------------------------------
// The task list in a browser
// ---------------------------------------------------------------------------------------------

/// Runs `command` to completion, killing it after `timeout`.
fn run_with_timeout(
    mut command: Command,
    timeout: Duration,
    what: &str,
    stderr: &Path,
) -> ExitStatus {
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what} did not finish within {timeout:?}; stderr:\n{}",
                    tail(stderr)
                );
            }
            Err(e) => panic!("cannot wait for {what}: {e}"),
        }
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Headless Chromium on `url` with `args`; its standard output.
fn chromium(binary: &Path, scratch: &ScratchDir, run: &str, args: &[String], url: &str) -> String {
    let stdout = scratch.join(format!("{run}.stdout"));
    let stderr = scratch.join(format!("{run}.stderr"));
    let mut command = Command::new(binary);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.join(format!("{run}-profile")).display()
        ))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("create chromium's stdout file"))
        .stderr(File::create(&stderr).expect("create chromium's stderr file"));
    let what = format!("chromium ({run})");
    let status = run_with_timeout(command, CHROMIUM_TIMEOUT, &what, &stderr);
    assert!(
        status.success(),
        "{what} failed ({status}); stderr:\n{}",
        tail(&stderr)
    );
    String::from_utf8_lossy(&std::fs::read(&stdout).unwrap_or_default()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_in_a_headless_browser() {
    let binary = cachemacro_testkit::require("chromium", "chromium");
    let service = Service::start("tasks", Backend::Memory, 1);
    let http = service.http();
    let names = ["Buy milk & eggs", "Learn the <b> tag", "Walk the dog"];
    for name in names {
        add_task(&http, name).await;
    }
    let url = format!("http://{}/", service.addr);
    let scratch = ScratchDir::new("chromium");

    // What it looks like.
    let screenshot = scratch.join("tasks.png");
    chromium(
        &binary,
        &scratch,
        "screenshot",
        &[
            format!("--screenshot={}", screenshot.display()),
            "--window-size=1024,768".into(),
        ],
        &url,
    );
    let png = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", screenshot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        screenshot.display()
    );
    // IHDR, the first chunk: width and height, big-endian.
    let size = |at: usize| {
        png.get(at..at + 4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
    };
    assert_eq!(
        (size(16), size(20)),
        (Some(1024), Some(768)),
        "{} is the window's size",
        screenshot.display()
    );
    assert!(
        png.len() > 5 * 1024,
        "{} is too small to show the page: {} bytes",
        screenshot.display(),
        png.len()
    );
    // Kept past the test (the scratch directory is not) for a look.
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("seed_apps-tasks.png");
    let shown = match std::fs::copy(&screenshot, &kept) {
        Ok(_) => kept,
        Err(_) => screenshot.clone(),
    };
    println!("screenshot of the task list: {}", shown.display());

    // What it is: the DOM as the browser built it.
    let dom = chromium(&binary, &scratch, "dump-dom", &["--dump-dom".into()], &url);
    assert!(
        dom.contains("<title>Task List - MemCachier Flask Tutorial</title>"),
        "the title: {dom}"
    );
    assert!(dom.contains("New Task"), "the New Task card: {dom}");
    for escaped in [
        "Buy milk &amp; eggs",
        "Learn the &lt;b&gt; tag",
        "Walk the dog",
    ] {
        assert!(
            dom.contains(escaped),
            "the task {escaped:?} (escaped): {dom}"
        );
    }
    assert!(
        !dom.contains("<b>"),
        "a task name is text, never markup: {dom}"
    );
    assert_eq!(
        dom.matches("Delete</button>").count(),
        names.len(),
        "one Delete button per task: {dom}"
    );
}
