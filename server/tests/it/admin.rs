//! The admin HTTP server and the Prometheus page. Admin commands are asked
//! of zoocore and of Apache ZooKeeper's AdminServer, both set up alike (one
//! session with an ephemeral node, two data watches and a child watch);
//! ZooKeeper's Prometheus provider is not packaged by Debian, so /metrics is
//! checked against zoocore's own mntr.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use zoocore_net::records::SetDataRequest;
use zoocore_net::Request;
use zoocore_testkit::zk::{free_port, http_get as get, watched_session, ZooKeeperProcess};
use zoocore_testkit::zoocore::ZoocoreProcess;

fn command(addr: SocketAddr, name: &str) -> Value {
    let (status, body) = get(addr, &format!("/commands/{name}"));
    assert!(status.contains("200"), "{name}: {status}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}: {body}"))
}

/// Fields every command's JSON has on both servers.
const FIELDS: &[(&str, &[&str])] = &[
    ("ruok", &[]),
    (
        "conf",
        &[
            "client_port",
            "data_dir",
            "data_log_dir",
            "tick_time",
            "max_client_cnxns",
            "min_session_timeout",
            "max_session_timeout",
            "server_id",
        ],
    ),
    ("cons", &["connections", "secure_connections"]),
    ("dirs", &["datadir_size", "logdir_size"]),
    (
        "dump",
        &[
            "expiry_time_to_session_ids",
            "session_id_to_ephemeral_paths",
        ],
    ),
    ("envi", &["zookeeper.version", "host.name", "os.name"]),
    ("isro", &["read_only"]),
    (
        "mntr",
        &[
            "version",
            "server_state",
            "ephemerals_count",
            "num_alive_connections",
            "avg_latency",
            "outstanding_requests",
            "znode_count",
            "watch_count",
            "packets_sent",
            "packets_received",
            "approximate_data_size",
            "uptime",
        ],
    ),
    (
        "srvr",
        &["version", "read_only", "server_stats", "node_count"],
    ),
    (
        "stat",
        &["version", "server_stats", "node_count", "connections"],
    ),
    (
        "wchs",
        &["num_connections", "num_paths", "num_total_watches"],
    ),
    ("wchc", &["session_id_to_watched_paths"]),
    ("wchp", &["path_to_session_ids"]),
    ("crst", &[]),
    ("srst", &[]),
];

#[test]
fn admin_commands_answer_as_zookeepers_admin_server_does() {
    let zoocore_admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let zk_admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let zoocore = ZoocoreProcess::start(
        Path::new(env!("CARGO_BIN_EXE_zoocore")),
        &format!(
            "admin.enableServer=true\nadmin.serverAddress=127.0.0.1\nadmin.serverPort={}",
            zoocore_admin.port()
        ),
    );
    let zk = ZooKeeperProcess::start_with(
        &format!(
            "admin.enableServer=true\nadmin.serverAddress=127.0.0.1\nadmin.serverPort={}",
            zk_admin.port()
        ),
        &[],
    );
    for (name, client_addr, admin) in [
        ("zoocore", zoocore.addr, zoocore_admin),
        ("zookeeper", zk.addr, zk_admin),
    ] {
        let client = watched_session(client_addr);
        let session = client.session_id();
        for (command_name, fields) in FIELDS {
            let answer = command(admin, command_name);
            assert_eq!(
                answer["error"],
                Value::Null,
                "{name} {command_name}: {answer}"
            );
            assert!(
                answer["command"].is_string(),
                "{name} {command_name}: {answer}"
            );
            for field in *fields {
                assert!(
                    answer.get(*field).is_some(),
                    "{name} {command_name}: no {field}: {answer}"
                );
            }
        }
        let mntr = command(admin, "monitor");
        assert_eq!(
            mntr["command"], "monitor",
            "aliases name the command: {name}"
        );
        assert_eq!(mntr["ephemerals_count"], 1, "{name}: {mntr}");
        assert_eq!(mntr["watch_count"], 3, "{name}: {mntr}");
        assert_eq!(command(admin, "wchs")["num_total_watches"], 2, "{name}");
        let mut watched: Vec<String> = command(admin, "watches")["session_id_to_watched_paths"]
            [session.to_string()]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: the session's watches"))
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_owned())
        .collect();
        watched.sort();
        assert_eq!(watched, ["/w/a", "/w/nope"], "{name}");
        assert_eq!(
            command(admin, "watches_by_path")["path_to_session_ids"]["/w/a"],
            serde_json::json!([session]),
            "{name}"
        );
        assert_eq!(
            command(admin, "dump")["session_id_to_ephemeral_paths"][session.to_string()],
            serde_json::json!(["/w/e"]),
            "{name}"
        );
        let cons = command(admin, "connections");
        let mine = cons["connections"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["session_id"] == session))
            .unwrap_or_else(|| panic!("{name}: the session's connection in {cons}"));
        for field in [
            "last_operation",
            "last_zxid",
            "session_timeout",
            "established",
        ] {
            assert!(mine.get(field).is_some(), "{name}: no {field} in {mine}");
        }
        let unknown = command(admin, "no_such_command");
        assert_eq!(
            unknown["error"], "Unknown command: no_such_command",
            "{name}"
        );
        let (_, list) = get(admin, "/commands");
        assert!(
            list.contains("/commands/monitor") && list.contains("/commands/watches_by_path"),
            "{name}: {list}"
        );
    }
    let (status, body) = get(zoocore_admin, "/health");
    assert!(
        status.contains("200") && body.contains("ok"),
        "{status} {body}"
    );
}

