//! The transaction log on disk: recovery at start (plain reads, before any
//! executor runs) and appends of whole commit batches through io_uring with
//! O_DIRECT | O_DSYNC, durable before anything in them is acknowledged.
//!
//! The file is kept zero-filled ahead of the append position: writing into
//! blocks that exist makes each sync a data-only sync (no size or extent
//! change to journal), and zeros after the last batch read as "end of log".

use std::path::{Path, PathBuf};

use glommio::io::{DmaFile, OpenOptions};
use zoocore_engine::log::{self, BLOCK};
use zoocore_engine::DataTree;

pub const LOG_FILE: &str = "zoocore.log";
/// Zero-filling is done in writes of this size.
const ZERO_CHUNK: usize = 1 << 20;

/// State rebuilt from the log.
pub struct Recovered {
    pub tree: DataTree,
    pub txns: usize,
    /// Where appends resume (the torn tail, if any, is cut here).
    pub append_at: u64,
}

pub fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

/// Replays the log into a fresh tree, cutting a torn tail.
pub fn recover(dir: &Path, extended_types: bool) -> std::io::Result<Recovered> {
    std::fs::create_dir_all(dir)?;
    let path = log_path(dir);
    let image = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let scan = log::scan(&image);
    if let (Some(at), Some(valid)) = (scan.torn_at, scan.valid_after_damage) {
        return Err(std::io::Error::other(format!(
            "{}: corrupt record at byte {at} with valid records after it (byte {valid}); \
             refusing to start rather than drop committed data: restore the file or \
             move it aside",
            path.display()
        )));
    }
    if let Some(at) = scan.torn_at {
        tracing::warn!(file = %path.display(), offset = at, kept = scan.valid_len, "torn log tail cut");
    }
    let tree = replay(&scan, extended_types)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
    if scan.torn_at.is_some() {
        // Cut the damage; zero-filling starts again from the cut.
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.set_len(scan.valid_len as u64)?;
        file.sync_all()?;
    }
    Ok(Recovered {
        tree,
        txns: scan.txns.len(),
        append_at: scan.valid_len as u64,
    })
}

fn replay(scan: &log::Scan, extended_types: bool) -> Result<DataTree, String> {
    let mut tree = DataTree::new(extended_types);
    for (_, txn) in &scan.txns {
        if txn.zxid <= tree.last_zxid() {
            return Err(format!(
                "zxid {:#x} out of order after {:#x}",
                txn.zxid,
                tree.last_zxid()
            ));
        }
        tree.apply(txn);
    }
    Ok(tree)
}

/// The state the log holds durably up to `end`: what the sequencer returns
/// to when a batch could not be written.
pub fn durable_state(dir: &Path, end: u64, extended_types: bool) -> std::io::Result<DataTree> {
    let image = std::fs::read(log_path(dir))?;
    let end = (end as usize).min(image.len());
    replay(&log::scan(&image[..end]), extended_types).map_err(std::io::Error::other)
}

/// The open log, appended to by the sequencer only.
pub struct LogWriter {
    file: DmaFile,
    position: u64,
    /// The file is zero-filled up to here.
    zeroed_to: u64,
    preallocate: u64,
}

impl LogWriter {
    pub async fn open(dir: &Path, position: u64, preallocate: u64) -> std::io::Result<LogWriter> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(log_path(dir))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        assert_eq!(position % BLOCK as u64, 0, "appends start on a block");
        let size = file
            .file_size()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut log = LogWriter {
            file,
            position,
            zeroed_to: size.max(position) / BLOCK as u64 * BLOCK as u64,
            preallocate,
        };
        log.zero_fill(position + preallocate).await?;
        Ok(log)
    }

    /// Extends the zero-filled region to at least `end`.
    async fn zero_fill(&mut self, end: u64) -> std::io::Result<()> {
        while self.zeroed_to < end {
            let buffer = self.file.alloc_dma_buffer(ZERO_CHUNK);
            let mut buffer = buffer;
            buffer.as_bytes_mut().fill(0);
            let written = self
                .file
                .write_at(buffer, self.zeroed_to)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            // A short write (file-size limit, full disk) counts in whole blocks,
            // so appends stay aligned for O_DIRECT.
            let whole = (written / BLOCK * BLOCK) as u64;
            if whole == 0 {
                return Err(std::io::Error::other("zero-filling the log wrote nothing"));
            }
            self.zeroed_to += whole;
        }
        Ok(())
    }

    /// Where the next batch goes; everything before it is durable.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Writes one batch of encoded records (see `zoocore_engine::log`) and
    /// makes it durable; returns the bytes written, padding included.
    pub async fn append(&mut self, mut bytes: Vec<u8>) -> std::io::Result<usize> {
        log::pad_to_block(&mut bytes);
        if self.position + bytes.len() as u64 > self.zeroed_to {
            // Rare (once per `preallocate` bytes): stalls this batch while it fills.
            self.zero_fill(self.position + bytes.len() as u64 + self.preallocate)
                .await?;
        }
        let mut buffer = self.file.alloc_dma_buffer(bytes.len());
        buffer.as_bytes_mut().copy_from_slice(&bytes);
        let written = self
            .file
            .write_at(buffer, self.position)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if written != bytes.len() {
            return Err(std::io::Error::other(format!(
                "short log write: {written} of {}",
                bytes.len()
            )));
        }
        self.file
            .fdatasync()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.position += bytes.len() as u64;
        Ok(bytes.len())
    }
}
