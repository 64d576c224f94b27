//! The transaction log on disk and recovery.
//!
//! The log is a run of segments in dataLogDir, `zoocore.log.<first zxid as
//! 16 hex digits>`, each created at full size and zero-filled before it is
//! used: writing into blocks that exist makes each sync a data-only sync (no
//! size or extent change to journal), and zeros after the last batch read as
//! "end of log". The next segment is prepared in the background
//! (`zoocore.log.next`) and renamed when the current one is full.
//!
//! Recovery = the newest snapshot that validates + every later record, with
//! zxids checked to follow each other across segments. Only the tail of the
//! last segment may be torn (it is cut); damage anywhere else, or a log whose
//! start no valid snapshot reaches, refuses to start.

use std::path::{Path, PathBuf};

use glommio::io::{DmaFile, OpenOptions};
use glommio::task::JoinHandle;
use zoocore_engine::log::{self, BLOCK};
use zoocore_engine::DataTree;

use crate::storage::snapfile;

const SEGMENT_PREFIX: &str = "zoocore.log.";
const NEXT_SEGMENT: &str = "zoocore.log.next";
/// Zero-filling is done in writes of this size.
const ZERO_CHUNK: usize = 1 << 20;

pub fn segment_name(first_zxid: i64) -> String {
    format!("{SEGMENT_PREFIX}{first_zxid:016x}")
}

