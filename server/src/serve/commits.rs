//! Committed batches: the shard takes each batch's version of the tree as
//! its replica, fires its connections' watches and answers its own writes,
//! syncs and session opens from the effects the sequencer worked out, and
//! the reads that waited behind them from the version marked for them.

use std::rc::Rc;
use std::sync::Arc;

use glommio::channels::shared_channel::SharedReceiver;
use zoocore_engine::acl;
use zoocore_engine::session;
use zoocore_engine::tree::{Applied, Deletion};
use zoocore_engine::{write_reply, DataTree};
use zoocore_net::consts::perms;
use zoocore_net::records::{ConnectResponse, GetDataResponse, ReplyHeader};
use zoocore_net::{ErrorCode, Request, Response};

use super::request::{answer_read, answered, answered_txn, view};
use super::sessions::{send_connect_response, track};
use super::{Conn, InFlight, Shard};
use crate::audit::{self, AuditEvent, Outcome};
use crate::seq::{CommitBatch, Entry, Origin};

/// Applies every committed batch to this shard's replica, in zxid order.
pub(super) async fn apply_commits(shard: Rc<Shard>, commits: SharedReceiver<Arc<CommitBatch>>) {
    let commits = commits.connect().await;
    while let Some(batch) = commits.recv().await {
        // The whole batch is handled before any read runs again, so reads
        // never see the new version before its writes are answered.
        *shard.replica.borrow_mut() = batch.tree.clone();
        for entry in &batch.entries {
            match entry {
                Entry::Attached {
                    session_id,
                    shard: owner,
                } => {
                    if *owner != shard.index {
                        let gone = shard.sessions.borrow_mut().remove(session_id);
                        if let Some(conn) = gone.and_then(|s| s.conn) {
                            if let Some(conn) = shard.conns.borrow().get(&conn) {
                                conn.close();
                            }
                        }
                    }
                }
                Entry::Txn {
                    txn,
                    origin,
                    applied,
                } => apply_txn(&shard, txn, applied, *origin),
                Entry::Synced { origin } if origin.shard == shard.index => {
                    let conn = shard.conns.borrow().get(&origin.conn).cloned();
                    match conn {
                        Some(conn) if conn.catching_up.replace(false) => {
                            let _ = conn.done.try_send(());
                        }
                        Some(conn) => answer_sync(&shard, &conn),
                        None => {}
                    }
                }
                Entry::Synced { .. } => {}
                Entry::Gather(gather) => gather.add(view(&shard)),
                Entry::Rejected { origin, session_id } => reject(&shard, *origin, *session_id),
                Entry::Disconnect { origin } => disconnect(&shard, *origin),
                Entry::Installed => {
                    shard.handled_zxid.set(batch.tree.last_zxid());
                    disconnect(&shard, None);
                }
                Entry::Version(tree) => {
                    // A mark is the tree the txns before it lead to.
                    assert_eq!(
                        tree.last_zxid(),
                        shard.handled_zxid.get(),
                        "shard {} got a version mark out of place",
                        shard.index
                    );
                    answer_due_reads(&shard, tree);
                }
            }
        }
        answer_due_reads(&shard, &batch.tree);
        // The replica is the version every handled txn leads to.
        assert_eq!(
            shard.handled_zxid.get(),
            shard.replica.borrow().last_zxid(),
            "shard {} handled a batch other than its version's",
            shard.index
        );
        let counters = shard.counters();
        counters
            .batches_applied
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shard
            .stats
            .apply_us
            .record(batch.durable_at.elapsed().as_micros() as u64);
    }
}

