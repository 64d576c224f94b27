//! File naming, listing and directory fsync shared by log segments and
//! snapshots (a leaf: it imports nothing of storage's).

use std::path::{Path, PathBuf};

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

/// The file whose lock says a server owns the directory.
pub const LOCK_FILE: &str = "zoocore.lock";

/// Takes this process's exclusive hold on `dir` (creating it): an flock on
/// `zoocore.lock` inside, which the kernel releases when the process ends,
/// however it ends. `Ok(None)`: another process holds it.
pub fn lock(dir: &Path) -> std::io::Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(file));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(None),
        _ => Err(e),
    }
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
