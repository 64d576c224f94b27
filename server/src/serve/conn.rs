//! A client connection: accept, the read loop that frames and decodes
//! requests, and the write loop that flushes what the shard queued for it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::{TcpListener, TcpStream};
use zoocore_engine::acl::Identity;
use zoocore_net::frame::{four_letter_word, split_frame};

use super::request::{answer_word, handle_request};
use super::sessions::connect;
use super::{Conn, Shard};
use crate::stats::ClientStats;
use crate::tls::ServerTls;

pub(super) async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let Some(peer_addr) = admit(&shard, &stream) else {
        return;
    };
    let fd = stream.as_raw_fd();
    serve_stream(shard, stream, fd, peer_addr, None).await;
}

/// `maxClientCnxns` per address, counted from the accept on (a TLS
/// handshake holds its place too); the connection's end releases it.
fn admit(shard: &Shard, stream: &TcpStream) -> Option<std::net::SocketAddr> {
    let peer_addr = stream.peer_addr().ok()?;
    let peer_ip = peer_addr.ip();
    if !shard.stats.admit(peer_ip, shard.config.max_client_cnxns) {
        tracing::warn!(%peer_ip, limit = shard.config.max_client_cnxns, "too many connections from one address");
        return None;
    }
    let _ = stream.set_nodelay(true);
    Some(peer_addr)
}

/// Accepts on `secureClientPort`: every connection speaks TLS.
pub(super) async fn accept_tls(shard: Rc<Shard>, listener: TcpListener, tls: Arc<ServerTls>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(serve_tls(shard.clone(), stream, tls.clone())).detach();
            }
            Err(e) => tracing::warn!(error = %e, "accept failed on the secure client port"),
        }
    }
}

