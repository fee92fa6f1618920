//! Values as they cross the [`Backend`](crate::Backend) seam, and their wire format.
//!
//! In-process backends keep a [`Value`] as it is (a shared, unserialized object); remote
//! backends store [`Value::to_bytes`] and hand back [`Value::from_bytes`]. The wire format is
//!
//! * an integer written without a version: its ASCII decimal digits, so that server-side
//!   counters (memcached `incr`, redis `INCRBY`) work on values written with `set`;
//! * anything else: `[MAGIC, FORMAT, flags]`, then the 8-byte little-endian version when
//!   `flags & VERSIONED`, then the MessagePack encoding of the value.
//!
//! Bytes in any other shape (another format version, a foreign writer, a torn write) decode
//! to an error, which the cache turns into a miss.

use std::any::Any;
use std::fmt;
use std::num::NonZeroU64;

use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Serialize;

use crate::Error;

const MAGIC: u8 = 0xC5;
const FORMAT: u8 = 1;
const VERSIONED: u8 = 1;
const HEADER: usize = 3;

/// A value that an in-process backend can keep without serializing it.
///
/// Implemented for every `Serialize + Clone + Send + Sync + 'static` type.
pub trait Object: Any + Send + Sync {
    /// The MessagePack encoding of the value, for backends that need bytes.
    fn encode(&self) -> Result<Vec<u8>, Error>;
    /// The value as `Any`, to get the concrete type back.
    fn as_any(&self) -> &dyn Any;
    /// The boxed value as `Any`, to move the concrete type out.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    /// A deep copy.
    fn clone_box(&self) -> Box<dyn Object>;
}

impl<T: Serialize + Clone + Send + Sync + 'static> Object for T {
    fn encode(&self) -> Result<Vec<u8>, Error> {
        rmp_serde::to_vec_named(self).map_err(|e| Error::Codec(e.to_string()))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
    fn clone_box(&self) -> Box<dyn Object> {
        Box::new(self.clone())
    }
}

/// A cached value, optionally tagged with the function version it was written under.
///
/// Cloning copies the object (in-process values) or the bytes (remote ones): a copy is what a
/// cache read hands out anyway, and copying touches no memory that other threads write, where
/// a shared reference count would bounce between cores on every hit of a hot key.
pub struct Value {
    /// Versions are non-zero: 0 stands for none, which keeps a `Value` at 32 bytes.
    version: Option<NonZeroU64>,
    repr: Repr,
}

enum Repr {
    Int(i64),
    Object(Box<dyn Object>),
    Bytes(Box<[u8]>),
}

impl Clone for Value {
    fn clone(&self) -> Self {
        let repr = match &self.repr {
            Repr::Int(i) => Repr::Int(*i),
            Repr::Object(o) => Repr::Object(o.clone_box()),
            Repr::Bytes(b) => Repr::Bytes(b.clone()),
        };
        Value {
            version: self.version,
            repr,
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let repr = match &self.repr {
            Repr::Int(i) => format!("Int({i})"),
            Repr::Object(_) => "Object(..)".to_owned(),
            Repr::Bytes(b) => format!("Bytes({} bytes)", b.len()),
        };
        f.debug_struct("Value")
            .field("version", &self.version)
            .field("repr", &repr)
            .finish()
    }
}

impl Value {
    /// A value holding `value` itself, unserialized (integers are held inline).
    pub fn object<T: Serialize + Clone + Send + Sync + 'static>(value: T) -> Self {
        let repr = match small_int(&value) {
            Some(i) => Repr::Int(i),
            None => Repr::Object(Box::new(value)),
        };
        Value {
            version: None,
            repr,
        }
    }

    /// An integer value (counters, function versions).
    pub fn int(value: i64) -> Self {
        Value {
            version: None,
            repr: Repr::Int(value),
        }
    }

