//! The admin HTTP server (`admin.enableServer`, `admin.serverAddress`,
//! `admin.serverPort`): ZooKeeper's AdminServer commands at `/commands` and
//! `/commands/<name or alias>` with the JSON ZooKeeper returns, `/health`
//! for load balancers; and the Prometheus page `/metrics`
//! (`metricsProvider.*`).
//!
//! Both run as tasks on shard 0, so they read its replica and gather the
//! other shards' views exactly as the four-letter words do. A request for
//! `/ui` is handed, head and socket, to the web UI's own thread (`ui/`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use serde_json::{json, Map, Value};

use crate::inspect::Context;
use crate::ops::fourlw;
use crate::serve::{inspect, Shard};
use crate::stats::{Buckets, Stats};
use crate::ui::Ui;

/// The most a request head may take; larger ones are refused.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts the admin and metrics servers this config asks for.
pub fn spawn(shard: &Rc<Shard>) {
    let config = shard.config();
    if let Some(addr) = config.admin_addr {
        listen(shard, addr, "admin", admin_page, Ui::new(config));
    }
    if let Some(addr) = config.metrics_addr {
        listen(shard, addr, "metrics", metrics_page, None);
    }
}

type Page = fn(Rc<Shard>, String) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response>>>;

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

fn respond(status: &'static str, content_type: &'static str, body: String) -> Response {
    Response {
        status,
        content_type,
        body,
    }
}

/// Serves `page` on `addr`; a port that cannot be had is logged, as
/// ZooKeeper does, and the server goes on without it.
fn listen(
    shard: &Rc<Shard>,
    addr: SocketAddr,
    what: &'static str,
    page: Page,
    ui: Option<Arc<Ui>>,
) {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot start the {what} server; going on without it");
            return;
        }
    };
    tracing::info!(%addr, "{what} server listening");
    let shard = shard.clone();
    glommio::spawn_local(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    glommio::spawn_local(serve(shard.clone(), stream, page, ui.clone())).detach();
                }
                Err(e) => tracing::warn!(error = %e, "{what} accept failed"),
            }
        }
    })
    .detach();
}

/// One request, one response, then the connection closes.
async fn serve(shard: Rc<Shard>, mut stream: TcpStream, page: Page, ui: Option<Arc<Ui>>) {
    // A client that never finishes its request does not keep the connection.
    if stream.set_read_timeout(Some(READ_TIMEOUT)).is_err() {
        return;
    }
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let path = loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        head.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let wants_ui = request
                    .path
                    .is_some_and(|p| p == "/ui" || p.starts_with("/ui/"));
                if let Some(ui) = ui.as_ref().filter(|_| wants_ui) {
                    match handover(&stream) {
                        Ok(socket) => ui.take(socket, head.clone()),
                        Err(e) => tracing::warn!(error = %e, "cannot hand a UI request over"),
                    }
                    return;
                }
                break match (request.method, request.path) {
                    (Some("GET" | "HEAD"), Some(path)) => Ok(path.to_owned()),
                    _ => Err(respond(
                        "405 Method Not Allowed",
                        "text/plain",
                        "GET only\n".into(),
                    )),
                };
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_REQUEST => {}
            _ => {
                break Err(respond(
                    "400 Bad Request",
                    "text/plain",
                    "bad request\n".into(),
                ))
            }
        }
    };
    let response = match path {
        Ok(path) => page(shard, path).await,
        Err(refusal) => refusal,
    };
    let out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        response.status,
        response.content_type,
        response.body.len(),
        response.body
    );
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.close().await;
}

/// The connection as a blocking socket of its own (a duplicate of the
/// descriptor: the executor's copy closes when this task ends, the socket
/// stays open).
fn handover(stream: &TcpStream) -> std::io::Result<std::net::TcpStream> {
    // SAFETY: dup of a descriptor this task owns; the new one is ours.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
}

