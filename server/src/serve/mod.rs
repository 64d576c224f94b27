//! A shard core: accepts connections (SO_REUSEPORT, so every shard listens on
//! the client port), keeps each connection and its session here, serves reads
//! from its replica without locks, sends writes and session changes to the
//! sequencer, and takes each committed batch's version of the tree as its
//! replica, firing the watches of its connections and answering its own
//! writes from the effects the sequencer worked out.
//!
//! Per connection, requests are handled one at a time: a read waits while
//! the connection's write is in flight, so a session always reads its own
//! writes, and replies leave in request order (design invariant 3). Watch
//! events of a txn are queued before any later reply (invariant 4) because
//! the same task applies the txn, queues the events, then the reply.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use glommio::net::{TcpListener, TcpStream};
use zoocore_engine::acl::{self, Identity};
use zoocore_engine::tree::Applied;
use zoocore_engine::{
    handle_watch_request, read, session, watch_for, write_reply, DataTree, WatchTable,
};
use zoocore_net::consts::{perms, xid};
use zoocore_net::frame::{four_letter_word, split_frame, write_frame};
use zoocore_net::jute::Jute;
use zoocore_net::records::{ConnectRequest, ConnectResponse, ReplyHeader, WatcherEvent};
use zoocore_net::{decode_request, encode_reply, ErrorCode, Request, Response};

use crate::config::Config;
use crate::ops::fourlw;
use crate::seq::{CommitBatch, Entry, Origin, ToSequencer};
use crate::stats::{ClientStats, ShardCounters, Stats};

pub struct ShardSetup {
    pub index: usize,
    pub config: Arc<Config>,
    pub tree: DataTree,
    pub to_sequencer: SharedSender<ToSequencer>,
    pub commits: SharedReceiver<Arc<CommitBatch>>,
    pub stats: Arc<Stats>,
    /// Sessions recovered from the log that this shard expires unless they reconnect.
    pub restored_sessions: Vec<(i64, i32)>,
}

struct Conn {
    id: u64,
    fd: i32,
    peer_ip: IpAddr,
    session_id: Cell<i64>,
    /// Shared with the sequencer per write; replaced (copy on write) on auth.
    identity: RefCell<Arc<Identity>>,
    out: RefCell<Vec<u8>>,
    out_ready: LocalSender<()>,
    /// Writes (and syncs, closes) sent to the sequencer and not yet
    /// answered, oldest first; at most `MAX_PIPELINED`.
    inflight: RefCell<VecDeque<InFlight>>,
    done: LocalSender<()>,
    closing: Cell<bool>,
    read_only_byte: Cell<bool>,
    /// Waiting, during a reconnect, for this replica to catch up.
    catching_up: Cell<bool>,
    counters: Arc<ClientStats>,
}

impl Conn {
    fn kick(&self) {
        let _ = self.out_ready.try_send(());
    }

    fn reply(&self, header: ReplyHeader, body: &Response, stats: &ShardCounters, arrived: Instant) {
        write_frame(&mut self.out.borrow_mut(), |b| {
            encode_reply(&header, body, b)
        });
        stats
            .sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let latency = arrived.elapsed();
        self.counters.note_reply(header.zxid, latency);
        stats.record_latency(latency);
        self.kick();
    }

    fn event(&self, event: &WatcherEvent) {
        write_frame(&mut self.out.borrow_mut(), |b| {
            ReplyHeader {
                xid: xid::NOTIFICATION,
                zxid: -1,
                err: 0,
            }
            .write(b);
            event.write(b);
        });
        self.kick();
    }

    fn raw(&self, bytes: &[u8]) {
        self.out.borrow_mut().extend_from_slice(bytes);
        self.kick();
    }

    /// Stops the connection once what is queued has been written.
    fn close(&self) {
        self.closing.set(true);
        self.kick();
    }
}

/// Writes a connection may have in flight before its next request waits:
/// they are answered in order, so this bounds what it is owed.
const MAX_PIPELINED: usize = 1024;

