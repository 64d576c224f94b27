//! The peer port: one TCP connection dialed to each other member for what
//! this server sends, and the connections they dial for what it receives.
//! Frames are `consensus::PeerMsg`'s (length, CRC32C, body). Each dialed
//! connection starts with a `Hello` (protocol version, server id, a digest
//! of the member lines); the accepting side refuses a peer whose version or
//! configuration differs, or whose id is not a member, with a log line
//! saying which (with `reconfigEnabled` the lines may differ: the log
//! decides the membership, and a reconfig changes whom this server dials
//! and accepts, [`Outbound::set_members`]). A malformed frame closes that
//! connection only. What waits
//! to be sent to one peer is bounded ([`PEER_QUEUE`] frames); past it a
//! message is dropped, which raft tolerates (it resends).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::{TlsAcceptor, TlsConnector};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use rustls::pki_types::ServerName;
use zoocore_consensus::peer_msg::{PeerMsgError, FRAME_HEADER, MAX_FRAME, PROTOCOL_VERSION};
use zoocore_consensus::{Membership, PeerMsg};

/// Frames queued for one peer before new ones are dropped.
pub const PEER_QUEUE: usize = 4096;
/// Bytes written to a peer in one go.
const WRITE_CHUNK: usize = 256 << 10;
/// Reconnect backoff to a peer: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(20), Duration::from_millis(500));
/// A dial that takes longer fails.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Received messages waiting for the replica, from all peers together.
pub const INBOUND_QUEUE: usize = 4096;
/// Accepted peer connections open at once, per other member: a redial can
/// briefly overlap the connection it replaces; past this, new ones are
/// closed at once (each may buffer up to a frame of `MAX_FRAME`).
const CONNECTIONS_PER_PEER: usize = 2;
/// An accepted connection that has not said hello by then is closed.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Frames waiting for one peer's connection.
struct PeerQueue {
    addr: SocketAddr,
    frames: RefCell<VecDeque<Vec<u8>>>,
    wake: LocalSender<()>,
    /// The peer left the ensemble: its dialer ends.
    gone: std::cell::Cell<bool>,
}

/// The members this server talks to: a queue and a dialer per other
/// member, and the ids whose connections it accepts.
struct Peers {
    myid: u64,
    hello: PeerMsg,
    queues: HashMap<u64, Rc<PeerQueue>>,
    members: Vec<u64>,
    tls: Option<PeerTls>,
}

/// `sslQuorum`: both ends of every peer connection speak TLS, each member
/// presenting its certificate and checking the other's.
#[derive(Clone)]
pub struct PeerTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

/// Sends to peers; cheap to clone into the tasks that need it.
#[derive(Clone)]
pub struct Outbound {
    peers: Rc<RefCell<Peers>>,
}

impl Outbound {
    /// Queues a message for `to`; a full queue or an unknown peer drops it.
    pub fn send(&self, to: u64, msg: &PeerMsg) {
        let peers = self.peers.borrow();
        let Some(queue) = peers.queues.get(&to) else {
            return;
        };
        if queue.frames.borrow().len() >= PEER_QUEUE {
            return;
        }
        let mut frame = Vec::new();
        msg.encode(&mut frame);
        queue.frames.borrow_mut().push_back(frame);
        let _ = queue.wake.try_send(());
    }

    /// A reconfig committed: dial the members that joined (or moved), stop
    /// dialing those that left, and accept connections from the new set. A
    /// member whose address does not resolve is logged and left out.
    pub fn set_members(&self, membership: &Membership) {
        let mut peers = self.peers.borrow_mut();
        let myid = peers.myid;
        peers.members = membership.members().iter().map(|m| m.id).collect();
        let mut wanted = HashMap::new();
        for m in membership.members().iter().filter(|m| m.id != myid) {
            match resolve(m) {
                Ok(addr) => {
                    wanted.insert(m.id, addr);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a member of the new configuration cannot be dialed")
                }
            }
        }
        let stale: Vec<u64> = peers
            .queues
            .iter()
            .filter(|(id, q)| wanted.get(id) != Some(&q.addr))
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            if let Some(queue) = peers.queues.remove(&id) {
                queue.gone.set(true);
                let _ = queue.wake.try_send(());
            }
        }
        for (id, addr) in wanted {
            if !peers.queues.contains_key(&id) {
                let (hello, tls) = (peers.hello.clone(), peers.tls.clone());
                peers.queues.insert(id, spawn_dialer(id, addr, hello, tls));
            }
        }
    }
}

