//! `zoocore log dump` and `zoocore snapshot dump`.

use std::fmt::Write as _;
use std::path::Path;

use zoocore_engine::log;
use zoocore_engine::txn::{CreateKind, TxnOp};

use zoocore_net::{Acl, ErrorCode};

use crate::storage::{snapfile, wal};

/// Prints every txn of the log segments in `dir`, one line each, like
/// ZooKeeper's LogFormatter, then where each segment ends and whether its
/// tail is torn.
pub fn dump_log(dir: &Path) -> Result<(), String> {
    let segments = wal::segments(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if segments.is_empty() {
        return Err(format!("{}: no log segments", dir.display()));
    }
    let mut out = String::new();
    for (_, path) in segments {
        let image = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let scan = log::scan(&image);
        let _ = writeln!(out, "{}:", path.display());
        for (term, txn) in &scan.txns {
            let _ = writeln!(
                out,
                "zxid {:#x} term {term} time {} session {:#x} cxid {:#x} {}",
                txn.zxid,
                txn.time,
                txn.session_id,
                txn.cxid,
                describe(&txn.op)
            );
        }
        let mut batches = scan.batch_starts.clone();
        batches.dedup();
        let _ = writeln!(
            out,
            "{} txns in {} batches; data ends at byte {}",
            scan.txns.len(),
            batches.len(),
            scan.valid_len
        );
        if let Some(at) = scan.torn_at {
            let _ = writeln!(
                out,
                "torn or corrupt record at byte {at}: the server cuts the log there"
            );
        }
    }
    print!("{out}");
    Ok(())
}

/// Prints a snapshot like ZooKeeper's SnapshotFormatter: every node with its
/// Stat (parents first), then the sessions with their ephemeral counts.
pub fn dump_snapshot(
    data_dir: &Path,
    file: Option<&Path>,
    extended_types: bool,
) -> Result<(), String> {
    let (zxid, path) = match file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let header = zoocore_engine::snapshot::header(&bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            (header.zxid, path.to_owned())
        }
        None => snapfile::list(data_dir)
            .map_err(|e| format!("{}: {e}", data_dir.display()))?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{}: no snapshots", data_dir.display()))?,
    };
    let tree = snapfile::load(&path, zxid, extended_types)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: zxid {zxid:#x}\nZNode Details (count={}):",
        path.display(),
        tree.node_count()
    );
    let mut stack = vec![String::from("/")];
    while let Some(p) = stack.pop() {
        let node = tree.get(&p).expect("children are nodes");
        let base = if p == "/" { "" } else { p.as_str() };
        let children: Vec<String> = tree
            .child_names(&p)
            .map(|c| format!("{base}/{c}"))
            .collect();
        stack.extend(children.into_iter().rev());
        let stat = tree.stat_of(node);
        let _ = writeln!(
            out,
            "----\n{p}\n  cZxid = {:#x}\n  ctime = {}\n  mZxid = {:#x}\n  mtime = {}\n  \
             pZxid = {:#x}\n  cversion = {}\n  dataVersion = {}\n  aclVersion = {}\n  \
             ephemeralOwner = {:#x}\n  dataLength = {}\n  acl = {}",
            stat.czxid,
            stat.ctime,
            stat.mzxid,
            stat.mtime,
            stat.pzxid,
            stat.cversion,
            stat.version,
            stat.aversion,
            node.stat.ephemeral_owner,
            stat.data_length,
            acl(&node.acl)
        );
    }
    let mut sessions: Vec<(i64, i32)> = tree.sessions().iter().map(|(&id, &t)| (id, t)).collect();
    sessions.sort();
    let _ = writeln!(
        out,
        "----\nSession Details (sid, timeout, ephemeralCount): {}",
        sessions.len()
    );
    for (id, timeout) in sessions {
        let _ = writeln!(
            out,
            "{id:#x}, {timeout}, {}",
            tree.ephemerals_of(id).count()
        );
    }
    print!("{out}");
    Ok(())
}

fn acl(list: &[Acl]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|a| format!("{}:{}:{}", a.id.scheme, a.id.id, a.perms))
        .collect();
    format!("[{}]", items.join(","))
}

fn error(code: i32) -> String {
    match ErrorCode::from_i32(code) {
        Some(e) => format!("{e:?}"),
        None => code.to_string(),
    }
}

fn describe(op: &TxnOp) -> String {
    match op {
        TxnOp::CreateSession { timeout } => format!("createSession timeout {timeout}"),
        TxnOp::CloseSession { ephemerals } => format!("closeSession deletes {ephemerals:?}"),
        TxnOp::Create(c) => {
            let kind = match c.kind {
                CreateKind::Plain { ephemeral: true } => "ephemeral".to_owned(),
                CreateKind::Plain { ephemeral: false } => "persistent".to_owned(),
                CreateKind::Container => "container".to_owned(),
                CreateKind::Ttl(ttl) => format!("ttl {ttl} ms"),
            };
            format!(
                "create {} {kind} data {} bytes acl {} parentCversion {}",
                c.path,
                c.data.as_ref().map_or(0, Vec::len),
                acl(&c.acl),
                c.parent_cversion
            )
        }
        TxnOp::Delete { path } => format!("delete {path}"),
        TxnOp::SetData {
            path,
            data,
            version,
        } => format!(
            "setData {path} version {version} data {} bytes",
            data.as_ref().map_or(0, Vec::len)
        ),
        TxnOp::SetAcl {
            path,
            acl: list,
            version,
        } => format!("setACL {path} aversion {version} acl {}", acl(list)),
        TxnOp::Check { path } => format!("check {path}"),
        TxnOp::Multi(ops) => {
            let parts: Vec<String> = ops.iter().map(describe).collect();
            format!("multi [{}]", parts.join("; "))
        }
        TxnOp::Error(code) => format!("error {}", error(*code)),
        TxnOp::MultiError(codes) => {
            let parts: Vec<String> = codes.iter().map(|&c| error(c)).collect();
            format!("failed multi [{}]", parts.join(", "))
        }
    }
}
