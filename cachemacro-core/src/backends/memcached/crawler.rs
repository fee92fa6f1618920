//! `clear()` with a key prefix on plain servers: the keys are listed with the text
//! protocol's `lru_crawler metadump`, then deleted in batches.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::server::Server;
use super::MemcachedBackend;
use crate::Error;

impl MemcachedBackend {
    /// The keys under this cache's prefix on `server`; `None` when its crawler is busy.
    pub(super) fn list_keys(
        &self,
        server: &Server,
        timeout: Duration,
    ) -> Result<Option<Vec<Vec<u8>>>, Error> {
        let err = |e: std::io::Error| Error::Backend(format!("{}: {e}", server.addr));
        // One deadline for the whole listing: a server that trickles cannot hold it longer.
        let deadline = Instant::now() + timeout;
        let addr = server
            .addr
            .to_socket_addrs()
            .map_err(err)?
            .next()
            .ok_or_else(|| Error::Backend(format!("{}: no address", server.addr)))?;
        let mut stream =
            TcpStream::connect_timeout(&addr, self.opts.connect_timeout).map_err(err)?;
        stream.set_read_timeout(Some(timeout)).map_err(err)?;
        stream.set_write_timeout(Some(timeout)).map_err(err)?;
        stream
            .write_all(b"lru_crawler metadump all\r\n")
            .map_err(err)?;
        let mut keys = Vec::new();
        for line in BufReader::new(stream).lines() {
            if Instant::now() > deadline {
                return Err(Error::Backend(format!(
                    "{}: lru_crawler metadump took over {timeout:?}",
                    server.addr
                )));
            }
            match metadump_key(&line.map_err(err)?, &self.prefix, &server.addr)? {
                Some(Line::End) => break,
                Some(Line::Busy) => return Ok(None),
                Some(Line::Key(k)) => keys.push(k),
                None => {}
            }
        }
        Ok(Some(keys))
    }
}

/// What one line of a `lru_crawler metadump` listing says.
pub(super) enum Line {
    /// The listing is over.
    End,
    /// The server's crawler is busy with another listing.
    Busy,
    /// A key under the cache's prefix.
    Key(Vec<u8>),
}

/// One listing line read (both clients list keys this way); `None` for a key of another
/// prefix or a line of no interest.
pub(super) fn metadump_key(line: &str, prefix: &str, addr: &str) -> Result<Option<Line>, Error> {
    if line == "END" {
        return Ok(Some(Line::End));
    }
    if line.starts_with("BUSY") {
        return Ok(Some(Line::Busy));
    }
    if line.starts_with("ERROR") || line.starts_with("CLIENT_ERROR") {
        return Err(Error::Backend(format!(
            "{addr}: lru_crawler metadump: {line}"
        )));
    }
    Ok(line
        .strip_prefix("key=")
        .and_then(|r| r.split(' ').next())
        .map(percent_decode)
        .filter(|k| k.starts_with(prefix.as_bytes()))
        .map(Line::Key))
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
