//! Where each command goes, and the exchange of a batch in one round trip: every node's
//! commands are written before any reply is read.
//!
//! On a cluster, a key goes to the master of its hash slot in our copy of the slot map. The
//! map is read with `CLUSTER SLOTS` from a node that is not resting, and read again:
//! * when a reply says a slot moved (`MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`): the batch is
//!   then sent once more on the new map;
//! * when a node fails or is resting (at most every 100 ms): a replica the cluster promoted
//!   in place of a dead or frozen master is used as soon as the cluster reports it, while
//!   calls for the failed node's slots fail fast meanwhile.
//!
//! A dead or frozen node therefore costs the calls on its slots one I/O timeout, once, and
//! nothing to the calls on other nodes' slots.

use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ::redis as r;
use r::{ConnectionAddr, RedisError};

use super::node::{is_failure, Node};
use super::slots::{slot, SlotMap};
use super::RedisOptions;
use crate::Error;

/// Commands for one key's node, sent in order; their replies come back in order.
pub(super) struct Unit {
    pub(super) key: Vec<u8>,
    /// Inline for the usual one.
    pub(super) cmds: SmallVec<[r::Cmd; 1]>,
}

impl Unit {
    pub(super) fn one(key: Vec<u8>, cmd: r::Cmd) -> Unit {
        Unit {
            key,
            cmds: smallvec::smallvec![cmd],
        }
    }
}

pub(super) enum Router {
    Single(Arc<Node>),
    Cluster(Box<Cluster>),
}

pub(super) struct Cluster {
    /// How to reach a node: the first URL's settings (password, TLS), any address.
    template: r::ConnectionInfo,
    /// The nodes given in the configuration, tried when no known node answers.
    seeds: Vec<String>,
    nodes: RwLock<HashMap<String, Arc<Node>>>,
    map: RwLock<Arc<SlotMap>>,
    /// When the map was last read.
    refreshed: Mutex<Option<Instant>>,
    /// Set while a reading of the map is under way (one at a time).
    refreshing: AtomicBool,
}

/// A reading of the slot map under way; ends when dropped.
pub(super) struct Refreshing<'a>(&'a AtomicBool);

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Least time between two readings of the slot map, but for a moved slot.
const REFRESH_EVERY: Duration = Duration::from_millis(100);

/// The connection settings of `template` for another `host:port`.
fn info_for(template: &r::ConnectionInfo, addr: &str) -> Option<r::ConnectionInfo> {
    let (host, port) = addr.rsplit_once(':')?;
    let (host, port) = (host.to_owned(), port.parse().ok()?);
    let addr = match template.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    Some(template.clone().set_addr(addr))
}

/// `host:port` of a connection address.
pub(super) fn addr_of(info: &r::ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{host}:{port}")
        }
        other => other.to_string(),
    }
}

/// `CLUSTER SLOTS`.
pub(super) fn slots_cmd() -> r::Cmd {
    let mut cmd = r::cmd("CLUSTER");
    cmd.arg("SLOTS");
    cmd
}

/// Whether a reply says the key lives elsewhere now, or the cluster is reconfiguring.
pub(super) fn redirected(v: &r::Value) -> bool {
    use r::ServerErrorKind as K;
    matches!(v, r::Value::ServerError(e) if matches!(
        e.kind(),
        Some(K::Moved | K::Ask | K::TryAgain | K::ClusterDown | K::MasterDown | K::ReadOnly)
    ))
}

pub(super) fn backend_err(e: &RedisError) -> Error {
    Error::Backend(format!("redis: {e}"))
}

impl Cluster {
    pub(super) fn new(template: r::ConnectionInfo, seeds: Vec<r::ConnectionInfo>) -> Cluster {
        let mut nodes = HashMap::new();
        let mut names = Vec::new();
        for info in seeds {
            let addr = addr_of(&info);
            if let Ok(node) = Node::new(addr.clone(), info) {
                nodes.insert(addr.clone(), Arc::new(node));
                names.push(addr);
            }
        }
        Cluster {
            template,
            seeds: names,
            nodes: RwLock::new(nodes),
            map: RwLock::new(Arc::default()),
            refreshed: Mutex::new(None),
            refreshing: AtomicBool::new(false),
        }
    }

