//! One multiplexed connection to one memcached server, on tokio: many callers' requests in
//! flight at once, written in batches, their replies matched back by `opaque`.
//!
//! Writes are combined. A caller encodes its batch into the connection's outbox. On an idle
//! connection (no reply due) it then writes the outbox itself, with one non-blocking write;
//! what the socket would not take goes to the batching writer. So a lone caller costs one
//! write and no thread hand-off. On a busy connection it leaves the
//! bytes to the connection's batching writer, a task that first lets every task ready on its
//! worker run (they queue their batches too) and then writes them all at once: 256 concurrent
//! hits cost about one write per 10 hits instead of one each (measured with `perf stat`).
//! A reader task reads replies and hands each batch its own. memcached answers a
//! connection's requests in order, so replies belong to the oldest batch still waiting, and
//! each reply is checked against the request it answers (opcode, opaque, the key a read
//! echoes: [`Response::check_by`]) with the same decoder as the sync client's. Anything out of
//! step closes the connection and fails every batch on it. (The key a read echoes is compared
//! by length and 64-bit digest, so a batch keeps no copy of its keys.)
//!
//! Shared reads: a quiet read (`GETKQ`) of a key that an earlier batch reads too, while that
//! batch's bytes still wait in the outbox, is not sent again: the caller is handed a copy of
//! that request's reply. Concurrent hits of one memoized function all read its version key,
//! so under load most of them cost the server one request, not two. Only bytes not yet taken
//! by a write are joined, so the shared request reaches the server after the joining call
//! began, and sees every write (an invalidation) that finished before it; keys are compared
//! whole, not by digest.
//!
//! Back-pressure: at most [`MAX_IN_FLIGHT`] batches are written and unanswered per
//! connection; further callers wait for a permit (within their own deadline).
//!
//! Cancellation: a caller that stops waiting (its future dropped, its deadline passed) only
//! drops the receiving end of its batch. The batch's replies are still read and matched (to
//! nobody), so the connection stays in step for everyone else, and its permit is released
//! when they arrive.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use super::super::batch::Slots;
use super::super::conn::{
    authenticated, judge, out_of_step, plain_offered, plain_token, ConnError,
};
use super::super::protocol::{self, op, ReadBuf, Response};

/// Batches written and unanswered on one connection, at most.
pub(super) const MAX_IN_FLIGHT: usize = 1024;

/// One request of a batch: what its reply must answer.
pub(super) struct Expect {
    pub(super) opcode: u8,
    pub(super) opaque: u32,
    /// The key's length and 64-bit digest: what the echoed key must match (a digest, so no
    /// key is kept; two keys of one batch colliding is a 2^-64 chance, and only makes a
    /// reply be checked against the other's key).
    pub(super) key: (usize, u64),
}

fn key_digest(key: &[u8]) -> (usize, u64) {
    (key.len(), xxhash_rust::xxh3::xxh3_64(key))
}

/// A batch's replies, one slot per request (quiet requests that got none stay `None`).
pub(super) type Replies = Result<Slots, ConnError>;

/// One request's reply, shared with a later batch that read the same key.
type OneReply = Result<Option<Response>, ConnError>;

/// A later batch's request answered by one of this batch's: it gets a copy of that reply.
struct Listener {
    /// The request of this batch whose reply it shares.
    slot: usize,
    tx: oneshot::Sender<OneReply>,
}

/// A quiet read whose bytes still wait in the outbox: later reads of the same key join it.
struct UnsentRead {
    /// The batch (its `seq`) and its request.
    seq: u64,
    slot: usize,
    /// Where its key lies in the outbox (its length is the digest's).
    key_at: usize,
}

/// Where each request of a submitted batch gets its reply.
enum Source {
    /// Its own request: this slot of the batch's replies.
    Own(usize),
    /// A copy of an earlier batch's reply to the same read.
    Joined(oneshot::Receiver<OneReply>),
}

/// A submitted batch: its replies once they are all in ([`Pending::wait`]).
pub(super) struct Pending {
    /// "{addr}: connection closed", the error when a reply never comes.
    closed: Arc<str>,
    own: Option<oneshot::Receiver<Replies>>,
    sources: SmallVec<[Source; 2]>,
}

