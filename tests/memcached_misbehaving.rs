//! The memcached client against a server that speaks the protocol badly: a real socket, a
//! scriptable fault per request. Whatever the server sends, the client never returns another
//! key's value, every call is bounded by about one I/O timeout, and calls recover once the
//! server behaves.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cachemacro::backends::memcached::MemcachedOptions;
use cachemacro::{memoize, Cache};

/// How the fake server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// As memcached would.
    None,
    /// Replies start with a byte other than 0x81.
    WrongMagic,
    /// Ten bytes of a header, then the connection is closed.
    TruncatedHeader,
    /// A header announcing a 4 GiB body.
    HugeLength,
    /// The opaque of another request.
    WrongOpaque,
    /// A hit carries the opaque of the next request (its own key and value).
    ShiftedOpaque,
    /// A read answered with another key's key and value (right opaque).
    OtherKey,
    /// Every reply sent twice.
    Duplicate,
    /// A well-formed reply to a request nobody sent, after each reply.
    Unsolicited,
    /// Key and extras lengths longer than the body.
    InconsistentLengths,
    /// One byte every 100 ms.
    Trickle,
    /// Nothing at all.
    Silence,
    /// The header and half the body, then the connection is closed.
    CloseMidBody,
    /// Garbage bytes after each reply.
    GarbageAfter,
    /// Reads answered with "internal error".
    ErrorStatus,
    /// Reads answered with "invalid arguments".
    RefusedStatus,
}

const FAULTS: [Fault; 15] = [
    Fault::WrongMagic,
    Fault::TruncatedHeader,
    Fault::HugeLength,
    Fault::WrongOpaque,
    Fault::ShiftedOpaque,
    Fault::OtherKey,
    Fault::Duplicate,
    Fault::Unsolicited,
    Fault::InconsistentLengths,
    Fault::Trickle,
    Fault::Silence,
    Fault::CloseMidBody,
    Fault::GarbageAfter,
    Fault::ErrorStatus,
    Fault::RefusedStatus,
];

struct Fake {
    addr: String,
    fault: Arc<Mutex<Fault>>,
    data: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
}

struct Request {
    opcode: u8,
    opaque: u32,
    key: Vec<u8>,
    value: Vec<u8>,
}

fn frame(opcode: u8, status: u16, opaque: u32, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x81, opcode];
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.push(0);
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

fn read_request(s: &mut TcpStream) -> Option<Request> {
    let mut h = [0u8; 24];
    s.read_exact(&mut h).ok()?;
    let key_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let extras_len = usize::from(h[4]);
    let body_len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
    let mut body = vec![0u8; body_len];
    s.read_exact(&mut body).ok()?;
    Some(Request {
        opcode: h[1],
        opaque: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
        key: body[extras_len..extras_len + key_len].to_vec(),
        value: body[extras_len + key_len..].to_vec(),
    })
}

const GETKQ: u8 = 0x0d;

/// What memcached answers (`None` for a quiet request that needs no answer).
fn answer(req: &Request, data: &Mutex<HashMap<Vec<u8>, Vec<u8>>>) -> Option<Vec<u8>> {
    let mut data = data.lock().unwrap();
    let (op, o) = (req.opcode, req.opaque);
    match op {
        0x00 | 0x0c | GETKQ => match data.get(&req.key) {
            Some(v) => {
                let key: &[u8] = if op == 0x00 { &[] } else { &req.key };
                Some(frame(op, 0, o, &[0; 4], key, v))
            }
            None if op == GETKQ => None,
            None => Some(frame(op, 1, o, &[], &[], b"Not found")),
        },
        0x01 | 0x11 => {
            data.insert(req.key.clone(), req.value.clone());
            (op == 0x01).then(|| frame(op, 0, o, &[], &[], &[]))
        }
        0x02 => {
            let status = if data.contains_key(&req.key) {
                2
            } else {
                data.insert(req.key.clone(), req.value.clone());
                0
            };
            Some(frame(op, status, o, &[], &[], &[]))
        }
        0x04 => {
            let status = if data.remove(&req.key).is_some() {
                0
            } else {
                1
            };
            Some(frame(op, status, o, &[], &[], &[]))
        }
        0x08 => {
            data.clear();
            Some(frame(op, 0, o, &[], &[], &[]))
        }
        _ => Some(frame(op, 0, o, &[], &[], &[])),
    }
}

/// Another key's entry, if the fake holds one.
fn other_entry(
    req: &Request,
    data: &Mutex<HashMap<Vec<u8>, Vec<u8>>>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let data = data.lock().unwrap();
    data.iter()
        .find(|(k, _)| **k != req.key)
        .map(|(k, v)| (k.clone(), v.clone()))
}