pub(super) fn apply_txn(
    shard: &Rc<Shard>,
    txn: &zoocore_engine::Txn,
    applied: &Applied,
    origin: Option<Origin>,
) {
    // Design invariant 1: every shard handles every txn, in order, none
    // skipped (the sequencer hands out consecutive zxids).
    assert_eq!(
        txn.zxid,
        shard.handled_zxid.get() + 1,
        "shard {} out of step with the sequencer",
        shard.index
    );
    shard.handled_zxid.set(txn.zxid);
    let conns = shard.conns.borrow();
    let mut can_read = |w: u64, acl: &[zoocore_net::Acl]| {
        conns
            .get(&w)
            .is_some_and(|c| acl::check(acl, perms::READ, &c.identity.borrow()))
    };
    let events = shard.watches.borrow_mut().fire(applied, &mut can_read);
    for (w, event) in &events {
        if let Some(conn) = conns.get(w) {
            conn.event(event);
        }
    }
    let mine = origin
        .filter(|o| o.shard == shard.index)
        .and_then(|o| conns.get(&o.conn).cloned());
    match applied {
        Applied::SessionCreated => {
            let Some(conn) = mine else {
                // The connection went away before its session was made; the
                // session expires unless someone reconnects to it.
                if origin.is_some_and(|o| o.shard == shard.index) {
                    track(shard, txn.session_id, txn_timeout(txn), None);
                }
                return;
            };
            let timeout = shard
                .opening
                .borrow_mut()
                .remove(&conn.id)
                .unwrap_or_else(|| txn_timeout(txn));
            tracing::info!(
                session = format!("{:#x}", txn.session_id),
                timeout_ms = timeout,
                client = %conn.counters.peer,
                "session established"
            );
            track(shard, txn.session_id, timeout, Some(conn.id));
            conn.session_id.set(txn.session_id);
            conn.counters.note_session(txn.session_id, timeout);
            send_connect_response(
                &conn,
                &ConnectResponse {
                    protocol_version: 0,
                    timeout,
                    session_id: txn.session_id,
                    passwd: session::password(txn.session_id).to_vec(),
                    read_only: conn.read_only_byte.get().then_some(false),
                },
            );
            let _ = conn.done.try_send(());
        }
        Applied::SessionClosed { deleted } => {
            audit_ephemerals(shard, txn.session_id, deleted);
            let tracked = shard.sessions.borrow_mut().remove(&txn.session_id);
            if tracked.is_some() {
                tracing::info!(
                    session = format!("{:#x}", txn.session_id),
                    ephemerals_deleted = deleted.len(),
                    "session closed"
                );
            }
            if let Some(conn) = mine {
                reply_write(shard, &conn, txn, applied);
                conn.close();
            } else if let Some(conn) = tracked.and_then(|s| s.conn).and_then(|c| conns.get(&c)) {
                conn.close();
            }
        }
        // ZooKeeper tears the connection down instead of answering: the
        // client reconnects, and that reconnection makes its member the
        // session's owner again (ZOOKEEPER-710: an answer would leave client
        // and leader disagreeing on the owner for good).
        Applied::Error(code) if *code == ErrorCode::SessionMoved.code() => {
            if let Some(conn) = mine {
                conn.close();
            }
        }
        _ => {
            if let Some(conn) = mine {
                reply_write(shard, &conn, txn, applied);
                // Reads queued behind it are dropped with the connection.
                let ordered_left = conn.inflight.borrow().iter().any(|e| !e.read);
                if !ordered_left && txn_closes(applied) {
                    conn.close();
                }
            }
        }
    }
}

pub(super) fn txn_timeout(txn: &zoocore_engine::Txn) -> i32 {
    match txn.op {
        zoocore_engine::TxnOp::CreateSession { timeout } => timeout,
        _ => 0,
    }
}

/// A close answered with SessionExpired (the session was already gone).
pub(super) fn txn_closes(applied: &Applied) -> bool {
    matches!(applied, Applied::Error(code) if *code == ErrorCode::SessionExpired.code())
}

pub(super) fn reply_write(
    shard: &Shard,
    conn: &Conn,
    txn: &zoocore_engine::Txn,
    applied: &Applied,
) {
    let Some(entry) = answered_txn(shard, conn) else {
        tracing::error!(
            conn = conn.id,
            "commit for a connection with no write in flight"
        );
        return;
    };
    debug_assert_eq!(entry.xid, txn.cxid, "replies leave in request order");
    audit_write(shard, conn, &entry.request, applied);
    let (err, mut body) = write_reply(&entry.request, applied);
    // A reconfig answers with the new configuration, as getData would.
    if let (Request::Reconfig(_), Response::Stat(stat)) = (&entry.request, &body) {
        let data = shard
            .replica
            .borrow()
            .get("/zookeeper/config")
            .and_then(|n| n.data.as_deref().map(<[u8]>::to_vec));
        body = Response::GetData(GetDataResponse { data, stat: *stat });
    }
    conn.reply(
        ReplyHeader {
            xid: entry.xid,
            zxid: txn.zxid,
            err,
        },
        &body,
        shard.counters(),
        entry.arrived,
    );
    let _ = conn.done.try_send(());
    answer_ready_syncs(shard, conn);
}

