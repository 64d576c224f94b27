//! Sessions owned by this shard: the connect handshake (new or
//! reattached), deadlines, and expiry into closeSession requests.

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::LocalReceiver;
use zoocore_engine::session;
use zoocore_net::frame::write_frame;
use zoocore_net::jute::Jute;
use zoocore_net::records::{ConnectRequest, ConnectResponse};

use super::request::send;
use super::{Conn, Session, Shard};
use crate::seq::{Origin, ToSequencer};

pub(super) fn now_deadline(timeout_ms: i32) -> Instant {
    Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64)
}

pub(super) fn invalid_session(conn: &Conn) -> ConnectResponse {
    ConnectResponse {
        protocol_version: 0,
        timeout: 0,
        session_id: 0,
        passwd: vec![0; session::PASSWORD_LEN],
        read_only: conn.read_only_byte.get().then_some(false),
    }
}

pub(super) fn send_connect_response(conn: &Conn, response: &ConnectResponse) {
    write_frame(&mut conn.out.borrow_mut(), |b| response.write(b));
    conn.kick();
}

pub(super) async fn connect(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    payload: &[u8],
    done_rx: &LocalReceiver<()>,
) -> Result<(), String> {
    let request =
        ConnectRequest::decode(payload).map_err(|e| format!("bad connect request: {e}"))?;
    conn.read_only_byte.set(request.read_only.is_some());
    let config = &shard.config;
    let timeout = session::negotiate_timeout(
        request.timeout,
        config.min_session_timeout_ms as i32,
        config.max_session_timeout_ms as i32,
    );
    let origin = Origin {
        shard: shard.index,
        conn: conn.id,
    };
    if !shard.stats.ensemble.serving() {
        if shard.stats.ensemble.read_only() && request.read_only == Some(true) {
            return connect_read_only(shard, conn, &request, timeout);
        }
        // A member without a leader takes no sessions (but read-only ones,
        // above): the client tries the next server of its connect string,
        // as with ZooKeeper, which also closes a client that does not
        // allow a read-only server.
        return Err("no leader: not serving".into());
    }
    if request.session_id == 0 {
        shard.opening.borrow_mut().insert(conn.id, timeout);
        send(shard, ToSequencer::OpenSession { origin, timeout }).await?;
        done_rx.recv().await.ok_or("shard stopping")?;
        return Ok(());
    }
    let id = request.session_id;
    let state = || {
        let replica = shard.replica.borrow();
        (replica.last_zxid(), replica.sessions().contains_key(&id))
    };
    let (mut last_zxid, mut known) = state();
    // An ensemble member syncs first: the session may have been closed (or
    // expired) through another member, which ZooKeeper's leader would know.
    let ensemble = shard.config.ensemble.is_some();
    if ensemble || !known || request.last_zxid_seen > last_zxid {
        // Another shard may have committed more than this replica has applied
        // (the session's creation, or what the client saw): catch up first.
        conn.catching_up.set(true);
        send(shard, ToSequencer::Sync { origin }).await?;
        done_rx.recv().await.ok_or("shard stopping")?;
        (last_zxid, known) = state();
    }
    if request.last_zxid_seen > last_zxid {
        return Err(format!(
            "client has seen zxid {:#x}, server only {last_zxid:#x}",
            request.last_zxid_seen
        ));
    }
    if !known || request.passwd != session::password(id) {
        send_connect_response(conn, &invalid_session(conn));
        return Err(format!("session {id:#x} expired or bad password"));
    }
    let previous = shard.sessions.borrow_mut().insert(
        id,
        Session {
            timeout_ms: timeout,
            deadline: now_deadline(timeout),
            conn: Some(conn.id),
            expiring: false,
            touched: true,
        },
    );
    if let Some(old) = previous.and_then(|s| s.conn) {
        if let Some(old) = shard.conns.borrow().get(&old) {
            old.close();
        }
    }
    tracing::info!(
        session = format!("{id:#x}"),
        timeout_ms = timeout,
        client = %conn.counters.peer,
        "session reattached"
    );
    conn.session_id.set(id);
    conn.counters.note_session(id, timeout);
    send(
        shard,
        ToSequencer::Attach {
            session_id: id,
            shard: shard.index,
        },
    )
    .await?;
    send_connect_response(
        conn,
        &ConnectResponse {
            protocol_version: 0,
            timeout,
            session_id: id,
            passwd: session::password(id).to_vec(),
            read_only: request.read_only.map(|_| false),
        },
    );
    Ok(())
}

