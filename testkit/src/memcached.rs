//! memcached servers: plain (text and binary protocol), with extra command-line options, or
//! SASL-only with one user of their own; kill, freeze (SIGSTOP), thaw and restart them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{run_helper, start_on_free_port, Launch, ServerProcess, StartFailure};
use crate::scratch::ScratchDir;

/// How long a server may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One memcached server on 127.0.0.1, stopped when dropped.
#[derive(Debug)]
pub struct Memcached {
    /// The loopback port it listens on.
    pub port: u16,
    /// SASL user and password, for a SASL-only server.
    sasl: Option<(String, String)>,
    extra: Vec<String>,
    process: Option<ServerProcess>,
    /// Its log, and for SASL its user database and configuration. Dropped after `process`.
    dir: ScratchDir,
}

impl Memcached {
    /// A plain server (binary and text protocol).
    pub fn start() -> Memcached {
        Memcached::start_with(&[])
    }

    /// A plain server with extra command-line options (e.g. `["-I", "2m"]`).
    pub fn start_with(extra: &[&str]) -> Memcached {
        crate::require("memcached", "memcached");
        Memcached::start_new(None, extra)
    }

    /// A SASL-only server (binary protocol, mechanism PLAIN) that knows one user.
    pub fn start_sasl(user: &str, password: &str) -> Memcached {
        crate::require("memcached", "memcached");
        crate::require("saslpasswd2", "sasl2-bin");
        assert!(
            sasl_plain_installed(),
            "the SASL PLAIN module (libplain.so) is not installed: the SASL tests need it \
             (apt-get install -y libsasl2-modules; scripts/test installs it)"
        );
        Memcached::start_new(Some((user.to_owned(), password.to_owned())), &[])
    }

    fn start_new(sasl: Option<(String, String)>, extra: &[&str]) -> Memcached {
        let mut server = Memcached {
            port: 0,
            sasl,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            process: None,
            dir: ScratchDir::new("memcached"),
        };
        start_on_free_port(|port| {
            server.port = port;
            server.launch()
        });
        server
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref()?.pid()
    }

