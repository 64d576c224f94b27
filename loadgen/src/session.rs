//! One ZooKeeper session on a non-blocking socket, plain or TLS: requests
//! are framed into an output buffer, replies are matched to requests in
//! order (the protocol answers a session's requests in the order it sent
//! them). Over TLS the handshake is done blocking at connect; afterwards
//! rustls only encrypts and decrypts between the buffers and the socket.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use zoocore_net::consts::xid;
use zoocore_net::frame::{split_frame, write_frame};
use zoocore_net::jute::{Jute, Reader};
use zoocore_net::records::{ConnectRequest, ConnectResponse, ReplyHeader, WatcherEvent};
use zoocore_net::{decode_reply, Request, Response};

use crate::stats::Class;

/// Replies larger than this close the session (a getChildren of a huge node).
const MAX_FRAME: usize = 16 << 20;
/// Initial receive buffer; it grows for larger frames.
const READ_BUFFER: usize = 64 * 1024;

/// What a sent request is, to file its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Counted in `Class`; nothing else to do with the reply.
    Measure(Class),
    /// A create whose reply names a node to delete next.
    CreateToDelete,
    /// Re-arming a watch (the watch workload): not measured.
    Arm,
    /// closeSession.
    Close,
}

pub struct Pending {
    pub xid: i32,
    pub op: i32,
    pub purpose: Purpose,
    /// When it was sent, or (open loop) when it was due to be sent.
    pub at: Instant,
}

/// What arrived on a session.
pub enum Incoming {
    /// The handshake, begun at `started`, was answered.
    Connected {
        started: Instant,
    },
    Reply {
        pending: Pending,
        err: i32,
        created: Option<String>,
    },
    Event(WatcherEvent),
}

pub struct Session {
    pub stream: TcpStream,
    tls: Option<Box<ClientConnection>>,
    out: Vec<u8>,
    /// Received bytes: `consumed..filled` is not parsed yet.
    inbuf: Vec<u8>,
    filled: usize,
    consumed: usize,
    pub pending: VecDeque<Pending>,
    /// Sent the ConnectRequest at this instant and has no answer yet.
    handshake: Option<Instant>,
    next_xid: i32,
}

