//! The batching I/O engine: requests grouped by server, every server's batch written before
//! any reply is read, so a multi-key operation is one round trip whatever the servers.

use smallvec::SmallVec;
use std::time::Instant;

use super::conn::{judge, out_of_step, Conn, ConnError};
use super::protocol::{self, op, Response};
use super::server::Server;
use super::MemcachedBackend;
use crate::Error;

/// One request of a batch.
#[derive(Clone)]
pub(super) struct Req {
    pub(super) opcode: u8,
    pub(super) extras: Vec<u8>,
    pub(super) key: Vec<u8>,
    pub(super) value: Vec<u8>,
    /// Where the key goes: see [`Route`].
    pub(super) route: Route,
}

/// A key as sent, and where it goes.
pub(super) type RoutedKey = (Vec<u8>, Route);

/// Which server a request's key goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// The key's server among those in this process's ring (a value key: it fails over).
    Ring,
    /// The key's home server, whatever this process thinks of its health (a function
    /// version: it never fails over; see the module docs of `memcached`).
    Home,
    /// This server (a delete sent to every server, or a key listed by one).
    Server(usize),
}

/// The requests for one server, and their replies once read.
pub(super) struct Batch {
    pub(super) server: usize,
    pub(super) reqs: SmallVec<[Req; 2]>,
    /// Quiet commands, closed by a `NOOP`: only some requests are answered.
    pub(super) quiet: bool,
    pub(super) replies: Slots,
}

/// Where each request of a plan went: (batch, index in the batch).
pub(super) type Placement = SmallVec<[(usize, usize); 4]>;

/// A batch's replies, one slot per request (inline for a memoize hit's two).
pub(super) type Slots = SmallVec<[Option<Response>; 2]>;

/// A plan's batches: one per server it touches, inline for the usual one or two.
pub(super) type Batches = SmallVec<[Batch; 2]>;

/// A batch written to its connection, awaiting its replies.
pub(super) struct Sent {
    pub(super) conn: Conn,
    pub(super) opaques: Vec<u32>,
}

pub(super) fn backend_err(e: &ConnError) -> Error {
    Error::Backend(e.message().to_owned())
}

impl MemcachedBackend {
    /// Groups requests by server; returns the batches and, per request, (batch, index).
    pub(super) fn plan(
        &self,
        reqs: impl ExactSizeIterator<Item = Req>,
        quiet: bool,
    ) -> Result<(Batches, Placement), Error> {
        let n = reqs.len();
        let mut batches = Batches::new();
        let mut place = Placement::with_capacity(n);
        for req in reqs {
            let server = self.route(&req.key, req.route)?;
            let b = match batches.iter().position(|b| b.server == server) {
                Some(b) => b,
                None => {
                    batches.push(Batch {
                        server,
                        reqs: SmallVec::with_capacity(n),
                        quiet,
                        replies: Slots::new(),
                    });
                    batches.len() - 1
                }
            };
            place.push((b, batches[b].reqs.len()));
            batches[b].reqs.push(req);
        }
        Ok((batches, place))
    }

    /// Sends every batch, then reads every reply: one round trip, whatever the servers.
    pub(super) fn exchange(&self, batches: &mut [Batch]) -> Result<(), Error> {
        let deadline = Instant::now() + self.opts.io_timeout;
        let mut sent: Vec<Option<Sent>> = Vec::with_capacity(batches.len());
        let mut failure = None;
        for b in batches.iter() {
            let server = &self.servers[b.server];
            match self.send_batch(server, b, deadline, false) {
                Ok(s) => sent.push(Some(s)),
                Err(e) => {
                    server.failed(&self.opts, e.message());
                    failure.get_or_insert(backend_err(&e));
                    sent.push(None);
                }
            }
        }
        for (b, slot) in batches.iter_mut().zip(sent) {
            let Some(Sent { conn, opaques }) = slot else {
                continue;
            };
            let server = &self.servers[b.server];
            let result = match self.read_batch(server, conn, b, &opaques, deadline) {
                Err(ConnError::Stale(_)) => {
                    // The pooled connection was dead (server restarted): once more, fresh.
                    self.send_batch(server, b, deadline, true)
                        .and_then(|s| self.read_batch(server, s.conn, b, &s.opaques, deadline))
                }
                r => r,
            };
            match result {
                Ok(conn) => {
                    server.succeeded();
                    server.checkin(conn, &self.opts);
                }
                // The request was wrong, not the server: the connection is gone (the server
                // may close it), the server's health is untouched.
                Err(e @ ConnError::Refused(_)) => {
                    server.succeeded();
                    failure.get_or_insert(backend_err(&e));
                }
                Err(e) => {
                    server.failed(&self.opts, e.message());
                    failure.get_or_insert(backend_err(&e));
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    pub(super) fn send_batch(
        &self,
        server: &Server,
        b: &Batch,
        deadline: Instant,
        fresh: bool,
    ) -> Result<Sent, ConnError> {
        let mut conn = if fresh {
            Conn::open(&server.addr, &self.opts, self.credentials.as_ref())?
        } else {
            server.checkout(&self.opts, self.credentials.as_ref())?
        };
        let mut frames = Vec::new();
        let mut opaques = Vec::with_capacity(b.reqs.len() + 1);
        for r in &b.reqs {
            let o = conn.opaque();
            opaques.push(o);
            protocol::request(&mut frames, r.opcode, o, &r.extras, &r.key, &r.value);
        }
        if b.quiet {
            let o = conn.opaque();
            opaques.push(o);
            protocol::request(&mut frames, op::NOOP, o, &[], &[], &[]);
        }
        match conn.send(&server.addr, &frames, deadline) {
            Ok(()) => Ok(Sent { conn, opaques }),
            Err(ConnError::Stale(_)) if !fresh => self.send_batch(server, b, deadline, true),
            Err(e) => Err(e),
        }
    }

    pub(super) fn read_batch(
        &self,
        server: &Server,
        mut conn: Conn,
        b: &mut Batch,
        opaques: &[u32],
        deadline: Instant,
    ) -> Result<Conn, ConnError> {
        let addr = &server.addr;
        b.replies = (0..b.reqs.len()).map(|_| None).collect();
        if b.quiet {
            let noop = opaques[b.reqs.len()];
            let mut next = 0;
            loop {
                let r = conn.read(addr, deadline)?;
                if r.header.opaque == noop {
                    r.check(op::NOOP, noop, &[])
                        .map_err(|e| out_of_step(addr, &e))?;
                    return Ok(conn);
                }
                // Quiet replies come in request order, some skipped; a reply to no request
                // still unanswered (unsolicited, duplicated, out of order) means the stream
                // is out of step.
                let Some(i) = opaques[next..b.reqs.len()]
                    .iter()
                    .position(|&o| o == r.header.opaque)
                else {
                    return Err(out_of_step(
                        addr,
                        &format!("unexpected reply to request {}", r.header.opaque),
                    ));
                };
                next += i;
                let req = &b.reqs[next];
                r.check(req.opcode, opaques[next], &req.key)
                    .map_err(|e| out_of_step(addr, &e))?;
                judge(addr, req.opcode, &r)?;
                b.replies[next] = Some(r);
                next += 1;
            }
        }
        for (i, &o) in opaques.iter().enumerate().take(b.reqs.len()) {
            let req = &b.reqs[i];
            let r = conn.expect(addr, req.opcode, o, &req.key, deadline)?;
            judge(addr, req.opcode, &r)?;
            b.replies[i] = Some(r);
        }
        Ok(conn)
    }
}
