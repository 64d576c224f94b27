//! Read requests served from a replica (ZooKeeper's `FinalRequestProcessor`
//! read side) and the shaping of write replies from applied txns.

use zoocore_net::consts::perms;
use zoocore_net::records::{
    Create2Response, GetAclResponse, GetChildren2Response, GetDataResponse,
};
use zoocore_net::{Acl, ErrorCode, MultiResult, Request, Response};

use crate::acl::{self, Identity};
use crate::tree::{Applied, DataTree, Node};
use crate::txn::CreateKind;

/// A reply: error code for the header, and the body.
pub type Reply = (i32, Response);

fn error(code: ErrorCode) -> Reply {
    (code.code(), Response::Empty)
}

fn readable<'t>(
    tree: &'t DataTree,
    p: &str,
    who: &Identity,
    perm: i32,
) -> Result<&'t Node, ErrorCode> {
    let node = tree.get(p).ok_or(ErrorCode::NoNode)?;
    if acl::check(&node.acl, perm, who) {
        Ok(node)
    } else {
        Err(ErrorCode::NoAuth)
    }
}

fn data_of(node: &Node) -> Option<Vec<u8>> {
    node.data.as_deref().map(<[u8]>::to_vec)
}

fn children_of(tree: &DataTree, p: &str) -> Vec<String> {
    tree.child_names(p).map(String::from).collect()
}

/// Serves a read request. Requests that are not reads get `MarshallingError`.
pub fn read(tree: &DataTree, session_id: i64, who: &Identity, request: &Request) -> Reply {
    let served = match request {
        Request::Exists(r) => {
            if r.path.contains('\0') {
                Err(ErrorCode::BadArguments)
            } else {
                tree.get(&r.path)
                    .map(|n| Response::Stat(tree.stat_of(n)))
                    .ok_or(ErrorCode::NoNode)
            }
        }
        Request::GetData(r) => readable(tree, &r.path, who, perms::READ).map(|n| {
            Response::GetData(GetDataResponse {
                data: data_of(n),
                stat: tree.stat_of(n),
            })
        }),
        Request::GetChildren(r) => readable(tree, &r.path, who, perms::READ)
            .map(|_| Response::Children(children_of(tree, &r.path))),
        Request::GetChildren2(r) => readable(tree, &r.path, who, perms::READ).map(|n| {
            Response::Children2(GetChildren2Response {
                children: children_of(tree, &r.path),
                stat: tree.stat_of(n),
            })
        }),
        Request::GetAllChildrenNumber(r) => readable(tree, &r.path, who, perms::READ)
            .map(|_| Response::AllChildrenNumber(tree.descendant_count(&r.path) as i32)),
        Request::GetEphemerals(r) => {
            let prefix = r.path.trim();
            let all = prefix.is_empty() || prefix == "/";
            Ok(Response::Ephemerals(
                tree.ephemerals_of(session_id)
                    .filter(|p| all || p.starts_with(&r.path))
                    .map(String::from)
                    .collect(),
            ))
        }
        Request::GetAcl(r) => readable(tree, &r.path, who, perms::READ | perms::ADMIN).map(|n| {
            let admin = acl::check(&n.acl, perms::ADMIN, who);
            Response::GetAcl(GetAclResponse {
                acl: n
                    .acl
                    .iter()
                    .map(|a| if admin { a.clone() } else { mask_digest(a) })
                    .collect(),
                stat: tree.stat_of(n),
            })
        }),
        Request::Sync(r) => Ok(Response::Sync(r.path.clone())),
        Request::WhoAmI => Ok(Response::WhoAmI(who.client_infos())),
        Request::MultiRead(ops) => return multi_read(tree, who, ops),
        _ => Err(ErrorCode::MarshallingError),
    };
    match served {
        Ok(body) => (0, body),
        Err(code) => error(code),
    }
}

/// Without ADMIN, digest ids are shown as `user:x`.
fn mask_digest(a: &Acl) -> Acl {
    if a.id.scheme != "digest" {
        return a.clone();
    }
    let user = a.id.id.split(':').next().unwrap_or_default();
    Acl::new(a.perms, "digest", &format!("{user}:x"))
}

fn multi_read(tree: &DataTree, who: &Identity, ops: &[Request]) -> Reply {
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        let result = match op {
            Request::GetChildren(r) => readable(tree, &r.path, who, perms::READ)
                .map(|_| MultiResult::GetChildren(children_of(tree, &r.path))),
            Request::GetData(r) => readable(tree, &r.path, who, perms::READ).map(|n| {
                MultiResult::GetData(GetDataResponse {
                    data: data_of(n),
                    stat: tree.stat_of(n),
                })
            }),
            // A write inside multiRead: ZooKeeper stops and sends what it has.
            _ => return (ErrorCode::MarshallingError.code(), Response::Multi(results)),
        };
        results.push(result.unwrap_or_else(|e| MultiResult::Error(e.code())));
    }
    (0, Response::Multi(results))
}

/// The reply to a write, from the request and what applying its txn did.
pub fn write_reply(request: &Request, applied: &Applied) -> Reply {
    match applied {
        Applied::Error(code) => (*code, Response::Empty),
        Applied::MultiError(codes) => (
            0,
            Response::Multi(codes.iter().map(|&c| MultiResult::Error(c)).collect()),
        ),
        Applied::Created { path, stat, .. } => match request {
            Request::Create(_) => (0, Response::Create(path.clone())),
            _ => (
                0,
                Response::Create2(Create2Response {
                    path: path.clone(),
                    stat: *stat,
                }),
            ),
        },
        Applied::DataSet { stat, .. } | Applied::AclSet { stat } => (0, Response::Stat(*stat)),
        Applied::Multi(ops) => (0, Response::Multi(ops.iter().map(multi_result).collect())),
        Applied::Deleted(_)
        | Applied::Checked
        | Applied::SessionCreated
        | Applied::SessionClosed { .. } => (0, Response::Empty),
    }
}

fn multi_result(applied: &Applied) -> MultiResult {
    match applied {
        Applied::Created {
            path,
            kind: CreateKind::Plain { .. },
            ..
        } => MultiResult::Create(path.clone()),
        Applied::Created { path, stat, .. } => MultiResult::Create2(Create2Response {
            path: path.clone(),
            stat: *stat,
        }),
        Applied::Deleted(_) => MultiResult::Delete,
        Applied::DataSet { stat, .. } => MultiResult::SetData(*stat),
        Applied::Checked => MultiResult::Check,
        other => unreachable!("op {other:?} cannot appear inside a multi"),
    }
}
