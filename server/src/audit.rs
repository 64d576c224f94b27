//! ZooKeeper's audit log (`audit.enable=true`): one line per write a client
//! of this server made, per ephemeral a closed or expired session lost, per
//! server start and stop, in the format ZooKeeper's `Slf4jAuditLogger`
//! writes through its default log4j layout:
//!
//! ```text
//! 2026-12-06 20:55:33,413 INFO audit.Slf4jAuditLogger: session=0x1000..\tuser=bob,127.0.0.1\tip=127.0.0.1\toperation=create\tznode=/a\tznode_type=persistent\tresult=success
//! ```
//!
//! zoocore also records authentication (`operation=addAuth` with
//! `scheme=`, which ZooKeeper 3.8 does not audit). Lines go to their own
//! file (`zoocore.auditLogFile`, by default `zookeeper_audit.log` in
//! dataDir) through a bounded queue to a thread of their own, off the
//! serving path: a full queue drops lines and counts them rather than
//! slowing clients down.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zoocore_engine::acl::Identity;
use zoocore_net::consts::{perms, CreateMode};
use zoocore_net::{Acl, Request};

/// Lines that may wait for the writer; beyond it they are dropped.
const QUEUE: usize = 64 * 1024;
/// How long a stopping server waits for its last lines to be written.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// Asked for, not yet done (serverStop).
    Invoked,
}

/// One line's fields, in ZooKeeper's order; `None` fields are left out.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    pub session: Option<i64>,
    pub user: String,
    pub ip: Option<String>,
    pub operation: &'static str,
    pub znode: Option<String>,
    pub znode_type: Option<&'static str>,
    pub acl: Option<String>,
    pub scheme: Option<String>,
    pub outcome: Option<Outcome>,
}

enum Message {
    Line(SystemTime, AuditEvent),
    /// Write what came before, then say so.
    Close(SyncSender<()>),
}

/// The handle shards and the process use; cheap to share.
pub struct AuditLog {
    tx: SyncSender<Message>,
    dropped: AtomicU64,
    server_user: String,
}