/// A request the sequencer orders, waiting for its turn to be answered.
struct InFlight {
    xid: i32,
    request: Request,
    arrived: Instant,
}

struct Session {
    timeout_ms: i32,
    deadline: Instant,
    conn: Option<u64>,
    expiring: bool,
}

pub struct Shard {
    index: usize,
    config: Arc<Config>,
    stats: Arc<Stats>,
    /// The newest committed version of the tree (shared with the sequencer).
    replica: RefCell<DataTree>,
    /// The last txn whose replies and events this shard has handled; equal
    /// to the replica's last zxid between batches.
    handled_zxid: Cell<i64>,
    watches: RefCell<WatchTable<u64>>,
    conns: RefCell<HashMap<u64, Rc<Conn>>>,
    sessions: RefCell<HashMap<i64, Session>>,
    /// Connections waiting for their new session: negotiated timeout.
    opening: RefCell<HashMap<u64, i32>>,
    to_sequencer: ConnectedSender<ToSequencer>,
    next_conn: Cell<u64>,
}

impl Shard {
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn counters(&self) -> &ShardCounters {
        self.stats.shard(self.index)
    }
}

/// Runs a shard on the current executor until the process stops.
pub async fn run(setup: ShardSetup) {
    let listener = match TcpListener::bind(setup.config.client_addr()) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %setup.config.client_addr(), error = %e, "cannot listen");
            crate::terminate(1);
        }
    };
    let now = Instant::now();
    let sessions = setup
        .restored_sessions
        .iter()
        .map(|&(id, timeout_ms)| {
            let session = Session {
                timeout_ms,
                deadline: now + Duration::from_millis(timeout_ms as u64),
                conn: None,
                expiring: false,
            };
            (id, session)
        })
        .collect();
    let shard = Rc::new(Shard {
        index: setup.index,
        stats: setup.stats,
        handled_zxid: Cell::new(setup.tree.last_zxid()),
        replica: RefCell::new(setup.tree),
        watches: RefCell::new(WatchTable::default()),
        conns: RefCell::new(HashMap::new()),
        sessions: RefCell::new(sessions),
        opening: RefCell::new(HashMap::new()),
        to_sequencer: setup.to_sequencer.connect().await,
        next_conn: Cell::new(1),
        config: setup.config,
    });
    glommio::spawn_local(apply_commits(shard.clone(), setup.commits)).detach();
    glommio::spawn_local(expire_sessions(shard.clone())).detach();
    if shard.index == 0 {
        crate::ops::admin::spawn(&shard);
    }
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(serve(shard.clone(), stream)).detach();
            }
            Err(e) => tracing::warn!(error = %e, "accept failed"),
        }
    }
}

fn now_deadline(timeout_ms: i32) -> Instant {
    Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64)
}

async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let Ok(peer_addr) = stream.peer_addr() else {
        return;
    };
    let peer_ip = peer_addr.ip();
    if !shard.stats.admit(peer_ip, shard.config.max_client_cnxns) {
        tracing::warn!(%peer_ip, limit = shard.config.max_client_cnxns, "too many connections from one address");
        return;
    }
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let (out_ready, out_rx) = local_channel::new_bounded(1);
    let (done, done_rx) = local_channel::new_bounded(16);
    let id = shard.next_conn.get();
    shard.next_conn.set(id + 1);
    let conn = Rc::new(Conn {
        id,
        fd,
        peer_ip,
        session_id: Cell::new(0),
        identity: RefCell::new(Arc::new(Identity::from_ip(&peer_ip.to_string()))),
        out: RefCell::new(Vec::new()),
        out_ready,
        inflight: RefCell::new(VecDeque::new()),
        done,
        closing: Cell::new(false),
        read_only_byte: Cell::new(false),
        catching_up: Cell::new(false),
        counters: Arc::new(ClientStats::new(peer_addr)),
    });
    shard
        .stats
        .add_client(shard.index, id, conn.counters.clone());
    shard.conns.borrow_mut().insert(id, conn.clone());
    let writer_conn = conn.clone();
    let writer_task = glommio::spawn_local(async move {
        write_loop(&writer_conn, &mut writer, out_rx).await;
        // Wake the reader: the connection is over.
        // SAFETY: shutdown on a socket fd this connection still owns.
        unsafe { libc::shutdown(writer_conn.fd, libc::SHUT_RDWR) };
    });
    if let Err(reason) = read_loop(&shard, &conn, &mut reader, &done_rx).await {
        tracing::debug!(conn = id, %reason, "connection closed");
    }
    conn.close();
    writer_task.await;
    forget_connection(&shard, &conn);
}

