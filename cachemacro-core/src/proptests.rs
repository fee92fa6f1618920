//! Property tests of every decoder of the crate: arbitrary bytes never panic and never make a
//! decoder allocate more than its input justifies; valid inputs round-trip.
//!
//! Decoders covered, and how they are reached:
//!
//! * the value envelope ([`Value::from_bytes`], `decode`, `as_i64`, `as_version`);
//! * the memcached frame decoder (`Header::parse`, `ReadBuf`, `Response::check`) and the
//!   spread header and reassembly (`Spread::parse`, `split`, `join`);
//! * the memcached client end to end, against a scripted in-process server speaking the
//!   binary protocol (a real socket): key mapping (`mkey`, observed on the wire), spread
//!   values written, read back and damaged, and arbitrary reply bytes;
//! * the filesystem entry format, through `FilesystemBackend` on a temporary directory;
//! * keys: identities, memoize keys, version keys, `digest`, `KeyHasher`, `Site`;
//! * configuration: `CacheConfig::from_lookup` (environment values), its serde form, and
//!   `CacheBuilder::from_config`; the redaction of secrets in URLs and messages.
//!

// Helpers shared by the memcached and filesystem sections go unused without those features.
#![cfg_attr(
    not(all(feature = "memcached", feature = "filesystem")),
    allow(dead_code, unused_imports)
)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::keys::{digest, is_version_key, Identity, KeyHasher, Site};
use crate::{CacheBuilder, CacheConfig, Error, Value};

/// `cases` generated inputs (`PROPTEST_CASES` overrides, for a deeper run), no regression
/// files written into the source tree.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs `test` on `cases` inputs from `strategy` (for properties that share a fixture, such
/// as a server, across their cases).
fn check<S>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let mut runner = TestRunner::new(config(cases));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

/// Strings of any chars (control, NUL, non-ASCII included), printable ASCII, or graphic
/// ASCII (what memcached takes as a key), up to `max` chars.
fn any_str(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        vec(any::<char>(), 0..=max).prop_map(String::from_iter),
        proptest::string::string_regex(&format!("[ -~]{{0,{max}}}")).unwrap(),
        proptest::string::string_regex(&format!("[!-~]{{0,{max}}}")).unwrap(),
    ]
    .boxed()
}

