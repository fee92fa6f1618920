//! The body of a response that went through the view cache: served from the cache, or the
//! handler's own body, streamed, possibly after the part read while deciding whether to store
//! it.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// The body of a response from a [`ViewCache`](super::ViewCache) service.
///
/// A cached response's body is one buffer; a response the cache did not store is the
/// handler's body, streamed as it comes (preceded by whatever was already read from it while
/// deciding: a body over the size limit is never buffered whole, and its error, if it fails,
/// reaches the client as the handler's error).
pub struct ViewBody<B: Body> {
    kind: Kind<B>,
}

enum Kind<B: Body> {
    Full(Option<Bytes>),
    Stream {
        read: VecDeque<Frame<Bytes>>,
        then: Then<B>,
    },
}

enum Then<B: Body> {
    Body(Pin<Box<B>>),
    Error(Option<B::Error>),
}

impl<B: Body> ViewBody<B> {
    /// A body of exactly `bytes` (nothing for an empty buffer).
    pub(crate) fn full(bytes: Bytes) -> Self {
        let bytes = (!bytes.is_empty()).then_some(bytes);
        ViewBody {
            kind: Kind::Full(bytes),
        }
    }

    /// No body (HEAD, 304).
    pub(crate) fn empty() -> Self {
        ViewBody {
            kind: Kind::Full(None),
        }
    }

    /// The handler's body as it is.
    pub(crate) fn stream(body: B) -> Self {
        Self::replay(VecDeque::new(), Box::pin(body))
    }

    /// Frames already read from `rest`, then the rest of it.
    fn replay(read: VecDeque<Frame<Bytes>>, rest: Pin<Box<B>>) -> Self {
        ViewBody {
            kind: Kind::Stream {
                read,
                then: Then::Body(rest),
            },
        }
    }

    /// Frames already read, then `error`.
    fn failed(read: VecDeque<Frame<Bytes>>, error: B::Error) -> Self {
        ViewBody {
            kind: Kind::Stream {
                read,
                then: Then::Error(Some(error)),
            },
        }
    }
}

impl<B: Body> std::fmt::Debug for ViewBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Full(_) => "cached",
            Kind::Stream { .. } => "streamed",
        };
        f.debug_struct("ViewBody").field("kind", &kind).finish()
    }
}

// Nothing is structurally pinned: the handler's body is boxed.
impl<B: Body> Unpin for ViewBody<B> {}

impl<B: Body<Data = Bytes>> Body for ViewBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream { read, then } => {
                if let Some(frame) = read.pop_front() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                match then {
                    Then::Body(body) => body.as_mut().poll_frame(cx),
                    Then::Error(e) => Poll::Ready(e.take().map(Err)),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream { read, then } => {
                read.is_empty()
                    && match then {
                        Then::Body(body) => body.is_end_stream(),
                        Then::Error(e) => e.is_none(),
                    }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream { read, then } => {
                let buffered: u64 = read
                    .iter()
                    .filter_map(|f| f.data_ref())
                    .map(|d| d.len() as u64)
                    .sum();
                let mut hint = match then {
                    Then::Body(body) => body.size_hint(),
                    Then::Error(_) => SizeHint::with_exact(0),
                };
                hint.set_lower(hint.lower() + buffered);
                if let Some(upper) = hint.upper() {
                    hint.set_upper(upper + buffered);
                }
                hint
            }
        }
    }
}

/// A handler's body read while deciding whether to store it.
pub(crate) enum Collected<B: Body> {
    /// The whole body, within the limit and without trailers: storable.
    Whole(Bytes),
    /// Not storable (over the limit, trailers, or a failed read): to be streamed as it is.
    Passed(ViewBody<B>),
}

/// Reads `body` whole if it ends within `limit` bytes and has no trailers; otherwise stops
/// reading there and hands back what was read plus the rest, to be streamed.
pub(crate) async fn collect<B: Body<Data = Bytes>>(body: B, limit: usize) -> Collected<B> {
    let mut body = Box::pin(body);
    let mut read: VecDeque<Frame<Bytes>> = VecDeque::new();
    let mut len = 0usize;
    loop {
        let frame = poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        match frame {
            None => break,
            Some(Err(e)) => return Collected::Passed(ViewBody::failed(read, e)),
            Some(Ok(frame)) => {
                let trailers = frame.is_trailers();
                len = len.saturating_add(frame.data_ref().map_or(0, Bytes::len));
                read.push_back(frame);
                if trailers || len > limit {
                    return Collected::Passed(ViewBody::replay(read, body));
                }
            }
        }
    }
    let mut data = read.into_iter().filter_map(|f| f.into_data().ok());
    match (data.next(), data.next()) {
        (None, _) => Collected::Whole(Bytes::new()),
        (Some(one), None) => Collected::Whole(one),
        (Some(first), Some(second)) => {
            let mut all = Vec::with_capacity(len);
            for chunk in [first, second].into_iter().chain(data) {
                all.extend_from_slice(&chunk);
            }
            Collected::Whole(Bytes::from(all))
        }
    }
}

/// The `Content-Length` a response declares, if any and valid.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
