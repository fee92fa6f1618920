//! `clear()` with a key prefix on plain servers: the keys are listed with the text
//! protocol's `lru_crawler metadump`, then deleted in batches.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::batch::{Batch, Req, Route};
use super::protocol::op;
use super::server::Server;
use super::MemcachedBackend;
use crate::Error;

impl MemcachedBackend {
    /// Deletes every key under this cache's prefix on one plain (non-SASL) server, found with
    /// `lru_crawler metadump`.
    pub(super) fn clear_prefix(&self, server: &Server) -> Result<(), Error> {
        // A server runs one crawler at a time and answers BUSY to the next request: another
        // client's `clear()` is listing keys. Wait for it, within the listing's own timeout.
        let timeout = self.opts.io_timeout.max(Duration::from_secs(10));
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(10);
        let keys = loop {
            match self.list_keys(server, timeout)? {
                Some(keys) => break keys,
                None if Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                None => {
                    return Err(Error::Backend(format!(
                        "{}: lru_crawler metadump: still busy after {timeout:?}",
                        server.addr
                    )))
                }
            }
        };
        // Keys were listed by this server: delete them there, whatever the ring says now.
        let index = self
            .servers
            .iter()
            .position(|s| std::ptr::eq(s, server))
            .unwrap_or(0);
        for chunk in keys.chunks(1000) {
            let reqs = chunk
                .iter()
                .map(|k| Req {
                    opcode: op::DELETE,
                    extras: Vec::new(),
                    key: k.clone(),
                    value: Vec::new(),
                    route: Route::Server(index),
                })
                .collect();
            let mut batch = [Batch {
                server: index,
                reqs,
                quiet: false,
                replies: Vec::new(),
            }];
            self.exchange(&mut batch)?;
        }
        Ok(())
    }

    /// The keys under this cache's prefix on `server`; `None` when its crawler is busy.
    pub(super) fn list_keys(
        &self,
        server: &Server,
        timeout: Duration,
    ) -> Result<Option<Vec<Vec<u8>>>, Error> {
        let err = |e: std::io::Error| Error::Backend(format!("{}: {e}", server.addr));
        let mut stream = TcpStream::connect(&server.addr).map_err(err)?;
        stream.set_read_timeout(Some(timeout)).map_err(err)?;
        stream
            .write_all(b"lru_crawler metadump all\r\n")
            .map_err(err)?;
        let mut keys = Vec::new();
        for line in BufReader::new(stream).lines() {
            let line = line.map_err(err)?;
            if line == "END" {
                break;
            }
            if line.starts_with("BUSY") {
                return Ok(None);
            }
            if line.starts_with("ERROR") || line.starts_with("CLIENT_ERROR") {
                return Err(Error::Backend(format!(
                    "{}: lru_crawler metadump: {line}",
                    server.addr
                )));
            }
            if let Some(k) = line.strip_prefix("key=").and_then(|r| r.split(' ').next()) {
                let k = percent_decode(k);
                if k.starts_with(self.prefix.as_bytes()) {
                    keys.push(k);
                }
            }
        }
        Ok(Some(keys))
    }
}

/// Undoes `lru_crawler metadump`'s URL encoding of keys.
pub(crate) fn percent_decode(s: &str) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h << 4 | l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Ab%20c"), b"a:b c");
        assert_eq!(percent_decode("100%"), b"100%");
        // Never a panic inside a character, never a sign taken for a digit.
        assert_eq!(percent_decode("%aé"), "%aé".as_bytes());
        assert_eq!(percent_decode("%+f"), b"%+f");
    }
}
