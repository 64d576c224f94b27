//! The transaction log on disk: recovery at start (plain reads, before any
//! executor runs) and appends of whole commit batches through io_uring with
//! O_DIRECT, each followed by fdatasync before anything is acknowledged.

use std::path::{Path, PathBuf};

use glommio::io::{DmaFile, OpenOptions};
use zoocore_engine::log::{self, BLOCK};
use zoocore_engine::{DataTree, Txn};

pub const LOG_FILE: &str = "zoocore.log";

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
    if let Some(at) = scan.torn_at {
        tracing::warn!(file = %path.display(), offset = at, kept = scan.valid_len, "torn log tail cut");
    }
    let mut tree = DataTree::new(extended_types);
    for (_, txn) in &scan.txns {
        if txn.zxid <= tree.last_zxid() {
            return Err(std::io::Error::other(format!(
                "{}: zxid {:#x} out of order after {:#x}",
                path.display(),
                txn.zxid,
                tree.last_zxid()
            )));
        }
        tree.apply(txn);
    }
    if image.len() != scan.valid_len {
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

/// The open log, appended to by the sequencer only.
pub struct LogWriter {
    file: DmaFile,
    position: u64,
}

impl LogWriter {
    pub async fn open(dir: &Path, position: u64) -> std::io::Result<LogWriter> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(log_path(dir))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        assert_eq!(position % BLOCK as u64, 0, "appends start on a block");
        Ok(LogWriter { file, position })
    }

    /// Writes one batch (records already encoded) and makes it durable.
    pub async fn append(&mut self, term: u64, txns: &[&Txn]) -> std::io::Result<usize> {
        let mut bytes = Vec::with_capacity(BLOCK);
        for txn in txns {
            log::append_record(&mut bytes, term, txn);
        }
        log::pad_to_block(&mut bytes);
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
