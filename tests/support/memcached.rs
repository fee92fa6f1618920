//! memcached processes for tests: plain or SASL, on a free loopback port; kill, freeze
//! (SIGSTOP), thaw and restart them. Each one has a shell watchdog that stops it if the test
//! process dies first, so no server outlives its test run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails the test with a clear message when a server binary is missing.
pub fn require(binary: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{binary}` is not installed: these tests need real servers \
         (apt-get install -y {package}; scripts/test installs them)"
    );
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A shell loop that ends when process `pid` has exited (a zombie counts as exited: nobody
/// may reap it while we wait).
pub fn wait_for_exit(pid: u32) -> String {
    format!(
        "while kill -0 {pid} 2>/dev/null && [ \"$(cut -d' ' -f3 /proc/{pid}/stat 2>/dev/null)\" != Z ]; do sleep 0.2; done"
    )
}

/// Removes `dir` when this test process exits (servers kept in statics are never dropped).
pub fn remove_on_exit(dir: &std::path::Path) {
    let _ = Command::new("sh")
        .args([
            "-c",
            &format!(
                "{}; rm -rf '{}'",
                wait_for_exit(std::process::id()),
                dir.display()
            ),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// Stops `pid` when this test process exits, however it exits. The watchdog holds none of the
/// test's output pipes, so a parent reading them is never kept waiting.
pub fn watchdog(pid: u32) {
    let me = std::process::id();
    let _ = Command::new("sh")
        .args([
            "-c",
            &format!("( {} ) & w=$!; while kill -0 $w 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 0.2; done; kill -9 {pid} 2>/dev/null; kill $w 2>/dev/null", wait_for_exit(me)),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// One memcached server.
pub struct Memcached {
    pub port: u16,
    pub pid: u32,
    child: Option<std::process::Child>,
    sasl: Option<(String, String)>,
    extra: Vec<String>,
}

impl Memcached {
    /// A plain (binary and text protocol) server.
    pub fn start() -> Memcached {
        Memcached::start_with(&[])
    }

    /// A plain server with extra command-line options (e.g. `-I 2m`).
    pub fn start_with(extra: &[&str]) -> Memcached {
        require("memcached", "memcached");
        let mut m = Memcached {
            port: free_port(),
            pid: 0,
            child: None,
            sasl: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        m.launch();
        m
    }

    /// A SASL-only server (through `shared/scripts/memcached-sasl.sh`).
    pub fn start_sasl(user: &str, pass: &str) -> Memcached {
        require("memcached", "memcached");
        require("saslpasswd2", "sasl2-bin libsasl2-modules");
        let mut m = Memcached {
            port: free_port(),
            pid: 0,
            child: None,
            sasl: Some((user.into(), pass.into())),
            extra: Vec::new(),
        };
        m.launch();
        m
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        if let Some((user, pass)) = &self.sasl {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/scripts/memcached-sasl.sh");
            assert!(
                script.exists(),
                "{} is missing: the SASL tests need it",
                script.display()
            );
            let sasl_dir = std::env::temp_dir().join(format!("cachemacro-sasl-{}", self.port));
            remove_on_exit(&sasl_dir);
            let out = Command::new("bash")
                .arg(&script)
                .args([&self.port.to_string(), user, pass])
                .env("MEMC_SASL_DIR", &sasl_dir)
                .output()
                .expect("run memcached-sasl.sh");
            assert!(
                out.status.success(),
                "memcached-sasl.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            self.pid = String::from_utf8_lossy(&out.stdout)
                .trim()
                .lines()
                .next()
                .unwrap()
                .parse()
                .unwrap();
        } else {
            let mut args = vec![
                "-l".to_string(),
                "127.0.0.1".into(),
                "-p".into(),
                self.port.to_string(),
                "-U".into(),
                "0".into(),
                "-m".into(),
                "64".into(),
            ];
            if running_as_root() {
                args.extend(["-u".into(), "root".into()]);
            }
            args.extend(self.extra.iter().cloned());
            let child = Command::new("memcached")
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start memcached");
            self.pid = child.id();
            self.child = Some(child);
        }
        watchdog(self.pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr()).is_err() {
            assert!(
                Instant::now() < deadline,
                "memcached on {} did not start",
                self.addr()
            );
            assert!(
                alive(self.pid),
                "memcached on {} exited at start",
                self.addr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        signal(self.pid, "-CONT");
        signal(self.pid, "-KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(self.pid) && Instant::now() < deadline {
            // A zombie still answers `kill -0`; the port closing is what matters.
            if TcpStream::connect(self.addr()).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port (its data is gone, as after a real restart).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn freeze(&self) {
        signal(self.pid, "-STOP");
    }

    pub fn thaw(&self) {
        signal(self.pid, "-CONT");
    }

    /// `stats` over the text protocol (plain servers only).
    pub fn stats(&self) -> HashMap<String, u64> {
        let mut s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"stats\r\n").unwrap();
        let mut out = HashMap::new();
        for line in BufReader::new(s).lines() {
            let line = line.unwrap();
            if line == "END" {
                break;
            }
            let mut parts = line.split_whitespace();
            if let (Some("STAT"), Some(k), Some(v)) = (parts.next(), parts.next(), parts.next()) {
                if let Ok(v) = v.parse() {
                    out.insert(k.to_owned(), v);
                }
            }
        }
        out
    }

    /// Stores raw bytes under a raw key (text protocol, plain servers only): what another
    /// client, or an attacker, could leave there.
    pub fn raw_set(&self, key: &str, bytes: &[u8]) {
        let mut s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(format!("set {key} 0 0 {}\r\n", bytes.len()).as_bytes())
            .unwrap();
        s.write_all(bytes).unwrap();
        s.write_all(b"\r\n").unwrap();
        let mut reply = [0u8; 8];
        let n = s.read(&mut reply).unwrap();
        assert!(
            reply[..n].starts_with(b"STORED"),
            "{:?}",
            String::from_utf8_lossy(&reply[..n])
        );
    }

    /// The raw bytes under a raw key (text protocol, plain servers only).
    pub fn raw_get(&self, key: &str) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(format!("get {key}\r\n").as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let len: usize = line.trim_end().rsplit(' ').next()?.parse().ok()?;
        let mut data = vec![0u8; len + 2];
        r.read_exact(&mut data).unwrap();
        data.truncate(len);
        Some(data)
    }

    /// Deletes a raw key (text protocol).
    pub fn raw_delete(&self, key: &str) {
        let mut s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(format!("delete {key}\r\n").as_bytes()).unwrap();
        let mut reply = [0u8; 16];
        let _ = s.read(&mut reply).unwrap();
    }

    /// Every key on the server (text protocol `lru_crawler metadump`).
    pub fn keys(&self) -> Vec<String> {
        let mut s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"lru_crawler metadump all\r\n").unwrap();
        let mut keys = Vec::new();
        for line in BufReader::new(s).lines() {
            let line = line.unwrap();
            if line == "END" {
                break;
            }
            if let Some(k) = line.strip_prefix("key=").and_then(|r| r.split(' ').next()) {
                keys.push(k.to_owned());
            }
        }
        keys
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.kill();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}