async fn write_loop(
    conn: &Conn,
    writer: &mut (impl futures_lite::AsyncWrite + Unpin),
    out_rx: LocalReceiver<()>,
) {
    loop {
        let bytes = std::mem::take(&mut *conn.out.borrow_mut());
        if !bytes.is_empty() && writer.write_all(&bytes).await.is_err() {
            return;
        }
        if conn.closing.get() && conn.out.borrow().is_empty() {
            let _ = writer.flush().await;
            return;
        }
        // Not `borrow()` inside the condition: its guard would live across the await.
        let idle = conn.out.borrow().is_empty();
        if idle && out_rx.recv().await.is_none() {
            return;
        }
    }
}

fn forget_connection(shard: &Shard, conn: &Conn) {
    shard.conns.borrow_mut().remove(&conn.id);
    // Nobody will answer these now.
    let unanswered = conn.inflight.borrow_mut().drain(..).count();
    shard
        .counters()
        .outstanding
        .fetch_sub(unanswered as i64, std::sync::atomic::Ordering::Relaxed);
    shard.stats.remove_client(shard.index, conn.id);
    shard.opening.borrow_mut().remove(&conn.id);
    shard.watches.borrow_mut().remove_watcher(conn.id);
    if let Some(s) = shard.sessions.borrow_mut().get_mut(&conn.session_id.get()) {
        if s.conn == Some(conn.id) {
            s.conn = None;
        }
    }
    shard.stats.release(conn.peer_ip);
}

/// What a connection's receive buffer starts with and shrinks back to; it
/// grows for a larger frame, up to `jute.maxbuffer`.
const RECEIVE_BUFFER: usize = 16 * 1024;

/// Reads frames until the connection ends; `Err` says why it was closed.
/// Frames are decoded where they were read: `start..filled` of the buffer is
/// not handled yet.
async fn read_loop(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    reader: &mut (impl futures_lite::AsyncRead + Unpin),
    done_rx: &LocalReceiver<()>,
) -> Result<(), String> {
    let max = shard.config.jute_max_buffer;
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    let (mut start, mut filled) = (0, 0);
    let mut connected = false;
    loop {
        if conn.closing.get() {
            return Ok(());
        }
        if !connected {
            if let Some(first) = buf[start..filled].first_chunk::<4>() {
                if let Some(word) = four_letter_word(first) {
                    conn.raw(answer_word(shard, word).await.as_bytes());
                    return Ok(());
                }
            }
        }
        let frame = split_frame(&buf[start..filled], max).map_err(|e| {
            tracing::warn!(conn = conn.id, error = %e, "closing connection");
            e.to_string()
        })?;
        let Some((payload, used)) = frame else {
            if start > 0 {
                buf.copy_within(start..filled, 0);
                filled -= start;
                start = 0;
            }
            if filled == buf.len() {
                // A frame larger than the buffer; split_frame bounds it by jute.maxbuffer.
                let grown = (buf.len() * 2).min(max + zoocore_net::frame::LENGTH_PREFIX);
                buf.resize(grown.max(filled + 1), 0);
            }
            let n = reader
                .read(&mut buf[filled..])
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("peer closed".into());
            }
            filled += n;
            continue;
        };
        if connected {
            handle_request(shard, conn, payload, done_rx).await?;
        } else {
            connect(shard, conn, payload, done_rx).await?;
            connected = true;
        }
        start += used;
        if start == filled {
            (start, filled) = (0, 0);
            if buf.len() > RECEIVE_BUFFER {
                buf.truncate(RECEIVE_BUFFER);
                buf.shrink_to_fit();
            }
        }
    }
}

