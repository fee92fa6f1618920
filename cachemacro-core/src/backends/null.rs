//! `CACHE_TYPE=null`: caches nothing.

use std::time::Duration;

use crate::{Backend, Error, Value};

/// A backend that stores nothing: every read misses, every write succeeds and is forgotten
/// (Flask's `NullCache`). Useful in tests and to switch caching off by configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullBackend;

impl Backend for NullBackend {
    fn name(&self) -> &'static str {
        "null"
    }
    fn is_blocking(&self) -> bool {
        false
    }
    fn keeps_objects(&self) -> bool {
        true
    }
    fn get(&self, _key: &str) -> Result<Option<Value>, Error> {
        Ok(None)
    }
    fn get_pair(&self, _: &str, _: &str) -> Result<(Option<Value>, Option<Value>), Error> {
        Ok((None, None))
    }
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, Error> {
        Ok(vec![None; keys.len()])
    }
    fn set(&self, _: &str, _: Value, _: Option<Duration>) -> Result<(), Error> {
        Ok(())
    }
    fn add(&self, _: &str, _: Value, _: Option<Duration>) -> Result<bool, Error> {
        Ok(true)
    }
    fn set_many(&self, _: &[(&str, Value)], _: Option<Duration>) -> Result<(), Error> {
        Ok(())
    }
    fn delete(&self, _: &str) -> Result<bool, Error> {
        Ok(false)
    }
    fn delete_many(&self, _: &[&str]) -> Result<usize, Error> {
        Ok(0)
    }
    /// Nothing is stored, so the count starts from 0 every time, as in Flask's `NullCache`.
    fn inc(&self, _: &str, delta: i64) -> Result<i64, Error> {
        Ok(delta)
    }
    fn clear(&self) -> Result<(), Error> {
        Ok(())
    }
}