impl Pending {
    /// Every request's reply, in the order of the batch. Cancellation-safe: dropping this
    /// future only drops receivers.
    pub(super) async fn wait(self) -> Replies {
        let closed = || ConnError::Stale(self.closed.to_string());
        let mut own = match self.own {
            Some(rx) => rx.await.unwrap_or_else(|_| Err(closed()))?,
            None => Slots::new(),
        };
        let mut out = Slots::with_capacity(self.sources.len());
        for source in self.sources {
            out.push(match source {
                Source::Own(i) => own.get_mut(i).and_then(Option::take),
                Source::Joined(rx) => rx.await.unwrap_or_else(|_| Err(closed()))?,
            });
        }
        Ok(out)
    }
}

/// A batch written, awaiting its replies.
struct Waiting {
    /// Its place in the order batches are queued.
    seq: u64,
    expects: SmallVec<[Expect; 4]>,
    quiet: bool,
    replies: Slots,
    /// The next request a reply may answer.
    next: usize,
    reply: Option<oneshot::Sender<Replies>>,
    /// Later batches' reads of the same keys, answered with copies of these replies.
    listeners: Vec<Listener>,
    _permit: OwnedSemaphorePermit,
}

impl Waiting {
    fn finish(mut self, r: Result<(), ConnError>) {
        for l in self.listeners.drain(..) {
            let copy = match &r {
                Ok(()) => Ok(self.replies.get(l.slot).and_then(Option::clone)),
                Err(e) => Err(e.clone()),
            };
            // A caller that stopped waiting gets nothing.
            let _ = l.tx.send(copy);
        }
        if let Some(tx) = self.reply.take() {
            let replies = std::mem::take(&mut self.replies);
            // A caller that stopped waiting gets nothing: its replies go nowhere else.
            let _ = tx.send(r.map(|()| replies));
        }
    }
}

/// State shared by a connection's handle, its callers and its reader task.
struct Shared {
    /// Batches in the order their bytes are written.
    waiting: Mutex<VecDeque<Waiting>>,
    writer: Mutex<Writer>,
    dead: AtomicBool,
    /// Wakes the connection's batching writer: bytes wait in the outbox of a busy connection.
    write_wanted: Notify,
    /// The reader task and the batching writer: they end when the connection closes.
    tasks: Mutex<Vec<AbortHandle>>,
}

/// The write side: the socket's write half (`None` while a caller or a task writes), and the
/// bytes queued behind that write.
struct Writer {
    half: Option<OwnedWriteHalf>,
    outbox: Vec<u8>,
    /// The quiet reads in the outbox, by their key's length and digest (the key itself is
    /// compared too).
    unsent: HashMap<(usize, u64), UnsentRead>,
    /// The `seq` of the next batch queued.
    next_seq: u64,
}

impl Writer {
    /// The outbox, to write: its reads are no longer joined.
    fn take_outbox(&mut self) -> Vec<u8> {
        self.unsent.clear();
        std::mem::take(&mut self.outbox)
    }
}

impl Shared {
    /// After a write (a caller's or the batching writer's) of `written` bytes of `buf`: the
    /// write half goes back, and bytes still to send (the rest of `buf` first, then what
    /// queued meanwhile) wake the batching writer. A buffer fully written becomes the outbox
    /// again, its room reused.
    fn settle(&self, half: OwnedWriteHalf, mut buf: Vec<u8>, written: usize) {
        buf.drain(..written);
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if !buf.is_empty() {
            buf.extend_from_slice(&w.outbox);
            w.outbox = buf;
            // The reads queued meanwhile moved in the outbox: no longer joined.
            w.unsent.clear();
        } else if w.outbox.is_empty() {
            w.outbox = buf;
        }
        let pending = !w.outbox.is_empty();
        w.half = Some(half);
        drop(w);
        if pending {
            self.write_wanted.notify_one();
        }
    }

    /// Closes the connection: every batch on it fails with `why`.
    fn kill(&self, why: &ConnError) {
        self.dead.store(true, Ordering::SeqCst);
        // The reader and the batching writer end (a reader waiting on a silent server would
        // wait for as long as it stays silent).
        self.write_wanted.notify_one();
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        let waiting =
            std::mem::take(&mut *self.waiting.lock().unwrap_or_else(PoisonError::into_inner));
        for w in waiting {
            w.finish(Err(why.clone()));
        }
    }
}

/// A handle to one multiplexed connection.
pub(super) struct Mux {
    addr: String,
    /// "{addr}: connection closed", shared by every [`Pending`].
    closed: Arc<str>,
    permits: Arc<Semaphore>,
    next_opaque: AtomicU32,
    shared: Arc<Shared>,
}

