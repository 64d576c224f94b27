//! The sequencer: the one place that validates writes against the
//! authoritative tree, assigns zxids, group-commits them to the log and fans
//! each durable batch out to every shard as one shared buffer.
//!
//! Per shard a task drains that shard's queue and validates each request at
//! once (applying it to the sequencer's own tree, so later requests see it, as
//! ZooKeeper's outstanding changes do). A committer task takes everything
//! validated so far as one batch, writes and syncs it, and only then sends it
//! on; while it waits for the disk the next batch fills.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use glommio::channels::local_channel;
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use glommio::sync::Semaphore;
use zoocore_engine::acl::Identity;
use zoocore_engine::prep::prepare_expiry_delete;
use zoocore_engine::txn::{Txn, TxnOp};
use zoocore_engine::{prepare, session, DataTree, PrepContext};
use zoocore_net::{ErrorCode, Request};

use crate::snapshotter::{Durable, SharedDurable, SnapshotPolicy};
use crate::stats::Stats;
use crate::wal::LogWriter;

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
    Gather(Arc<crate::fourlw::Gather>),
}

/// One entry of a committed batch.
pub enum Entry {
    Txn {
        txn: Txn,
        origin: Option<Origin>,
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
    Gather(Arc<crate::fourlw::Gather>),
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
    /// To rebuild the durable state after a failed log write.
    pub data_dir: std::path::PathBuf,
    pub log_dir: std::path::PathBuf,
    pub extended_types: bool,
    /// Where the snapshotter learns what it may read of the log.
    pub durable: SharedDurable,
    pub snapshot_policy: SnapshotPolicy,
    pub snapshot_wake: std::sync::mpsc::SyncSender<()>,
    pub fsync_warning: std::time::Duration,
}

struct State {
    tree: DataTree,
    next_zxid: i64,
    next_session_id: i64,
    open: Vec<Entry>,
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
        self.tree.apply(&txn);
        self.open.push(Entry::Txn { txn, origin });
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
                self.open.push(Entry::Attached { session_id, shard });
            }
            ToSequencer::Sync { origin } => self.open.push(Entry::Synced { origin }),
            ToSequencer::Gather(gather) => self.open.push(Entry::Gather(gather)),
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
        data_dir,
        log_dir,
        extended_types,
        durable,
        mut snapshot_policy,
        snapshot_wake,
        fsync_warning,
    } = setup;
    let state = Rc::new(RefCell::new(State {
        next_zxid: tree.last_zxid() + 1,
        next_session_id: session::first_session_id(server_id, now_ms()),
        tree,
        open: Vec::new(),
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
    let term = 0;
    loop {
        if !linger.is_zero() && (1..max_batch_txns).contains(&state.borrow().open.len()) {
            glommio::timer::sleep(linger).await;
        }
        if crate::STOP.load(Ordering::Relaxed) {
            // Every batch taken so far is durable and handed to the shards;
            // what is still open was never acknowledged.
            tracing::info!("shutting down; the log is durable");
            crate::terminate(0);
        }
        let mut entries = std::mem::take(&mut state.borrow_mut().open);
        stats
            .open_batch
            .store(entries.len() as u64, Ordering::Relaxed);
        if entries.is_empty() {
            // Wake at least every 50 ms to notice a shutdown request.
            futures_lite::future::or(
                async {
                    let _ = kick_rx.recv().await;
                },
                glommio::timer::sleep(std::time::Duration::from_millis(50)),
            )
            .await;
            continue;
        }
        let EncodedBatch {
            records,
            txns,
            cut,
            zxids,
        } = encode_batch(&entries, term, max_batch_bytes);
        if cut < entries.len() {
            // Over the byte limit: the rest goes first into the next batch.
            let rest = entries.split_off(cut);
            let mut s = state.borrow_mut();
            let newer = std::mem::take(&mut s.open);
            s.open = rest;
            s.open.extend(newer);
        }
        if let Some((first_zxid, last_zxid)) = zxids {
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
                    *durable.lock().unwrap_or_else(|e| e.into_inner()) = Durable {
                        zxid: last_zxid,
                        end: log.position(),
                    };
                    if snapshot_policy.record(txns as u64, record_bytes) {
                        // Coalesces with a wake-up still pending.
                        let _ = snapshot_wake.try_send(());
                    }
                }
                Err(e) => {
                    // Disk full or failing: nothing of this batch is acknowledged.
                    // Return to what the log holds and refuse what was built on
                    // top of it; reads go on, and the next batch tries again.
                    tracing::error!(error = %e, "log write failed; rejecting writes until it succeeds");
                    let durable = match crate::wal::durable_state(
                        &data_dir,
                        &log_dir,
                        log.position(),
                        extended_types,
                    ) {
                        Ok(tree) => tree,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot reread the log; stopping");
                            crate::terminate(3);
                        }
                    };
                    let open = {
                        let mut s = state.borrow_mut();
                        s.next_zxid = durable.last_zxid() + 1;
                        s.tree = durable;
                        std::mem::take(&mut s.open)
                    };
                    room.signal((entries.len() + open.len()) as u64);
                    let rejected = entries.into_iter().chain(open).map(reject).collect();
                    fan_out(&senders, &stats, commit_batch(rejected)).await;
                    continue;
                }
            }
        }
        room.signal(entries.len() as u64);
        fan_out(&senders, &stats, commit_batch(entries)).await;
    }
}

