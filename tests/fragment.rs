//! Template fragment caching for minijinja (`cachemacro::fragment`): Flask-Caching's keys,
//! hits, invalidation, `'del'`, timeouts, nesting, safe strings, errors, failing caches and
//! async rendering.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachemacro::fragment::FragmentCache;
use cachemacro::{make_template_fragment_key, Cache};
use cachemacro_testkit::Memcached;
use minijinja::{context, Environment, Error, ErrorKind, Value};

fn simple() -> Cache {
    Cache::builder().simple().build().unwrap()
}

/// An environment with `cache` over `cache`, the given templates, and `tick()`: a function
/// that counts its calls, so a test can tell a rendered block from a cached one.
fn env_with(
    cache: &Cache,
    templates: &[(&'static str, &'static str)],
) -> (Environment<'static>, Arc<AtomicUsize>) {
    let mut env = Environment::new();
    FragmentCache::new(cache.clone()).register(&mut env);
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    env.add_function("tick", move || t.fetch_add(1, Ordering::SeqCst) + 1);
    env.add_function("fail", || -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, "the block failed"))
    });
    for (name, source) in templates {
        env.add_template(name, source).unwrap();
    }
    (env, ticks)
}

fn render(env: &Environment<'_>, name: &str, ctx: Value) -> String {
    env.get_template(name).unwrap().render(ctx).unwrap()
}

#[test]
fn keys_are_flask_cachings() {
    let cache = simple();
    let (env, _) = env_with(
        &cache,
        &[
            (
                "task.html",
                "{% call cache(None, 'task-fragment', task.id|string) %}{{ task.title }}{% endcall %}",
            ),
            ("sidebar.html", "{% call cache(None, 'sidebar') %}side{% endcall %}"),
            (
                "many.html",
                "{% call cache(None, 'many', n, flag, nothing, 'a b', ratio) %}x{% endcall %}",
            ),
        ],
    );

    render(
        &env,
        "task.html",
        context! { task => context! { id => 7, title => "t" } },
    );
    let key = make_template_fragment_key("task-fragment", &["7"]);
    assert_eq!(key, "_template_fragment_cache_task-fragment_7");
    assert!(cache.has(&key).unwrap());
    assert!(!cache
        .has("_template_fragment_cache_task-fragment_8")
        .unwrap());

    render(&env, "sidebar.html", context! {});
    assert!(cache.has("_template_fragment_cache_sidebar").unwrap());

    // Values that are not strings become Python's str() of them, as in a Jinja template
    // (`"_".join(map(str, vary_on))`).
    render(
        &env,
        "many.html",
        context! { n => 3, flag => true, nothing => (), ratio => 1.5 },
    );
    assert!(cache
        .has("_template_fragment_cache_many_3_True_None_a b_1.5")
        .unwrap());
}

#[test]
fn a_second_render_is_a_hit_and_deleting_the_key_renders_again() {
    let cache = simple();
    let (env, ticks) = env_with(
        &cache,
        &[(
            "item.html",
            "<p>{% call cache(None, 'item', id) %}{{ title }} #{{ tick() }}{% endcall %}</p>",
        )],
    );
    let first = render(&env, "item.html", context! { id => 1, title => "one" });
    assert_eq!(first, "<p>one #1</p>");
    // The block is not evaluated again: the context changed, the output did not.
    let second = render(&env, "item.html", context! { id => 1, title => "changed" });
    assert_eq!(second, "<p>one #1</p>");
    assert_eq!(ticks.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().hits, 1);

    // Another vary-on value is another fragment.
    let other = render(&env, "item.html", context! { id => 2, title => "two" });
    assert_eq!(other, "<p>two #2</p>");

    // Invalidation by key, as Python code does it.
    assert!(cache
        .delete(&make_template_fragment_key("item", &["1"]))
        .unwrap());
    let fresh = render(&env, "item.html", context! { id => 1, title => "changed" });
    assert_eq!(fresh, "<p>changed #3</p>");

    // Or through the FragmentCache.
    let fragments = FragmentCache::new(cache.clone());
    assert!(fragments.delete("item", &["1"]).unwrap());
    assert!(!fragments.delete("item", &["1"]).unwrap());
    let again = render(&env, "item.html", context! { id => 1, title => "again" });
    assert_eq!(again, "<p>again #4</p>");
    assert_eq!(fragments.cache().stats().hits, 1);
}

