//! The sequencer: the one place that validates writes against the
//! authoritative tree, assigns zxids, group-commits them to the log and fans
//! each durable batch out to every shard as one shared buffer.
//!
//! Per shard a task drains that shard's queue and validates each request at
//! once (applying it to the sequencer's own tree, so later requests see it, as
//! ZooKeeper's outstanding changes do, and encoding it into the open batch).
//! A committer task takes the open batch, writes and syncs it, and only then
//! sends it on with the version of the tree it leads to; while it waits for
//! the disk the next batch fills. Shards and the snapshotter read those
//! versions: the tree is persistent, so no one keeps a copy of their own.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use glommio::channels::local_channel;
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use glommio::sync::Semaphore;
use zoocore_engine::acl::Identity;
use zoocore_engine::tree::Applied;
use zoocore_engine::txn::Txn;
use zoocore_engine::{session, DataTree};
use zoocore_net::Request;

use crate::stats::Stats;
use crate::storage::snapshotter::SnapshotPolicy;
use crate::storage::wal::LogWriter;

mod batch;
pub(crate) mod fanout;

use batch::{Batch, Sealed, State};
use fanout::{commit_batch, fan_out, reject, HandedVersions};

/// Where a request came from, so its shard can answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub shard: usize,
    pub conn: u64,
}

/// What shards ask of the sequencer.
pub enum ToSequencer {
    Write {
        origin: Origin,
        session_id: i64,
        cxid: i32,
        identity: Arc<Identity>,
        request: Request,
        /// A read of the same connection waits behind its earlier writes:
        /// the batch marks the tree as it stands before this write
        /// ([`Entry::Version`]), for the shard to answer that read from.
        fence: bool,
    },
    OpenSession {
        origin: Origin,
        timeout: i32,
    },
    /// Explicit close (with an origin) or expiry (without).
    CloseSession {
        origin: Option<Origin>,
        session_id: i64,
        cxid: i32,
    },
    /// A session reconnected on `shard`: other shards stop tracking it.
    Attach {
        session_id: i64,
        shard: usize,
    },
    /// `sync`: answered once the shard has applied everything committed before it.
    Sync {
        origin: Origin,
    },
    /// A four-letter word wants every shard's view of its connections.
    Gather(Arc<crate::inspect::Gather>),
    /// Ensemble member: sessions whose clients were heard from since the
    /// last report, for the leader's expiry.
    Touches(Vec<i64>),
}

/// One entry of a committed batch.
// Txn, the big variant, is also the common one: boxing it would cost an
// allocation per write to save space on the rare others.
#[allow(clippy::large_enum_variant)]
pub enum Entry {
    Txn {
        txn: Txn,
        origin: Option<Origin>,
        /// Its effect, worked out once by the sequencer for every shard.
        applied: Applied,
    },
    Attached {
        session_id: i64,
        shard: usize,
    },
    /// A sync's turn: every earlier txn is in this or an earlier batch.
    Synced {
        origin: Origin,
    },
    /// Each shard adds its view of its connections to the word's gather.
    Gather(Arc<crate::inspect::Gather>),
    /// A write or session change that could not be made durable (the log
    /// could not be written): its shard answers it with an error.
    Rejected {
        origin: Option<Origin>,
        session_id: i64,
    },
    /// Ensemble member: close a connection (`None`: every connection, as
    /// when the leader changed); its requests in flight end in connection loss.
    Disconnect {
        origin: Option<Origin>,
    },
    /// The tree as the txns before this entry leave it, marked before a
    /// fenced write: a connection's reads waiting behind its earlier writes
    /// are answered from it, so they never see its later writes.
    Version(DataTree),
    /// Ensemble member: the batch's tree is the leader's snapshot, not the
    /// last one's txns applied. Watches cannot be told what changed, so
    /// every connection is closed (clients reconnect and set them again).
    Installed,
}

/// A durable batch, shared read-only by every shard.
pub struct CommitBatch {
    pub entries: Vec<Entry>,
    /// The tree with every txn of this and earlier batches applied.
    pub tree: DataTree,
    /// When it became durable (for the fan-out apply latency).
    pub durable_at: std::time::Instant,
}

/// Asks a server's sequencer to stop once what it has taken is durable.
/// One per server (not a process global), so several can share a process.
#[derive(Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why the sequencer returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Shutdown was requested: every batch taken is durable and handed out;
    /// what was still open was never acknowledged.
    Requested,
    /// A shard's commit queue is gone: the server cannot answer any more.
    ShardGone,
    /// An ensemble member's replica found its log or state inconsistent.
    Diverged,
}

pub struct SequencerSetup {
    pub tree: DataTree,
    pub log: LogWriter,
    pub inboxes: Vec<SharedReceiver<ToSequencer>>,
    pub outboxes: Vec<SharedSender<Arc<CommitBatch>>>,
    pub max_batch_txns: usize,
    pub max_batch_bytes: usize,
    /// Wait this long before taking a batch that is not full, to let it grow.
    pub linger: std::time::Duration,
    pub stats: Arc<Stats>,
    pub server_id: u8,
    pub container_check_interval: std::time::Duration,
    pub snapshot_policy: SnapshotPolicy,
    /// Hands a durable version of the tree to the snapshotter.
    pub snapshot_wake: std::sync::mpsc::SyncSender<DataTree>,
    pub fsync_warning: std::time::Duration,
    pub shutdown: Shutdown,
}

