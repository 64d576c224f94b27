//! An ensemble member's durable raft state: the entry log (wal.rs's
//! machinery with [`LogKind::ENTRIES`]: `zoocore.raftlog.<first index>` in
//! dataLogDir), `zoocore.raftstate` in dataDir (term, vote, commit), and
//! raft snapshots in dataDir, `zoocore.raftsnap.<index>.<term>` (16 hex
//! digits each) in zoocore's snapshot format.
//!
//! Recovery reads the state file and every entry segment; an entry that
//! repeats an index replaces that entry and the rest (raft's truncation,
//! done by appending); only the last segment's tail may be torn. A snapshot
//! installed from the leader is recorded by a mark record (type
//! [`MARK_TYPE`]) after its file is durable; `consensus::snapshot::recover`
//! chooses the snapshot to start from, and the replica re-applies the
//! committed entries after it.

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use zoocore_consensus::{entry, DurableState, Entry, HardState, Logged, SnapshotMeta};
use zoocore_engine::log::{self, LoggedEntry};
use zoocore_engine::DataTree;

use crate::storage::wal::{LogKind, LogPosition};
use crate::storage::{dir, snapfile};

pub const STATE_FILE: &str = "zoocore.raftstate";
const STATE_MAGIC: u32 = 0x5a43_5253; // "ZCRS"
const STATE_LEN: usize = 32;
/// Entries per log batch are cut at about this many bytes.
pub const BATCH_BYTES: usize = 1 << 20;
/// The log record type of a mark: "a snapshot was installed at this index".
pub const MARK_TYPE: u8 = 0xff;
const SNAPSHOT_PREFIX: &str = "zoocore.raftsnap.";

/// What an ensemble member recovers at start.
pub struct RecoveredRaft {
    pub durable: DurableState,
    /// Where appends resume; `None` when there is no log yet.
    pub append: Option<LogPosition>,
    /// The next raft index (names the first segment of a new log).
    pub next_index: u64,
}

fn refuse(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// The hard state, as `zoocore.raftstate` holds it (or the initial one).
pub fn read_state(data_dir: &Path) -> std::io::Result<HardState> {
    let path = data_dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HardState::default()),
        Err(e) => return Err(e),
    };
    let word = |i: usize| {
        bytes
            .get(i..i + 8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let valid = bytes.len() == STATE_LEN
        && bytes[..4] == STATE_MAGIC.to_be_bytes()
        && bytes[28..32] == crc32c::crc32c(&bytes[..28]).to_be_bytes();
    let (Some(term), Some(vote), Some(commit), true) = (word(4), word(12), word(20), valid) else {
        return Err(refuse(format!(
            "{} is damaged: the raft term and vote cannot be known; refusing to start",
            path.display()
        )));
    };
    Ok(HardState {
        term,
        vote,
        commit,
        ..Default::default()
    })
}

/// Writes the hard state durably: temp file, fsync, rename, directory fsync.
pub fn write_state(data_dir: &Path, hs: &HardState) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(STATE_LEN);
    bytes.extend_from_slice(&STATE_MAGIC.to_be_bytes());
    bytes.extend_from_slice(&hs.term.to_be_bytes());
    bytes.extend_from_slice(&hs.vote.to_be_bytes());
    bytes.extend_from_slice(&hs.commit.to_be_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    let temp = data_dir.join(format!("{STATE_FILE}.tmp"));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, data_dir.join(STATE_FILE))?;
    dir::sync_dir(data_dir)
}

fn snapshot_name(meta: &SnapshotMeta) -> String {
    format!("{SNAPSHOT_PREFIX}{:016x}.{:016x}", meta.index, meta.term)
}

pub fn snapshot_path(data_dir: &Path, meta: &SnapshotMeta) -> PathBuf {
    data_dir.join(snapshot_name(meta))
}

