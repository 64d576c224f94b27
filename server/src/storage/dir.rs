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

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
