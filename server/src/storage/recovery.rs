//! Recovery before any executor starts, and autopurge.
//!
//! Recovery = the newest snapshot that validates + every later record, with
//! zxids checked to follow each other across segments. Only the tail of the
//! last segment may be torn (it is cut); damage anywhere else, or a log whose
//! start no valid snapshot reaches, refuses to start.

use std::path::{Path, PathBuf};

use zoocore_engine::log;
use zoocore_engine::DataTree;

use crate::storage::wal::LogPosition;
use crate::storage::{snapfile, wal};

/// State rebuilt at start.
pub struct Recovered {
    pub tree: DataTree,
    /// The snapshot it started from, and its zxid (0 without one).
    pub snapshot: Option<PathBuf>,
    pub snapshot_zxid: i64,
    /// Records replayed on top of it.
    pub txns: usize,
    /// Where appends resume (the torn tail, if any, is cut there); `None`
    /// when there is no segment yet.
    pub append: Option<LogPosition>,
}

fn refuse(message: String) -> std::io::Error {
    std::io::Error::other(format!(
        "{message}; refusing to start rather than lose committed data"
    ))
}

/// Recovers the tree from dataDir's snapshots and dataLogDir's segments,
/// cutting a torn tail off the last segment.
pub fn recover(
    data_dir: &Path,
    log_dir: &Path,
    extended_types: bool,
) -> std::io::Result<Recovered> {
    std::fs::create_dir_all(data_dir)?;
    std::fs::create_dir_all(log_dir)?;
    snapfile::remove_temporaries(data_dir)?;
    match std::fs::remove_file(log_dir.join(wal::LogKind::TXNS.next)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let loaded = load(data_dir, log_dir, extended_types)?;
    if let Some((path, torn_at)) = &loaded.torn {
        let end = loaded
            .append
            .expect("a torn segment is the last one")
            .offset;
        tracing::warn!(file = %path.display(), offset = torn_at, kept = end, "torn log tail cut");
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(end)?;
        file.sync_all()?;
    }
    Ok(Recovered {
        tree: loaded.tree,
        snapshot_zxid: loaded.snapshot_zxid,
        snapshot: loaded.snapshot,
        txns: loaded.txns,
        append: loaded.append,
    })
}

struct Loaded {
    tree: DataTree,
    snapshot: Option<PathBuf>,
    snapshot_zxid: i64,
    txns: usize,
    append: Option<LogPosition>,
    /// The last segment's path and where its damage starts, when torn.
    torn: Option<(PathBuf, usize)>,
}

/// The newest snapshot that validates, or a fresh tree if there is none.
fn base_tree(
    data_dir: &Path,
    extended_types: bool,
) -> std::io::Result<(DataTree, Option<PathBuf>, Vec<String>)> {
    let mut rejected = Vec::new();
    for (zxid, path) in snapfile::list(data_dir)? {
        match snapfile::load(&path, zxid, extended_types) {
            Ok(tree) => return Ok((tree, Some(path), rejected)),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "snapshot does not validate; trying an older one");
                rejected.push(format!("{}: {e}", path.display()));
            }
        }
    }
    Ok((DataTree::new(extended_types), None, rejected))
}

fn load(data_dir: &Path, log_dir: &Path, extended_types: bool) -> std::io::Result<Loaded> {
    let (mut tree, snapshot, rejected) = base_tree(data_dir, extended_types)?;
    let segments = wal::segments(log_dir)?;
    let snapshot_zxid = if snapshot.is_some() {
        tree.last_zxid()
    } else {
        0
    };
    let need = tree.last_zxid() + 1;
    let Some(first) = segments.iter().rposition(|(start, _)| *start <= need) else {
        if let Some((start, path)) = segments.first() {
            let base = match &snapshot {
                Some(p) => format!(
                    "the newest valid snapshot, {}, ends at zxid {:#x}",
                    p.display(),
                    need - 1
                ),
                None => "there is no valid snapshot".to_owned(),
            };
            let rejected = if rejected.is_empty() {
                String::new()
            } else {
                format!(" (rejected: {})", rejected.join("; "))
            };
            return Err(refuse(format!(
                "{} starts at zxid {start:#x} but {base}{rejected}: the records before it are missing",
                path.display()
            )));
        }
        return Ok(Loaded {
            tree,
            snapshot,
            snapshot_zxid,
            txns: 0,
            append: None,
            torn: None,
        });
    };
    let mut txns = 0;
    let mut append = None;
    let mut torn = None;
    let last = segments.len() - 1;
    for (i, (start, path)) in segments.iter().enumerate().skip(first) {
        let image = std::fs::read(path)?;
        let scan = log::scan(&image);
        if let (Some(at), Some(valid)) = (scan.torn_at, scan.valid_after_damage) {
            return Err(refuse(format!(
                "{}: corrupt record at byte {at} with valid records after it (byte {valid}): \
                 restore the file or move it aside",
                path.display()
            )));
        }
        if let (Some(at), true) = (scan.torn_at, i < last) {
            return Err(refuse(format!(
                "{}: corrupt record at byte {at}, and later segments follow",
                path.display()
            )));
        }
        if let Some((_, txn)) = scan.txns.first().filter(|(_, t)| t.zxid != *start) {
            return Err(refuse(format!(
                "{}: first record has zxid {:#x}, the file name says {start:#x}",
                path.display(),
                txn.zxid
            )));
        }
        // Each record is dropped once applied, so the next nodes reuse its
        // memory: holding every decoded record until the segment's end left
        // ~100 MiB of holes in the heap after replaying 300k setData.
        for (_, txn) in scan.txns {
            if txn.zxid <= tree.last_zxid() && i == first {
                continue; // already in the snapshot
            }
            if txn.zxid != tree.last_zxid() + 1 {
                return Err(refuse(format!(
                    "{}: zxid {:#x} follows {:#x}: records are missing or out of order",
                    path.display(),
                    txn.zxid,
                    tree.last_zxid()
                )));
            }
            tree.apply(&txn);
            txns += 1;
        }
        if i == last {
            append = Some(LogPosition {
                segment: *start,
                offset: scan.valid_len as u64,
            });
            torn = scan.torn_at.map(|at| (path.clone(), at));
        }
    }
    Ok(Loaded {
        tree,
        snapshot,
        snapshot_zxid,
        txns,
        append,
        torn,
    })
}

/// Deletes snapshots beyond the newest `retain`, and segments whose every
/// record is older than the oldest snapshot kept (ZooKeeper's autopurge).
/// The last segment is always kept. Returns the files removed.
pub fn purge(data_dir: &Path, log_dir: &Path, retain: usize) -> std::io::Result<Vec<PathBuf>> {
    let snapshots = snapfile::list(data_dir)?;
    if snapshots.len() <= retain {
        return Ok(Vec::new());
    }
    let mut removed = Vec::new();
    let oldest_kept = snapshots[retain - 1].0;
    for (_, path) in &snapshots[retain..] {
        std::fs::remove_file(path)?;
        removed.push(path.clone());
    }
    let segments = wal::segments(log_dir)?;
    for pair in segments.windows(2) {
        // Everything in pair[0] comes before pair[1]'s first zxid.
        if pair[1].0 <= oldest_kept + 1 {
            std::fs::remove_file(&pair[0].1)?;
            removed.push(pair[0].1.clone());
        }
    }
    Ok(removed)
}
