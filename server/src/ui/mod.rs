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
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use zoocore_net::client::{Client, ClientError, ConnectOptions, Reply};
use zoocore_net::records::AddWatchRequest;
use zoocore_net::{AddWatchMode, EventType, Request};

use crate::config::Config;
use http::Response;

/// UI connections served at once; more get 503.
const MAX_CONNECTIONS: usize = 32;
/// Live-update streams at once (each holds a connection and a ZooKeeper
/// session); more get 503.
const MAX_STREAMS: usize = 8;
/// Browser sessions kept; the least recently used goes first. With the
/// streams, the UI's ZooKeeper connections from this host stay under
/// ZooKeeper's default `maxClientCnxns` of 60.
const MAX_BROWSERS: usize = 32;
/// The auth scheme by which the UI's sessions say which browser they speak
/// for: `<secret> <browser ip>`, accepted only from this host with this
/// process's secret (`serve/request.rs`). The session's `ip` identity is
/// then the browser's, so `ip` ACLs hold for browsers as for clients.
pub const PROXY_SCHEME: &str = "zoocore-ui";
static SECRET: OnceLock<String> = OnceLock::new();
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
    /// `admin.ui.allowedHosts`: host names a request's `Host` may carry
    /// besides IP addresses and `localhost` (no DNS rebinding).
    allowed_hosts: Vec<String>,
    browsers: Mutex<HashMap<String, Arc<Mutex<Browser>>>>,
    active: AtomicUsize,
    streams: AtomicUsize,
    /// Children names kept in all browsers' listings, against
    /// `api::MAX_KEPT_NAMES`.
    kept_names: Arc<AtomicUsize>,
}

