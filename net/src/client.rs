//! A small blocking client over `std::net`, for tests, tools and the load
//! generator. It speaks the same codec as the server and keeps the order of
//! replies: one call at a time, or pipelined with [`Client::send`] and
//! [`Client::recv`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use thiserror::Error;

use crate::consts::{limits, xid};
use crate::frame::{split_frame, write_frame, FrameError};
use crate::jute::{DecodeError, Jute};
use crate::message::{decode_reply, Request, Response};
use crate::records::{AuthPacket, ConnectRequest, ConnectResponse, ReplyHeader, WatcherEvent};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("malformed reply: {0}")]
    Decode(#[from] DecodeError),
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("session refused by the server (expired or invalid)")]
    SessionRefused,
    #[error("reply xid {got} does not match the oldest request xid {expected}")]
    OutOfOrder { expected: i32, got: i32 },
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Session parameters for a (re)connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub last_zxid_seen: i64,
    /// Send the trailing `readOnly` byte (3.5+ clients do; 3.4 clients don't).
    pub send_read_only: bool,
    /// What that byte says: the client accepts a read-only server
    /// (`canBeReadOnly`).
    pub can_be_read_only: bool,
    /// How long a read may block before the call fails.
    pub io_timeout: Duration,
    /// The largest reply taken; a larger one fails the call (a Java
    /// client's `jute.maxbuffer`).
    pub max_frame: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout_ms: 30_000,
            session_id: 0,
            passwd: vec![0; 16],
            last_zxid_seen: 0,
            send_read_only: true,
            can_be_read_only: false,
            io_timeout: Duration::from_secs(30),
            max_frame: limits::DEFAULT_MAX_BUFFER * 16,
        }
    }
}

/// One reply: its header and decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub header: ReplyHeader,
    pub body: Response,
}

/// The connection under the client: plain TCP, or TLS over it (the `tls`
/// feature, for `secureClientPort`).
enum Transport {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            Transport::Tls(s) => s.flush(),
        }
    }
}

pub struct Client {
    stream: Transport,
    session: ConnectResponse,
    next_xid: i32,
    /// (xid, opcode) of requests sent and not yet answered, oldest first.
    pending: VecDeque<(i32, i32)>,
    events: VecDeque<WatcherEvent>,
    inbuf: Vec<u8>,
    last_zxid: i64,
    max_frame: usize,
}

impl Client {
    pub fn connect(addr: SocketAddr, options: &ConnectOptions) -> Result<Client> {
        let stream = Self::tcp(addr, options)?;
        Self::open_session(Transport::Plain(stream), options)
    }

    /// As [`Client::connect`], over TLS (a `secureClientPort`); the server's
    /// certificate is checked against `server_name` by `config`.
    #[cfg(feature = "tls")]
    pub fn connect_tls(
        addr: SocketAddr,
        options: &ConnectOptions,
        config: std::sync::Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> Result<Client> {
        let stream = Self::tcp(addr, options)?;
        let conn = rustls::ClientConnection::new(config, server_name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut tls = rustls::StreamOwned::new(conn, stream);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Self::open_session(Transport::Tls(Box::new(tls)), options)
    }

    fn tcp(addr: SocketAddr, options: &ConnectOptions) -> Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&addr, options.io_timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(options.io_timeout))?;
        Ok(stream)
    }