impl AuditLog {
    /// Opens (appends to) `path` and starts the writer thread.
    pub fn start(path: &Path) -> Result<AuditLog, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the audit log {}: {e}", path.display()))?;
        let (tx, rx) = sync_channel(QUEUE);
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || write_lines(&path, BufWriter::new(file), &rx))
            .map_err(|e| format!("cannot start the audit writer: {e}"))?;
        Ok(AuditLog {
            tx,
            dropped: AtomicU64::new(0),
            server_user: server_user(),
        })
    }

    /// Queues a line; never blocks.
    pub fn record(&self, event: AuditEvent) {
        match self.tx.try_send(Message::Line(SystemTime::now(), event)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "audit log queue full: lines dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The user the server runs as, which ZooKeeper names in the lines it
    /// writes for itself.
    pub fn server_user(&self) -> &str {
        &self.server_user
    }

    /// `serverStart` or `serverStop`.
    pub fn server_event(&self, operation: &'static str, outcome: Outcome) {
        self.record(AuditEvent {
            user: self.server_user.clone(),
            operation,
            outcome: Some(outcome),
            ..AuditEvent::default()
        });
    }

    /// Waits (a little) until every line queued so far is written.
    pub fn flush(&self) {
        let (done, wait) = sync_channel(1);
        if self.tx.send(Message::Close(done)).is_ok() {
            let _ = wait.recv_timeout(CLOSE_WAIT);
        }
    }
}

fn write_lines(path: &Path, mut out: BufWriter<File>, rx: &Receiver<Message>) {
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Line(time, event) => {
                    let line = format_line(time, &event);
                    if let Err(e) = out.write_all(line.as_bytes()) {
                        if !failing {
                            tracing::error!(path = %path.display(), error = %e, "cannot write the audit log");
                        }
                        failing = true;
                    }
                }
                Message::Close(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        match out.flush() {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                tracing::error!(path = %path.display(), error = %e, "cannot write the audit log");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// `time LEVEL audit.Slf4jAuditLogger: fields`, with a newline.
fn format_line(time: SystemTime, event: &AuditEvent) -> String {
    let level = if event.outcome == Some(Outcome::Failure) {
        "ERROR"
    } else {
        "INFO"
    };
    let mut fields: Vec<String> = Vec::new();
    if let Some(session) = event.session {
        fields.push(format!("session={session:#x}"));
    }
    fields.push(format!("user={}", event.user));
    let optional = [
        ("ip", event.ip.as_deref()),
        ("operation", Some(event.operation)),
        ("scheme", event.scheme.as_deref()),
        ("znode", event.znode.as_deref()),
        ("znode_type", event.znode_type),
        ("acl", event.acl.as_deref()),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            fields.push(format!("{key}={value}"));
        }
    }
    if let Some(outcome) = event.outcome {
        let result = match outcome {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Invoked => "invoked",
        };
        fields.push(format!("result={result}"));
    }
    format!(
        "{} {level} audit.Slf4jAuditLogger: {}\n",
        local_time(time),
        fields.join("\t")
    )
}

/// log4j's ISO8601 layout in local time: `2026-12-06 20:55:33,413`.
fn local_time(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = libc::time_t::try_from(since.as_secs()).unwrap_or(libc::time_t::MAX);
    // SAFETY: localtime_r writes only into the zeroed struct it is given.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    let ok = !unsafe { libc::localtime_r(&secs, &mut tm) }.is_null();
    if !ok {
        return format!("@{secs}");
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        since.subsec_millis()
    )
}

/// The name of the user this process runs as.
fn server_user() -> String {
    // SAFETY: getpwuid_r writes into the buffers given, sized as passed.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            return std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "zoocore".into())
}

/// The `user=` value: each identity's user name, the first one proven
/// after connecting ahead of the connection's ip, as ZooKeeper orders them.
pub fn users(identity: &Identity) -> String {
    let mut names: Vec<String> = identity
        .ids()
        .iter()
        .filter_map(|id| match id.scheme.as_str() {
            "digest" => Some(id.id.split(':').next().unwrap_or_default().to_owned()),
            "super" => None,
            _ => Some(id.id.clone()),
        })
        .collect();
    if names.len() > 1 {
        names.swap(0, 1);
    }
    names.join(",")
}

/// ZooKeeper's name for a create mode (`CreateMode`, lower case).
fn create_mode(flags: i32) -> Option<&'static str> {
    Some(match CreateMode::from_i32(flags)? {
        CreateMode::Persistent => "persistent",
        CreateMode::Ephemeral => "ephemeral",
        CreateMode::PersistentSequential => "persistent_sequential",
        CreateMode::EphemeralSequential => "ephemeral_sequential",
        CreateMode::Container => "container",
        CreateMode::PersistentWithTtl => "persistent_with_ttl",
        CreateMode::PersistentSequentialWithTtl => "persistent_sequential_with_ttl",
    })
}

/// `ZKUtil.aclToString`: `scheme:id:perms` for each, run together without
/// a separator exactly as ZooKeeper writes them.
fn acl_text(acl: &[Acl]) -> String {
    acl.iter()
        .map(|a| format!("{}:{}:{}", a.id.scheme, a.id.id, perms::text(a.perms)))
        .collect()
}

/// The lines for one answered write: `created` is the path each create
/// made (sequential suffix included), in the request's order, and
/// `failed` whether it failed. Reads and other requests give none.
pub fn write_events(request: &Request, created: &[String], failed: bool) -> Vec<AuditEvent> {
    let outcome = Some(if failed {
        Outcome::Failure
    } else {
        Outcome::Success
    });
    let mut created = created.iter();
    let mut one = |request: &Request| -> Option<AuditEvent> {
        let (operation, znode, znode_type, acl) = match request {
            Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => (
                "create",
                created.next().cloned().unwrap_or_else(|| r.path.clone()),
                create_mode(r.flags),
                None,
            ),
            Request::CreateTtl(r) => (
                "create",
                created.next().cloned().unwrap_or_else(|| r.path.clone()),
                create_mode(r.flags),
                None,
            ),
            Request::Delete(r) => ("delete", r.path.clone(), None, None),
            Request::DeleteContainer(r) => ("delete", r.path.clone(), None, None),
            Request::SetData(r) => ("setData", r.path.clone(), None, None),
            Request::SetAcl(r) => ("setAcl", r.path.clone(), None, Some(acl_text(&r.acl))),
            Request::Reconfig(_) => ("reconfig", "/zookeeper/config".to_owned(), None, None),
            _ => return None,
        };
        Some(AuditEvent {
            operation,
            znode: Some(znode),
            znode_type,
            acl,
            outcome,
            ..AuditEvent::default()
        })
    };
    match request {
        // A failed multi is one line without a node; a committed one is a
        // line per create, delete and setData in it.
        Request::Multi(_) if failed => vec![AuditEvent {
            operation: "multiOperation",
            outcome,
            ..AuditEvent::default()
        }],
        Request::Multi(ops) => ops
            .iter()
            .filter(|op| !matches!(op, Request::Check(_)))
            .filter_map(&mut one)
            .collect(),
        // A failed reconfig names no node, as in ZooKeeper.
        Request::Reconfig(_) if failed => vec![AuditEvent {
            operation: "reconfig",
            outcome,
            ..AuditEvent::default()
        }],
        _ => one(request).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zoocore_net::records::{CreateRequest, PathRequest, SetDataRequest};

    #[test]
    fn lines_have_zookeepers_fields_order_and_separators() {
        let event = AuditEvent {
            session: Some(0x0100_01e0_7a4c_0000),
            user: "bob,127.0.0.1".into(),
            ip: Some("127.0.0.1".into()),
            operation: "create",
            znode: Some("/a".into()),
            znode_type: Some("persistent"),
            outcome: Some(Outcome::Success),
            ..AuditEvent::default()
        };
        let line = format_line(
            UNIX_EPOCH + Duration::from_millis(1_765_054_533_413),
            &event,
        );
        let (prefix, fields) = line
            .split_once(" audit.Slf4jAuditLogger: ")
            .expect("logger");
        assert!(prefix.ends_with(",413 INFO"), "{prefix}");
        assert_eq!(
            fields,
            "session=0x10001e07a4c0000\tuser=bob,127.0.0.1\tip=127.0.0.1\toperation=create\tznode=/a\tznode_type=persistent\tresult=success\n"
        );
        let failed = AuditEvent {
            outcome: Some(Outcome::Failure),
            ..event
        };
        assert!(format_line(SystemTime::now(), &failed).contains(" ERROR audit."));
    }

    #[test]
    fn users_put_the_first_proven_identity_before_the_ip() {
        let mut who = Identity::from_ip("127.0.0.1");
        assert_eq!(users(&who), "127.0.0.1");
        for user in ["zed", "alice"] {
            who.authenticate("digest", format!("{user}:pw").as_bytes(), "127.0.0.1", None)
                .expect("digest");
        }
        assert_eq!(users(&who), "zed,127.0.0.1,alice");
    }

    #[test]
    fn writes_become_zookeepers_operations() {
        let create = Request::Create(CreateRequest {
            path: "/s-".into(),
            data: None,
            acl: vec![],
            flags: CreateMode::EphemeralSequential as i32,
        });
        let events = write_events(&create, &["/s-0000000001".to_owned()], false);
        assert_eq!(events[0].znode.as_deref(), Some("/s-0000000001"));
        assert_eq!(events[0].znode_type, Some("ephemeral_sequential"));
        let multi = Request::Multi(vec![
            Request::SetData(SetDataRequest {
                path: "/a".into(),
                data: None,
                version: -1,
            }),
            Request::Delete(zoocore_net::records::DeleteRequest {
                path: "/m".into(),
                version: -1,
            }),
        ]);
        let ops: Vec<&str> = write_events(&multi, &[], false)
            .iter()
            .map(|e| e.operation)
            .collect();
        assert_eq!(ops, ["setData", "delete"]);
        let failed = write_events(&multi, &[], true);
        assert_eq!((failed.len(), failed[0].operation), (1, "multiOperation"));
        let sync = Request::Sync(PathRequest { path: "/".into() });
        assert!(write_events(&sync, &[], false).is_empty());
        let acl = vec![
            Acl::new(perms::ALL, "digest", "bob:x="),
            Acl::new(perms::READ, "world", "anyone"),
        ];
        assert_eq!(acl_text(&acl), "digest:bob:x=:cdrwaworld:anyone:r");
    }
}
