//! Template fragment caching for minijinja: Flask-Caching's `{% cache %}` tag, as a function
//! for minijinja's `{% call %}` blocks.
//!
//! minijinja has no custom tags, but a `{% call f(…) %}…{% endcall %}` block hands its body
//! to the function `f` as a `caller` it may render or not. [`FragmentCache::register`] adds
//! such a function, named `cache`, to an [`Environment`]; a template then caches a fragment
//! the way a Flask template does with `{% cache %}`:
//!
//! | Flask-Caching (Jinja)                                      | cachemacro (minijinja)                                          |
//! |------------------------------------------------------------|-----------------------------------------------------------------|
//! | `{% cache None, 'task', task.id\|string %}…{% endcache %}` | `{% call cache(None, 'task', task.id\|string) %}…{% endcall %}` |
//! | `{% cache 60, 'sidebar' %}…{% endcache %}`                 | `{% call cache(60, 'sidebar') %}…{% endcall %}`                 |
//! | `{% cache 'del', 'sidebar' %}…{% endcache %}`              | `{% call cache('del', 'sidebar') %}…{% endcall %}`              |
//!
//! * The first argument is the timeout: `None` for the cache's default, a whole number of
//!   seconds (`0` = never expires), or `'del'`, which deletes the fragment and renders the
//!   block without storing it. Anything else (a negative number, another string, an undefined
//!   variable) is an error of the template.
//! * The second is the fragment's name, then any number of vary-on values. Each is turned into
//!   a string the way Jinja's `str()` does (minijinja's display form: `7`, `True`, `None`).
//! * The key is [`make_template_fragment_key`]`(name, vary_on)`, byte for byte Flask-Caching's
//!   (`_template_fragment_cache_task_7`), so Rust and Python code on one cache (with the same
//!   key prefix) address, and invalidate, the same fragments: deleting that key from either
//!   side makes both re-render. The stored value is this crate's own encoding, though: a
//!   fragment Python stored is a miss here (rendered and overwritten) and Python cannot read
//!   ours, so let one side render a given fragment name and use the other only to invalidate.
//!
//! Fragments nest (Russian-doll caching): an outer hit serves the inner fragments as they
//! were, an outer miss renders its body, which reads the inner fragments from the cache.
//! A fragment read from the cache is marked safe exactly when the rendered block was (blocks
//! rendered with auto-escaping on are; see [`Value::from_safe_string`]), so cached HTML is not
//! escaped twice and unsafe text is still escaped. An error inside the block is the template's
//! error and nothing is stored. A cache that fails (a server down) is logged and the block is
//! rendered uncached: a page never fails because its cache does.
//!
//! ```
//! use cachemacro_core::fragment::FragmentCache;
//! use cachemacro_core::{make_template_fragment_key, Cache};
//! use minijinja::{context, Environment};
//!
//! let cache = Cache::builder().simple().build()?;
//! let mut env = Environment::new();
//! FragmentCache::new(cache.clone()).register(&mut env);
//! env.add_template(
//!     "task.html",
//!     "{% call cache(None, 'task', task.id|string) %}<b>{{ task.title }}</b>{% endcall %}",
//! )?;
//!
//! let page = env.get_template("task.html")?;
//! let html = page.render(context! { task => context! { id => 7, title => "Ship it" } })?;
//! assert_eq!(html, "<b>Ship it</b>");
//!
//! // Stored under Flask-Caching's key; until it expires or is deleted, the block is not
//! // rendered again.
//! let key = make_template_fragment_key("task", &["7"]);
//! assert_eq!(key, "_template_fragment_cache_task_7");
//! assert!(cache.has(&key)?);
//! let again = page.render(context! { task => context! { id => 7, title => "Changed" } })?;
//! assert_eq!(again, "<b>Ship it</b>");
//!
//! cache.delete(&key)?; // or, from Python: cache.delete(make_template_fragment_key(...))
//! let fresh = page.render(context! { task => context! { id => 7, title => "Changed" } })?;
//! assert_eq!(fresh, "<b>Changed</b>");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Rendering from async code
//!
//! Template functions are synchronous, so the `cache` function reads and writes the cache with
//! blocking calls. With an in-memory cache (`simple`, `null`) these never wait and rendering
//! in place is fine; with a remote one (memcached, redis) or the filesystem, a render waits on
//! the network or the disk and must not run on an async runtime's worker thread. In async
//! handlers, render with [`FragmentCache::render`] rather than
//! `env.get_template(name)?.render(ctx)`: it renders in place when the cache never blocks and
//! on a blocking thread pool otherwise (the [`blocking`](https://docs.rs/blocking) crate's,
//! which works under any runtime).
//!
//! ```
//! use std::sync::Arc;
//!
//! use cachemacro_core::fragment::FragmentCache;
//! use minijinja::{context, Environment};
//!
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     use std::task::{Context, Poll, Waker};
//! #     let mut f = std::pin::pin!(f);
//! #     let mut cx = Context::from_waker(Waker::noop());
//! #     loop {
//! #         if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
//! #             return out;
//! #         }
//! #         std::thread::yield_now();
//! #     }
//! # }
//! # let cache = cachemacro_core::Cache::builder().simple().build()?;
//! // Once, at start-up (`FragmentCache::global()` uses the process-wide cache).
//! let fragments = FragmentCache::new(cache);
//! let mut env = Environment::new();
//! fragments.register(&mut env);
//! env.add_template("hello.html", "{% call cache(60, 'hello', name) %}Hello {{ name }}{% endcall %}")?;
//! let env = Arc::new(env);
//!
//! // In a handler: never blocks the runtime's threads, whatever the backend.
//! # block_on(async {
//! let html = fragments.render(&env, "hello.html", context! { name => "Ann" }).await?;
//! assert_eq!(html, "Hello Ann");
//! # Ok::<(), minijinja::Error>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::sync::Arc;