fn serve(mut s: TcpStream, fault: Arc<Mutex<Fault>>, data: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>) {
    while let Some(req) = read_request(&mut s) {
        let f = *fault.lock().unwrap();
        let read = matches!(req.opcode, 0x00 | 0x0c | GETKQ);
        // Faults apply to reads; writes and NOOPs are answered well, so the client gets
        // as far as reading (and a NOOP closes a quiet batch as it should).
        let mut reply = answer(&req, &data);
        let f = if read || matches!(f, Fault::Silence | Fault::Trickle) {
            f
        } else {
            Fault::None
        };
        let out = match (f, reply.take()) {
            (Fault::None, r) => r.unwrap_or_default(),
            (Fault::Silence, _) => {
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            (Fault::ErrorStatus, _) => {
                frame(req.opcode, 0x0084, req.opaque, &[], &[], b"Internal error")
            }
            (Fault::RefusedStatus, _) => frame(
                req.opcode,
                0x0004,
                req.opaque,
                &[],
                &[],
                b"Invalid arguments",
            ),
            (Fault::OtherKey, r) => match other_entry(&req, &data) {
                Some((k, v)) => frame(
                    req.opcode,
                    0,
                    req.opaque,
                    &[0; 4],
                    if req.opcode == 0 { &[] } else { &k },
                    &v,
                ),
                None => r.unwrap_or_default(),
            },
            (_, None) => Vec::new(),
            (Fault::WrongMagic, Some(mut r)) => {
                r[0] = 0x42;
                r
            }
            (Fault::TruncatedHeader, Some(r)) => {
                let _ = s.write_all(&r[..10]);
                return;
            }
            (Fault::HugeLength, Some(mut r)) => {
                r[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
                r
            }
            (Fault::WrongOpaque, Some(mut r)) => {
                r[12..16].copy_from_slice(&req.opaque.wrapping_add(7).to_be_bytes());
                r
            }
            (Fault::ShiftedOpaque, Some(mut r)) => {
                r[12..16].copy_from_slice(&req.opaque.wrapping_add(1).to_be_bytes());
                r
            }
            (Fault::Duplicate, Some(r)) => [r.clone(), r].concat(),
            (Fault::Unsolicited, Some(r)) => {
                let extra = frame(
                    GETKQ,
                    0,
                    req.opaque.wrapping_add(1),
                    &[0; 4],
                    b"injected",
                    b"\x2a",
                );
                [r, extra].concat()
            }
            (Fault::InconsistentLengths, Some(mut r)) => {
                r[4] = 200;
                r
            }
            (Fault::Trickle, Some(r)) => {
                for b in r {
                    std::thread::sleep(Duration::from_millis(100));
                    if s.write_all(&[b]).is_err() {
                        return;
                    }
                }
                continue;
            }
            (Fault::CloseMidBody, Some(r)) => {
                let _ = s.write_all(&r[..24 + (r.len() - 24) / 2]);
                return;
            }
            (Fault::GarbageAfter, Some(r)) => [r, b"\x81garbage!\x00\x01".to_vec()].concat(),
        };
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

impl Fake {
    fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let fault = Arc::new(Mutex::new(Fault::None));
        let data = Arc::new(Mutex::new(HashMap::new()));
        let (f, d) = (fault.clone(), data.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (f, d) = (f.clone(), d.clone());
                std::thread::spawn(move || serve(conn, f, d));
            }
        });
        Fake { addr, fault, data }
    }

    fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }
}

const IO_TIMEOUT: Duration = Duration::from_millis(300);
/// About one I/O timeout, with slack for a busy machine.
const BOUND: Duration = Duration::from_millis(1500);

fn options() -> MemcachedOptions {
    let mut o = MemcachedOptions::default();
    o.io_timeout = IO_TIMEOUT;
    o.connect_timeout = IO_TIMEOUT;
    o.retry_timeout = Duration::from_millis(50);
    o.dead_timeout = Duration::from_millis(50);
    o
}

fn fake() -> &'static Fake {
    static FAKE: OnceLock<Fake> = OnceLock::new();
    FAKE.get_or_init(Fake::start)
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| {
        Cache::builder()
            .memcached([fake().addr.clone()])
            .memcached_options(options())
            .build()
            .unwrap()
    })
}

static WORK_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = cache())]
fn work(n: u64) -> u64 {
    WORK_CALLS.fetch_add(1, Ordering::SeqCst);
    n * 10 + 1
}

