//! The transaction log on disk.
//!
//! The log is a run of segments in dataLogDir, `zoocore.log.<first zxid as
//! 16 hex digits>`, each created at full size and zero-filled before it is
//! used: writing into blocks that exist makes each sync a data-only sync (no
//! size or extent change to journal), and zeros after the last batch read as
//! "end of log". The next segment is prepared in the background
//! (`zoocore.log.next`) once the current one is half full, and renamed
//! when the current one is full.
//!
//! Batches are packed: each append writes from the start of the block where
//! the log ends, that block's durable bytes (kept in memory) first, so a
//! batch of one small txn costs its own size on disk, not a block.
//!
//! An ensemble member's log is the same machinery over raft entries:
//! segments `zoocore.raftlog.<first raft index>` of entry batches
//! ([`LogKind::ENTRIES`]).

use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use glommio::io::{DmaFile, OpenOptions};
use glommio::task::JoinHandle;
use zoocore_engine::log::{self, BLOCK};

use crate::storage::dir;

/// Zero-filling is done in writes of this size.
const ZERO_CHUNK: usize = 1 << 20;

/// Which log: its file names and how its batches are sealed.
#[derive(Debug, Clone, Copy)]
pub struct LogKind {
    /// Segments are `<prefix><first key as 16 hex digits>`.
    pub prefix: &'static str,
    /// The segment prepared in the background.
    pub next: &'static str,
    seal: fn(&mut [u8]),
}

impl LogKind {
    /// A standalone server's log of txn batches, keyed by first zxid.
    pub const TXNS: LogKind = LogKind {
        prefix: "zoocore.log.",
        next: "zoocore.log.next",
        seal: log::seal_batch,
    };
    /// An ensemble member's log of raft entries, keyed by first raft index.
    pub const ENTRIES: LogKind = LogKind {
        prefix: "zoocore.raftlog.",
        next: "zoocore.raftlog.next",
        seal: log::seal_entries_batch,
    };

    pub fn segment_name(&self, first: i64) -> String {
        format!("{}{first:016x}", self.prefix)
    }

    /// Segments in `dir`, oldest first.
    pub fn segments(&self, dir: &Path) -> std::io::Result<Vec<(i64, PathBuf)>> {
        dir::files_named(dir, self.prefix)
    }
}

/// Log segments in `dir`, oldest first.
pub fn segments(dir: &Path) -> std::io::Result<Vec<(i64, PathBuf)>> {
    LogKind::TXNS.segments(dir)
}

/// How an append is made durable (`zoocore.logSync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSync {
    /// The write, then `fdatasync` (an io-wq worker runs it).
    Fdatasync,
    /// The segment is opened with O_DSYNC: the write completes durable.
    Dsync,
}

impl LogSync {
    fn open_flags(self) -> i32 {
        match self {
            LogSync::Fdatasync => 0,
            LogSync::Dsync => libc::O_DSYNC,
        }
    }
}

/// The open log, appended to by the sequencer only.
pub struct LogWriter {
    kind: LogKind,
    sync: LogSync,
    dir: PathBuf,
    file: DmaFile,
    /// `file`'s descriptor, duplicated, for the blocking appends.
    appends: std::fs::File,
    segment: i64,
    /// Where the log ends: the next batch starts here.
    position: u64,
    /// The durable bytes of the block `position` is in, which the next
    /// append writes again (O_DIRECT writes whole blocks).
    tail: Vec<u8>,
    /// Bytes the current segment holds (zero-filled).
    capacity: u64,
    segment_bytes: u64,
    /// A failed or torn write may have left bytes up to here: the next write
    /// covers them with zeros so they never read as records.
    dirty_to: u64,
    next: Option<JoinHandle<std::io::Result<DmaFile>>>,
}

fn block_floor(offset: u64) -> u64 {
    offset / BLOCK as u64 * BLOCK as u64
}

