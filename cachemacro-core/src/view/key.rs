//! The keys pages are stored under.

/// The key of the page at `path`, as Flask-Caching writes it: `view/{path}` with the path
/// percent-decoded (Flask's `request.path`). `view_key("/")` is `"view//"`.
///
/// ```
/// assert_eq!(cachemacro_core::view::view_key("/"), "view//");
/// assert_eq!(cachemacro_core::view::view_key("/caf%C3%A9"), "view//café");
/// ```
pub fn view_key(path: &str) -> String {
    if path.contains('%') {
        format!("view/{}", decode(path))
    } else {
        let mut key = String::with_capacity(5 + path.len());
        key.push_str("view/");
        key.push_str(path);
        key
    }
}

/// `view/{path}?{query}` with the query's parameters sorted (repeated ones kept, each pair
/// decoded), so the order a client writes them in does not make another page.
pub(crate) fn with_query(path: &str, query: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode_form(k), decode_form(v))
        })
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}?{}", view_key(path), query.join("&"))
}

/// A query component decoded as a form: `+` is a space.
fn decode_form(s: &str) -> String {
    decode(&s.replace('+', " "))
}

/// Percent-decodes `s`; invalid escapes stay as written, invalid UTF-8 is replaced.
fn decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_flasks() {
        assert_eq!(view_key("/"), "view//");
        assert_eq!(view_key("/a%20b"), "view//a b");
        assert_eq!(view_key("/bad%zz%"), "view//bad%zz%");
        assert_eq!(view_key("/end%4"), "view//end%4");
    }

    #[test]
    fn queries_are_sorted_with_repeats_kept() {
        assert_eq!(
            with_query("/s", Some("b=2&a=1&b=1&c")),
            "view//s?a=1&b=1&b=2&c="
        );
        assert_eq!(
            with_query("/s", Some("q=a+b")),
            with_query("/s", Some("q=a%20b"))
        );
        assert_eq!(with_query("/s", None), "view//s?");
    }
}
