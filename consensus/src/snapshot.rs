//! Raft snapshots on a member's disk: which one a restarting member starts
//! from, given what its log holds.
//!
//! A member writes a snapshot of its applied tree every so often, then drops
//! the log before it (keeping some entries for members a little behind);
//! a member too far behind gets the leader's newest snapshot in chunks
//! (`PeerMsg::SnapshotRead`/`SnapshotChunk`). Installing one replaces the
//! whole log, which the disk records by appending a *mark* (index and term
//! of the snapshot) after the snapshot file is durable: the mark cuts every
//! entry from its index on, as a later entry at an existing index does, and
//! makes every record before it obsolete.
//!
//! So a snapshot file is used only if the log holds its index with its
//! term, as an entry or a mark. A crash between writing the file and the
//! mark leaves a file the log does not vouch for, and the member starts
//! from what it had before (the leader sends the snapshot again).

use raft::eraftpb::Entry;

pub use crate::store::SnapshotMeta;

/// One record of the log on disk, in index order with later records
/// already replacing earlier ones at the same index.
#[derive(Debug, Clone)]
pub enum Logged {
    Entry(Entry),
    /// A snapshot at this index and term was installed here.
    Mark {
        index: u64,
        term: u64,
    },
}

impl Logged {
    fn index_term(&self) -> (u64, u64) {
        match self {
            Logged::Entry(e) => (e.index, e.term),
            Logged::Mark { index, term } => (*index, *term),
        }
    }
}

/// Where a member starts: the snapshot to load, if any, and the log after it.
#[derive(Debug)]
pub struct Recovered {
    pub snapshot: Option<SnapshotMeta>,
    pub entries: Vec<Entry>,
}

/// Chooses the newest snapshot the log vouches for among `snapshots` (those
/// on disk) and the entries after it. Refuses a log with a gap, one that
/// starts after 1 with no snapshot for the part before, and a mark whose
/// snapshot is missing.
pub fn recover(snapshots: &[SnapshotMeta], mut log: Vec<Logged>) -> Result<Recovered, String> {
    if let Some(mark) = log.iter().rposition(|l| matches!(l, Logged::Mark { .. })) {
        log.drain(..mark);
    }
    for pair in log.windows(2) {
        let (a, b) = (pair[0].index_term().0, pair[1].index_term().0);
        if b != a + 1 {
            return Err(format!("the raft log skips from {a} to {b}"));
        }
    }
    let mut ordered: Vec<SnapshotMeta> = snapshots.to_vec();
    ordered.sort_unstable();
    let chosen = ordered
        .into_iter()
        .rev()
        .find(|s| log.iter().any(|l| l.index_term() == (s.index, s.term)));
    if let Some(Logged::Mark { index, term }) = log.first() {
        if chosen.is_none_or(|s| (s.index, s.term) != (*index, *term)) {
            return Err(format!(
                "the raft log records a snapshot at index {index} (term {term}) that is not on disk"
            ));
        }
    }
    let after = chosen.map_or(0, |s| s.index);
    let first = log.first().map(|l| l.index_term().0);
    if chosen.is_none() && first.is_some_and(|f| f != 1) {
        return Err(format!(
            "the raft log starts at index {} and no snapshot covers what is before it",
            first.unwrap_or(0)
        ));
    }
    let mut entries = Vec::new();
    for l in log {
        match l {
            Logged::Entry(e) if e.index > after => entries.push(e),
            _ => {}
        }
    }
    Ok(Recovered {
        snapshot: chosen,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u64, term: u64) -> Logged {
        Logged::Entry(Entry {
            index,
            term,
            ..Default::default()
        })
    }

    fn snap(index: u64, term: u64) -> SnapshotMeta {
        SnapshotMeta {
            index,
            term,
            len: 1,
        }
    }

    fn indexes(r: &Recovered) -> Vec<u64> {
        r.entries.iter().map(|e| e.index).collect()
    }

    #[test]
    fn the_newest_snapshot_the_log_holds_is_chosen() {
        let log = vec![e(4, 1), e(5, 1), e(6, 2), e(7, 2)];
        let r = recover(&[snap(2, 1), snap(5, 1), snap(7, 3)], log).expect("recover");
        assert_eq!(r.snapshot, Some(snap(5, 1)), "7/3 is not in the log");
        assert_eq!(indexes(&r), [6, 7]);
    }

    #[test]
    fn a_mark_vouches_for_an_installed_snapshot_and_cuts_what_was_before() {
        let log = vec![
            e(1, 1),
            e(2, 1),
            Logged::Mark { index: 9, term: 4 },
            e(10, 4),
        ];
        let r = recover(&[snap(9, 4)], log.clone()).expect("recover");
        assert_eq!(r.snapshot, Some(snap(9, 4)));
        assert_eq!(indexes(&r), [10]);
        let missing = recover(&[], log).expect_err("a mark without its file");
        assert!(missing.contains("not on disk"), "{missing}");
    }

    #[test]
    fn a_snapshot_the_log_does_not_hold_is_ignored() {
        // A crash after the file was written, before the mark.
        let r = recover(&[snap(9, 3)], vec![e(1, 1), e(2, 1)]).expect("recover");
        assert_eq!(r.snapshot, None);
        assert_eq!(indexes(&r), [1, 2]);
        assert_eq!(
            recover(&[snap(9, 3)], Vec::new()).expect("empty").snapshot,
            None
        );
    }

    #[test]
    fn gaps_and_an_uncovered_start_are_refused() {
        assert!(recover(&[], vec![e(1, 1), e(3, 1)]).is_err());
        let err = recover(&[snap(2, 1)], vec![e(4, 1), e(5, 1)]).expect_err("uncovered");
        assert!(err.contains("starts at index 4"), "{err}");
    }
}