use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, Value};
use serde::{Deserialize, Serialize};

use crate::{make_template_fragment_key, Cache, Timeout};

/// Template fragment caching: the `cache` function of minijinja templates, over one [`Cache`].
///
/// Cheap to clone (one reference count). See the [module docs](self) for the template syntax.
///
/// ```
/// use cachemacro_core::fragment::FragmentCache;
///
/// let mut env = minijinja::Environment::new();
/// FragmentCache::global().register(&mut env);
/// let html = env.render_str("{% call cache(None, 'nav') %}<nav/>{% endcall %}", ())?;
/// assert_eq!(html, "<nav/>");
/// # Ok::<(), minijinja::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct FragmentCache {
    /// `None`: the process-wide cache, looked up on each use.
    cache: Option<Cache>,
}

/// What is stored for a fragment: the rendered block and whether it was marked safe.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    html: String,
    safe: bool,
}

impl Stored {
    fn of(rendered: &Value) -> Stored {
        Stored {
            html: match rendered.as_str() {
                Some(s) => s.to_owned(),
                None => rendered.to_string(),
            },
            safe: rendered.is_safe(),
        }
    }

    fn into_value(self) -> Value {
        if self.safe {
            Value::from_safe_string(self.html)
        } else {
            Value::from(self.html)
        }
    }
}

/// The first argument of `cache(…)`.
enum Mode {
    /// Read the fragment, else render and store it for this long.
    Store(Timeout),
    /// `'del'`: delete the fragment, render the block, store nothing.
    Delete,
}

impl FragmentCache {
    /// Fragments stored in `cache`.
    pub fn new(cache: Cache) -> FragmentCache {
        FragmentCache { cache: Some(cache) }
    }

    /// Fragments stored in the process-wide cache ([`crate::cache()`]), looked up when a
    /// template first uses it, so this may be called before [`crate::init`]. Same as
    /// [`FragmentCache::default`].
    pub fn global() -> FragmentCache {
        FragmentCache { cache: None }
    }

    /// The cache fragments are stored in.
    pub fn cache(&self) -> &Cache {
        match &self.cache {
            Some(cache) => cache,
            None => crate::cache(),
        }
    }

    /// Adds the `cache` function to `env` (replacing any global of that name), for
    /// `{% call cache(timeout, 'name', *vary_on) %}…{% endcall %}` blocks.
    pub fn register(&self, env: &mut Environment<'_>) {
        let this = self.clone();
        env.add_function(
            "cache",
            move |state: &mut State<'_, '_>, args: Rest<Value>, kwargs: Kwargs| {
                this.fragment(state, &args, &kwargs)
            },
        );
    }

