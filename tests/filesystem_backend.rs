//! The filesystem backend: path safety, atomic writes, foreign files, the threshold across
//! processes, and several processes writing and reading one directory at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cachemacro::backends::filesystem::FilesystemBackend;
use cachemacro::{Backend, Cache, Value};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("cachemacro-fstest-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn entry_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

#[test]
fn no_key_can_name_a_path_outside_the_directory() {
    let root = TempDir::new("paths");
    let dir = root.0.join("cache");
    let cache = Cache::builder().filesystem(&dir).build().unwrap();
    let long = "k".repeat(10_000);
    let keys = [
        "../../etc/passwd",
        "/etc/passwd",
        "a/b/c",
        "nul\0byte",
        "..",
        ".",
        "",
        long.as_str(),
        "ключ",
    ];
    for k in keys {
        cache.set(k, &k.len(), 60).unwrap();
        assert_eq!(cache.get::<usize>(k).unwrap(), Some(k.len()), "{k:?}");
    }
    let files = entry_files(&dir);
    assert_eq!(files.len(), keys.len());
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&root.0).unwrap().count(),
        1,
        "nothing written beside the directory"
    );
}

#[test]
fn torn_and_foreign_files_are_misses() {
    let root = TempDir::new("foreign");
    let cache = Cache::builder().filesystem(&root.0).build().unwrap();
    cache.set("a", &"value a".to_owned(), 60).unwrap();
    let file_a = entry_files(&root.0).pop().unwrap();
    let good = std::fs::read(&file_a).unwrap();

    std::fs::write(&file_a, &good[..good.len() / 2]).unwrap();
    assert_eq!(cache.get::<String>("a").unwrap(), None, "torn");
    std::fs::write(&file_a, b"some other program's file").unwrap();
    assert_eq!(cache.get::<String>("a").unwrap(), None, "foreign");
    std::fs::write(&file_a, []).unwrap();
    assert_eq!(cache.get::<String>("a").unwrap(), None, "empty");

    // Another key's entry copied over this key's file: the stored key does not match.
    cache.set("b", &"value b".to_owned(), 60).unwrap();
    let file_b = entry_files(&root.0)
        .into_iter()
        .find(|p| *p != file_a)
        .unwrap();
    std::fs::copy(&file_b, &file_a).unwrap();
    assert_eq!(
        cache.get::<String>("a").unwrap(),
        None,
        "another key's entry"
    );
    assert_eq!(
        cache.get::<String>("b").unwrap().as_deref(),
        Some("value b")
    );

    // `clear()` leaves files that are not entries.
    std::fs::write(root.0.join("notes.txt"), b"mine").unwrap();
    cache.clear().unwrap();
    assert!(root.0.join("notes.txt").exists());
    assert_eq!(cache.get::<String>("b").unwrap(), None);
}

