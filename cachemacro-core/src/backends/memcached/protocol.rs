//! The memcached binary protocol: 24-byte headers, opcodes, statuses; the encoder, the
//! decoder of a byte stream into frames, and the check that a reply answers its request.
//!
//! No I/O here: connections own the bytes, this module says what they mean. A reply is
//! accepted only for the request it answers (opcode, opaque and, for key-echoing reads, the
//! key), and the decoder's buffer never holds more than the largest legal frame plus one read.

use smallvec::SmallVec;
use std::time::Duration;

pub(crate) const HEADER: usize = 24;
const REQUEST: u8 = 0x80;
const RESPONSE: u8 = 0x81;

/// Opcodes used by the client.
pub(crate) mod op {
    pub(crate) const GET: u8 = 0x00;
    pub(crate) const SET: u8 = 0x01;
    pub(crate) const ADD: u8 = 0x02;
    pub(crate) const DELETE: u8 = 0x04;
    pub(crate) const INCREMENT: u8 = 0x05;
    pub(crate) const DECREMENT: u8 = 0x06;
    pub(crate) const FLUSH: u8 = 0x08;
    pub(crate) const NOOP: u8 = 0x0a;
    pub(crate) const GETK: u8 = 0x0c;
    pub(crate) const GETKQ: u8 = 0x0d;
    pub(crate) const SETQ: u8 = 0x11;
    pub(crate) const SASL_LIST_MECHS: u8 = 0x20;
    pub(crate) const SASL_AUTH: u8 = 0x21;
}

/// Response statuses the client tells apart.
pub(crate) mod status {
    pub(crate) const OK: u16 = 0x0000;
    pub(crate) const NOT_FOUND: u16 = 0x0001;
    pub(crate) const EXISTS: u16 = 0x0002;
    pub(crate) const TOO_LARGE: u16 = 0x0003;
    pub(crate) const NOT_STORED: u16 = 0x0005;
    pub(crate) const NON_NUMERIC: u16 = 0x0006;
    pub(crate) const AUTH_ERROR: u16 = 0x0020;

    /// Whether `status` says the *request* was wrong (arguments the server will not take, a
    /// command it does not know) rather than that the server is failing: such a reply never
    /// counts against the server's health, though the connection is closed after it.
    pub(crate) fn refuses_request(status: u16) -> bool {
        matches!(status, 0x0004 | 0x0081 | 0x0083)
    }
}

/// Appends one request frame to `out`.
pub(crate) fn request(
    out: &mut Vec<u8>,
    opcode: u8,
    opaque: u32,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) {
    let body = extras.len() + key.len() + value.len();
    out.reserve(HEADER + body);
    out.push(REQUEST);
    out.push(opcode);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.push(0); // data type
    out.extend_from_slice(&0u16.to_be_bytes()); // vbucket
    out.extend_from_slice(&(body as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes()); // cas
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// A parsed response header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) opcode: u8,
    pub(crate) key_len: usize,
    pub(crate) extras_len: usize,
    pub(crate) status: u16,
    pub(crate) body_len: usize,
    pub(crate) opaque: u32,
}

impl Header {
    pub(crate) fn parse(b: &[u8; HEADER]) -> Result<Header, String> {
        if b[0] != RESPONSE {
            return Err(format!("bad response magic {:#04x}", b[0]));
        }
        let h = Header {
            opcode: b[1],
            key_len: usize::from(u16::from_be_bytes([b[2], b[3]])),
            extras_len: usize::from(b[4]),
            status: u16::from_be_bytes([b[6], b[7]]),
            body_len: u32::from_be_bytes([b[8], b[9], b[10], b[11]]) as usize,
            opaque: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
        };
        if h.key_len + h.extras_len > h.body_len {
            return Err("response lengths do not add up".into());
        }
        if b[5] != 0 {
            return Err(format!("unknown response data type {:#04x}", b[5]));
        }
        Ok(h)
    }
}

/// One response: header and body, the body held as its extras and key (inline, as short
/// as they usually are) and its value (a buffer of its own, handed on as it is).
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) header: Header,
    /// Extras then key.
    head: SmallVec<[u8; 128]>,
    value: Vec<u8>,
}

impl Response {
    fn new(header: Header, body: &[u8]) -> Response {
        let (head, value) = body.split_at(header.extras_len + header.key_len);
        Response {
            header,
            head: SmallVec::from_slice(head),
            value: value.to_vec(),
        }
    }
    #[cfg(test)]
    pub(crate) fn extras(&self) -> &[u8] {
        &self.head[..self.header.extras_len]
    }
    pub(crate) fn value(&self) -> &[u8] {
        &self.value
    }
    /// The value, without a copy.
    pub(crate) fn into_value(self) -> Vec<u8> {
        self.value
    }
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(self.value()).into_owned()
    }
}

