//! The raft log as raft-rs reads it: the entries after the compaction point,
//! in memory (the server's copy on disk is `storage/raftlog.rs`), the hard
//! state, and the newest snapshot this member holds, which is what raft
//! sends a member too far behind for the entries kept.

use std::collections::VecDeque;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// A snapshot of the applied tree after entry `index` (of `term`): `len`
/// bytes of zoocore's snapshot format, which a member sends in chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SnapshotMeta {
    pub index: u64,
    pub term: u64,
    pub len: u64,
}

impl SnapshotMeta {
    /// What travels in raft's snapshot message: the metadata, and the length
    /// as its data (the bytes follow in `SnapshotChunk`s).
    pub fn to_raft(self, conf_state: &ConfState) -> Snapshot {
        let mut metadata = SnapshotMetadata {
            index: self.index,
            term: self.term,
            ..Default::default()
        };
        metadata.set_conf_state(conf_state.clone());
        let mut snapshot = Snapshot {
            data: self.len.to_be_bytes().to_vec().into(),
            ..Default::default()
        };
        snapshot.set_metadata(metadata);
        snapshot
    }

    /// The inverse of [`SnapshotMeta::to_raft`]; `None` for a message that
    /// is not one of ours.
    pub fn from_raft(snapshot: &Snapshot) -> Option<SnapshotMeta> {
        let len = u64::from_be_bytes(snapshot.data.as_ref().try_into().ok()?);
        let meta = snapshot.get_metadata();
        Some(SnapshotMeta {
            index: meta.index,
            term: meta.term,
            len,
        })
    }
}

pub struct EntryStore {
    hard_state: HardState,
    /// The membership from each index on, oldest first; the first one holds
    /// at the newest snapshot (or from the start), so a snapshot is sent
    /// with the membership it was taken in.
    conf_states: Vec<(u64, ConfState)>,
    /// The newest snapshot on this member's disk.
    snapshot: Option<SnapshotMeta>,
    /// Index and term of the entry before `entries[0]`: compacted away, or
    /// the last one a snapshot covers (0, 0 for an uncompacted log).
    before: (u64, u64),
    entries: VecDeque<Entry>,
    /// Per entry of `entries`: where its data ends in a running byte count,
    /// and when it was appended (ms); what a leader reports as a peer's lag.
    marks: VecDeque<(u64, i64)>,
    /// The mark of the entry at `before`.
    before_mark: (u64, i64),
    /// raft asked for a snapshot for a member the newest one does not hold.
    snapshot_wanted: std::cell::Cell<bool>,
}

impl EntryStore {
    /// A store whose log starts after `snapshot`, when there is one.
    pub fn new(
        conf_state: ConfState,
        hard_state: HardState,
        snapshot: Option<SnapshotMeta>,
    ) -> EntryStore {
        EntryStore {
            hard_state,
            conf_states: vec![(snapshot.map_or(0, |s| s.index), conf_state)],
            before: snapshot.map_or((0, 0), |s| (s.index, s.term)),
            snapshot,
            entries: VecDeque::new(),
            marks: VecDeque::new(),
            before_mark: (0, 0),
            snapshot_wanted: std::cell::Cell::new(false),
        }
    }

    /// How far the log runs past `index`: bytes of entry data, and the age
    /// at `now_ms` of the first entry after it (0 when there is none). A
    /// peer behind the log's start is owed at least the whole log.
    pub fn lag_after(&self, index: u64, now_ms: i64) -> (u64, i64) {
        let from = index.max(self.before.0);
        let at = |i: u64| match i - self.before.0 {
            0 => self.before_mark,
            n => self.marks[(n - 1) as usize],
        };
        let end = self.marks.back().copied().unwrap_or(self.before_mark).0;
        if from >= self.last() {
            return (0, 0);
        }
        (end - at(from).0, now_ms - at(from + 1).1)
    }

