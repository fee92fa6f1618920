//! What may be stored and served: HTTP's rules for a shared cache, read off headers.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use super::stored::StoredView;

/// Why a response is not stored (for logs).
pub(crate) fn refusal(headers: &HeaderMap) -> Option<&'static str> {
    if headers.contains_key(header::SET_COOKIE) {
        return Some("it sets a cookie");
    }
    if vary_names(headers).any(|n| n == "*") {
        return Some("it varies on everything (Vary: *)");
    }
    let directives = cache_control(headers);
    for d in &directives {
        match d.name.as_str() {
            "private" => return Some("Cache-Control: private"),
            "no-store" => return Some("Cache-Control: no-store"),
            "no-cache" => return Some("Cache-Control: no-cache"),
            _ => {}
        }
    }
    if freshness(&directives) == Some(Duration::ZERO) {
        return Some("its freshness lifetime is 0");
    }
    None
}

/// How long a shared cache may keep the response by its own word (`s-maxage`, else
/// `max-age`), if it says.
pub(crate) fn lifetime(headers: &HeaderMap) -> Option<Duration> {
    freshness(&cache_control(headers))
}

fn freshness(directives: &[Directive]) -> Option<Duration> {
    let find = |name: &str| {
        directives
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| d.value.as_deref()?.parse::<u64>().ok())
    };
    find("s-maxage")
        .or_else(|| find("max-age"))
        .map(Duration::from_secs)
}

struct Directive {
    name: String,
    value: Option<String>,
}

/// Every `Cache-Control` directive, names lower-cased, quotes removed from values.
fn cache_control(headers: &HeaderMap) -> Vec<Directive> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|d| {
            let mut it = d.splitn(2, '=');
            let name = it.next()?.trim().to_ascii_lowercase();
            let value = it.next().map(|v| v.trim().trim_matches('"').to_owned());
            (!name.is_empty()).then_some(Directive { name, value })
        })
        .collect()
}

/// The header names a response's `Vary` lists, lower-cased.
pub(crate) fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
}

/// A request's value of header `name` (every occurrence, joined as one field value).
pub(crate) fn request_value(req: &HeaderMap, name: &str) -> Option<bytes::Bytes> {
    let mut values = req.get_all(name).iter();
    let first = values.next()?;
    let mut joined = first.as_bytes().to_vec();
    for v in values {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(v.as_bytes());
    }
    Some(joined.into())
}

/// The request's values of the headers a stored response varies on.
pub(crate) fn vary_values(
    req: &HeaderMap,
    names: impl Iterator<Item = String>,
) -> Vec<(String, Option<bytes::Bytes>)> {
    names
        .map(|n| {
            let v = request_value(req, &n);
            (n, v)
        })
        .collect()
}

/// Whether `stored` applies to this request: same values of every header it varies on.
pub(crate) fn matches(stored: &StoredView, req: &HeaderMap) -> bool {
    stored
        .vary
        .iter()
        .all(|(name, value)| request_value(req, name) == *value)
}

/// The key of the variant of a page for this request's values of `names`: derived from the
/// page's generation, so it dies with the page.
pub(crate) fn variant_key(
    page_key: &str,
    generation: u64,
    values: &[(String, Option<bytes::Bytes>)],
) -> String {
    let mut buf = Vec::new();
    for (name, value) in values {
        buf.extend_from_slice(name.as_bytes());
        buf.push(0);
        match value {
            Some(v) => {
                buf.push(1);
                buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
                buf.extend_from_slice(v);
            }
            None => buf.push(0),
        }
    }
    format!("{page_key}#vary:{generation:016x}:{:016x}", xxh3_64(&buf))
}

/// Hop-by-hop headers (RFC 9110 7.6.1) and those a stored copy must not repeat: never stored.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::AGE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// A strong `ETag` for a body: its 128-bit XXH3, quoted (always a valid header value).
pub(crate) fn etag_of(body: &[u8]) -> Option<HeaderValue> {
    HeaderValue::try_from(format!("\"{:032x}\"", xxh3_128(body))).ok()
}

/// Whether the request's `If-None-Match` matches the stored response's `ETag` (weak
/// comparison, RFC 9110 13.1.2).
pub(crate) fn not_modified(req: &HeaderMap, stored: &HeaderMap) -> bool {
    if !req.contains_key(header::IF_NONE_MATCH) {
        return false;
    }
    let Some(etag) = stored.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let ours = etag.strip_prefix("W/").unwrap_or(etag);
    req.get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours)
}

/// The headers a 304 carries from the stored response (RFC 9110 15.4.5).
pub(crate) fn not_modified_headers(stored: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::VARY,
    ] {
        for v in stored.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}
