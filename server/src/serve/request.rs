//! A decoded request: reads answered from this shard's replica (or queued
//! behind the connection's writes), writes, syncs and closes pipelined to
//! the sequencer, four-letter words.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use glommio::channels::local_channel::LocalReceiver;
use zoocore_engine::{handle_watch_request, read, watch_for, DataTree};
use zoocore_net::consts::xid;
use zoocore_net::records::ReplyHeader;
use zoocore_net::{decode_request, ErrorCode, Request, Response};

use super::sessions::now_deadline;
use super::{Conn, InFlight, Shard, MAX_PIPELINED};
use crate::audit::{self, AuditEvent, Outcome};
use crate::auth::digest_md5::{DigestMd5Server, Step};
#[cfg(feature = "kerberos")]
use crate::auth::gssapi::GssapiServer;
use crate::auth::{new_nonce, SaslServer, Security};
use crate::inspect;
use crate::ops::fourlw;
use crate::seq::{Origin, ToSequencer};

pub(super) async fn send(shard: &Shard, message: ToSequencer) -> Result<(), String> {
    shard
        .to_sequencer
        .send(message)
        .await
        .map_err(|_| "sequencer gone".to_owned())
}

pub(super) async fn handle_request(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    payload: &[u8],
    done_rx: &LocalReceiver<()>,
) -> Result<(), String> {
    let (header, request) = decode_request(payload).map_err(|e| {
        tracing::warn!(conn = conn.id, error = %e, "malformed request; closing connection");
        format!("malformed request: {e}")
    })?;
    let arrived = Instant::now();
    shard
        .counters()
        .received
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    conn.counters.note_request(request.op(), header.xid);
    let session_id = conn.session_id.get();
    if let Some(s) = shard.sessions.borrow_mut().get_mut(&session_id) {
        s.deadline = now_deadline(s.timeout_ms);
        s.touched = true;
    }
    let last_zxid = || shard.replica.borrow().last_zxid();
    let origin = Origin {
        shard: shard.index,
        conn: conn.id,
    };
    let authenticating = matches!(request, Request::Auth(_) | Request::Sasl(_));
    if !authenticating && !shard.config.security.admits(&conn.identity.borrow()) {
        // ZooKeeper 3.8's enforced authentication: the client is told and
        // its connection closed; the session lives on until it expires.
        tracing::warn!(
            conn = conn.id,
            session = format_args!("{session_id:#x}"),
            schemes = ?shard.config.security.enforce_auth_schemes,
            "request without a required authentication scheme refused; closing connection"
        );
        let h = ReplyHeader {
            xid: header.xid,
            zxid: 0,
            err: ErrorCode::SessionClosedRequireSaslAuth.code(),
        };
        conn.reply(h, &Response::Empty, shard.counters(), arrived);
        return Err("authentication required".into());
    }
    if conn.read_only_session.get()
        && read_only_refusal(shard, conn, header.xid, &request, arrived)?
    {
        return Ok(());
    }
    if request.is_write() || matches!(request, Request::Sync(_) | Request::CloseSession) {
        let message = match &request {
            Request::Sync(_) => ToSequencer::Sync { origin },
            Request::CloseSession => ToSequencer::CloseSession {
                origin: Some(origin),
                session_id,
                cxid: header.xid,
            },
            _ => ToSequencer::Write {
                origin,
                session_id,
                cxid: header.xid,
                identity: conn.identity.borrow().clone(),
                request: request.clone(),
                fence: read_waits_for_next_txn(conn),
            },
        };
        let closing = matches!(request, Request::CloseSession);
        let entry = InFlight {
            xid: header.xid,
            request,
            arrived,
            synced: false,
            read: false,
        };
        pipeline(shard, conn, entry, message, done_rx).await?;
        if closing {
            drain(conn, done_rx).await?;
        }
        return Ok(());
    }
    let plain_read = !matches!(
        request,
        Request::Ping | Request::Auth(_) | Request::Sasl(_) | Request::Unsupported { .. }
    );
    if plain_read
        && shard.config.ensemble.is_none()
        && has_room_behind_writes(conn, done_rx).await?
    {
        conn.inflight.borrow_mut().push_back(InFlight {
            xid: header.xid,
            request,
            arrived,
            synced: false,
            read: true,
        });
        shard
            .counters()
            .outstanding
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(());
    }
    // Answered here, so only after every earlier request of this connection
    // is answered: replies stay in order and reads see its writes.
    drain(conn, done_rx).await?;
    match &request {
        Request::Ping => {
            let h = ReplyHeader {
                xid: xid::PING,
                zxid: last_zxid(),
                err: 0,
            };
            conn.reply(h, &Response::Empty, shard.counters(), arrived);
        }
        Request::Auth(auth) => {
            let result = if auth.scheme == crate::ui::PROXY_SCHEME {
                // The web UI's session for a browser: only from this host,
                // only with this process's secret.
                match crate::ui::proxied_ip(&auth.auth).filter(|_| conn.peer_ip.is_loopback()) {
                    Some(ip) => {
                        Arc::make_mut(&mut conn.identity.borrow_mut())
                            .set_remote_ip(&ip.to_string());
                        Ok(())
                    }
                    None => Err(ErrorCode::AuthFailed),
                }
            } else {
                Arc::make_mut(&mut conn.identity.borrow_mut()).authenticate(
                    &auth.scheme,
                    &auth.auth,
                    &conn.peer_ip.to_string(),
                    shard.config.super_digest.as_deref(),
                )
            };
            let err = result.err().map_or(0, ErrorCode::code);
            audit_auth(shard, conn, &auth.scheme, err == 0);
            conn.reply(
                ReplyHeader {
                    xid: header.xid,
                    zxid: 0,
                    err,
                },
                &Response::Empty,
                shard.counters(),
                arrived,
            );
            if err != 0 {
                return Err("authentication failed".into());
            }
        }
        Request::Sasl(token) => {
            let step = sasl_step(shard, conn, token.as_deref().unwrap_or_default());
            let security = &shard.config.security;
            let (err, body) = match &step {
                Ok(token) => (0, Response::Sasl(token.clone())),
                // ZooKeeper's code when SASL is what enforcement requires.
                Err(_)
                    if security.enforce_auth
                        && security.enforce_auth_schemes.iter().any(|s| s == "sasl") =>
                {
                    (
                        ErrorCode::SessionClosedRequireSaslAuth.code(),
                        Response::Sasl(None),
                    )
                }
                Err(_) => (ErrorCode::AuthFailed.code(), Response::Sasl(None)),
            };
            let h = ReplyHeader {
                xid: header.xid,
                zxid: 0,
                err,
            };
            conn.reply(h, &body, shard.counters(), arrived);
            let finished = conn.sasl.borrow().as_ref().is_none_or(SaslServer::is_over);
            if finished {
                audit_auth(shard, conn, "sasl", step.is_ok());
            }
            if let Err(reason) = step {
                tracing::warn!(conn = conn.id, peer = %conn.peer_ip, %reason, "SASL authentication failed; closing connection");
                return Err(format!("SASL authentication failed: {reason}"));
            }
        }
        Request::Unsupported { op } => {
            let h = ReplyHeader {
                xid: header.xid,
                zxid: -1,
                err: ErrorCode::Unimplemented.code(),
            };
            conn.reply(h, &Response::Empty, shard.counters(), arrived);
            return Err(format!("unimplemented opcode {op}"));
        }
        _ => {
            answer_read(
                shard,
                conn,
                &shard.replica.borrow(),
                header.xid,
                &request,
                arrived,
            );
        }
    }
    Ok(())
}

