//! The sequencer's state: the authoritative tree, the next zxid and session
//! id, the open batch and the sealed ones waiting for the log.

use std::collections::VecDeque;

use zoocore_engine::acl::Identity;
use zoocore_engine::prep::prepare_expiry_delete;
use zoocore_engine::txn::{Txn, TxnOp};
use zoocore_engine::{prepare, DataTree, PrepContext};
use zoocore_net::{ErrorCode, Request};

use super::{Entry, Origin, ToSequencer};

/// Entries on their way to the log, with the log image of their txns.
pub(super) struct Batch {
    pub(super) entries: Vec<Entry>,
    pub(super) records: Vec<u8>,
    pub(super) txns: usize,
    /// First and last zxid, when there is a txn.
    pub(super) zxids: Option<(i64, i64)>,
}

impl Batch {
    pub(super) fn new() -> Batch {
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
pub(super) struct Sealed {
    pub(super) batch: Batch,
    pub(super) tree: DataTree,
}

pub(super) struct State {
    pub(super) tree: DataTree,
    pub(super) next_zxid: i64,
    pub(super) next_session_id: i64,
    pub(super) open: Batch,
    /// Batches closed at the byte limit, oldest first; each holds at least one
    /// txn, and all of them together hold fewer entries than `maxBatchTxns`.
    pub(super) sealed: VecDeque<Sealed>,
    pub(super) max_batch_bytes: usize,
}

impl State {
    /// `time`: the txn's time stamp, from the clock the caller reads.
    pub(super) fn txn(
        &mut self,
        time: i64,
        session_id: i64,
        cxid: i32,
        op: TxnOp,
        origin: Option<Origin>,
    ) {
        let txn = Txn {
            zxid: self.next_zxid,
            time,
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

    pub(super) fn seal(&mut self) {
        let batch = std::mem::replace(&mut self.open, Batch::new());
        self.sealed.push_back(Sealed {
            batch,
            tree: self.tree.clone(),
        });
    }

    /// The next batch for the log: the oldest sealed one, else the open one.
    pub(super) fn take(&mut self) -> Option<Sealed> {
        if self.sealed.is_empty() && !self.open.entries.is_empty() {
            self.seal();
        }
        self.sealed.pop_front()
    }

    pub(super) fn pending_entries(&self) -> usize {
        self.open.entries.len()
            + self
                .sealed
                .iter()
                .map(|s| s.batch.entries.len())
                .sum::<usize>()
    }

    pub(super) fn accept(&mut self, message: ToSequencer, now_ms: i64) {
        match message {
            ToSequencer::Write {
                origin,
                session_id,
                cxid,
                identity,
                request,
                fence,
            } => {
                // Without entries before it here, the last batch's end is
                // the version the shard answers from.
                if fence && !self.open.entries.is_empty() {
                    self.open.entries.push(Entry::Version(self.tree.clone()));
                }
                let op = if self.tree.sessions().contains_key(&session_id) {
                    let ctx = PrepContext {
                        session_id,
                        identity: &identity,
                        zxid: self.next_zxid,
                        time: now_ms,
                    };
                    prepare(&self.tree, &ctx, &request)
                } else {
                    TxnOp::Error(ErrorCode::SessionExpired.code())
                };
                self.txn(now_ms, session_id, cxid, op, Some(origin));
            }
            ToSequencer::OpenSession { origin, timeout } => {
                let id = self.next_session_id;
                self.next_session_id += 1;
                self.txn(
                    now_ms,
                    id,
                    0,
                    TxnOp::CreateSession { timeout },
                    Some(origin),
                );
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
                        time: now_ms,
                    };
                    let op = prepare(&self.tree, &ctx, &Request::CloseSession);
                    self.txn(now_ms, session_id, cxid, op, origin);
                } else if origin.is_some() {
                    // Expired meanwhile: the close is answered by an error txn.
                    self.txn(
                        now_ms,
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
            // Touches feed an ensemble leader's expiry; a standalone
            // server's shards expire their own sessions.
            ToSequencer::Touches(_) => {}
        }
    }

    /// Deletes one container or TTL node found due, as ZooKeeper's container
    /// manager does (the check is repeated against the current tree).
    pub(super) fn expire(&mut self, path: &str, now_ms: i64) {
        let op = prepare_expiry_delete(&self.tree, self.next_zxid, path);
        if !matches!(op, TxnOp::Error(_)) {
            tracing::debug!(path, "expired node deleted");
            self.txn(now_ms, 0, 0, op, None);
        }
    }
}

/// The only term there is until replication (design §4).
pub(super) const TERM: u64 = 0;

#[cfg(test)]
mod tests {
    use super::*;

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
        state.txn(0, 1, 0, op, None);
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