/// `client.portUnification` on the client port: a connection whose first
/// byte is a TLS handshake record is served over TLS, any other in the
/// clear (ZooKeeper's unified port reads the same byte).
pub(super) async fn serve_either(shard: Rc<Shard>, stream: TcpStream, tls: Arc<ServerTls>) {
    const TLS_HANDSHAKE_RECORD: u8 = 0x16;
    let limit = shard.config.tls.handshake_timeout();
    let mut first = [0u8; 1];
    let peek = async { Some(stream.peek(&mut first).await) };
    let timeout = async {
        glommio::timer::sleep(limit).await;
        None
    };
    match futures_lite::future::or(peek, timeout).await {
        Some(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => serve_tls(shard, stream, tls).await,
        Some(Ok(1)) => serve(shard, stream).await,
        _ => {}
    }
}

/// One TLS connection: the handshake, bounded by
/// `ssl.handshakeDetectionTimeoutMillis`, then the same protocol as on the
/// client port, with the `x509` identity of a verified client certificate.
/// A stalled or failed handshake drops that connection only.
async fn serve_tls(shard: Rc<Shard>, stream: TcpStream, tls: Arc<ServerTls>) {
    let Some(peer_addr) = admit(&shard, &stream) else {
        return;
    };
    // The configuration as it is now: a reloaded certificate serves the
    // connections accepted after the reload.
    let acceptor = TlsAcceptor::from(tls.current());
    let fd = stream.as_raw_fd();
    let limit = shard.config.tls.handshake_timeout();
    let handshake = async { Some(acceptor.accept(stream).await) };
    let timeout = async {
        glommio::timer::sleep(limit).await;
        None
    };
    let tls = match futures_lite::future::or(handshake, timeout).await {
        Some(Ok(tls)) => tls,
        Some(Err(e)) => {
            tracing::warn!(peer = %peer_addr, error = %e, "TLS handshake failed");
            shard.stats.release(peer_addr.ip());
            return;
        }
        None => {
            tracing::warn!(peer = %peer_addr, ?limit, "TLS handshake not finished in time; dropped");
            shard.stats.release(peer_addr.ip());
            return;
        }
    };
    let x509 = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(crate::tls::x509_id);
    serve_stream(shard, tls, fd, peer_addr, x509).await;
}

/// Serves an admitted connection until it ends.
async fn serve_stream(
    shard: Rc<Shard>,
    stream: impl futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
    fd: i32,
    peer_addr: std::net::SocketAddr,
    x509: Option<String>,
) {
    let peer_ip = peer_addr.ip();
    let mut identity = Identity::from_ip(&peer_ip.to_string());
    if let Some(id) = x509 {
        let is_super = shard.config.security.x509_super_user.as_deref() == Some(id.as_str());
        identity.add_x509(&id, is_super);
    }
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let (out_ready, out_rx) = local_channel::new_bounded(1);
    let (done, done_rx) = local_channel::new_bounded(16);
    let id = shard.next_conn.get();
    shard.next_conn.set(id + 1);
    let conn = Rc::new(Conn {
        id,
        fd,
        peer_ip,
        session_id: Cell::new(0),
        identity: RefCell::new(Arc::new(identity)),
        out: RefCell::new(Vec::new()),
        out_limit: super::output_limit(shard.config.jute_max_buffer),
        out_ready,
        inflight: RefCell::new(VecDeque::new()),
        done,
        closing: Cell::new(false),
        read_only_byte: Cell::new(false),
        read_only_session: Cell::new(false),
        catching_up: Cell::new(false),
        sasl: RefCell::new(None),
        counters: Arc::new(ClientStats::new(peer_addr, shard.stats.started)),
    });
    shard
        .stats
        .add_client(shard.index, id, conn.counters.clone());
    shard.conns.borrow_mut().insert(id, conn.clone());
    let writer_conn = conn.clone();
    let writer_task = glommio::spawn_local(async move {
        write_loop(&writer_conn, &mut writer, out_rx).await;
        // Wake the reader: the connection is over.
        // SAFETY: shutdown on a socket fd this connection still owns.
        unsafe { libc::shutdown(writer_conn.fd, libc::SHUT_RDWR) };
    });
    if let Err(reason) = read_loop(&shard, &conn, &mut reader, &done_rx).await {
        tracing::debug!(conn = id, %reason, "connection closed");
    }
    conn.close();
    writer_task.await;
    forget_connection(&shard, &conn);
}

pub(super) async fn write_loop(
    conn: &Conn,
    writer: &mut (impl futures_lite::AsyncWrite + Unpin),
    out_rx: LocalReceiver<()>,
) {
    loop {
        let bytes = std::mem::take(&mut *conn.out.borrow_mut());
        if !bytes.is_empty() && writer.write_all(&bytes).await.is_err() {
            return;
        }
        if conn.closing.get() && conn.out.borrow().is_empty() {
            let _ = writer.flush().await;
            return;
        }
        // Not `borrow()` inside the condition: its guard would live across the await.
        let idle = conn.out.borrow().is_empty();
        if idle && out_rx.recv().await.is_none() {
            return;
        }
    }
}

pub(super) fn forget_connection(shard: &Shard, conn: &Conn) {
    shard.conns.borrow_mut().remove(&conn.id);
    // Nobody will answer these now.
    let unanswered = conn.inflight.borrow_mut().drain(..).count();
    shard
        .counters()
        .outstanding
        .fetch_sub(unanswered as i64, std::sync::atomic::Ordering::Relaxed);
    shard.stats.remove_client(shard.index, conn.id);
    shard.opening.borrow_mut().remove(&conn.id);
    shard.watches.borrow_mut().remove_watcher(conn.id);
    if let Some(s) = shard.sessions.borrow_mut().get_mut(&conn.session_id.get()) {
        if s.conn == Some(conn.id) {
            s.conn = None;
        }
    }
    shard.stats.release(conn.peer_ip);
}

/// What a connection's receive buffer starts with and shrinks back to; it
/// grows for a larger frame, up to `jute.maxbuffer`.
pub(super) const RECEIVE_BUFFER: usize = 16 * 1024;

/// Reads frames until the connection ends; `Err` says why it was closed.
/// Frames are decoded where they were read: `start..filled` of the buffer is
/// not handled yet.
pub(super) async fn read_loop(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    reader: &mut (impl futures_lite::AsyncRead + Unpin),
    done_rx: &LocalReceiver<()>,
) -> Result<(), String> {
    let max = shard.config.jute_max_buffer;
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    let (mut start, mut filled) = (0, 0);
    let mut connected = false;
    loop {
        if conn.closing.get() {
            return Ok(());
        }
        if !connected {
            if let Some(first) = buf[start..filled].first_chunk::<4>() {
                if let Some(word) = four_letter_word(first) {
                    conn.raw(answer_word(shard, word).await.as_bytes());
                    return Ok(());
                }
            }
        }
        let frame = split_frame(&buf[start..filled], max).map_err(|e| {
            tracing::warn!(conn = conn.id, error = %e, "closing connection");
            e.to_string()
        })?;
        let Some((payload, used)) = frame else {
            if start > 0 {
                buf.copy_within(start..filled, 0);
                filled -= start;
                start = 0;
            }
            if filled == buf.len() {
                // A frame larger than the buffer; split_frame bounds it by jute.maxbuffer.
                let grown = (buf.len() * 2).min(max + zoocore_net::frame::LENGTH_PREFIX);
                buf.resize(grown.max(filled + 1), 0);
            }
            let n = reader
                .read(&mut buf[filled..])
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("peer closed".into());
            }
            filled += n;
            continue;
        };
        if connected {
            handle_request(shard, conn, payload, done_rx).await?;
        } else {
            connect(shard, conn, payload, done_rx).await?;
            connected = true;
        }
        start += used;
        if start == filled {
            (start, filled) = (0, 0);
            if buf.len() > RECEIVE_BUFFER {
                buf.truncate(RECEIVE_BUFFER);
                buf.shrink_to_fit();
            }
        }
    }
}