#[test]
fn del_deletes_the_fragment_and_renders_the_block() {
    let cache = simple();
    let (env, ticks) = env_with(
        &cache,
        &[
            (
                "show.html",
                "{% call cache(60, 'stats', user) %}{{ tick() }}{% endcall %}",
            ),
            (
                "del.html",
                "{% call cache('del', 'stats', user) %}[{{ tick() }}]{% endcall %}",
            ),
        ],
    );
    let key = make_template_fragment_key("stats", &["ann"]);
    assert_eq!(render(&env, "show.html", context! { user => "ann" }), "1");
    assert_eq!(render(&env, "show.html", context! { user => "ann" }), "1");
    assert!(cache.has(&key).unwrap());

    // 'del' renders the block every time and stores nothing.
    assert_eq!(render(&env, "del.html", context! { user => "ann" }), "[2]");
    assert!(!cache.has(&key).unwrap());
    assert_eq!(render(&env, "del.html", context! { user => "ann" }), "[3]");
    assert!(!cache.has(&key).unwrap());

    assert_eq!(render(&env, "show.html", context! { user => "ann" }), "4");
    assert_eq!(ticks.load(Ordering::SeqCst), 4);
}

#[test]
fn a_timeout_in_seconds_expires() {
    let cache = simple();
    let (env, ticks) = env_with(
        &cache,
        &[
            (
                "short.html",
                "{% call cache(1, 'short') %}{{ tick() }}{% endcall %}",
            ),
            (
                "never.html",
                "{% call cache(0, 'never') %}{{ tick() }}{% endcall %}",
            ),
        ],
    );
    assert_eq!(render(&env, "short.html", context! {}), "1");
    assert_eq!(render(&env, "never.html", context! {}), "2");
    assert_eq!(render(&env, "short.html", context! {}), "1");
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(render(&env, "short.html", context! {}), "3");
    // 0 = never expires, as in Flask.
    assert_eq!(render(&env, "never.html", context! {}), "2");
    assert_eq!(ticks.load(Ordering::SeqCst), 3);
}

#[test]
fn default_timeout_is_the_caches() {
    let cache = Cache::builder()
        .simple()
        .default_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (env, ticks) = env_with(
        &cache,
        &[(
            "d.html",
            "{% call cache(None, 'd') %}{{ tick() }}{% endcall %}",
        )],
    );
    assert_eq!(render(&env, "d.html", context! {}), "1");
    assert_eq!(render(&env, "d.html", context! {}), "1");
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(render(&env, "d.html", context! {}), "2");
    assert_eq!(ticks.load(Ordering::SeqCst), 2);
}

const NESTED: &str = "<ul>{% call cache(None, 'list', list_id) %}\
    [{{ tick() }}]\
    {% for item in items %}<li>{% call cache(None, 'item', item.id) %}{{ item.name }}({{ tick() }}){% endcall %}</li>{% endfor %}\
    {% endcall %}</ul>";