/// Where a shard's read-only session ids start: this server's id in the top
/// byte as for every session, the time part as far from now as it goes
/// (bit 55 flipped), and the shard's index, so they meet neither the ids
/// the ensemble hands out nor another shard's.
pub(super) fn first_read_only_session_id(config: &crate::config::Config, shard: usize) -> i64 {
    let myid = config.ensemble.as_ref().map_or(0, |e| e.myid) as u8;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    (session::first_session_id(myid, now_ms) ^ (1 << 55)) + ((shard as i64) << 32)
}

/// A read-only session's password: not the one an ensemble session of the
/// same id would have, so neither can pass for the other.
fn read_only_password(id: i64) -> [u8; session::PASSWORD_LEN] {
    session::password(!id)
}

/// A client that allows a read-only server, while this member serves
/// read-only: a new session lives only as long as this connection (it is
/// never replicated; ZooKeeper's read-only sessions are local too), and an
/// ensemble session this member knows is taken back for reads.
fn connect_read_only(
    shard: &Shard,
    conn: &Conn,
    request: &ConnectRequest,
    timeout: i32,
) -> Result<(), String> {
    // As for any session: a client that has seen more than this member
    // holds would read back in time; it tries another server.
    let last_zxid = shard.replica.borrow().last_zxid();
    if request.last_zxid_seen > last_zxid {
        return Err(format!(
            "client has seen zxid {:#x}, this read-only member only {last_zxid:#x}",
            request.last_zxid_seen
        ));
    }
    let (id, passwd) = if request.session_id == 0 {
        let id = shard.next_read_only_session.get();
        shard.next_read_only_session.set(id + 1);
        (id, read_only_password(id).to_vec())
    } else {
        let id = request.session_id;
        let known = shard.replica.borrow().sessions().contains_key(&id);
        if !known || request.passwd != session::password(id) {
            send_connect_response(conn, &invalid_session(conn));
            return Err(format!("session {id:#x} unknown to a read-only server"));
        }
        (id, request.passwd.clone())
    };
    tracing::info!(
        session = format!("{id:#x}"),
        timeout_ms = timeout,
        client = %conn.counters.peer,
        "read-only session"
    );
    conn.read_only_session.set(true);
    conn.session_id.set(id);
    conn.counters.note_session(id, timeout);
    send_connect_response(
        conn,
        &ConnectResponse {
            protocol_version: 0,
            timeout,
            session_id: id,
            passwd,
            read_only: Some(true),
        },
    );
    Ok(())
}

pub(super) fn track(shard: &Shard, session_id: i64, timeout_ms: i32, conn: Option<u64>) {
    shard.sessions.borrow_mut().insert(
        session_id,
        Session {
            timeout_ms,
            deadline: now_deadline(timeout_ms),
            conn,
            expiring: false,
            touched: true,
        },
    );
}

/// Turns sessions that stopped talking into closeSession requests.
pub(super) async fn expire_sessions(shard: Rc<Shard>) {
    let period = Duration::from_millis((shard.config.tick_time_ms / 4).clamp(10, 500) as u64);
    loop {
        glommio::timer::sleep(period).await;
        if shard.config.ensemble.is_some() {
            // Only an ensemble's leader expires sessions: report who was
            // heard from, as ZooKeeper's followers answer the leader's pings.
            let touched: Vec<i64> = shard
                .sessions
                .borrow_mut()
                .iter_mut()
                .filter_map(|(id, s)| std::mem::replace(&mut s.touched, false).then_some(*id))
                .collect();
            if !touched.is_empty() && send(&shard, ToSequencer::Touches(touched)).await.is_err() {
                return;
            }
            continue;
        }
        let now = Instant::now();
        let due: Vec<i64> = shard
            .sessions
            .borrow_mut()
            .iter_mut()
            .filter(|(_, s)| !s.expiring && s.deadline <= now)
            .map(|(id, s)| {
                s.expiring = true;
                *id
            })
            .collect();
        for session_id in due {
            tracing::info!(session = format!("{session_id:#x}"), "session expired");
            let close = ToSequencer::CloseSession {
                origin: None,
                session_id,
                cxid: 0,
            };
            if send(&shard, close).await.is_err() {
                return;
            }
        }
    }
}
