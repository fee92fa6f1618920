//! The testkit's promises about server processes: none outlives its test process, even one
//! killed with SIGKILL; signals reach only a live child of ours; temporary directories go.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cachemacro_testkit::scratch::{process_dir, ScratchDir};
use cachemacro_testkit::{Memcached, Redis};

const CHILD_ENV: &str = "CACHEMACRO_TESTKIT_LIFECYCLE_CHILD";

fn answers(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Waits (at most 10 s) until `gone()` holds.
fn eventually(what: &str, mut gone: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// In the child process: servers started from a test thread that then ends (only the
/// testkit's spawner thread stays), reported to the parent; then waits to be killed.
fn child() {
    let (memcached, redis, dir) =
        std::thread::spawn(|| (Memcached::start(), Redis::start(), ScratchDir::new("kept")))
            .join()
            .unwrap();
    println!(
        "ready {} {} {} {}",
        memcached.port,
        redis.port,
        dir.path().display(),
        process_dir().display()
    );
    // Blocks until the parent kills this process (or, should the parent die, until its end
    // of the pipe closes).
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop((memcached, redis, dir));
}

#[test]
fn servers_and_directories_go_when_the_test_process_is_killed() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return child();
    }
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "servers_and_directories_go_when_the_test_process_is_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _stdin = process.stdin.take();
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    let ready = loop {
        let line = lines
            .next()
            .expect("the child exited before its servers were ready")
            .unwrap();
        // libtest may have printed "test NAME ... " on the same line.
        if let Some((_, rest)) = line.split_once("ready ") {
            break rest.to_owned();
        }
    };
    let fields: Vec<&str> = ready.split(' ').collect();
    let (memcached, redis) = (fields[0].parse().unwrap(), fields[1].parse().unwrap());
    let (kept, its_dir) = (PathBuf::from(fields[2]), PathBuf::from(fields[3]));
    assert!(
        answers(memcached) && answers(redis),
        "the servers outlive the test thread that started them"
    );
    assert!(kept.is_dir() && its_dir.is_dir());

    // SIGKILL, through the handle of our own child: no Drop, no exit handler runs there.
    process.kill().unwrap();
    process.wait().unwrap();
    eventually("memcached outlived its SIGKILLed test process", || {
        !answers(memcached)
    });
    eventually("redis outlived its SIGKILLed test process", || {
        !answers(redis)
    });
    eventually("the test process's directory outlived it", || {
        !its_dir.exists()
    });
}

#[test]
fn a_dropped_server_is_gone_when_drop_returns() {
    let server = Memcached::start();
    let port = server.port;
    let pid = server.pid().expect("running");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(answers(port));
    drop(server);
    assert!(!answers(port), "the port is closed when drop returns");
}

#[test]
fn freeze_thaw_kill_and_restart_go_to_the_server_only_while_it_runs() {
    let mut server = Memcached::start();
    let stats = |s: &Memcached| -> Option<String> {
        let mut c = TcpStream::connect(s.addr()).ok()?;
        c.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
        c.write_all(b"version\r\n").ok()?;
        let mut reply = [0u8; 64];
        let n = c.read(&mut reply).ok()?;
        Some(String::from_utf8_lossy(&reply[..n]).into_owned())
    };
    assert!(stats(&server).is_some_and(|v| v.starts_with("VERSION")));
    server.freeze();
    assert_eq!(stats(&server), None, "a frozen server answers nothing");
    server.thaw();
    assert!(stats(&server).is_some_and(|v| v.starts_with("VERSION")));

    server.kill();
    assert_eq!(server.pid(), None);
    assert!(!answers(server.port));
    server.kill(); // twice: nothing left to signal
    let frozen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.freeze()));
    assert!(frozen.is_err(), "freezing a killed server is a test bug");

    let port = server.port;
    server.restart();
    assert_eq!(server.port, port, "same port");
    assert!(stats(&server).is_some_and(|v| v.starts_with("VERSION")));
}

#[test]
fn a_sasl_server_offers_plain() {
    let server = Memcached::start_sasl("carol", "pa ss\"w'd");
    assert!(server.pid().is_some());
    // Binary SASL_LIST_MECHS: "PLAIN".
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut request = [0u8; 24];
    request[..2].copy_from_slice(&[0x80, 0x20]);
    c.write_all(&request).unwrap();
    let mut reply = [0u8; 29];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[24..], b"PLAIN");
}

#[test]
fn a_redis_server_can_be_frozen_killed_and_restarted() {
    let mut server = Redis::start_with_password("pw");
    assert_eq!(server.command(&["PING"]).unwrap().trim(), "PONG");
    server.freeze();
    server.thaw();
    assert_eq!(server.command(&["PING"]).unwrap().trim(), "PONG");
    server.kill();
    assert!(!server.is_running());
    assert_eq!(server.command(&["PING"]), None);
    server.restart();
    assert_eq!(server.command(&["PING"]).unwrap().trim(), "PONG");
}