/// The audit lines of a write this shard's client made.
fn audit_write(shard: &Shard, conn: &Conn, request: &Request, applied: &Applied) {
    let Some(audit) = &shard.audit else {
        return;
    };
    let created: Vec<String> = match applied {
        Applied::Created { path, .. } => vec![path.clone()],
        Applied::Multi(results) => results
            .iter()
            .filter_map(|r| match r {
                Applied::Created { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let failed = matches!(applied, Applied::Error(_) | Applied::MultiError(_));
    let user = audit::users(&conn.identity.borrow());
    for mut event in audit::write_events(request, &created, failed) {
        event.session = Some(conn.session_id.get());
        event.user = user.clone();
        event.ip = Some(conn.peer_ip.to_string());
        audit.record(event);
    }
}

/// ZooKeeper audits each ephemeral a closed or expired session loses, as
/// the server's user; shard 0 writes them once for this member.
fn audit_ephemerals(shard: &Shard, session_id: i64, deleted: &[Deletion]) {
    let Some(audit) = shard.audit.as_ref().filter(|_| shard.index == 0) else {
        return;
    };
    for deletion in deleted {
        audit.record(AuditEvent {
            session: Some(session_id),
            user: audit.server_user().to_owned(),
            operation: "ephemeralZNodeDeletionOnSessionCloseOrExpire",
            znode: Some(deletion.path.clone()),
            outcome: Some(Outcome::Success),
            ..AuditEvent::default()
        });
    }
}

/// A request the log could not take: writes get SystemError, a new session
/// loses its connection, an expiry is retried later.
pub(super) fn reject(shard: &Shard, origin: Option<Origin>, session_id: i64) {
    let Some(origin) = origin else {
        if let Some(s) = shard.sessions.borrow_mut().get_mut(&session_id) {
            s.expiring = false;
        }
        return;
    };
    if origin.shard != shard.index {
        return;
    }
    let Some(conn) = shard.conns.borrow().get(&origin.conn).cloned() else {
        return;
    };
    if shard.opening.borrow_mut().remove(&conn.id).is_some() {
        conn.close();
        return;
    }
    let Some(entry) = answered_txn(shard, &conn) else {
        return;
    };
    let zxid = shard.handled_zxid.get();
    let header = ReplyHeader {
        xid: entry.xid,
        zxid,
        err: ErrorCode::SystemError.code(),
    };
    conn.reply(header, &Response::Empty, shard.counters(), entry.arrived);
    let _ = conn.done.try_send(());
    answer_ready_syncs(shard, &conn);
}

/// Answers, from `tree`, the reads whose turn has come, and the syncs
/// already answered that wait between them.
fn answer_due_reads(shard: &Shard, tree: &DataTree) {
    let due = std::mem::take(&mut *shard.reads_due.borrow_mut());
    for id in due {
        let Some(conn) = shard.conns.borrow().get(&id).cloned() else {
            continue;
        };
        loop {
            let front = conn.inflight.borrow().front().map(|e| (e.read, e.synced));
            match front {
                Some((true, _)) => {
                    let Some(entry) = answered(shard, &conn) else {
                        break;
                    };
                    answer_read(shard, &conn, tree, entry.xid, &entry.request, entry.arrived);
                    let _ = conn.done.try_send(());
                }
                Some((_, true)) => answer_ready_syncs(shard, &conn),
                _ => break,
            }
        }
    }
}

/// A sync's turn came: it is answered once every earlier request of its
/// connection is (replies leave in request order).
pub(super) fn answer_sync(shard: &Shard, conn: &Conn) {
    let marked = conn
        .inflight
        .borrow_mut()
        .iter_mut()
        .find(|e| matches!(e.request, Request::Sync(_)) && !e.synced)
        .map(|e| e.synced = true)
        .is_some();
    if !marked {
        tracing::error!(conn = conn.id, "a sync answered that was not asked");
        conn.close();
        return;
    }
    answer_ready_syncs(shard, conn);
}

/// Answers the syncs at the head of the connection's queue whose turn has
/// come; a read there is due at the batch's next version mark.
fn answer_ready_syncs(shard: &Shard, conn: &Conn) {
    loop {
        let ready = conn.inflight.borrow().front().is_some_and(|e| e.synced);
        if !ready {
            if conn.inflight.borrow().front().is_some_and(|e| e.read) {
                shard.reads_due.borrow_mut().push(conn.id);
            }
            return;
        }
        let Some(InFlight {
            xid,
            request: Request::Sync(path),
            arrived,
            ..
        }) = answered(shard, conn)
        else {
            return;
        };
        let zxid = shard.handled_zxid.get();
        conn.reply(
            ReplyHeader { xid, zxid, err: 0 },
            &Response::Sync(path.path),
            shard.counters(),
            arrived,
        );
        let _ = conn.done.try_send(());
    }
}

/// An ensemble member closes one connection, or all (its leader changed):
/// what they have in flight ends in connection loss, and clients move on.
fn disconnect(shard: &Shard, origin: Option<Origin>) {
    let conns = shard.conns.borrow();
    match origin {
        None => conns.values().for_each(|c| c.close()),
        Some(o) if o.shard == shard.index => {
            if let Some(c) = conns.get(&o.conn) {
                c.close();
            }
        }
        Some(_) => {}
    }
}
