//! Test support of cachemacro: real memcached and redis servers that the tests, the contract
//! suites (`tests/common`) and the benches start and stop themselves, each on a free loopback
//! port, with its files in a temporary directory of the test process.
//!
//! ```no_run
//! let server = cachemacro_testkit::Memcached::start();
//! println!("memcached on {}", server.addr()); // stopped when `server` is dropped
//! ```
//!
//! Servers are children of one long-lived thread of this crate and run under
//! `setpriv --pdeathsig KILL`, so none outlives its test process, however that process ends
//! (see [`process`]). They are stopped, frozen and thawed only through the
//! [`std::process::Child`] handle the testkit holds: nothing here signals a number it did not
//! get from a live child, let alone 0 or a process group.
//!
//! Linux only: `setpriv` (util-linux) and `flock`.

pub mod memcached;
pub mod process;
pub mod redis;
pub mod scratch;
pub mod timing;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

pub use memcached::Memcached;
pub use redis::{Cluster, Redis};
pub use scratch::ScratchDir;
pub use timing::{round, Round};

/// A loopback port that nothing listened on a moment ago, never the same twice in one test
/// process (so two servers of one process never race for a port). Another process may still
/// take it before a server binds it: the servers' start retries on another port then.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a free loopback port")
            .port();
        if HANDED_OUT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(port)
        {
            return port;
        }
    }
}

/// The full path of an executable `binary`: on `PATH`, or in `/usr/sbin` and `/sbin` (where
/// Debian puts `saslpasswd2`, and which a non-root `PATH` may lack).
pub fn which(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(binary))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Fails the test with a clear message when `binary` is missing: these tests need real
/// servers, which `scripts/test` (through `scripts/install-deps`) installs from `package`.
pub fn require(binary: &str, package: &str) -> PathBuf {
    which(binary).unwrap_or_else(|| {
        panic!(
            "`{binary}` is not installed: these tests need it \
             (apt-get install -y {package}; scripts/test installs it)"
        )
    })
}

/// Whether this process runs as root (memcached then needs `-u root`).
pub(crate) fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}