impl Mux {
    /// Connects (and authenticates), then starts the connection's tasks on the current
    /// runtime.
    pub(super) async fn open(
        addr: &str,
        stream: TcpStream,
        max_body: usize,
        credentials: Option<&(String, String)>,
    ) -> Result<Mux, ConnError> {
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_keepalive(true);
        let (mut rd, mut wr) = stream.into_split();
        let mut rb = ReadBuf::new(max_body);
        if let Some((user, pass)) = credentials {
            authenticate(addr, &mut rd, &mut wr, &mut rb, user, pass).await?;
        }
        let shared = Arc::new(Shared {
            waiting: Mutex::new(VecDeque::new()),
            writer: Mutex::new(Writer {
                half: Some(wr),
                outbox: Vec::new(),
                unsent: HashMap::new(),
                next_seq: 0,
            }),
            dead: AtomicBool::new(false),
            write_wanted: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let reader = tokio::spawn(read_loop(addr.to_owned(), rd, rb, shared.clone()));
        let batcher = tokio::spawn(batch_writes(addr.to_owned(), shared.clone()));
        shared
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend([reader.abort_handle(), batcher.abort_handle()]);
        Ok(Mux {
            addr: addr.to_owned(),
            closed: format!("{addr}: connection closed").into(),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            next_opaque: AtomicU32::new(1),
            shared,
        })
    }

    /// Whether the connection is closed (it failed, or its reader went with its runtime).
    pub(super) fn is_dead(&self) -> bool {
        self.shared.dead.load(Ordering::SeqCst)
    }

    /// Closes the connection (after a caller's deadline passed on it).
    pub(super) fn close(&self, why: &str) {
        self.shared
            .kill(&ConnError::Io(format!("{}: {why}", self.addr)));
    }

    /// Queues `reqs` (opcode, extras, key, value) as one batch, quiet ones closed by a
    /// `NOOP`; quiet reads of keys an unsent earlier batch reads share its replies. What waits
    /// for the replies. Cancellation-safe (see the module docs).
    pub(super) async fn submit<'r>(
        &self,
        reqs: impl ExactSizeIterator<Item = (u8, &'r [u8], &'r [u8], &'r [u8])>,
        quiet: bool,
    ) -> Result<Pending, ConnError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ConnError::Io(format!("{}: connection closed", self.addr)))?;
        let mut sources: SmallVec<[Source; 2]> = SmallVec::with_capacity(reqs.len());
        let mut expects: SmallVec<[Expect; 4]> = SmallVec::new();
        let (tx, rx) = oneshot::channel();
        let (half, buf, pending) = {
            let mut w = self
                .shared
                .writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let w = &mut *w;
            // Waiting before its bytes can leave: the reader may see the reply at once.
            let mut waiting = self
                .shared
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Checked under the lock `kill` takes: a closed connection takes no new batch.
            if self.is_dead() {
                return Err(ConnError::Stale(self.closed.to_string()));
            }
            let seq = w.next_seq;
            for (opcode, extras, key, value) in reqs {
                let shareable = quiet && opcode == op::GETKQ;
                let digest = key_digest(key);
                if shareable {
                    if let Some(joined) = join(&w.unsent, &w.outbox, &mut waiting, digest, key) {
                        sources.push(Source::Joined(joined));
                        continue;
                    }
                }
                let e = Expect {
                    opcode,
                    opaque: self.opaque(),
                    key: digest,
                };
                if shareable {
                    w.unsent.entry(digest).or_insert(UnsentRead {
                        seq,
                        slot: expects.len(),
                        key_at: w.outbox.len() + protocol::HEADER + extras.len(),
                    });
                }
                // Encoded straight into the outbox, in the order of `waiting`.
                protocol::request(&mut w.outbox, opcode, e.opaque, extras, key, value);
                sources.push(Source::Own(expects.len()));
                expects.push(e);
            }
            // Every request shares an earlier one's reply: nothing to send.
            if expects.is_empty() {
                return Ok(Pending {
                    closed: self.closed.clone(),
                    own: None,
                    sources,
                });
            }
            let n = expects.len();
            if quiet {
                let noop = Expect {
                    opcode: op::NOOP,
                    opaque: self.opaque(),
                    key: (0, 0),
                };
                protocol::request(&mut w.outbox, op::NOOP, noop.opaque, &[], &[], &[]);
                expects.push(noop);
            }
            w.next_seq += 1;
            // Replies are due on this connection: this batch's bytes can wait for the others
            // this worker is about to queue, and leave with them in one write.
            let busy = !waiting.is_empty();
            waiting.push_back(Waiting {
                seq,
                expects,
                quiet,
                replies: (0..n).map(|_| None).collect(),
                next: 0,
                reply: Some(tx),
                listeners: Vec::new(),
                _permit: permit,
            });
            drop(waiting);
            let pending = Pending {
                closed: self.closed.clone(),
                own: Some(rx),
                sources,
            };
            if busy {
                self.shared.write_wanted.notify_one();
                return Ok(pending);
            }
            match w.half.take() {
                // Someone is writing: they write these bytes too.
                None => return Ok(pending),
                Some(half) => (half, w.take_outbox(), pending),
            }
        };
        // This caller writes once, without awaiting (so dropping its future cannot cut a
        // frame in half); what the socket would not take, and what others queued meanwhile,
        // go to the batching writer.
        let written = match half.try_write(&buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                self.shared
                    .kill(&ConnError::Io(format!("write {}: {e}", self.addr)));
                return Ok(pending);
            }
        };
        self.shared.settle(half, buf, written);
        Ok(pending)
    }

    fn opaque(&self) -> u32 {
        // Never 0: a fresh connection's first opaque is 1, as the sync client's.
        self.next_opaque.fetch_add(1, Ordering::Relaxed).max(1)
    }
}