fn resolve(m: &zoocore_consensus::Member) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    (m.host.as_str(), m.peer_port)
        .to_socket_addrs()
        .map_err(|e| format!("server.{}: cannot resolve {}: {e}", m.id, m.host))?
        .next()
        .ok_or_else(|| format!("server.{}: {} resolves to no address", m.id, m.host))
}

/// Where each member listens, resolved once at start.
pub fn peer_addrs(membership: &Membership) -> Result<HashMap<u64, SocketAddr>, String> {
    let mut addrs = HashMap::new();
    for m in membership.members() {
        addrs.insert(m.id, resolve(m)?);
    }
    Ok(addrs)
}

fn spawn_dialer(id: u64, addr: SocketAddr, hello: PeerMsg, tls: Option<PeerTls>) -> Rc<PeerQueue> {
    let (wake, woken) = local_channel::new_bounded(1);
    let queue = Rc::new(PeerQueue {
        addr,
        frames: RefCell::new(VecDeque::new()),
        wake,
        gone: std::cell::Cell::new(false),
    });
    glommio::spawn_local(dial(id, hello, queue.clone(), woken, tls)).detach();
    queue
}

/// What the transport hands the replica.
pub enum PeerEvent {
    Message(u64, PeerMsg),
    /// The connection from this peer closed.
    Lost(u64),
}

/// Starts the listener and one dialer per peer on the current executor.
/// Received messages and lost connections arrive on the returned receiver.
/// `check_lines`: refuse a peer whose member lines differ (off with
/// `reconfigEnabled`, where they may).
pub fn start(
    myid: u64,
    membership: &Membership,
    addrs: &HashMap<u64, SocketAddr>,
    check_lines: bool,
    tls: Option<PeerTls>,
) -> Result<(Outbound, LocalReceiver<PeerEvent>), String> {
    let listen = *addrs.get(&myid).ok_or("this server has no peer address")?;
    let listener = TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen on peer port {listen}: {e}"))?;
    let (inbound_tx, inbound_rx) = local_channel::new_bounded(INBOUND_QUEUE);
    let inbound_tx = Rc::new(inbound_tx);
    let hello = PeerMsg::Hello {
        version: PROTOCOL_VERSION,
        server_id: myid,
        membership: membership.digest(),
    };
    let mut queues = HashMap::new();
    for (&id, &addr) in addrs {
        if id != myid {
            queues.insert(id, spawn_dialer(id, addr, hello.clone(), tls.clone()));
        }
    }
    let outbound = Outbound {
        peers: Rc::new(RefCell::new(Peers {
            myid,
            hello: hello.clone(),
            queues,
            members: membership.members().iter().map(|m| m.id).collect(),
            tls: tls.clone(),
        })),
    };
    let peers = outbound.peers.clone();
    let acceptor = tls.map(|t| TlsAcceptor::from(t.server));
    glommio::spawn_local(accept(
        listener,
        hello,
        peers,
        check_lines,
        inbound_tx,
        acceptor,
    ))
    .detach();
    Ok((outbound, inbound_rx))
}

