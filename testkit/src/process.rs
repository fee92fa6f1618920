//! Server processes, the one place the testkit starts and signals anything.
//!
//! # No server outlives its test process
//!
//! Every server runs as `setpriv --pdeathsig KILL -- SERVER ARGS…`: `setpriv` asks the kernel
//! (`PR_SET_PDEATHSIG`) to SIGKILL it when its parent dies, then execs the server, which keeps
//! that setting. The kernel's "parent" is the *thread* that forked it, so servers are forked
//! by one thread of the testkit that never returns (the spawner, started on first use): a
//! test's own thread, which ends with the test, would take its servers with it. The signal
//! comes from the kernel when the test process ends, however it ends (a panic, `exit`,
//! SIGKILL): no watcher process, no polling of a PID that may have been recycled.
//!
//! # Signals go through the `Child` handle only
//!
//! A server is held as a [`Child`]: killed with [`Child::kill`] and reaped with
//! [`Child::wait`]. SIGSTOP and SIGCONT go to [`Child::id`] only while [`Child::try_wait`]
//! says the child has not exited (checked under the same lock): an unreaped child's PID
//! cannot belong to anyone else, even if the server has just died (a zombie keeps its PID
//! until we reap it). A PID that is not a positive number is never signalled.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// What to run as a server: a program, its arguments and environment, and the file that
/// collects its output (shown when it fails to start).
#[derive(Debug, Clone)]
pub struct Launch {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    log: Option<PathBuf>,
}

