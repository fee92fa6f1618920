//! How long an entry lives.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The lifetime of a cache entry, as Flask's `timeout` argument.
///
/// Integers are seconds and `0` means "never expires", as in Flask:
///
/// ```
/// use cachemacro_core::Timeout;
/// use std::time::Duration;
///
/// assert_eq!(Timeout::from(0u64), Timeout::Never);
/// assert_eq!(Timeout::from(50), Timeout::After(Duration::from_secs(50)));
/// assert_eq!(Timeout::from(Duration::from_millis(1500)), Timeout::After(Duration::from_millis(1500)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Timeout {
    /// The cache's default timeout (`CACHE_DEFAULT_TIMEOUT`, 300 s unless configured).
    #[default]
    Default,
    /// The entry never expires (it may still be evicted).
    Never,
    /// The entry expires this long after it was written.
    After(Duration),
}

impl Timeout {
    /// The concrete lifetime once `Default` is replaced by `default`; `None` = never expires.
    pub fn resolve(self, default: Option<Duration>) -> Option<Duration> {
        match self {
            Timeout::Default => default,
            Timeout::Never => None,
            Timeout::After(d) => Some(d),
        }
    }
}

impl From<Duration> for Timeout {
    /// `Duration::ZERO` means never, like `0` seconds.
    fn from(d: Duration) -> Self {
        if d.is_zero() {
            Timeout::Never
        } else {
            Timeout::After(d)
        }
    }
}

impl From<u64> for Timeout {
    fn from(secs: u64) -> Self {
        Timeout::from(Duration::from_secs(secs))
    }
}

impl From<u32> for Timeout {
    fn from(secs: u32) -> Self {
        Timeout::from(u64::from(secs))
    }
}

/// So that an unsuffixed literal (`cache.set(k, &v, 50)`) works; negative values mean never,
/// like `0`.
impl From<i32> for Timeout {
    fn from(secs: i32) -> Self {
        Timeout::from(u64::try_from(secs).unwrap_or(0))
    }
}

impl From<Option<Duration>> for Timeout {
    /// `None` is the cache's default, as Flask's `timeout=None`.
    fn from(d: Option<Duration>) -> Self {
        d.map_or(Timeout::Default, Timeout::from)
    }
}

/// The wall clock as time since the Unix epoch: what expiry times shared with other
/// processes (memcached's absolute times, the filesystem's entries, a stored page's age) are
/// counted in. A clock before 1970 reads as 0.
#[cfg_attr(
    not(any(feature = "memcached", feature = "filesystem", feature = "tower")),
    allow(dead_code)
)]
pub(crate) fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}
