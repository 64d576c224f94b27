//! Snapshot files in dataDir: `zoocore.snap.<zxid as 16 hex digits>`, the
//! format of `zoocore_engine::snapshot`. Written to a temporary name,
//! fsynced, renamed and the directory fsynced, so a crash leaves either the
//! whole file or none; read through mmap and validated once.

use std::io::Write;
use std::path::{Path, PathBuf};

use zoocore_engine::{snapshot, DataTree};

const PREFIX: &str = "zoocore.snap.";
const TEMPORARY: &str = ".tmp";

pub fn snapshot_name(zxid: i64) -> String {
    format!("{PREFIX}{zxid:016x}")
}

/// Snapshots in `dir`, newest first.
pub fn list(dir: &Path) -> std::io::Result<Vec<(i64, PathBuf)>> {
    let mut found = crate::storage::dir::files_named(dir, PREFIX)?;
    found.reverse();
    Ok(found)
}

/// Removes temporaries a crash left behind mid-write.
pub fn remove_temporaries(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && name.ends_with(TEMPORARY) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Writes `tree` as the snapshot of its last zxid; returns its path.
pub fn write_snapshot(dir: &Path, tree: &DataTree) -> std::io::Result<PathBuf> {
    write_named(dir, &snapshot_name(tree.last_zxid()), tree)
}

/// Writes `tree` in the snapshot format as `dir/name`, durably; returns
/// its path.
pub fn write_named(dir: &Path, name: &str, tree: &DataTree) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let temporary = dir.join(format!("{name}{TEMPORARY}"));
    let file = PacedFile {
        file: std::fs::File::create(&temporary)?,
        written: 0,
        flushed: 0,
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    snapshot::write(tree, &mut out)?;
    out.flush()?;
    let file = out.into_inner().map_err(|e| e.into_error())?.file;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    crate::storage::dir::sync_dir(dir)?;
    Ok(path)
}

/// Writing a big snapshot in one go queues a burst of writeback in front of
/// the log's fsyncs. This flushes every `PACE` bytes and waits for it, so the
/// disk queue holds at most that much of the snapshot at a time.
struct PacedFile {
    file: std::fs::File,
    written: u64,
    flushed: u64,
}

const PACE: u64 = 4 << 20;

impl Write for PacedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.flushed >= PACE {
            use std::os::fd::AsRawFd;
            let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            // SAFETY: a plain syscall on a file descriptor we own.
            let rc = unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.flushed as libc::off64_t,
                    (self.written - self.flushed) as libc::off64_t,
                    flags,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            self.flushed = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Reads a snapshot file: maps it, checks that its header names the zxid its
/// file name does, and validates and rebuilds the whole tree.
pub fn load(path: &Path, zxid: i64, extended_types: bool) -> Result<DataTree, String> {
    let map = map(path)?;
    let header = snapshot::header(&map).map_err(|e| e.to_string())?;
    if header.zxid != zxid {
        return Err(format!(
            "header says zxid {:#x}, file name {zxid:#x}",
            header.zxid
        ));
    }
    snapshot::read(&map, extended_types).map_err(|e| e.to_string())
}

/// Reads a snapshot file whose name does not carry its zxid (a raft
/// snapshot): validates and rebuilds the whole tree.
pub fn load_image(path: &Path, extended_types: bool) -> Result<DataTree, String> {
    snapshot::read(&map(path)?, extended_types).map_err(|e| e.to_string())
}

fn map(path: &Path) -> Result<memmap2::Mmap, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: snapshot files are never modified once renamed into place.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())
}
