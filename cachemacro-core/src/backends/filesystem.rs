//! `CACHE_TYPE=filesystem`: one file per key under `CACHE_DIR`, shared by every process that
//! opens the same directory.
//!
//! - A file's name is the 128-bit hash of its key in hex, so no key ("../../etc/passwd", NUL
//!   bytes, 10 kB keys) can name a path outside the directory. The file holds the key too, so
//!   a file of another key or of another program is a miss.
//! - Writes go to a temporary file in the same directory, renamed over the entry: readers see
//!   the old file or the new one, never a torn one. `add` links the temporary file into place,
//!   which fails if the entry exists: atomic across processes.
//! - `inc`/`dec` and pruning take an exclusive lock on the directory's lock file.
//! - `threshold` bounds the entries of every process together: past it, a write prunes expired
//!   entries first, then the oldest written, down to nine tenths of the threshold. Entries
//!   that never expire are not preferred for eviction (cachelib's sort evicts them first).
//!   Each process looks at the directory at least every `threshold / 20` of its writes, so
//!   other processes can take it past the threshold by that much between looks.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use xxhash_rust::xxh3::xxh3_128;

use crate::{Backend, Error, Value};

const MAGIC: &[u8; 6] = b"CMFS1\0";
const HEADER: usize = MAGIC.len() + 8 + 4;
const LOCK_FILE: &str = ".cachemacro.lock";

/// The filesystem backend.
pub struct FilesystemBackend {
    dir: PathBuf,
    threshold: usize,
    /// Permissions of the files written (before the umask).
    mode: u32,
    /// Entries counted at the last look at the directory (`usize::MAX`: not looked yet).
    known: AtomicUsize,
    /// Writes of this process since then.
    since: AtomicUsize,
}

/// The permissions of cache files unless configured: this user only (as cachelib's
/// `FileSystemCache` writes them).
pub const DEFAULT_MODE: u32 = 0o600;

/// `options` creating files with permissions `mode` (on Unix; elsewhere as they are).
fn with_mode(options: &mut OpenOptions, mode: u32) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Backend(format!("{what} {}: {e}", path.display()))
}

fn now_ms() -> u64 {
    crate::timeout::since_epoch().as_millis() as u64
}

/// A parsed entry file.
struct Entry {
    expires: u64,
    value: Vec<u8>,
}

impl Entry {
    fn live(&self) -> bool {
        self.expires == 0 || self.expires > now_ms()
    }
}

fn entry_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

impl FilesystemBackend {
    /// A cache in `dir` (created if missing, mode 0700) of at most `threshold` entries,
    /// written as files of mode [`DEFAULT_MODE`] (0600): cached values, sessions among them,
    /// are readable by this user only.
    pub fn open(dir: impl Into<PathBuf>, threshold: usize) -> Result<FilesystemBackend, Error> {
        Self::open_with_mode(dir, threshold, DEFAULT_MODE)
    }

