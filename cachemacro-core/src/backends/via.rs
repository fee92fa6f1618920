//! The trait methods of a client whose operations are written once, as `async fn *_via(io,
//! …)` over an I/O engine (memcached, redis): the sync [`Backend`](crate::Backend) methods run
//! them on the blocking engine (polled once, see [`now`](super::now)), the
//! [`AsyncBackend`](crate::AsyncBackend) ones on the async engine. Both clients have the same
//! `*_via` methods, so both trait impls are written here once.

/// The data methods of [`Backend`](crate::Backend) and its `as_async`, inside its `impl`,
/// over `$io`.
#[cfg(any(feature = "memcached", feature = "redis"))]
macro_rules! sync_via {
    ($io:expr) => {
        /// The async client, within a tokio runtime: it runs on tokio, so elsewhere (another
        /// executor, a plain thread) callers take the blocking pool.
        #[cfg(feature = "tokio")]
        fn as_async(&self) -> Option<&dyn $crate::AsyncBackend> {
            tokio::runtime::Handle::try_current()
                .ok()
                .map(|_| self as _)
        }

        fn get(&self, key: &str) -> Result<Option<Value>, Error> {
            Ok(self.get_many(&[key])?.pop().flatten())
        }

        fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error> {
            now(self.get_many_via(&$io, keys)).map(|got| got.into_iter().collect())
        }

        fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), Error> {
            now(self.set_via(&$io, key, &value, ttl))
        }

        fn add(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<bool, Error> {
            now(self.add_via(&$io, key, &value, ttl))
        }

        fn set_many(&self, items: &[(&str, Value)], ttl: Option<Duration>) -> Result<(), Error> {
            now(self.set_many_via(&$io, items, ttl))
        }

        fn delete(&self, key: &str) -> Result<bool, Error> {
            now(self.delete_via(&$io, key))
        }

        fn delete_many(&self, keys: &[&str]) -> Result<usize, Error> {
            now(self.delete_many_via(&$io, keys))
        }

        fn inc(&self, key: &str, delta: i64) -> Result<i64, Error> {
            now(self.inc_via(&$io, key, delta))
        }

        fn dec(&self, key: &str, delta: i64) -> Result<i64, Error> {
            now(self.dec_via(&$io, key, delta))
        }

        fn clear(&self) -> Result<(), Error> {
            now(self.clear_via(&$io))
        }
    };
}

/// `impl AsyncBackend for $ty`, over `$io`.
#[cfg(all(feature = "tokio", any(feature = "memcached", feature = "redis")))]
macro_rules! async_via {
    ($ty:ty, $io:expr) => {
        impl $crate::AsyncBackend for $ty {
            fn get<'a>(
                &'a self,
                key: &'a str,
            ) -> $crate::BoxFuture<'a, Result<Option<$crate::Value>, $crate::Error>> {
                Box::pin(async move { Ok(self.get_many_via(&$io, &[key]).await?.pop().flatten()) })
            }

            fn get_pair<'a>(
                &'a self,
                first: &'a str,
                second: &'a str,
            ) -> $crate::BoxFuture<'a, Result<$crate::Pair, $crate::Error>> {
                Box::pin(async move {
                    let mut both = self.get_many_via(&$io, &[first, second]).await?.into_iter();
                    Ok((both.next().flatten(), both.next().flatten()))
                })
            }

            fn get_many<'a>(
                &'a self,
                keys: &'a [&'a str],
            ) -> $crate::BoxFuture<'a, Result<Vec<Option<$crate::Value>>, $crate::Error>> {
                Box::pin(
                    async move { Ok(self.get_many_via(&$io, keys).await?.into_iter().collect()) },
                )
            }

            fn set<'a>(
                &'a self,
                key: &'a str,
                value: $crate::Value,
                ttl: Option<std::time::Duration>,
            ) -> $crate::BoxFuture<'a, Result<(), $crate::Error>> {
                Box::pin(async move { self.set_via(&$io, key, &value, ttl).await })
            }

            fn add<'a>(
                &'a self,
                key: &'a str,
                value: $crate::Value,
                ttl: Option<std::time::Duration>,
            ) -> $crate::BoxFuture<'a, Result<bool, $crate::Error>> {
                Box::pin(async move { self.add_via(&$io, key, &value, ttl).await })
            }

            fn set_many<'a>(
                &'a self,
                items: &'a [(&'a str, $crate::Value)],
                ttl: Option<std::time::Duration>,
            ) -> $crate::BoxFuture<'a, Result<(), $crate::Error>> {
                Box::pin(self.set_many_via(&$io, items, ttl))
            }

            fn delete<'a>(
                &'a self,
                key: &'a str,
            ) -> $crate::BoxFuture<'a, Result<bool, $crate::Error>> {
                Box::pin(self.delete_via(&$io, key))
            }

            fn delete_many<'a>(
                &'a self,
                keys: &'a [&'a str],
            ) -> $crate::BoxFuture<'a, Result<usize, $crate::Error>> {
                Box::pin(self.delete_many_via(&$io, keys))
            }

            fn inc<'a>(
                &'a self,
                key: &'a str,
                delta: i64,
            ) -> $crate::BoxFuture<'a, Result<i64, $crate::Error>> {
                Box::pin(self.inc_via(&$io, key, delta))
            }

            fn dec<'a>(
                &'a self,
                key: &'a str,
                delta: i64,
            ) -> $crate::BoxFuture<'a, Result<i64, $crate::Error>> {
                Box::pin(self.dec_via(&$io, key, delta))
            }

            fn clear(&self) -> $crate::BoxFuture<'_, Result<(), $crate::Error>> {
                Box::pin(self.clear_via(&$io))
            }
        }
    };
}