/// Byte strings of a length in `len`, filled from a generated seed: as random as
/// `vec(any::<u8>(), len)` but cheap for kilobytes (no value tree per byte).
fn bytes(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    (len, any::<u64>()).prop_map(|(n, seed)| {
        let mut rng = fastrand::Rng::with_seed(seed);
        std::iter::repeat_with(|| rng.u8(..)).take(n).collect()
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Splits `stream` at the `cuts`, then every piece longer than `max` into pieces of `max`.
fn pieces<'a>(stream: &'a [u8], cuts: &[Index], max: usize) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
    at.push(0);
    at.push(stream.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2)
        .flat_map(|w| stream[w[0]..w[1]].chunks(max.max(1)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The value envelope.
// ---------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Record {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: Option<i32>,
    blob: Vec<u8>,
    nested: BTreeMap<String, (bool, i8)>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
enum Tree {
    Leaf(u8),
    Node(Vec<Tree>),
}

fn record() -> impl Strategy<Value = Record> {
    (
        any::<u64>(),
        any_str(20),
        vec(any_str(8), 0..4),
        any::<Option<i32>>(),
        vec(any::<u8>(), 0..32),
        proptest::collection::btree_map(any_str(6), any::<(bool, i8)>(), 0..4),
    )
        .prop_map(|(id, name, tags, score, blob, nested)| Record {
            id,
            name,
            tags,
            score,
            blob,
            nested,
        })
}

/// Bytes biased towards MessagePack markers that announce lengths and nesting.
fn msgpackish() -> impl Strategy<Value = Vec<u8>> {
    let markers = vec![
        0xc4u8, 0xc5, 0xc6, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0x91, 0x9f, 0x81, 0x8f, 0xa3,
        0xc0, 0xc2, 0xc3, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd3, 0xcb, 0xff, 0x00, 0x7f,
    ];
    vec(
        prop_oneof![any::<u8>(), proptest::sample::select(markers)],
        0..48,
    )
}

/// Arbitrary stored bytes: anything, framed values with any payload, decimal-looking text.
fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..64),
        (any::<u8>(), vec(any::<u8>(), 0..12), msgpackish()).prop_map(|(flags, ver, p)| {
            let mut b = vec![0xC5, 0x01, flags & 3];
            b.extend_from_slice(&ver);
            b.extend_from_slice(&p);
            b
        }),
        "[-+]?[0-9]{0,22}".prop_map(String::into_bytes),
    ]
}

/// Decodes `v` as many types; none may panic.
fn decode_as_everything(v: &Value) {
    let _ = v.decode::<i64>();
    let _ = v.decode::<u64>();
    let _ = v.decode::<u8>();
    let _ = v.decode::<f64>();
    let _ = v.decode::<bool>();
    let _ = v.decode::<String>();
    let _ = v.decode::<Vec<u8>>();
    let _ = v.decode::<Vec<String>>();
    let _ = v.decode::<Option<u32>>();
    let _ = v.decode::<(u8, String)>();
    let _ = v.decode::<BTreeMap<String, i64>>();
    let _ = v.decode::<HashMap<u64, Vec<u8>>>();
    let _ = v.decode::<Record>();
    let _ = v.decode::<Tree>();
    let _ = v.decode::<serde_json::Value>();
    let _ = v.clone().into_decoded::<Record>();
    let _ = format!("{v:?}");
}

fn round_trip<T>(x: &T, version: Option<u64>) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + PartialEq + Debug + 'static,
{
    let object = match version {
        Some(v) => Value::object(x.clone()).with_version(v),
        None => Value::object(x.clone()),
    };
    prop_assert_eq!(&object.decode::<T>().unwrap(), x);
    let bytes = object.to_bytes().unwrap();
    // Encoding from a reference writes the same bytes as encoding the object.
    prop_assert_eq!(
        &Value::encoded(x, version).unwrap().to_bytes().unwrap(),
        &bytes
    );
    let back = Value::from_bytes(bytes.clone());
    prop_assert_eq!(back.version(), version);
    prop_assert_eq!(back.to_bytes().unwrap(), bytes);
    prop_assert_eq!(&back.decode::<T>().unwrap(), x);
    prop_assert_eq!(&back.into_decoded::<T>().unwrap(), x);
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn value_from_any_bytes_never_panics_keeps_the_bytes_and_reads_only_a_framed_version(
        bytes in value_bytes(),
    ) {
        let v = Value::from_bytes(bytes.clone());
        let version = match bytes.as_slice() {
            [0xC5, 0x01, flags, rest @ ..] if flags & 1 != 0 && rest.len() >= 8 => {
                Some(u64::from_le_bytes(rest[..8].try_into().unwrap())).filter(|&v| v != 0)
            }
            _ => None,
        };
        prop_assert_eq!(v.version(), version);
        prop_assert_eq!(v.to_bytes().unwrap(), bytes.clone());
        decode_as_everything(&v);
        let int = v.as_i64();
        prop_assert_eq!(v.as_version(), int.map(|i| i as u64).filter(|&i| i != 0));
        // Decimal text is an integer exactly when it parses as one (server-side counters).
        let text = std::str::from_utf8(&bytes).ok();
        let decimal = text.filter(|t| {
            let digits = t.strip_prefix('-').unwrap_or(t);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        });
        if let Some(t) = decimal {
            prop_assert_eq!(int, t.parse::<i64>().ok());
            prop_assert_eq!(v.decode::<i64>().ok(), t.parse::<i64>().ok());
        }
    }

    #[test]
    fn value_objects_round_trip_through_bytes_with_their_version(
        rec in record(),
        int in any::<i64>(),
        big in any::<u64>(),
        small in any::<u8>(),
        text in any_str(40),
        float in any::<f64>().prop_filter("comparable", |f| f.is_finite()),
        list in vec(any::<Option<(u16, String)>>(), 0..5),
        version in prop_oneof![Just(None), (1..=u64::MAX).prop_map(Some)],
    ) {
        round_trip(&rec, version)?;
        round_trip(&int, version)?;
        round_trip(&big, version)?;
        round_trip(&small, version)?;
        round_trip(&text, version)?;
        round_trip(&float, version)?;
        round_trip(&list, version)?;
        // Unversioned integers travel as decimal text; every integer reads back as one.
        if version.is_none() {
            prop_assert_eq!(Value::object(int).to_bytes().unwrap(), int.to_string().into_bytes());
        }
        let back = Value::from_bytes(Value::int(int).with_version(version.unwrap_or(0)).to_bytes().unwrap());
        prop_assert_eq!(back.as_i64(), Some(int));
        prop_assert_eq!(back.as_version(), Some(int as u64).filter(|&v| v != 0));
        // Version 0 tags nothing, whichever way the value was built.
        let zero = Value::from_bytes(Value::encoded(&rec, Some(0)).unwrap().to_bytes().unwrap());
        prop_assert_eq!(zero.version(), None);
        prop_assert_eq!(zero.decode::<Record>().unwrap(), rec);
    }
}

/// Each of these headers claims a length of 4 GiB in a few bytes: decoding must fail without
/// trying to allocate it.
#[test]
fn value_headers_claiming_huge_lengths_are_errors_not_allocations() {
    let framed = |payload: &[u8]| [&[0xC5, 0x01, 0x00][..], payload].concat();
    let huge = [0xff; 4];
    let mut cases = Vec::new();
    // bin32, str32, array32, map32.
    for marker in [0xc6u8, 0xdb, 0xdd, 0xdf] {
        cases.push(framed(&[&[marker][..], &huge].concat()));
        cases.push(framed(
            &[&[marker][..], &huge, &[0x01, 0x02, 0x03]].concat(),
        ));
    }
    // Behind a version, inside an array, as a map value.
    let mut versioned = vec![0xC5, 0x01, 0x01];
    versioned.extend_from_slice(&7u64.to_le_bytes());
    versioned.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
    cases.push(versioned);
    cases.push(framed(&[0x92, 0xdb, 0xff, 0xff, 0xff, 0xff]));
    cases.push(framed(&[0x81, 0xa1, b'k', 0xc6, 0xff, 0xff, 0xff, 0xff]));
    for bytes in cases {
        let v = Value::from_bytes(bytes);
        assert!(v.decode::<Vec<u8>>().is_err());
        assert!(v.decode::<String>().is_err());
        assert!(v.decode::<Vec<String>>().is_err());
        assert!(v.decode::<HashMap<String, String>>().is_err());
        assert!(v.decode::<Record>().is_err());
        assert!(v.decode::<Tree>().is_err());
        assert!(v.decode::<serde_json::Value>().is_err());
        assert_eq!(v.as_i64(), None);
    }
}

#[derive(Deserialize, Clone, Debug)]
#[allow(dead_code)]
struct Nest {
    a: u32,
    kids: Vec<Nest>,
}

const DEEP_CHILD: &str = "CACHEMACRO_PROPTESTS_DEEP_CHILD";

/// A few kilobytes of nested arrays, read as a recursive type (`serde_json::Value`, a tree):
/// an error, not a stack overflow, which aborts the process. rmp-serde stops at depth 1024,
/// and that already takes more than a 2 MiB thread stack in debug builds (700 levels do).
#[test]
fn value_nesting_past_any_sane_depth_is_an_error_not_a_stack_overflow() {
    if std::env::var_os(DEEP_CHILD).is_none() {
        // An overflow aborts the whole process: decode in a child, look at how it ended.
        let me = "proptests::value_nesting_past_any_sane_depth_is_an_error_not_a_stack_overflow";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([me, "--exact", "--include-ignored", "--test-threads=1"])
            .env(DEEP_CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let nested = |depth: usize, level: &[u8], leaf: &[u8]| {
        let mut b = vec![0xC5, 0x01, 0x00];
        for _ in 0..depth {
            b.extend_from_slice(level);
        }
        b.extend_from_slice(leaf);
        Value::from_bytes(b)
    };
    let decoder = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            for depth in [100, 300, 700, 1023, 1025, 100_000] {
                let arrays = nested(depth, &[0x91], &[0x01]);
                let json = arrays.decode::<serde_json::Value>();
                let tree = nested(
                    depth,
                    &[0x81, 0xa4, b'N', b'o', b'd', b'e', 0x91],
                    &[0x81, 0xa4, b'L', b'e', b'a', b'f', 0x01],
                )
                .decode::<Tree>();
                let nest = nested(depth, &[0x92, 0x01, 0x91], &[0x92, 0x01, 0x90]).decode::<Nest>();
                if depth > 1024 {
                    assert!(json.is_err() && tree.is_err() && nest.is_err());
                }
            }
        })
        .unwrap();
    decoder.join().unwrap();
}

// ---------------------------------------------------------------------------------------
// The memcached frame decoder and spread reassembly.
// ---------------------------------------------------------------------------------------

#[cfg(feature = "memcached")]
use crate::backends::memcached::{protocol, spread};

#[cfg(feature = "memcached")]
use protocol::{op, ReadBuf, Response, HEADER, READ_CHUNK};

/// One reply frame to encode.
#[cfg(feature = "memcached")]
#[derive(Debug, Clone)]
struct Frame {
    opcode: u8,
    opaque: u32,
    status: u16,
    extras: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
}

#[cfg(feature = "memcached")]
impl Frame {
    /// The frame as a server sends it: `request()`'s encoding with the response magic and
    /// the status in place of the vbucket.
    fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        protocol::request(
            out,
            self.opcode,
            self.opaque,
            &self.extras,
            &self.key,
            &self.value,
        );
        out[start] = 0x81;
        out[start + 6..start + 8].copy_from_slice(&self.status.to_be_bytes());
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

#[cfg(feature = "memcached")]
const CLIENT_OPCODES: [u8; 13] = [
    op::GET,
    op::SET,
    op::ADD,
    op::DELETE,
    op::INCREMENT,
    op::DECREMENT,
    op::FLUSH,
    op::NOOP,
    op::GETK,
    op::GETKQ,
    op::SETQ,
    op::SASL_LIST_MECHS,
    op::SASL_AUTH,
];

#[cfg(feature = "memcached")]
fn frame(max_value: usize) -> impl Strategy<Value = Frame> {
    (
        prop_oneof![
            proptest::sample::select(CLIENT_OPCODES.to_vec()),
            any::<u8>()
        ],
        any::<u32>(),
        prop_oneof![Just(0u16), Just(1), any::<u16>()],
        prop_oneof![Just(vec![]), vec(any::<u8>(), 4), vec(any::<u8>(), 0..24)],
        vec(any::<u8>(), 0..40),
        prop_oneof![vec(any::<u8>(), 0..16), bytes(0..max_value + 1)],
    )
        .prop_map(|(opcode, opaque, status, extras, key, value)| Frame {
            opcode,
            opaque,
            status,
            extras,
            key,
            value,
        })
}

/// Feeds `stream` to a `ReadBuf` in `pieces` as a connection would (a read only when no
/// whole frame is buffered), checking the bound before and after every read; returns the
/// frames taken and whether the stream was refused.
#[cfg(feature = "memcached")]
fn feed(
    max_body: usize,
    pieces: &[&[u8]],
) -> Result<(Vec<Response>, Option<String>), TestCaseError> {
    let mut rb = ReadBuf::new(max_body);
    let mut fed = 0usize;
    let mut frames = Vec::new();
    let bound = |fed: usize| fed.min(HEADER + max_body) + READ_CHUNK;
    for piece in pieces {
        let spare = rb.spare();
        prop_assert_eq!(spare.len(), READ_CHUNK);
        spare[..piece.len()].copy_from_slice(piece);
        prop_assert!(
            rb.held() <= bound(fed),
            "{} held after {fed} fed",
            rb.held()
        );
        rb.filled(piece.len());
        fed += piece.len();
        prop_assert!(rb.held() <= fed, "{} held after {fed} fed", rb.held());
        loop {
            match rb.next_frame() {
                Ok(Some(r)) => {
                    prop_assert!(r.extras().len() + r.key().len() + r.value().len() <= max_body);
                    frames.push(r);
                }
                Ok(None) => break,
                Err(e) => return Ok((frames, Some(e))),
            }
            prop_assert!(rb.held() <= bound(fed));
        }
    }
    if fed == 0 {
        prop_assert!(rb.is_empty());
    }
    Ok((frames, None))
}

/// Byte streams a confused or hostile server could send: noise, valid frames with bytes
/// flipped, and headers announcing lengths around the limit.
#[cfg(feature = "memcached")]
fn hostile_stream(max_body: usize) -> impl Strategy<Value = Vec<u8>> {
    let lengths = prop_oneof![
        Just(0u32),
        0u32..64,
        Just(max_body as u32),
        Just(max_body as u32 + 1),
        Just(u32::MAX),
        any::<u32>(),
    ];
    prop_oneof![
        vec(any::<u8>(), 0..600),
        (
            vec(frame(300), 1..4),
            vec((any::<Index>(), any::<u8>()), 0..4)
        )
            .prop_map(|(frames, flips)| {
                let mut out = Vec::new();
                for f in &frames {
                    f.encode_into(&mut out);
                }
                for (at, x) in flips {
                    let i = at.index(out.len());
                    out[i] ^= x;
                }
                out
            }),
        (any::<[u8; HEADER]>(), lengths, vec(any::<u8>(), 0..600)).prop_map(
            |(mut head, len, body)| {
                head[0] = 0x81;
                head[5] = 0;
                head[8..12].copy_from_slice(&len.to_be_bytes());
                [&head[..], &body].concat()
            }
        ),
    ]
}

#[cfg(feature = "memcached")]
proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn memcached_header_parse_accepts_exactly_the_consistent_response_headers(
        mut b in any::<[u8; HEADER]>(),
        magic in prop_oneof![Just(0x81u8), any::<u8>()],
        data_type in prop_oneof![Just(0u8), any::<u8>()],
        key_len in prop_oneof![0u16..8, any::<u16>()],
        extras_len in prop_oneof![0u8..8, any::<u8>()],
        body_len in prop_oneof![0u32..300, any::<u32>()],
    ) {
        b[0] = magic;
        b[5] = data_type;
        b[2..4].copy_from_slice(&key_len.to_be_bytes());
        b[4] = extras_len;
        b[8..12].copy_from_slice(&body_len.to_be_bytes());
        let consistent = magic == 0x81
            && data_type == 0
            && u64::from(key_len) + u64::from(extras_len) <= u64::from(body_len);
        match protocol::Header::parse(&b) {
            Ok(h) => {
                prop_assert!(consistent);
                prop_assert_eq!(h.opcode, b[1]);
                prop_assert_eq!(h.key_len, usize::from(key_len));
                prop_assert_eq!(h.extras_len, usize::from(extras_len));
                prop_assert_eq!(h.body_len, body_len as usize);
                prop_assert_eq!(h.status, u16::from_be_bytes([b[6], b[7]]));
                prop_assert_eq!(h.opaque, u32::from_be_bytes([b[12], b[13], b[14], b[15]]));
            }
            Err(_) => prop_assert!(!consistent),
        }
    }

    #[test]
    fn memcached_frames_round_trip_through_the_read_buffer_split_at_any_points(
        frames in vec(frame(300), 0..8),
        big in proptest::option::of(frame(40_000)),
        cuts in vec(any::<Index>(), 0..24),
        read in prop_oneof![Just(READ_CHUNK), 1..=READ_CHUNK, 1usize..64],
        slack in 0usize..64,
    ) {
        // Reads of a few bytes for the small frames; at least 1 kB for the big one.
        let read = if big.is_some() { read.max(1024) } else { read };
        let frames: Vec<Frame> = frames.into_iter().chain(big).collect();
        let mut stream = Vec::new();
        for f in &frames {
            f.encode_into(&mut stream);
        }
        let max_body = frames
            .iter()
            .map(|f| f.extras.len() + f.key.len() + f.value.len())
            .max()
            .unwrap_or(0)
            + slack;
        let (got, refused) = feed(max_body, &pieces(&stream, &cuts, read))?;
        prop_assert_eq!(refused, None);
        prop_assert_eq!(got.len(), frames.len());
        for (r, f) in got.into_iter().zip(&frames) {
            let h = r.header;
            prop_assert_eq!(
                (h.opcode, h.opaque, h.status, h.extras_len, h.key_len),
                (f.opcode, f.opaque, f.status, f.extras.len(), f.key.len())
            );
            prop_assert_eq!(r.extras(), &f.extras[..]);
            prop_assert_eq!(r.key(), &f.key[..]);
            prop_assert_eq!(r.value(), &f.value[..]);
            prop_assert_eq!(r.into_value(), f.value.clone());
        }
    }

    #[test]
    fn memcached_read_buffer_never_panics_and_holds_at_most_one_frame_plus_one_read(
        max_body in prop_oneof![0usize..64, 0usize..4096],
        stream in hostile_stream(300),
        cuts in vec(any::<Index>(), 0..24),
        read in prop_oneof![Just(READ_CHUNK), 1usize..64],
        asked in (proptest::sample::select(CLIENT_OPCODES.to_vec()), any::<u32>(), vec(any::<u8>(), 0..8)),
    ) {
        let (frames, _) = feed(max_body, &pieces(&stream, &cuts, read))?;
        for r in frames {
            let h = r.header;
            prop_assert!(h.extras_len + h.key_len <= h.body_len && h.body_len == r.extras().len() + r.key().len() + r.value().len());
            let _ = r.text();
            let own = r.key().to_vec();
            let _ = r.check(h.opcode, h.opaque, &own);
            let _ = r.check(asked.0, asked.1, &asked.2);
            let _ = r.into_value();
        }
    }

    #[test]
    fn memcached_replies_are_accepted_only_for_their_own_opcode_opaque_and_key(
        f in frame(16),
        asked_opcode in proptest::sample::select(CLIENT_OPCODES.to_vec()),
        same_opcode in any::<bool>(),
        asked_opaque in any::<u32>(),
        same_opaque in any::<bool>(),
        asked_key in vec(any::<u8>(), 0..8),
        same_key in any::<bool>(),
    ) {
        let (got, _) = feed(1 << 16, &[&f.encode()])?;
        let r = &got[0];
        let opcode = if same_opcode { f.opcode } else { asked_opcode };
        let opaque = if same_opaque { f.opaque } else { asked_opaque };
        let key = if same_key { f.key.clone() } else { asked_key };
        let accepted = r.check(opcode, opaque, &key).is_ok();
        if accepted {
            prop_assert_eq!((f.opcode, f.opaque), (opcode, opaque));
        }
        if accepted && f.status == 0 {
            let (el, kl, vl) = (f.extras.len(), f.key.len(), f.value.len());
            match opcode {
                op::GET => prop_assert!(el == 4 && kl == 0),
                op::GETK | op::GETKQ => prop_assert!(el == 4 && f.key == key),
                op::INCREMENT | op::DECREMENT => prop_assert!(el == 0 && kl == 0 && vl == 8),
                op::SASL_LIST_MECHS | op::SASL_AUTH => prop_assert!(el == 0 && kl == 0),
                _ => prop_assert!(el == 0 && kl == 0 && vl == 0),
            }
        }
        // A reply shaped as the answer to exactly this request is accepted.
        let shaped = match f.opcode {
            op::GET => f.extras.len() == 4 && f.key.is_empty(),
            op::GETK | op::GETKQ => f.extras.len() == 4,
            op::INCREMENT | op::DECREMENT => f.extras.is_empty() && f.key.is_empty() && f.value.len() == 8,
            op::SASL_LIST_MECHS | op::SASL_AUTH => f.extras.is_empty() && f.key.is_empty(),
            _ => f.extras.is_empty() && f.key.is_empty() && f.value.is_empty(),
        };
        if f.status != 0 || shaped {
            prop_assert!(r.check(f.opcode, f.opaque, &f.key).is_ok());
        }
    }
}

/// A header announcing more than the limit is refused as soon as the header is in, and a
/// legal but large announced body is buffered only as its bytes arrive.
#[cfg(feature = "memcached")]
#[test]
fn memcached_headers_announcing_huge_bodies_are_refused_before_any_body_is_buffered() {
    let head = |body_len: u32| {
        let mut h = Frame {
            opcode: op::GETKQ,
            opaque: 1,
            status: 0,
            extras: vec![],
            key: vec![],
            value: vec![],
        }
        .encode();
        h[8..12].copy_from_slice(&body_len.to_be_bytes());
        h
    };
    for (max_body, body_len) in [
        (1usize << 20, u32::MAX),
        (1 << 20, (1 << 20) + 1),
        (0, 1),
        (1024, 1025),
        (0, u32::MAX),
    ] {
        let mut rb = ReadBuf::new(max_body);
        let h = head(body_len);
        rb.spare()[..HEADER].copy_from_slice(&h);
        rb.filled(HEADER);
        assert!(rb.next_frame().is_err(), "{body_len} over {max_body}");
        assert_eq!(rb.held(), HEADER);
    }
    // Within a 1 GiB limit, a header announcing (almost) 1 GiB: bytes trickle in, and the
    // buffer holds what arrived, never the announced size.
    let mut rb = ReadBuf::new(1 << 30);
    let mut fed = 0;
    let stream = [head((1 << 30) - 1), vec![7; 3 * READ_CHUNK]].concat();
    for piece in stream.chunks(READ_CHUNK / 2 + 3) {
        rb.spare()[..piece.len()].copy_from_slice(piece);
        rb.filled(piece.len());
        fed += piece.len();
        assert!(rb.next_frame().unwrap().is_none());
        assert_eq!(rb.held(), fed);
    }
}

#[cfg(feature = "memcached")]
fn spread_parts(value: &[u8], chunk: usize) -> (spread::Spread, Vec<Vec<u8>>) {
    let (header, chunks) = spread::Spread::split(value, chunk);
    (spread::Spread::parse(&header).unwrap(), chunks)
}

/// How a spread value's chunks can be damaged between its write and a read.
#[cfg(feature = "memcached")]
#[derive(Debug, Clone, Copy)]
enum Damage {
    Missing,
    Dropped,
    Extra,
    Stale,
    OtherValue,
    Altered,
    Truncated,
    Extended,
    Swapped,
    HeaderId,
    HeaderTotal,
    HeaderChecksum,
    HeaderChunks,
}

#[cfg(feature = "memcached")]
fn damage() -> impl Strategy<Value = Damage> {
    use Damage::*;
    proptest::sample::select(vec![
        Missing,
        Dropped,
        Extra,
        Stale,
        OtherValue,
        Altered,
        Truncated,
        Extended,
        Swapped,
        HeaderId,
        HeaderTotal,
        HeaderChecksum,
        HeaderChunks,
    ])
}

#[cfg(feature = "memcached")]
proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn spread_split_then_join_gives_back_the_value_exactly(
        value in bytes(0..6000),
        chunk in prop_oneof![1usize..64, 1usize..2500],
    ) {
        let (h, chunks) = spread_parts(&value, chunk);
        prop_assert_eq!(h.chunks as usize, chunks.len());
        prop_assert_eq!(chunks.len(), value.len().div_ceil(chunk));
        prop_assert_eq!(h.total, value.len() as u64);
        prop_assert!(chunks.iter().all(|c| c.len() > 8 && c.len() <= 8 + chunk));
        prop_assert_eq!(h.join(chunks.into_iter().map(Some).collect()), Some(value));
    }

    #[test]
    fn spread_a_missing_stale_reordered_or_altered_chunk_is_a_miss_never_a_wrong_value(
        value in bytes(1..5000),
        other in bytes(1..5000),
        chunk in 1usize..1500,
        how in damage(),
        i in any::<Index>(),
        j in any::<Index>(),
        x in 1u8..,
    ) {
        let (mut h, chunks) = spread_parts(&value, chunk);
        let n = chunks.len();
        let (i, j) = (i.index(n), j.index(n));
        let mut got: Vec<Option<Vec<u8>>> = chunks.iter().cloned().map(Some).collect();
        match how {
            Damage::Missing => got[i] = None,
            Damage::Dropped => {
                got.remove(i);
            }
            Damage::Extra => got.push(got[i].clone()),
            // The same bytes, written by an earlier write of the same value.
            Damage::Stale => got[i] = Some(spread_parts(&value, chunk).1[i].clone()),
            Damage::OtherValue => {
                let (_, theirs) = spread_parts(&other, chunk);
                got[i] = Some(theirs[i.min(theirs.len() - 1)].clone());
            }
            Damage::Altered => {
                let c = got[i].as_mut().unwrap();
                let at = j % c.len();
                c[at] ^= x;
            }
            Damage::Truncated => {
                let c = got[i].as_mut().unwrap();
                let to = j % c.len();
                c.truncate(to);
            }
            Damage::Extended => got[i].as_mut().unwrap().push(x),
            Damage::Swapped => {
                prop_assume!(chunks[i] [8..] != chunks[j][8..]);
                got.swap(i, j);
            }
            Damage::HeaderId => h.id ^= u64::from(x),
            Damage::HeaderTotal => h.total ^= u64::from(x),
            Damage::HeaderChecksum => h.checksum ^= u64::from(x),
            Damage::HeaderChunks => h.chunks ^= u32::from(x),
        }
        prop_assert_eq!(h.join(got), None);
    }

    #[test]
    fn spread_parse_and_join_of_arbitrary_bytes_never_panic_or_return_an_unchecked_value(
        header in prop_oneof![
            vec(any::<u8>(), 0..40),
            (any::<u64>(), 0u32..6, prop_oneof![0u64..100_000, 0u64..(1 << 20)], any::<u64>())
                .prop_map(|(id, chunks, total, sum)| {
                    let mut b = vec![0xC5, 0xFF];
                    b.extend_from_slice(&id.to_le_bytes());
                    b.extend_from_slice(&chunks.to_le_bytes());
                    b.extend_from_slice(&total.to_le_bytes());
                    b.extend_from_slice(&sum.to_le_bytes());
                    b
                }),
        ],
        chunks in vec(proptest::option::of(vec(any::<u8>(), 0..40)), 0..6),
    ) {
        let parsed = spread::Spread::parse(&header);
        prop_assert_eq!(parsed.is_some(), header.len() == 30 && header[..2] == [0xC5, 0xFF]);
        if let Some(h) = parsed {
            if let Some(v) = h.join(chunks) {
                prop_assert_eq!(v.len() as u64, h.total);
                prop_assert_eq!(xxhash_rust::xxh3::xxh3_64(&v), h.checksum);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The memcached client end to end, against a scripted server on a real socket.
// ---------------------------------------------------------------------------------------

#[cfg(feature = "memcached")]
mod fake {
    //! A memcached speaking just enough of the binary protocol: a map of keys, every request
    //! recorded, and, when armed, arbitrary bytes in place of the replies to the next batch.

    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
    use std::time::Duration;

    use super::protocol::op;
    use super::Frame;

    /// A request as received.
    #[derive(Debug, Clone)]
    pub(super) struct Seen {
        pub(super) opcode: u8,
        pub(super) key: Vec<u8>,
        pub(super) extras: Vec<u8>,
    }

    #[derive(Default)]
    pub(super) struct State {
        pub(super) store: HashMap<Vec<u8>, Vec<u8>>,
        pub(super) seen: Vec<Seen>,
        /// Sent instead of the replies to the next batch, then the connection is closed.
        pub(super) hostile: Option<Vec<u8>>,
    }

    pub(super) struct Server {
        pub(super) addr: String,
        state: Arc<Mutex<State>>,
        stop: Arc<AtomicBool>,
    }

    impl Server {
        pub(super) fn start() -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let state = Arc::new(Mutex::new(State::default()));
            let stop = Arc::new(AtomicBool::new(false));
            let (st, sp) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if sp.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(conn) = conn {
                        let st = st.clone();
                        std::thread::spawn(move || serve(conn, &st));
                    }
                }
            });
            Server { addr, state, stop }
        }

        pub(super) fn state(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// The requests received since the last call.
        pub(super) fn take_seen(&self) -> Vec<Seen> {
            std::mem::take(&mut self.state().seen)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(&self.addr);
        }
    }

    fn reply(out: &mut Vec<u8>, opcode: u8, opaque: u32, status: u16, key: &[u8], value: &[u8]) {
        let extras: &[u8] = if status == 0 && matches!(opcode, op::GET | op::GETK | op::GETKQ) {
            &[0; 4]
        } else {
            &[]
        };
        Frame {
            opcode,
            opaque,
            status,
            extras: extras.to_vec(),
            key: key.to_vec(),
            value: value.to_vec(),
        }
        .encode_into(out);
    }

    fn serve(mut s: TcpStream, state: &Mutex<State>) {
        let _ = s.set_nodelay(true);
        let mut out = Vec::new();
        loop {
            let mut h = [0u8; 24];
            if s.read_exact(&mut h).is_err() {
                return;
            }
            let key_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let extras_len = usize::from(h[4]);
            let body_len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
            if h[0] != 0x80 || key_len + extras_len > body_len || body_len > 1 << 24 {
                return;
            }
            let (opcode, opaque) = (h[1], u32::from_be_bytes([h[12], h[13], h[14], h[15]]));
            let mut body = vec![0; body_len];
            if s.read_exact(&mut body).is_err() {
                return;
            }
            let extras = body[..extras_len].to_vec();
            let key = body[extras_len..extras_len + key_len].to_vec();
            let value = body[extras_len + key_len..].to_vec();
            let quiet = matches!(opcode, op::GETKQ | op::SETQ);
            let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
            st.seen.push(Seen {
                opcode,
                key: key.clone(),
                extras,
            });
            if st.hostile.is_some() {
                if quiet {
                    continue;
                }
                let bytes = st.hostile.take().unwrap_or_default();
                drop(st);
                // Everything, then a clean close (FIN after the bytes, not a reset).
                let _ = s.write_all(&bytes);
                let _ = s.shutdown(Shutdown::Write);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut sink = [0u8; 4096];
                while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
            match opcode {
                op::GET | op::GETK | op::GETKQ => match st.store.get(&key) {
                    Some(v) => {
                        let echoed: &[u8] = if opcode == op::GET { &[] } else { &key };
                        reply(&mut out, opcode, opaque, 0, echoed, v);
                    }
                    None if opcode == op::GETKQ => {}
                    None => reply(&mut out, opcode, opaque, 1, &[], b"Not found"),
                },
                op::SET | op::SETQ => {
                    st.store.insert(key, value);
                    if opcode == op::SET {
                        reply(&mut out, opcode, opaque, 0, &[], &[]);
                    }
                }
                op::ADD if st.store.contains_key(&key) => {
                    reply(&mut out, opcode, opaque, 2, &[], b"Data exists for key.");
                }
                op::ADD => {
                    st.store.insert(key, value);
                    reply(&mut out, opcode, opaque, 0, &[], &[]);
                }
                op::DELETE => {
                    let status = if st.store.remove(&key).is_some() {
                        0
                    } else {
                        1
                    };
                    reply(&mut out, opcode, opaque, status, &[], &[]);
                }
                op::NOOP => reply(&mut out, opcode, opaque, 0, &[], &[]),
                op::FLUSH => {
                    st.store.clear();
                    reply(&mut out, opcode, opaque, 0, &[], &[]);
                }
                _ => reply(&mut out, opcode, opaque, 0x81, &[], b"Unknown command"),
            }
            drop(st);
            if !quiet {
                if s.write_all(&out).is_err() {
                    return;
                }
                out.clear();
            }
        }
    }
}

#[cfg(feature = "memcached")]
use crate::backends::memcached::{MemcachedBackend, MemcachedOptions};
#[cfg(any(feature = "memcached", feature = "filesystem"))]
use crate::Backend;

/// Item size limit of the client under test: replies of up to 3 kB, chunks of 1 kB.
#[cfg(feature = "memcached")]
const MAX_VALUE: usize = 2048;

#[cfg(feature = "memcached")]
fn memcached_on(server: &fake::Server, prefix: &str, spread: bool) -> MemcachedBackend {
    let opts = MemcachedOptions {
        io_timeout: Duration::from_secs(2),
        retry_timeout: Duration::ZERO,
        dead_timeout: Duration::ZERO,
        max_value_size: MAX_VALUE,
        spread,
        ..MemcachedOptions::default()
    };
    MemcachedBackend::connect(std::slice::from_ref(&server.addr), None, prefix, opts).unwrap()
}

#[cfg(feature = "memcached")]
fn valid_memcached_key(k: &[u8]) -> bool {
    (1..=250).contains(&k.len()) && k.iter().all(u8::is_ascii_graphic)
}

/// Prefixes: none, short, around the 200 bytes past which a hashed key drops it, anything.
#[cfg(feature = "memcached")]
fn prefix() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[!-~]{1,12}",
        "[!-~]{195,205}",
        any_str(12),
    ]
}