impl Response {
    /// Checks that this reply answers the request sent with `opcode`, `opaque` and `key`:
    /// the same opcode and opaque, and, when it succeeded, a body shaped as that opcode's
    /// replies are (a key-echoing read carries exactly the key asked for). Anything else
    /// means the stream cannot be trusted, and the connection must be closed.
    pub(crate) fn check(&self, opcode: u8, opaque: u32, key: &[u8]) -> Result<(), String> {
        self.check_by(opcode, opaque, |echoed| echoed == key)
    }

    /// [`Response::check`] with the key compared by `same_key` (the async client keeps a
    /// digest of each key sent, not the key).
    pub(crate) fn check_by(
        &self,
        opcode: u8,
        opaque: u32,
        same_key: impl FnOnce(&[u8]) -> bool,
    ) -> Result<(), String> {
        let h = &self.header;
        if h.opaque != opaque || h.opcode != opcode {
            return Err(format!(
                "reply (opcode {:#04x}, request {}) where one to (opcode {opcode:#04x}, request {opaque}) was due",
                h.opcode, h.opaque
            ));
        }
        if h.status != status::OK {
            return Ok(());
        }
        let (extras, key_ok, value_len) = match opcode {
            op::GET => (4, h.key_len == 0, None),
            op::GETK | op::GETKQ => (4, same_key(self.key()), None),
            op::INCREMENT | op::DECREMENT => (0, h.key_len == 0, Some(8)),
            op::SASL_LIST_MECHS | op::SASL_AUTH => (0, h.key_len == 0, None),
            _ => (0, h.key_len == 0, Some(0)),
        };
        let value_ok = value_len.is_none_or(|n| self.value().len() == n);
        if h.extras_len != extras || !key_ok || !value_ok {
            return Err(format!(
                "reply to opcode {opcode:#04x} with {} extras bytes, a {}-byte key and a {}-byte value: not this request's answer",
                h.extras_len,
                h.key_len,
                self.value().len()
            ));
        }
        Ok(())
    }

    /// The key the reply echoes (key-echoing reads).
    pub(crate) fn key(&self) -> &[u8] {
        &self.head[self.header.extras_len..]
    }
}

/// The bytes read from one connection and not yet taken as frames.
///
/// Bounded: a frame is taken as soon as it is whole, a header announcing a body over the
/// limit is an error before its body is read, and consumed bytes are dropped before more are
/// read, so the buffer never holds more than one legal frame plus one read's worth.
pub(crate) struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    max_body: usize,
}

/// Bytes asked of the socket per read.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

impl ReadBuf {
    /// A buffer for replies of at most `max_body` body bytes.
    pub(crate) fn new(max_body: usize) -> ReadBuf {
        ReadBuf {
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            max_body,
        }
    }

    /// Whether every byte read was taken as a frame.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// The next whole frame, if one is buffered; `Err` for bytes that are not a frame this
    /// client accepts (wrong magic, inconsistent lengths, a body over the limit).
    pub(crate) fn next_frame(&mut self) -> Result<Option<Response>, String> {
        let avail = &self.buf[self.start..];
        let Some(head) = avail.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        let header = Header::parse(head)?;
        if header.body_len > self.max_body {
            return Err(format!(
                "response body of {} bytes exceeds the {}-byte limit",
                header.body_len, self.max_body
            ));
        }
        let Some(frame) = avail.get(..HEADER + header.body_len) else {
            return Ok(None);
        };
        let response = Response::new(header, &frame[HEADER..]);
        self.start += HEADER + response.header.body_len;
        if self.is_empty() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(response))
    }

    /// Room for the next read, after dropping the bytes already taken.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK, 0);
        &mut self.buf[len..]
    }

    /// After a read into [`ReadBuf::spare`]: `n` of its bytes were filled.
    pub(crate) fn filled(&mut self, n: usize) {
        let len = self.buf.len() - READ_CHUNK + n;
        self.buf.truncate(len);
    }

    /// Bytes held, consumed or not (for tests of the bound).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.buf.len()
    }
}

/// memcached's expiration field: 0 = never; up to 30 days, relative seconds; beyond, an
/// absolute Unix time. Sub-second lifetimes round up to one second.
pub(crate) fn expiration(ttl: Option<Duration>) -> u32 {
    const MONTH: u64 = 30 * 24 * 3600;
    let Some(ttl) = ttl else { return 0 };
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    let secs = secs.max(1);
    if secs <= MONTH {
        return secs as u32;
    }
    let now = crate::timeout::since_epoch().as_secs();
    u32::try_from(now.saturating_add(secs)).unwrap_or(u32::MAX)
}

/// Extras of SET/ADD: flags, expiration.
pub(crate) fn store_extras(ttl: Option<Duration>) -> [u8; 8] {
    let mut e = [0u8; 8];
    e[4..].copy_from_slice(&expiration(ttl).to_be_bytes());
    e
}

