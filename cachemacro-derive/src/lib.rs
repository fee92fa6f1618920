//! The `#[memoize]` and `#[cached]` attributes of [cachemacro](https://docs.rs/cachemacro),
//! documented on [`macro@memoize`] and [`macro@cached`]. Use them through `cachemacro`
//! (`use cachemacro::memoize;`): generated code names `::cachemacro::__private` items.
//!
//! The crate is split one step per file: `attr` parses the options, `model` reads the
//! function, `check` matches the two, `place` finds out whether the function sits in an
//! `impl`, `expand` writes the code, and `fallback` what is written instead when something
//! was wrong: the function as written, its helpers with their signatures, and every error
//! found on the way, each pointing at the tokens at fault, so that one mistake is one error.
#![warn(missing_docs, unreachable_pub)]

mod attr;
mod check;
mod expand;
mod fallback;
mod model;
mod place;

use proc_macro::TokenStream;

use attr::{Kind, Options};

/// Caches a function's results by the function and every argument: Flask-Caching's
/// `@cache.memoize`.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use cachemacro::memoize;
///
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// #[memoize(timeout = 50)]
/// fn user_has_membership(user: &str, role: &str) -> bool {
///     RUNS.fetch_add(1, Ordering::Relaxed); // an expensive query
///     user == "demo" && role == "admin"
/// }
///
/// fn main() -> Result<(), cachemacro::Error> {
///     assert!(user_has_membership("demo", "admin")); // runs the body
///     assert!(user_has_membership("demo", "admin")); // from the cache
///     assert!(!user_has_membership("demo", "guest")); // other arguments: runs the body
///     assert_eq!(RUNS.load(Ordering::Relaxed), 2);
///
///     user_has_membership_delete_memoized("demo", "admin")?; // one argument set
///     user_has_membership_delete_memoized_all()?; // every argument set, in every process
///     Ok(())
/// }
/// ```
///
/// Results go to the process-wide cache (the one given to `cachemacro::init`,
/// in memory when `init` was not called) unless the `cache` option names another. A cached
/// function never fails because of its cache: an unreachable backend or an undecodable value
/// is logged and counted in the cache's stats, and the body runs.
///
/// # Options
///
/// All are optional, each at most once, in any order: `#[memoize(timeout = 50, ignore = [db])]`.
/// A misspelled or misplaced option is a compile error on it that lists the valid ones; a
/// repeated one, an error on the repetition.
///
/// | option | meaning | Flask-Caching |
/// |---|---|---|
/// | [`timeout`](#timeout) | how long results live | `timeout` |
/// | [`cache`](#cache) | the cache to use | the `Cache` object |
/// | [`unless`](#unless) | skip the cache for this call | `unless` |
/// | [`forced_update`](#forced_update) | recompute and overwrite | `forced_update` |
/// | [`response_filter`](#response_filter) | cache only the results it accepts | `response_filter` |
/// | [`cache_none`](#cache_none) | cache `None` too | `cache_none` |
/// | [`ignore`](#ignore) | arguments left out of the key | `args_to_ignore` |
/// | [`make_name`](#make_name) | rename the function in its keys | `make_name` |
/// | [`source_check`](#source_check) | a changed body invalidates old results | `source_check` |
/// | [`crate`](#crate) | where `cachemacro` is | |
///
/// ## `timeout`
///
/// An integer is seconds, `0` meaning never expires; any other expression is converted with
/// `Timeout::from` (a `Duration`, a `Timeout`). Without it, the cache's default timeout
/// (`CACHE_DEFAULT_TIMEOUT`, 300 seconds unless configured).
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
///
/// use cachemacro::memoize;
///
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// #[memoize(timeout = 3600)]
/// fn hourly(day: u32) -> u32 {
///     day
/// }
///
/// #[memoize(timeout = Duration::from_millis(100))]
/// fn brief(a: u32) -> usize {
///     RUNS.fetch_add(1, Ordering::Relaxed) + a as usize
/// }
///
/// fn main() {
///     assert_eq!(hourly(1), 1);
///     assert_eq!(brief(0), 0);
///     assert_eq!(brief(0), 0, "fresh");
///     std::thread::sleep(Duration::from_millis(200));
///     assert_eq!(brief(0), 1, "expired: the body ran again");
/// }
/// ```
///
/// ## `cache`
///
/// The cache to use: an expression `e` for which `&*e` is a `&Cache`, such as a `static`
/// `LazyLock<Cache>`. Without it, the process-wide cache.
///
/// ```
/// use std::sync::LazyLock;
///
/// use cachemacro::{memoize, Cache};
///
/// static LOCAL: LazyLock<Cache> = LazyLock::new(|| {
///     Cache::builder().simple().threshold(100).build().expect("an in-memory cache")
/// });
///
/// #[memoize(cache = LOCAL)]
/// fn square(a: u64) -> u64 {
///     a * a
/// }
///
/// fn main() -> Result<(), cachemacro::Error> {
///     assert_eq!(square(3), 9);
///     assert!(LOCAL.has(&square_make_cache_key(3))?);
///     assert!(!cachemacro::cache().has(&square_make_cache_key(3))?);
///     Ok(())
/// }
/// ```
///
/// ## `unless`
///
/// A `bool` expression, evaluated at each call with the arguments in scope: `true` runs the
/// body and leaves the cache alone (nothing read, nothing written).
///
/// ```
/// use cachemacro::memoize;
///
/// #[memoize(unless = live)]
/// fn report(day: u32, live: bool) -> String {
///     format!("report for day {day}")
/// }
///
/// fn main() -> Result<(), cachemacro::Error> {
///     report(1, true);
///     assert!(!cachemacro::cache().has(&report_make_cache_key(1, true))?);
///     report(1, false);
///     assert!(cachemacro::cache().has(&report_make_cache_key(1, false))?);
///     Ok(())
/// }
/// ```
///
/// ## `forced_update`
///
/// A `bool` expression: `true` runs the body and overwrites the cached result, which later
/// calls then read. Often paired with `ignore`, so that the forcing argument does not make a
/// key of its own.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// use cachemacro::memoize;
///
/// static PRICE: AtomicU64 = AtomicU64::new(100);
///
/// #[memoize(forced_update = refresh, ignore = [refresh])]
/// fn price(item: u32, refresh: bool) -> u64 {
///     PRICE.fetch_add(1, Ordering::Relaxed) + u64::from(item)
/// }
///
/// fn main() {
///     assert_eq!(price(0, false), 100);
///     assert_eq!(price(0, false), 100, "cached");
///     assert_eq!(price(0, true), 101, "recomputed");
///     assert_eq!(price(0, false), 101, "the overwritten value");
/// }
/// ```
///
/// ## `response_filter`
///
/// A function `fn(&T) -> bool`, `T` being the cached type (see [Return types](#return-types)):
/// a result it returns `false` for is returned but not cached.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use cachemacro::memoize;
///
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// fn found_something(hits: &Vec<u32>) -> bool {
///     !hits.is_empty()
/// }
///
/// #[memoize(response_filter = found_something)]
/// fn search(query: &str) -> Vec<u32> {
///     RUNS.fetch_add(1, Ordering::Relaxed);
///     if query == "rust" { vec![1, 2] } else { Vec::new() }
/// }
///
/// fn main() {
///     search("rust");
///     search("rust");
///     assert_eq!(RUNS.load(Ordering::Relaxed), 1);
///     search("cobol");
///     search("cobol");
///     assert_eq!(RUNS.load(Ordering::Relaxed), 3, "empty results are not cached");
/// }
/// ```
///
/// ## `cache_none`
///
/// `cache_none = true` caches `None` results of a function returning `Option<T>`, which are
/// otherwise recomputed at every call.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use cachemacro::memoize;
///
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// #[memoize(cache_none = true)]
/// fn find_user(id: u32) -> Option<String> {
///     RUNS.fetch_add(1, Ordering::Relaxed);
///     (id == 1).then(|| "admin".to_owned())
/// }
///
/// fn main() {
///     assert_eq!(find_user(2), None);
///     assert_eq!(find_user(2), None);
///     assert_eq!(RUNS.load(Ordering::Relaxed), 1, "`None` came from the cache");
/// }
/// ```
///
/// ## `ignore`
///
/// Arguments left out of the key, which need not be `Hash`: `ignore = [db, trace_id]`
/// (`self` too, for methods). Calls that differ only in them share one result.
///
/// ```
/// use cachemacro::memoize;
///
/// struct Db {
///     url: String,
/// }
///
/// #[memoize(ignore = [db])]
/// fn user_name(db: &Db, id: u32) -> String {
///     format!("user {id} from {}", db.url)
/// }
///
/// fn main() {
///     let (primary, replica) = (Db { url: "primary".into() }, Db { url: "replica".into() });
///     assert_eq!(user_name_make_cache_key(&primary, 7), user_name_make_cache_key(&replica, 7));
///     assert_eq!(user_name(&primary, 7), "user 7 from primary");
///     assert_eq!(user_name(&replica, 7), "user 7 from primary", "the same entry");
/// }
/// ```
///
/// ## `make_name`
///
/// A function `fn(&str) -> String` applied to the function's path before it goes into the
/// keys, for example to start afresh after a change the code does not show.
///
/// ```
/// use cachemacro::memoize;
///
/// fn v2(name: &str) -> String {
///     format!("{name}/v2")
/// }
///
/// #[memoize(make_name = v2)]
/// fn score(player: u32) -> u32 {
///     player * 10
/// }
///
/// fn main() {
///     let key = score_make_cache_key(1);
///     assert!(key.starts_with(&format!("{}::score/v2:", module_path!())), "{key}");
/// }
/// ```
///
/// ## `source_check`
///
/// `source_check = true` makes the body part of the function's identity: after an edit of
/// the body, entries written by the old code are never served, in any process.
///
/// ```
/// use cachemacro::memoize;
///
/// fn same_name(_: &str) -> String {
///     "shared".to_owned()
/// }
///
/// #[memoize(make_name = same_name, source_check = true)]
/// fn old(a: u32) -> u32 {
///     a + 1
/// }
///
/// #[memoize(make_name = same_name, source_check = true)]
/// fn new(a: u32) -> u32 {
///     a + 2
/// }
///
/// fn main() {
///     // One name, two bodies: never the same keys.
///     assert_ne!(old_make_cache_key(1), new_make_cache_key(1));
///     assert_eq!((old(1), new(1)), (2, 3));
/// }
/// ```
///
/// ## `crate`
///
/// `crate = "path"`: where generated code finds `cachemacro`, for a crate that re-exports it
/// under another name. Without it, `::cachemacro`.
///
/// ```
/// mod deps {
///     pub use cachemacro as caching;
/// }
///
/// #[deps::caching::memoize(crate = "crate::deps::caching")]
/// fn double(a: u32) -> u32 {
///     a * 2
/// }
///
/// fn main() {
///     assert_eq!(double(2), 4);
/// }
/// ```
///
/// # Generated helpers
///
/// For `fn f(a: A, b: B) -> R`, next to it, with its visibility, generics and `#[cfg]`s:
///
/// | helper | meaning | Flask-Caching |
/// |---|---|---|
/// | `f_delete_memoized(a, b) -> Result<(), Error>` | drops the result for these arguments | `cache.delete_memoized(f, a, b)` |
/// | `f_delete_memoized_all() -> Result<(), Error>` | drops every result of `f`, in every process sharing the backend, by giving `f` a new version | `cache.delete_memoized(f)` |
/// | `f_delete_memoized_verhash() -> Result<(), Error>` | deletes `f`'s version (which drops every result too) | `cache.delete_memoized_verhash(f)` |
/// | `f_make_cache_key(a, b) -> String` | the key these arguments use, as the cache's own methods take it | `f.make_cache_key(a, b)` |
/// | `f_uncached(a, b) -> R` | the body, without the cache | `f.uncached(a, b)` |
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use cachemacro::memoize;
///
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// #[memoize]
/// fn add(a: u32, b: u32) -> u32 {
///     RUNS.fetch_add(1, Ordering::Relaxed);
///     a + b
/// }
///
/// fn runs() -> usize {
///     RUNS.load(Ordering::Relaxed)
/// }
///
/// fn main() -> Result<(), cachemacro::Error> {
///     (add(1, 2), add(2, 1));
///     assert_eq!(runs(), 2);
///
///     add_delete_memoized(1, 2)?;
///     (add(1, 2), add(2, 1));
///     assert_eq!(runs(), 3, "only (1, 2) ran again");
///
///     add_delete_memoized_all()?;
///     (add(1, 2), add(2, 1));
///     assert_eq!(runs(), 5);
///
///     add_delete_memoized_verhash()?;
///     add(1, 2);
///     assert_eq!(runs(), 6);
///
///     assert!(cachemacro::cache().has(&add_make_cache_key(1, 2))?);
///     assert_eq!(add_uncached(1, 2), 3);
///     assert_eq!(runs(), 7, "the body ran, the cache was not read");
///     Ok(())
/// }
/// ```
///
/// # Keys
///
/// A key is `{function path}:{32 hex digits}`, for example
/// `app::user_has_membership:b565ea160f03abd840fedfc3a8bd8104`. The path is the function's
/// module path and name (`app::Person::has_membership` for a method, with `Self`'s generic
/// arguments; `app::parse<u8>` for an instantiation of a generic function), after
/// `make_name`, cut to 200 bytes; bytes other than printable ASCII (spaces included) become
/// `_`. The digits are
/// a 128-bit hash (XXH3-128, fixed seed) of the full identity (`source_check`'s body
/// included) and of every argument that is not ignored, fed through its `Hash`. Keys are
/// valid memcached keys, and the same in every process running the same build. The cache's
/// own key prefix (`CACHE_KEY_PREFIX`) is added by the backend, under these keys.
///
/// ```
/// use cachemacro::memoize;
///
/// #[memoize]
/// fn add(a: u32, b: u32) -> u32 {
///     a + b
/// }
///
/// fn main() {
///     let key = add_make_cache_key(1, 2);
///     let (path, hash) = key.rsplit_once(':').unwrap();
///     assert_eq!(path, format!("{}::add", module_path!()));
///     assert_eq!(hash.len(), 32);
///     assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
///     assert_ne!(key, add_make_cache_key(2, 1));
/// }
/// ```
///
/// # Return types
///
/// - `Result<T, E>` caches `Ok(T)` only: errors are recomputed at the next call.
/// - `Option<T>` caches `Some(T)` only, unless `cache_none = true`.
/// - Any other type is cached as it is.
///
/// The cached type (`T`, or the whole return type) must be `Serialize + DeserializeOwned +
/// Clone + Send + Sync + 'static`: values are serialized for shared backends, cloned for
/// callers waiting on the same key, and shared between threads. `E` needs nothing. An
/// `impl Trait` return type cannot be cached.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use cachemacro::memoize;
/// use serde::{Deserialize, Serialize};
///
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// struct Profile {
///     name: String,
/// }
///
/// #[memoize]
/// fn profile(id: u32) -> Result<Profile, String> {
///     RUNS.fetch_add(1, Ordering::Relaxed);
///     if id == 0 {
///         return Err("no user 0".to_owned());
///     }
///     Ok(Profile { name: format!("user {id}") })
/// }
///
/// fn main() {
///     assert!(profile(0).is_err());
///     assert!(profile(0).is_err());
///     assert_eq!(RUNS.load(Ordering::Relaxed), 2, "errors are not cached");
///     profile(1).unwrap();
///     profile(1).unwrap();
///     assert_eq!(RUNS.load(Ordering::Relaxed), 3, "`Ok` is");
/// }
/// ```
///
/// A type that lacks one of them is one compile error, on the return type, saying what a
/// cached value needs:
///
/// ```compile_fail,E0277
/// use cachemacro::memoize;
///
/// struct Connection;
///
/// #[memoize]
/// fn connect(url: &str) -> Connection {
///     Connection // error: `Connection` cannot be cached
/// }
/// ```
///
/// # Arguments
///
/// Every argument that is not ignored must be `Hash`, and is fed to the key's hash. Its
/// `Hash` decides which arguments are the same: implement it by hand to choose what
/// identifies an object (what Flask-Caching reads from `__repr__`). Arguments must be plain
/// names (`name: Type`); generic and `impl Trait` arguments are fine, and a generic function
/// keys each instantiation apart (`parse::<u8>` and `parse::<u64>` never share entries).
///
/// # Methods
///
/// On a method, `self` is an argument like the others, and must be `Hash` (or ignored). The
/// helpers are associated functions of the same `impl`; those that take the arguments take
/// `&self` first: `person.f_delete_memoized(7)`, `Person::f_delete_memoized_all()`.
/// Associated functions without `self` work too, and two types' functions of one name never
/// share entries.
///
/// ```
/// use std::hash::{Hash, Hasher};
///
/// use cachemacro::memoize;
///
/// struct Person {
///     id: u64,
///     name: String,
/// }
///
/// // A person is identified by its id, whatever its name.
/// impl Hash for Person {
///     fn hash<H: Hasher>(&self, state: &mut H) {
///         self.id.hash(state);
///     }
/// }
///
/// impl Person {
///     #[memoize(timeout = 50)]
///     fn has_membership(&self, role_id: u32) -> bool {
///         self.id == 1 && role_id == 7
///     }
///
///     #[memoize]
///     fn load(id: u64) -> String {
///         format!("person {id}")
///     }
/// }
///
/// fn main() -> Result<(), cachemacro::Error> {
///     let person = Person { id: 1, name: "Ada".to_owned() };
///     assert!(person.has_membership(7));
///     person.has_membership_delete_memoized(7)?;
///     Person::has_membership_delete_memoized_all()?;
///     let key = person.has_membership_make_cache_key(7);
///     assert!(key.starts_with(&format!("{}::Person::has_membership:", module_path!())));
///     assert!(person.has_membership_uncached(7));
///
///     assert_eq!(Person::load(2), "person 2");
///     Person::load_delete_memoized(2)?;
///     assert_eq!(person.name, "Ada");
///     Ok(())
/// }
/// ```
///
/// # `async fn`
///
/// An `async fn` is cached the same way, and never blocks the runtime: memcached and redis
/// are awaited through their async clients (feature `tokio`), in-process backends are called
/// in place, and other backends that do I/O run on a blocking thread pool. Its helpers are
/// `async` too.
///
/// ```
/// use cachemacro::memoize;
///
/// #[memoize(timeout = 60)]
/// async fn fetch_user(id: u32) -> Result<String, String> {
///     Ok(format!("user{id}"))
/// }
///
/// fn main() -> Result<(), cachemacro::Error> {
///     let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
///     runtime.block_on(async {
///         assert_eq!(fetch_user(1).await.unwrap(), "user1");
///         fetch_user_delete_memoized(1).await?;
///         fetch_user_delete_memoized_all().await?;
///         fetch_user_delete_memoized_verhash().await?;
///         assert!(fetch_user_make_cache_key(1).await.contains("::fetch_user:"));
///         assert_eq!(fetch_user_uncached(1).await.unwrap(), "user1");
///         Ok(())
///     })
/// }
/// ```
///
/// # Mistakes
///
/// A misused attribute is a compile error on the mistake; the function and its helpers are
/// still generated, so calls of them elsewhere add no errors of their own.
///
/// ```compile_fail
/// use cachemacro::memoize;
///
/// #[memoize(timeot = 50)] // error: unknown option `timeot` for #[memoize]; valid options are: …
/// fn add(a: u32, b: u32) -> u32 {
///     a + b
/// }
/// ```
#[proc_macro_attribute]
pub fn memoize(args: TokenStream, item: TokenStream) -> TokenStream {
    run(Kind::Memoize, args.into(), item.into()).into()
}

