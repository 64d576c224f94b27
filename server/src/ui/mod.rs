//! The web tree browser at `/ui/` on the admin port (`admin.ui.enabled`,
//! on whenever the admin server is; `admin.ui.readOnly`).
//!
//! The admin server reads a request's head on shard 0 and hands a `/ui`
//! connection to a thread of its own (at most `MAX_CONNECTIONS` at once),
//! so nothing the UI does waits on an executor. Each browser gets a cookie
//! and, behind it, a ZooKeeper session this process opens on its own client
//! port: the UI sees exactly what a client with the browser's identities
//! sees, ACLs, versions and all. The pages are files embedded in the binary
//! (`assets/`), plain HTML, CSS and JavaScript with no build step.

mod api;
pub mod http;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zoocore_net::client::{Client, ClientError, ConnectOptions, Reply};
use zoocore_net::records::AddWatchRequest;
use zoocore_net::{AddWatchMode, EventType, Request};

use crate::config::Config;
use http::Response;

/// UI connections served at once; more get 503.
const MAX_CONNECTIONS: usize = 32;
/// Browser sessions kept; the least recently used goes first.
const MAX_BROWSERS: usize = 256;
/// The cookie naming a browser's session.
const COOKIE: &str = "zoocore_ui";
/// The ZooKeeper session timeout the UI asks for; a session idle longer is
/// expired by the server and opened again on the next request.
const SESSION_TIMEOUT_MS: i32 = 30_000;
/// How long one ZooKeeper call may take before the request fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest reply a UI session takes: the children of a node with a
/// few million of them (ZooKeeper's Java client would need jute.maxbuffer
/// raised as far).
const MAX_REPLY: usize = 128 << 20;
/// Paths one live-update stream watches at most.
const MAX_WATCHED: usize = 64;
/// How often a quiet live-update stream pings its session and sends the
/// browser a comment (a closed tab shows as a failed write).
const KEEPALIVE: Duration = Duration::from_secs(5);

/// The pages, embedded.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/ui/",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "/ui/app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "/ui/app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
];

pub struct Ui {
    /// Where the UI's ZooKeeper sessions connect: this member's client port.
    client_addr: SocketAddr,
    read_only: bool,
    browsers: Mutex<HashMap<String, Arc<Mutex<Browser>>>>,
    active: AtomicUsize,
}

/// What the UI keeps for one browser.
struct Browser {
    /// Sent back with every mutating request (cross-site request forgery
    /// protection: another site's page cannot read it).
    csrf: String,
    client: Option<Client>,
    /// The `addauth`s the browser made, replayed on a new ZooKeeper session.
    auths: Vec<(String, Vec<u8>)>,
    /// The last listing paged through, so later pages need no new fetch
    /// while the node's children are unchanged.
    listing: Option<api::Listing>,
    last_used: Instant,
}