impl Launch {
    /// Runs `program` (looked up on `PATH`), with no arguments yet.
    pub fn new(program: impl AsRef<OsStr>) -> Launch {
        Launch {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            log: None,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Launch {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable of the server.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Appends the server's stdout and stderr to `path` (they go to /dev/null otherwise).
    pub fn log(mut self, path: impl Into<PathBuf>) -> Launch {
        self.log = Some(path.into());
        self
    }

    /// The command that runs the server under `setpriv --pdeathsig KILL`.
    fn command(&self) -> io::Result<Command> {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"])
            .arg(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        match &self.log {
            Some(path) => {
                let log = OpenOptions::new().create(true).append(true).open(path)?;
                cmd.stdout(log.try_clone()?).stderr(log);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        Ok(cmd)
    }
}

/// A request to the spawner thread, answered with the started child.
struct SpawnRequest {
    launch: Launch,
    reply: mpsc::SyncSender<io::Result<Child>>,
}

/// The spawner thread's inbox. The thread lives as long as the process (the sender is in a
/// static, never dropped), which is what ties each server's life to the process's.
fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (requests, inbox) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("cachemacro-testkit-spawner".into())
            .spawn(move || {
                for request in inbox {
                    let child = request.launch.command().and_then(|mut c| c.spawn());
                    // The requester waits for the answer; if it is gone, the child is dropped
                    // and dies with the process like any other server.
                    let _ = request.reply.send(child);
                }
            })
            .expect("start the testkit's spawner thread");
        requests
    })
}

/// Why a server did not start.
#[derive(Debug)]
pub struct StartFailure {
    /// It exited because its port was taken (by another process, after [`free_port`]
    /// picked it): worth another try on another port.
    ///
    /// [`free_port`]: crate::free_port
    pub port_taken: bool,
    message: String,
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StartFailure {}

/// Starts a server on a free port: `start(port)` launches it and waits until it is ready. A
/// start that failed because another process took the port meanwhile is retried on
/// another port; any other failure fails the test with the server's log.
pub fn start_on_free_port<T>(mut start: impl FnMut(u16) -> Result<T, StartFailure>) -> T {
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        match start(crate::free_port()) {
            Ok(server) => return server,
            Err(failure) if failure.port_taken && attempt < ATTEMPTS => continue,
            Err(failure) => panic!("{failure}"),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// One server process, held by its [`Child`] handle; killed and reaped when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    log: Option<PathBuf>,
    child: Mutex<Option<Child>>,
}

impl ServerProcess {
    /// Starts `launch` from the spawner thread (see the [module docs](self)); `name` (e.g.
    /// "memcached on 127.0.0.1:11211") is what failure messages call it.
    pub fn spawn(name: impl Into<String>, launch: Launch) -> ServerProcess {
        let name = name.into();
        crate::require("setpriv", "util-linux");
        let log = launch.log.clone();
        let program = launch.program.clone();
        let (reply, answer) = mpsc::sync_channel(1);
        spawner()
            .send(SpawnRequest { launch, reply })
            .expect("the testkit's spawner thread is gone");
        let child = answer
            .recv()
            .expect("the testkit's spawner thread is gone")
            .unwrap_or_else(|e| panic!("cannot start {} ({name}): {e}", program.display()));
        ServerProcess {
            name,
            log,
            child: Mutex::new(Some(child)),
        }
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        // A test that panicked while holding it left a consistent value: the handle.
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The PID of the server while it runs (not yet exited, or exited but not reaped);
    /// `None` once it has exited or been killed.
    pub fn pid(&self) -> Option<u32> {
        let mut child = self.child();
        let child = child.as_mut()?;
        matches!(child.try_wait(), Ok(None)).then(|| child.id())
    }

    /// Whether the server is still running.
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Stops the server (SIGSTOP): it keeps its connections and answers nothing. Returns
    /// whether the signal was sent (`false` once the server has exited).
    pub fn freeze(&self) -> bool {
        // A signal is delivered asynchronously: return once every thread has stopped, so that
        // nothing the test does after `freeze` is still answered.
        self.signal(Signal::STOP) && self.wait_state(|state| state == 'T' || state == 't')
    }

    /// Lets a frozen server run again (SIGCONT). Returns whether the signal was sent.
    pub fn thaw(&self) -> bool {
        self.signal(Signal::CONT) && self.wait_state(|state| state != 'T' && state != 't')
    }

    /// Asks the server to stop (SIGTERM), as a supervisor would. Returns whether the signal
    /// was sent.
    pub fn terminate(&self) -> bool {
        self.signal(Signal::TERM)
    }

    /// Waits (up to 5 s) until the state of every thread of the process (in
    /// `/proc/PID/task/*/stat`) satisfies `done`.
    fn wait_state(&self, done: impl Fn(char) -> bool) -> bool {
        let Some(pid) = self.pid() else { return false };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let states = || -> Option<Vec<char>> {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .ok()?
                .map(|task| {
                    let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
                    // The state follows the parenthesized command name.
                    stat.rsplit_once(") ")?.1.chars().next()
                })
                .collect()
        };
        loop {
            match states() {
                Some(states) if states.iter().all(|&s| done(s)) => return true,
                None => return false,
                Some(_) if std::time::Instant::now() > deadline => return false,
                Some(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
    }

    /// Sends `signal` to the child, only if it has not exited (see the [module docs](self)).
    fn signal(&self, signal: Signal) -> bool {
        let mut child = self.child();
        let Some(child) = child.as_mut() else {
            return false;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        // The lock is held from `try_wait` to the signal: nobody can reap the child between.
        match i32::try_from(child.id()).ok().filter(|&raw| raw > 0) {
            Some(raw) => Pid::from_raw(raw).is_some_and(|pid| kill_process(pid, signal).is_ok()),
            None => false,
        }
    }

    /// Kills the server (SIGKILL, which also ends a frozen one) and waits until it has exited,
    /// so its port is closed when this returns. Does nothing once it has been killed.
    pub fn kill(&self) {
        if let Some(mut child) = self.child().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until `ready(pid)` holds, checking every 20 ms that the server still runs.
    /// Fails with the server's log when it exits first or is not ready within `timeout`.
    pub fn wait_ready(
        &self,
        timeout: Duration,
        mut ready: impl FnMut(u32) -> bool,
    ) -> Result<(), StartFailure> {
        let deadline = Instant::now() + timeout;
        loop {
            let pid = {
                let mut child = self.child();
                let Some(child) = child.as_mut() else {
                    return Err(self.failure("was killed while starting".into()));
                };
                match child.try_wait() {
                    Ok(None) => child.id(),
                    Ok(Some(status)) => return Err(self.exited(status)),
                    Err(e) => return Err(self.failure(format!("cannot be waited for: {e}"))),
                }
            };
            if ready(pid) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.failure(format!("did not become ready within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn exited(&self, status: ExitStatus) -> StartFailure {
        let log = self.log_text();
        StartFailure {
            port_taken: log.contains("already in use"),
            message: self.message(&format!("exited at start ({status})"), &log),
        }
    }

    fn failure(&self, what: String) -> StartFailure {
        StartFailure {
            port_taken: false,
            message: self.message(&what, &self.log_text()),
        }
    }

    fn message(&self, what: &str, log: &str) -> String {
        match &self.log {
            Some(path) if !log.trim().is_empty() => {
                format!(
                    "{} {what}; {}:\n{}",
                    self.name,
                    path.display(),
                    log.trim_end()
                )
            }
            _ => format!("{} {what}", self.name),
        }
    }

    fn log_text(&self) -> String {
        self.log.as_deref().map(read_lossy).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Runs a short helper (`openssl`, `saslpasswd2`, `redis-cli`) to completion, feeding it
/// `stdin`; fails the test with its output when it fails.
pub fn run_helper(what: &str, mut command: Command, stdin: &[u8]) -> String {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin)
            .unwrap_or_else(|e| panic!("cannot feed {what}: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{what} did not finish: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
