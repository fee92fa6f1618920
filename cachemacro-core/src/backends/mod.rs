//! The backends that ship with cachemacro, each behind its Cargo feature.
//!
//! [`SimpleBackend`] (in-process, the default) and [`NullBackend`] are always there;
//! [`memcached`], [`redis`] and [`filesystem`] come with the features of the same names, all
//! on by default. `Cache::builder()` and `Cache::from_env()` choose among them; a backend of
//! your own implements [`Backend`](crate::Backend).

// The methods of clients whose operations are written once (memcached, redis); declared
// before the modules that use them.
#[macro_use]
mod via;

#[cfg(feature = "filesystem")]
pub mod filesystem;
#[cfg(feature = "memcached")]
pub mod memcached;
mod null;
#[cfg(feature = "redis")]
pub mod redis;
mod simple;

pub use null::NullBackend;
pub(crate) use simple::LocalVersion;
pub use simple::{SimpleBackend, DEFAULT_THRESHOLD};

/// Runs an operation of a sync client to completion. The shared operations of the memcached
/// and redis clients are `async fn`s over an I/O engine; the sync engines answer with futures
/// that are ready at once, so one poll completes them. A future that did wait would be an
/// error of ours, reported as a backend error rather than a panic.
#[cfg(any(feature = "memcached", feature = "redis"))]
pub(crate) fn now<T>(
    op: impl std::future::Future<Output = Result<T, crate::Error>>,
) -> Result<T, crate::Error> {
    use std::task::{Context, Poll, Waker};
    match std::pin::pin!(op).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(crate::Error::Backend(
            "a blocking client was asked to wait".into(),
        )),
    }
}

/// Awaits every future, concurrently; their outputs in order.
#[cfg(all(feature = "tokio", any(feature = "memcached", feature = "redis")))]
pub(crate) async fn join_all<F: std::future::Future + Unpin>(
    mut futures: Vec<F>,
) -> Vec<F::Output> {
    use std::task::Poll;
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match std::pin::Pin::new(f).poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