impl Ui {
    /// The UI for this config, or `None` when the admin server or the UI is
    /// off.
    pub fn new(config: &Config) -> Option<Arc<Ui>> {
        if config.admin_addr.is_none() || !config.ui.enabled {
            return None;
        }
        let mut client_addr = config.client_addr();
        if client_addr.ip().is_unspecified() {
            client_addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Some(Arc::new(Ui {
            client_addr,
            read_only: config.ui.read_only,
            browsers: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
        }))
    }

    /// Serves one connection whose request head is `head`, on a thread of
    /// its own; refused with 503 when `MAX_CONNECTIONS` are being served.
    pub fn take(self: &Arc<Self>, mut stream: TcpStream, head: Vec<u8>) {
        if self.active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            self.active.fetch_sub(1, Ordering::AcqRel);
            http::write_response(
                &mut stream,
                &Response::error("503 Service Unavailable", "the UI is busy"),
            );
            return;
        }
        let ui = self.clone();
        let spawned = std::thread::Builder::new()
            .name("ui".into())
            .spawn(move || {
                ui.serve(stream, head);
                ui.active.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            self.active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(error = %e, "cannot start a UI thread");
        }
    }

    fn serve(&self, mut stream: TcpStream, head: Vec<u8>) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(CALL_TIMEOUT));
        let response = match http::read_request(&mut stream, head) {
            Ok(request) if request.method == "GET" && request.path == "/ui/api/events" => {
                if let Err(refusal) = self.stream_events(&mut stream, &request) {
                    http::write_response(&mut stream, &refusal);
                }
                return;
            }
            Ok(request) => self.route(&request),
            Err(refusal) => refusal,
        };
        http::write_response(&mut stream, &response);
    }

    /// Live updates: server-sent events, one per change of the `path`s the
    /// page shows (the open node, the expanded ones), from persistent
    /// watches on a ZooKeeper session of the stream's own with the
    /// browser's identities. Runs until the browser goes away.
    fn stream_events(
        &self,
        stream: &mut TcpStream,
        request: &http::Request,
    ) -> Result<(), Response> {
        let paths: Vec<&str> = request
            .query
            .iter()
            .filter(|(k, _)| k == "path")
            .map(|(_, v)| v.as_str())
            .take(MAX_WATCHED)
            .collect();
        let auths = match request
            .cookie(COOKIE)
            .and_then(|c| lock(&self.browsers).get(c).cloned())
        {
            Some(browser) => lock(&browser).auths.clone(),
            None => return Err(Response::error("403 Forbidden", "no UI session")),
        };
        let options = ConnectOptions {
            timeout_ms: SESSION_TIMEOUT_MS,
            io_timeout: KEEPALIVE,
            ..ConnectOptions::default()
        };
        let unavailable = |e: String| Response::error("503 Service Unavailable", &e);
        let mut client = Client::connect(self.client_addr, &options)
            .map_err(|e| unavailable(format!("cannot open a session: {e}")))?;
        for (scheme, auth) in &auths {
            client
                .add_auth(scheme, auth)
                .map_err(|e| unavailable(format!("addauth {scheme}: {e}")))?;
        }
        for path in &paths {
            let watch = Request::AddWatch(AddWatchRequest {
                path: (*path).to_owned(),
                mode: AddWatchMode::Persistent as i32,
            });
            client
                .call(&watch)
                .map_err(|e| unavailable(format!("addWatch {path}: {e}")))?;
        }
        // The first event says the watches are set: changes from here on
        // are reported.
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                    Connection: close\r\n\r\nretry: 2000\n\ndata: {\"type\":\"Watching\",\"path\":\"\"}\n\n";
        if stream.write_all(head.as_bytes()).is_err() {
            return Ok(());
        }
        loop {
            let line = match client.wait_event() {
                Ok(event) => {
                    let kind = EventType::from_i32(event.event_type)
                        .map_or_else(|| event.event_type.to_string(), |t| format!("{t:?}"));
                    let data = serde_json::json!({ "type": kind, "path": event.path });
                    format!("data: {data}\n\n")
                }
                Err(ClientError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if client.call(&Request::Ping).is_err() {
                        break;
                    }
                    ": keepalive\n\n".to_owned()
                }
                Err(_) => break,
            };
            if stream.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
        let _ = client.close();
        Ok(())
    }

    fn route(&self, request: &http::Request) -> Response {
        let path = if request.path == "/ui" {
            "/ui/"
        } else {
            request.path.as_str()
        };
        if let Some((_, kind, body)) = ASSETS.iter().find(|(p, _, _)| *p == path) {
            if request.method != "GET" {
                return Response::error("405 Method Not Allowed", "GET only");
            }
            return Response::new("200 OK", kind, *body);
        }
        let Some(call) = path.strip_prefix("/ui/api/") else {
            return Response::error("404 Not Found", "no such page");
        };
        let (token, browser) = match self.browser(request.cookie(COOKIE)) {
            Ok(found) => found,
            Err(refusal) => return refusal,
        };
        let mut browser = lock(&browser);
        browser.last_used = Instant::now();
        let response = api::handle(self, &mut browser, call, request);
        // A new browser (or one whose session was dropped) gets its cookie;
        // SameSite=Strict keeps other sites' requests from carrying it.
        if request.cookie(COOKIE) != Some(token.as_str()) {
            response.with_header(
                "Set-Cookie",
                format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict"),
            )
        } else {
            response
        }
    }

    /// The browser behind `cookie`, or a new one (the least recently used
    /// is dropped when there are `MAX_BROWSERS`).
    fn browser(&self, cookie: Option<&str>) -> Result<(String, Arc<Mutex<Browser>>), Response> {
        let mut browsers = lock(&self.browsers);
        if let Some(found) = cookie.and_then(|c| Some((c, browsers.get(c)?.clone()))) {
            return Ok((found.0.to_owned(), found.1));
        }
        if browsers.len() >= MAX_BROWSERS {
            let oldest = browsers
                .iter()
                .min_by_key(|(_, b)| b.try_lock().map_or(Instant::now(), |b| b.last_used))
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                browsers.remove(&oldest);
            }
        }
        let no_randomness =
            |e| Response::error("500 Internal Server Error", &format!("no randomness: {e}"));
        let token = random_token().map_err(no_randomness)?;
        let browser = Arc::new(Mutex::new(Browser {
            csrf: random_token().map_err(no_randomness)?,
            client: None,
            auths: Vec::new(),
            listing: None,
            last_used: Instant::now(),
        }));
        browsers.insert(token.clone(), browser.clone());
        Ok((token, browser))
    }
}