impl Session {
    /// Connects (loopback connects complete at once), with `tls` shakes
    /// hands (the server's certificate must name `addr`'s IP address), and
    /// queues the ConnectRequest; `flush` sends it.
    pub fn connect(
        addr: SocketAddr,
        timeout_ms: i32,
        tls: Option<&Arc<ClientConfig>>,
    ) -> io::Result<Session> {
        let started = Instant::now();
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let tls = match tls {
            Some(config) => {
                let mut conn = ClientConnection::new(config.clone(), ServerName::from(addr.ip()))
                    .map_err(io::Error::other)?;
                while conn.is_handshaking() {
                    conn.complete_io(&mut stream)?;
                }
                Some(Box::new(conn))
            }
            None => None,
        };
        stream.set_nonblocking(true)?;
        let mut session = Session {
            stream: TcpStream::from_std(stream),
            tls,
            out: Vec::with_capacity(4096),
            inbuf: vec![0; READ_BUFFER],
            filled: 0,
            consumed: 0,
            pending: VecDeque::new(),
            handshake: Some(started),
            next_xid: 1,
        };
        let request = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout: timeout_ms,
            session_id: 0,
            passwd: vec![0; 16],
            read_only: Some(false),
        };
        write_frame(&mut session.out, |b| request.write(b));
        Ok(session)
    }

    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    pub fn is_connected(&self) -> bool {
        self.handshake.is_none()
    }

    /// Queues a request; it leaves with the next `flush`.
    pub fn send(&mut self, request: &Request, purpose: Purpose, at: Instant) {
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        write_frame(&mut self.out, |b| {
            zoocore_net::records::RequestHeader {
                xid,
                op: request.op(),
            }
            .write(b);
            request.write_body(b);
        });
        self.pending.push_back(Pending {
            xid,
            op: request.op(),
            purpose,
            at,
        });
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes what the socket takes now; the rest waits for the next
    /// writable event.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.tls.is_some() {
            return self.flush_tls();
        }
        let mut written = 0;
        while written < self.out.len() {
            match self.stream.write(&self.out[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.drain(..written);
        Ok(())
    }

    /// Encrypts as much of the output as rustls buffers and sends records
    /// until the socket is full or nothing is left.
    fn flush_tls(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        loop {
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if self.out.is_empty() {
                return Ok(());
            }
            let taken = tls.writer().write(&self.out)?;
            self.out.drain(..taken);
            if taken == 0 {
                return Ok(());
            }
        }
    }

    /// Reads everything the socket has (mio's events are edge-triggered)
    /// and hands each complete frame to `on`. `peer_closed` (the event said
    /// so) reads on to the end of the stream, which no later event announces.
    pub fn receive(
        &mut self,
        peer_closed: bool,
        mut on: impl FnMut(&mut Session, Incoming),
    ) -> io::Result<()> {
        // Frames that came before an end of stream are still answers.
        let ended = if self.tls.is_some() {
            self.read_tls()?
        } else {
            self.read_plain(peer_closed)
        };
        let now = Instant::now();
        while let Some(incoming) = self.next_frame(now)? {
            on(self, incoming);
        }
        if self.consumed == self.filled {
            self.consumed = 0;
            self.filled = 0;
        }
        ended.map_or(Ok(()), Err)
    }

    /// Room at the end of the receive buffer: moves unparsed bytes to the
    /// front, or grows it for a frame larger than the buffer (bounded by
    /// MAX_FRAME when parsed).
    fn make_room(&mut self) {
        if self.filled == self.inbuf.len() {
            if self.consumed > 0 {
                self.inbuf.copy_within(self.consumed..self.filled, 0);
                self.filled -= self.consumed;
                self.consumed = 0;
            } else {
                self.inbuf.resize(self.inbuf.len() * 2, 0);
            }
        }
    }

    /// Reads the socket dry; the error that ended the stream, if it ended.
    fn read_plain(&mut self, peer_closed: bool) -> Option<io::Error> {
        loop {
            self.make_room();
            match self.stream.read(&mut self.inbuf[self.filled..]) {
                Ok(0) => return Some(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.filled += n;
                    // A short read drained the socket: no need for the EAGAIN read.
                    if self.filled < self.inbuf.len() && !peer_closed {
                        return None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(e),
            }
        }
    }

    /// Reads the socket dry through rustls, decrypting into the receive
    /// buffer; the error that ended the stream, if it ended. A record that
    /// does not decrypt is an error of the session.
    fn read_tls(&mut self) -> io::Result<Option<io::Error>> {
        let Some(mut tls) = self.tls.take() else {
            return Ok(None);
        };
        let result = self.read_through(&mut tls);
        self.tls = Some(tls);
        result
    }

    fn read_through(&mut self, tls: &mut ClientConnection) -> io::Result<Option<io::Error>> {
        loop {
            let ended = match tls.read_tls(&mut self.stream) {
                Ok(0) => Some(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Some(e),
            };
            tls.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            loop {
                self.make_room();
                match tls.reader().read(&mut self.inbuf[self.filled..]) {
                    Ok(0) => return Ok(Some(io::ErrorKind::UnexpectedEof.into())),
                    Ok(n) => self.filled += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Ok(Some(e)),
                }
            }
            if ended.is_some() {
                return Ok(ended);
            }
        }
    }

    fn next_frame(&mut self, now: Instant) -> io::Result<Option<Incoming>> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
        let Some((payload, used)) = split_frame(&self.inbuf[self.consumed..self.filled], MAX_FRAME)
            .map_err(|e| invalid(e.to_string()))?
        else {
            return Ok(None);
        };
        let incoming = if self.handshake.is_some() {
            let response = ConnectResponse::decode(payload).map_err(|e| invalid(e.to_string()))?;
            if response.session_id == 0 || response.timeout <= 0 {
                return Err(invalid("session refused".into()));
            }
            let started = self.handshake.take().unwrap_or(now);
            Incoming::Connected { started }
        } else {
            let mut r = Reader::new(payload);
            let header = ReplyHeader::read(&mut r).map_err(|e| invalid(e.to_string()))?;
            if header.xid == xid::NOTIFICATION {
                Incoming::Event(WatcherEvent::read(&mut r).map_err(|e| invalid(e.to_string()))?)
            } else {
                let pending = self
                    .pending
                    .pop_front()
                    .filter(|p| p.xid == header.xid)
                    .ok_or_else(|| invalid(format!("unexpected reply xid {}", header.xid)))?;
                let created = match pending.purpose {
                    Purpose::CreateToDelete if header.err == 0 => {
                        match decode_reply(pending.op, payload) {
                            Ok((_, Response::Create(path))) => Some(path),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                Incoming::Reply {
                    pending,
                    err: header.err,
                    created,
                }
            }
        };
        self.consumed += used;
        Ok(Some(incoming))
    }
}
