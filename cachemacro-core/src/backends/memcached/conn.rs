//! One connection to one memcached server.
//!
//! Every request carries a fresh `opaque`, and every reply must answer the request expected
//! next (opcode, opaque, and the key for key-echoing reads, checked by
//! [`Response::check`]): anything else means the stream is out of step, and the connection is
//! closed (the caller drops a `Conn` after any error). Reads and writes run against a
//! deadline. A connection goes back to the pool only with nothing unread, and is checked for
//! bytes or a close that arrived while it sat there before it is used again.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use std::mem::MaybeUninit;

use super::protocol::{self, op, status, ReadBuf, Response};
use super::Options;

/// How a connection failed.
#[derive(Debug, Clone)]
pub(crate) enum ConnError {
    /// Network or protocol trouble: the server counts as failing.
    Io(String),
    /// The peer closed or reset a connection that had been idle in the pool: it may simply
    /// be stale (the server restarted), so one retry on a fresh connection is worth it.
    Stale(String),
    /// Credentials refused, or required and missing.
    Auth(String),
    /// The server refused the request itself (a key or value it will not take): the
    /// connection is closed, but the server is not failing.
    Refused(String),
}

impl ConnError {
    pub(crate) fn message(&self) -> &str {
        match self {
            ConnError::Io(m) | ConnError::Stale(m) | ConnError::Auth(m) | ConnError::Refused(m) => {
                m
            }
        }
    }
}

pub(crate) struct Conn {
    stream: TcpStream,
    rb: ReadBuf,
    next_opaque: u32,
    /// Taken from the pool (rather than just opened), and nothing read since.
    pub(crate) reused: bool,
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
                        rb: ReadBuf::new(opts.max_value_size.saturating_add(1024)),
                        next_opaque: 1,
                        reused: false,
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
        let mechs = self.expect(addr, op::SASL_LIST_MECHS, o, &[], deadline)?;
        plain_offered(addr, &mechs)?;
        out.clear();
        let o = self.opaque();
        protocol::request(
            &mut out,
            op::SASL_AUTH,
            o,
            &[],
            b"PLAIN",
            &plain_token(user, pass),
        );
        self.send(addr, &out, deadline)?;
        let r = self.expect(addr, op::SASL_AUTH, o, &[], deadline)?;
        authenticated(addr, user, &r)
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

    /// Reads once more from the socket into the buffer.
    fn read_more(&mut self, addr: &str, deadline: Instant) -> Result<(), ConnError> {
        loop {
            let t = Self::remaining(addr, deadline)?;
            let _ = self.stream.set_read_timeout(Some(t));
            let spare = self.rb.spare();
            match self.stream.read(spare) {
                Ok(0) => {
                    self.rb.filled(0);
                    let msg = format!("read {addr}: connection closed by the server");
                    return Err(if self.reused {
                        ConnError::Stale(msg)
                    } else {
                        ConnError::Io(msg)
                    });
                }
                Ok(n) => {
                    self.rb.filled(n);
                    // Once something was read, a later failure is not a stale connection.
                    self.reused = false;
                    return Ok(());
                }
                Err(e) => {
                    self.rb.filled(0);
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    if self.reused && e.kind() == io::ErrorKind::ConnectionReset {
                        return Err(ConnError::Stale(format!("read {addr}: {e}")));
                    }
                    return Err(io_err("read", addr, &e));
                }
            }
        }
    }

    /// Reads the next response frame.
    pub(crate) fn read(&mut self, addr: &str, deadline: Instant) -> Result<Response, ConnError> {
        loop {
            match self.rb.next_frame() {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => self.read_more(addr, deadline)?,
                Err(e) => return Err(ConnError::Io(format!("{addr}: {e}"))),
            }
        }
    }

    /// Reads the next response and checks it answers the request sent with `opcode`,
    /// `opaque` and `key`.
    pub(crate) fn expect(
        &mut self,
        addr: &str,
        opcode: u8,
        opaque: u32,
        key: &[u8],
        deadline: Instant,
    ) -> Result<Response, ConnError> {
        let r = self.read(addr, deadline)?;
        r.check(opcode, opaque, key)
            .map_err(|e| ConnError::Io(format!("{addr}: {e}; closing the connection")))?;
        Ok(r)
    }

    /// Whether every byte received was taken as a reply: only then may the connection serve
    /// another request.
    pub(crate) fn is_drained(&self) -> bool {
        self.rb.is_empty()
    }

    /// Whether an idle connection is still fit for use: nothing arrived while it sat in the
    /// pool (no unsolicited frame, no close by the server). One non-blocking peek.
    pub(crate) fn idle_ok(&self) -> bool {
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        let sock = socket2::SockRef::from(&self.stream);
        match sock.recv_with_flags(&mut probe, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            // Bytes nobody asked for, or the server closed the connection.
            Ok(_) => false,
        }
    }
}

pub(super) fn out_of_step(addr: &str, why: &str) -> ConnError {
    ConnError::Io(format!("{addr}: {why}; closing the connection"))
}

/// What a reply's status means for the connection: statuses that are answers (a miss, a
/// key that exists, a value too large, …) leave it usable; a refused request closes it
/// without blaming the server; a read that fails otherwise is the server failing.
pub(super) fn judge(addr: &str, opcode: u8, r: &Response) -> Result<(), ConnError> {
    let s = r.header.status;
    if s == status::AUTH_ERROR {
        return Err(ConnError::Auth(format!("{addr}: not authenticated")));
    }
    if status::refuses_request(s) {
        return Err(ConnError::Refused(format!(
            "{addr} refused the request (status {s:#06x}: {})",
            r.text()
        )));
    }
    let read = matches!(opcode, op::GET | op::GETK | op::GETKQ);
    if read && s != status::OK && s != status::NOT_FOUND {
        return Err(ConnError::Io(format!(
            "{addr}: read failed with status {s:#06x}: {}",
            r.text()
        )));
    }
    Ok(())
}

/// SASL, as both clients run it: `LIST_MECHS` must offer PLAIN.
pub(super) fn plain_offered(addr: &str, mechs: &Response) -> Result<(), ConnError> {
    if mechs.header.status == status::OK && mechs.text().split_whitespace().any(|m| m == "PLAIN") {
        return Ok(());
    }
    Err(ConnError::Auth(format!(
        "{addr} offers no SASL PLAIN authentication (mechanisms: {:?})",
        mechs.text()
    )))
}

/// The PLAIN token: no authorization identity, the user, the password.
pub(super) fn plain_token(user: &str, pass: &str) -> Vec<u8> {
    let mut token = Vec::with_capacity(user.len() + pass.len() + 2);
    token.push(0);
    token.extend_from_slice(user.as_bytes());
    token.push(0);
    token.extend_from_slice(pass.as_bytes());
    token
}

/// What the `AUTH` reply says.
pub(super) fn authenticated(addr: &str, user: &str, r: &Response) -> Result<(), ConnError> {
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