impl Browser {
    /// Sends `request` on the browser's ZooKeeper session, opening it (and
    /// replaying its auths) first if there is none; a read that finds the
    /// connection gone is tried once more on a new session.
    fn call(&mut self, ui: &Ui, request: &Request, retry: bool) -> Result<Reply, String> {
        let first = self.session(ui).and_then(|c| {
            c.call(request)
                .map_err(|e| format!("ZooKeeper call failed: {e}"))
        });
        match first {
            Ok(reply) => Ok(reply),
            Err(_) if retry => {
                self.client = None;
                self.session(ui)?
                    .call(request)
                    .map_err(|e| format!("ZooKeeper call failed: {e}"))
            }
            Err(e) => {
                self.client = None;
                Err(e)
            }
        }
    }

    /// Sends reads back to back and takes their replies in order (one
    /// round trip), retried once on a new session like `call`.
    fn pipeline(&mut self, ui: &Ui, requests: &[Request]) -> Result<Vec<Reply>, String> {
        let attempt = |browser: &mut Browser| -> Result<Vec<Reply>, String> {
            let client = browser.session(ui)?;
            let failed = |e| format!("ZooKeeper call failed: {e}");
            for request in requests {
                client.send(request).map_err(failed)?;
            }
            requests
                .iter()
                .map(|_| client.recv().map_err(failed))
                .collect()
        };
        attempt(self).or_else(|_| {
            self.client = None;
            let result = attempt(self);
            if result.is_err() {
                self.client = None;
            }
            result
        })
    }

    fn session(&mut self, ui: &Ui) -> Result<&mut Client, String> {
        if self.client.is_none() {
            let options = ConnectOptions {
                timeout_ms: SESSION_TIMEOUT_MS,
                io_timeout: CALL_TIMEOUT,
                max_frame: MAX_REPLY,
                ..ConnectOptions::default()
            };
            let mut client = Client::connect(ui.client_addr, &options)
                .map_err(|e| format!("cannot open a session on {}: {e}", ui.client_addr))?;
            for (scheme, auth) in &self.auths {
                client
                    .add_auth(scheme, auth)
                    .map_err(|e| format!("addauth {scheme}: {e}"))?;
            }
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| "no ZooKeeper session".to_owned())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// 128 random bits as hex.
fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