/// Joins the unsent quiet read of `key` (`digest`: its length and digest), if the outbox
/// holds one: the receiver of a copy of its reply.
fn join(
    unsent: &HashMap<(usize, u64), UnsentRead>,
    outbox: &[u8],
    waiting: &mut VecDeque<Waiting>,
    digest: (usize, u64),
    key: &[u8],
) -> Option<oneshot::Receiver<OneReply>> {
    let read = unsent.get(&digest)?;
    if outbox.get(read.key_at..read.key_at + key.len()) != Some(key) {
        return None;
    }
    // Unsent, so still waiting. Batches wait in `seq` order, one after another (only the
    // oldest leaves), so its place follows from the oldest's.
    let first = waiting.front()?.seq;
    let batch = waiting.get_mut(usize::try_from(read.seq.checked_sub(first)?).ok()?)?;
    if batch.seq != read.seq {
        return None;
    }
    let (tx, rx) = oneshot::channel();
    batch.listeners.push(Listener {
        slot: read.slot,
        tx,
    });
    Some(rx)
}

/// The batching writer of a busy connection: woken when bytes wait, it first lets every
/// task ready on its worker run (they queue their batches too), then writes them all at once,
/// unless a caller or a task is writing already (it takes the outbox along). It owns nothing
/// callers hold, so a caller's future dropped at any point never leaves bytes unwritten.
async fn batch_writes(addr: String, s: Arc<Shared>) {
    loop {
        s.write_wanted.notified().await;
        if s.dead.load(Ordering::SeqCst) {
            return;
        }
        tokio::task::yield_now().await;
        let (mut half, buf) = {
            let mut w = s.writer.lock().unwrap_or_else(PoisonError::into_inner);
            if w.outbox.is_empty() {
                continue;
            }
            let Some(half) = w.half.take() else { continue };
            let buf = w.take_outbox();
            (half, buf)
        };
        if let Err(e) = half.write_all(&buf).await {
            s.kill(&ConnError::Io(format!("write {addr}: {e}")));
            return;
        }
        // What queued during the write wakes this task again.
        let written = buf.len();
        s.settle(half, buf, written);
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        // The reader ends at its next wake-up, the batching writer now; the write half
        // closes with the last user.
        self.shared.dead.store(true, Ordering::SeqCst);
        self.shared.write_wanted.notify_one();
    }
}

/// Held by the reader task: when the task ends, however (its runtime shut down), every batch
/// still waiting fails and the connection counts as closed.
struct Reading(Arc<Shared>);

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.kill(&ConnError::Stale("connection closed".into()));
    }
}

/// SASL PLAIN, one request at a time, before the connection is shared.
async fn authenticate(
    addr: &str,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    rb: &mut ReadBuf,
    user: &str,
    pass: &str,
) -> Result<(), ConnError> {
    let io = |e: std::io::Error| ConnError::Io(format!("{addr}: {e}"));
    let mut out = Vec::new();
    protocol::request(&mut out, op::SASL_LIST_MECHS, 1, &[], &[], &[]);
    wr.write_all(&out).await.map_err(io)?;
    let mechs = read_frame(addr, rd, rb).await?;
    mechs
        .check(op::SASL_LIST_MECHS, 1, &[])
        .map_err(|e| out_of_step(addr, &e))?;
    plain_offered(addr, &mechs)?;
    out.clear();
    protocol::request(
        &mut out,
        op::SASL_AUTH,
        2,
        &[],
        b"PLAIN",
        &plain_token(user, pass),
    );
    wr.write_all(&out).await.map_err(io)?;
    let r = read_frame(addr, rd, rb).await?;
    r.check(op::SASL_AUTH, 2, &[])
        .map_err(|e| out_of_step(addr, &e))?;
    authenticated(addr, user, &r)
}