    pub(super) fn node(&self, addr: &str) -> Option<Arc<Node>> {
        if let Some(n) = self
            .nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(addr)
        {
            return Some(n.clone());
        }
        let info = info_for(&self.template, addr)?;
        let node = Arc::new(Node::new(addr.to_owned(), info).ok()?);
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        Some(nodes.entry(addr.to_owned()).or_insert(node).clone())
    }

    /// Starts a reading of the slot map, unless one is under way or, `force` aside, one
    /// was made in the last [`REFRESH_EVERY`]; the nodes to ask, in order: known masters
    /// first, then the configured seeds, without the resting ones.
    pub(super) fn begin_refresh(&self, force: bool) -> Option<(Refreshing<'_>, Vec<Arc<Node>>)> {
        if self.refreshing.swap(true, Ordering::SeqCst) {
            return None; // another caller is reading it
        }
        let guard = Refreshing(&self.refreshing);
        {
            let mut last = self
                .refreshed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !force && last.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let known: Vec<String> = {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            map.masters().into_iter().map(str::to_owned).collect()
        };
        let mut tried: Vec<&str> = Vec::new();
        let mut candidates = Vec::new();
        for addr in known.iter().chain(&self.seeds) {
            if tried.contains(&addr.as_str()) {
                continue;
            }
            tried.push(addr);
            if let Some(node) = self.node(addr).filter(|n| n.available()) {
                candidates.push(node);
            }
        }
        Some((guard, candidates))
    }

    /// Takes the map from a `CLUSTER SLOTS` reply of `node`; whether it was one.
    pub(super) fn install(&self, node: &Node, reply: Option<&r::Value>) -> bool {
        let host = node.addr.rsplit_once(':').map_or("", |(h, _)| h);
        match reply.and_then(|v| SlotMap::parse(v, host)) {
            Some(map) => {
                *self.map.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(map);
                true
            }
            None => false,
        }
    }

    /// Reads the slot map again, from the first node that answers. `force`: even if it was
    /// just read.
    pub(super) fn refresh(&self, opts: &RedisOptions, force: bool) {
        let Some((_reading, candidates)) = self.begin_refresh(force) else {
            return;
        };
        for node in candidates {
            match node.run(opts, &[slots_cmd()]) {
                Ok(replies) => {
                    if self.install(&node, replies.first()) {
                        return;
                    }
                }
                Err(e) if is_failure(&e) => node.failed(opts, &e),
                Err(_) => {}
            }
        }
        tracing::warn!(target: "cachemacro", "no redis cluster node answered CLUSTER SLOTS");
    }

    /// The master of `key`'s slot in the current map.
    pub(super) fn master_of(&self, key: &[u8]) -> Option<Arc<Node>> {
        let s = slot(key);
        let addr = {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            map.master(s).map(str::to_owned)
        }?;
        self.node(&addr)
    }

    /// Whether the map has no master at all yet.
    pub(super) fn is_empty(&self) -> bool {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .masters()
            .is_empty()
    }

    /// Every master in the current map.
    pub(super) fn current_masters(&self) -> Vec<Arc<Node>> {
        let map = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        map.masters()
            .into_iter()
            .filter_map(|a| self.node(a))
            .collect()
    }

    /// The master of `key`'s slot, reading the map first if it has none for it.
    fn master_for(&self, opts: &RedisOptions, key: &[u8]) -> Option<Arc<Node>> {
        if let Some(node) = self.master_of(key) {
            return Some(node);
        }
        self.refresh(opts, true);
        self.master_of(key)
    }
}

impl Router {
    /// Every master: the one server, or the cluster's masters in the current map.
    pub(super) fn masters(&self, opts: &RedisOptions) -> Vec<Arc<Node>> {
        match self {
            Router::Single(n) => vec![n.clone()],
            Router::Cluster(c) => {
                if c.is_empty() {
                    c.refresh(opts, true);
                }
                c.current_masters()
            }
        }
    }

