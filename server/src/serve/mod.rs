//! A shard core: accepts connections (SO_REUSEPORT, so every shard listens on
//! the client port), keeps each connection and its session here, serves reads
//! from its replica without locks, sends writes and session changes to the
//! sequencer, and takes each committed batch's version of the tree as its
//! replica, firing the watches of its connections and answering its own
//! writes from the effects the sequencer worked out.
//!
//! Per connection, replies leave in request order (design invariant 3) and
//! a session always reads its own writes: a read that arrives while the
//! connection's writes are in flight waits in its queue, and the connection
//! goes on sending its later writes. A standalone server answers the read
//! when its turn comes while the shard handles a committed batch, from the
//! version of the tree the sequencer marked before the connection's next
//! write ([`crate::seq::Entry::Version`]), or from the batch's own; so the
//! read sees the writes sent before it and none sent after. An ensemble
//! member's batches come from the leader's log without such marks, so there
//! a read waits, and stops the connection's later requests, until the
//! writes before it are answered. Watch events of a txn are queued before
//! any later reply (invariant 4) because the same task applies the txn,
//! queues the events, then the reply.

mod commits;
mod conn;
mod request;
mod sessions;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::LocalSender;
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use glommio::net::TcpListener;
use zoocore_engine::acl::Identity;
use zoocore_engine::{DataTree, WatchTable};
use zoocore_net::consts::xid;
use zoocore_net::frame::write_frame;
use zoocore_net::jute::Jute;
use zoocore_net::records::{ReplyHeader, WatcherEvent};
use zoocore_net::{encode_reply, Request, Response};

use crate::audit::AuditLog;
use crate::auth::SaslServer;
use crate::config::Config;
use crate::seq::{CommitBatch, ToSequencer};
use crate::stats::{ClientStats, ShardCounters, Stats};
use crate::tls::ServerTls;

pub use request::inspect;

pub struct ShardSetup {
    pub index: usize,
    pub config: Arc<Config>,
    pub tree: DataTree,
    pub to_sequencer: SharedSender<ToSequencer>,
    pub commits: SharedReceiver<Arc<CommitBatch>>,
    pub stats: Arc<Stats>,
    /// The audit log, when `audit.enable` is on.
    pub audit: Option<Arc<AuditLog>>,
    /// TLS for `secureClientPort` (or the unified client port).
    pub tls: Option<Arc<ServerTls>>,
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
    /// Replies and events not yet written; at most `out_limit` bytes.
    out: RefCell<Vec<u8>>,
    out_limit: usize,
    out_ready: LocalSender<()>,
    /// Requests not answered yet, oldest first: writes (and syncs, closes)
    /// sent to the sequencer, and reads waiting behind them; at most
    /// `MAX_PIPELINED`.
    inflight: RefCell<VecDeque<InFlight>>,
    done: LocalSender<()>,
    closing: Cell<bool>,
    read_only_byte: Cell<bool>,
    /// Connected to this member while it serves read-only: reads only, and
    /// closed when the member has a leader again.
    read_only_session: Cell<bool>,
    /// Waiting, during a reconnect, for this replica to catch up.
    catching_up: Cell<bool>,
    /// The SASL exchange, from the connection's first SASL packet on.
    sasl: RefCell<Option<SaslServer>>,
    counters: Arc<ClientStats>,
}

/// Queued output a connection may hold whatever `jute.maxbuffer` is: a
/// client that stops reading while its replies or watch events keep coming
/// is disconnected here rather than growing the server's memory.
const OUTPUT_LIMIT_FLOOR: usize = 32 << 20;
/// Replies of up to `jute.maxbuffer` each that may queue before that.
const OUTPUT_LIMIT_REPLIES: usize = 16;

fn output_limit(jute_max_buffer: usize) -> usize {
    OUTPUT_LIMIT_FLOOR.max(jute_max_buffer.saturating_mul(OUTPUT_LIMIT_REPLIES))
}

