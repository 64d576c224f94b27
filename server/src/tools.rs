//! Operator tools run instead of the server (`zoocore log dump`).

use std::fmt::Write as _;
use std::path::Path;

use zoocore_engine::log;
use zoocore_engine::txn::{CreateKind, TxnOp};
use zoocore_net::{Acl, ErrorCode};

use crate::wal::log_path;

/// Prints every txn of the log in `dir`, one line each, like ZooKeeper's
/// LogFormatter, then where the log ends and whether its tail is torn.
pub fn dump_log(dir: &Path) -> Result<(), String> {
    let path = log_path(dir);
    let image = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let scan = log::scan(&image);
    let mut out = String::new();
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
    let _ = writeln!(
        out,
        "{} txns; log data ends at byte {}",
        scan.txns.len(),
        scan.valid_len
    );
    if let Some(at) = scan.torn_at {
        let _ = writeln!(
            out,
            "torn or corrupt record at byte {at}: the server cuts the log there"
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
