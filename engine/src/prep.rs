//! Validation: turns a write request into a [`TxnOp`] or an error, with
//! ZooKeeper's checks in ZooKeeper's order (`PrepRequestProcessor`).
//!
//! Ops of a multi see the effects of the ops before them through a small
//! overlay of pending records, as ZooKeeper's change records do; nothing
//! touches the tree until the txn is applied.

use std::collections::HashMap;

use zoocore_net::consts::perms;
use zoocore_net::records::{CreateRequest, CreateTtlRequest};
use zoocore_net::{Acl, CreateMode, ErrorCode, Request};

use crate::acl::{self, Identity};
use crate::ephemeral::{self, kind_of, EphemeralKind, CONTAINER_OWNER};
use crate::path;
use crate::tree::{is_special_path, AclList, DataTree, StatPersisted};
use crate::txn::{CreateKind, CreateTxn, TxnOp};

/// Who is asking, and the zxid and time the sequencer gave the request.
pub struct PrepContext<'a> {
    pub session_id: i64,
    pub identity: &'a Identity,
    pub zxid: i64,
    pub time: i64,
}

/// Validates a write request. Every outcome is a txn: failures become
/// [`TxnOp::Error`] (or [`TxnOp::MultiError`]) and still take their zxid.
pub fn prepare(tree: &DataTree, ctx: &PrepContext<'_>, request: &Request) -> TxnOp {
    let mut pending = Pending {
        tree,
        changes: HashMap::new(),
    };
    let result = match request {
        Request::Multi(ops) => return prepare_multi(&mut pending, ctx, ops),
        Request::CloseSession => Ok(TxnOp::CloseSession {
            ephemerals: tree
                .ephemerals_of(ctx.session_id)
                .map(String::from)
                .collect(),
        }),
        // ZooKeeper reads a client's deleteContainer path from the whole packet,
        // header included, so it always holds a NUL: BadArguments.
        Request::DeleteContainer(_) => Err(ErrorCode::BadArguments),
        Request::Reconfig(_) => Err(ErrorCode::ReconfigDisabled),
        other => pending.prep_op(ctx, other),
    };
    result.unwrap_or_else(|e| TxnOp::Error(e.code()))
}

/// Validates the deletion of an expired container or TTL node, as ZooKeeper's
/// container manager submits it (no session, ACL or version check).
pub fn prepare_expiry_delete(tree: &DataTree, zxid: i64, node_path: &str) -> TxnOp {
    let mut pending = Pending {
        tree,
        changes: HashMap::new(),
    };
    pending
        .delete_container(zxid, node_path)
        .unwrap_or_else(|e| TxnOp::Error(e.code()))
}

fn prepare_multi(pending: &mut Pending<'_>, ctx: &PrepContext<'_>, ops: &[Request]) -> TxnOp {
    // Read ops make ZooKeeper fail the whole multi while decoding it.
    if ops
        .iter()
        .any(|op| matches!(op, Request::GetData(_) | Request::GetChildren(_)))
    {
        return TxnOp::Error(ErrorCode::MarshallingError.code());
    }
    let mut txns = Vec::with_capacity(ops.len());
    let mut codes: Option<Vec<i32>> = None;
    for op in ops {
        if let Some(codes) = codes.as_mut() {
            codes.push(ErrorCode::RuntimeInconsistency.code());
            continue;
        }
        let resolved = match resolve_multi_op(op) {
            Some(resolved) => resolved,
            None => return TxnOp::Error(ErrorCode::MarshallingError.code()),
        };
        match pending.prep_op(ctx, &resolved) {
            Ok(txn) => txns.push(txn),
            Err(e) => {
                let mut failed = vec![ErrorCode::Ok.code(); txns.len()];
                failed.push(e.code());
                codes = Some(failed);
            }
        }
    }
    match codes {
        Some(codes) => TxnOp::MultiError(codes),
        None => TxnOp::Multi(txns),
    }
}

/// Inside a multi ZooKeeper re-derives a create's opcode from its flags.
/// `None` where ZooKeeper fails the whole multi (TTL flags on a plain create record).
fn resolve_multi_op(op: &Request) -> Option<Request> {
    let flags_mode = |flags: i32| CreateMode::from_i32(flags).unwrap_or(CreateMode::Persistent);
    Some(match op {
        Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => {
            let mode = flags_mode(r.flags);
            if mode.is_ttl() {
                return None;
            }
            if mode.is_container() {
                Request::CreateContainer(r.clone())
            } else {
                Request::Create(r.clone())
            }
        }
        Request::CreateTtl(r) => {
            let mode = flags_mode(r.flags);
            if mode.is_ttl() {
                op.clone()
            } else {
                let plain = CreateRequest {
                    path: r.path.clone(),
                    data: r.data.clone(),
                    acl: r.acl.clone(),
                    flags: r.flags,
                };
                if mode.is_container() {
                    Request::CreateContainer(plain)
                } else {
                    Request::Create(plain)
                }
            }
        }
        other => other.clone(),
    })
}