/// Runs the sequencer on the current executor until it is asked to stop.
pub async fn run(setup: SequencerSetup) -> Stopped {
    let SequencerSetup {
        tree,
        mut log,
        inboxes,
        outboxes,
        max_batch_txns,
        max_batch_bytes,
        linger,
        stats,
        server_id,
        container_check_interval,
        mut snapshot_policy,
        snapshot_wake,
        fsync_warning,
        shutdown,
    } = setup;
    // What the log holds: a failed write returns the sequencer to it.
    let mut durable = tree.clone();
    let state = Rc::new(RefCell::new(State {
        next_zxid: tree.last_zxid() + 1,
        next_session_id: session::first_session_id(server_id, now_ms()),
        tree,
        open: Batch::new(),
        sealed: VecDeque::new(),
        max_batch_bytes,
    }));
    // Room in the open batch: taken per request, returned per committed entry.
    let room = Rc::new(Semaphore::new(max_batch_txns as u64));
    let (kick_tx, kick_rx) = local_channel::new_bounded::<()>(1);
    let kick_tx = Rc::new(kick_tx);
    for inbox in inboxes {
        let (state, room, kick_tx) = (state.clone(), room.clone(), kick_tx.clone());
        glommio::spawn_local(async move {
            let inbox = inbox.connect().await;
            while let Some(message) = inbox.recv().await {
                if room.acquire(1).await.is_err() {
                    return;
                }
                state.borrow_mut().accept(message, now_ms());
                let _ = kick_tx.try_send(());
            }
        })
        .detach();
    }
    {
        let (state, room, kick_tx) = (state.clone(), room.clone(), kick_tx.clone());
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(container_check_interval).await;
                let due = state.borrow().tree.expired_nodes(now_ms());
                for path in due {
                    if room.acquire(1).await.is_err() {
                        return;
                    }
                    state.borrow_mut().expire(&path, now_ms());
                    let _ = kick_tx.try_send(());
                }
            }
        })
        .detach();
    }
    let mut senders: Vec<ConnectedSender<Arc<CommitBatch>>> = Vec::new();
    for outbox in outboxes {
        senders.push(outbox.connect().await);
    }
    let mut handed = HandedVersions::default();
    loop {
        let pending = state.borrow().pending_entries();
        if !linger.is_zero() && (1..max_batch_txns).contains(&pending) {
            glommio::timer::sleep(linger).await;
        }
        if shutdown.requested() {
            tracing::info!("shutting down; the log is durable");
            return Stopped::Requested;
        }
        stats
            .open_batch
            .store(state.borrow().pending_entries() as u64, Ordering::Relaxed);
        let Some(Sealed { batch, tree }) = state.borrow_mut().take() else {
            // Wake at least every 50 ms to notice a shutdown request.
            futures_lite::future::or(
                async {
                    let _ = kick_rx.recv().await;
                },
                glommio::timer::sleep(std::time::Duration::from_millis(50)),
            )
            .await;
            continue;
        };
        let Batch {
            entries,
            records,
            txns,
            zxids,
        } = batch;
        if let Some((first_zxid, last_zxid)) = zxids {
            assert_eq!(tree.last_zxid(), last_zxid, "a batch's tree is its own");
            let record_bytes = records.len() as u64;
            let started = std::time::Instant::now();
            match log.append(records, first_zxid).await {
                Ok(bytes) => {
                    let took = started.elapsed();
                    if took >= fsync_warning {
                        tracing::warn!(
                            ms = took.as_millis() as u64,
                            txns,
                            bytes,
                            "log write and fsync took longer than fsync.warningthresholdms"
                        );
                    }
                    stats.record_batch(txns, bytes, took);
                    durable = tree.clone();
                    if snapshot_policy.record(txns as u64, record_bytes) {
                        // Coalesces with a version still waiting to be written.
                        let _ = snapshot_wake.try_send(tree.clone());
                    }
                }
                Err(e) => {
                    // Disk full or failing: nothing of this batch is acknowledged.
                    // Return to what the log holds and refuse what was built on
                    // top of it; reads go on, and the next batch tries again.
                    tracing::error!(error = %e, "log write failed; rejecting writes until it succeeds");
                    let later: Vec<Entry> = {
                        let mut s = state.borrow_mut();
                        s.next_zxid = durable.last_zxid() + 1;
                        s.tree = durable.clone();
                        let sealed = std::mem::take(&mut s.sealed);
                        let open = std::mem::replace(&mut s.open, Batch::new());
                        sealed
                            .into_iter()
                            .flat_map(|s| s.batch.entries)
                            .chain(open.entries)
                            .collect()
                    };
                    room.signal((entries.len() + later.len()) as u64);
                    let rejected = entries
                        .into_iter()
                        .chain(later)
                        .map(|e| reject(e, &durable))
                        .collect();
                    let batch = commit_batch(rejected, durable.clone());
                    if let Err(stopped) = fan_out(&senders, &stats, batch.clone()).await {
                        return stopped;
                    }
                    handed.push(&batch, &stats);
                    continue;
                }
            }
        }
        room.signal(entries.len() as u64);
        let batch = commit_batch(entries, tree);
        if let Err(stopped) = fan_out(&senders, &stats, batch.clone()).await {
            return stopped;
        }
        handed.push(&batch, &stats);
    }
}

/// The sequencer's clock: txn time stamps and session ids come from here alone.
fn now_ms() -> i64 {
    crate::stats::epoch_ms()
}
