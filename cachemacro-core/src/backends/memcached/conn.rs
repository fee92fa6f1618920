//! One connection to one memcached server.
//!
//! Every request carries a fresh `opaque`, and every reply must carry the one expected next:
//! a reply for another request means the stream is out of step, and the connection is closed
//! (the caller drops a `Conn` after any error). Reads and writes run against a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::protocol::{self, op, status, Header, Response, HEADER};
use super::Options;

/// How a connection failed.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// Network or protocol trouble: the server counts as failing.
    Io(String),
    /// The peer closed or reset a connection that had been idle in the pool: it may simply
    /// be stale (the server restarted), so one retry on a fresh connection is worth it.
    Stale(String),
    /// Credentials refused, or required and missing.
    Auth(String),
}

impl ConnError {
    pub(crate) fn message(&self) -> &str {
        match self {
            ConnError::Io(m) | ConnError::Stale(m) | ConnError::Auth(m) => m,
        }
    }
}

pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    next_opaque: u32,
    /// Taken from the pool (rather than just opened).
    pub(crate) reused: bool,
    max_body: usize,
}

fn io_err(what: &str, addr: &str, e: &io::Error) -> ConnError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            ConnError::Io(format!("{what} {addr}: timed out"))
        }
        _ => ConnError::Io(format!("{what} {addr}: {e}")),
    }
}

impl Conn {
    /// Connects, sets socket options, and authenticates when credentials are given.
    pub(crate) fn open(
        addr: &str,
        opts: &Options,
        credentials: Option<&(String, String)>,
    ) -> Result<Conn, ConnError> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| ConnError::Io(format!("resolve {addr}: {e}")))?
            .collect();
        let mut last = ConnError::Io(format!("resolve {addr}: no address"));
        for a in addrs {
            match TcpStream::connect_timeout(&a, opts.connect_timeout) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let _ = socket2::SockRef::from(&stream).set_keepalive(true);
                    let mut conn = Conn {
                        stream,
                        buf: Vec::with_capacity(16 * 1024),
                        start: 0,
                        next_opaque: 1,
                        reused: false,
                        max_body: opts.max_value_size + 1024,
                    };
                    if let Some((user, pass)) = credentials {
                        conn.authenticate(addr, user, pass, opts.io_timeout)?;
                    }
                    return Ok(conn);
                }
                Err(e) => last = io_err("connect", addr, &e),
            }
        }
        Err(last)
    }

    fn authenticate(
        &mut self,
        addr: &str,
        user: &str,
        pass: &str,
        timeout: Duration,
    ) -> Result<(), ConnError> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let o = self.opaque();
        protocol::request(&mut out, op::SASL_LIST_MECHS, o, &[], &[], &[]);
        self.send(addr, &out, deadline)?;
        let mechs = self.expect(addr, o, deadline)?;
        if mechs.header.status != status::OK
            || !mechs.text().split_whitespace().any(|m| m == "PLAIN")
        {
            return Err(ConnError::Auth(format!(
                "{addr} offers no SASL PLAIN authentication (mechanisms: {:?})",
                mechs.text()
            )));
        }
        let mut token = Vec::with_capacity(user.len() + pass.len() + 2);
        token.push(0);
        token.extend_from_slice(user.as_bytes());
        token.push(0);
        token.extend_from_slice(pass.as_bytes());
        out.clear();
        let o = self.opaque();
        protocol::request(&mut out, op::SASL_AUTH, o, &[], b"PLAIN", &token);
        self.send(addr, &out, deadline)?;
        let r = self.expect(addr, o, deadline)?;
        match r.header.status {
            status::OK => Ok(()),
            status::AUTH_ERROR => Err(ConnError::Auth(format!(
                "{addr} refused the SASL credentials of user {user:?}"
            ))),
            s => Err(ConnError::Auth(format!(
                "{addr} answered SASL AUTH with status {s:#06x}: {}",
                r.text()
            ))),
        }
    }

    /// A fresh opaque for the next request.
    pub(crate) fn opaque(&mut self) -> u32 {
        let o = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1).max(1);
        o
    }

    fn remaining(addr: &str, deadline: Instant) -> Result<Duration, ConnError> {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| ConnError::Io(format!("{addr}: timed out")))
    }

    /// Writes `bytes` (any number of request frames) in one go.
    pub(crate) fn send(
        &mut self,
        addr: &str,
        bytes: &[u8],
        deadline: Instant,
    ) -> Result<(), ConnError> {
        let t = Self::remaining(addr, deadline)?;
        let _ = self.stream.set_write_timeout(Some(t));
        self.stream.write_all(bytes).map_err(|e| {
            let stale = self.reused
                && matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                );
            if stale {
                ConnError::Stale(format!("write {addr}: {e}"))
            } else {
                io_err("write", addr, &e)
            }
        })
    }

    fn fill(&mut self, addr: &str, need: usize, deadline: Instant) -> Result<(), ConnError> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        while self.buf.len() - self.start < need {
            let t = Self::remaining(addr, deadline)?;
            let _ = self.stream.set_read_timeout(Some(t));
            let len = self.buf.len();
            let want = (need - (len - self.start)).max(16 * 1024);
            self.buf.resize(len + want, 0);
            match self.stream.read(&mut self.buf[len..]) {
                Ok(0) => {
                    self.buf.truncate(len);
                    let msg = format!("read {addr}: connection closed by the server");
                    return Err(if self.reused && len == self.start {
                        ConnError::Stale(msg)
                    } else {
                        ConnError::Io(msg)
                    });
                }
                Ok(n) => self.buf.truncate(len + n),
                Err(e) => {
                    self.buf.truncate(len);
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    if self.reused
                        && len == self.start
                        && e.kind() == io::ErrorKind::ConnectionReset
                    {
                        return Err(ConnError::Stale(format!("read {addr}: {e}")));
                    }
                    return Err(io_err("read", addr, &e));
                }
            }
        }
        Ok(())
    }

    /// Reads the next response frame.
    pub(crate) fn read(&mut self, addr: &str, deadline: Instant) -> Result<Response, ConnError> {
        self.fill(addr, HEADER, deadline)?;
        let mut h = [0u8; HEADER];
        h.copy_from_slice(&self.buf[self.start..self.start + HEADER]);
        let header = Header::parse(&h).map_err(|e| ConnError::Io(format!("{addr}: {e}")))?;
        if header.body_len > self.max_body {
            return Err(ConnError::Io(format!(
                "{addr}: response body of {} bytes exceeds the {}-byte limit",
                header.body_len, self.max_body
            )));
        }
        self.start += HEADER;
        self.fill(addr, header.body_len, deadline)?;
        let body = self.buf[self.start..self.start + header.body_len].to_vec();
        self.start += header.body_len;
        // Once something was read, a later failure is not a stale connection.
        self.reused = false;
        Ok(Response { header, body })
    }

    /// Reads the next response and checks it answers request `opaque`.
    pub(crate) fn expect(
        &mut self,
        addr: &str,
        opaque: u32,
        deadline: Instant,
    ) -> Result<Response, ConnError> {
        let r = self.read(addr, deadline)?;
        if r.header.opaque != opaque {
            return Err(ConnError::Io(format!(
                "{addr}: reply for request {} where {opaque} was expected; closing the connection",
                r.header.opaque
            )));
        }
        Ok(r)
    }
}
