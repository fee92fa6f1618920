//! Secrets never leave the process: what `Debug`, `Display`, errors and logs show in place of
//! passwords and the userinfo of URLs.

/// What a secret is shown as.
pub(crate) const MASK: &str = "***";

/// `url` with the password of its userinfo masked: `redis://user:***@host:6379/0`,
/// `redis://:***@host`. Text that is not a URL with userinfo is returned as it is.
pub(crate) fn url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    // The userinfo ends at the last `@` before the query: passwords may hold `@` or `/`
    // (unencoded), and masking too much beats showing a secret.
    let Some(at) = rest[..userinfo_end(rest)].rfind('@') else {
        return url.to_owned();
    };
    let user = match rest[..at].find(':') {
        Some(colon) => &rest[..colon],
        // A lone userinfo component: redis reads it as the password.
        None => "",
    };
    format!("{}{user}:{MASK}{}", &url[..scheme_end], &rest[at..])
}

/// Where the userinfo of a URL's text after `scheme://` must end by: the query or fragment.
fn userinfo_end(rest: &str) -> usize {
    rest.find(['?', '#']).unwrap_or(rest.len())
}

/// `msg` with every occurrence of each non-empty secret masked.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn scrub(msg: &str, secrets: &[&str]) -> String {
    let mut out = msg.to_owned();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, MASK);
    }
    out
}

/// The password of a URL's userinfo, if any (to scrub it from messages that quote it).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let userinfo = &rest[..rest[..userinfo_end(rest)].rfind('@')?];
    Some(userinfo.split_once(':').map_or(userinfo, |(_, p)| p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_everything_but_the_password() {
        assert_eq!(url("redis://u:p@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(url("redis://:p@ss@h"), "redis://:***@h");
        assert_eq!(url("redis://p@h"), "redis://:***@h");
        assert_eq!(url("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(url("rediss://u:p/x@h/0?a=b@c"), "rediss://u:***@h/0?a=b@c");
        assert_eq!(url("not a url"), "not a url");
        assert_eq!(url_password("redis://u:p@ss@h/0"), Some("p@ss"));
        assert_eq!(url_password("redis://h/0"), None);
        assert_eq!(scrub("bad p@ss here", &["p@ss", ""]), "bad *** here");
    }
}