fn invalid_session(conn: &Conn) -> ConnectResponse {
    ConnectResponse {
        protocol_version: 0,
        timeout: 0,
        session_id: 0,
        passwd: vec![0; session::PASSWORD_LEN],
        read_only: conn.read_only_byte.get().then_some(false),
    }
}

fn send_connect_response(conn: &Conn, response: &ConnectResponse) {
    write_frame(&mut conn.out.borrow_mut(), |b| response.write(b));
    conn.kick();
}

async fn connect(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    payload: &[u8],
    done_rx: &LocalReceiver<()>,
) -> Result<(), String> {
    let request =
        ConnectRequest::decode(payload).map_err(|e| format!("bad connect request: {e}"))?;
    conn.read_only_byte.set(request.read_only.is_some());
    let config = &shard.config;
    let timeout = session::negotiate_timeout(
        request.timeout,
        config.min_session_timeout_ms as i32,
        config.max_session_timeout_ms as i32,
    );
    let origin = Origin {
        shard: shard.index,
        conn: conn.id,
    };
    if request.session_id == 0 {
        shard.opening.borrow_mut().insert(conn.id, timeout);
        send(shard, ToSequencer::OpenSession { origin, timeout }).await?;
        done_rx.recv().await.ok_or("shard stopping")?;
        return Ok(());
    }
    let id = request.session_id;
    let state = || {
        let replica = shard.replica.borrow();
        (replica.last_zxid(), replica.sessions().contains_key(&id))
    };
    let (mut last_zxid, mut known) = state();
    if !known || request.last_zxid_seen > last_zxid {
        // Another shard may have committed more than this replica has applied
        // (the session's creation, or what the client saw): catch up first.
        conn.catching_up.set(true);
        send(shard, ToSequencer::Sync { origin }).await?;
        done_rx.recv().await.ok_or("shard stopping")?;
        (last_zxid, known) = state();
    }
    if request.last_zxid_seen > last_zxid {
        return Err(format!(
            "client has seen zxid {:#x}, server only {last_zxid:#x}",
            request.last_zxid_seen
        ));
    }
    if !known || request.passwd != session::password(id) {
        send_connect_response(conn, &invalid_session(conn));
        return Err(format!("session {id:#x} expired or bad password"));
    }
    let previous = shard.sessions.borrow_mut().insert(
        id,
        Session {
            timeout_ms: timeout,
            deadline: now_deadline(timeout),
            conn: Some(conn.id),
            expiring: false,
        },
    );
    if let Some(old) = previous.and_then(|s| s.conn) {
        if let Some(old) = shard.conns.borrow().get(&old) {
            old.close();
        }
    }
    tracing::info!(
        session = format!("{id:#x}"),
        timeout_ms = timeout,
        client = %conn.counters.peer,
        "session reattached"
    );
    conn.session_id.set(id);
    conn.counters.note_session(id, timeout);
    send(
        shard,
        ToSequencer::Attach {
            session_id: id,
            shard: shard.index,
        },
    )
    .await?;
    send_connect_response(
        conn,
        &ConnectResponse {
            protocol_version: 0,
            timeout,
            session_id: id,
            passwd: session::password(id).to_vec(),
            read_only: request.read_only.map(|_| false),
        },
    );
    Ok(())
}

async fn send(shard: &Shard, message: ToSequencer) -> Result<(), String> {
    shard
        .to_sequencer
        .send(message)
        .await
        .map_err(|_| "sequencer gone".to_owned())
}

