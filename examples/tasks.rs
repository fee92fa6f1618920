//! Seed 002's task list (MemCachier's Flask tutorial) in Rust, with every caching step of the
//! tutorial: the query memoized, each task row a cached template fragment, the whole view
//! cached unless the request is a POST, and the flash messages in a session kept in the cache.
//!
//! ```sh
//! cargo run --release --example tasks                                   # in-memory cache
//! MEMCACHIER_SERVERS=127.0.0.1:11211 cargo run --release --example tasks  # memcached
//! ```
//!
//! Then open <http://127.0.0.1:5000/>. Heroku's conventions: `PORT` (default 5000), `HOST`,
//! `WEB_CONCURRENCY` worker processes sharing the cache, the cache from `MEMCACHIER_*` or
//! `CACHE_*` (`CACHE_TYPE=null` turns every level off). Tasks live in SQLite:
//! `DATABASE_URL` (`sqlite:///path/to/file.db` or a plain path; default `tasks.db` in the
//! working directory), created on first start.
//!
//! Once warm, on memcached, reloading `/` is one `get` on the server: the whole page.

use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Form, Path};
use axum::http::{header, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use cachemacro::fragment::FragmentCache;
use cachemacro::session::CacheSessionStore;
use cachemacro::view::ViewCacheLayer;
use cachemacro::{make_template_fragment_key, memoize, Cache};
use minijinja::{context, Environment};
use serde::{Deserialize, Serialize};
use tower_sessions::{Session, SessionManagerLayer};

mod heroku;

/// `class Task(db.Model)`: an id and a name.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Task {
    id: i64,
    name: String,
}

/// The database: one SQLite connection per worker process.
static DB: OnceLock<Mutex<rusqlite::Connection>> = OnceLock::new();

fn database_path() -> String {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "tasks.db".to_owned());
    match url.strip_prefix("sqlite://") {
        // `sqlite:///abs/path` and `sqlite://rel/path`, as SQLAlchemy writes them.
        Some(rest) => rest
            .strip_prefix('/')
            .map_or(rest.to_owned(), |abs| format!("/{abs}")),
        None => url,
    }
}

fn open_database() -> Result<(), String> {
    let path = database_path();
    let db = rusqlite::Connection::open(&path).map_err(|e| format!("DATABASE_URL: {path}: {e}"))?;
    // Several workers share the file.
    db.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS task (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL)",
    )
    .map_err(|e| format!("DATABASE_URL: {path}: {e}"))?;
    DB.set(Mutex::new(db))
        .map_err(|_| "the database is already open".to_owned())
}