#[test]
fn nested_fragments_are_russian_dolls() {
    let cache = simple();
    let (env, ticks) = env_with(&cache, &[("list.html", NESTED)]);
    let ctx = |a: &str, b: &str| {
        context! { list_id => 1, items => vec![
            context! { id => 1, name => a },
            context! { id => 2, name => b },
        ] }
    };

    assert_eq!(
        render(&env, "list.html", ctx("a", "b")),
        "<ul>[1]<li>a(2)</li><li>b(3)</li></ul>"
    );
    for name in [("list", "1"), ("item", "1"), ("item", "2")] {
        assert!(cache
            .has(&make_template_fragment_key(name.0, &[name.1]))
            .unwrap());
    }
    // Everything from the outer fragment.
    assert_eq!(
        render(&env, "list.html", ctx("A", "B")),
        "<ul>[1]<li>a(2)</li><li>b(3)</li></ul>"
    );
    assert_eq!(ticks.load(Ordering::SeqCst), 3);

    // Invalidating an inner fragment only: the outer one still serves the old copy.
    cache
        .delete(&make_template_fragment_key("item", &["2"]))
        .unwrap();
    assert_eq!(
        render(&env, "list.html", ctx("A", "B")),
        "<ul>[1]<li>a(2)</li><li>b(3)</li></ul>"
    );
    assert_eq!(ticks.load(Ordering::SeqCst), 3);

    // Invalidating the outer one: it is rendered again, the inner item 1 comes from the
    // cache, the deleted item 2 is rendered.
    cache
        .delete(&make_template_fragment_key("list", &["1"]))
        .unwrap();
    assert_eq!(
        render(&env, "list.html", ctx("A", "B")),
        "<ul>[4]<li>a(2)</li><li>B(5)</li></ul>"
    );
    assert_eq!(ticks.load(Ordering::SeqCst), 5);
}

#[test]
fn cached_html_is_not_escaped_twice_and_unsafe_text_stays_escaped() {
    let cache = simple();
    let mut env = Environment::new();
    FragmentCache::new(cache.clone()).register(&mut env);
    env.add_function("plain", || "<i>plain</i>".to_owned());
    // Autoescape is on for .html templates, off for .txt ones.
    env.add_template(
        "page.html",
        "{% call cache(None, 'card', id) %}<b>{{ name }}</b>{% endcall %}",
    )
    .unwrap();
    env.add_template(
        "raw.txt",
        "{% call cache(None, 'raw') %}<b>&</b>{% endcall %}",
    )
    .unwrap();
    env.add_template(
        "raw.html",
        "{% call cache(None, 'raw') %}<b>&</b>{% endcall %}",
    )
    .unwrap();
    env.add_template(
        "mixed.html",
        "{% autoescape false %}{% call cache(None, 'mixed') %}<u>{% endcall %}{% endautoescape %}\
         |{% call cache(None, 'mixed') %}<u>{% endcall %}",
    )
    .unwrap();
    env.add_template(
        "explicit.html",
        "{{ cache(None, 'explicit', caller=plain) }}|{{ cache(None, 'explicit', caller=plain) }}",
    )
    .unwrap();

    let ctx = context! { id => 1, name => "Tom & <Jerry>" };
    let miss = render(&env, "page.html", ctx.clone());
    assert_eq!(miss, "<b>Tom &amp; &lt;Jerry&gt;</b>");
    let hit = render(&env, "page.html", ctx);
    assert_eq!(hit, miss);
    assert_eq!(cache.stats().hits, 1);

    // Rendered without autoescape, the fragment is not safe: an HTML template that reads it
    // from the cache escapes it.
    assert_eq!(render(&env, "raw.txt", context! {}), "<b>&</b>");
    assert_eq!(
        render(&env, "raw.html", context! {}),
        "&lt;b&gt;&amp;&lt;&#x2f;b&gt;"
    );
    assert_eq!(render(&env, "mixed.html", context! {}), "<u>|&lt;u&gt;");

    // A caller that returns a plain string: escaped on the miss and on the hit alike.
    assert_eq!(
        render(&env, "explicit.html", context! {}),
        "&lt;i&gt;plain&lt;&#x2f;i&gt;|&lt;i&gt;plain&lt;&#x2f;i&gt;"
    );
}