/// ZooKeeper's admin commands: name, aliases, and whether the answer needs
/// every shard's view.
const COMMANDS: &[(&str, &[&str], bool)] = &[
    ("configuration", &["conf", "config"], false),
    ("connection_stat_reset", &["crst"], false),
    ("connections", &["cons"], false),
    ("dirs", &[], false),
    ("dump", &[], true),
    ("environment", &["env", "envi"], false),
    ("is_read_only", &["isro"], false),
    ("monitor", &["mntr"], true),
    ("ruok", &[], false),
    ("server_stats", &["srvr"], false),
    ("stat_reset", &["srst"], false),
    ("stats", &["stat"], false),
    ("watch_summary", &["wchs"], true),
    ("watches", &["wchc"], true),
    ("watches_by_path", &["wchp"], true),
    // zoocore's own: what the web UI's server page shows.
    ("zoocore_server", &[], true),
];

fn admin_page(
    shard: Rc<Shard>,
    path: String,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response>>> {
    Box::pin(async move {
        let path = path
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        if path == "/health" {
            return respond("200 OK", "application/json", "{\"status\":\"ok\"}\n".into());
        }
        if path == "/commands" {
            let links: String = COMMANDS
                .iter()
                .map(|(name, _, _)| format!("<a href=\"/commands/{name}\">{name}</a>\n<br/>\n"))
                .collect();
            return respond("200 OK", "text/html", links);
        }
        let Some(asked) = path.strip_prefix("/commands/") else {
            return respond(
                "404 Not Found",
                "text/plain",
                "not found; see /commands\n".into(),
            );
        };
        let found = COMMANDS
            .iter()
            .find(|(name, aliases, _)| *name == asked || aliases.contains(&asked));
        let mut body = match found {
            Some(&(name, _, needs_views)) => {
                match inspect(&shard, needs_views, |cx| command(name, cx)).await {
                    Ok(mut fields) => {
                        fields.insert("command".into(), json!(name));
                        fields.insert("error".into(), Value::Null);
                        fields
                    }
                    Err(e) => Map::from_iter([
                        ("command".to_owned(), json!(name)),
                        ("error".to_owned(), json!(e)),
                    ]),
                }
            }
            None => Map::from_iter([
                ("command".to_owned(), json!(asked)),
                (
                    "error".to_owned(),
                    json!(format!("Unknown command: {asked}")),
                ),
            ]),
        };
        let text = serde_json::to_string_pretty(&Value::Object(std::mem::take(&mut body)))
            .unwrap_or_default();
        respond("200 OK", "application/json", text + "\n")
    })
}

fn object(pairs: impl IntoIterator<Item = (String, Value)>) -> Map<String, Value> {
    pairs.into_iter().collect()
}

/// The fields of a command's JSON, as ZooKeeper names them.
fn command(name: &str, cx: &Context<'_>) -> Map<String, Value> {
    let c = cx.config;
    let stats = cx.stats;
    match name {
        "configuration" => object([
            ("client_port".into(), json!(c.client_port)),
            ("data_dir".into(), json!(c.data_dir)),
            ("data_log_dir".into(), json!(c.data_log_dir)),
            ("tick_time".into(), json!(c.tick_time_ms)),
            ("max_client_cnxns".into(), json!(c.max_client_cnxns)),
            (
                "min_session_timeout".into(),
                json!(c.min_session_timeout_ms),
            ),
            (
                "max_session_timeout".into(),
                json!(c.max_session_timeout_ms),
            ),
            ("server_id".into(), json!(0)),
            ("client_port_listen_backlog".into(), json!(-1)),
            ("zoocore_shards".into(), json!(c.shards)),
            ("zoocore_sequencer_cpu".into(), json!(c.sequencer_cpu)),
            ("zoocore_max_batch_txns".into(), json!(c.max_batch_txns)),
            ("zoocore_max_batch_bytes".into(), json!(c.max_batch_bytes)),
        ]),
        "connection_stat_reset" => {
            stats.reset_connections();
            Map::new()
        }
        "connections" => object([
            ("connections".into(), Value::Array(connections(stats, true))),
            ("secure_connections".into(), json!([])),
        ]),
        "dirs" => object([
            ("datadir_size".into(), json!(fourlw::dir_size(&c.data_dir))),
            (
                "logdir_size".into(),
                json!(fourlw::dir_size(&c.data_log_dir)),
            ),
        ]),
        "dump" => {
            let tick = i64::from(c.tick_time_ms.max(1));
            let mut expiry: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            for s in cx.views.iter().flat_map(|v| &v.sessions) {
                let at = (s.expires_ms / tick + 1) * tick;
                expiry.entry(at.to_string()).or_default().push(s.id);
            }
            let ephemerals: BTreeMap<String, Vec<&str>> = cx
                .tree
                .ephemerals()
                .map(|(id, paths)| (id.to_string(), paths.iter().map(|p| &**p).collect()))
                .collect();
            object([
                ("expiry_time_to_session_ids".into(), json!(expiry)),
                ("session_id_to_ephemeral_paths".into(), json!(ephemerals)),
            ])
        }
        "environment" => fourlw::environment_pairs(c)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect(),
        "is_read_only" => object([("read_only".into(), json!(stats.ensemble.read_only()))]),
        "zoocore_server" => server_overview(cx),
        "monitor" => fourlw::monitor_rows(cx)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        "ruok" => Map::new(),
        "server_stats" | "stats" => {
            let (min, avg, max) = stats.latency();
            let mut fields = object([
                ("version".into(), json!(fourlw::version_line())),
                ("read_only".into(), json!(stats.ensemble.read_only())),
                (
                    "server_stats".into(),
                    json!({
                        "packets_sent": stats.sent(),
                        "packets_received": stats.received(),
                        "data_dir_size": fourlw::dir_size(&c.data_dir),
                        "log_dir_size": fourlw::dir_size(&c.data_log_dir),
                        "server_state": stats.ensemble.mode(),
                        "last_processed_zxid": cx.tree.last_zxid(),
                        "outstanding_requests": stats.outstanding(),
                        "avg_latency": (avg * 10_000.0).round() / 10_000.0,
                        "max_latency": max,
                        "min_latency": min,
                        "num_alive_client_connections": Stats::get(&stats.connections),
                        "uptime": stats.uptime_ms(),
                    }),
                ),
                ("node_count".into(), json!(cx.tree.node_count())),
            ]);
            if name == "stats" {
                fields.insert(
                    "connections".into(),
                    Value::Array(connections(stats, false)),
                );
                fields.insert("secure_connections".into(), json!([]));
            }
            fields
        }
        "stat_reset" => {
            stats.reset_server();
            Map::new()
        }
        "watch_summary" => {
            let watchers = fourlw::data_watchers(cx.views);
            let sessions: std::collections::BTreeSet<i64> =
                watchers.clone().map(|(_, s)| s).collect();
            let paths: std::collections::BTreeSet<&str> =
                watchers.clone().map(|(p, _)| p).collect();
            object([
                ("num_connections".into(), json!(sessions.len())),
                ("num_paths".into(), json!(paths.len())),
                ("num_total_watches".into(), json!(watchers.count())),
            ])
        }
        "watches" => {
            let mut by_session: BTreeMap<String, Vec<&str>> = BTreeMap::new();
            for (p, s) in fourlw::data_watchers(cx.views) {
                by_session.entry(s.to_string()).or_default().push(p);
            }
            object([("session_id_to_watched_paths".into(), json!(by_session))])
        }
        "watches_by_path" => {
            let mut by_path: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
            for (p, s) in fourlw::data_watchers(cx.views) {
                by_path.entry(p).or_default().push(s);
            }
            object([("path_to_session_ids".into(), json!(by_path))])
        }
        _ => Map::new(),
    }
}

/// Connections as ZooKeeper's `connections` (detailed) and `stats` list them.
/// The web UI's server page: mode, members and their lag, each shard's
/// numbers, and request latency per power-of-two bucket (µs, since start).
fn server_overview(cx: &Context<'_>) -> Map<String, Value> {
    let stats = cx.stats;
    let depths = stats.queue_depths();
    let shards: Vec<Value> = cx
        .views
        .iter()
        .map(|view| {
            let counters = stats.shard(view.shard);
            let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            json!({
                "shard": view.shard,
                "sessions": view.sessions.len(),
                "watches": view.watch_count,
                "received": load(&counters.received),
                "sent": load(&counters.sent),
                "outstanding": counters.outstanding.load(std::sync::atomic::Ordering::Relaxed).max(0),
                "commitQueue": depths.get(view.shard).map_or(0, |d| d.1),
            })
        })
        .collect();
    let mut counts: Vec<u64> = Vec::new();
    let mut bounds: Vec<u64> = Vec::new();
    for view in cx.views {
        let buckets = &stats.shard(view.shard).latency_us;
        let (cumulative, _) = buckets.cumulative();
        bounds.clone_from(&buckets.bounds);
        counts.resize(cumulative.len(), 0);
        let mut before = 0;
        for (i, total) in cumulative.iter().enumerate() {
            counts[i] += total - before;
            before = *total;
        }
    }
    let lag = stats.ensemble.peer_lag();
    let members: Vec<Value> = cx
        .config
        .ensemble
        .iter()
        .flat_map(|e| e.membership.members().iter().map(move |m| (e.myid, m)))
        .map(|(myid, m)| {
            let behind = lag.iter().find(|l| l.id == m.id);
            json!({
                "id": m.id,
                "host": m.host,
                "observer": m.observer,
                "me": m.id == myid,
                "lagEntries": behind.map(|l| l.entries),
                "lagBytes": behind.map(|l| l.bytes),
                "lagMs": behind.map(|l| l.ms),
            })
        })
        .collect();
    object([
        ("mode".into(), json!(stats.ensemble.mode())),
        ("members".into(), json!(members)),
        ("shards".into(), json!(shards)),
        (
            "latency".into(),
            json!({ "boundsMicros": bounds, "counts": counts }),
        ),
    ])
}

fn connections(stats: &Stats, detailed: bool) -> Vec<Value> {
    stats
        .clients()
        .iter()
        .map(|c| {
            let mut row = json!({
                "remote_socket_address": c.peer.to_string(),
                "interest_ops": 1,
                "outstanding_requests": 0,
                "packets_received": c.received,
                "packets_sent": c.sent,
            });
            if detailed && c.session_id != 0 {
                if let Value::Object(fields) = &mut row {
                    fields.extend(object([
                        ("session_id".into(), json!(c.session_id)),
                        ("last_operation".into(), json!(c.last_op)),
                        ("established".into(), json!(c.established_ms)),
                        ("session_timeout".into(), json!(c.timeout_ms)),
                        ("last_cxid".into(), json!(c.last_cxid)),
                        ("last_zxid".into(), json!(c.last_zxid)),
                        ("last_response_time".into(), json!(c.last_response_ms)),
                        ("last_latency".into(), json!(c.last_latency_ms)),
                        ("min_latency".into(), json!(c.min_latency_ms)),
                        ("avg_latency".into(), json!(c.avg_latency_ms.round() as u64)),
                        ("max_latency".into(), json!(c.max_latency_ms)),
                    ]));
                }
            }
            row
        })
        .collect()
}

fn metrics_page(
    shard: Rc<Shard>,
    path: String,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response>>> {
    Box::pin(async move {
        if path.split('?').next() != Some("/metrics") {
            return respond("404 Not Found", "text/plain", "see /metrics\n".into());
        }
        match inspect(&shard, true, metrics).await {
            Ok(text) => respond("200 OK", "text/plain; version=0.0.4", text),
            Err(e) => respond("503 Service Unavailable", "text/plain", format!("{e}\n")),
        }
    })
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    );
}

fn histogram(out: &mut String, name: &str, help: &str, buckets: &Buckets) {
    let (cumulative, sum) = buckets.cumulative();
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
    for (bound, count) in buckets.bounds.iter().zip(&cumulative) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let total = cumulative.last().copied().unwrap_or(0);
    let _ = write!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {total}\n{name}_sum {sum}\n{name}_count {total}\n"
    );
}