/// The value of an unlabelled metric.
fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{page}"))
}

#[test]
fn prometheus_page_has_zookeepers_names_and_zoocores_histograms() {
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let zoocore = ZoocoreProcess::start(
        Path::new(env!("CARGO_BIN_EXE_zoocore")),
        &format!(
            "metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
             metricsProvider.httpHost=127.0.0.1\nmetricsProvider.httpPort={}\nsnapCount=2",
            metrics.port()
        ),
    );
    let mut client = watched_session(zoocore.addr);
    for i in 0..20 {
        let set = Request::SetData(SetDataRequest {
            path: "/w/a".into(),
            data: Some(vec![b'x'; i]),
            version: -1,
        });
        assert_eq!(client.call(&set).expect("setData").header.err, 0);
    }
    // snapCount=2: the snapshotter writes snapshots in the background.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let (status, page) = get(metrics, "/metrics");
        assert!(status.contains("200"), "{status}");
        if sample(&page, "zoocore_snapshot_milliseconds_count") >= 1.0 {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot counted:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(sample(&page, "ephemerals_count"), 1.0);
    assert_eq!(
        sample(&page, "watch_count"),
        2.0,
        "the setData fired the data watch on /w/a"
    );
    assert_eq!(sample(&page, "num_alive_connections"), 1.0);
    let mntr = zoocore_testkit::zk::four_letter_word(zoocore.addr, "mntr").expect("mntr");
    let znodes: f64 = mntr
        .lines()
        .find_map(|l| l.strip_prefix("zk_znode_count\t"))
        .and_then(|v| v.parse().ok())
        .expect("zk_znode_count");
    assert_eq!(sample(&page, "znode_count"), znodes);
    // Group commit: 3 creates and 20 setData went through batches.
    let batches = sample(&page, "zoocore_commit_batch_txns_count");
    assert!(batches >= 1.0, "{page}");
    assert!(
        sample(&page, "zoocore_commit_batch_txns_sum") >= 23.0,
        "{page}"
    );
    assert_eq!(sample(&page, "zoocore_fsync_microseconds_count"), batches);
    let inf = page
        .lines()
        .find_map(|l| l.strip_prefix("zoocore_commit_batch_txns_bucket{le=\"+Inf\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("+Inf bucket");
    assert_eq!(inf, batches);
    assert!(page.contains("zoocore_sessions{shard=\"0\"} 1"), "{page}");
    assert!(
        page.contains("zoocore_sequencer_queue_depth{shard=\"0\"} 0"),
        "{page}"
    );
    assert!(
        page.contains("zoocore_commit_queue_depth{shard=\"0\"} 0"),
        "{page}"
    );
    // The one shard applies every batch: those written to the log and those
    // without txns (the gathers of these very metrics pages among them).
    assert!(
        sample(&page, "zoocore_apply_microseconds_count") >= batches,
        "{page}"
    );
    assert_eq!(sample(&page, "fsynctime_count"), batches);
    let (status, _) = get(metrics, "/nothing");
    assert!(status.contains("404"), "{status}");
    // Every metric the Grafana dashboard in tuning/ plots is on the page.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tuning/grafana-dashboard.json"
        ))
        .expect("tuning/grafana-dashboard.json"),
    )
    .expect("dashboard JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(!exprs.is_empty());
    for expr in exprs {
        for i in expr.match_indices("{job").map(|(i, _)| i) {
            let start = expr[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |k| k + 1);
            let name = &expr[start..i];
            let exported = |n: &str| page.contains(&format!("# TYPE {n} "));
            // A histogram's series carry a suffix its TYPE line does not.
            let histogram_series = ["_bucket", "_count", "_sum"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .any(|base| page.contains(&format!("# TYPE {base} histogram")));
            assert!(
                exported(name) || histogram_series,
                "dashboard metric {name} not exported"
            );
        }
    }
}

/// A client that never finishes its request head is disconnected (after
/// the admin server's 10 s read timeout) instead of holding its connection.
#[test]
fn a_stalled_admin_request_is_dropped() {
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _zoocore = ZoocoreProcess::start(
        Path::new(env!("CARGO_BIN_EXE_zoocore")),
        &format!(
            "admin.enableServer=true\nadmin.serverAddress=127.0.0.1\nadmin.serverPort={}",
            admin.port()
        ),
    );
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(b"GET /comm").expect("half a request");
    let mut rest = Vec::new();
    let read = s.read_to_end(&mut rest);
    assert!(
        read.is_ok(),
        "the server should close the connection: {read:?}"
    );
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}
