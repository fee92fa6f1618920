//! Temporary directories of the test process: `$TMPDIR/cachemacro-testkit/<pid>-<nanos>/`.
//!
//! A [`ScratchDir`] is removed when dropped. What is left when the process ends (servers and
//! caches kept in statics are never dropped) goes too, without anyone signalling anything:
//!
//! - at exit: the process directory is handed to a helper
//!   (`setsid sh -c 'cat >/dev/null; rm -rf …'`) that reads a pipe whose only writer is this
//!   process. The kernel closes the pipe when the process ends, whichever way, and the helper
//!   removes the directory and exits;
//! - at the next start: the process directory holds `owner.lock`, `flock`ed by its process
//!   for as long as it lives. A test process starting later removes every directory whose
//!   lock is free (its owner is gone and its helper did not finish, e.g. `kill -9` of both).
//!   Neither needs a PID, so a recycled one fools nothing.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The lock file that says a process directory's owner is alive.
const OWNER_LOCK: &str = "owner.lock";

/// Directories younger than this are never swept: their owner may not have locked them yet.
const SWEEP_AFTER: Duration = Duration::from_secs(60);

struct ProcessDir {
    path: PathBuf,
    /// Held (never dropped) for the `flock` on `owner.lock`.
    _lock: File,
    /// Held (never dropped, never waited for) for the write end of its stdin pipe.
    _cleaner: Option<Child>,
}

/// The directory of this test process (created on first use), removed when the process ends.
pub fn process_dir() -> &'static Path {
    static DIR: OnceLock<ProcessDir> = OnceLock::new();
    &DIR.get_or_init(|| {
        let base = std::env::temp_dir().join("cachemacro-testkit");
        fs::create_dir_all(&base)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", base.display()));
        sweep(&base);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let path = base.join(format!("{}-{nanos}", std::process::id()));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        let lock = File::create(path.join(OWNER_LOCK))
            .and_then(|f| f.lock().map(|()| f))
            .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
        ProcessDir {
            _cleaner: remove_at_exit(&path),
            _lock: lock,
            path,
        }
    })
    .path
}

/// Starts the helper that removes `dir` once this process has ended (see the module docs).
/// Its stdin pipe is close-on-exec here, so no server inherits the write end and keeps it
/// open; it holds none of the test's output, so nothing waits for it. It runs in a session
/// of its own: a signal to the test's process group (Ctrl-C, `timeout`) ends the test, and
/// the helper still gets its end of file. Without a helper, the next start's sweep removes
/// the directory.
fn remove_at_exit(dir: &Path) -> Option<Child> {
    Command::new("setsid")
        .args([
            "sh",
            "-c",
            r#"cat >/dev/null; rm -rf -- "$1""#,
            "cachemacro-testkit-cleanup",
        ])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Removes the process directories under `base` whose owner is gone.
fn sweep(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > SWEEP_AFTER);
        let owner_gone = match File::open(path.join(OWNER_LOCK)) {
            Ok(lock) => lock.try_lock().is_ok(),
            Err(_) => true,
        };
        if old && owner_gone {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// A fresh directory inside [`process_dir`], removed (with its contents) when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<process dir>/<label>-<n>`, `n` counting the directories of this process.
    pub fn new(label: &str) -> ScratchDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = process_dir().join(format!("{label}-{n}"));
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        ScratchDir { path }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside it.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