async fn read_frame(
    addr: &str,
    rd: &mut OwnedReadHalf,
    rb: &mut ReadBuf,
) -> Result<Response, ConnError> {
    loop {
        match rb.next_frame() {
            Ok(Some(r)) => return Ok(r),
            Ok(None) => {}
            Err(e) => return Err(out_of_step(addr, &e)),
        }
        let spare = rb.spare();
        match rd.read(spare).await {
            Ok(0) => {
                rb.filled(0);
                return Err(ConnError::Io(format!(
                    "read {addr}: connection closed by the server"
                )));
            }
            Ok(n) => rb.filled(n),
            Err(e) => {
                rb.filled(0);
                return Err(ConnError::Io(format!("read {addr}: {e}")));
            }
        }
    }
}

/// Reads replies and hands each waiting batch its own, in order.
async fn read_loop(addr: String, mut rd: OwnedReadHalf, mut rb: ReadBuf, shared: Arc<Shared>) {
    let _reading = Reading(shared.clone());
    let mut done = Vec::new();
    let why = loop {
        if shared.dead.load(Ordering::SeqCst) {
            break ConnError::Stale(format!("{addr}: connection closed"));
        }
        let spare = rb.spare();
        match rd.read(spare).await {
            Ok(0) => {
                rb.filled(0);
                break ConnError::Stale(format!("read {addr}: connection closed by the server"));
            }
            Ok(n) => rb.filled(n),
            Err(e) => {
                rb.filled(0);
                break ConnError::Io(format!("read {addr}: {e}"));
            }
        }
        if let Err(e) = dispatch(&addr, &mut rb, &shared, &mut done) {
            break e;
        }
    };
    shared.kill(&why);
}

/// Matches every whole frame buffered to the batch it answers.
fn dispatch(
    addr: &str,
    rb: &mut ReadBuf,
    shared: &Shared,
    done: &mut Vec<Waiting>,
) -> Result<(), ConnError> {
    // One lock for every frame of this read; the batches completed are handed their replies
    // (waking their callers) after it is released.
    let r = match_frames(addr, rb, shared, done);
    for w in done.drain(..) {
        w.finish(Ok(()));
    }
    r
}

fn match_frames(
    addr: &str,
    rb: &mut ReadBuf,
    shared: &Shared,
    done: &mut Vec<Waiting>,
) -> Result<(), ConnError> {
    let mut waiting = shared
        .waiting
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    loop {
        let frame = match rb.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(e) => return Err(out_of_step(addr, &e)),
        };
        let Some(head) = waiting.front_mut() else {
            return Err(out_of_step(addr, "a reply to no request"));
        };
        // Quiet replies come in request order, some skipped; others, one per request.
        let last = head.expects.len();
        let i = if head.quiet {
            head.expects[head.next..]
                .iter()
                .position(|e| e.opaque == frame.header.opaque)
                .map(|i| head.next + i)
        } else {
            (head.expects[head.next].opaque == frame.header.opaque).then_some(head.next)
        };
        let Some(i) = i else {
            return Err(out_of_step(
                addr,
                &format!("unexpected reply to request {}", frame.header.opaque),
            ));
        };
        let e = &head.expects[i];
        frame
            .check_by(e.opcode, e.opaque, |echoed| key_digest(echoed) == e.key)
            .map_err(|why| out_of_step(addr, &why))?;
        if let Err(err) = judge(addr, e.opcode, &frame) {
            // The batch fails, and replies still due to it would be out of step: the
            // connection closes. A refused request is the request's fault, not the server's.
            let refused = matches!(err, ConnError::Refused(_));
            if let Some(w) = waiting.pop_front() {
                w.finish(Err(err));
            }
            return Err(if refused {
                ConnError::Stale(format!("{addr}: closed after a refused request"))
            } else {
                ConnError::Io(format!("{addr}: a read failed; connection closed"))
            });
        }
        if i < head.replies.len() {
            head.replies[i] = Some(frame);
        }
        head.next = i + 1;
        if i + 1 == last {
            done.extend(waiting.pop_front());
        }
    }
}