/// Extras of INCREMENT/DECREMENT: delta, initial value, expiration (0 = create if missing).
pub(crate) fn counter_extras(delta: u64, initial: u64) -> [u8; 20] {
    let mut e = [0u8; 20];
    e[..8].copy_from_slice(&delta.to_be_bytes());
    e[8..16].copy_from_slice(&initial.to_be_bytes());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expirations() {
        assert_eq!(expiration(None), 0);
        assert_eq!(expiration(Some(Duration::from_millis(200))), 1);
        assert_eq!(expiration(Some(Duration::from_secs(50))), 50);
        assert!(expiration(Some(Duration::from_secs(31 * 24 * 3600))) > 1_600_000_000);
    }

    #[test]
    fn header_round_trip() {
        let mut out = Vec::new();
        request(&mut out, op::SET, 9, &[1, 2], b"k", b"vv");
        assert_eq!(out.len(), HEADER + 5);
        let mut h = [0u8; HEADER];
        h.copy_from_slice(&out[..HEADER]);
        h[0] = 0x81;
        let parsed = Header::parse(&h).unwrap();
        assert_eq!(
            (
                parsed.opcode,
                parsed.key_len,
                parsed.extras_len,
                parsed.body_len,
                parsed.opaque
            ),
            (op::SET, 1, 2, 5, 9)
        );
        h[0] = 0x80;
        assert!(Header::parse(&h).is_err());
    }

    fn reply(opcode: u8, opaque: u32, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        request(&mut out, opcode, opaque, extras, key, value);
        out[0] = RESPONSE;
        out
    }

    fn parse(bytes: &[u8]) -> Response {
        let mut rb = ReadBuf::new(1 << 20);
        let spare = rb.spare();
        spare[..bytes.len()].copy_from_slice(bytes);
        rb.filled(bytes.len());
        rb.next_frame().unwrap().unwrap()
    }

    #[test]
    fn a_reply_answers_only_its_own_request() {
        let r = parse(&reply(op::GETKQ, 7, &[0; 4], b"a", b"1"));
        assert!(r.check(op::GETKQ, 7, b"a").is_ok());
        // Another key's value, another request, another command: never accepted.
        assert!(r.check(op::GETKQ, 7, b"b").is_err());
        assert!(r.check(op::GETKQ, 8, b"a").is_err());
        assert!(r.check(op::INCREMENT, 7, b"a").is_err());
        // A counter reply must be 8 bytes; a store reply carries no value.
        assert!(parse(&reply(op::INCREMENT, 1, &[], b"", &[0; 8]))
            .check(op::INCREMENT, 1, b"k")
            .is_ok());
        assert!(parse(&reply(op::INCREMENT, 1, &[], b"", b"12"))
            .check(op::INCREMENT, 1, b"k")
            .is_err());
        assert!(parse(&reply(op::SET, 1, &[], b"", b"x"))
            .check(op::SET, 1, b"k")
            .is_err());
        assert!(parse(&reply(op::GETKQ, 1, &[], b"a", b"1"))
            .check(op::GETKQ, 1, b"a")
            .is_err());
    }

    #[test]
    fn the_read_buffer_stays_bounded_while_a_frame_trickles_in() {
        let max_body = 4096;
        let mut rb = ReadBuf::new(max_body);
        let frame = reply(op::GETKQ, 1, &[0; 4], b"k", &[7; 4000]);
        // Frame after frame, each cut in two reads: the buffer never holds more than one
        // frame plus one read.
        for _ in 0..1000 {
            for part in [&frame[..100], &frame[100..]] {
                let spare = rb.spare();
                spare[..part.len()].copy_from_slice(part);
                rb.filled(part.len());
                assert!(rb.held() <= HEADER + max_body + READ_CHUNK, "{}", rb.held());
            }
            assert!(rb.next_frame().unwrap().is_some());
            assert!(rb.is_empty());
        }
        // A header announcing 4 GiB is refused before any of its body is read.
        let mut huge = reply(op::GETKQ, 1, &[0; 4], b"k", b"");
        huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        let spare = rb.spare();
        spare[..HEADER].copy_from_slice(&huge[..HEADER]);
        rb.filled(HEADER);
        assert!(rb.next_frame().is_err());
    }

    #[test]
    fn frames_that_do_not_add_up_are_refused() {
        let mut bad = reply(op::GETKQ, 1, &[0; 4], b"key", b"v");
        bad[4] = 200; // extras longer than the body
        let mut rb = ReadBuf::new(1024);
        let spare = rb.spare();
        spare[..bad.len()].copy_from_slice(&bad);
        rb.filled(bad.len());
        assert!(rb.next_frame().is_err());
        let mut magic = reply(op::GET, 1, &[0; 4], b"", b"v");
        magic[0] = 0x42;
        let mut rb = ReadBuf::new(1024);
        let spare = rb.spare();
        spare[..magic.len()].copy_from_slice(&magic);
        rb.filled(magic.len());
        assert!(rb.next_frame().is_err());
    }
}
