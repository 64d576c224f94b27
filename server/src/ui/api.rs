//! The UI's JSON calls, each made on the browser's ZooKeeper session:
//! reads (`session`, `children` paged, `node` with data, Stat and ACL,
//! `search` by path prefix) and, with POST, writes (`set` at a version,
//! `create`, `delete` and recursive delete, `acl`) and `auth`. Zxids and
//! session ids travel as hex strings (JavaScript's numbers hold 53 bits),
//! data as base64.
//!
//! A POST must carry the browser's CSRF token in `X-Zoocore-Csrf` (a page
//! of another site cannot read it) and, when the browser sends one, an
//! `Origin` of this server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Value};
use zoocore_net::client::Reply;
use zoocore_net::consts::perms;
use zoocore_net::records::{
    CreateRequest, CreateTtlRequest, DeleteRequest, PathRequest, PathWatchRequest, SetAclRequest,
    SetDataRequest, Stat,
};
use zoocore_net::{Acl, CreateMode, ErrorCode, Request, Response as ZkResponse};

use super::http::{Request as HttpRequest, Response};
use super::{Browser, Ui};

/// Children shown per page at most, and by default.
const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: usize = 100;
/// Paths a search returns at most.
const MAX_MATCHES: usize = 50;
/// Children names kept in listings across all browsers; a listing beyond
/// what is left serves its request and is not kept.
pub const MAX_KEPT_NAMES: usize = 4_000_000;
/// `addauth`s a browser may make, and the longest.
const MAX_AUTHS: usize = 8;
const MAX_AUTH_BYTES: usize = 1024;
/// Nodes a recursive delete removes at most (zkCli's deleteall has no
/// limit; a UI click should not remove millions).
const MAX_RECURSIVE_DELETE: usize = 10_000;

/// One node's children, sorted, as of the Stat that listed them.
pub struct Listing {
    path: String,
    cversion: i32,
    pzxid: i64,
    aversion: i32,
    children: Vec<String>,
    /// The count of kept names this listing adds to, given back on drop;
    /// `None` when it was not kept (over the budget).
    kept: Option<Arc<AtomicUsize>>,
}

impl Drop for Listing {
    fn drop(&mut self) {
        if let Some(kept) = &self.kept {
            kept.fetch_sub(self.children.len(), Ordering::AcqRel);
        }
    }
}

/// Drops a listing that was over the budget once its request is served.
fn forget_unkept(browser: &mut Browser) {
    if browser.listing.as_ref().is_some_and(|l| l.kept.is_none()) {
        browser.listing = None;
    }
}

pub(super) fn handle(
    ui: &Ui,
    browser: &mut Browser,
    call: &str,
    request: &HttpRequest,
) -> Response {
    let result = match (request.method.as_str(), call) {
        ("GET", "session") => Ok(session(ui, browser)),
        ("GET", "children") => {
            let page = children(ui, browser, request);
            forget_unkept(browser);
            page
        }
        ("GET", "node") => node(ui, browser, request),
        ("GET", "search") => {
            let found = search(ui, browser, request);
            forget_unkept(browser);
            found
        }
        (_, "session" | "children" | "node" | "search") => {
            Err(Response::error("405 Method Not Allowed", "GET only"))
        }
        ("POST", "set" | "create" | "delete" | "acl" | "auth") => {
            mutate(ui, browser, call, request)
        }
        (_, "set" | "create" | "delete" | "acl" | "auth") => {
            Err(Response::error("405 Method Not Allowed", "POST only"))
        }
        _ => Err(Response::error("404 Not Found", "no such call")),
    };
    result.unwrap_or_else(|refusal| refusal)
}

fn session(ui: &Ui, browser: &Browser) -> Response {
    let identities: Vec<Value> = browser
        .auths
        .iter()
        .map(|(scheme, auth)| {
            // A digest auth is user:password; only the user is shown.
            let text = String::from_utf8_lossy(auth);
            let who = text.split(':').next().unwrap_or_default();
            json!({ "scheme": scheme, "id": who })
        })
        .collect();
    Response::json(&json!({
        "csrf": browser.csrf,
        "readOnly": ui.read_only,
        "identities": identities,
    }))
}

