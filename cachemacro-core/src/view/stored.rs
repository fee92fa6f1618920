//! What the view cache stores for one response, and how it goes back on the wire.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// A stored response: what a hit serves, with what decides whether it applies to a request.
///
/// On shared backends it travels as MessagePack (headers as `[name, bytes]` pairs, in order,
/// repeated names kept); the in-process backend keeps it as it is, so a hit there clones a
/// header map and a reference-counted body, and parses nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredView {
    pub(crate) status: u16,
    pub(crate) headers: Headers,
    /// The body; the headers always hold its `ETag` (the handler's own, or a digest of it).
    pub(crate) body: Bytes,
    /// Seconds since the Unix epoch when stored: `Age` on hits.
    pub(crate) stored_at: u64,
    /// The request's values of the headers the response's `Vary` names, when stored.
    pub(crate) vary: Vec<(String, Option<Bytes>)>,
    /// Random per stored page: variants for other `Vary` values live under keys made with it,
    /// so replacing or deleting the page orphans them.
    pub(crate) generation: u64,
}

/// A header map that serializes as a sequence of `(name, value bytes)` pairs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Headers(pub(crate) HeaderMap);

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            seq.serialize_element(&(name.as_str(), AsBytes(value.as_bytes())))?;
        }
        seq.end()
    }
}

/// Bytes serialized as bytes (MessagePack `bin`), not as a sequence of numbers, and not
/// copied on the way.
struct AsBytes<'a>(&'a [u8]);

impl Serialize for AsBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Headers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of [header name, header value] pairs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Headers, A::Error> {
                let mut map = HeaderMap::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some((name, value)) = seq.next_element::<(String, Bytes)>()? {
                    // Bytes from a server are checked like any header: a bad one is a miss.
                    let name = HeaderName::from_bytes(name.as_bytes()).map_err(A::Error::custom)?;
                    let value = HeaderValue::from_maybe_shared(value).map_err(A::Error::custom)?;
                    map.append(name, value);
                }
                Ok(Headers(map))
            }
        }
        d.deserialize_seq(Pairs)
    }
}

impl StoredView {
    /// The stored status, if it is one.
    pub(crate) fn status(&self) -> Option<StatusCode> {
        StatusCode::from_u16(self.status).ok()
    }

    /// Seconds since this response was stored, for `Age`.
    pub(crate) fn age(&self) -> u64 {
        unix_now().saturating_sub(self.stored_at)
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    crate::timeout::since_epoch().as_secs()
}