/// Files in `dir` named `<prefix><16 hex digits>`, in zxid order.
pub fn files_named(dir: &Path, prefix: &str) -> std::io::Result<Vec<(i64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(hex) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if hex.len() == 16 {
            if let Ok(zxid) = u64::from_str_radix(hex, 16) {
                found.push((zxid as i64, entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Log segments in `dir`, oldest first.
pub fn segments(dir: &Path) -> std::io::Result<Vec<(i64, PathBuf)>> {
    files_named(dir, SEGMENT_PREFIX)
}

/// A place in the log: the segment (by its first zxid) and a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    pub segment: i64,
    pub offset: u64,
}

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
    match std::fs::remove_file(log_dir.join(NEXT_SEGMENT)) {
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
    let segments = segments(log_dir)?;
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
    let segments = segments(log_dir)?;
    for pair in segments.windows(2) {
        // Everything in pair[0] comes before pair[1]'s first zxid.
        if pair[1].0 <= oldest_kept + 1 {
            std::fs::remove_file(&pair[0].1)?;
            removed.push(pair[0].1.clone());
        }
    }
    Ok(removed)
}

/// The open log, appended to by the sequencer only.
pub struct LogWriter {
    dir: PathBuf,
    file: DmaFile,
    segment: i64,
    position: u64,
    /// Bytes the current segment holds (zero-filled).
    capacity: u64,
    segment_bytes: u64,
    /// A failed write may have left bytes up to here: the next write covers
    /// them with zeros so they never read as records.
    dirty_to: u64,
    next: Option<JoinHandle<std::io::Result<DmaFile>>>,
}

fn io_error(e: glommio::GlommioError<()>) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Creates (or recreates) `path` at `size` bytes of zeros, durably.
async fn prepare_segment(path: PathBuf, size: u64) -> std::io::Result<DmaFile> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&path)
        .await
        .map_err(io_error)?;
    zero_fill(&file, 0, size).await?;
    file.fdatasync().await.map_err(io_error)?;
    Ok(file)
}

/// Writes zeros over `[from, to)`.
async fn zero_fill(file: &DmaFile, from: u64, to: u64) -> std::io::Result<()> {
    let mut at = from;
    while at < to {
        let len = ZERO_CHUNK.min((to - at) as usize);
        let mut buffer = file.alloc_dma_buffer(len);
        buffer.as_bytes_mut().fill(0);
        let written = file.write_at(buffer, at).await.map_err(io_error)?;
        // A short write (file-size limit, full disk) counts in whole blocks,
        // so appends stay aligned for O_DIRECT.
        let whole = (written / BLOCK * BLOCK) as u64;
        if whole == 0 {
            return Err(std::io::Error::other("zero-filling the log wrote nothing"));
        }
        at += whole;
    }
    Ok(())
}

impl LogWriter {
    /// Opens the log at `append`, or starts its first segment at `next_zxid`.
    pub async fn open(
        dir: &Path,
        append: Option<LogPosition>,
        next_zxid: i64,
        segment_bytes: u64,
    ) -> std::io::Result<LogWriter> {
        let (file, segment, position) = match append {
            Some(at) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .dma_open(dir.join(segment_name(at.segment)))
                    .await
                    .map_err(io_error)?;
                (file, at.segment, at.offset)
            }
            None => {
                let path = dir.join(segment_name(next_zxid));
                let file = prepare_segment(path, segment_bytes).await?;
                snapfile::sync_dir(dir)?;
                (file, next_zxid, 0)
            }
        };
        assert_eq!(position % BLOCK as u64, 0, "appends start on a block");
        let size = file.file_size().await.map_err(io_error)?;
        let capacity = size.max(segment_bytes);
        if size < capacity {
            // A cut tail or a smaller segment size in an older run.
            zero_fill(&file, size / BLOCK as u64 * BLOCK as u64, capacity).await?;
            file.fdatasync().await.map_err(io_error)?;
        }
        let mut log = LogWriter {
            dir: dir.to_owned(),
            file,
            segment,
            position,
            capacity,
            segment_bytes,
            dirty_to: 0,
            next: None,
        };
        log.prepare_next();
        Ok(log)
    }

    fn prepare_next(&mut self) {
        let path = self.dir.join(NEXT_SEGMENT);
        let size = self.segment_bytes;
        self.next = Some(glommio::spawn_local(prepare_segment(path, size)).detach());
    }

    /// Moves to a new segment whose first record is `first_zxid`.
    async fn roll(&mut self, first_zxid: i64) -> std::io::Result<()> {
        if self.dirty_to > self.position {
            zero_fill(&self.file, self.position, self.dirty_to).await?;
            self.file.fdatasync().await.map_err(io_error)?;
            self.dirty_to = 0;
        }
        let prepared = match self.next.take() {
            Some(task) => task.await,
            None => None,
        };
        let file = match prepared {
            Some(Ok(file)) => file,
            // The background preparation failed (or is gone): try once more now.
            _ => prepare_segment(self.dir.join(NEXT_SEGMENT), self.segment_bytes).await?,
        };
        std::fs::rename(
            self.dir.join(NEXT_SEGMENT),
            self.dir.join(segment_name(first_zxid)),
        )?;
        snapfile::sync_dir(&self.dir)?;
        let old = std::mem::replace(&mut self.file, file);
        if let Err(e) = old.close().await {
            tracing::warn!(error = %e, "closing a full log segment");
        }
        tracing::info!(segment = segment_name(first_zxid), "log segment rolled");
        self.segment = first_zxid;
        self.position = 0;
        self.capacity = self.segment_bytes;
        self.prepare_next();
        Ok(())
    }

    /// Seals and writes one batch of encoded records (begun with
    /// `zoocore_engine::log::begin_batch`) whose
    /// first txn is `first_zxid` and makes it durable; returns the bytes
    /// written, padding included.
    pub async fn append(&mut self, mut bytes: Vec<u8>, first_zxid: i64) -> std::io::Result<usize> {
        log::seal_batch(&mut bytes);
        let len = bytes.len() as u64;
        if len > self.segment_bytes {
            return Err(std::io::Error::other(format!(
                "a batch of {len} bytes does not fit a log segment of {}",
                self.segment_bytes
            )));
        }
        if self.position + len > self.capacity {
            self.roll(first_zxid).await?;
        }
        // A segment is named by its first record (recovery checks it).
        assert!(
            self.position > 0 || first_zxid == self.segment,
            "batch from zxid {first_zxid:#x} would start segment {:#x}",
            self.segment
        );
        if self.dirty_to > self.position + len {
            bytes.resize((self.dirty_to - self.position) as usize, 0);
        }
        let mut buffer = self.file.alloc_dma_buffer(bytes.len());
        buffer.as_bytes_mut().copy_from_slice(&bytes);
        self.dirty_to = self.dirty_to.max(self.position + bytes.len() as u64);
        let written = self
            .file
            .write_at(buffer, self.position)
            .await
            .map_err(io_error)?;
        if written != bytes.len() {
            return Err(std::io::Error::other(format!(
                "short log write: {written} of {}",
                bytes.len()
            )));
        }
        self.file.fdatasync().await.map_err(io_error)?;
        self.position += len;
        self.dirty_to = 0;
        Ok(len as usize)
    }
}