/// Gives back a counted slot when dropped, panic or not.
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    fn take(counter: &'a AtomicUsize, limit: usize) -> Option<Slot<'a>> {
        if counter.fetch_add(1, Ordering::AcqRel) >= limit {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(counter))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The browser a proxied session speaks for, if `auth` carries this
/// process's secret.
pub fn proxied_ip(auth: &[u8]) -> Option<IpAddr> {
    let secret = SECRET.get()?;
    let (given, ip) = std::str::from_utf8(auth).ok()?.split_once(' ')?;
    (given == secret).then(|| ip.parse().ok()).flatten()
}

/// What the UI keeps for one browser.
struct Browser {
    /// The address the browser came from; its cookie is good from there only.
    remote: IpAddr,
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
        let secret = match random_token() {
            Ok(secret) => secret,
            Err(e) => {
                tracing::error!(error = %e, "no randomness for the web UI's secret; the UI is off");
                return None;
            }
        };
        SECRET.get_or_init(|| secret);
        Some(Arc::new(Ui {
            client_addr,
            read_only: config.ui.read_only,
            allowed_hosts: config.ui.allowed_hosts.clone(),
            browsers: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
            kept_names: Arc::new(AtomicUsize::new(0)),
        }))
    }

    /// Serves one connection whose request head is `head`, on a thread of
    /// its own; refused with 503 when `MAX_CONNECTIONS` are being served.
    pub fn take(self: &Arc<Self>, mut stream: TcpStream, head: Vec<u8>) {
        if self.active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            http::write_response(
                &mut stream,
                &Response::error("503 Service Unavailable", "the UI is busy"),
            );
            return;
        }
        let ui = self.clone();
        let spawned =
            std::thread::Builder::new()
                .name("ui".into())
                .spawn(move || match Slot::take(&ui.active, MAX_CONNECTIONS) {
                    Some(_slot) => ui.serve(stream, head),
                    None => http::write_response(
                        &mut stream,
                        &Response::error("503 Service Unavailable", "the UI is busy"),
                    ),
                });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a UI thread");
        }
    }

    fn serve(&self, mut stream: TcpStream, head: Vec<u8>) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(CALL_TIMEOUT));
        let _ = stream.set_write_timeout(Some(CALL_TIMEOUT));
        let Ok(peer) = stream.peer_addr() else {
            return;
        };
        let response = match http::read_request(&mut stream, head) {
            Ok(request) if !self.host_allowed(request.header("host")) => Response::error(
                "403 Forbidden",
                "this Host is not the server's (admin.ui.allowedHosts)",
            ),
            Ok(request) if request.method == "GET" && request.path == "/ui/api/events" => {
                let Some(_slot) = Slot::take(&self.streams, MAX_STREAMS) else {
                    let busy = Response::error("503 Service Unavailable", "too many live streams");
                    http::write_response(&mut stream, &busy);
                    return;
                };
                if let Err(refusal) = self.stream_events(&mut stream, &request, peer.ip()) {
                    http::write_response(&mut stream, &refusal);
                }
                return;
            }
            Ok(request) => self.route(&request, peer.ip()),
            Err(refusal) => refusal,
        };
        http::write_response(&mut stream, &response);
    }

    /// A request's `Host` must name this server: an IP address, `localhost`,
    /// or a name of `admin.ui.allowedHosts`. A page whose own name was made
    /// to resolve here (DNS rebinding) is refused.
    fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return false;
        };
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').map_or(host, |(name, _)| name),
        };
        name.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Live updates: server-sent events, one per change of the `path`s the
    /// page shows (the open node, the expanded ones), from persistent
    /// watches on a ZooKeeper session of the stream's own with the
    /// browser's identities. Runs until the browser goes away.
    fn stream_events(
        &self,
        stream: &mut TcpStream,
        request: &http::Request,
        remote: IpAddr,
    ) -> Result<(), Response> {
        let paths: Vec<&str> = request
            .query
            .iter()
            .filter(|(k, _)| k == "path")
            .map(|(_, v)| v.as_str())
            .take(MAX_WATCHED)
            .collect();
        let browser = self
            .known_browser(request.cookie(COOKIE), remote)
            .ok_or_else(|| Response::error("403 Forbidden", NO_SESSION))?;
        let auths = lock(&browser).auths.clone();
        let unavailable = |e: String| Response::error("503 Service Unavailable", &e);
        let mut client = self
            .open_session(remote, KEEPALIVE, &auths)
            .map_err(unavailable)?;
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
        let mut pinged = Instant::now();
        loop {
            let mut line = match client.wait_event() {
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
                    String::new()
                }
                Err(_) => break,
            };
            // Pinged on a clock, not only when quiet: a steady flow of
            // events sends no request, and the session would expire.
            if pinged.elapsed() >= KEEPALIVE {
                if client.call(&Request::Ping).is_err() {
                    break;
                }
                pinged = Instant::now();
                line.push_str(": keepalive\n\n");
            }
            if !line.is_empty() && stream.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
        let _ = client.close();
        Ok(())
    }

    fn route(&self, request: &http::Request, remote: IpAddr) -> Response {
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
        let cookie = request.cookie(COOKIE);
        // Only the page's session call makes a browser: other calls cannot
        // open ZooKeeper sessions (or push real users out) by the thousand.
        let (token, browser) = match self.known_browser(cookie, remote) {
            Some(browser) => (cookie.unwrap_or_default().to_owned(), browser),
            None if call == "session" && request.method == "GET" => {
                match self.new_browser(remote) {
                    Ok(found) => found,
                    Err(refusal) => return refusal,
                }
            }
            None => return Response::error("403 Forbidden", NO_SESSION),
        };
        let mut browser = lock(&browser);
        browser.last_used = Instant::now();
        let response = api::handle(self, &mut browser, call, request);
        // SameSite=Strict keeps other sites' requests from carrying it.
        if cookie != Some(token.as_str()) {
            response.with_header(
                "Set-Cookie",
                format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict"),
            )
        } else {
            response
        }
    }

    /// The browser behind `cookie`, if it came from `remote`.
    fn known_browser(&self, cookie: Option<&str>, remote: IpAddr) -> Option<Arc<Mutex<Browser>>> {
        let browser = lock(&self.browsers).get(cookie?)?.clone();
        let same = lock(&browser).remote == remote;
        same.then_some(browser)
    }

    /// A new browser (the least recently used is dropped when there are
    /// `MAX_BROWSERS`).
    fn new_browser(&self, remote: IpAddr) -> Result<(String, Arc<Mutex<Browser>>), Response> {
        let no_randomness =
            |e| Response::error("500 Internal Server Error", &format!("no randomness: {e}"));
        let token = random_token().map_err(no_randomness)?;
        let browser = Arc::new(Mutex::new(Browser {
            remote,
            csrf: random_token().map_err(no_randomness)?,
            client: None,
            auths: Vec::new(),
            listing: None,
            last_used: Instant::now(),
        }));
        let mut browsers = lock(&self.browsers);
        if browsers.len() >= MAX_BROWSERS {
            let oldest = browsers
                .iter()
                .min_by_key(|(_, b)| b.try_lock().map_or(Instant::now(), |b| b.last_used))
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                browsers.remove(&oldest);
            }
        }
        browsers.insert(token.clone(), browser.clone());
        Ok((token, browser))
    }

    /// A ZooKeeper session on this member's client port that speaks for
    /// the browser at `remote` (`PROXY_SCHEME`), with its `addauth`s.
    fn open_session(
        &self,
        remote: IpAddr,
        io_timeout: Duration,
        auths: &[(String, Vec<u8>)],
    ) -> Result<Client, String> {
        let options = ConnectOptions {
            timeout_ms: SESSION_TIMEOUT_MS,
            io_timeout,
            max_frame: MAX_REPLY,
            ..ConnectOptions::default()
        };
        let mut client = Client::connect(self.client_addr, &options)
            .map_err(|e| format!("cannot open a session on {}: {e}", self.client_addr))?;
        let secret = SECRET.get().ok_or("the UI has no secret")?;
        let proxy = format!("{secret} {remote}");
        match client.add_auth(PROXY_SCHEME, proxy.as_bytes()) {
            Ok(0) => {}
            Ok(code) => return Err(format!("the server refused the UI's session ({code})")),
            Err(e) => return Err(format!("the server refused the UI's session: {e}")),
        }
        for (scheme, auth) in auths {
            client
                .add_auth(scheme, auth)
                .map_err(|e| format!("addauth {scheme}: {e}"))?;
        }
        Ok(client)
    }
}

/// What a call without a known browser gets; the page then asks for a new
/// session.
const NO_SESSION: &str = "no UI session";

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
            self.client = Some(ui.open_session(self.remote, CALL_TIMEOUT, &self.auths)?);
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
