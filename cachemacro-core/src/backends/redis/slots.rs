//! A cluster's slot map: which master serves each of the 16384 hash slots, from
//! `CLUSTER SLOTS`.

use ::redis as r;

/// The masters' `host:port` by slot range.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct SlotMap {
    /// `(first slot, last slot, master)`, sorted by first slot.
    ranges: Vec<(u16, u16, String)>,
}

/// The hash slot of a key, as redis computes it: CRC16 (XMODEM) of the key, or of its
/// `{hash tag}` when it has a non-empty one (cachemacro never adds one), modulo 16384.
pub(super) fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let close = key[open + 1..].iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &key[open + 1..open + 1 + close])
        })
        .unwrap_or(key);
    crc16(tagged) % 16384
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                crc << 1 ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

impl SlotMap {
    /// The map from a `CLUSTER SLOTS` reply; `default_host` stands for an empty or `?` host
    /// (the node asked, as redis reports itself when it does not know its address).
    pub(super) fn parse(reply: &r::Value, default_host: &str) -> Option<SlotMap> {
        let r::Value::Array(entries) = reply else {
            return None;
        };
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let r::Value::Array(fields) = entry else {
                return None;
            };
            let (Some(start), Some(end), Some(r::Value::Array(master))) =
                (int(fields.first()?), int(fields.get(1)?), fields.get(2))
            else {
                return None;
            };
            let host = match master.first()? {
                r::Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
                r::Value::SimpleString(s) => s.clone(),
                _ => return None,
            };
            let host = if host.is_empty() || host == "?" {
                default_host.to_owned()
            } else {
                host
            };
            let port = int(master.get(1)?)?;
            let (start, end) = (u16::try_from(start).ok()?, u16::try_from(end).ok()?);
            if start > end || end >= 16384 {
                return None;
            }
            ranges.push((start, end, format!("{host}:{port}")));
        }
        ranges.sort();
        (!ranges.is_empty()).then_some(SlotMap { ranges })
    }

    /// The master serving `slot`, if the map covers it.
    pub(super) fn master(&self, slot: u16) -> Option<&str> {
        let i = self
            .ranges
            .partition_point(|r| r.0 <= slot)
            .checked_sub(1)?;
        let (_, end, addr) = &self.ranges[i];
        (slot <= *end).then_some(addr.as_str())
    }

    /// Every master, once.
    pub(super) fn masters(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.ranges.iter().map(|r| r.2.as_str()).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn int(v: &r::Value) -> Option<i64> {
    match v {
        r::Value::Int(n) => Some(*n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> r::Value {
        r::Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn slots_map_to_their_masters() {
        let reply = r::Value::Array(vec![
            r::Value::Array(vec![
                r::Value::Int(5461),
                r::Value::Int(16383),
                r::Value::Array(vec![bulk("10.0.0.2"), r::Value::Int(7001), bulk("id2")]),
                r::Value::Array(vec![bulk("10.0.0.3"), r::Value::Int(7002), bulk("id3")]),
            ]),
            r::Value::Array(vec![
                r::Value::Int(0),
                r::Value::Int(5460),
                r::Value::Array(vec![bulk(""), r::Value::Int(7000), bulk("id1")]),
            ]),
        ]);
        let map = SlotMap::parse(&reply, "127.0.0.1").unwrap();
        assert_eq!(map.master(0), Some("127.0.0.1:7000"));
        assert_eq!(map.master(5460), Some("127.0.0.1:7000"));
        assert_eq!(map.master(5461), Some("10.0.0.2:7001"));
        assert_eq!(map.master(16383), Some("10.0.0.2:7001"));
        assert_eq!(map.masters(), ["10.0.0.2:7001", "127.0.0.1:7000"]);
        assert!(SlotMap::parse(&r::Value::Int(1), "h").is_none());
        assert_eq!(slot(b"foo"), 12182, "the CRC16 redis uses");
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(
            slot(b"{}x"),
            slot(b"{}x"),
            "an empty tag hashes the whole key"
        );
        assert_ne!(slot(b"{}x"), slot(b""));
        assert_eq!(crc16(b"123456789"), 0x31c3, "the XMODEM check value");
    }
}