impl Conn {
    /// Wakes the writer for what was just queued, or drops the client if
    /// too much is queued.
    fn kick(&self) {
        let queued = self.out.borrow().len();
        if queued > self.out_limit {
            if !self.closing.get() {
                tracing::warn!(
                    conn = self.id,
                    session = format_args!("{:#x}", self.session_id.get()),
                    queued,
                    limit = self.out_limit,
                    "client is not reading its replies and events; closing the connection"
                );
            }
            *self.out.borrow_mut() = Vec::new();
            self.closing.set(true);
            // The writer may be blocked on the full socket: fail its write
            // and end the reader as well.
            // SAFETY: shutdown on a socket fd this connection still owns.
            unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        }
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

/// Requests a connection may have in flight before its next request waits:
/// they are answered in order, so this bounds what it is owed.
const MAX_PIPELINED: usize = 1024;

/// A request waiting for its turn to be answered.
struct InFlight {
    xid: i32,
    request: Request,
    arrived: Instant,
    /// A sync whose turn came while earlier requests of its connection were
    /// still in flight (an ensemble's ReadIndex can come back before a
    /// write sent earlier commits): answered right after them.
    synced: bool,
    /// A read, answered here from a version of the tree rather than by the
    /// sequencer.
    read: bool,
}

struct Session {
    timeout_ms: i32,
    deadline: Instant,
    conn: Option<u64>,
    expiring: bool,
    /// Heard from since the last report to an ensemble's leader.
    touched: bool,
}

pub struct Shard {
    index: usize,
    config: Arc<Config>,
    stats: Arc<Stats>,
    audit: Option<Arc<AuditLog>>,
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
    /// Connections whose oldest request is a read whose turn has come: it
    /// is answered at the batch's next version mark or at its end.
    reads_due: RefCell<Vec<u64>>,
    to_sequencer: ConnectedSender<ToSequencer>,
    next_conn: Cell<u64>,
    /// The next id for a session opened while read-only; never replicated.
    next_read_only_session: Cell<i64>,
}

impl Shard {
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn counters(&self) -> &ShardCounters {
        self.stats.shard(self.index)
    }
}

/// Runs a shard on the current executor until the process stops;
/// `started` runs once the shard exists (process.rs puts the admin server
/// on shard 0 with it).
pub async fn run(setup: ShardSetup, started: impl FnOnce(&Rc<Shard>)) -> Result<(), String> {
    let addr = setup.config.client_addr();
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let secure = match (setup.config.secure_client_addr(), &setup.tls) {
        (Some(addr), Some(tls)) => {
            let listener = TcpListener::bind(addr)
                .map_err(|e| format!("cannot listen on {addr} (secureClientPort): {e}"))?;
            Some((listener, tls.clone()))
        }
        _ => None,
    };
    let unified = setup
        .tls
        .clone()
        .filter(|_| setup.config.tls.port_unification);
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
                touched: false,
            };
            (id, session)
        })
        .collect();
    let shard = Rc::new(Shard {
        index: setup.index,
        stats: setup.stats,
        audit: setup.audit,
        handled_zxid: Cell::new(setup.tree.last_zxid()),
        replica: RefCell::new(setup.tree),
        watches: RefCell::new(WatchTable::default()),
        conns: RefCell::new(HashMap::new()),
        sessions: RefCell::new(sessions),
        opening: RefCell::new(HashMap::new()),
        reads_due: RefCell::new(Vec::new()),
        to_sequencer: setup.to_sequencer.connect().await,
        next_conn: Cell::new(1),
        next_read_only_session: Cell::new(sessions::first_read_only_session_id(
            &setup.config,
            setup.index,
        )),
        config: setup.config,
    });
    glommio::spawn_local(commits::apply_commits(shard.clone(), setup.commits)).detach();
    glommio::spawn_local(sessions::expire_sessions(shard.clone())).detach();
    started(&shard);
    if let Some((listener, tls)) = secure {
        glommio::spawn_local(conn::accept_tls(shard.clone(), listener, tls)).detach();
    }
    loop {
        match listener.accept().await {
            Ok(stream) => match &unified {
                Some(tls) => {
                    glommio::spawn_local(conn::serve_either(shard.clone(), stream, tls.clone()))
                        .detach();
                }
                None => {
                    glommio::spawn_local(conn::serve(shard.clone(), stream)).detach();
                }
            },
            Err(e) => tracing::warn!(error = %e, "accept failed"),
        }
    }
}