    fn open_session(stream: Transport, options: &ConnectOptions) -> Result<Client> {
        let mut client = Client {
            stream,
            session: ConnectResponse::default(),
            next_xid: 1,
            pending: VecDeque::new(),
            events: VecDeque::new(),
            inbuf: Vec::with_capacity(64 * 1024),
            last_zxid: options.last_zxid_seen,
            max_frame: options.max_frame,
        };
        let request = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: options.last_zxid_seen,
            timeout: options.timeout_ms,
            session_id: options.session_id,
            passwd: options.passwd.clone(),
            read_only: options.send_read_only.then_some(options.can_be_read_only),
        };
        let mut out = Vec::new();
        write_frame(&mut out, |b| request.write(b));
        client.stream.write_all(&out)?;
        let payload = client.read_frame()?;
        let response = ConnectResponse::decode(&payload)?;
        if response.session_id == 0 || response.timeout <= 0 {
            return Err(ClientError::SessionRefused);
        }
        client.session = response;
        Ok(client)
    }

    pub fn session_id(&self) -> i64 {
        self.session.session_id
    }

    pub fn passwd(&self) -> &[u8] {
        &self.session.passwd
    }

    /// The server said it is read-only (it answers reads only).
    pub fn is_read_only(&self) -> bool {
        self.session.read_only == Some(true)
    }

    pub fn negotiated_timeout(&self) -> i32 {
        self.session.timeout
    }

    /// The highest zxid seen in a reply.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// Sends a request without waiting; returns its xid.
    pub fn send(&mut self, request: &Request) -> Result<i32> {
        let xid = match request {
            Request::Ping => xid::PING,
            Request::Auth(_) => xid::AUTH,
            Request::SetWatches(_) | Request::SetWatches2(_) => xid::SET_WATCHES,
            _ => {
                let x = self.next_xid;
                self.next_xid = self.next_xid.wrapping_add(1).max(1);
                x
            }
        };
        let mut out = Vec::new();
        write_frame(&mut out, |b| b.extend_from_slice(&request.encode(xid)));
        self.stream.write_all(&out)?;
        self.pending.push_back((xid, request.op()));
        Ok(xid)
    }

    /// Receives the reply to the oldest pending request, queueing any watch
    /// events that arrive first.
    pub fn recv(&mut self) -> Result<Reply> {
        loop {
            let payload = self.read_frame()?;
            let header = ReplyHeader::decode(payload.get(..16).unwrap_or(&payload))?;
            if header.xid == xid::NOTIFICATION {
                let (_, event) = split_notification(&payload)?;
                self.events.push_back(event);
                continue;
            }
            let Some((expected, op)) = self.pending.pop_front() else {
                return Err(ClientError::OutOfOrder {
                    expected: 0,
                    got: header.xid,
                });
            };
            if header.xid != expected {
                return Err(ClientError::OutOfOrder {
                    expected,
                    got: header.xid,
                });
            }
            let (header, body) = decode_reply(op, &payload)?;
            self.last_zxid = self.last_zxid.max(header.zxid);
            return Ok(Reply { header, body });
        }
    }

    /// Sends a request and waits for its reply.
    pub fn call(&mut self, request: &Request) -> Result<Reply> {
        self.send(request)?;
        self.recv()
    }

    /// Adds authentication (`addauth scheme auth`); returns the reply's error code.
    pub fn add_auth(&mut self, scheme: &str, auth: &[u8]) -> Result<i32> {
        let reply = self.call(&Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: scheme.to_owned(),
            auth: auth.to_vec(),
        }))?;
        Ok(reply.header.err)
    }

    /// Watch events received so far, oldest first.
    pub fn take_events(&mut self) -> Vec<WatcherEvent> {
        self.events.drain(..).collect()
    }

    /// Waits until at least one watch event has arrived (or the read times out).
    pub fn wait_event(&mut self) -> Result<WatcherEvent> {
        while self.events.is_empty() {
            let payload = self.read_frame()?;
            let (header, event) = split_notification(&payload)?;
            if header.xid != xid::NOTIFICATION {
                return Err(ClientError::OutOfOrder {
                    expected: xid::NOTIFICATION,
                    got: header.xid,
                });
            }
            self.events.push_back(event);
        }
        Ok(self.events.pop_front().expect("checked non-empty"))
    }

    /// Closes the session (closeSession request) and the connection.
    pub fn close(mut self) -> Result<()> {
        self.call(&Request::CloseSession)?;
        Ok(())
    }

    fn read_frame(&mut self) -> Result<Vec<u8>> {
        loop {
            if let Some((payload, used)) = split_frame(&self.inbuf, self.max_frame)? {
                let payload = payload.to_vec();
                self.inbuf.drain(..used);
                return Ok(payload);
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            self.inbuf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn split_notification(payload: &[u8]) -> Result<(ReplyHeader, WatcherEvent)> {
    let mut r = crate::jute::Reader::new(payload);
    let header = ReplyHeader::read(&mut r)?;
    let event = if header.xid == xid::NOTIFICATION {
        WatcherEvent::read(&mut r)?
    } else {
        WatcherEvent::default()
    };
    Ok((header, event))
}
