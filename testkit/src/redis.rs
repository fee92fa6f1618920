//! redis-server processes: standalone (optionally with a password, or TLS-only, or a
//! replica of another), or a 3-master cluster with or without a replica per master, on free
//! loopback ports; kill, freeze (SIGSTOP), thaw and restart them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{run_helper, start_on_free_port, Launch, ServerProcess, StartFailure};
use crate::scratch::ScratchDir;

/// How long a server may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One redis-server on 127.0.0.1, stopped when dropped.
#[derive(Debug)]
pub struct Redis {
    /// The loopback port it listens on (its TLS port for a TLS server).
    pub port: u16,
    /// The password it requires, if any.
    pub password: Option<String>,
    cluster: bool,
    tls: bool,
    process: Option<ServerProcess>,
    /// Its working directory (a cluster node's `nodes.conf`), log and TLS certificate.
    /// Dropped after `process`.
    dir: ScratchDir,
}

impl Redis {
    /// A server without a password.
    pub fn start() -> Redis {
        Redis::start_new(None, false, false)
    }

    /// A server that requires `password`.
    pub fn start_with_password(password: &str) -> Redis {
        Redis::start_new(Some(password.to_owned()), false, false)
    }

    /// A TLS-only server with a self-signed certificate for 127.0.0.1.
    pub fn start_tls() -> Redis {
        Redis::start_new(None, false, true)
    }

    fn start_new(password: Option<String>, cluster: bool, tls: bool) -> Redis {
        crate::require("redis-server", "redis-server");
        crate::require("redis-cli", "redis-tools");
        let dir = ScratchDir::new("redis");
        if tls {
            make_certificate(&dir);
        }
        let mut server = Redis {
            port: 0,
            password,
            cluster,
            tls,
            process: None,
            dir,
        };
        start_on_free_port(|port| {
            server.port = port;
            server.launch()
        });
        server
    }