/// A node path from the query: absolute, no trailing slash but the root's.
fn path_param(request: &HttpRequest) -> Result<String, Response> {
    let path = request.param("path").unwrap_or("/");
    if !path.starts_with('/') || (path.len() > 1 && path.ends_with('/')) || path.contains("//") {
        return Err(Response::error("400 Bad Request", "not a znode path"));
    }
    Ok(path.to_owned())
}

fn number_param(request: &HttpRequest, name: &str, default: usize) -> Result<usize, Response> {
    request
        .param(name)
        .map_or(Ok(default), str::parse)
        .map_err(|_| Response::error("400 Bad Request", &format!("{name} is not a number")))
}

fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn error_name(code: i32) -> String {
    ErrorCode::from_i32(code).map_or_else(|| format!("error {code}"), |c| format!("{c:?}"))
}

/// A ZooKeeper error as the UI shows it: 404 for NoNode, 403 for NoAuth,
/// 409 for the others, with ZooKeeper's name for the code.
fn zk_error(code: i32) -> Response {
    let status = match ErrorCode::from_i32(code) {
        Some(ErrorCode::NoNode) => "404 Not Found",
        Some(ErrorCode::NoAuth) => "403 Forbidden",
        _ => "409 Conflict",
    };
    Response::new(
        status,
        "application/json",
        json!({ "error": error_name(code), "code": code }).to_string(),
    )
}

fn unavailable(e: String) -> Response {
    Response::error("503 Service Unavailable", &e)
}

/// A path request without a watch.
fn unwatched(path: &str) -> PathWatchRequest {
    PathWatchRequest {
        path: path.to_owned(),
        watch: false,
    }
}

/// A read on the browser's session (tried again on a new session if the
/// connection was lost).
fn read(ui: &Ui, browser: &mut Browser, request: &Request) -> Result<Reply, Response> {
    browser.call(ui, request, true).map_err(unavailable)
}

fn exists(ui: &Ui, browser: &mut Browser, path: &str) -> Result<Stat, Response> {
    let reply = read(ui, browser, &Request::Exists(unwatched(path)))?;
    match reply.body {
        ZkResponse::Stat(stat) if reply.header.err == 0 => Ok(stat),
        _ => Err(zk_error(if reply.header.err == 0 {
            ErrorCode::NoNode.code()
        } else {
            reply.header.err
        })),
    }
}

/// Makes `browser.listing` the sorted children of `path` as they are now:
/// kept while the node's cversion, pzxid and aversion hold (an ACL change
/// lists again, so a lost READ permission shows), fetched otherwise.
fn list(ui: &Ui, browser: &mut Browser, path: &str) -> Result<(), Response> {
    let stat = exists(ui, browser, path)?;
    let fresh = browser.listing.as_ref().is_some_and(|l| {
        l.path == path
            && l.cversion == stat.cversion
            && l.pzxid == stat.pzxid
            && l.aversion == stat.aversion
    });
    if fresh {
        return Ok(());
    }
    let reply = read(ui, browser, &Request::GetChildren2(unwatched(path)))?;
    let ZkResponse::Children2(listed) = reply.body else {
        return Err(zk_error(reply.header.err));
    };
    let mut children = listed.children;
    children.sort_unstable();
    browser.listing = None;
    let count = children.len();
    let kept = (ui.kept_names.fetch_add(count, Ordering::AcqRel) + count <= MAX_KEPT_NAMES)
        .then(|| ui.kept_names.clone());
    if kept.is_none() {
        ui.kept_names.fetch_sub(count, Ordering::AcqRel);
    }
    browser.listing = Some(Listing {
        path: path.to_owned(),
        cversion: listed.stat.cversion,
        pzxid: listed.stat.pzxid,
        aversion: listed.stat.aversion,
        children,
        kept,
    });
    Ok(())
}