/// An authentication's audit line (zoocore's own: ZooKeeper 3.8 audits
/// none): the identities it left the connection with.
fn audit_auth(shard: &Shard, conn: &Conn, scheme: &str, ok: bool) {
    let Some(audit) = &shard.audit else {
        return;
    };
    audit.record(AuditEvent {
        session: Some(conn.session_id.get()),
        user: audit::users(&conn.identity.borrow()),
        ip: Some(conn.peer_ip.to_string()),
        operation: "addAuth",
        scheme: Some(scheme.to_owned()),
        outcome: Some(if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        }),
        ..AuditEvent::default()
    });
}

/// Feeds the client's SASL token to the connection's exchange (GSSAPI when
/// the server logs in with Kerberos, else DIGEST-MD5); the token to send
/// back (`None`: a null token, as the JDK's GSSAPI server ends), or why
/// authentication failed.
fn sasl_step(shard: &Shard, conn: &Conn, token: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let security = &shard.config.security;
    let mut slot = conn.sasl.borrow_mut();
    if slot.is_none() {
        *slot = Some(new_sasl_server(security)?);
    }
    let step = match slot.as_mut() {
        Some(SaslServer::DigestMd5(exchange)) => {
            let Some(users) = &security.sasl_users else {
                return Err("no DIGEST-MD5 users".into());
            };
            exchange
                .step(token, |user| users.password(user))
                .map_err(|e| e.to_string())?
        }
        #[cfg(feature = "kerberos")]
        Some(SaslServer::Gssapi(exchange)) => exchange.step(token)?,
        None => return Err("no SASL exchange".into()),
    };
    match step {
        Step::Challenge(token) => Ok(Some(token)),
        Step::Done { token, user } => {
            let user = security.canonical_user(&user);
            let is_super = security.is_super_user(&user);
            Arc::make_mut(&mut conn.identity.borrow_mut()).add_sasl(&user, is_super);
            tracing::info!(
                session = format_args!("{:#x}", conn.session_id.get()),
                %user,
                is_super,
                "SASL authenticated"
            );
            Ok((!token.is_empty()).then_some(token))
        }
    }
}

