//! `zoocore import-zk`: an Apache ZooKeeper data dir into a zoocore snapshot.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use zoocore_engine::zk_import::{self, DigestCheck, ZkSource};

/// `zoocore import-zk`: converts an Apache ZooKeeper 3.5–3.9 data dir into
/// a zoocore snapshot in `data_dir`. `from` is ZooKeeper's dataDir (its
/// `version-2` dir, or that dir itself), and its dataLogDir too when that
/// is separate. Refuses a data or log dir that already holds zoocore files.
/// Prints a one-line summary; warnings go to stderr.
pub fn import_zk(
    from: &[PathBuf],
    data_dir: &Path,
    log_dir: &Path,
    extended_types: bool,
) -> Result<(), String> {
    for target in [data_dir, log_dir] {
        if let Some(name) = zoocore_file_in(target)? {
            return Err(format!(
                "{} already holds zoocore files ({name}): import into a new or empty dir",
                target.display()
            ));
        }
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for from in from {
        let dir = if from.join("version-2").is_dir() {
            from.join("version-2")
        } else {
            from.clone()
        };
        let canonical = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        if dirs.contains(&canonical) {
            continue;
        }
        dirs.push(canonical);
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((_, other)) = files.iter().find(|(n, _)| *n == name) {
                return Err(format!(
                    "{name} is in both {} and {}",
                    other.display(),
                    dir.display()
                ));
            }
            files.push((name, entry.path()));
        }
    }
    let shown: Vec<String> = from.iter().map(|d| d.display().to_string()).collect();
    let shown = shown.join(" + ");
    let mut source = ZkDir { files };
    let imported =
        zk_import::import_from(&mut source, extended_types).map_err(|e| format!("{shown}: {e}"))?;
    for warning in &imported.warnings {
        eprintln!("zoocore import-zk: warning: {warning}");
    }
    if let DigestCheck::Mismatch { zxid, .. } = imported.digest {
        return Err(format!(
            "{shown}: nothing written: the imported tree is not the one ZooKeeper's digest \
             describes at zxid {zxid:#x}"
        ));
    }
    let tree = &imported.tree;
    let written = crate::storage::snapfile::write_snapshot(data_dir, tree)
        .map_err(|e| format!("writing a snapshot in {}: {e}", data_dir.display()))?;
    std::fs::create_dir_all(log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
    let digest = match imported.digest {
        DigestCheck::Matched { zxid } => format!("ZooKeeper's digest at {zxid:#x} matches"),
        _ => "no ZooKeeper digest to check".to_owned(),
    };
    println!(
        "imported {} nodes, {} sessions, last zxid {:#x} from {} ({} at {:#x} + {} txns; {} files read: {}); {digest}; wrote {}",
        tree.node_count(),
        tree.sessions().len(),
        tree.last_zxid(),
        shown,
        imported.snapshot.as_deref().unwrap_or("no snapshot"),
        imported.snapshot_zxid,
        imported.txns,
        imported.files_read.len(),
        imported.files_read.join(" "),
        written.display()
    );
    Ok(())
}

/// The first file in `dir` named like a zoocore file, if any.
fn zoocore_file_in(dir: &Path) -> Result<Option<String>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    for entry in entries {
        let name = entry
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.starts_with("zoocore") {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// The files of ZooKeeper's `version-2` dirs, read one at a time.
struct ZkDir {
    /// (name, path)
    files: Vec<(String, PathBuf)>,
}

impl ZkSource for ZkDir {
    fn names(&self) -> Vec<String> {
        self.files.iter().map(|(name, _)| name.clone()).collect()
    }

    fn read(&mut self, name: &str) -> Result<Cow<'_, [u8]>, String> {
        let (_, path) = self
            .files
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| "no such file".to_owned())?;
        std::fs::read(path)
            .map(Cow::Owned)
            .map_err(|e| e.to_string())
    }
}