fn children(ui: &Ui, browser: &mut Browser, request: &HttpRequest) -> Result<Response, Response> {
    let path = path_param(request)?;
    let offset = number_param(request, "offset", 0)?;
    let limit = number_param(request, "limit", DEFAULT_PAGE)?.clamp(1, MAX_PAGE);
    list(ui, browser, &path)?;
    let Some(listing) = browser.listing.as_ref() else {
        return Err(Response::error("500 Internal Server Error", "no listing"));
    };
    let total = listing.children.len();
    let page: Vec<String> = listing
        .children
        .iter()
        .skip(offset)
        .take(limit)
        .cloned()
        .collect();
    let requests: Vec<Request> = page
        .iter()
        .map(|name| Request::Exists(unwatched(&child_path(&path, name))))
        .collect();
    let replies = browser.pipeline(ui, &requests).map_err(unavailable)?;
    let children: Vec<Value> = page
        .iter()
        .zip(replies)
        .map(|(name, reply)| match reply.body {
            ZkResponse::Stat(stat) if reply.header.err == 0 => json!({
                "name": name,
                "numChildren": stat.num_children,
                "ephemeral": stat.ephemeral_owner != 0,
            }),
            // Deleted between the listing and its Stat.
            _ => json!({ "name": name, "numChildren": 0, "gone": true }),
        })
        .collect();
    Ok(Response::json(&json!({
        "path": path,
        "total": total,
        "offset": offset,
        "children": children,
    })))
}

fn hex(v: i64) -> String {
    format!("{v:#x}")
}

fn stat_json(stat: &Stat) -> Value {
    json!({
        "czxid": hex(stat.czxid),
        "mzxid": hex(stat.mzxid),
        "pzxid": hex(stat.pzxid),
        "ctime": stat.ctime,
        "mtime": stat.mtime,
        "version": stat.version,
        "cversion": stat.cversion,
        "aversion": stat.aversion,
        "ephemeralOwner": hex(stat.ephemeral_owner),
        "dataLength": stat.data_length,
        "numChildren": stat.num_children,
    })
}

/// `cdrwa` as zkCli writes permissions.
fn perms_text(p: i32) -> String {
    [
        (perms::CREATE, 'c'),
        (perms::DELETE, 'd'),
        (perms::READ, 'r'),
        (perms::WRITE, 'w'),
        (perms::ADMIN, 'a'),
    ]
    .iter()
    .filter(|(bit, _)| p & bit != 0)
    .map(|(_, c)| *c)
    .collect()
}

fn acl_json(acl: &[Acl]) -> Value {
    acl.iter()
        .map(|a| json!({ "scheme": a.id.scheme, "id": a.id.id, "perms": perms_text(a.perms) }))
        .collect()
}

fn node(ui: &Ui, browser: &mut Browser, request: &HttpRequest) -> Result<Response, Response> {
    let path = path_param(request)?;
    let replies = browser
        .pipeline(
            ui,
            &[
                Request::GetData(unwatched(&path)),
                Request::GetAcl(PathRequest { path: path.clone() }),
                Request::Exists(unwatched(&path)),
            ],
        )
        .map_err(unavailable)?;
    let [data, acl, stat] = <[_; 3]>::try_from(replies)
        .map_err(|_| Response::error("500 Internal Server Error", "missing replies"))?;
    let ZkResponse::Stat(stat) = stat.body else {
        return Err(zk_error(stat.header.err));
    };
    let mut out = json!({ "path": path, "stat": stat_json(&stat) });
    match data.body {
        ZkResponse::GetData(d) if data.header.err == 0 => {
            let bytes = d.data.unwrap_or_default();
            out["data"] = json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
            out["stat"] = stat_json(&d.stat);
        }
        _ => out["dataError"] = json!(error_name(data.header.err)),
    }
    match acl.body {
        ZkResponse::GetAcl(a) if acl.header.err == 0 => out["acl"] = acl_json(&a.acl),
        _ => out["aclError"] = json!(error_name(acl.header.err)),
    }
    Ok(Response::json(&out))
}