/// The Prometheus text page: ZooKeeper's metric names where it has them,
/// zoocore's own (`zoocore_*`) for cores, sessions and group commit.
fn metrics(cx: &Context<'_>) -> String {
    let stats = cx.stats;
    let (min, avg, max) = stats.latency();
    let mut out = String::new();
    let watches: usize = cx.views.iter().map(|v| v.watch_count).sum();
    metric(
        &mut out,
        "znode_count",
        "gauge",
        "Znodes in the tree.",
        cx.tree.node_count(),
    );
    metric(
        &mut out,
        "watch_count",
        "gauge",
        "Watches of all connections.",
        watches,
    );
    metric(
        &mut out,
        "ephemerals_count",
        "gauge",
        "Ephemeral znodes.",
        cx.tree.ephemeral_count(),
    );
    metric(
        &mut out,
        "approximate_data_size",
        "gauge",
        "Bytes of paths and data in the tree.",
        cx.tree.approximate_data_size(),
    );
    metric(
        &mut out,
        "num_alive_connections",
        "gauge",
        "Open client connections.",
        Stats::get(&stats.connections),
    );
    metric(
        &mut out,
        "outstanding_requests",
        "gauge",
        "Requests in the sequencer's hands, not yet answered.",
        stats.outstanding(),
    );
    metric(
        &mut out,
        "packets_received",
        "counter",
        "Requests received.",
        stats.received(),
    );
    metric(
        &mut out,
        "packets_sent",
        "counter",
        "Replies sent.",
        stats.sent(),
    );
    metric(
        &mut out,
        "min_latency",
        "gauge",
        "Least request latency, ms.",
        min,
    );
    metric(
        &mut out,
        "avg_latency",
        "gauge",
        "Mean request latency, ms.",
        avg,
    );
    metric(
        &mut out,
        "max_latency",
        "gauge",
        "Greatest request latency, ms.",
        max,
    );
    metric(
        &mut out,
        "uptime",
        "gauge",
        "Milliseconds since the server started.",
        stats.uptime_ms(),
    );
    metric(
        &mut out,
        "last_zxid",
        "gauge",
        "Zxid of the last applied txn.",
        cx.tree.last_zxid(),
    );
    let _ = write!(
        out,
        "# HELP zoocore_sessions Sessions owned by each shard core.\n# TYPE zoocore_sessions gauge\n"
    );
    for view in cx.views {
        let _ = writeln!(
            out,
            "zoocore_sessions{{shard=\"{}\"}} {}",
            view.shard,
            view.sessions.len()
        );
    }
    let _ = write!(
        out,
        "# HELP zoocore_sequencer_queue_depth Requests a shard has in the sequencer's hands.\n\
         # TYPE zoocore_sequencer_queue_depth gauge\n"
    );
    let depths = stats.queue_depths();
    for (shard, (outstanding, _)) in depths.iter().enumerate() {
        let _ = writeln!(
            out,
            "zoocore_sequencer_queue_depth{{shard=\"{shard}\"}} {outstanding}"
        );
    }
    let _ = write!(
        out,
        "# HELP zoocore_commit_queue_depth Committed batches a shard has not applied yet.\n\
         # TYPE zoocore_commit_queue_depth gauge\n"
    );
    for (shard, (_, commits)) in depths.iter().enumerate() {
        let _ = writeln!(
            out,
            "zoocore_commit_queue_depth{{shard=\"{shard}\"}} {commits}"
        );
    }
    metric(
        &mut out,
        "zoocore_open_batch_entries",
        "gauge",
        "Entries in the sequencer's open batch when it was last taken.",
        Stats::get(&stats.open_batch),
    );
    let e = &stats.ensemble;
    metric(
        &mut out,
        "zoocore_ensemble_role",
        "gauge",
        "0 standalone, 1 looking (no leader), 2 follower, 3 leader, 4 observer.",
        e.role() as u64,
    );
    metric(
        &mut out,
        "zoocore_leader_changes_total",
        "counter",
        "Times this member saw the leader change.",
        Stats::get(&e.leader_changes),
    );
    metric(
        &mut out,
        "zoocore_forwarded_requests_total",
        "counter",
        "Requests this member forwarded to the leader.",
        Stats::get(&e.forwarded),
    );
    metric(
        &mut out,
        "zoocore_synced_followers",
        "gauge",
        "Leader: followers whose log holds everything committed.",
        Stats::get(&e.synced_followers),
    );
    metric(
        &mut out,
        "zoocore_synced_observers",
        "gauge",
        "Leader: observers whose log holds everything committed.",
        Stats::get(&e.synced_observers),
    );
    metric(
        &mut out,
        "zoocore_pending_syncs",
        "gauge",
        "sync requests waiting for their read index.",
        Stats::get(&e.pending_syncs),
    );
    // The headers always, so dashboards find the series; samples on a leader.
    use zoocore_consensus::PeerLag;
    let lag = e.peer_lag();
    {
        type Series = (&'static str, &'static str, fn(&PeerLag) -> i64);
        let per_peer: [Series; 3] = [
            (
                "zoocore_peer_lag_entries",
                "Leader: raft entries each member lacks.",
                |l| l.entries as i64,
            ),
            (
                "zoocore_peer_lag_bytes",
                "Leader: bytes of entries each member lacks (at least).",
                |l| l.bytes as i64,
            ),
            (
                "zoocore_peer_lag_milliseconds",
                "Leader: age of the oldest entry each member lacks.",
                |l| l.ms,
            ),
        ];
        for (name, help, value) in per_peer {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
            for l in &lag {
                let _ = writeln!(out, "{name}{{peer=\"{}\"}} {}", l.id, value(l));
            }
        }
    }
    histogram(
        &mut out,
        "zoocore_election_milliseconds",
        "From losing (or starting without) a leader to having one.",
        &e.election_ms,
    );
    histogram(
        &mut out,
        "zoocore_sync_microseconds",
        "From a sync reaching the sequencer to its read index.",
        &e.sync_us,
    );
    histogram(
        &mut out,
        "zoocore_commit_batch_txns",
        "Txns per group commit.",
        &stats.batch_txns,
    );
    histogram(
        &mut out,
        "zoocore_commit_batch_bytes",
        "Bytes written per group commit.",
        &stats.batch_bytes,
    );
    histogram(
        &mut out,
        "zoocore_fsync_microseconds",
        "Log write + fdatasync per group commit, microseconds.",
        &stats.fsync_us,
    );
    histogram(
        &mut out,
        "zoocore_apply_microseconds",
        "From a batch being durable to a shard having applied it, microseconds.",
        &stats.apply_us,
    );
    histogram(
        &mut out,
        "zoocore_snapshot_milliseconds",
        "Time to write a snapshot, milliseconds.",
        &stats.snapshot_ms,
    );
    // ZooKeeper's own name for sync time: a summary in milliseconds.
    let (cumulative, sum_us) = stats.fsync_us.cumulative();
    let _ = write!(
        out,
        "# HELP fsynctime Time to sync the transaction log, ms.\n# TYPE fsynctime summary\n\
         fsynctime_sum {}\nfsynctime_count {}\n",
        sum_us as f64 / 1000.0,
        cumulative.last().copied().unwrap_or(0)
    );
    out
}