/// Keys: empty, short, around the 250-byte limit, anything.
#[cfg(feature = "memcached")]
fn memcached_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        any_str(30),
        "[!-~]{235,260}",
        vec(any::<char>(), 240..300).prop_map(String::from_iter),
    ]
}

#[cfg(feature = "memcached")]
#[test]
fn memcached_any_key_with_any_prefix_goes_out_as_a_valid_deterministic_distinct_key() {
    let server = fake::Server::start();
    check(
        128,
        (prefix(), vec(memcached_key(), 1..6)),
        |(prefix, keys)| {
            let b = memcached_on(&server, &prefix, false);
            server.take_seen();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            prop_assert_eq!(b.get_many(&refs).unwrap().len(), keys.len());
            prop_assert_eq!(b.get_many(&refs).unwrap().len(), keys.len());
            let sent: Vec<Vec<u8>> = server
                .take_seen()
                .into_iter()
                .filter(|s| s.opcode == op::GETKQ)
                .map(|s| s.key)
                .collect();
            prop_assert_eq!(sent.len(), 2 * keys.len());
            let (first, again) = sent.split_at(keys.len());
            prop_assert_eq!(first, again, "the mapping is deterministic");
            let usable_prefix = prefix.len() <= 200 && prefix.bytes().all(|b| b.is_ascii_graphic());
            for (k, m) in keys.iter().zip(first) {
                prop_assert!(
                    valid_memcached_key(m),
                    "{k:?} -> {:?}",
                    String::from_utf8_lossy(m)
                );
                let plain = format!("{prefix}{k}");
                if valid_memcached_key(plain.as_bytes()) {
                    prop_assert_eq!(m, plain.as_bytes());
                } else {
                    // `{prefix}#{32 hex digits}`, the prefix kept whenever it can be.
                    let (head, hash) = m.split_at(m.len() - 33);
                    prop_assert_eq!(hash[0], b'#');
                    prop_assert!(hash[1..]
                        .iter()
                        .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
                    let kept: &[u8] = if usable_prefix {
                        prefix.as_bytes()
                    } else {
                        b""
                    };
                    prop_assert_eq!(head, kept);
                }
            }
            for i in 0..keys.len() {
                for j in 0..i {
                    if keys[i] != keys[j] {
                        prop_assert_ne!(&first[i], &first[j], "{:?} and {:?}", keys[i], keys[j]);
                    }
                }
            }
            Ok(())
        },
    );
}

#[cfg(feature = "memcached")]
#[test]
fn memcached_spread_values_round_trip_and_a_damaged_chunk_is_a_miss_never_a_wrong_value() {
    let server = fake::Server::start();
    let b = memcached_on(&server, "sp:", true);
    check(
        128,
        (
            memcached_key(),
            (1025usize..5000, any::<u64>(), any::<u64>()).prop_map(|(n, a, b)| {
                let fill = |seed| {
                    let mut rng = fastrand::Rng::with_seed(seed);
                    std::iter::repeat_with(|| rng.u8(..))
                        .take(n)
                        .collect::<Vec<u8>>()
                };
                (fill(a), fill(b))
            }),
            0u8..7,
            any::<Index>(),
            any::<Index>(),
            1u8..,
        ),
        |(key, (value, older), how, i, j, x)| {
            server.state().store.clear();
            // An older value of the same size first: its chunks have the same keys.
            b.set(&key, Value::from_bytes(older), None).unwrap();
            let stale = server.state().store.clone();
            server.take_seen();
            b.set(&key, Value::from_bytes(value.clone()), None).unwrap();
            let seen = server.take_seen();
            let chunk_keys: Vec<Vec<u8>> = seen
                .iter()
                .filter(|s| s.opcode == op::SETQ)
                .map(|s| s.key.clone())
                .collect();
            let main: Vec<&[u8]> = seen
                .iter()
                .filter(|s| s.opcode == op::SET)
                .map(|s| &s.key[..])
                .collect();
            prop_assert_eq!(main.len(), 1);
            prop_assert_eq!(chunk_keys.len(), value.len().div_ceil(1024));
            for k in &chunk_keys {
                prop_assert!(valid_memcached_key(k) && k.starts_with(b"sp:#") && k != main[0]);
            }
            let read = |b: &MemcachedBackend| b.get(&key).unwrap().map(|v| v.to_bytes().unwrap());
            prop_assert_eq!(read(&b), Some(value.clone()));

            let n = chunk_keys.len();
            let (i, j) = (&chunk_keys[i.index(n)], &chunk_keys[j.index(n)]);
            {
                let mut st = server.state();
                let store = &mut st.store;
                match how {
                    0 => {}
                    1 => {
                        store.remove(i);
                    }
                    2 => {
                        store.insert(i.clone(), stale[i].clone());
                    }
                    3 => {
                        let c = store.get_mut(i).unwrap();
                        let at = usize::from(x) % c.len();
                        c[at] ^= x;
                    }
                    4 => {
                        let c = store.get_mut(i).unwrap();
                        c.truncate(usize::from(x) % c.len());
                    }
                    5 => store.get_mut(i).unwrap().push(x),
                    _ => {
                        let (a, c) = (store[i].clone(), store[j].clone());
                        prop_assume!(a[8..] != c[8..]);
                        store.insert(i.clone(), c);
                        store.insert(j.clone(), a);
                    }
                }
            }
            let expected = (how == 0).then_some(value);
            prop_assert_eq!(read(&b), expected);
            Ok(())
        },
    );
}

/// What the client was asked to do while the server sent hostile bytes.
#[cfg(feature = "memcached")]
#[derive(Debug, Clone, Copy)]
enum Call {
    Get,
    Inc,
    Set,
}

#[cfg(feature = "memcached")]
#[test]
fn memcached_client_survives_arbitrary_reply_bytes_and_accepts_only_the_answer_due() {
    let server = fake::Server::start();
    let b = memcached_on(&server, "", false);
    // Close the probe's pooled connection: each case starts on a fresh one (opaques 1, 2).
    server.state().hostile = Some(b"x".to_vec());
    let _ = b.get("k");
    // Replies a fresh connection would get, mutated.
    let due = |call: Call, value: Vec<u8>| -> Vec<u8> {
        let mut out = Vec::new();
        let mut push = |opcode, opaque, extras: Vec<u8>, key: &[u8], value: Vec<u8>| {
            Frame {
                opcode,
                opaque,
                status: 0,
                extras,
                key: key.to_vec(),
                value,
            }
            .encode_into(&mut out)
        };
        match call {
            Call::Get => {
                push(op::GETKQ, 1, vec![0; 4], b"k", value);
                push(op::NOOP, 2, vec![], b"", vec![]);
            }
            Call::Inc => push(op::INCREMENT, 1, vec![], b"", value),
            Call::Set => push(op::SET, 1, vec![], b"", vec![]),
        }
        out
    };
    let calls = proptest::sample::select(vec![Call::Get, Call::Inc, Call::Set]);
    let bytes = (
        calls,
        prop_oneof![
            hostile_stream(MAX_VALUE).prop_map(|b| (b, None)),
            (
                prop_oneof![vec(any::<u8>(), 0..64), vec(any::<u8>(), 8)],
                vec((any::<Index>(), any::<u8>()), 0..3),
                proptest::option::of(any::<Index>()),
            )
                .prop_map(|(v, flips, cut)| (v, Some((flips, cut)))),
        ],
    );
    check(256, bytes, |(call, (raw, mutate))| {
        let bytes = match mutate {
            None => raw,
            Some((flips, cut)) => {
                let mut out = due(call, raw);
                for (at, x) in flips {
                    let i = at.index(out.len());
                    out[i] ^= x;
                }
                if let Some(cut) = cut {
                    out.truncate(cut.index(out.len() + 1));
                }
                out
            }
        };
        server.state().hostile = Some(bytes.clone());
        let started = std::time::Instant::now();
        // The first frame of the bytes, as the client's decoder takes it.
        let first = || {
            let mut rb = ReadBuf::new(MAX_VALUE + 1024);
            let n = bytes.len().min(READ_CHUNK);
            rb.spare()[..n].copy_from_slice(&bytes[..n]);
            rb.filled(n);
            rb.next_frame().ok().flatten()
        };
        match call {
            Call::Get => {
                if let Some(v) = b.get("k").unwrap_or(None) {
                    let r = first().expect("a value without a reply");
                    prop_assert!(r.check(op::GETKQ, 1, b"k").is_ok() && r.header.status == 0);
                    prop_assert_eq!(v.to_bytes().unwrap(), r.value().to_vec());
                }
            }
            Call::Inc => {
                if let Ok(n) = b.inc("k", 1) {
                    let r = first().expect("a count without a reply");
                    prop_assert!(r.check(op::INCREMENT, 1, b"k").is_ok() && r.header.status == 0);
                    let count = u64::from_be_bytes(r.value().try_into().unwrap());
                    prop_assert_eq!(n, i64::try_from(count).unwrap_or(i64::MAX));
                }
            }
            Call::Set => {
                if b.set("k", Value::int(1), None).is_ok() {
                    let r = first().expect("a stored value without a reply");
                    prop_assert!(r.check(op::SET, 1, b"k").is_ok() && r.header.status == 0);
                }
            }
        }
        // Bounded by the 2 s I/O deadline (plus slack for a loaded machine), whatever came.
        prop_assert!(started.elapsed() < Duration::from_secs(3));
        // Whatever was left armed (the call failed before reaching the server) is disarmed.
        server.state().hostile = None;
        Ok(())
    });
}

/// A spread header is 30 bytes; the chunks it names cost one request each. A header claiming
/// more chunks than its total takes (up to `u32::MAX`) is not fetched at all, and `join`
/// allocates nothing before the chunks were checked against the header.
#[cfg(feature = "memcached")]
#[test]
fn memcached_a_spread_header_costs_no_more_requests_than_its_total_justifies() {
    let server = fake::Server::start();
    let b = memcached_on(&server, "", false);
    let mut header = vec![0xC5, 0xFF];
    header.extend_from_slice(&7u64.to_le_bytes());
    header.extend_from_slice(&200_000u32.to_le_bytes()); // chunks claimed
    header.extend_from_slice(&10u64.to_le_bytes()); // total: 10 bytes
    header.extend_from_slice(&0u64.to_le_bytes());
    server.state().store.insert(b"k".to_vec(), header.clone());
    server.take_seen();
    // Not a header this cache could have written: the bytes as stored (which decode as no
    // value), never a reassembled one.
    let read = b.get("k").unwrap_or(None).map(|v| v.to_bytes().unwrap());
    assert!(read.is_none() || read == Some(header), "{read:?}");
    let requests = server
        .take_seen()
        .iter()
        .filter(|s| s.opcode == op::GETKQ)
        .count();
    assert!(requests <= 2, "{requests} requests for a 10-byte value");
}

/// memcached's expiration field for a TTL beyond 30 days is an absolute time: a very long
/// TTL must not wrap around into the past (an entry expired as it is written).
#[cfg(feature = "memcached")]
#[test]
fn memcached_a_ttl_of_any_length_never_expires_in_the_past() {
    let server = fake::Server::start();
    let b = memcached_on(&server, "", false);
    for ttl in [Duration::from_secs(u64::MAX), Duration::MAX] {
        server.take_seen();
        b.set("k", Value::int(1), Some(ttl)).unwrap();
        let seen = server.take_seen();
        let set = seen.iter().find(|s| s.opcode == op::SET).unwrap();
        let exp = u32::from_be_bytes(set.extras[4..8].try_into().unwrap());
        assert!(
            exp == 0 || u64::from(exp) >= now_ms() / 1000,
            "expiration {exp}"
        );
    }
}

/// `max_value_size` is a public knob; `usize::MAX` ("no limit") must not overflow the
/// reply buffer's limit (`max_value_size + 1024` in `Conn::open`).
#[cfg(feature = "memcached")]
#[test]
fn memcached_the_largest_max_value_size_does_not_overflow_the_reply_limit() {
    let server = fake::Server::start();
    let opts = MemcachedOptions {
        max_value_size: usize::MAX,
        ..MemcachedOptions::default()
    };
    let b = MemcachedBackend::connect(std::slice::from_ref(&server.addr), None, "", opts).unwrap();
    server.state().store.insert(b"k".to_vec(), vec![b'x'; 4096]);
    assert_eq!(
        b.get("k").unwrap().map(|v| v.to_bytes().unwrap()),
        Some(vec![b'x'; 4096])
    );
}

// ---------------------------------------------------------------------------------------
// The filesystem entry format.
// ---------------------------------------------------------------------------------------

#[cfg(feature = "filesystem")]
mod fs_support {
    use std::path::{Path, PathBuf};

    /// A directory removed when dropped.
    pub(super) struct TempDir(pub(super) PathBuf);

    impl TempDir {
        pub(super) fn new(tag: &str) -> TempDir {
            TempDir(std::env::temp_dir().join(format!(
                "cachemacro-proptests-{}-{tag}-{:016x}",
                std::process::id(),
                fastrand::u64(..)
            )))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Where the backend keeps `key`: the 128-bit hash of the key in hex.
    pub(super) fn entry_path(dir: &Path, key: &str) -> PathBuf {
        dir.join(format!(
            "{:032x}",
            xxhash_rust::xxh3::xxh3_128(key.as_bytes())
        ))
    }

    pub(super) const MAGIC: &[u8; 6] = b"CMFS1\0";
    pub(super) const HEADER: usize = 18;

    /// An entry file: magic, expiry (ms since the epoch, 0 = never, LE), key length (LE u32),
    /// key, value.
    pub(super) fn entry(key: &[u8], key_len: u32, expires: u64, value: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&expires.to_le_bytes());
        out.extend_from_slice(&key_len.to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value);
        out
    }

    /// (expiry, key, value) of an entry file, if it has the shape.
    pub(super) fn parse(b: &[u8]) -> Option<(u64, &[u8], &[u8])> {
        if b.len() < HEADER || &b[..6] != MAGIC {
            return None;
        }
        let expires = u64::from_le_bytes(b[6..14].try_into().ok()?);
        let key_len = u32::from_le_bytes(b[14..18].try_into().ok()?) as usize;
        let key = b.get(HEADER..HEADER.checked_add(key_len)?)?;
        Some((expires, key, &b[HEADER + key_len..]))
    }
}

#[cfg(feature = "filesystem")]
use crate::backends::filesystem::FilesystemBackend;

/// Crafted entry files, described as data so that the key under test can be filled in.
#[cfg(feature = "filesystem")]
#[derive(Debug, Clone)]
struct Crafted {
    other_key: Option<String>,
    key_len: Option<u32>,
    expires: u64,
    value: Vec<u8>,
    cut: Option<Index>,
}

#[cfg(feature = "filesystem")]
fn crafted(now: u64) -> impl Strategy<Value = Crafted> {
    const HOUR: u64 = 3_600_000;
    let expiry = prop_oneof![
        Just(0u64),
        Just(1),
        0..now - HOUR,
        now + HOUR..now + 1000 * 24 * HOUR,
        (now + HOUR)..(1 << 62),
    ];
    (
        proptest::option::of(any_str(12)),
        proptest::option::of(prop_oneof![any::<u32>(), 0u32..40]),
        expiry,
        value_bytes(),
        proptest::option::of(any::<Index>()),
    )
        .prop_map(|(other_key, key_len, expires, value, cut)| Crafted {
            other_key,
            key_len,
            expires,
            value,
            cut,
        })
}

#[cfg(feature = "filesystem")]
#[test]
fn filesystem_any_file_contents_never_panic_and_only_this_keys_live_entry_is_a_hit() {
    use fs_support::*;
    let dir = TempDir::new("contents");
    let b = FilesystemBackend::open(&dir.0, 100_000).unwrap();
    let now = now_ms();
    let contents = prop_oneof![
        vec(any::<u8>(), 0..64).prop_map(Err),
        crafted(now).prop_map(Ok),
    ];
    check(256, (any_str(16), contents), |(key, contents)| {
        let bytes = match contents {
            Err(noise) => noise,
            Ok(c) => {
                let k = c.other_key.clone().unwrap_or_else(|| key.clone());
                let len = c.key_len.unwrap_or(k.len() as u32);
                let mut e = entry(k.as_bytes(), len, c.expires, &c.value);
                if let Some(cut) = c.cut {
                    e.truncate(cut.index(e.len() + 1));
                }
                e
            }
        };
        let path = entry_path(&dir.0, &key);
        std::fs::write(&path, &bytes).unwrap();
        let expected = parse(&bytes)
            .filter(|(expires, k, _)| *k == key.as_bytes() && (*expires == 0 || *expires > now))
            .map(|(_, _, v)| v.to_vec());
        let got = b.get(&key).unwrap().map(|v| v.to_bytes().unwrap());
        prop_assert_eq!(got, expected);
        // Counting on it and deleting it never panic either.
        let _ = b.inc(&key, 1);
        let _ = b.delete(&key);
        Ok(())
    });
}

#[cfg(feature = "filesystem")]
#[test]
fn filesystem_entries_round_trip_with_their_expiry_and_are_misses_for_other_keys() {
    use fs_support::*;
    let dir = TempDir::new("round-trip");
    let b = FilesystemBackend::open(&dir.0, 100_000).unwrap();
    const YEAR_MS: u64 = 365 * 24 * 3_600_000;
    let ttl = prop_oneof![
        Just(None),
        (1000u64..100 * YEAR_MS).prop_map(|ms| Some(Duration::from_millis(ms))),
        (1u64..(1 << 40)).prop_map(|s| Some(Duration::from_secs(s))),
    ];
    check(
        256,
        (any_str(40), any_str(40), value_bytes(), ttl),
        |(key, other, value, ttl)| {
            prop_assume!(key != other);
            let before = now_ms();
            b.set(&key, Value::from_bytes(value.clone()), ttl).unwrap();
            let after = now_ms();
            let raw = std::fs::read(entry_path(&dir.0, &key)).unwrap();
            let (expires, k, v) = parse(&raw).expect("an entry file");
            prop_assert_eq!(k, key.as_bytes());
            prop_assert_eq!(v, &value[..]);
            match ttl {
                None => prop_assert_eq!(expires, 0),
                Some(t) => {
                    let ms = t.as_millis() as u64;
                    prop_assert!((before + ms..=after + ms).contains(&expires), "{expires}");
                }
            }
            let got = b.get(&key).unwrap().map(|v| v.to_bytes().unwrap());
            prop_assert_eq!(got, Some(value));
            // The same file where another key's entry would be: not that key's entry.
            std::fs::write(entry_path(&dir.0, &other), &raw).unwrap();
            prop_assert!(b.get(&other).unwrap().is_none());
            let _ = std::fs::remove_file(entry_path(&dir.0, &other));
            Ok(())
        },
    );
}

/// A TTL longer than the clock can count must mean "far in the future", not wrap around.
#[cfg(feature = "filesystem")]
#[test]
fn filesystem_a_ttl_of_any_length_keeps_the_entry() {
    let dir = fs_support::TempDir::new("huge-ttl");
    let b = FilesystemBackend::open(&dir.0, 100).unwrap();
    for ttl in [
        Duration::from_secs(u64::MAX),
        Duration::MAX,
        Duration::from_secs(1 << 54),
    ] {
        b.set("k", Value::int(1), Some(ttl)).unwrap();
        assert!(b.get("k").unwrap().is_some(), "{ttl:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Keys.
// ---------------------------------------------------------------------------------------

fn printable_key(k: &str) -> bool {
    k.len() <= 250 && k.bytes().all(|b| b.is_ascii_graphic())
}

fn make_name(which: u8) -> Option<fn(&str) -> String> {
    match which {
        0 => None,
        1 => Some(|s| s.to_uppercase()),
        2 => Some(|s| format!("{s}\n\0{s}")),
        3 => Some(|_| String::new()),
        _ => Some(|s| format!("{}{s}", "é".repeat(300))),
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn keys_of_any_identity_are_at_most_250_printable_bytes_and_digest_as_their_strings(
        path in prop_oneof![any_str(60), any_str(400)],
        generics in vec(any_str(30), 0..4),
        source in any::<Option<u64>>(),
        naming in 0u8..5,
        args in vec(any::<u64>(), 1..4),
    ) {
        let generics: Vec<&str> = generics.iter().map(String::as_str).collect();
        let make = || Identity::new(&path, &generics, source, make_name(naming));
        let id: &'static Identity = Box::leak(Box::new(make()));
        prop_assert!(id.name().len() <= crate::keys::MAX_NAME && printable_key(id.name()));
        let vk = id.version_key();
        prop_assert!(printable_key(vk) && is_version_key(vk), "{vk}");
        prop_assert_eq!(digest(vk), id.version_digest());
        let twin: &'static Identity = Box::leak(Box::new(make()));
        prop_assert_eq!(twin.version_key(), vk);
        for a in args {
            let k = id.call(|h| a.hash(h));
            let s = k.to_string();
            prop_assert!(printable_key(&s), "{s}");
            let name = format!("{}:", id.name());
            prop_assert!(s.starts_with(&name), "{s} does not start with {name}");
            prop_assert!(!is_version_key(&s));
            prop_assert_eq!(digest(&s), k.digest());
            prop_assert_eq!(twin.call(|h| a.hash(h)).to_string(), s);
        }
    }

    #[test]
    fn digest_of_any_string_never_panics_and_memo_shaped_keys_differ_by_their_hash(
        s in any_str(80),
        prefix in any_str(20),
        h1 in any::<u128>(),
        h2 in any::<u128>(),
    ) {
        prop_assert_eq!(digest(&s), digest(&s));
        let k1 = format!("{prefix}:{h1:032x}");
        let k2 = format!("{prefix}:{h2:032x}");
        prop_assert_eq!(digest(&k1) == digest(&k2), h1 == h2);
        // Upper-case hex is not the memoize shape: still digested, without panicking.
        let _ = digest(&format!("{prefix}:{h1:032X}"));
    }

    #[test]
    fn is_version_key_accepts_exactly_the_version_key_shape(
        s in prop_oneof![
            any_str(40),
            "[a-z:]{0,6}:[0-9a-fA-FgG:]{14,18}:memver",
            "[a-z:]{0,6}[0-9a-f]{16}:memver",
            "[é:]{0,4}:[0-9a-f]{16}:memver",
        ],
    ) {
        let expected = s.strip_suffix(":memver").is_some_and(|rest| {
            let b = rest.as_bytes();
            b.len() >= 17 && b[b.len() - 17] == b':' && b[b.len() - 16..].iter().all(u8::is_ascii_hexdigit)
        });
        prop_assert_eq!(is_version_key(&s), expected);
    }

    #[test]
    fn key_hasher_digest_does_not_depend_on_how_the_bytes_are_split(
        bytes in vec(any::<u8>(), 0..400),
        cuts in vec(any::<Index>(), 0..12),
    ) {
        let mut whole = KeyHasher::default();
        whole.write(&bytes);
        let mut split = KeyHasher::default();
        for p in pieces(&bytes, &cuts, usize::MAX) {
            split.write(p);
        }
        prop_assert_eq!(whole.finish128(), split.finish128());
        prop_assert_eq!(whole.finish(), whole.finish128() as u64);
    }

    #[test]
    fn site_identity_of_any_type_name_gives_valid_keys_and_is_stable(
        instance in prop_oneof![
            any_str(80),
            "([a-z<>:]|->|::|\\{\\{closure\\}\\}){0,30}",
        ],
        method in "[a-z_]{1,12}",
        self_ty in proptest::option::of(any_str(40)),
        generics in vec(any_str(20), 0..3),
    ) {
        let site = Site::new(leak(method), None, None);
        let instance = leak(instance);
        let self_ty = self_ty.map(leak);
        let generics: Vec<&'static str> = generics.into_iter().map(leak).collect();
        let id = site.identity(instance, self_ty, &generics);
        prop_assert!(printable_key(id.version_key()) && is_version_key(id.version_key()));
        let key = id.call(|_| ()).to_string();
        prop_assert!(printable_key(&key), "{key}");
        prop_assert!(std::ptr::eq(id, site.identity(instance, self_ty, &generics)));
    }
}

// ---------------------------------------------------------------------------------------
// Configuration and secrets.
// ---------------------------------------------------------------------------------------

const VARS: [&str; 16] = [
    "CACHE_TYPE",
    "CACHE_DEFAULT_TIMEOUT",
    "CACHE_THRESHOLD",
    "CACHE_KEY_PREFIX",
    "CACHE_MEMCACHED_SERVERS",
    "CACHE_MEMCACHED_USERNAME",
    "CACHE_MEMCACHED_PASSWORD",
    "CACHE_REDIS_URL",
    "CACHE_REDIS_HOST",
    "CACHE_REDIS_PORT",
    "CACHE_REDIS_PASSWORD",
    "CACHE_REDIS_DB",
    "CACHE_DIR",
    "MEMCACHIER_SERVERS",
    "MEMCACHIER_USERNAME",
    "MEMCACHIER_PASSWORD",
];

fn env_value() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        any_str(24),
        "[ \t]{0,2}[0-9]{1,25}[ \t\n]{0,2}",
        "-[0-9]{1,4}",
        "[a-z]{1,8}(:[0-9]{1,5})?( *, *[a-z]{0,8}(:[0-9]{1,5})?){0,3}",
        proptest::sample::select(vec![
            "simple".to_owned(),
            " Memcached ".to_owned(),
            "redis".to_owned(),
            "filesystem".to_owned(),
            "null".to_owned(),
            "SPREADSASLMEMCACHED".to_owned(),
        ]),
    ])
}

fn split_servers_model(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value as J;
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(J::from),
        any::<u64>().prop_map(J::from),
        any::<f64>().prop_map(J::from),
        any_str(20).prop_map(J::String),
        "[a-z]{1,6}:[0-9]{1,5}(, *[a-z]{1,6}:[0-9]{1,5}){0,2}".prop_map(J::String),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| vec(inner, 0..4).prop_map(J::Array))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn config_from_any_variables_never_panics_and_numbers_parse_or_name_their_variable(
        values in vec(env_value(), VARS.len()),
    ) {
        let env: HashMap<&str, Option<String>> = VARS.iter().copied().zip(values).collect();
        let get = |name: &str| env.get(name).cloned().flatten();
        let result = CacheConfig::from_lookup(|name| Ok(get(name)));
        fn bad<T: std::str::FromStr>(v: Option<String>) -> bool {
            v.is_some_and(|s| s.trim().parse::<T>().is_err())
        }
        let first_bad = [
            ("CACHE_DEFAULT_TIMEOUT", bad::<u64>(get("CACHE_DEFAULT_TIMEOUT"))),
            ("CACHE_THRESHOLD", bad::<usize>(get("CACHE_THRESHOLD"))),
            ("CACHE_REDIS_PORT", bad::<u16>(get("CACHE_REDIS_PORT"))),
            ("CACHE_REDIS_DB", bad::<u32>(get("CACHE_REDIS_DB"))),
        ]
        .into_iter()
        .find(|(_, bad)| *bad)
        .map(|(name, _)| name);
        match (result, first_bad) {
            (Err(Error::Config { var, .. }), Some(name)) => prop_assert_eq!(var, name),
            (Err(e), _) => prop_assert!(false, "unexpected error {e}"),
            (Ok(_), Some(name)) => prop_assert!(false, "{name} accepted"),
            (Ok(c), None) => {
                let num = |name: &str| get(name).map(|s| s.trim().to_owned());
                prop_assert_eq!(c.cache_default_timeout, num("CACHE_DEFAULT_TIMEOUT").map(|s| s.parse().unwrap()));
                prop_assert_eq!(c.cache_threshold, num("CACHE_THRESHOLD").map(|s| s.parse().unwrap()));
                prop_assert_eq!(c.cache_redis_port, num("CACHE_REDIS_PORT").map(|s| s.parse().unwrap()));
                prop_assert_eq!(c.cache_redis_db, num("CACHE_REDIS_DB").map(|s| s.parse().unwrap()));
                prop_assert_eq!(&c.cache_redis_url, &get("CACHE_REDIS_URL"));
                prop_assert_eq!(&c.cache_dir, &get("CACHE_DIR"));
                let memcachier = get("CACHE_TYPE").is_none() && get("MEMCACHIER_SERVERS").is_some();
                if memcachier {
                    prop_assert_eq!(c.cache_type.as_deref(), Some("saslmemcached"));
                    prop_assert_eq!(&c.cache_memcached_servers, &get("MEMCACHIER_SERVERS").map(|s| split_servers_model(&s)));
                    prop_assert_eq!(&c.cache_memcached_password, &get("MEMCACHIER_PASSWORD"));
                } else {
                    prop_assert_eq!(&c.cache_type, &get("CACHE_TYPE"));
                    prop_assert_eq!(&c.cache_memcached_servers, &get("CACHE_MEMCACHED_SERVERS").map(|s| split_servers_model(&s)));
                    prop_assert_eq!(&c.cache_memcached_password, &get("CACHE_MEMCACHED_PASSWORD"));
                }
                let servers = c.cache_memcached_servers.clone().unwrap_or_default();
                prop_assert!(servers.iter().all(|s| !s.is_empty() && s.trim() == s && !s.contains(',')));
                // Choosing the backend from any configuration never panics (nothing is built).
                let _ = CacheBuilder::from_config(c.clone());
                let _ = format!("{c:?}");
            }
        }
    }

    #[test]
    fn config_deserializes_from_any_json_without_panicking_and_splits_server_strings(
        bytes in vec(any::<u8>(), 0..80),
        fields in vec((proptest::sample::select(VARS[..13].to_vec()), any::<bool>(), json_value()), 0..6),
    ) {
        let _ = serde_json::from_slice::<CacheConfig>(&bytes);
        let mut object = serde_json::Map::new();
        for (name, upper, value) in fields {
            let name = if upper { name.to_owned() } else { name.to_ascii_lowercase() };
            object.insert(name, value);
        }
        let servers = ["CACHE_MEMCACHED_SERVERS", "cache_memcached_servers"]
            .iter()
            .filter_map(|n| object.get(*n))
            .filter_map(|v| v.as_str())
            .map(split_servers_model)
            .collect::<Vec<_>>();
        let parsed = serde_json::from_value::<CacheConfig>(serde_json::Value::Object(object.clone()));
        // Both spellings of one field given at once is a duplicate; otherwise a string of
        // servers is split on commas.
        if let (Ok(c), [one]) = (&parsed, servers.as_slice()) {
            prop_assert_eq!(c.cache_memcached_servers.as_ref(), Some(one));
        }
        if let Ok(c) = parsed {
            let _ = CacheBuilder::from_config(c);
        }
    }

    #[test]
    fn redacted_urls_never_show_the_password(
        scheme in "[a-z]{1,8}",
        user in "[A-Za-z0-9._~-]{0,8}",
        pass in "[^?#]{1,16}",
        host in "[a-z0-9.-]{1,12}(:[0-9]{1,5})?",
        path in "(/[a-z0-9]{0,6}){0,2}",
        query in "(\\?[a-z=@&#:]{0,10})?",
        lone in any::<bool>(),
    ) {
        // `scheme://user:pass@host…`, or a lone `scheme://pass@host…` (read as a password).
        let lone = lone && !pass.contains(':');
        let url = if lone {
            format!("{scheme}://{pass}@{host}{path}{query}")
        } else {
            format!("{scheme}://{user}:{pass}@{host}{path}{query}")
        };
        let shown_user = if lone { "" } else { user.as_str() };
        prop_assert_eq!(
            crate::redact::url(&url),
            format!("{scheme}://{shown_user}:***@{host}{path}{query}")
        );
        prop_assert_eq!(crate::redact::url_password(&url), Some(pass.as_str()));
    }

    #[test]
    fn redaction_of_any_text_never_panics_and_scrubbed_messages_hold_no_secret(
        text in any_str(60),
        msg in any_str(60),
        secrets in vec("[^*]{0,6}", 0..4),
    ) {
        let shown = crate::redact::url(&text);
        if !text.contains("://") {
            prop_assert_eq!(&shown, &text);
        }
        let _ = crate::redact::url_password(&text);
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let msg = format!("{msg}{}", secrets.concat());
        let scrubbed = crate::redact::scrub(&msg, &refs);
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            prop_assert!(!scrubbed.contains(s.as_str()), "{s:?} in {scrubbed:?}");
        }
    }
}