fn commit_batch(entries: Vec<Entry>) -> Arc<CommitBatch> {
    Arc::new(CommitBatch {
        entries,
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
        Entry::Txn { txn, origin } => Entry::Rejected {
            origin,
            session_id: txn.session_id,
        },
        other => other,
    }
}

/// The log image of the txns at the front of the open entries.
struct EncodedBatch {
    records: Vec<u8>,
    /// How many txns the records hold.
    txns: usize,
    /// How many entries (txns and others) they cover.
    cut: usize,
    /// First and last zxid, when there is a txn.
    zxids: Option<(i64, i64)>,
}

/// Encodes the txns of a batch, stopping before the entry that would take it
/// past `max_bytes` (a batch always holds at least one txn).
fn encode_batch(entries: &[Entry], term: u64, max_bytes: usize) -> EncodedBatch {
    let mut batch = EncodedBatch {
        records: Vec::with_capacity(zoocore_engine::log::BLOCK),
        txns: 0,
        cut: entries.len(),
        zxids: None,
    };
    zoocore_engine::log::begin_batch(&mut batch.records);
    for (i, entry) in entries.iter().enumerate() {
        if let Entry::Txn { txn, .. } = entry {
            let before = batch.records.len();
            zoocore_engine::log::append_record(&mut batch.records, term, txn);
            if batch.records.len() > max_bytes && batch.txns > 0 {
                batch.records.truncate(before);
                batch.cut = i;
                break;
            }
            batch.txns += 1;
            let first = batch.zxids.map_or(txn.zxid, |(first, _)| first);
            batch.zxids = Some((first, txn.zxid));
        }
    }
    if let Some((first, last)) = batch.zxids {
        // Design invariant 1: zxids are consecutive; recovery and segment
        // names rely on it.
        assert_eq!(
            last - first + 1,
            batch.txns as i64,
            "batch zxids not consecutive"
        );
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use zoocore_engine::txn::TxnOp;

    fn txn(zxid: i64, size: usize) -> Entry {
        Entry::Txn {
            txn: Txn {
                zxid,
                time: 0,
                session_id: 1,
                cxid: 0,
                op: TxnOp::SetData {
                    path: "/a".into(),
                    data: Some(vec![0; size]),
                    version: 1,
                },
            },
            origin: None,
        }
    }

    #[test]
    fn batches_are_cut_at_the_byte_limit_but_hold_at_least_one_txn() {
        let entries = vec![
            txn(1, 100),
            Entry::Attached {
                session_id: 1,
                shard: 0,
            },
            txn(2, 100),
            txn(3, 100),
        ];
        let EncodedBatch { txns, cut, .. } = encode_batch(&entries, 0, 400);
        assert_eq!(
            (txns, cut),
            (2, 3),
            "a record is ~162 bytes: the third would pass 400"
        );
        let EncodedBatch { txns, cut, .. } = encode_batch(&[txn(1, 5000)], 0, 300);
        assert_eq!((txns, cut), (1, 1), "an oversized txn still makes a batch");
        let EncodedBatch {
            txns, cut, zxids, ..
        } = encode_batch(&entries, 0, 1 << 20);
        assert_eq!(zxids, Some((1, 3)));
        assert_eq!((txns, cut), (3, 4));
    }
}