    /// Deletes the fragment `name` varying on `vary_on`, as Flask's
    /// `cache.delete(make_template_fragment_key(name, vary_on))`; `Ok(true)` if it was stored.
    pub fn delete(&self, name: &str, vary_on: &[&str]) -> Result<bool, crate::Error> {
        self.cache()
            .delete(&make_template_fragment_key(name, vary_on))
    }

    /// Renders the template `name` of `env` with `ctx`, without blocking an async runtime's
    /// threads: in place when this cache never blocks (the in-memory backends), on a blocking
    /// thread pool otherwise. Use it in async handlers instead of
    /// `env.get_template(name)?.render(ctx)`, with the `FragmentCache` registered on `env`.
    ///
    /// The future is `Send + 'static` and owns what it needs, so it may also be spawned.
    pub fn render(
        &self,
        env: &Arc<Environment<'static>>,
        name: &str,
        ctx: impl Into<Value>,
    ) -> impl Future<Output = Result<String, Error>> + Send + 'static {
        let offload = self.cache().backend().is_blocking();
        let env = Arc::clone(env);
        let name = name.to_owned();
        let ctx = ctx.into();
        let render = move || env.get_template(&name)?.render(ctx);
        async move {
            if offload {
                blocking::unblock(render).await
            } else {
                render()
            }
        }
    }

    /// The `cache(timeout, name, *vary_on, caller=…)` function.
    fn fragment(
        &self,
        state: &mut State<'_, '_>,
        args: &[Value],
        kwargs: &Kwargs,
    ) -> Result<Value, Error> {
        let caller: Option<Value> = kwargs.get("caller")?;
        kwargs.assert_all_used()?;
        let caller = caller.ok_or_else(|| {
            invalid("cache() caches a block: use it as {% call cache(timeout, 'name', …) %}…{% endcall %}")
        })?;
        let (mode, name, vary_on) = match args {
            [timeout, name, vary_on @ ..] => (parse_timeout(timeout)?, name, vary_on),
            _ => {
                return Err(invalid(
                    "cache() takes a timeout and a fragment name: cache(None, 'name', …)",
                ))
            }
        };
        // Jinja's str(): Flask-Caching's keys join the vary-on values as strings.
        let vary_on: Vec<String> = vary_on.iter().map(Value::to_string).collect();
        let vary_on: Vec<&str> = vary_on.iter().map(String::as_str).collect();
        let key = make_template_fragment_key(&name.to_string(), &vary_on);
        let cache = self.cache();

        let timeout = match mode {
            Mode::Delete => {
                if let Err(e) = cache.delete(&key) {
                    failed(&key, "delete", &e);
                }
                return caller.call(state, &[]);
            }
            Mode::Store(timeout) => timeout,
        };
        match cache.get::<Stored>(&key) {
            Ok(Some(stored)) => Ok(stored.into_value()),
            Ok(None) => {
                let rendered = caller.call(state, &[])?;
                let stored = Stored::of(&rendered);
                if let Err(e) = cache.set(&key, &stored, timeout) {
                    failed(&key, "write", &e);
                }
                // A miss renders exactly as a hit will: a string as it is (a hit returns the
                // same text, as safe as it was), anything else as the string stored for it.
                Ok(if rendered.kind() == ValueKind::String {
                    rendered
                } else {
                    stored.into_value()
                })
            }
            Err(e) => {
                failed(&key, "read", &e);
                caller.call(state, &[])
            }
        }
    }
}

/// The timeout argument: `None`, whole seconds, or `'del'`, as Flask-Caching's tag takes.
fn parse_timeout(timeout: &Value) -> Result<Mode, Error> {
    if timeout.is_none() {
        return Ok(Mode::Store(Timeout::Default));
    }
    if timeout.as_str() == Some("del") {
        return Ok(Mode::Delete);
    }
    if timeout.kind() == ValueKind::Number {
        if let Ok(secs) = u64::try_from(timeout.clone()) {
            return Ok(Mode::Store(Timeout::from(secs)));
        }
    }
    Err(invalid(format!(
        "cache(): the timeout must be None, a whole number of seconds (0 = never expires) \
         or 'del', not {timeout:?}"
    )))
}

fn invalid(msg: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

fn failed(key: &str, what: &str, e: &crate::Error) {
    tracing::warn!(target: "cachemacro", key, error = %e, "template fragment cache {what} failed; rendering uncached");
}