    /// As [`FilesystemBackend::open`], with files written with permissions `mode` (before
    /// the process's umask), e.g. `0o640` for a directory shared with a group. Directories
    /// this creates get the same bits, plus search permission where reading is allowed.
    pub fn open_with_mode(
        dir: impl Into<PathBuf>,
        threshold: usize,
        mode: u32,
    ) -> Result<FilesystemBackend, Error> {
        let dir = dir.into();
        if dir.as_os_str().is_empty() {
            return Err(Error::config("CACHE_DIR", "the directory is empty"));
        }
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            // Search permission wherever read permission is given.
            builder.mode(mode | (mode & 0o444) >> 2 | 0o700);
        }
        builder
            .create(&dir)
            .map_err(|e| Error::config("CACHE_DIR", format!("{}: {e}", dir.display())))?;
        let probe = dir.join(LOCK_FILE);
        with_mode(OpenOptions::new().create(true).append(true), mode)
            .open(&probe)
            .map_err(|e| {
                Error::config(
                    "CACHE_DIR",
                    format!("{} is not writable: {e}", dir.display()),
                )
            })?;
        Ok(FilesystemBackend {
            dir,
            mode,
            threshold: threshold.max(1),
            known: AtomicUsize::new(usize::MAX),
            since: AtomicUsize::new(0),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{:032x}", xxh3_128(key.as_bytes())))
    }

    fn encode(key: &str, value: &[u8], ttl: Option<Duration>) -> Vec<u8> {
        let expires = ttl.map_or(0, |t| {
            now_ms().saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1))
        });
        let mut out = Vec::with_capacity(HEADER + key.len() + value.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&expires.to_le_bytes());
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(value);
        out
    }

    /// The entry for `key` at `path`; `None` when absent, not ours, or not for this key.
    fn read(&self, key: Option<&str>, path: &Path) -> Result<Option<Entry>, Error> {
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => f.read_to_end(&mut bytes).map_err(|e| io("read", path, e))?,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("open", path, e)),
        };
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            return Ok(None);
        }
        let expires = u64::from_le_bytes(bytes[6..14].try_into().unwrap_or_default());
        let key_len = u32::from_le_bytes(bytes[14..18].try_into().unwrap_or_default()) as usize;
        let Some(stored_key) = bytes.get(HEADER..HEADER + key_len) else {
            return Ok(None);
        };
        if key.is_some_and(|k| k.as_bytes() != stored_key) {
            return Ok(None);
        }
        let value = bytes[HEADER + key_len..].to_vec();
        Ok(Some(Entry { expires, value }))
    }

    /// A temporary file in the directory holding `contents`.
    fn temp(&self, contents: &[u8]) -> Result<PathBuf, Error> {
        let tmp = self.dir.join(format!(
            ".tmp-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let mut f = with_mode(OpenOptions::new().write(true).create_new(true), self.mode)
            .open(&tmp)
            .map_err(|e| io("create", &tmp, e))?;
        f.write_all(contents).map_err(|e| io("write", &tmp, e))?;
        Ok(tmp)
    }

    fn write(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        let path = self.path(key);
        let tmp = self.temp(&Self::encode(key, value, ttl))?;
        fs::rename(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io("rename", &path, e)
        })?;
        self.prune_if_needed();
        Ok(())
    }

    fn lock(&self) -> Result<File, Error> {
        let path = self.dir.join(LOCK_FILE);
        let f = with_mode(OpenOptions::new().create(true).append(true), self.mode)
            .open(&path)
            .map_err(|e| io("open", &path, e))?;
        f.lock().map_err(|e| io("lock", &path, e))?;
        Ok(f)
    }

    fn entries(&self) -> Vec<PathBuf> {
        fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_str().is_some_and(entry_name))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many entries the directory holds (every process's).
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether the directory holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counting entries lists the directory, so it is done on the first write, every
    /// `threshold / 20` writes (other processes write too), and on every write once this
    /// process's count could pass the threshold.
    fn prune_if_needed(&self) {
        let since = self.since.fetch_add(1, Ordering::Relaxed) + 1;
        let known = self.known.load(Ordering::Relaxed);
        if known != usize::MAX
            && known + since <= self.threshold
            && since < (self.threshold / 20).max(1)
        {
            return;
        }
        self.since.store(0, Ordering::Relaxed);
        let entries = self.entries();
        self.known.store(entries.len(), Ordering::Relaxed);
        if entries.len() <= self.threshold {
            return;
        }
        // One pruner at a time; the others go on (the next write will look again).
        let path = self.dir.join(LOCK_FILE);
        let Ok(lock) =
            with_mode(OpenOptions::new().create(true).append(true), self.mode).open(&path)
        else {
            return;
        };
        if lock.try_lock().is_err() {
            return;
        }
        let target = self.threshold - self.threshold / 10;
        let mut live = Vec::with_capacity(entries.len());
        let mut count = entries.len();
        for p in self.entries() {
            match self.read(None, &p) {
                Ok(Some(e)) if e.live() => {
                    let written = fs::metadata(&p)
                        .and_then(|m| m.modified())
                        .unwrap_or(UNIX_EPOCH);
                    live.push((written, p));
                }
                // Expired, not ours or unreadable: these go first.
                _ => {
                    if fs::remove_file(&p).is_ok() {
                        count -= 1;
                    }
                }
            }
        }
        if count > target {
            live.sort();
            for (_, p) in live.into_iter().take(count - target) {
                if fs::remove_file(p).is_ok() {
                    count -= 1;
                }
            }
        }
        self.known.store(count, Ordering::Relaxed);
    }

    fn counter(&self, key: &str, delta: i64) -> Result<i64, Error> {
        let _lock = self.lock()?;
        let path = self.path(key);
        let (current, expires) = match self.read(Some(key), &path)? {
            Some(e) if e.live() => {
                let n = Value::from_bytes(e.value)
                    .as_i64()
                    .ok_or_else(|| Error::NotANumber(key.to_owned()))?;
                (n, e.expires)
            }
            _ => (0, 0),
        };
        let n = current
            .checked_add(delta)
            .ok_or_else(|| Error::NotANumber(key.to_owned()))?;
        let ttl =
            (expires != 0).then(|| Duration::from_millis(expires.saturating_sub(now_ms()).max(1)));
        self.write(key, &Value::int(n).to_bytes()?, ttl)?;
        Ok(n)
    }
}

impl Backend for FilesystemBackend {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        Ok(self
            .read(Some(key), &self.path(key))?
            .filter(Entry::live)
            .map(|e| Value::from_bytes(e.value)))
    }

    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), Error> {
        self.write(key, &value.to_bytes()?, ttl)
    }

    fn add(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<bool, Error> {
        let path = self.path(key);
        let tmp = self.temp(&Self::encode(key, &value.to_bytes()?, ttl))?;
        let result = (|| {
            for _ in 0..2 {
                match fs::hard_link(&tmp, &path) {
                    Ok(()) => return Ok(true),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        // Taken, unless what is there is expired or not an entry of this key.
                        match self.read(Some(key), &path)? {
                            Some(e) if e.live() => return Ok(false),
                            _ => {
                                let _ = fs::remove_file(&path);
                            }
                        }
                    }
                    Err(e) => return Err(io("link", &path, e)),
                }
            }
            Ok(false)
        })();
        let _ = fs::remove_file(&tmp);
        if result == Ok(true) {
            self.prune_if_needed();
        }
        result
    }

    fn set_many(&self, items: &[(&str, Value)], ttl: Option<Duration>) -> Result<(), Error> {
        for (k, v) in items {
            self.set(k, v.clone(), ttl)?;
        }
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<bool, Error> {
        let path = self.path(key);
        let live = self.read(Some(key), &path)?.is_some_and(|e| e.live());
        match fs::remove_file(&path) {
            Ok(()) => Ok(live),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("remove", &path, e)),
        }
    }

    fn delete_many(&self, keys: &[&str]) -> Result<usize, Error> {
        let mut n = 0;
        for k in keys {
            n += usize::from(self.delete(k)?);
        }
        Ok(n)
    }

    fn inc(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.counter(key, delta)
    }

    /// Removes this cache's entry files; other files in the directory stay.
    fn clear(&self) -> Result<(), Error> {
        for p in self.entries() {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &p, e)),
            }
        }
        Ok(())
    }
}
