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
use std::sync::atomic::Ordering;
use std::sync::Arc;

use glommio::channels::local_channel;
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use glommio::sync::Semaphore;
use zoocore_engine::acl::Identity;
use zoocore_engine::prep::prepare_expiry_delete;
use zoocore_engine::tree::Applied;
use zoocore_engine::txn::{Txn, TxnOp};
use zoocore_engine::{prepare, session, DataTree, PrepContext};
use zoocore_net::{ErrorCode, Request};

use crate::storage::snapshotter::SnapshotPolicy;
use crate::stats::Stats;
use crate::storage::wal::LogWriter;

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
    Gather(Arc<crate::ops::fourlw::Gather>),
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
    Gather(Arc<crate::ops::fourlw::Gather>),
    /// A write or session change that could not be made durable (the log
    /// could not be written): its shard answers it with an error.
    Rejected {
        origin: Option<Origin>,
        session_id: i64,
    },
}

/// A durable batch, shared read-only by every shard.
pub struct CommitBatch {
    pub entries: Vec<Entry>,
    /// The tree with every txn of this and earlier batches applied.
    pub tree: DataTree,
    /// When it became durable (for the fan-out apply latency).
    pub durable_at: std::time::Instant,
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
}

/// Entries on their way to the log, with the log image of their txns.
struct Batch {
    entries: Vec<Entry>,
    records: Vec<u8>,
    txns: usize,
    /// First and last zxid, when there is a txn.
    zxids: Option<(i64, i64)>,
}

impl Batch {
    fn new() -> Batch {
        let mut records = Vec::with_capacity(zoocore_engine::log::BLOCK);
        zoocore_engine::log::begin_batch(&mut records);
        Batch {
            entries: Vec::new(),
            records,
            txns: 0,
            zxids: None,
        }
    }
}

/// A batch that takes no more entries, with the tree as its txns leave it.
struct Sealed {
    batch: Batch,
    tree: DataTree,
}

struct State {
    tree: DataTree,
    next_zxid: i64,
    next_session_id: i64,
    open: Batch,
    /// Batches closed at the byte limit, oldest first; each holds at least one
    /// txn, and all of them together hold fewer entries than `maxBatchTxns`.
    sealed: VecDeque<Sealed>,
    max_batch_bytes: usize,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl State {
    fn txn(&mut self, session_id: i64, cxid: i32, op: TxnOp, origin: Option<Origin>) {
        let txn = Txn {
            zxid: self.next_zxid,
            time: now_ms(),
            session_id,
            cxid,
            op,
        };
        self.next_zxid += 1;
        let before = self.open.records.len();
        zoocore_engine::log::append_record(&mut self.open.records, TERM, &txn);
        if self.open.records.len() > self.max_batch_bytes && self.open.txns > 0 {
            // Over the byte limit: the open batch ends before this txn.
            self.open.records.truncate(before);
            self.seal();
            zoocore_engine::log::append_record(&mut self.open.records, TERM, &txn);
        }
        let open = &mut self.open;
        open.txns += 1;
        let first = open.zxids.map_or(txn.zxid, |(first, _)| first);
        open.zxids = Some((first, txn.zxid));
        // Design invariant 1: a batch's zxids are consecutive; recovery and
        // segment names rely on it.
        assert_eq!(
            txn.zxid - first + 1,
            open.txns as i64,
            "batch zxids not consecutive"
        );
        let applied = self.tree.apply(&txn);
        self.open.entries.push(Entry::Txn {
            txn,
            origin,
            applied,
        });
    }

    fn seal(&mut self) {
        let batch = std::mem::replace(&mut self.open, Batch::new());
        self.sealed.push_back(Sealed {
            batch,
            tree: self.tree.clone(),
        });
    }

    /// The next batch for the log: the oldest sealed one, else the open one.
    fn take(&mut self) -> Option<Sealed> {
        if self.sealed.is_empty() && !self.open.entries.is_empty() {
            self.seal();
        }
        self.sealed.pop_front()
    }

    fn pending_entries(&self) -> usize {
        self.open.entries.len()
            + self
                .sealed
                .iter()
                .map(|s| s.batch.entries.len())
                .sum::<usize>()
    }

    fn accept(&mut self, message: ToSequencer) {
        match message {
            ToSequencer::Write {
                origin,
                session_id,
                cxid,
                identity,
                request,
            } => {
                let op = if self.tree.sessions().contains_key(&session_id) {
                    let ctx = PrepContext {
                        session_id,
                        identity: &identity,
                        zxid: self.next_zxid,
                        time: now_ms(),
                    };
                    prepare(&self.tree, &ctx, &request)
                } else {
                    TxnOp::Error(ErrorCode::SessionExpired.code())
                };
                self.txn(session_id, cxid, op, Some(origin));
            }
            ToSequencer::OpenSession { origin, timeout } => {
                let id = self.next_session_id;
                self.next_session_id += 1;
                self.txn(id, 0, TxnOp::CreateSession { timeout }, Some(origin));
            }
            ToSequencer::CloseSession {
                origin,
                session_id,
                cxid,
            } => {
                if self.tree.sessions().contains_key(&session_id) {
                    let identity = Identity::default();
                    let ctx = PrepContext {
                        session_id,
                        identity: &identity,
                        zxid: self.next_zxid,
                        time: now_ms(),
                    };
                    let op = prepare(&self.tree, &ctx, &Request::CloseSession);
                    self.txn(session_id, cxid, op, origin);
                } else if origin.is_some() {
                    // Expired meanwhile: the close is answered by an error txn.
                    self.txn(
                        session_id,
                        cxid,
                        TxnOp::Error(ErrorCode::SessionExpired.code()),
                        origin,
                    );
                }
            }
            ToSequencer::Attach { session_id, shard } => {
                self.open
                    .entries
                    .push(Entry::Attached { session_id, shard });
            }
            ToSequencer::Sync { origin } => self.open.entries.push(Entry::Synced { origin }),
            ToSequencer::Gather(gather) => self.open.entries.push(Entry::Gather(gather)),
        }
    }

    /// Deletes one container or TTL node found due, as ZooKeeper's container
    /// manager does (the check is repeated against the current tree).
    fn expire(&mut self, path: &str) {
        let op = prepare_expiry_delete(&self.tree, self.next_zxid, path);
        if !matches!(op, TxnOp::Error(_)) {
            tracing::debug!(path, "expired node deleted");
            self.txn(0, 0, op, None);
        }
    }
}

/// The only term there is until replication (design §4).
const TERM: u64 = 0;

/// Runs the sequencer on the current executor until the process stops.
pub async fn run(setup: SequencerSetup) {
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
                state.borrow_mut().accept(message);
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
                    state.borrow_mut().expire(&path);
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
        if crate::STOP.load(Ordering::Relaxed) {
            // Every batch taken so far is durable and handed to the shards;
            // what is still open was never acknowledged.
            tracing::info!("shutting down; the log is durable");
            crate::terminate(0);
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
                    let rejected = entries.into_iter().chain(later).map(reject).collect();
                    fan_out(&senders, &stats, commit_batch(rejected, durable.clone())).await;
                    handed.push(durable.clone(), &stats);
                    continue;
                }
            }
        }
        room.signal(entries.len() as u64);
        fan_out(&senders, &stats, commit_batch(entries, tree.clone())).await;
        handed.push(tree, &stats);
    }
}

