//! The memcached binary protocol: 24-byte headers, opcodes, statuses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        Ok(h)
    }
}

/// One response: header and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) header: Header,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn value(&self) -> &[u8] {
        let h = &self.header;
        &self.body[h.extras_len + h.key_len..]
    }
    pub(crate) fn into_value(mut self) -> Vec<u8> {
        let start = self.header.extras_len + self.header.key_len;
        self.body.drain(..start);
        self.body
    }
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(self.value()).into_owned()
    }
}

/// memcached's expiration field: 0 = never; up to 30 days, relative seconds; beyond, an
/// absolute Unix time. Sub-second lifetimes round up to one second.
pub(crate) fn expiration(ttl: Option<Duration>) -> u32 {
    const MONTH: u64 = 30 * 24 * 3600;
    let Some(ttl) = ttl else { return 0 };
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    let secs = secs.max(1);
    if secs <= MONTH {
        return secs as u32;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    u32::try_from(now + secs).unwrap_or(u32::MAX)
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
}