    /// Bytes read from a remote backend, in the format [`Value::to_bytes`] writes.
    ///
    /// Never fails: bytes of an unknown shape are kept and fail in [`Value::decode`].
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let version = match bytes.as_slice() {
            [MAGIC, FORMAT, flags, rest @ ..] if flags & VERSIONED != 0 && rest.len() >= 8 => {
                let mut v = [0u8; 8];
                v.copy_from_slice(&rest[..8]);
                NonZeroU64::new(u64::from_le_bytes(v))
            }
            _ => None,
        };
        Value {
            version,
            repr: Repr::Bytes(bytes.into_boxed_slice()),
        }
    }

    /// `value` encoded as a remote backend stores it, straight from the reference.
    pub fn encoded<T: Serialize + ?Sized>(value: &T, version: Option<u64>) -> Result<Self, Error> {
        let payload = rmp_serde::to_vec_named(value).map_err(codec)?;
        Ok(Value {
            version: version.and_then(NonZeroU64::new),
            repr: Repr::Bytes(stored_form(&payload, version).into_boxed_slice()),
        })
    }

    /// The same value tagged with a function version (non-zero; 0 tags nothing).
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = NonZeroU64::new(version);
        self
    }

    /// The function version this value was written under, if any.
    #[inline]
    pub fn version(&self) -> Option<u64> {
        self.version.map(NonZeroU64::get)
    }

    /// The bytes a remote backend stores for this value.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        match (&self.repr, self.version()) {
            (Repr::Bytes(b), _) => Ok(b.to_vec()),
            (Repr::Int(i), None) => Ok(i.to_string().into_bytes()),
            (Repr::Int(i), Some(v)) => Ok(frame(Some(v), &rmp_serde::to_vec(i).map_err(codec)?)),
            (Repr::Object(o), version) => Ok(stored_form(&o.encode()?, version)),
        }
    }

    /// The value as a `T`.
    ///
    /// An in-process value of type `T` is cloned; one of another type goes through its
    /// MessagePack encoding, exactly as bytes from a remote backend do, so a wrong-type read
    /// behaves the same on every backend.
    #[inline]
    pub fn decode<T: DeserializeOwned + Clone + 'static>(&self) -> Result<T, Error> {
        // The in-process cases, inlined into a hit; the rest out of line.
        match &self.repr {
            Repr::Int(i) => {
                if let Some(v) = int_as::<T>(*i) {
                    return Ok(v);
                }
            }
            Repr::Object(o) => {
                if let Some(v) = o.as_any().downcast_ref::<T>() {
                    return Ok(v.clone());
                }
            }
            Repr::Bytes(_) => {}
        }
        self.decode_slow()
    }

    /// [`Value::decode`] past its in-process cases: another type, or bytes.
    fn decode_slow<T: DeserializeOwned>(&self) -> Result<T, Error> {
        match &self.repr {
            Repr::Object(o) => from_msgpack(&o.encode()?),
            Repr::Int(i) => decode_int(*i),
            Repr::Bytes(b) => match &b[..] {
                [MAGIC, FORMAT, flags, rest @ ..] => {
                    let payload = if flags & VERSIONED != 0 {
                        rest.get(8..)
                            .ok_or_else(|| Error::Codec("truncated header".into()))?
                    } else {
                        rest
                    };
                    from_msgpack(payload)
                }
                digits => match parse_decimal(digits) {
                    Some(i) => decode_int(i),
                    None => Err(Error::Codec(format!(
                        "unknown value format ({} bytes, first byte {:#04x})",
                        b.len(),
                        b.first().copied().unwrap_or(0)
                    ))),
                },
            },
        }
    }

    /// The value as a `T`, moved out when it is an in-process value of type `T`; otherwise as
    /// [`Value::decode`].
    pub fn into_decoded<T: DeserializeOwned + Clone + 'static>(self) -> Result<T, Error> {
        match self.repr {
            Repr::Object(o) if o.as_any().is::<T>() => match o.into_any().downcast::<T>() {
                Ok(v) => Ok(*v),
                Err(_) => Err(Error::Codec("type changed during downcast".into())),
            },
            repr => Value {
                version: self.version,
                repr,
            }
            .decode(),
        }
    }

    /// The value as a function version: a non-zero integer (0 is what no value can be tagged
    /// with, so a version key holding it is treated as missing and replaced).
    pub fn as_version(&self) -> Option<u64> {
        Some(self.as_i64()? as u64).filter(|&v| v != 0)
    }

    /// The value as an integer, for `inc`/`dec`; `None` when it is not one.
    pub fn as_i64(&self) -> Option<i64> {
        match &self.repr {
            Repr::Int(i) => Some(*i),
            Repr::Object(o) => o.encode().ok().and_then(|p| msgpack_int(&p)),
            Repr::Bytes(b) => parse_decimal(b).or_else(|| self.decode::<i64>().ok()),
        }
    }
}