fn search(ui: &Ui, browser: &mut Browser, request: &HttpRequest) -> Result<Response, Response> {
    let prefix = request.param("prefix").unwrap_or("/");
    if !prefix.starts_with('/') {
        return Err(Response::error("400 Bad Request", "a prefix starts with /"));
    }
    let (parent, stem) = match prefix.rsplit_once('/') {
        Some(("", stem)) => ("/", stem),
        Some((parent, stem)) => (parent, stem),
        None => ("/", prefix),
    };
    list(ui, browser, parent)?;
    let Some(listing) = browser.listing.as_ref() else {
        return Err(Response::error("500 Internal Server Error", "no listing"));
    };
    // The names starting with `stem` are a run of the sorted listing.
    let names = &listing.children;
    let first = names.partition_point(|n| n.as_str() < stem);
    let found = names[first..].iter().take_while(|n| n.starts_with(stem));
    let total = found.clone().count();
    let matches: Vec<String> = found
        .take(MAX_MATCHES)
        .map(|n| child_path(parent, n))
        .collect();
    Ok(Response::json(
        &json!({ "prefix": prefix, "total": total, "matches": matches }),
    ))
}

/// Checks a POST's CSRF token and origin, then makes the change.
fn mutate(
    ui: &Ui,
    browser: &mut Browser,
    call: &str,
    request: &HttpRequest,
) -> Result<Response, Response> {
    if request.header("x-zoocore-csrf") != Some(browser.csrf.as_str()) {
        return Err(Response::error(
            "403 Forbidden",
            "missing or wrong CSRF token",
        ));
    }
    if let (Some(origin), Some(host)) = (request.header("origin"), request.header("host")) {
        let own = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if own != Some(host) {
            return Err(Response::error(
                "403 Forbidden",
                "request from another origin",
            ));
        }
    }
    let body: Value = serde_json::from_slice(&request.body)
        .map_err(|e| Response::error("400 Bad Request", &format!("body is not JSON: {e}")))?;
    if call == "auth" {
        return auth(ui, browser, &body);
    }
    if ui.read_only {
        return Err(Response::error(
            "403 Forbidden",
            "this UI is read-only (admin.ui.readOnly)",
        ));
    }
    let path = body["path"]
        .as_str()
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| Response::error("400 Bad Request", "path missing"))?
        .to_owned();
    let version = body["version"].as_i64().unwrap_or(-1) as i32;
    match call {
        "set" => set(ui, browser, path, &body, version),
        "create" => create(ui, browser, path, &body),
        "delete" if body["recursive"].as_bool() == Some(true) => delete_tree(ui, browser, path),
        "delete" => {
            let request = Request::Delete(DeleteRequest { path, version });
            write(ui, browser, &request).map(|_| Response::json(&json!({ "ok": true })))
        }
        _ => set_acl(ui, browser, path, &body, version),
    }
}

/// Sends a write on the browser's session. A ping goes first, retried on a
/// new session, so a session that expired while the page sat idle is
/// replaced; the write itself is not retried (it may have been made).
fn send_write(ui: &Ui, browser: &mut Browser, request: &Request) -> Result<Reply, Response> {
    read(ui, browser, &Request::Ping)?;
    browser.call(ui, request, false).map_err(unavailable)
}

fn write(ui: &Ui, browser: &mut Browser, request: &Request) -> Result<ZkResponse, Response> {
    let reply = send_write(ui, browser, request)?;
    if reply.header.err != 0 {
        return Err(zk_error(reply.header.err));
    }
    Ok(reply.body)
}