#[test]
fn every_backend_method_and_expiry() {
    let root = TempDir::new("methods");
    let b = FilesystemBackend::open(&root.0, 100).unwrap();
    assert!(b.add("k", Value::object(1u8), None).unwrap());
    assert!(!b.add("k", Value::object(2u8), None).unwrap());
    assert_eq!(b.get("k").unwrap().unwrap().decode::<u8>().unwrap(), 1);
    assert_eq!(b.inc("n", 5).unwrap(), 5);
    assert_eq!(b.dec("n", 7).unwrap(), -2);
    b.set(
        "short",
        Value::object(1u8),
        Some(Duration::from_millis(100)),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(b.get("short").unwrap().is_none());
    assert!(
        b.add("short", Value::object(2u8), None).unwrap(),
        "an expired entry can be added again"
    );
    assert_eq!(b.delete_many(&["k", "n", "none"]).unwrap(), 2);
}

#[test]
fn pruning_drops_expired_first_then_the_oldest_never_preferring_never_expiring() {
    let root = TempDir::new("prune");
    let b = FilesystemBackend::open(&root.0, 10).unwrap();
    // Five entries that expire soon, then five that never expire.
    for i in 0..5 {
        b.set(
            &format!("ttl{i}"),
            Value::object(i),
            Some(Duration::from_millis(150)),
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    for i in 0..5 {
        b.set(&format!("never{i}"), Value::object(i), None).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    b.set("new", Value::object(0), None).unwrap();
    assert!(b.len() <= 10);
    for i in 0..5 {
        assert!(
            b.get(&format!("never{i}")).unwrap().is_some(),
            "expired entries went first"
        );
    }

    // Over the threshold with nothing expired: the oldest go, whatever their expiry; newer
    // never-expiring entries are not sacrificed first (cachelib sorts expiry 0 first).
    let root = TempDir::new("prune2");
    let b = FilesystemBackend::open(&root.0, 10).unwrap();
    for i in 0..6 {
        b.set(
            &format!("old{i}"),
            Value::object(i),
            Some(Duration::from_secs(60)),
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    for i in 0..5 {
        b.set(&format!("never{i}"), Value::object(i), None).unwrap();
    }
    assert!(b.len() <= 10, "{}", b.len());
    for i in 0..5 {
        assert!(
            b.get(&format!("never{i}")).unwrap().is_some(),
            "newer never-expiring entry {i} kept"
        );
    }
    assert!(
        (0..6).any(|i| b.get(&format!("old{i}")).unwrap().is_none()),
        "the oldest were pruned"
    );
}

const CHILD_DIR: &str = "CACHEMACRO_FS_CHILD_DIR";
const CHILD_ID: &str = "CACHEMACRO_FS_CHILD_ID";

/// A value that shows whether it was read whole: `len` copies of the writer's id.
fn payload(writer: u8, len: usize) -> Vec<u8> {
    vec![writer; len]
}

fn child_work(dir: &str, id: u8) {
    let cache = Cache::builder()
        .filesystem(dir)
        .threshold(40)
        .build()
        .unwrap();
    for i in 0..400usize {
        let key = format!("k{}", i % 60);
        cache
            .set(&key, &payload(id, 1000 + (i * 37) % 20_000), 60)
            .unwrap();
        for j in 0..3 {
            if let Some(v) = cache
                .get::<Vec<u8>>(&format!("k{}", (i + j * 7) % 60))
                .unwrap()
            {
                let w = v[0];
                assert!(v.iter().all(|&b| b == w), "torn read");
            }
        }
        let _ = cache
            .add(&format!("once{}", i % 10), &payload(id, 10), 60)
            .unwrap();
    }
    // Counters live in a directory of their own, far below its threshold.
    let counters = Cache::builder()
        .filesystem(format!("{dir}-counters"))
        .build()
        .unwrap();
    for _ in 0..200 {
        counters.inc("counter", 1).unwrap();
    }
}

#[test]
fn several_processes_share_one_directory() {
    if let (Ok(dir), Ok(id)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ID)) {
        return child_work(&dir, id.parse().unwrap());
    }
    let root = TempDir::new("multiproc");
    std::fs::create_dir_all(&root.0).unwrap();
    let children: Vec<_> = (1..=4u8)
        .map(|id| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "several_processes_share_one_directory",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR, &root.0)
                .env(CHILD_ID, id.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a writer process failed");
    }
    let counters_dir = TempDir(PathBuf::from(format!("{}-counters", root.0.display())));
    let counters = Cache::builder()
        .filesystem(&counters_dir.0)
        .build()
        .unwrap();
    assert_eq!(
        counters.get::<i64>("counter").unwrap(),
        Some(800),
        "inc is atomic across processes"
    );
    let cache = Cache::builder()
        .filesystem(&root.0)
        .threshold(40)
        .build()
        .unwrap();
    cache.set("last", &1u8, 60).unwrap();
    let files = entry_files(&root.0);
    assert!(
        files.len() <= 40,
        "threshold across processes: {} entries",
        files.len()
    );
    assert!(
        files
            .iter()
            .all(|f| !f.file_name().unwrap().to_string_lossy().starts_with(".tmp")),
        "no temporary file left"
    );
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_cache_is_private_to_its_user_unless_configured() {
    let root = TempDir::new("modes");
    let dir = root.0.join("a").join("cache");
    let cache = Cache::builder().filesystem(&dir).build().unwrap();
    cache.set("session:1", &"secret", 0).unwrap();
    cache.inc("n", 1).unwrap(); // takes the lock file
    assert_eq!(mode(&dir), 0o700, "the directory it created");
    assert_eq!(mode(&root.0.join("a")), 0o700, "and its parents");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }

    // Shared with a group, as configured (the umask may only take bits away).
    let shared = root.0.join("shared");
    let cache = Cache::builder()
        .filesystem(&shared)
        .filesystem_mode(0o640)
        .build()
        .unwrap();
    cache.set("k", &1u32, 0).unwrap();
    assert_eq!(mode(&shared) & 0o007, 0, "no access for others");
    for f in entry_files(&shared) {
        assert_eq!(mode(&f) & !0o640, 0, "{}", f.display());
        assert_eq!(mode(&f) & 0o600, 0o600);
    }
}