/// Keeps a connection to one peer and writes its queue into it.
async fn dial(
    id: u64,
    hello: PeerMsg,
    queue: Rc<PeerQueue>,
    woken: LocalReceiver<()>,
    tls: Option<PeerTls>,
) {
    let addr = queue.addr;
    let mut backoff = BACKOFF.0;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        if queue.gone.get() {
            return;
        }
        let stream = match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).await {
            Ok(s) => s,
            Err(_) => {
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let written = match &tls {
            None => {
                tracing::info!(peer = id, %addr, "connected to peer");
                backoff = BACKOFF.0;
                pump(id, stream, &hello, &queue, &woken, &mut pending).await
            }
            Some(tls) => {
                let connector = TlsConnector::from(tls.client.clone());
                let name = ServerName::IpAddress(addr.ip().into());
                let handshake = async { Some(connector.connect(name, stream).await) };
                let timeout = async {
                    glommio::timer::sleep(HELLO_TIMEOUT).await;
                    None
                };
                match futures_lite::future::or(handshake, timeout).await {
                    Some(Ok(stream)) => {
                        tracing::info!(peer = id, %addr, "connected to peer over TLS");
                        backoff = BACKOFF.0;
                        pump(id, stream, &hello, &queue, &woken, &mut pending).await
                    }
                    outcome => {
                        let error = outcome.map_or("timed out".to_owned(), |r| {
                            r.err().map(|e| e.to_string()).unwrap_or_default()
                        });
                        tracing::warn!(peer = id, %addr, %error, "TLS handshake with peer failed");
                        glommio::timer::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF.1);
                        Pumped::Lost
                    }
                }
            }
        };
        if written == Pumped::Gone {
            return;
        }
    }
}

#[derive(PartialEq, Eq)]
enum Pumped {
    /// The connection broke: dial again.
    Lost,
    /// The peer left the configuration.
    Gone,
}

/// Writes the hello, then the queue, into one connection until it breaks.
async fn pump(
    id: u64,
    mut stream: impl futures_lite::AsyncWrite + Unpin,
    hello: &PeerMsg,
    queue: &PeerQueue,
    woken: &LocalReceiver<()>,
    pending: &mut Vec<u8>,
) -> Pumped {
    let mut first = Vec::new();
    hello.encode(&mut first);
    if stream.write_all(&first).await.is_err() {
        return Pumped::Lost;
    }
    loop {
        while pending.len() < WRITE_CHUNK {
            let Some(frame) = queue.frames.borrow_mut().pop_front() else {
                break;
            };
            pending.extend_from_slice(&frame);
        }
        if pending.is_empty() {
            if woken.recv().await.is_none() || queue.gone.get() {
                tracing::info!(peer = id, "no longer a member; not dialing it");
                return Pumped::Gone;
            }
            continue;
        }
        if let Err(e) = stream.write_all(pending).await {
            tracing::info!(peer = id, error = %e, "peer connection lost; redialing");
            // What was being written is dropped: raft sends again.
            pending.clear();
            return Pumped::Lost;
        }
        pending.clear();
    }
}

async fn accept(
    listener: TcpListener,
    hello: PeerMsg,
    peers: Rc<RefCell<Peers>>,
    check_lines: bool,
    inbound: Rc<LocalSender<PeerEvent>>,
    tls: Option<TlsAcceptor>,
) {
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let limit = CONNECTIONS_PER_PEER * peers.borrow().members.len().saturating_sub(1).max(1);
        match listener.accept().await {
            Ok(stream) if open.get() >= limit => {
                let from = stream.peer_addr().ok();
                tracing::warn!(?from, limit, "too many peer connections; closing a new one");
            }
            Ok(stream) => {
                let (hello, peers, inbound) = (hello.clone(), peers.clone(), inbound.clone());
                open.set(open.get() + 1);
                let open = open.clone();
                let tls = tls.clone();
                glommio::spawn_local(async move {
                    let mut from = None;
                    let _ = stream.set_nodelay(true);
                    let outcome = match tls {
                        None => {
                            receive(stream, &hello, &peers, check_lines, &inbound, &mut from).await
                        }
                        Some(acceptor) => {
                            let handshake = async { Some(acceptor.accept(stream).await) };
                            let timeout = async {
                                glommio::timer::sleep(HELLO_TIMEOUT).await;
                                None
                            };
                            match futures_lite::future::or(handshake, timeout).await {
                                Some(Ok(stream)) => {
                                    receive(
                                        stream,
                                        &hello,
                                        &peers,
                                        check_lines,
                                        &inbound,
                                        &mut from,
                                    )
                                    .await
                                }
                                Some(Err(e)) => {
                                    Err(format!("TLS handshake with a peer failed: {e}"))
                                }
                                None => Err("a peer's TLS handshake timed out".into()),
                            }
                        }
                    };
                    open.set(open.get() - 1);
                    if let Err(reason) = outcome {
                        tracing::warn!(%reason, "peer connection closed");
                    }
                    if let Some(peer) = from {
                        let _ = inbound.send(PeerEvent::Lost(peer)).await;
                    }
                })
                .detach();
            }
            Err(e) => tracing::warn!(error = %e, "peer accept failed"),
        }
    }
}