fn data_field(body: &Value) -> Result<Vec<u8>, Response> {
    match body["data"].as_str() {
        None => Ok(Vec::new()),
        Some(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| Response::error("400 Bad Request", "data is not base64")),
    }
}

/// setData at the version the browser read; BadVersion comes back with the
/// node as it is now, so the page can show the newer data.
fn set(
    ui: &Ui,
    browser: &mut Browser,
    path: String,
    body: &Value,
    version: i32,
) -> Result<Response, Response> {
    let request = Request::SetData(SetDataRequest {
        path: path.clone(),
        data: Some(data_field(body)?),
        version,
    });
    let reply = send_write(ui, browser, &request)?;
    match reply.body {
        ZkResponse::Stat(stat) if reply.header.err == 0 => {
            Ok(Response::json(&json!({ "stat": stat_json(&stat) })))
        }
        _ if reply.header.err == ErrorCode::BadVersion.code() => {
            let current = read(ui, browser, &Request::GetData(unwatched(&path)))?;
            let mut conflict = json!({ "error": "BadVersion", "code": reply.header.err });
            if let ZkResponse::GetData(d) = current.body {
                conflict["data"] =
                    json!(base64::engine::general_purpose::STANDARD
                        .encode(d.data.unwrap_or_default()));
                conflict["stat"] = stat_json(&d.stat);
            }
            Ok(Response::new(
                "409 Conflict",
                "application/json",
                conflict.to_string(),
            ))
        }
        _ => Err(zk_error(reply.header.err)),
    }
}

fn create(
    ui: &Ui,
    browser: &mut Browser,
    path: String,
    body: &Value,
) -> Result<Response, Response> {
    let mode = match body["mode"].as_str().unwrap_or("persistent") {
        "persistent" => CreateMode::Persistent,
        "persistent_sequential" => CreateMode::PersistentSequential,
        "ephemeral" => CreateMode::Ephemeral,
        "ephemeral_sequential" => CreateMode::EphemeralSequential,
        "container" => CreateMode::Container,
        "ttl" => CreateMode::PersistentWithTtl,
        "ttl_sequential" => CreateMode::PersistentSequentialWithTtl,
        other => {
            return Err(Response::error(
                "400 Bad Request",
                &format!("unknown mode {other}"),
            ))
        }
    };
    let data = Some(data_field(body)?);
    // zkCli's default ACL for a new node: anyone may do anything.
    let acl = vec![Acl::new(perms::ALL, "world", "anyone")];
    let flags = mode as i32;
    let request = match mode {
        CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl => {
            let ttl = body["ttl"].as_i64().filter(|t| *t > 0).ok_or_else(|| {
                Response::error("400 Bad Request", "a TTL node needs ttl > 0 (ms)")
            })?;
            Request::CreateTtl(CreateTtlRequest {
                path,
                data,
                acl,
                flags,
                ttl,
            })
        }
        CreateMode::Container => Request::CreateContainer(CreateRequest {
            path,
            data,
            acl,
            flags,
        }),
        _ => Request::Create2(CreateRequest {
            path,
            data,
            acl,
            flags,
        }),
    };
    match write(ui, browser, &request)? {
        ZkResponse::Create2(created) => Ok(Response::json(
            &json!({ "path": created.path, "stat": stat_json(&created.stat) }),
        )),
        ZkResponse::Create(created) => Ok(Response::json(&json!({ "path": created }))),
        _ => Ok(Response::json(&json!({ "ok": true }))),
    }
}