async fn handle_request(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    payload: &[u8],
    done_rx: &LocalReceiver<()>,
) -> Result<(), String> {
    let (header, request) = decode_request(payload).map_err(|e| {
        tracing::warn!(conn = conn.id, error = %e, "malformed request; closing connection");
        format!("malformed request: {e}")
    })?;
    let arrived = Instant::now();
    shard
        .counters()
        .received
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    conn.counters.note_request(request.op(), header.xid);
    let session_id = conn.session_id.get();
    if let Some(s) = shard.sessions.borrow_mut().get_mut(&session_id) {
        s.deadline = now_deadline(s.timeout_ms);
    }
    let last_zxid = || shard.replica.borrow().last_zxid();
    let origin = Origin {
        shard: shard.index,
        conn: conn.id,
    };
    if request.is_write() || matches!(request, Request::Sync(_) | Request::CloseSession) {
        let message = match &request {
            Request::Sync(_) => ToSequencer::Sync { origin },
            Request::CloseSession => ToSequencer::CloseSession {
                origin: Some(origin),
                session_id,
                cxid: header.xid,
            },
            _ => ToSequencer::Write {
                origin,
                session_id,
                cxid: header.xid,
                identity: conn.identity.borrow().clone(),
                request: request.clone(),
            },
        };
        let closing = matches!(request, Request::CloseSession);
        let entry = InFlight {
            xid: header.xid,
            request,
            arrived,
        };
        pipeline(shard, conn, entry, message, done_rx).await?;
        if closing {
            drain(conn, done_rx).await?;
        }
        return Ok(());
    }
    // Answered here, so only after every earlier write of this connection
    // is answered: replies stay in order and reads see those writes.
    drain(conn, done_rx).await?;
    match &request {
        Request::Ping => {
            let h = ReplyHeader {
                xid: xid::PING,
                zxid: last_zxid(),
                err: 0,
            };
            conn.reply(h, &Response::Empty, shard.counters(), arrived);
        }
        Request::Auth(auth) => {
            let result = Arc::make_mut(&mut conn.identity.borrow_mut()).authenticate(
                &auth.scheme,
                &auth.auth,
                &conn.peer_ip.to_string(),
                shard.config.super_digest.as_deref(),
            );
            let err = result.err().map_or(0, ErrorCode::code);
            conn.reply(
                ReplyHeader {
                    xid: header.xid,
                    zxid: 0,
                    err,
                },
                &Response::Empty,
                shard.counters(),
                arrived,
            );
            if err != 0 {
                return Err("authentication failed".into());
            }
        }
        Request::Unsupported { op } => {
            let h = ReplyHeader {
                xid: header.xid,
                zxid: -1,
                err: ErrorCode::Unimplemented.code(),
            };
            conn.reply(h, &Response::Empty, shard.counters(), arrived);
            return Err(format!("unimplemented opcode {op}"));
        }
        _ => {
            let replica = shard.replica.borrow();
            let watched = {
                let mut watches = shard.watches.borrow_mut();
                handle_watch_request(&mut watches, &replica, conn.id, &request)
            };
            let (err, body) = match watched {
                Some(((err, body), events)) => {
                    for event in &events {
                        conn.event(event);
                    }
                    (err, body)
                }
                None => {
                    let reply = read(&replica, session_id, &conn.identity.borrow(), &request);
                    if let Some((table, path)) = watch_for(&request, reply.0) {
                        shard.watches.borrow_mut().add(table, path, conn.id);
                    }
                    reply
                }
            };
            let h = ReplyHeader {
                xid: header.xid,
                zxid: replica.last_zxid(),
                err,
            };
            conn.reply(h, &body, shard.counters(), arrived);
        }
    }
    Ok(())
}

/// Sends a request that the sequencer orders (a write, a close, a sync)
/// without waiting for its answer, so a client's pipelined writes share
/// group commits; waits first if the connection already has `MAX_PIPELINED`.
async fn pipeline(
    shard: &Shard,
    conn: &Conn,
    entry: InFlight,
    message: ToSequencer,
    done_rx: &LocalReceiver<()>,
) -> Result<(), String> {
    loop {
        let pending = conn.inflight.borrow().len();
        if pending < MAX_PIPELINED {
            break;
        }
        done_rx.recv().await.ok_or("shard stopping")?;
    }
    conn.inflight.borrow_mut().push_back(entry);
    shard
        .counters()
        .outstanding
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    send(shard, message).await
}