/// Raft snapshots in `data_dir`, oldest first, each with its length.
pub fn snapshots(data_dir: &Path) -> std::io::Result<Vec<(SnapshotMeta, PathBuf)>> {
    let entries = match std::fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SNAPSHOT_PREFIX)) else {
            continue;
        };
        let Some((index, term)) = rest.split_once('.') else {
            continue;
        };
        if index.len() != 16 || term.len() != 16 {
            continue; // a temporary, or not ours
        }
        let (Ok(index), Ok(term)) = (
            u64::from_str_radix(index, 16),
            u64::from_str_radix(term, 16),
        ) else {
            continue;
        };
        let meta = SnapshotMeta {
            index,
            term,
            len: entry.metadata()?.len(),
        };
        found.push((meta, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// Writes the applied tree as the snapshot after entry `index` of `term`
/// (temporary name, fsync, rename, directory fsync).
pub fn write_snapshot(
    data_dir: &Path,
    index: u64,
    term: u64,
    tree: &DataTree,
) -> std::io::Result<SnapshotMeta> {
    let mut meta = SnapshotMeta {
        index,
        term,
        len: 0,
    };
    let path = snapfile::write_named(data_dir, &snapshot_name(&meta), tree)?;
    meta.len = std::fs::metadata(path)?.len();
    Ok(meta)
}

/// Writes a snapshot received from the leader, durably.
pub fn write_received(data_dir: &Path, meta: &SnapshotMeta, bytes: &[u8]) -> std::io::Result<()> {
    let name = snapshot_name(meta);
    let temp = data_dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, data_dir.join(name))?;
    dir::sync_dir(data_dir)
}

/// Up to `max` bytes of a snapshot from `offset`.
pub fn read_chunk(
    data_dir: &Path,
    meta: &SnapshotMeta,
    offset: u64,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(snapshot_path(data_dir, meta))?;
    let want = (meta.len.saturating_sub(offset)).min(max as u64) as usize;
    let mut buf = vec![0; want];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Drops what a member no longer needs: log segments whose entries all come
/// before `kept_from`, and all but the newest `keep` snapshots.
pub fn purge(data_dir: &Path, log_dir: &Path, kept_from: u64, keep: usize) -> std::io::Result<()> {
    let segments = LogKind::ENTRIES.segments(log_dir)?;
    for pair in segments.windows(2) {
        // A segment holds the entries before the next one's first.
        if pair[1].0 as u64 <= kept_from {
            std::fs::remove_file(&pair[0].1)?;
        }
    }
    let found = snapshots(data_dir)?;
    for (_, path) in found.iter().take(found.len().saturating_sub(keep)) {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

/// The log batch of a mark for `meta` (begun, not sealed).
pub fn encode_mark(meta: &SnapshotMeta) -> Vec<u8> {
    let mut batch = Vec::new();
    log::begin_batch(&mut batch);
    log::append_entry(&mut batch, meta.index, meta.term, MARK_TYPE, &[]);
    batch
}

/// Reads the state file, the entry log and the snapshot it starts from.
pub fn recover(
    data_dir: &Path,
    log_dir: &Path,
    extended_types: bool,
) -> std::io::Result<RecoveredRaft> {
    std::fs::create_dir_all(data_dir)?;
    std::fs::create_dir_all(log_dir)?;
    let hard_state = read_state(data_dir)?;
    match std::fs::remove_file(log_dir.join(LogKind::ENTRIES.next)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let segments = LogKind::ENTRIES.segments(log_dir)?;
    let mut logged: Vec<LoggedEntry> = Vec::new();
    let mut append = None;
    for (i, (first, path)) in segments.iter().enumerate() {
        let image = std::fs::read(path)?;
        let scan = log::scan_entries(&image, std::mem::take(&mut logged));
        logged = scan.entries;
        if let Some(at) = scan.torn_at {
            let last = i + 1 == segments.len();
            if !last || scan.valid_after_damage.is_some() {
                return Err(refuse(format!(
                    "{}: damaged at byte {at} with valid log after it; refusing to start",
                    path.display()
                )));
            }
            tracing::warn!(file = %path.display(), at, "torn tail of the raft log cut");
        }
        append = Some(LogPosition {
            segment: *first,
            offset: scan.valid_len as u64,
        });
    }
    let next_index = logged.last().map_or(1, |e| e.index + 1);
    let mut records = Vec::with_capacity(logged.len());
    for e in logged {
        let index = e.index;
        records.push(if e.kind == MARK_TYPE {
            Logged::Mark {
                index,
                term: e.term,
            }
        } else {
            Logged::Entry(
                entry::from_log(e.index, e.term, e.kind, e.data)
                    .ok_or_else(|| refuse(format!("raft log entry {index} has an unknown type")))?,
            )
        });
    }
    let found = snapshots(data_dir)?;
    let metas: Vec<SnapshotMeta> = found.iter().map(|(m, _)| *m).collect();
    let chosen = zoocore_consensus::snapshot::recover(&metas, records)
        .map_err(|e| refuse(format!("{}: {e}; refusing to start", log_dir.display())))?;
    let snapshot = match chosen.snapshot {
        Some(meta) => {
            let path = snapshot_path(data_dir, &meta);
            let tree = snapfile::load_image(&path, extended_types)
                .map_err(|e| refuse(format!("{}: {e}; refusing to start", path.display())))?;
            Some((meta, tree))
        }
        None => None,
    };
    Ok(RecoveredRaft {
        durable: DurableState {
            hard_state,
            snapshot,
            entries: chosen.entries,
        },
        append,
        next_index,
    })
}

/// Entries as log batches (begun, not sealed: the writer seals them), each
/// with its first index, cut at about [`BATCH_BYTES`]. An entry at or below
/// an earlier one's index replaces it and what follows, as in the log.
pub fn encode<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Vec<(u64, Vec<u8>)> {
    let mut batches: Vec<(u64, Vec<u8>)> = Vec::new();
    for e in entries {
        let fits = batches
            .last()
            .is_some_and(|(_, b)| b.len() + e.data.len() < BATCH_BYTES);
        if !fits {
            let mut batch = Vec::new();
            log::begin_batch(&mut batch);
            batches.push((e.index, batch));
        }
        if let Some((_, batch)) = batches.last_mut() {
            log::append_entry(batch, e.index, e.term, entry::type_byte(e), &e.data);
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("zoocore-raftlog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn the_hard_state_round_trips_and_damage_refuses_to_start() {
        let dir = temp_dir("state");
        assert_eq!(
            read_state(&dir).expect("absent is initial"),
            HardState::default()
        );
        let hs = HardState {
            term: 7,
            vote: 2,
            commit: 40,
            ..Default::default()
        };
        write_state(&dir, &hs).expect("write");
        assert_eq!(read_state(&dir).expect("read"), hs);
        let mut bytes = std::fs::read(dir.join(STATE_FILE)).expect("file");
        bytes[10] ^= 1;
        std::fs::write(dir.join(STATE_FILE), &bytes).expect("damage");
        let err = read_state(&dir).expect_err("damaged");
        assert!(err.to_string().contains("refusing to start"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn entries_are_recovered_with_later_ones_replacing_a_conflicting_suffix() {
        let dir = temp_dir("log");
        let e = |index, term, data: &[u8]| {
            entry::from_log(index, term, 0, data.to_vec()).expect("entry")
        };
        let mut image = Vec::new();
        for batch in [
            vec![e(1, 1, b"a"), e(2, 1, b"b"), e(3, 1, b"c")],
            vec![e(3, 2, b"C")],
        ] {
            for (_, mut bytes) in encode(&batch) {
                log::seal_entries_batch(&mut bytes);
                image.extend_from_slice(&bytes);
            }
        }
        let end = image.len() as u64;
        image.resize(image.len() + 8192, 0);
        std::fs::write(dir.join(LogKind::ENTRIES.segment_name(1)), &image).expect("segment");
        let recovered = recover(&dir, &dir, false).expect("recover");
        let got: Vec<(u64, u64)> = recovered
            .durable
            .entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect();
        assert_eq!(got, [(1, 1), (2, 1), (3, 2)]);
        assert_eq!(recovered.next_index, 4);
        assert_eq!(recovered.append.map(|a| a.offset), Some(end));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_marked_snapshot_is_recovered_with_the_log_after_it_and_purge_drops_the_rest() {
        let dir = temp_dir("snapshot");
        let e = |index, term| entry::from_log(index, term, 0, vec![]).expect("entry");
        let mut tree = DataTree::new(false);
        tree.set_config(b"server.1=x", 5);
        let meta = write_snapshot(&dir, 10, 2, &tree).expect("snapshot");
        // An older log, then the mark of the installed snapshot, then more.
        let mut first = Vec::new();
        for (_, mut bytes) in encode(&[e(1, 1), e(2, 1), e(3, 1)]) {
            log::seal_entries_batch(&mut bytes);
            first.extend_from_slice(&bytes);
        }
        first.resize(first.len() + 8192, 0);
        std::fs::write(dir.join(LogKind::ENTRIES.segment_name(1)), &first).expect("segment");
        let mut second = encode_mark(&meta);
        log::seal_entries_batch(&mut second);
        for (_, mut bytes) in encode(&[e(11, 2)]) {
            log::seal_entries_batch(&mut bytes);
            second.extend_from_slice(&bytes);
        }
        second.resize(second.len() + 8192, 0);
        std::fs::write(dir.join(LogKind::ENTRIES.segment_name(4)), &second).expect("segment");
        let recovered = recover(&dir, &dir, false).expect("recover");
        let (got, tree_back) = recovered.durable.snapshot.expect("the snapshot");
        assert_eq!(got, meta);
        assert_eq!(
            tree_back
                .get("/zookeeper/config")
                .and_then(|n| n.data.clone()),
            Some(b"server.1=x".to_vec().into())
        );
        let indexes: Vec<u64> = recovered.durable.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, [11]);
        assert_eq!(recovered.next_index, 12);
        let chunk = read_chunk(&dir, &meta, 8, 16).expect("chunk");
        assert_eq!(
            chunk,
            std::fs::read(snapshot_path(&dir, &meta)).expect("file")[8..24]
        );

        write_snapshot(&dir, 11, 2, &tree).expect("newer");
        purge(&dir, &dir, 10, 1).expect("purge");
        let left: Vec<u64> = LogKind::ENTRIES
            .segments(&dir)
            .expect("segments")
            .iter()
            .map(|(first, _)| *first as u64)
            .collect();
        assert_eq!(left, [4], "the segment before index 4 is dropped");
        let kept: Vec<u64> = snapshots(&dir)
            .expect("list")
            .iter()
            .map(|(m, _)| m.index)
            .collect();
        assert_eq!(kept, [11]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