/// Deletes `path` and everything under it, deepest first, as zkCli's
/// deleteall; refused beyond `MAX_RECURSIVE_DELETE` nodes.
fn delete_tree(ui: &Ui, browser: &mut Browser, path: String) -> Result<Response, Response> {
    if path == "/" || path == "/zookeeper" || path.starts_with("/zookeeper/") {
        return Err(Response::error(
            "400 Bad Request",
            "that tree is ZooKeeper's own",
        ));
    }
    let mut order = Vec::new();
    let mut stack = vec![path];
    while let Some(next) = stack.pop() {
        let reply = read(ui, browser, &Request::GetChildren(unwatched(&next)))?;
        let ZkResponse::Children(names) = reply.body else {
            return Err(zk_error(reply.header.err));
        };
        stack.extend(names.iter().map(|n| child_path(&next, n)));
        order.push(next);
        if order.len() + stack.len() > MAX_RECURSIVE_DELETE {
            return Err(Response::error(
                "413 Payload Too Large",
                &format!("more than {MAX_RECURSIVE_DELETE} nodes; use zoocore cli deleteall"),
            ));
        }
    }
    let deleted = order.len();
    for path in order.into_iter().rev() {
        let reply = browser
            .call(
                ui,
                &Request::Delete(DeleteRequest { path, version: -1 }),
                false,
            )
            .map_err(unavailable)?;
        if reply.header.err != 0 && reply.header.err != ErrorCode::NoNode.code() {
            return Err(zk_error(reply.header.err));
        }
    }
    Ok(Response::json(&json!({ "deleted": deleted })))
}

fn set_acl(
    ui: &Ui,
    browser: &mut Browser,
    path: String,
    body: &Value,
    version: i32,
) -> Result<Response, Response> {
    let entries = body["acl"]
        .as_array()
        .ok_or_else(|| Response::error("400 Bad Request", "acl missing"))?;
    let mut acl = Vec::with_capacity(entries.len());
    for entry in entries {
        let text = |k: &str| entry[k].as_str().unwrap_or_default();
        let mut bits = 0;
        for c in text("perms").chars() {
            bits |= match c {
                'c' => perms::CREATE,
                'd' => perms::DELETE,
                'r' => perms::READ,
                'w' => perms::WRITE,
                'a' => perms::ADMIN,
                _ => {
                    return Err(Response::error(
                        "400 Bad Request",
                        "permissions are letters of cdrwa",
                    ))
                }
            };
        }
        acl.push(Acl::new(bits, text("scheme"), text("id")));
    }
    match write(
        ui,
        browser,
        &Request::SetAcl(SetAclRequest { path, acl, version }),
    )? {
        ZkResponse::Stat(stat) => Ok(Response::json(&json!({ "stat": stat_json(&stat) }))),
        _ => Ok(Response::json(&json!({ "ok": true }))),
    }
}

/// `addauth scheme auth` on the browser's session; kept and replayed when
/// the session is opened again. A refused auth ends that ZooKeeper session,
/// as ZooKeeper closes it; the next request opens a new one.
fn auth(ui: &Ui, browser: &mut Browser, body: &Value) -> Result<Response, Response> {
    let scheme = body["scheme"].as_str().unwrap_or("digest").to_owned();
    let auth = body["auth"]
        .as_str()
        .ok_or_else(|| Response::error("400 Bad Request", "auth missing"))?
        .as_bytes()
        .to_vec();
    if auth.len() > MAX_AUTH_BYTES {
        return Err(Response::error("413 Payload Too Large", "auth too long"));
    }
    let known = browser
        .auths
        .iter()
        .any(|(s, a)| *s == scheme && *a == auth);
    if !known && browser.auths.len() >= MAX_AUTHS {
        return Err(Response::error(
            "409 Conflict",
            "too many addauths for one browser",
        ));
    }
    let client = browser.session(ui).map_err(unavailable)?;
    match client.add_auth(&scheme, &auth) {
        Ok(0) => {
            if !known {
                browser.auths.push((scheme, auth));
            }
            Ok(session(ui, browser))
        }
        Ok(code) => {
            browser.client = None;
            Err(zk_error(code))
        }
        Err(e) => {
            browser.client = None;
            Err(unavailable(format!("addauth failed: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_read_as_zkcli_writes_them() {
        assert_eq!(perms_text(perms::ALL), "cdrwa");
        assert_eq!(perms_text(perms::READ | perms::ADMIN), "ra");
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
    }
}