#[test]
fn an_error_in_the_block_is_the_templates_and_nothing_is_stored() {
    let cache = simple();
    let (env, _) = env_with(
        &cache,
        &[
            ("bad.html", "{% call cache(None, 'bad') %}a{{ fail() }}{% endcall %}"),
            (
                "outer.html",
                "{% call cache(None, 'outer') %}o{% call cache(None, 'inner') %}{{ fail() }}{% endcall %}{% endcall %}",
            ),
        ],
    );
    for (template, keys) in [
        ("bad.html", &["bad"][..]),
        ("outer.html", &["outer", "inner"][..]),
    ] {
        let err = env
            .get_template(template)
            .unwrap()
            .render(context! {})
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidOperation);
        assert!(err.to_string().contains("the block failed"), "{err}");
        for name in keys {
            assert!(!cache.has(&make_template_fragment_key(name, &[])).unwrap());
        }
        // And again: the error is not cached either.
        assert!(env
            .get_template(template)
            .unwrap()
            .render(context! {})
            .is_err());
    }
}

#[test]
fn bad_arguments_are_template_errors() {
    let cache = simple();
    let env = env_with(&cache, &[]).0;
    for (source, expected) in [
        ("{% call cache('soon', 'x') %}b{% endcall %}", "'soon'"),
        ("{% call cache(-1, 'x') %}b{% endcall %}", "-1"),
        ("{% call cache(1.5, 'x') %}b{% endcall %}", "1.5"),
        ("{% call cache(true, 'x') %}b{% endcall %}", "True"),
        ("{% call cache(missing, 'x') %}b{% endcall %}", "undefined"),
        ("{% call cache(None) %}b{% endcall %}", "fragment name"),
        ("{% call cache() %}b{% endcall %}", "fragment name"),
        ("{{ cache(None, 'x') }}", "{% call cache"),
        (
            "{% call cache(None, 'x', timeout=3) %}b{% endcall %}",
            "timeout",
        ),
    ] {
        let err = env.render_str(source, context! {}).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::InvalidOperation | ErrorKind::TooManyArguments
            ),
            "{source}: {err:?}"
        );
        assert!(err.to_string().contains(expected), "{source}: {err}");
    }
    assert_eq!(cache.stats().sets, 0);
}

#[test]
fn works_on_real_memcached_with_flasks_raw_keys() {
    let server = Memcached::start();
    let cache = Cache::builder()
        .memcached([server.addr()])
        .key_prefix("x:")
        .build()
        .unwrap();
    let (env, ticks) = env_with(
        &cache,
        &[(
            "task.html",
            "{% call cache(None, 'task', task.id|string) %}<b>{{ task.title }}</b> {{ tick() }}{% endcall %}",
        )],
    );
    let ctx = |title: &str| context! { task => context! { id => 7, title => title } };

    assert_eq!(render(&env, "task.html", ctx("a&b")), "<b>a&amp;b</b> 1");
    // The key on the server is the one Flask-Caching uses with CACHE_KEY_PREFIX = "x:".
    assert!(server
        .raw_get("x:_template_fragment_cache_task_7")
        .is_some());
    assert_eq!(server.keys().len(), 1);
    let hits_before = server.stats()["get_hits"];
    assert_eq!(render(&env, "task.html", ctx("new")), "<b>a&amp;b</b> 1");
    assert_eq!(server.stats()["get_hits"], hits_before + 1);
    assert_eq!(ticks.load(Ordering::SeqCst), 1);

    // What Python stored there (a pickle) is a miss: rendered again and overwritten.
    server.raw_set(
        "x:_template_fragment_cache_task_7",
        b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00\x8c\x07<b>py</b>\x94.",
    );
    assert_eq!(render(&env, "task.html", ctx("new")), "<b>new</b> 2");
    assert_eq!(render(&env, "task.html", ctx("newer")), "<b>new</b> 2");

    // Python's invalidation (a delete of the raw key) is seen at once.
    server.raw_delete("x:_template_fragment_cache_task_7");
    assert_eq!(render(&env, "task.html", ctx("newer")), "<b>newer</b> 3");
}