/// Waits out `retry_timeout` after a fault, then checks calls are served from the cache
/// again.
fn recovers(n: u64) {
    std::thread::sleep(options().retry_timeout * 3);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(work(n), n * 10 + 1);
        let before = WORK_CALLS.load(Ordering::SeqCst);
        assert_eq!(work(n), n * 10 + 1);
        if WORK_CALLS.load(Ordering::SeqCst) == before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no hit after the server behaved again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One test: the fake is shared, and faults are switched one at a time.
#[test]
fn a_misbehaving_server_never_yields_another_keys_value() {
    let cache = cache();
    let fake = fake();
    // Entries the faults can mix up: direct keys and memoized results.
    for i in 0..20u64 {
        cache.set(&format!("k{i}"), &(i * 100), 0).unwrap();
        assert_eq!(work(i), i * 10 + 1);
    }
    let mut report = Vec::new();
    for fault in FAULTS {
        fake.set_fault(fault);
        let (mut max, mut errors, mut misses) = (Duration::ZERO, 0, 0);
        for i in 0..20u64 {
            let t = Instant::now();
            match cache.get::<u64>(&format!("k{i}")) {
                Ok(Some(v)) => assert_eq!(v, i * 100, "{fault:?}: another key's value for k{i}"),
                Ok(None) => misses += 1,
                Err(_) => errors += 1,
            }
            match cache.get_many::<u64>(&[
                &format!("k{i}"),
                "never-written",
                &format!("k{}", (i + 1) % 20),
            ]) {
                Ok(vs) => {
                    assert!(
                        vs[0].is_none_or(|v| v == i * 100),
                        "{fault:?}: get_many {vs:?}"
                    );
                    assert_eq!(vs[1], None, "{fault:?}: a value for a key never written");
                    assert!(
                        vs[2].is_none_or(|v| v == (i + 1) % 20 * 100),
                        "{fault:?}: get_many {vs:?}"
                    );
                }
                Err(_) => errors += 1,
            }
            assert_eq!(
                cache.get::<u64>("never-written").unwrap_or(None),
                None,
                "{fault:?}"
            );
            assert_eq!(work(i), i * 10 + 1, "{fault:?}: memoized work({i})");
            max = max.max(t.elapsed());
            if matches!(fault, Fault::Trickle | Fault::Silence) && i == 2 {
                break; // each call costs a timeout: a few show it
            }
        }
        assert!(max < BOUND * 4, "{fault:?}: four calls took {max:?}");
        report.push(format!(
            "{fault:?}: max {max:?}, {errors} errors, {misses} misses"
        ));
        fake.set_fault(Fault::None);
        recovers(3);
    }
    // The server never counted as failing for refused requests alone, and every value is
    // still there to be read.
    for i in 0..20u64 {
        assert_eq!(cache.get::<u64>(&format!("k{i}")).unwrap(), Some(i * 100));
    }
    assert!(fake.data.lock().unwrap().len() >= 20);
    println!("{}", report.join("\n"));
}

// The async client, against a fake of its own (faults are switched per fake).

fn async_fake() -> &'static Fake {
    static FAKE: OnceLock<Fake> = OnceLock::new();
    FAKE.get_or_init(Fake::start)
}

fn async_cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| {
        Cache::builder()
            .memcached([async_fake().addr.clone()])
            .memcached_options(options())
            .build()
            .unwrap()
    })
}

static ASYNC_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = async_cache())]
async fn async_work(n: u64) -> u64 {
    ASYNC_CALLS.fetch_add(1, Ordering::SeqCst);
    n * 10 + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_server_never_yields_another_keys_value_to_the_async_client() {
    let cache = async_cache();
    let fake = async_fake();
    let a = cache.aio();
    for i in 0..20u64 {
        a.set(&format!("k{i}"), &(i * 100), 0).await.unwrap();
        assert_eq!(async_work(i).await, i * 10 + 1);
    }
    let mut report = Vec::new();
    for fault in FAULTS {
        fake.set_fault(fault);
        let (mut max, mut errors) = (Duration::ZERO, 0);
        for i in 0..20u64 {
            let t = Instant::now();
            match a.get::<u64>(&format!("k{i}")).await {
                Ok(Some(v)) => assert_eq!(v, i * 100, "{fault:?}: another key's value for k{i}"),
                Ok(None) => {}
                Err(_) => errors += 1,
            }
            let next = format!("k{}", (i + 1) % 20);
            if let Ok(vs) = a
                .get_many::<u64>(&[&format!("k{i}"), "never-written", &next])
                .await
            {
                assert!(vs[0].is_none_or(|v| v == i * 100), "{fault:?}: {vs:?}");
                assert_eq!(vs[1], None, "{fault:?}: a value for a key never written");
                assert!(
                    vs[2].is_none_or(|v| v == (i + 1) % 20 * 100),
                    "{fault:?}: {vs:?}"
                );
            }
            assert_eq!(
                async_work(i).await,
                i * 10 + 1,
                "{fault:?}: memoized work({i})"
            );
            max = max.max(t.elapsed());
            if matches!(fault, Fault::Trickle | Fault::Silence) && i == 2 {
                break;
            }
        }
        assert!(max < BOUND * 4, "{fault:?}: four calls took {max:?}");
        report.push(format!("{fault:?}: max {max:?}, {errors} errors"));
        fake.set_fault(Fault::None);
        // Recovery: once `retry_timeout` has passed, calls are cached again.
        tokio::time::sleep(options().retry_timeout * 3).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert_eq!(async_work(3).await, 31);
            let before = ASYNC_CALLS.load(Ordering::SeqCst);
            assert_eq!(async_work(3).await, 31);
            if ASYNC_CALLS.load(Ordering::SeqCst) == before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{fault:?}: no hit after recovery"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for i in 0..20u64 {
        assert_eq!(a.get::<u64>(&format!("k{i}")).await.unwrap(), Some(i * 100));
    }
    println!("async client:\n{}", report.join("\n"));
}