    /// `redis://127.0.0.1:PORT/0`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Its PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref()?.pid()
    }

    /// Whether it runs (not killed).
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    fn launch(&mut self) -> Result<(), StartFailure> {
        let (plain, tls) = if self.tls {
            (0, self.port)
        } else {
            (self.port, 0)
        };
        let mut launch = Launch::new("redis-server")
            .log(self.dir.join("redis.log"))
            .arg("--port")
            .arg(plain.to_string())
            .arg("--tls-port")
            .arg(tls.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if let Some(password) = &self.password {
            launch = launch.arg("--requirepass").arg(password);
        }
        if self.tls {
            launch = launch
                .arg("--tls-cert-file")
                .arg(self.dir.join("cert.pem"))
                .arg("--tls-key-file")
                .arg(self.dir.join("key.pem"))
                .args(["--tls-auth-clients", "no"]);
        }
        if self.cluster {
            launch = launch.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                "--cluster-require-full-coverage",
                "no",
            ]);
        }
        let process = ServerProcess::spawn(format!("redis-server on port {}", self.port), launch);
        let ready = process.wait_ready(START_TIMEOUT, |pid| {
            // Our server, not another process that took the port.
            let id = format!("process_id:{pid}");
            self.command(&["INFO", "server"])
                .is_some_and(|info| info.lines().any(|l| l.trim() == id))
        });
        self.process = Some(process);
        ready
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
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
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

    /// Keys in its database 0.
    pub fn dbsize(&self) -> u64 {
        self.command(&["DBSIZE"])
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Makes this server a replica of `master` and waits until their link is up.
    pub fn replicate(&self, master: &Redis) {
        self.command(&["REPLICAOF", "127.0.0.1", &master.port.to_string()])
            .expect("REPLICAOF");
        let deadline = Instant::now() + START_TIMEOUT;
        while !self
            .command(&["INFO", "replication"])
            .is_some_and(|i| i.contains("master_link_status:up"))
        {
            assert!(Instant::now() < deadline, "the replica did not sync");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The cluster node ID of this node.
    pub fn node_id(&self) -> String {
        self.command(&["CLUSTER", "MYID"])
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    /// Whether this cluster node is a master, as it sees itself.
    pub fn is_master(&self) -> bool {
        self.command(&["ROLE"])
            .is_some_and(|r| r.lines().next() == Some("master"))
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }

    /// Kills and starts again on the same port (a cluster node keeps its nodes.conf).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(failure) = self.launch() {
            panic!("{failure}");
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn freeze(&self) {
        let sent = self.process.as_ref().is_some_and(ServerProcess::freeze);
        assert!(sent, "redis on port {} is not running", self.port);
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        let sent = self.process.as_ref().is_some_and(ServerProcess::thaw);
        assert!(sent, "redis on port {} is not running", self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A self-signed certificate for 127.0.0.1, valid one day: `cert.pem` and `key.pem` in `dir`.
fn make_certificate(dir: &ScratchDir) {
    let mut openssl = Command::new(crate::require("openssl", "openssl"));
    openssl
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
        .arg(dir.join("cert.pem"));
    run_helper("openssl (a test certificate)", openssl, b"");
}

/// A cluster of three masters (with or without one replica each), on loopback. Nodes time
/// out after 1 s (`cluster-node-timeout`): a replica takes over a dead or frozen master a few
/// seconds later.
#[derive(Debug)]
pub struct Cluster {
    /// Its nodes: first the three masters (each a third of the slots), then their replicas.
    pub nodes: Vec<Redis>,
}

impl Cluster {
    /// Starts three nodes, joins them into one cluster and waits until it is healthy.
    pub fn start() -> Cluster {
        Cluster::start_with_replicas(0)
    }

    /// Three masters and `replicas` replicas of each.
    pub fn start_with_replicas(replicas: usize) -> Cluster {
        let nodes: Vec<Redis> = (0..3 * (1 + replicas))
            .map(|_| Redis::start_new(None, true, false))
            .collect();
        let mut create = Command::new("redis-cli");
        create
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        run_helper("redis-cli --cluster create", create, b"");
        let cluster = Cluster { nodes };
        cluster.wait_ok();
        if replicas > 0 {
            cluster.wait_replicas_synced();
        }
        cluster
    }

    /// The node that is master of `key`'s slot now, by index in [`Cluster::nodes`] (every
    /// running node must answer: none may be frozen).
    pub fn master_of(&self, key: &str) -> Option<usize> {
        let any = self.nodes.iter().find(|n| n.is_running())?;
        let slot: u16 = any
            .command(&["CLUSTER", "KEYSLOT", key])?
            .trim()
            .parse()
            .ok()?;
        self.nodes.iter().position(|n| {
            n.is_running()
                && n.command(&["CLUSTER", "NODES"]).is_some_and(|nodes| {
                    nodes
                        .lines()
                        .find(|l| l.contains("myself"))
                        .is_some_and(|me| {
                            me.split(' ').nth(2).is_some_and(|f| f.contains("master"))
                                && serves(me, slot)
                        })
                })
        })
    }

    /// Waits until every replica's link to its master is up.
    pub fn wait_replicas_synced(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in self
            .nodes
            .iter()
            .filter(|n| n.is_running() && !n.is_master())
        {
            while !n
                .command(&["INFO", "replication"])
                .is_some_and(|i| i.contains("master_link_status:up"))
            {
                assert!(Instant::now() < deadline, "a replica did not sync");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Redis::url).collect()
    }

    /// Waits until every running node reports the cluster healthy.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                n.command(&["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the redis cluster did not become ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether a `CLUSTER NODES` line's node serves `slot` (its slot ranges are the fields from
/// the ninth on: `N` or `A-B`).
fn serves(line: &str, slot: u16) -> bool {
    line.split(' ').skip(8).any(|range| {
        let mut ends = range.splitn(2, '-').map(|n| n.parse::<u16>());
        match (ends.next(), ends.next()) {
            (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
            (Some(Ok(a)), None) => a == slot,
            _ => false,
        }
    })
}