/// Caches a function's result under one key, by default regardless of its arguments:
/// Flask-Caching's `@cache.cached`.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use cachemacro::cached;
///
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// #[cached(timeout = 50, key_prefix = "all_comments")]
/// fn get_all_comments() -> Vec<String> {
///     RUNS.fetch_add(1, Ordering::Relaxed);
///     vec!["first!".to_owned()]
/// }
///
/// fn main() -> Result<(), cachemacro::Error> {
///     assert_eq!(get_all_comments(), ["first!"]);
///     assert_eq!(get_all_comments(), ["first!"]);
///     assert_eq!(RUNS.load(Ordering::Relaxed), 1);
///
///     cachemacro::cache().delete("all_comments")?; // as Flask's cache.delete
///     get_all_comments();
///     assert_eq!(RUNS.load(Ordering::Relaxed), 2);
///     Ok(())
/// }
/// ```
///
/// Unlike [`macro@memoize`], the entry has no version: the key is exactly the one given, which
/// other code (another language's, a template's) can read or delete. A function with
/// arguments needs a `key` that uses them: with one literal key, every call would get the
/// first call's result, so that is a compile error.
///
/// # The key
///
/// - `key_prefix = "lit"`: the key is the literal (Flask's `key_prefix`).
/// - `key = <expression>`: evaluated at each call with the arguments in scope, into a
///   `String` (`format!("view/{path}")`; anything `Into<String>`).
/// - Neither: the function's path and a hash, as [`macro@memoize`] keys a function without
///   arguments (`app::settings:…`); only for functions without arguments.
///
/// The cache's own key prefix (`CACHE_KEY_PREFIX`) is added by the backend, under these keys.
///
/// ```
/// use cachemacro::cached;
///
/// #[cached(key_prefix = "settings")]
/// fn settings() -> Vec<(String, String)> {
///     vec![("theme".to_owned(), "dark".to_owned())]
/// }
///
/// #[cached(timeout = 5, key = format!("view/{path}"))]
/// fn render(path: &str) -> String {
///     format!("<h1>{path}</h1>")
/// }
///
/// #[cached]
/// fn build_info() -> String {
///     "v1".to_owned()
/// }
///
/// fn main() -> Result<(), cachemacro::Error> {
///     assert_eq!(settings_make_cache_key(), "settings");
///     assert_eq!(render_make_cache_key("/about"), "view//about");
///     render("/about");
///     assert!(cachemacro::cache().has("view//about")?);
///     let key = build_info_make_cache_key();
///     assert!(key.starts_with(&format!("{}::build_info:", module_path!())), "{key}");
///     Ok(())
/// }
/// ```
///
/// # Options
///
/// All optional, each at most once. Besides `key_prefix` and `key`, they are
/// [`macro@memoize`]'s that make sense for one key: `timeout`, `cache`, `unless`,
/// `forced_update`, `response_filter`, `cache_none` and `crate` mean what they mean there
/// (see its [options](macro@memoize#options)), for example:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::LazyLock;
/// use std::time::Duration;
///
/// use cachemacro::{cached, Cache};
///
/// static VIEWS: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().unwrap());
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// fn not_empty(page: &String) -> bool {
///     !page.is_empty()
/// }
///
/// #[cached(
///     key = format!("page/{path}"),
///     timeout = Duration::from_secs(5),
///     cache = VIEWS,
///     unless = path.starts_with("/admin"),
///     forced_update = refresh,
///     response_filter = not_empty,
/// )]
/// fn page(path: &str, refresh: bool) -> String {
///     RUNS.fetch_add(1, Ordering::Relaxed);
///     format!("<p>{path}</p>")
/// }
///
/// #[cached(key_prefix = "motd", cache_none = true)]
/// fn message_of_the_day() -> Option<String> {
///     RUNS.fetch_add(1, Ordering::Relaxed);
///     None
/// }
///
/// #[cached(key_prefix = "answer", crate = "cachemacro")]
/// fn answer() -> u32 {
///     42
/// }
///
/// fn runs() -> usize {
///     RUNS.load(Ordering::Relaxed)
/// }
///
/// fn main() -> Result<(), cachemacro::Error> {
///     page("/a", false);
///     page("/a", false);
///     assert_eq!(runs(), 1);
///     assert!(VIEWS.has("page//a")?, "in the `cache` given");
///     page("/a", true);
///     assert_eq!(runs(), 2, "forced_update");
///     page("/admin", false);
///     assert!(!VIEWS.has("page//admin")?, "unless");
///
///     message_of_the_day();
///     message_of_the_day();
///     assert_eq!(runs(), 4, "cache_none: `None` came from the cache");
///     assert_eq!(answer(), 42);
///     Ok(())
/// }
/// ```
///
/// # Generated helpers
///
/// For `fn g(a: A) -> R`, next to it, with its visibility, generics and `#[cfg]`s (`&self`
/// first for a method, `async` for an `async fn`):
///
/// | helper | meaning |
/// |---|---|
/// | `g_delete_cached(a) -> Result<(), Error>` | drops the cached result (the key these arguments make) |
/// | `g_make_cache_key(a) -> String` | the key |
/// | `g_uncached(a) -> R` | the body, without the cache |
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use cachemacro::cached;
///
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// #[cached(key = format!("user/{id}"))]
/// fn user(id: u32) -> String {
///     RUNS.fetch_add(1, Ordering::Relaxed);
///     format!("user {id}")
/// }
///
/// fn main() -> Result<(), cachemacro::Error> {
///     user(1);
///     user_delete_cached(1)?;
///     user(1);
///     assert_eq!(RUNS.load(Ordering::Relaxed), 2);
///     assert_eq!(user_make_cache_key(1), "user/1");
///     assert_eq!(user_uncached(1), "user 1");
///     assert_eq!(RUNS.load(Ordering::Relaxed), 3);
///     Ok(())
/// }
/// ```
///
/// # Return types, methods and `async fn`
///
/// As for [`macro@memoize`]: `Result` caches `Ok` only, `Option` caches `Some` only unless
/// `cache_none = true`, and the cached type must be `Serialize + DeserializeOwned + Clone +
/// Send + Sync + 'static` ([details](macro@memoize#return-types)); methods and `async fn`
/// work, with helpers that take `&self` first and are `async`.
///
/// ```
/// use cachemacro::cached;
///
/// struct Site {
///     name: &'static str,
/// }
///
/// impl Site {
///     #[cached(key = format!("home/{}", self.name))]
///     async fn home(&self) -> Result<String, String> {
///         Ok(format!("<h1>{}</h1>", self.name))
///     }
/// }
///
/// fn main() -> Result<(), cachemacro::Error> {
///     let site = Site { name: "docs" };
///     let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
///     runtime.block_on(async {
///         assert_eq!(site.home().await.unwrap(), "<h1>docs</h1>");
///         assert_eq!(site.home_make_cache_key().await, "home/docs");
///         site.home_delete_cached().await?;
///         assert_eq!(site.home_uncached().await.unwrap(), "<h1>docs</h1>");
///         Ok(())
///     })
/// }
/// ```
///
/// # Mistakes
///
/// As for [`macro@memoize`], one compile error per mistake, on the mistake:
///
/// ```compile_fail
/// use cachemacro::cached;
///
/// #[cached(key_prefix = "users")] // error: `users` has arguments, but `key_prefix` is one literal key …
/// fn users(page: u32) -> Vec<u32> {
///     vec![page]
/// }
/// ```
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    run(Kind::Cached, args.into(), item.into()).into()
}

fn run(
    kind: Kind,
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("#[{}] applies to functions and methods: {e}", kind.name());
            let err = syn::Error::new(e.span(), msg).to_compile_error();
            return quote::quote!(#item #err);
        }
    };
    let mut errors = Vec::new();
    let opts = Options::parse(kind, args, &mut errors);
    let model = model::Func::new(func.clone(), &mut errors);
    check::check(&opts, &model, &mut errors);
    let place = place::placement(&func);
    match errors.into_iter().reduce(|mut a, b| {
        a.combine(b);
        a
    }) {
        None => expand::expand(&opts, &model, place),
        Some(errors) => fallback::fallback(&opts, &func, place, errors),
    }
}