    pub fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.snapshot
    }

    /// Whether a member needs a snapshot newer than the newest one.
    pub fn snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.get()
    }

    /// The membership in force after entry `index` was applied.
    fn conf_state_at(&self, index: u64) -> &ConfState {
        let at = self.conf_states.partition_point(|(from, _)| *from <= index);
        &self.conf_states[at.saturating_sub(1)].1
    }

    /// A conf change at `index` was applied.
    pub fn set_conf_state(&mut self, index: u64, conf_state: ConfState) {
        self.conf_states.retain(|(from, _)| *from < index);
        self.conf_states.push((index, conf_state));
    }

    /// Forgets the membership before `index`, but the one in force there.
    fn drop_conf_states_before(&mut self, index: u64) {
        let keep_from = self
            .conf_states
            .partition_point(|(from, _)| *from <= index)
            .saturating_sub(1);
        self.conf_states.drain(..keep_from);
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    fn last(&self) -> u64 {
        self.before.0 + self.entries.len() as u64
    }

    /// Appends entries at `now_ms`, replacing the log from the first one's
    /// index on.
    pub fn append(&mut self, entries: &[Entry], now_ms: i64) -> Result<(), raft::Error> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.before.0 || first.index > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Other(
                format!(
                    "append at {} to a log of {}..={}",
                    first.index,
                    self.before.0 + 1,
                    self.last()
                )
                .into(),
            )));
        }
        let kept = (first.index - self.before.0 - 1) as usize;
        self.entries.truncate(kept);
        self.marks.truncate(kept);
        let mut end = self.marks.back().copied().unwrap_or(self.before_mark).0;
        for e in entries {
            end += e.data.len() as u64;
            self.marks.push_back((end, now_ms));
        }
        self.entries.extend(entries.iter().cloned());
        debug_assert_eq!(self.entries.len(), self.marks.len());
        Ok(())
    }

    /// Records a snapshot this member has made durable; the log is then
    /// compacted up to `compact_to` (at most the snapshot's index).
    pub fn snapshot_taken(&mut self, meta: SnapshotMeta, compact_to: u64) {
        if self.snapshot.is_some_and(|s| s.index >= meta.index) {
            return;
        }
        self.snapshot = Some(meta);
        self.snapshot_wanted.set(false);
        self.drop_conf_states_before(meta.index);
        let to = compact_to.min(meta.index).min(self.last());
        while to > self.before.0 {
            let (Some(e), Some(mark)) = (self.entries.pop_front(), self.marks.pop_front()) else {
                break;
            };
            self.before = (e.index, e.term);
            self.before_mark = mark;
        }
    }

    /// A snapshot from the leader, taken in membership `conf_state`,
    /// replaces the whole log.
    pub fn install(&mut self, meta: SnapshotMeta, conf_state: ConfState) {
        self.conf_states = vec![(meta.index, conf_state)];
        self.entries.clear();
        self.marks.clear();
        self.before = (meta.index, meta.term);
        self.snapshot = Some(meta);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
    }
}