/// Versions of the tree handed to the shards, oldest first. The sequencer
/// lets go of each only once every shard has moved past it, so that its own
/// reference is the last: the nodes a version alone holds are then freed on
/// the core that allocated them. Freed on a shard, they cost it a lock on
/// the sequencer's malloc arena and cache misses on every count (measured:
/// 15-20% of write throughput). At most the commit queue's length plus one
/// per shard are held, since a shard that falls behind stops the fan-out.
#[derive(Default)]
struct HandedVersions {
    versions: VecDeque<DataTree>,
    /// Batches handed out before the oldest version held.
    released: u64,
}

impl HandedVersions {
    fn push(&mut self, tree: DataTree, stats: &Stats) {
        self.versions.push_back(tree);
        // A shard that has applied n batches holds no version older than the n-th.
        let applied = stats.min_batches_applied();
        while self.released + 1 < applied && self.versions.len() > 1 {
            self.versions.pop_front();
            self.released += 1;
        }
    }
}

fn commit_batch(entries: Vec<Entry>, tree: DataTree) -> Arc<CommitBatch> {
    Arc::new(CommitBatch {
        entries,
        tree,
        durable_at: std::time::Instant::now(),
    })
}

async fn fan_out(
    senders: &[ConnectedSender<Arc<CommitBatch>>],
    stats: &Stats,
    batch: Arc<CommitBatch>,
) {
    for (shard, sender) in senders.iter().enumerate() {
        stats
            .shard(shard)
            .batches_sent
            .fetch_add(1, Ordering::Relaxed);
        if sender.send(batch.clone()).await.is_err() {
            tracing::error!("a shard is gone; stopping");
            crate::terminate(3);
        }
    }
}

/// A txn that did not reach the log becomes a rejection; other entries stand.
fn reject(entry: Entry) -> Entry {
    match entry {
        Entry::Txn { txn, origin, .. } => Entry::Rejected {
            origin,
            session_id: txn.session_id,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zoocore_engine::txn::TxnOp;

    fn state(max_batch_bytes: usize) -> State {
        let tree = DataTree::new(false);
        State {
            next_zxid: tree.last_zxid() + 1,
            next_session_id: 1,
            tree,
            open: Batch::new(),
            sealed: VecDeque::new(),
            max_batch_bytes,
        }
    }

    fn set(state: &mut State, size: usize) {
        let op = TxnOp::SetData {
            path: "/zookeeper".into(),
            data: Some(vec![0; size]),
            version: 1,
        };
        state.txn(1, 0, op, None);
    }

    #[test]
    fn batches_are_cut_at_the_byte_limit_but_hold_at_least_one_txn() {
        // A record of 100 data bytes is about 170 bytes: two fit in 400.
        let mut s = state(400);
        set(&mut s, 100);
        s.open.entries.push(Entry::Attached {
            session_id: 1,
            shard: 0,
        });
        set(&mut s, 100);
        set(&mut s, 100);
        set(&mut s, 5000);
        let taken: Vec<Sealed> = std::iter::from_fn(|| s.take()).collect();
        let shape: Vec<_> = taken
            .iter()
            .map(|t| {
                let b = &t.batch;
                (b.entries.len(), b.txns, b.zxids, t.tree.last_zxid())
            })
            .collect();
        assert_eq!(
            shape,
            [
                (3, 2, Some((1, 2)), 2),
                (1, 1, Some((3, 3)), 3),
                (1, 1, Some((4, 4)), 4),
            ],
            "each batch ends where the next txn would pass the limit, an \
             oversized txn still makes one, and each carries its own version"
        );
        assert!(taken
            .iter()
            .all(|t| t.batch.records.len() <= 400 || t.batch.txns == 1));
    }
}