/// `value` as an `i64` when `T` is a primitive integer type that holds it.
fn small_int<T: Any>(value: &T) -> Option<i64> {
    let v: &dyn Any = value;
    macro_rules! try_int {
        ($($t:ty),*) => {
            $(if let Some(x) = v.downcast_ref::<$t>() {
                return i64::try_from(*x).ok();
            })*
        };
    }
    try_int!(i64, u64, i32, u32, usize, isize, i16, u16, i8, u8);
    None
}

/// `i` as a `T` when `T` is a primitive integer type that holds it; no serde round trip.
fn int_as<T: Any>(i: i64) -> Option<T> {
    let mut out: Option<T> = None;
    let slot: &mut dyn Any = &mut out;
    macro_rules! try_int {
        ($($t:ty),*) => {
            $(if let Some(s) = slot.downcast_mut::<Option<$t>>() {
                *s = <$t>::try_from(i).ok();
                return out;
            })*
        };
    }
    try_int!(i64, u64, i32, u32, usize, isize, i16, u16, i8, u8);
    None
}

fn codec(e: impl fmt::Display) -> Error {
    Error::Codec(e.to_string())
}

/// The stored bytes for a MessagePack `payload`: decimal digits for a plain integer, else the
/// framed payload.
fn stored_form(payload: &[u8], version: Option<u64>) -> Vec<u8> {
    match (version, msgpack_int(payload)) {
        (None, Some(i)) => i.to_string().into_bytes(),
        _ => frame(version, payload),
    }
}

fn frame(version: Option<u64>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 8 + payload.len());
    out.extend_from_slice(&[MAGIC, FORMAT, if version.is_some() { VERSIONED } else { 0 }]);
    if let Some(v) = version {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(payload);
    out
}

fn decode_int<T: DeserializeOwned>(i: i64) -> Result<T, Error> {
    T::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(i)).map_err(codec)
}