#[test]
fn a_failing_cache_renders_the_block_uncached() {
    let nowhere = format!("127.0.0.1:{}", cachemacro_testkit::free_port());
    let cache = Cache::builder().memcached([nowhere]).build().unwrap();
    let (env, ticks) = env_with(
        &cache,
        &[
            (
                "page.html",
                "{% call cache(60, 'page') %}<p>{{ tick() }}</p>{% endcall %}",
            ),
            (
                "del.html",
                "{% call cache('del', 'page') %}{{ tick() }}{% endcall %}",
            ),
        ],
    );
    let started = Instant::now();
    assert_eq!(render(&env, "page.html", context! {}), "<p>1</p>");
    assert_eq!(render(&env, "page.html", context! {}), "<p>2</p>");
    assert_eq!(render(&env, "del.html", context! {}), "3");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(ticks.load(Ordering::SeqCst), 3);
    // Reads failed (and so nothing was written), the delete failed.
    let stats = cache.stats();
    assert_eq!(stats.errors, 3, "{stats:?}");
    assert_eq!(stats.sets, 0, "{stats:?}");
}

#[test]
fn async_render_never_blocks_the_runtime() {
    let server = Memcached::start();
    let remote = Cache::builder().memcached([server.addr()]).build().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("async-worker")
        .enable_all()
        .build()
        .unwrap();
    // (cache, whether templates may run on the runtime's workers)
    for (cache, in_place) in [(remote, false), (simple(), true)] {
        let fragments = FragmentCache::new(cache.clone());
        let mut env = Environment::new();
        fragments.register(&mut env);
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        env.add_function("tick", move || t.fetch_add(1, Ordering::SeqCst) + 1);
        // Where the template (and so every cache call it makes) runs.
        env.add_function("thread", || {
            std::thread::current().name().unwrap_or("?").to_owned()
        });
        env.add_template(
            "hello.html",
            "{{ thread() }}|{% call cache(60, 'hello', name) %}Hello {{ name }} {{ tick() }}{% endcall %}",
        )
        .unwrap();
        let env = Arc::new(env);

        let outputs = rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..8 {
                // The futures are Send + 'static: they can be spawned.
                tasks.push(tokio::spawn(fragments.render(
                    &env,
                    "hello.html",
                    context! { name => "Ann" },
                )));
            }
            let mut outputs = Vec::new();
            for task in tasks {
                outputs.push(task.await.unwrap().unwrap());
            }
            let missing = fragments.render(&env, "nope.html", context! {}).await;
            assert_eq!(missing.unwrap_err().kind(), ErrorKind::TemplateNotFound);
            outputs
        });
        for out in &outputs {
            let (thread, html) = out.split_once('|').unwrap();
            assert_eq!(thread == "async-worker", in_place, "{out}");
            assert!(html.starts_with("Hello Ann "), "{out}");
        }
        assert!(cache
            .has(&make_template_fragment_key("hello", &["Ann"]))
            .unwrap());
        // Now a hit: the block is not rendered.
        let before = ticks.load(Ordering::SeqCst);
        let again = rt
            .block_on(fragments.render(&env, "hello.html", context! { name => "Ann" }))
            .unwrap();
        assert!(again.contains("|Hello Ann "), "{again}");
        assert_eq!(ticks.load(Ordering::SeqCst), before);
    }
    assert!(server.stats()["get_hits"] >= 1);
}

#[test]
fn the_global_fragment_cache_uses_the_process_wide_cache() {
    let fragments = FragmentCache::global();
    let mut env = Environment::new();
    fragments.register(&mut env);
    assert_eq!(
        env.render_str(
            "{% call cache(None, 'global-test', 1) %}g{% endcall %}",
            context! {}
        )
        .unwrap(),
        "g"
    );
    assert!(cachemacro::cache()
        .has("_template_fragment_cache_global-test_1")
        .unwrap());
    assert!(FragmentCache::default()
        .cache()
        .has("_template_fragment_cache_global-test_1")
        .unwrap());
}