/// Reads one peer's frames until its connection ends; `Err` says why.
async fn receive(
    mut stream: impl futures_lite::AsyncRead + Unpin,
    ours: &PeerMsg,
    peers: &RefCell<Peers>,
    check_lines: bool,
    inbound: &LocalSender<PeerEvent>,
    from: &mut Option<u64>,
) -> Result<(), String> {
    // Silence before the hello ends the connection; after it, a member may
    // be idle as long as it likes (raft's heartbeats judge its health).
    let hello_by = std::time::Instant::now() + HELLO_TIMEOUT;
    let mut buf: Vec<u8> = vec![0; 64 << 10];
    let (mut start, mut filled) = (0usize, 0usize);
    loop {
        let decoded = PeerMsg::decode(&buf[start..filled]).map_err(|e| match e {
            PeerMsgError::TooLarge(_) | PeerMsgError::Checksum | PeerMsgError::Malformed(_) => {
                format!(
                    "bad frame from {}: {e}",
                    from.map_or("a peer".into(), |f| format!("server.{f}"))
                )
            }
        })?;
        let Some((msg, used)) = decoded else {
            if start > 0 {
                buf.copy_within(start..filled, 0);
                filled -= start;
                start = 0;
            }
            if filled == buf.len() {
                let grown = (buf.len() * 2).min(MAX_FRAME + FRAME_HEADER);
                if grown <= filled {
                    return Err("a frame larger than the limit".into());
                }
                buf.resize(grown, 0);
            }
            let read = async { Some(stream.read(&mut buf[filled..]).await) };
            let n = if from.is_none() {
                let silence = async {
                    glommio::timer::sleep(
                        hello_by.saturating_duration_since(std::time::Instant::now()),
                    )
                    .await;
                    None
                };
                futures_lite::future::or(read, silence).await
            } else {
                read.await
            }
            .ok_or("no hello in time")?
            .map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(());
            }
            filled += n;
            continue;
        };
        start += used;
        match (*from, msg) {
            (
                None,
                PeerMsg::Hello {
                    version,
                    server_id,
                    membership,
                },
            ) => {
                let PeerMsg::Hello {
                    membership: mine,
                    server_id: myid,
                    ..
                } = *ours
                else {
                    return Err("no hello of our own".into());
                };
                if version != PROTOCOL_VERSION {
                    return Err(format!(
                        "server.{server_id} speaks peer protocol {version}, this server {PROTOCOL_VERSION}: refusing it"
                    ));
                }
                if server_id == myid || !peers.borrow().members.contains(&server_id) {
                    return Err(format!(
                        "server id {server_id} is not another member of this ensemble: refusing it"
                    ));
                }
                if check_lines && membership != mine {
                    return Err(format!(
                        "server.{server_id}'s server.N lines differ from this server's (digest {membership:#x} vs {mine:#x}): \
                         refusing to form a quorum with it; make every member's configuration the same"
                    ));
                }
                *from = Some(server_id);
            }
            (None, _) => return Err("a peer spoke before its hello".into()),
            (Some(_), PeerMsg::Hello { .. }) => return Err("a second hello".into()),
            (Some(peer), msg) => {
                if inbound.send(PeerEvent::Message(peer, msg)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