fn new_sasl_server(security: &Security) -> Result<SaslServer, String> {
    #[cfg(feature = "kerberos")]
    if let Some(acceptor) = &security.acceptor {
        return Ok(SaslServer::Gssapi(GssapiServer::new(acceptor)));
    }
    if security.sasl_users.is_none() {
        return Err(format!(
            "SASL is not configured: no JAAS section {:?} (zoocore.jaasConfig or -Djava.security.auth.login.config)",
            security.jaas_section
        ));
    }
    let nonce = new_nonce().map_err(|e| format!("no randomness for a nonce: {e}"))?;
    Ok(SaslServer::DigestMd5(DigestMd5Server::new(nonce)))
}

/// What a read-only session may not do: writes, syncs and checks get
/// NotReadOnly (ZooKeeper's ReadOnlyRequestProcessor refuses the same
/// opcodes) and a close ends the connection; `true` when answered here.
/// Reads, pings and auth go on as for any session: nothing of a read-only
/// session is ever in flight, so they are answered at once from this
/// member's tree. Once this member has a leader again the connection is
/// closed, so the client comes back read-write.
fn read_only_refusal(
    shard: &Shard,
    conn: &Conn,
    xid: i32,
    request: &Request,
    arrived: Instant,
) -> Result<bool, String> {
    if !shard.stats.ensemble.read_only() {
        return Err("read-only mode is over".into());
    }
    let zxid = shard.replica.borrow().last_zxid();
    let closing = matches!(request, Request::CloseSession);
    let err = match request {
        _ if closing => 0,
        Request::Sync(_) => ErrorCode::NotReadOnly.code(),
        r if r.is_write() => ErrorCode::NotReadOnly.code(),
        _ => return Ok(false),
    };
    let h = ReplyHeader { xid, zxid, err };
    conn.reply(h, &Response::Empty, shard.counters(), arrived);
    if closing {
        conn.close();
    }
    Ok(true)
}

/// Answers a read (or a watch request) from `tree`, registering its watch.
pub(super) fn answer_read(
    shard: &Shard,
    conn: &Conn,
    tree: &DataTree,
    xid: i32,
    request: &Request,
    arrived: Instant,
) {
    let watched = {
        let mut watches = shard.watches.borrow_mut();
        handle_watch_request(&mut watches, tree, conn.id, request)
    };
    let (err, body) = match watched {
        Some(((err, body), events)) => {
            for event in &events {
                conn.event(event);
            }
            (err, body)
        }
        None => {
            let session_id = conn.session_id.get();
            let reply = read(tree, session_id, &conn.identity.borrow(), request);
            if let Some((table, path)) = watch_for(request, reply.0) {
                shard.watches.borrow_mut().add(table, path, conn.id);
            }
            reply
        }
    };
    let h = ReplyHeader {
        xid,
        zxid: tree.last_zxid(),
        err,
    };
    conn.reply(h, &body, shard.counters(), arrived);
}

/// Whether a read queued since the connection's last write or close waits
/// to be answered from a version without the next one (then that one is
/// fenced). Looks back only to that write: usually one entry.
fn read_waits_for_next_txn(conn: &Conn) -> bool {
    conn.inflight
        .borrow()
        .iter()
        .rev()
        .take_while(|e| e.read || matches!(e.request, Request::Sync(_)))
        .any(|e| e.read)
}