    fn launch(&mut self) -> Result<(), StartFailure> {
        let mut launch = Launch::new("memcached").log(self.dir.join("memcached.log"));
        if let Some((user, password)) = &self.sasl {
            write_sasl_config(self.dir.path(), user, password);
            // memcached's SASL reads `memcached.conf` in $SASL_CONF_PATH: PLAIN against our
            // own sasldb (Debian's memcached is built without --enable-sasl-pwdb, so
            // MEMCACHED_SASL_PWDB would be ignored).
            launch = launch.arg("-S").env("SASL_CONF_PATH", self.dir.path());
        }
        if crate::running_as_root() {
            // memcached refuses to run as root without it; root also keeps reading the sasldb.
            launch = launch.args(["-u", "root"]);
        }
        let port = self.port.to_string();
        launch = launch
            .args(["-l", "127.0.0.1", "-p", &port, "-U", "0", "-m", "64"])
            .args(&self.extra);
        let process = ServerProcess::spawn(format!("memcached on {}", self.addr()), launch);
        let addr = self.addr();
        let sasl = self.sasl.is_some();
        let ready = process.wait_ready(START_TIMEOUT, |pid| {
            if sasl {
                sasl_mechanisms(&addr).is_some_and(|m| m.split_whitespace().any(|m| m == "PLAIN"))
            } else {
                // Our server, not another process that took the port.
                try_stats(&addr).and_then(|s| s.get("pid").copied()) == Some(u64::from(pid))
            }
        });
        self.process = Some(process);
        ready
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the server again on the same port (its data is gone, as after a real restart).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(failure) = self.launch() {
            panic!("{failure}");
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn freeze(&self) {
        let sent = self.process.as_ref().is_some_and(ServerProcess::freeze);
        assert!(sent, "memcached on {} is not running", self.addr());
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        let sent = self.process.as_ref().is_some_and(ServerProcess::thaw);
        assert!(sent, "memcached on {} is not running", self.addr());
    }

    /// `stats` over the text protocol (plain servers only).
    pub fn stats(&self) -> HashMap<String, u64> {
        try_stats(&self.addr())
            .unwrap_or_else(|| panic!("no stats from memcached on {}", self.addr()))
    }

    /// Stores raw bytes under a raw key (text protocol, plain servers only): what another
    /// client, or an attacker, could leave there.
    pub fn raw_set(&self, key: &str, bytes: &[u8]) {
        let mut s = self.connect(Duration::from_secs(2));
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
        let mut s = self.connect(Duration::from_secs(2));
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

    /// Deletes a raw key (text protocol, plain servers only).
    pub fn raw_delete(&self, key: &str) {
        let mut s = self.connect(Duration::from_secs(2));
        s.write_all(format!("delete {key}\r\n").as_bytes()).unwrap();
        let mut reply = [0u8; 16];
        let _ = s.read(&mut reply).unwrap();
    }

    /// Every key on the server (text protocol `lru_crawler metadump`, plain servers only).
    pub fn keys(&self) -> Vec<String> {
        let mut s = self.connect(Duration::from_secs(5));
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

    fn connect(&self, read_timeout: Duration) -> TcpStream {
        let s = TcpStream::connect(self.addr())
            .unwrap_or_else(|e| panic!("connect to memcached on {}: {e}", self.addr()));
        s.set_read_timeout(Some(read_timeout)).unwrap();
        s
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `stats` over the text protocol; `None` if the server does not answer in time.
fn try_stats(addr: &str) -> Option<HashMap<String, u64>> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"stats\r\n").ok()?;
    let mut out = HashMap::new();
    for line in BufReader::new(s).lines() {
        let line = line.ok()?;
        if line == "END" {
            return Some(out);
        }
        let mut parts = line.split_whitespace();
        if let (Some("STAT"), Some(k), Some(v)) = (parts.next(), parts.next(), parts.next()) {
            if let Ok(v) = v.parse() {
                out.insert(k.to_owned(), v);
            }
        }
    }
    None
}

/// The mechanisms a SASL server offers: the value of a binary-protocol SASL_LIST_MECHS
/// (opcode 0x20) response, `None` if it does not answer.
fn sasl_mechanisms(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut request = [0u8; 24];
    request[..2].copy_from_slice(&[0x80, 0x20]);
    s.write_all(&request).ok()?;
    let mut header = [0u8; 24];
    s.read_exact(&mut header).ok()?;
    let status = u16::from_be_bytes([header[6], header[7]]);
    if header[0] != 0x81 || header[1] != 0x20 || status != 0 {
        return None;
    }
    let key_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let extras_len = usize::from(header[4]);
    let body_len = usize::try_from(u32::from_be_bytes([
        header[8], header[9], header[10], header[11],
    ]))
    .ok()?;
    let mut body = vec![0u8; body_len];
    s.read_exact(&mut body).ok()?;
    let value = body.get(extras_len + key_len..)?;
    Some(String::from_utf8_lossy(value).into_owned())
}

/// The user database and SASL configuration of a SASL server, in `dir`: `sasldb2` with
/// `user` (realm: the host name, which memcached passes as the user realm) and
/// `memcached.conf` allowing PLAIN against it.
fn write_sasl_config(dir: &Path, user: &str, password: &str) {
    let db = dir.join("sasldb2");
    let _ = std::fs::remove_file(&db);
    let uname = rustix::system::uname();
    let realm = uname.nodename().to_string_lossy();
    let mut saslpasswd2 = Command::new(crate::require("saslpasswd2", "sasl2-bin"));
    saslpasswd2
        .args(["-p", "-c", "-a", "memcached", "-u", &realm, "-f"])
        .arg(&db)
        .arg(user);
    // `-p`: the password comes on stdin, so it never shows in a process listing.
    run_helper("saslpasswd2", saslpasswd2, password.as_bytes());
    let config = format!("mech_list: plain\nsasldb_path: {}\n", db.display());
    std::fs::write(dir.join("memcached.conf"), config)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", dir.display()));
}

/// Whether Cyrus SASL's PLAIN module is installed (libsasl2-modules).
fn sasl_plain_installed() -> bool {
    let Ok(lib_dirs) = std::fs::read_dir("/usr/lib") else {
        return false;
    };
    lib_dirs.flatten().any(|lib| {
        std::fs::read_dir(lib.path().join("sasl2")).is_ok_and(|modules| {
            modules
                .flatten()
                .any(|m| m.file_name().to_string_lossy().starts_with("libplain.so"))
        })
    })
}
