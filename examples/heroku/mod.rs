//! Heroku's conventions for the web examples, as gunicorn follows them: listen on
//! `$HOST:$PORT` (`127.0.0.1:5000` by default), run `$WEB_CONCURRENCY` worker processes
//! (default 1) that all accept on that port, stop every worker on Ctrl-C or SIGTERM.
//!
//! The first process is the master: it starts the workers (this same program, with
//! `CACHEMACRO_WORKER` set), each with a pipe as its standard input. A worker binds the port
//! with `SO_REUSEPORT`, so the kernel spreads connections over the workers, and stops when
//! that pipe closes: when the master exits, however it exits, its workers follow.

use std::net::{IpAddr, SocketAddr};
use std::process::{ExitCode, Stdio};

use axum::Router;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

const WORKER: &str = "CACHEMACRO_WORKER";

/// Runs `name`'s web service: as the master if this is the first process, or as a worker
/// serving `app()` (called once the worker has configured the cache from the environment).
pub(crate) fn run<F, Fut>(name: &str, app: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Router, String>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = runtime.block_on(async {
        let addr = address()?;
        match std::env::var(WORKER) {
            Ok(n) => worker(&n, addr, app().await?).await,
            Err(_) => master(name, addr).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `HOST` and `PORT`; a malformed value is an error naming the variable.
fn address() -> Result<SocketAddr, String> {
    let host = match std::env::var("HOST") {
        Ok(h) => h
            .parse::<IpAddr>()
            .map_err(|e| format!("HOST={h:?} is not an IP address: {e}"))?,
        Err(_) => IpAddr::from([127, 0, 0, 1]),
    };
    let port = match std::env::var("PORT") {
        Ok(p) => p
            .parse::<u16>()
            .map_err(|e| format!("PORT={p:?} is not a port number: {e}"))?,
        Err(_) => 5000,
    };
    Ok(SocketAddr::new(host, port))
}

fn workers() -> Result<usize, String> {
    match std::env::var("WEB_CONCURRENCY") {
        Ok(n) => match n.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "WEB_CONCURRENCY={n:?} is not a positive number of workers"
            )),
        },
        Err(_) => Ok(1),
    }
}

async fn master(name: &str, addr: SocketAddr) -> Result<(), String> {
    let n = workers()?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut children: Vec<Child> = Vec::new();
    // Held apart from the children: `Child::wait` would close them.
    let mut pipes = Vec::new();
    for i in 1..=n {
        let child = Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env(WORKER, i.to_string())
            .stdin(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start worker {i}: {e}"))?;
        let mut child = child;
        pipes.push(child.stdin.take());
        children.push(child);
    }
    let backend = cachemacro::Cache::from_env()
        .map(|c| c.backend().name())
        .map_err(|e| e.to_string())?;
    println!("{name}: http://{addr}/ ({n} worker(s), cache: {backend})");
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let exited = async {
        // Any worker that exits ends the service, as a gunicorn worker that cannot boot does.
        let waits = children.iter_mut().map(|c| Box::pin(c.wait()));
        let (i, status) = first_of(waits.collect()).await;
        (i + 1, status)
    };
    let outcome = tokio::select! {
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
        (i, status) = exited => Err(format!("worker {i} exited: {status:?}")),
    };
    // Closing their pipes stops the workers; then make sure.
    drop(pipes);
    for child in &mut children {
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await;
        if stopped.is_err() {
            let _ = child.kill().await;
        }
    }
    outcome
}

/// The first of `futures` to finish: its index and output.
async fn first_of<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> (usize, F::Output) {
    std::future::poll_fn(move |cx| {
        for (i, f) in futures.iter_mut().enumerate() {
            if let std::task::Poll::Ready(out) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready((i, out));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

async fn worker(n: &str, addr: SocketAddr, app: Router) -> Result<(), String> {
    let listener = bind(addr).map_err(|e| format!("worker {n} cannot listen on {addr}: {e}"))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let stop = async move {
        let master_gone = async {
            // Returns when the master closes the pipe (or exits).
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while let Ok(read) = stdin.read(&mut buf).await {
                if read == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            _ = master_gone => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| format!("worker {n}: {e}"))
}

/// A listener on `addr` that other workers may bind too.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
