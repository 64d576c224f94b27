//! An ensemble member's durable raft state: the entry log (wal.rs's
//! machinery with [`LogKind::ENTRIES`]: `zoocore.raftlog.<first index>` in
//! dataLogDir) and `zoocore.raftstate` in dataDir (term, vote, commit).
//!
//! Recovery reads the state file and every entry segment; an entry that
//! repeats an index replaces that entry and the rest (raft's truncation,
//! done by appending); only the last segment's tail may be torn. The
//! replica then re-applies the committed entries, so the log alone is the
//! truth: zoocore snapshots are not taken in ensemble mode yet.

use std::io::Write as _;
use std::path::Path;

use zoocore_consensus::{entry, DurableState, Entry, HardState};
use zoocore_engine::log::{self, LoggedEntry};

use crate::storage::dir;
use crate::storage::wal::{LogKind, LogPosition};

pub const STATE_FILE: &str = "zoocore.raftstate";
const STATE_MAGIC: u32 = 0x5a43_5253; // "ZCRS"
const STATE_LEN: usize = 32;
/// Entries per log batch are cut at about this many bytes.
pub const BATCH_BYTES: usize = 1 << 20;

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

/// Reads the state file and the entry log.
pub fn recover(data_dir: &Path, log_dir: &Path) -> std::io::Result<RecoveredRaft> {
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
    let mut entries = Vec::with_capacity(logged.len());
    let mut expected = logged.first().map_or(1, |e| e.index);
    if expected != 1 {
        return Err(refuse(format!(
            "the raft log in {} starts at index {expected}, not 1",
            log_dir.display()
        )));
    }
    for e in logged {
        if e.index != expected {
            return Err(refuse(format!(
                "the raft log skips from {} to {}",
                expected - 1,
                e.index
            )));
        }
        expected += 1;
        let index = e.index;
        entries.push(
            entry::from_log(e.index, e.term, e.kind, e.data)
                .ok_or_else(|| refuse(format!("raft log entry {index} has an unknown type")))?,
        );
    }
    Ok(RecoveredRaft {
        durable: DurableState {
            hard_state,
            entries,
        },
        append,
        next_index: expected,
    })
}

/// Entries as log batches (begun, not sealed: the writer seals them), each
/// with its first index, cut at about [`BATCH_BYTES`].
pub fn encode(entries: &[Entry]) -> Vec<(u64, Vec<u8>)> {
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
        image.resize(image.len() + 8192, 0);
        std::fs::write(dir.join(LogKind::ENTRIES.segment_name(1)), &image).expect("segment");
        let recovered = recover(&dir, &dir).expect("recover");
        let got: Vec<(u64, u64)> = recovered
            .durable
            .entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect();
        assert_eq!(got, [(1, 1), (2, 1), (3, 2)]);
        assert_eq!(recovered.next_index, 4);
        assert_eq!(
            recovered.append.map(|a| a.offset),
            Some(2 * log::BLOCK as u64)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