fn parse_decimal(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    // No length limit: leading zeros are digits too (`str::parse` rejects what overflows).
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The integer a MessagePack encoding holds, when it is exactly one integer in `i64` range.
fn msgpack_int(payload: &[u8]) -> Option<i64> {
    let (&marker, rest) = payload.split_first()?;
    let be = |n: usize| -> Option<[u8; 8]> {
        if rest.len() != n {
            return None;
        }
        let mut b = [0u8; 8];
        b[8 - n..].copy_from_slice(rest);
        Some(b)
    };
    let sign_extend = |n: usize| -> Option<i64> {
        let shift = 64 - 8 * n as u32;
        Some((i64::from_be_bytes(be(n)?) << shift) >> shift)
    };
    match marker {
        0x00..=0x7f if rest.is_empty() => Some(i64::from(marker)),
        0xe0..=0xff if rest.is_empty() => Some(i64::from(marker as i8)),
        0xcc => Some(u64::from_be_bytes(be(1)?) as i64),
        0xcd => Some(u64::from_be_bytes(be(2)?) as i64),
        0xce => Some(u64::from_be_bytes(be(4)?) as i64),
        0xcf => i64::try_from(u64::from_be_bytes(be(8)?)).ok(),
        0xd0 => sign_extend(1),
        0xd1 => sign_extend(2),
        0xd2 => sign_extend(4),
        0xd3 => sign_extend(8),
        _ => None,
    }
}

/// MessagePack bytes as `T`, nested at most [`MAX_DEPTH`] deep: a few hundred bytes of
/// nested arrays would otherwise overflow the stack of a recursive type's decoder (an abort,
/// not a panic).
fn from_msgpack<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Error> {
    let mut de = rmp_serde::Deserializer::from_read_ref(payload);
    de.set_max_depth(MAX_DEPTH);
    T::deserialize(&mut de).map_err(codec)
}

/// Deepest nesting decoded (serde_json's default recursion limit).
const MAX_DEPTH: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_travel_as_decimal_for_server_side_counters() {
        for i in [0i64, 1, 127, 128, -1, -33, 70000, i64::MAX, i64::MIN] {
            let bytes = Value::object(i).to_bytes().unwrap();
            assert_eq!(bytes, i.to_string().into_bytes());
            assert_eq!(Value::from_bytes(bytes).decode::<i64>().unwrap(), i);
        }
        assert_eq!(Value::object(5u8).to_bytes().unwrap(), b"5");
    }

    #[test]
    fn versioned_values_round_trip_with_their_version() {
        let v = Value::object(vec!["a".to_owned()]).with_version(42);
        let back = Value::from_bytes(v.to_bytes().unwrap());
        assert_eq!(back.version(), Some(42));
        assert_eq!(back.decode::<Vec<String>>().unwrap(), vec!["a".to_owned()]);
        let n = Value::int(7).with_version(9);
        let back = Value::from_bytes(n.to_bytes().unwrap());
        assert_eq!(
            (back.version(), back.decode::<i64>().unwrap()),
            (Some(9), 7)
        );
    }

    #[test]
    fn encoding_from_a_reference_matches_encoding_the_object() {
        let same = |v: Value, e: Value| assert_eq!(v.to_bytes().unwrap(), e.to_bytes().unwrap());
        same(Value::object(3u8), Value::encoded(&3u8, None).unwrap());
        same(
            Value::object("s".to_owned()),
            Value::encoded("s", None).unwrap(),
        );
        let versioned = Value::encoded(&vec!["x".to_owned()], Some(5)).unwrap();
        assert_eq!(versioned.version(), Some(5));
        same(
            Value::object(vec!["x".to_owned()]).with_version(5),
            versioned,
        );
        assert_eq!(
            Value::encoded(&-12i64, None).unwrap().to_bytes().unwrap(),
            b"-12"
        );
    }

    #[test]
    fn wrong_type_reads_fail_alike_in_memory_and_from_bytes() {
        let v = Value::object("text".to_owned());
        let remote = Value::from_bytes(v.to_bytes().unwrap());
        assert!(v.decode::<u32>().is_err());
        assert!(remote.decode::<u32>().is_err());
        assert_eq!(v.decode::<String>().unwrap(), "text");
        // A u8 read back as u64 works on both, since the encodings agree.
        assert_eq!(Value::object(3u8).decode::<u64>().unwrap(), 3);
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![MAGIC],
            vec![MAGIC, FORMAT, VERSIONED, 1, 2],
            vec![MAGIC, FORMAT, 0, 0xdd, 0xff, 0xff, 0xff, 0xff],
            vec![MAGIC, 99, 0, 1],
            b"12a".to_vec(),
            b"-".to_vec(),
            vec![0xff; 64],
        ];
        for bytes in cases {
            let v = Value::from_bytes(bytes);
            assert!(v.decode::<Vec<String>>().is_err());
            let _ = v.as_i64();
        }
    }
}