/// Whether a read must wait behind the connection's requests in flight
/// (waiting first, if `MAX_PIPELINED` are, for one to be answered); `false`
/// once none is: the read is answered now.
async fn has_room_behind_writes(conn: &Conn, done_rx: &LocalReceiver<()>) -> Result<bool, String> {
    loop {
        let pending = conn.inflight.borrow().len();
        if pending == 0 {
            return Ok(false);
        }
        if pending < MAX_PIPELINED {
            return Ok(true);
        }
        done_rx.recv().await.ok_or("shard stopping")?;
    }
}

/// Sends a request that the sequencer orders (a write, a close, a sync)
/// without waiting for its answer, so a client's pipelined writes share
/// group commits; waits first if the connection already has `MAX_PIPELINED`.
pub(super) async fn pipeline(
    shard: &Shard,
    conn: &Conn,
    entry: InFlight,
    message: ToSequencer,
    done_rx: &LocalReceiver<()>,
) -> Result<(), String> {
    loop {
        let pending = conn.inflight.borrow().len();
        if pending < MAX_PIPELINED {
            break;
        }
        done_rx.recv().await.ok_or("shard stopping")?;
    }
    conn.inflight.borrow_mut().push_back(entry);
    shard
        .counters()
        .outstanding
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    send(shard, message).await
}

/// Waits until every request of the connection in the sequencer's hands has
/// been answered.
pub(super) async fn drain(conn: &Conn, done_rx: &LocalReceiver<()>) -> Result<(), String> {
    loop {
        let pending = conn.inflight.borrow().len();
        if pending == 0 {
            return Ok(());
        }
        done_rx.recv().await.ok_or("shard stopping")?;
    }
}

/// The oldest request of the connection, answered by the commit stream for
/// a txn: never a read, which is answered at a version mark or at the end
/// of its batch, so before any txn of its connection after it.
pub(super) fn answered_txn(shard: &Shard, conn: &Conn) -> Option<InFlight> {
    let entry = answered(shard, conn)?;
    assert!(
        !entry.read,
        "conn {}: a txn answered before the read ahead of it",
        conn.id
    );
    Some(entry)
}

/// The oldest request of the connection the sequencer ordered: its turn to be answered.
pub(super) fn answered(shard: &Shard, conn: &Conn) -> Option<InFlight> {
    let entry = conn.inflight.borrow_mut().pop_front()?;
    shard
        .counters()
        .outstanding
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    Some(entry)
}

/// The answer to a four-letter word.
pub(super) async fn answer_word(shard: &Rc<Shard>, word: &str) -> String {
    if !shard.config.allows_word(word) {
        return fourlw::not_whitelisted(word);
    }
    inspect(shard, inspect::needs_views(word), |cx| {
        fourlw::answer(word, cx)
    })
    .await
    .unwrap_or_else(|e| format!("{word}: {e}\n"))
}

/// Runs `answer` on what four-letter words and admin commands show: this
/// shard's replica, and with `all_shards` every shard's view of its
/// connections, gathered through the sequencer's batch stream.
pub async fn inspect<R>(
    shard: &Rc<Shard>,
    all_shards: bool,
    answer: impl FnOnce(&inspect::Context<'_>) -> R,
) -> Result<R, String> {
    let views = if all_shards {
        let gather = inspect::Gather::new(shard.config.shards);
        send(shard, ToSequencer::Gather(gather.clone())).await?;
        gather
            .wait()
            .await
            .ok_or("not every shard answered in time")?
    } else {
        Vec::new()
    };
    let replica = shard.replica.borrow();
    let cx = inspect::Context {
        config: &shard.config,
        stats: &shard.stats,
        tree: &replica,
        views: &views,
    };
    Ok(answer(&cx))
}

/// What this shard alone knows of its connections, for a four-letter word.
pub(super) fn view(shard: &Shard) -> inspect::ShardView {
    let conns = shard.conns.borrow();
    let session_of = |c: u64| conns.get(&c).map_or(0, |c| c.session_id.get());
    let watches = shard.watches.borrow();
    let (now, now_ms) = (Instant::now(), crate::stats::epoch_ms());
    inspect::ShardView {
        shard: shard.index,
        data_watches: watches
            .data_watches()
            .map(|(p, watchers)| (p.to_owned(), watchers.map(session_of).collect()))
            .collect(),
        watch_count: watches.watch_count(),
        sessions: shard
            .sessions
            .borrow()
            .iter()
            .map(|(&id, s)| inspect::SessionView {
                id,
                expires_ms: now_ms + s.deadline.saturating_duration_since(now).as_millis() as i64,
                peer: s.conn.and_then(|c| conns.get(&c)).map(|c| c.counters.peer),
            })
            .collect(),
    }
}