fn io_error(e: glommio::GlommioError<()>) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// A duplicate of `file`'s descriptor (the same open file, O_DIRECT and
/// all) for blocking calls.
fn append_handle(file: &DmaFile) -> std::io::Result<std::fs::File> {
    // SAFETY: `file` keeps the descriptor open for this call; the duplicate
    // is owned, and closed, on its own.
    let fd = unsafe { BorrowedFd::borrow_raw(file.as_raw_fd()) };
    Ok(std::fs::File::from(fd.try_clone_to_owned()?))
}

/// Creates (or recreates) `path` at `size` bytes of zeros, durably.
async fn prepare_segment(path: PathBuf, size: u64, sync: LogSync) -> std::io::Result<DmaFile> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(sync.open_flags())
        .dma_open(&path)
        .await
        .map_err(io_error)?;
    zero_fill(&file, 0, size).await?;
    file.fdatasync().await.map_err(io_error)?;
    Ok(file)
}

/// The bytes of the block `position` falls in, before `position`.
async fn read_tail(file: &DmaFile, position: u64) -> std::io::Result<Vec<u8>> {
    let start = block_floor(position);
    let len = (position - start) as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    let block = file.read_at_aligned(start, BLOCK).await.map_err(io_error)?;
    if block.len() < len {
        return Err(std::io::Error::other(format!(
            "the log's last block reads {} bytes, its data {len}",
            block.len()
        )));
    }
    Ok(block[..len].to_vec())
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
    /// Opens the log at `append`, or starts its first segment at `next_zxid`
    /// (for an entry log: the next raft index).
    pub async fn open(
        kind: LogKind,
        dir: &Path,
        append: Option<LogPosition>,
        next_zxid: i64,
        segment_bytes: u64,
        sync: LogSync,
    ) -> std::io::Result<LogWriter> {
        let (file, segment, position) = match append {
            Some(at) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(sync.open_flags())
                    .dma_open(dir.join(kind.segment_name(at.segment)))
                    .await
                    .map_err(io_error)?;
                (file, at.segment, at.offset)
            }
            None => {
                let path = dir.join(kind.segment_name(next_zxid));
                let file = prepare_segment(path, segment_bytes, sync).await?;
                dir::sync_dir(dir)?;
                (file, next_zxid, 0)
            }
        };
        let size = file.file_size().await.map_err(io_error)?;
        // A cut tail leaves the file short of a whole block; the bytes past
        // the cut read as zeros.
        let whole = block_floor(size + BLOCK as u64 - 1);
        let capacity = whole.max(segment_bytes);
        if whole < capacity {
            // A cut tail or a smaller segment size in an older run.
            zero_fill(&file, whole, capacity).await?;
            file.fdatasync().await.map_err(io_error)?;
        }
        let tail = read_tail(&file, position).await?;
        let mut log = LogWriter {
            kind,
            sync,
            dir: dir.to_owned(),
            appends: append_handle(&file)?,
            file,
            segment,
            position,
            tail,
            capacity,
            segment_bytes,
            dirty_to: 0,
            next: None,
        };
        // An earlier run's prepared segment holds nothing yet; it is made
        // again when this one is half full.
        match std::fs::remove_file(dir.join(kind.next)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        log.prepare_next_when_due();
        Ok(log)
    }

    /// Starts zero-filling the next segment once this one is half full:
    /// early enough to be ready when it is needed, late enough that a
    /// small log does not keep a second segment of zeros on disk.
    fn prepare_next_when_due(&mut self) {
        if self.next.is_none() && self.position >= self.capacity / 2 {
            self.prepare_next();
        }
    }

    fn prepare_next(&mut self) {
        let path = self.dir.join(self.kind.next);
        let size = self.segment_bytes;
        let sync = self.sync;
        self.next = Some(glommio::spawn_local(prepare_segment(path, size, sync)).detach());
    }

    /// Moves to a new segment whose first record is `first_zxid`.
    async fn roll(&mut self, first_zxid: i64) -> std::io::Result<()> {
        if self.dirty_to > self.position {
            // What a failed write left in this segment becomes zeros again.
            self.write_at_end(&[])?;
        }
        let prepared = match self.next.take() {
            Some(task) => task.await,
            None => None,
        };
        let file = match prepared {
            Some(Ok(file)) => file,
            // The background preparation failed (or is gone): try once more now.
            _ => {
                let path = self.dir.join(self.kind.next);
                prepare_segment(path, self.segment_bytes, self.sync).await?
            }
        };
        std::fs::rename(
            self.dir.join(self.kind.next),
            self.dir.join(self.kind.segment_name(first_zxid)),
        )?;
        dir::sync_dir(&self.dir)?;
        self.appends = append_handle(&file)?;
        let old = std::mem::replace(&mut self.file, file);
        if let Err(e) = old.close().await {
            tracing::warn!(error = %e, "closing a full log segment");
        }
        tracing::info!(
            segment = self.kind.segment_name(first_zxid),
            "log segment rolled"
        );
        self.segment = first_zxid;
        self.position = 0;
        self.tail.clear();
        self.capacity = self.segment_bytes;
        Ok(())
    }

    /// Seals and writes one batch of encoded records (begun with
    /// `zoocore_engine::log::begin_batch`) whose first txn is `first_zxid`
    /// and makes it durable; returns the bytes it adds to the log.
    pub async fn append(&mut self, mut bytes: Vec<u8>, first_zxid: i64) -> std::io::Result<usize> {
        (self.kind.seal)(&mut bytes);
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
        if self.position == 0 && self.dirty_to == 0 && first_zxid != self.segment {
            // Nothing written here yet, and the first record is not the one
            // the segment was named for (a member with an empty disk starts
            // from the leader's snapshot): the name follows the record.
            let to = self.kind.segment_name(first_zxid);
            std::fs::rename(
                self.dir.join(self.kind.segment_name(self.segment)),
                self.dir.join(&to),
            )?;
            dir::sync_dir(&self.dir)?;
            tracing::info!(
                segment = to,
                "empty log segment renamed for its first record"
            );
            self.segment = first_zxid;
        }
        // A segment is named by its first record (recovery checks it).
        assert!(
            self.position > 0 || first_zxid == self.segment,
            "batch from zxid {first_zxid:#x} would start segment {:#x}",
            self.segment
        );
        self.write_at_end(&bytes)?;
        self.prepare_next_when_due();
        Ok(len as usize)
    }

    /// Writes `bytes` where the log ends, durably: the blocks from the one
    /// the log ends in, its kept bytes first and zeros after `bytes` (up to
    /// `dirty_to` when a failed write left more).
    fn write_at_end(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let start = block_floor(self.position);
        assert_eq!(
            start + self.tail.len() as u64,
            self.position,
            "the kept tail is the log's last partial block"
        );
        let data = self.tail.len() + bytes.len();
        let padded = data.div_ceil(BLOCK) * BLOCK;
        let covered = padded.max(self.dirty_to.saturating_sub(start) as usize);
        let mut buffer = self.file.alloc_dma_buffer(covered);
        let out = buffer.as_bytes_mut();
        out[..self.tail.len()].copy_from_slice(&self.tail);
        out[self.tail.len()..data].copy_from_slice(bytes);
        out[data..].fill(0);
        self.dirty_to = self.dirty_to.max(start + covered as u64);
        // Blocking calls on this thread rather than io_uring: each io_uring
        // op (the write, and the fdatasync an io-wq worker runs) took about
        // 80 µs longer than the same syscall made here, in wake-ups through
        // the executor's rings (ARCHITECTURE.md, "Log writes").
        self.appends.write_all_at(buffer.as_bytes(), start)?;
        if self.sync == LogSync::Fdatasync {
            self.appends.sync_data()?;
        }
        let last_block = data / BLOCK * BLOCK;
        self.tail.clear();
        self.tail
            .extend_from_slice(&buffer.as_bytes()[last_block..data]);
        self.position = start + data as u64;
        self.dirty_to = 0;
        Ok(())
    }
}

/// A place in the log: the segment (by its first zxid) and a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    pub segment: i64,
    pub offset: u64,
}