/// Runs `f` on the connection, off the async worker threads.
async fn with_db<R: Send + 'static>(
    f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
) -> Result<R, String> {
    tokio::task::spawn_blocking(move || {
        let db = DB.get().expect("the database is open").lock();
        let db = db.unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&db).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// `@cache.memoize() def get_all_tasks(): return Task.query.all()`. Only a successful query
/// is cached (`Result` caches `Ok`).
#[memoize]
async fn get_all_tasks() -> Result<Vec<Task>, String> {
    with_db(|db| {
        let mut q = db.prepare("SELECT id, name FROM task ORDER BY id")?;
        let rows = q.query_map([], |r| {
            Ok(Task {
                id: r.get(0)?,
                name: r.get(1)?,
            })
        })?;
        rows.collect()
    })
    .await
}

/// Flask's `flash()`: messages kept in the session until shown.
const FLASHES: &str = "_flashes";

async fn flash(session: &Session, message: &str) {
    let mut messages: Vec<String> = session
        .get(FLASHES)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    messages.push(message.to_owned());
    let _ = session.insert(FLASHES, messages).await;
}

/// Flask's `get_flashed_messages()`: the pending messages, removed from the session.
async fn flashed_messages(session: &Session) -> Vec<String> {
    session
        .remove::<Vec<String>>(FLASHES)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

#[derive(Clone)]
struct App {
    templates: Arc<Environment<'static>>,
    fragments: FragmentCache,
}

fn server_error(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

/// Renders the list, with the messages flashed so far.
async fn render_index(app: &App, session: &Session) -> Response {
    let tasks = match get_all_tasks().await {
        Ok(tasks) => tasks,
        Err(e) => return server_error(e),
    };
    let messages = flashed_messages(session).await;
    let ctx = context! { tasks => minijinja::value::Serde(tasks), messages => &messages };
    match app
        .fragments
        .render(&app.templates, "index.html", ctx)
        .await
    {
        // A page that shows a message is for one user: never stored by a shared cache.
        Ok(html) if !messages.is_empty() => {
            ([(header::CACHE_CONTROL, "private, no-store")], Html(html)).into_response()
        }
        Ok(html) => Html(html).into_response(),
        Err(e) => server_error(e),
    }
}

/// `GET /`.
async fn index(axum::extract::State(app): axum::extract::State<App>, session: Session) -> Response {
    render_index(&app, &session).await
}

#[derive(Deserialize)]
struct NewTask {
    #[serde(default)]
    name: String,
}

/// Everything cached that shows the task list: the query, the page.
async fn invalidate_list() {
    let _ = get_all_tasks_delete_memoized_all().await;
    let _ = cachemacro::cache().aio().delete("view//").await;
}

/// `POST /`: adds a task (or flashes why not) and shows the list.
async fn add(
    axum::extract::State(app): axum::extract::State<App>,
    session: Session,
    Form(form): Form<NewTask>,
) -> Response {
    let name = form.name.trim().to_owned();
    if name.is_empty() {
        flash(&session, "Task name is required.").await;
    } else {
        let added =
            with_db(move |db| db.execute("INSERT INTO task (name) VALUES (?1)", [name])).await;
        if let Err(e) = added {
            return server_error(e);
        }
        invalidate_list().await;
    }
    render_index(&app, &session).await
}

/// `POST /{id}/delete`: deletes a task and goes back to the list.
async fn delete(Path(id): Path<i64>) -> Response {
    match with_db(move |db| db.execute("DELETE FROM task WHERE id = ?1", [id])).await {
        Ok(0) => {}
        Ok(_) => {
            invalidate_list().await;
            // SQLite reuses ids: the next task with this id must not show this one's row.
            let key = make_template_fragment_key("task-fragment", &[&id.to_string()]);
            let _ = cachemacro::cache().aio().delete(&key).await;
        }
        Err(e) => return server_error(e),
    }
    (StatusCode::FOUND, [(header::LOCATION, "/")]).into_response()
}

fn templates(fragments: &FragmentCache) -> Result<Environment<'static>, String> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/tasks/base.html")),
        ("index.html", include_str!("templates/tasks/index.html")),
    ] {
        env.add_template(name, source).map_err(|e| e.to_string())?;
    }
    // `{% call cache(None, 'task-fragment', task.id|string) %}`
    fragments.register(&mut env);
    Ok(env)
}

async fn app() -> Result<Router, String> {
    cachemacro::init(Cache::from_env().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    open_database()?;
    let fragments = FragmentCache::global();
    let state = App {
        templates: Arc::new(templates(&fragments)?),
        fragments,
    };
    // Flask-Session with SESSION_TYPE='memcached': sessions under `session:{id}` in the cache.
    let sessions = SessionManagerLayer::new(CacheSessionStore::global()).with_secure(false);
    // `@cache.cached(unless=is_post)` on the index view: key `view//`.
    let view = ViewCacheLayer::new().unless(|req| req.method == Method::POST);
    Ok(Router::new()
        .route("/", get(index).post(add))
        .route("/{id}/delete", post(delete))
        .with_state(state)
        .layer(sessions)
        .layer(view))
}

fn main() -> ExitCode {
    heroku::run("tasks", app)
}