    /// Sends every unit to its node (each node's batch written before any reply is read:
    /// one round trip) and returns the replies, unit by unit. A batch that meets a moved
    /// slot is sent once more on a fresh map.
    pub(super) fn exec(
        &self,
        opts: &RedisOptions,
        units: &[Unit],
    ) -> Result<Vec<Vec<r::Value>>, Error> {
        let mut out = self.exec_once(opts, units)?;
        if let Router::Cluster(c) = self {
            if out.iter().flatten().any(redirected) {
                c.refresh(opts, true);
                out = self.exec_once(opts, units)?;
            }
        }
        Ok(out)
    }

    fn exec_once(&self, opts: &RedisOptions, units: &[Unit]) -> Result<Vec<Vec<r::Value>>, Error> {
        let batches = group(units, |key| match self {
            Router::Single(n) => Some(n.clone()),
            Router::Cluster(c) => c.master_for(opts, key),
        })?;
        let mut failure = None;
        let mut sent = Vec::with_capacity(batches.len());
        for (node, members) in &batches {
            if !node.available() {
                failure.get_or_insert_with(|| {
                    Error::Backend(format!(
                        "redis {} failed recently; retried after {:?}",
                        node.addr, opts.retry_timeout
                    ))
                });
                sent.push(None);
                continue;
            }
            let cmds: Vec<&r::Cmd> = members.iter().flat_map(|&i| &units[i].cmds).collect();
            let packed: Vec<u8> = cmds.iter().flat_map(|c| c.get_packed_command()).collect();
            match node.send(opts, &packed, cmds.len()) {
                Ok(s) => sent.push(Some((s, packed))),
                Err(e) => {
                    if is_failure(&e) {
                        node.failed(opts, &e);
                    }
                    failure.get_or_insert(backend_err(&e));
                    sent.push(None);
                }
            }
        }
        let mut out: Vec<Vec<r::Value>> = units.iter().map(|_| Vec::new()).collect();
        for ((node, members), slot) in batches.iter().zip(sent) {
            let Some((s, packed)) = slot else { continue };
            match node.receive(opts, s, &packed) {
                Ok(replies) => {
                    let mut replies = replies.into_iter();
                    for &i in members {
                        out[i] = replies.by_ref().take(units[i].cmds.len()).collect();
                    }
                }
                Err(e) => {
                    if is_failure(&e) {
                        node.failed(opts, &e);
                    }
                    failure.get_or_insert(backend_err(&e));
                }
            }
        }
        match failure {
            Some(e) => {
                // A promoted replica may serve the failed node's slots by now.
                if let Router::Cluster(c) = self {
                    c.refresh(opts, false);
                }
                Err(e)
            }
            None => Ok(out),
        }
    }
}

/// Units (by index) for each node.
pub(super) type Grouped = Vec<(Arc<Node>, Vec<usize>)>;

/// Units grouped by the node `node_of` their key, in first-seen order.
pub(super) fn group(
    units: &[Unit],
    node_of: impl Fn(&[u8]) -> Option<Arc<Node>>,
) -> Result<Grouped, Error> {
    let mut batches: Vec<(Arc<Node>, Vec<usize>)> = Vec::new();
    for (i, unit) in units.iter().enumerate() {
        let node = node_of(&unit.key).ok_or_else(|| {
            Error::Backend("redis: no cluster node serves this key's slot".into())
        })?;
        match batches.iter_mut().find(|(n, _)| Arc::ptr_eq(n, &node)) {
            Some((_, members)) => members.push(i),
            None => batches.push((node, vec![i])),
        }
    }
    Ok(batches)
}
