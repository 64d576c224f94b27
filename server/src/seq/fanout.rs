//! Durable batches and their tree versions, handed to every shard.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use glommio::channels::shared_channel::ConnectedSender;
use zoocore_engine::DataTree;

use super::{CommitBatch, Entry, Stopped};
use crate::stats::Stats;

/// Versions of the tree handed to the shards, oldest first. The sequencer
/// lets go of each only once every shard has moved past it, so that its own
/// reference is the last: the nodes a version alone holds are then freed on
/// the core that allocated them. Freed on a shard, they cost it a lock on
/// the sequencer's malloc arena and cache misses on every count (measured:
/// 15-20% of write throughput). At most the commit queue's length plus one
/// per shard are held, since a shard that falls behind stops the fan-out.
/// A batch's version marks ([`Entry::Version`]) are held with its version.
#[derive(Default)]
pub(crate) struct HandedVersions {
    versions: VecDeque<Vec<DataTree>>,
    /// Batches handed out before the oldest version held.
    released: u64,
}

impl HandedVersions {
    /// Holds the versions of a batch just handed out.
    pub(crate) fn push(&mut self, batch: &CommitBatch, stats: &Stats) {
        let marks = batch.entries.iter().filter_map(|e| match e {
            Entry::Version(tree) => Some(tree.clone()),
            _ => None,
        });
        self.versions
            .push_back(marks.chain([batch.tree.clone()]).collect());
        // A shard that has applied n batches holds no version older than the n-th.
        let applied = stats.min_batches_applied();
        while self.released + 1 < applied && self.versions.len() > 1 {
            self.versions.pop_front();
            self.released += 1;
        }
    }
}

pub(crate) fn commit_batch(entries: Vec<Entry>, tree: DataTree) -> Arc<CommitBatch> {
    Arc::new(CommitBatch {
        entries,
        tree,
        durable_at: std::time::Instant::now(),
    })
}

pub(crate) async fn fan_out(
    senders: &[ConnectedSender<Arc<CommitBatch>>],
    stats: &Stats,
    batch: Arc<CommitBatch>,
) -> Result<(), Stopped> {
    for (shard, sender) in senders.iter().enumerate() {
        stats
            .shard(shard)
            .batches_sent
            .fetch_add(1, Ordering::Relaxed);
        if sender.send(batch.clone()).await.is_err() {
            tracing::error!("a shard is gone; stopping");
            return Err(Stopped::ShardGone);
        }
    }
    Ok(())
}

/// A txn that did not reach the log becomes a rejection, and a version mark
/// becomes `durable` (what the log holds), so that reads waiting behind the
/// rejected writes are still answered in turn; other entries stand.
pub(crate) fn reject(entry: Entry, durable: &DataTree) -> Entry {
    match entry {
        Entry::Txn { txn, origin, .. } => Entry::Rejected {
            origin,
            session_id: txn.session_id,
        },
        Entry::Version(_) => Entry::Version(durable.clone()),
        other => other,
    }
}