impl Storage for EntryStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state_at(u64::MAX).clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.before.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let from = (low - self.before.0 - 1) as usize;
        let to = (high - self.before.0 - 1) as usize;
        let mut out: Vec<Entry> = self.entries.range(from..to).cloned().collect();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.before.0 {
            return Ok(self.before.1);
        }
        if idx < self.before.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.entries
            .get((idx - self.before.0 - 1) as usize)
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.before.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        match self.snapshot {
            Some(meta) if meta.index >= request_index => {
                // raft refuses a snapshot whose membership lacks it: a member
                // added since the newest one waits for a newer one.
                let conf_state = self.conf_state_at(meta.index);
                let member = [
                    &conf_state.voters,
                    &conf_state.learners,
                    &conf_state.voters_outgoing,
                ]
                .iter()
                .any(|ids| ids.contains(&to));
                if !member {
                    self.snapshot_wanted.set(true);
                    return Err(raft::Error::Store(
                        StorageError::SnapshotTemporarilyUnavailable,
                    ));
                }
                Ok(meta.to_raft(conf_state))
            }
            _ => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn store() -> EntryStore {
        EntryStore::new(
            ConfState::from((vec![1, 2, 3], vec![])),
            HardState::default(),
            None,
        )
    }

    #[test]
    fn appends_replace_the_suffix_and_compaction_keeps_the_term_before() {
        let mut s = store();
        s.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>(), 0)
            .expect("append");
        s.append(&[entry(8, 2)], 0).expect("replace");
        assert_eq!(s.last_index().ok(), Some(8));
        assert_eq!(s.term(8).ok(), Some(2));
        assert!(s.append(&[entry(10, 2)], 0).is_err(), "a gap is refused");
        let meta = SnapshotMeta {
            index: 6,
            term: 1,
            len: 100,
        };
        s.snapshot_taken(meta, 4);
        assert_eq!(s.first_index().ok(), Some(5));
        assert_eq!(s.term(4).ok(), Some(1));
        assert!(matches!(
            s.term(3),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(s
            .entries(4, 6, None, GetEntriesContext::empty(false))
            .is_err());
        let got = s
            .entries(5, 9, None, GetEntriesContext::empty(false))
            .expect("entries");
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            [5, 6, 7, 8]
        );
        let snap = s.snapshot(0, 2).expect("snapshot");
        assert_eq!(SnapshotMeta::from_raft(&snap), Some(meta));
        assert!(s.snapshot(7, 2).is_err(), "older than asked for");
        assert!(s.append(&[entry(4, 3)], 0).is_err(), "before the log start");
    }

    #[test]
    fn a_snapshot_is_sent_with_the_membership_it_was_taken_in() {
        let mut s = store();
        s.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>(), 0)
            .expect("append");
        let four = ConfState::from((vec![1, 2, 3, 4], vec![]));
        let two = ConfState::from((vec![1, 2], vec![5]));
        s.set_conf_state(4, four.clone());
        s.set_conf_state(8, two.clone());
        let meta = |index| SnapshotMeta {
            index,
            term: 1,
            len: 1,
        };
        s.snapshot_taken(meta(6), 6);
        let sent = s.snapshot(0, 2).expect("snapshot");
        assert_eq!(sent.get_metadata().get_conf_state(), &four);
        assert_eq!(s.initial_state().expect("state").conf_state, two);
        s.snapshot_taken(meta(9), 9);
        let sent = s.snapshot(0, 2).expect("snapshot");
        assert_eq!(sent.get_metadata().get_conf_state(), &two);
        assert_eq!(s.conf_states.len(), 1, "older memberships are forgotten");
    }

    #[test]
    fn an_installed_snapshot_replaces_the_log() {
        let mut s = store();
        s.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>(), 0)
            .expect("append");
        let meta = SnapshotMeta {
            index: 20,
            term: 3,
            len: 9,
        };
        s.install(meta, ConfState::from((vec![1, 2, 3], vec![])));
        assert_eq!(
            (s.first_index().ok(), s.last_index().ok()),
            (Some(21), Some(20))
        );
        assert_eq!(s.term(20).ok(), Some(3));
        assert_eq!(s.initial_state().expect("state").hard_state.commit, 20);
        s.append(&[entry(21, 3)], 0).expect("append after");
    }

    #[test]
    fn lag_after_counts_the_bytes_and_the_age_of_what_a_peer_lacks() {
        let mut s = store();
        let sized = |index: u64, len: usize| Entry {
            data: vec![0; len].into(),
            ..entry(index, 1)
        };
        s.append(&[sized(1, 10), sized(2, 20)], 100)
            .expect("append");
        s.append(&[sized(3, 30)], 200).expect("append");
        assert_eq!(s.lag_after(3, 500), (0, 0), "nothing lacking");
        assert_eq!(s.lag_after(2, 500), (30, 300));
        assert_eq!(s.lag_after(0, 500), (60, 400));
        // A replaced suffix counts its new bytes and time.
        s.append(&[sized(3, 5), sized(4, 5)], 300).expect("replace");
        assert_eq!(s.lag_after(1, 500), (30, 400));
        assert_eq!(s.lag_after(2, 500), (10, 200));
        // Behind the log's start: at least the whole log.
        let meta = SnapshotMeta {
            index: 2,
            term: 1,
            len: 1,
        };
        s.snapshot_taken(meta, 2);
        assert_eq!(s.lag_after(0, 500), (10, 200));
        assert_eq!(s.lag_after(3, 500), (5, 200));
    }
}