/// Waits until every request of the connection in the sequencer's hands has
/// been answered.
async fn drain(conn: &Conn, done_rx: &LocalReceiver<()>) -> Result<(), String> {
    loop {
        let pending = conn.inflight.borrow().len();
        if pending == 0 {
            return Ok(());
        }
        done_rx.recv().await.ok_or("shard stopping")?;
    }
}

/// The oldest request of the connection the sequencer ordered: its turn to be answered.
fn answered(shard: &Shard, conn: &Conn) -> Option<InFlight> {
    let entry = conn.inflight.borrow_mut().pop_front()?;
    shard
        .counters()
        .outstanding
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    Some(entry)
}

/// The answer to a four-letter word.
async fn answer_word(shard: &Rc<Shard>, word: &str) -> String {
    if !shard.config.allows_word(word) {
        return fourlw::not_whitelisted(word);
    }
    inspect(shard, fourlw::needs_views(word), |cx| {
        fourlw::answer(word, cx)
    })
    .await
    .unwrap_or_else(|e| format!("{word}: {e}\n"))
}

/// Runs `answer` on what four-letter words and admin commands show: this
/// shard's replica, and with `all_shards` every shard's view of its
/// connections, gathered through the sequencer's batch stream.
pub async fn inspect<R>(
    shard: &Rc<Shard>,
    all_shards: bool,
    answer: impl FnOnce(&fourlw::Context<'_>) -> R,
) -> Result<R, String> {
    let views = if all_shards {
        let gather = fourlw::Gather::new(shard.config.shards);
        send(shard, ToSequencer::Gather(gather.clone())).await?;
        gather
            .wait()
            .await
            .ok_or("not every shard answered in time")?
    } else {
        Vec::new()
    };
    let replica = shard.replica.borrow();
    let cx = fourlw::Context {
        config: &shard.config,
        stats: &shard.stats,
        tree: &replica,
        views: &views,
    };
    Ok(answer(&cx))
}

/// What this shard alone knows of its connections, for a four-letter word.
fn view(shard: &Shard) -> fourlw::ShardView {
    let conns = shard.conns.borrow();
    let session_of = |c: u64| conns.get(&c).map_or(0, |c| c.session_id.get());
    let watches = shard.watches.borrow();
    let (now, now_ms) = (Instant::now(), crate::stats::epoch_ms());
    fourlw::ShardView {
        shard: shard.index,
        data_watches: watches
            .data_watches()
            .map(|(p, watchers)| (p.to_owned(), watchers.map(session_of).collect()))
            .collect(),
        watch_count: watches.watch_count(),
        sessions: shard
            .sessions
            .borrow()
            .iter()
            .map(|(&id, s)| fourlw::SessionView {
                id,
                expires_ms: now_ms + s.deadline.saturating_duration_since(now).as_millis() as i64,
                peer: s.conn.and_then(|c| conns.get(&c)).map(|c| c.counters.peer),
            })
            .collect(),
    }
}

/// Applies every committed batch to this shard's replica, in zxid order.
async fn apply_commits(shard: Rc<Shard>, commits: SharedReceiver<Arc<CommitBatch>>) {
    let commits = commits.connect().await;
    while let Some(batch) = commits.recv().await {
        // The whole batch is handled before any read runs again, so reads
        // never see the new version before its writes are answered.
        *shard.replica.borrow_mut() = batch.tree.clone();
        for entry in &batch.entries {
            match entry {
                Entry::Attached {
                    session_id,
                    shard: owner,
                } => {
                    if *owner != shard.index {
                        let gone = shard.sessions.borrow_mut().remove(session_id);
                        if let Some(conn) = gone.and_then(|s| s.conn) {
                            if let Some(conn) = shard.conns.borrow().get(&conn) {
                                conn.close();
                            }
                        }
                    }
                }
                Entry::Txn {
                    txn,
                    origin,
                    applied,
                } => apply_txn(&shard, txn, applied, *origin),
                Entry::Synced { origin } if origin.shard == shard.index => {
                    let conn = shard.conns.borrow().get(&origin.conn).cloned();
                    match conn {
                        Some(conn) if conn.catching_up.replace(false) => {
                            let _ = conn.done.try_send(());
                        }
                        Some(conn) => answer_sync(&shard, &conn),
                        None => {}
                    }
                }
                Entry::Synced { .. } => {}
                Entry::Gather(gather) => gather.add(view(&shard)),
                Entry::Rejected { origin, session_id } => reject(&shard, *origin, *session_id),
            }
        }
        // The replica is the version every handled txn leads to.
        assert_eq!(
            shard.handled_zxid.get(),
            shard.replica.borrow().last_zxid(),
            "shard {} handled a batch other than its version's",
            shard.index
        );
        let counters = shard.counters();
        counters
            .batches_applied
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shard
            .stats
            .apply_us
            .record(batch.durable_at.elapsed().as_micros() as u64);
    }
}

fn apply_txn(
    shard: &Rc<Shard>,
    txn: &zoocore_engine::Txn,
    applied: &Applied,
    origin: Option<Origin>,
) {
    // Design invariant 1: every shard handles every txn, in order, none
    // skipped (the sequencer hands out consecutive zxids).
    assert_eq!(
        txn.zxid,
        shard.handled_zxid.get() + 1,
        "shard {} out of step with the sequencer",
        shard.index
    );
    shard.handled_zxid.set(txn.zxid);
    let conns = shard.conns.borrow();
    let mut can_read = |w: u64, acl: &[zoocore_net::Acl]| {
        conns
            .get(&w)
            .is_some_and(|c| acl::check(acl, perms::READ, &c.identity.borrow()))
    };
    let events = shard.watches.borrow_mut().fire(applied, &mut can_read);
    for (w, event) in &events {
        if let Some(conn) = conns.get(w) {
            conn.event(event);
        }
    }
    let mine = origin
        .filter(|o| o.shard == shard.index)
        .and_then(|o| conns.get(&o.conn).cloned());
    match applied {
        Applied::SessionCreated => {
            let Some(conn) = mine else {
                // The connection went away before its session was made; the
                // session expires unless someone reconnects to it.
                if origin.is_some_and(|o| o.shard == shard.index) {
                    track(shard, txn.session_id, txn_timeout(txn), None);
                }
                return;
            };
            let timeout = shard
                .opening
                .borrow_mut()
                .remove(&conn.id)
                .unwrap_or_else(|| txn_timeout(txn));
            tracing::info!(
                session = format!("{:#x}", txn.session_id),
                timeout_ms = timeout,
                client = %conn.counters.peer,
                "session established"
            );
            track(shard, txn.session_id, timeout, Some(conn.id));
            conn.session_id.set(txn.session_id);
            conn.counters.note_session(txn.session_id, timeout);
            send_connect_response(
                &conn,
                &ConnectResponse {
                    protocol_version: 0,
                    timeout,
                    session_id: txn.session_id,
                    passwd: session::password(txn.session_id).to_vec(),
                    read_only: conn.read_only_byte.get().then_some(false),
                },
            );
            let _ = conn.done.try_send(());
        }
        Applied::SessionClosed { deleted } => {
            let tracked = shard.sessions.borrow_mut().remove(&txn.session_id);
            if tracked.is_some() {
                tracing::info!(
                    session = format!("{:#x}", txn.session_id),
                    ephemerals_deleted = deleted.len(),
                    "session closed"
                );
            }
            if let Some(conn) = mine {
                reply_write(shard, &conn, txn, applied);
                conn.close();
            } else if let Some(conn) = tracked.and_then(|s| s.conn).and_then(|c| conns.get(&c)) {
                conn.close();
            }
        }
        _ => {
            if let Some(conn) = mine {
                reply_write(shard, &conn, txn, applied);
                if conn.inflight.borrow().is_empty() && txn_closes(applied) {
                    conn.close();
                }
            }
        }
    }
}

fn txn_timeout(txn: &zoocore_engine::Txn) -> i32 {
    match txn.op {
        zoocore_engine::TxnOp::CreateSession { timeout } => timeout,
        _ => 0,
    }
}

/// A close answered with SessionExpired (the session was already gone).
fn txn_closes(applied: &Applied) -> bool {
    matches!(applied, Applied::Error(code) if *code == ErrorCode::SessionExpired.code())
}

fn track(shard: &Shard, session_id: i64, timeout_ms: i32, conn: Option<u64>) {
    shard.sessions.borrow_mut().insert(
        session_id,
        Session {
            timeout_ms,
            deadline: now_deadline(timeout_ms),
            conn,
            expiring: false,
        },
    );
}

fn reply_write(shard: &Shard, conn: &Conn, txn: &zoocore_engine::Txn, applied: &Applied) {
    let Some(entry) = answered(shard, conn) else {
        tracing::error!(
            conn = conn.id,
            "commit for a connection with no write in flight"
        );
        return;
    };
    debug_assert_eq!(entry.xid, txn.cxid, "replies leave in request order");
    let (err, body) = write_reply(&entry.request, applied);
    conn.reply(
        ReplyHeader {
            xid: entry.xid,
            zxid: txn.zxid,
            err,
        },
        &body,
        shard.counters(),
        entry.arrived,
    );
    let _ = conn.done.try_send(());
}

/// A request the log could not take: writes get SystemError, a new session
/// loses its connection, an expiry is retried later.
fn reject(shard: &Shard, origin: Option<Origin>, session_id: i64) {
    let Some(origin) = origin else {
        if let Some(s) = shard.sessions.borrow_mut().get_mut(&session_id) {
            s.expiring = false;
        }
        return;
    };
    if origin.shard != shard.index {
        return;
    }
    let Some(conn) = shard.conns.borrow().get(&origin.conn).cloned() else {
        return;
    };
    if shard.opening.borrow_mut().remove(&conn.id).is_some() {
        conn.close();
        return;
    }
    let Some(entry) = answered(shard, &conn) else {
        return;
    };
    let zxid = shard.handled_zxid.get();
    let header = ReplyHeader {
        xid: entry.xid,
        zxid,
        err: ErrorCode::SystemError.code(),
    };
    conn.reply(header, &Response::Empty, shard.counters(), entry.arrived);
    let _ = conn.done.try_send(());
}

fn answer_sync(shard: &Shard, conn: &Conn) {
    let Some(InFlight {
        xid,
        request: Request::Sync(path),
        arrived,
    }) = answered(shard, conn)
    else {
        tracing::error!(conn = conn.id, "sync answered out of order");
        conn.close();
        return;
    };
    let zxid = shard.handled_zxid.get();
    conn.reply(
        ReplyHeader { xid, zxid, err: 0 },
        &Response::Sync(path.path),
        shard.counters(),
        arrived,
    );
    let _ = conn.done.try_send(());
}

/// Turns sessions that stopped talking into closeSession requests.
async fn expire_sessions(shard: Rc<Shard>) {
    let period = Duration::from_millis((shard.config.tick_time_ms / 4).clamp(10, 500) as u64);
    loop {
        glommio::timer::sleep(period).await;
        let now = Instant::now();
        let due: Vec<i64> = shard
            .sessions
            .borrow_mut()
            .iter_mut()
            .filter(|(_, s)| !s.expiring && s.deadline <= now)
            .map(|(id, s)| {
                s.expiring = true;
                *id
            })
            .collect();
        for session_id in due {
            tracing::info!(session = format!("{session_id:#x}"), "session expired");
            let close = ToSequencer::CloseSession {
                origin: None,
                session_id,
                cxid: 0,
            };
            if send(&shard, close).await.is_err() {
                return;
            }
        }
    }
}