/// What validation knows of a node: ZooKeeper's ChangeRecord.
#[derive(Clone)]
struct Record {
    stat: StatPersisted,
    child_count: i32,
    acl: AclList,
}

struct Pending<'t> {
    tree: &'t DataTree,
    /// Path -> state after earlier ops of this request; `None` = deleted.
    changes: HashMap<String, Option<Record>>,
}

impl Pending<'_> {
    fn get(&self, p: &str) -> Result<Record, ErrorCode> {
        let key = if p.is_empty() { "/" } else { p };
        match self.changes.get(key) {
            Some(change) => change.clone(),
            None => self.tree.get(key).map(|n| Record {
                stat: n.stat,
                child_count: n.child_count() as i32,
                acl: n.acl.clone(),
            }),
        }
        .ok_or(ErrorCode::NoNode)
    }

    fn set(&mut self, p: &str, record: Option<Record>) {
        let key = if p.is_empty() { "/" } else { p };
        self.changes.insert(key.to_owned(), record);
    }

    fn prep_op(&mut self, ctx: &PrepContext<'_>, request: &Request) -> Result<TxnOp, ErrorCode> {
        match request {
            Request::Create(r) | Request::Create2(r) => self.create(ctx, r, None, false),
            Request::CreateContainer(r) => self.create(ctx, r, None, true),
            Request::CreateTtl(r) => {
                let plain = CreateRequest {
                    path: r.path.clone(),
                    data: r.data.clone(),
                    acl: r.acl.clone(),
                    flags: r.flags,
                };
                self.create(ctx, &plain, Some(r), false)
            }
            Request::Delete(r) => self.delete(ctx, &r.path, r.version),
            Request::SetData(r) => {
                validate_path(&r.path)?;
                let mut node = self.get(&r.path)?;
                require(&node.acl, perms::WRITE, ctx.identity)?;
                let version = next_version(node.stat.version, r.version)?;
                node.stat.version = version;
                node.stat.mtime = ctx.time;
                node.stat.mzxid = ctx.zxid;
                self.set(&r.path, Some(node));
                Ok(TxnOp::SetData {
                    path: r.path.clone(),
                    data: r.data.clone(),
                    version,
                })
            }
            Request::SetAcl(r) => {
                validate_path(&r.path)?;
                let acl = acl::fixup(&r.acl, ctx.identity)?;
                let mut node = self.get(&r.path)?;
                require(&node.acl, perms::ADMIN, ctx.identity)?;
                let version = next_version(node.stat.aversion, r.version)?;
                node.stat.aversion = version;
                node.acl = acl.clone().into();
                self.set(&r.path, Some(node));
                Ok(TxnOp::SetAcl {
                    path: r.path.clone(),
                    acl,
                    version,
                })
            }
            Request::Check(r) => {
                validate_path(&r.path)?;
                let node = self.get(&r.path)?;
                require(&node.acl, perms::READ, ctx.identity)?;
                next_version(node.stat.version, r.version)?;
                Ok(TxnOp::Check {
                    path: r.path.clone(),
                })
            }
            // Not a write: the caller routes reads elsewhere. Treat like ZooKeeper's
            // failure to serialise a txn-less request.
            _ => Err(ErrorCode::MarshallingError),
        }
    }

    fn create(
        &mut self,
        ctx: &PrepContext<'_>,
        r: &CreateRequest,
        ttl_request: Option<&CreateTtlRequest>,
        container_op: bool,
    ) -> Result<TxnOp, ErrorCode> {
        let mode = CreateMode::from_i32(r.flags).ok_or(ErrorCode::BadArguments)?;
        let ttl = ttl_request.map_or(-1, |t| t.ttl);
        if mode.is_ttl() && !self.tree.extended_types() {
            return Err(ErrorCode::Unimplemented);
        }
        let ttl_owner = if mode.is_ttl() {
            Some(ephemeral::ttl_owner(ttl).ok_or(ErrorCode::BadArguments)?)
        } else if ttl >= 0 {
            return Err(ErrorCode::BadArguments);
        } else {
            None
        };
        let parent_path = match path::split(&r.path) {
            Some((parent, _)) if !r.path.contains('\0') => parent,
            _ => return Err(ErrorCode::BadArguments),
        };
        let acl = acl::fixup(&r.acl, ctx.identity)?;
        let mut parent = self.get(parent_path)?;
        require(&parent.acl, perms::CREATE, ctx.identity)?;
        let node_path = if mode.is_sequential() {
            format!("{}{:010}", r.path, parent.stat.cversion)
        } else {
            r.path.clone()
        };
        validate_path(&node_path)?;
        if self.get(&node_path).is_ok() {
            return Err(ErrorCode::NodeExists);
        }
        if kind_of(parent.stat.ephemeral_owner, self.tree.extended_types()) == EphemeralKind::Normal
        {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let parent_cversion = parent.stat.cversion.wrapping_add(1);
        // The txn kind follows the opcode, as ZooKeeper logs it.
        let kind = if container_op {
            CreateKind::Container
        } else if let Some(t) = ttl_request {
            if !mode.is_ttl() {
                // ZooKeeper logs a TTL txn with a negative TTL here and then fails
                // to apply it; refuse instead.
                return Err(ErrorCode::BadArguments);
            }
            CreateKind::Ttl(t.ttl)
        } else {
            CreateKind::Plain {
                ephemeral: mode.is_ephemeral(),
            }
        };
        // The pending record's owner follows the flags (ZooKeeper's ChangeRecord).
        let owner = if mode.is_container() {
            CONTAINER_OWNER
        } else if let Some(owner) = ttl_owner {
            owner
        } else if mode.is_ephemeral() {
            ctx.session_id
        } else {
            0
        };
        parent.child_count += 1;
        parent.stat.cversion = parent_cversion;
        parent.stat.pzxid = ctx.zxid;
        self.set(parent_path, Some(parent));
        self.set(
            &node_path,
            Some(Record {
                stat: StatPersisted {
                    czxid: ctx.zxid,
                    mzxid: ctx.zxid,
                    ctime: ctx.time,
                    mtime: ctx.time,
                    ephemeral_owner: owner,
                    pzxid: ctx.zxid,
                    ..Default::default()
                },
                child_count: 0,
                acl: acl.clone().into(),
            }),
        );
        Ok(TxnOp::Create(CreateTxn {
            path: node_path,
            data: r.data.clone(),
            acl,
            kind,
            parent_cversion,
        }))
    }

    fn delete(&mut self, ctx: &PrepContext<'_>, p: &str, version: i32) -> Result<TxnOp, ErrorCode> {
        let parent_path = deletable_parent(p)?;
        let parent = self.get(parent_path)?;
        require(&parent.acl, perms::DELETE, ctx.identity)?;
        let node = self.get(p)?;
        next_version(node.stat.version, version)?;
        if node.child_count > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        self.record_delete(ctx.zxid, parent_path, parent, p);
        Ok(TxnOp::Delete { path: p.to_owned() })
    }

    fn delete_container(&mut self, zxid: i64, p: &str) -> Result<TxnOp, ErrorCode> {
        let parent_path = deletable_parent(p)?;
        let node = self.get(p)?;
        if node.child_count > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        if kind_of(node.stat.ephemeral_owner, self.tree.extended_types()) == EphemeralKind::Normal {
            return Err(ErrorCode::BadVersion);
        }
        let parent = self.get(parent_path)?;
        self.record_delete(zxid, parent_path, parent, p);
        Ok(TxnOp::Delete { path: p.to_owned() })
    }

    fn record_delete(&mut self, zxid: i64, parent_path: &str, mut parent: Record, p: &str) {
        parent.child_count -= 1;
        parent.stat.pzxid = zxid;
        self.set(parent_path, Some(parent));
        self.set(p, None);
    }
}

fn deletable_parent(p: &str) -> Result<&str, ErrorCode> {
    match path::split(p) {
        Some((parent, _)) if !p.contains('\0') && !is_special_path(p) => Ok(parent),
        _ => Err(ErrorCode::BadArguments),
    }
}

fn validate_path(p: &str) -> Result<(), ErrorCode> {
    if path::is_valid(p) {
        Ok(())
    } else {
        Err(ErrorCode::BadArguments)
    }
}

fn require(node_acl: &[Acl], perm: i32, who: &Identity) -> Result<(), ErrorCode> {
    if acl::check(node_acl, perm, who) {
        Ok(())
    } else {
        Err(ErrorCode::NoAuth)
    }
}

/// ZooKeeper's `checkAndIncVersion`: -1 matches any version.
fn next_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(current.wrapping_add(1))
}
