//! redis-server processes for tests: standalone (optionally with a password) or a 3-master
//! cluster, on free loopback ports; kill, freeze, thaw and restart them. A shell watchdog
//! stops each one if the test process dies first.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::memcached::{free_port, remove_on_exit, require, watchdog};

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// One redis-server.
pub struct Redis {
    pub port: u16,
    pub password: Option<String>,
    cluster: bool,
    tls: bool,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::launch_new(None, false)
    }

    pub fn start_with_password(password: &str) -> Redis {
        Redis::launch_new(Some(password.to_owned()), false)
    }

    /// A TLS-only server with a self-signed certificate for 127.0.0.1.
    pub fn start_tls() -> Redis {
        Redis::launch_with(None, false, true)
    }

    fn launch_new(password: Option<String>, cluster: bool) -> Redis {
        Redis::launch_with(password, cluster, false)
    }

    fn launch_with(password: Option<String>, cluster: bool, tls: bool) -> Redis {
        require("redis-server", "redis-server");
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("cachemacro-redis-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        remove_on_exit(&dir);
        if tls {
            require("openssl", "openssl");
            let ok = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                ])
                .args([
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                ])
                .arg("-keyout")
                .arg(dir.join("key.pem"))
                .arg("-out")
                .arg(dir.join("cert.pem"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "openssl could not make a test certificate");
        }
        let mut r = Redis {
            port,
            password,
            cluster,
            tls,
            dir,
            child: None,
        };
        r.launch();
        r
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn launch(&mut self) {
        let (plain, tls) = if self.tls {
            (0, self.port)
        } else {
            (self.port, 0)
        };
        let mut args: Vec<String> = vec![
            "--port".into(),
            plain.to_string(),
            "--tls-port".into(),
            tls.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            self.dir.display().to_string(),
        ];
        if let Some(p) = &self.password {
            args.extend(["--requirepass".into(), p.clone()]);
        }
        if self.tls {
            args.extend([
                "--tls-cert-file".into(),
                self.dir.join("cert.pem").display().to_string(),
                "--tls-key-file".into(),
                self.dir.join("key.pem").display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ]);
        }
        if self.cluster {
            args.extend([
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                "nodes.conf".into(),
                "--cluster-node-timeout".into(),
                "1000".into(),
                "--cluster-require-full-coverage".into(),
                "no".into(),
            ]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        watchdog(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self
            .command(&["PING"])
            .is_none_or(|r| !r.contains("PONG") && !r.contains("NOAUTH"))
        {
            assert!(
                Instant::now() < deadline,
                "redis on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One command through redis-cli; its output, `None` if the server did not answer.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.tls {
            cmd.args(["--tls", "--insecure"]);
        }
        if let Some(p) = &self.password {
            cmd.args(["--no-auth-warning", "-a", p]);
        }
        let out = cmd.args(args).stderr(Stdio::null()).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.contains("Could not connect")).then_some(text)
    }

    /// `INFO commandstats` calls of one command.
    pub fn calls(&self, command: &str) -> u64 {
        let info = self.command(&["INFO", "commandstats"]).unwrap_or_default();
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    pub fn dbsize(&self) -> u64 {
        self.command(&["DBSIZE"])
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "-CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills and starts again on the same port (a cluster node keeps its nodes.conf).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn freeze(&self) {
        signal(self.pid(), "-STOP");
    }

    pub fn thaw(&self) {
        signal(self.pid(), "-CONT");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster of three masters, no replicas, on loopback.
pub struct Cluster {
    pub nodes: Vec<Redis>,
}

impl Cluster {
    pub fn start() -> Cluster {
        require("redis-cli", "redis-tools");
        let nodes: Vec<Redis> = (0..3).map(|_| Redis::launch_new(None, true)).collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = Cluster { nodes };
        c.wait_ok();
        c
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Redis::url).collect()
    }

    /// Waits until every live node reports the cluster healthy.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                n.command(&["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[allow(dead_code)]
fn raw(port: u16, line: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut out = String::new();
    r.read_line(&mut out).unwrap();
    out
}
