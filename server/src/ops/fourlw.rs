//! Four-letter words answered on the client port, in Apache ZooKeeper's
//! formats: ruok, srvr, stat, mntr, conf, cons, crst, srst, envi, wchs,
//! wchc, wchp, dump, dirs, isro, subject to `4lw.commands.whitelist`.
//!
//! Watches and session deadlines live on the shard that owns the
//! connection, so words that show them (mntr, wch*, dump) first gather a
//! `ShardView` from every shard through the sequencer's batch stream.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::config::Config;
use crate::inspect::{Context, SessionView, ShardView};
use crate::stats::Stats;

/// ZooKeeper version clients see; kazoo and zkServer.sh parse it.
pub const ZK_VERSION: &str = "3.9.2";

pub fn version_line() -> String {
    format!(
        "{ZK_VERSION}-zoocore-{}, built on unknown",
        env!("CARGO_PKG_VERSION")
    )
}

pub fn not_whitelisted(word: &str) -> String {
    format!("{word} is not executed because it is not in the whitelist.\n")
}

/// The answer to a whitelisted four-letter word.
pub fn answer(word: &str, cx: &Context<'_>) -> String {
    match word {
        "ruok" => "imok".to_owned(),
        "srvr" => server_summary(cx, false),
        "stat" => server_summary(cx, true),
        "envi" => environment(cx.config),
        "conf" => configuration(cx.config, cx.tree),
        "cons" => format!("{}\n", cx.stats.client_lines(true)),
        "crst" => {
            cx.stats.reset_connections();
            "Connection stats reset.\n".to_owned()
        }
        "srst" => {
            cx.stats.reset_server();
            "Server stats reset.\n".to_owned()
        }
        "mntr" => monitor(cx),
        "dirs" => format!(
            "datadir_size: {}\nlogdir_size: {}\n",
            dir_size(&cx.config.data_dir),
            dir_size(&cx.config.data_log_dir)
        ),
        // As ZooKeeper: "null" while a member has no server running.
        "isro" => match (cx.stats.ensemble.read_only(), cx.stats.ensemble.serving()) {
            (true, _) => "ro",
            (false, true) => "rw",
            (false, false) => "null",
        }
        .to_owned(),
        "wchs" => watch_summary(cx.views),
        "wchc" => watches_by_session(cx.views),
        "wchp" => watches_by_path(cx.views),
        "dump" => dump(cx),
        other => format!("{other} is not supported by zoocore.\n"),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// `envi`'s lines (and the admin `environment` command's fields).
pub fn environment_pairs(config: &Config) -> Vec<(&'static str, String)> {
    vec![
        ("zookeeper.version", version_line()),
        ("host.name", hostname()),
        ("java.version", "none (zoocore is written in Rust)".into()),
        ("os.name", "Linux".into()),
        ("os.arch", std::env::consts::ARCH.into()),
        (
            "os.version",
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|v| v.trim().to_owned())
                .unwrap_or_default(),
        ),
        (
            "user.dir",
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        ),
        ("zoocore.shards", config.shards.to_string()),
    ]
}

fn environment(config: &Config) -> String {
    let lines: String = environment_pairs(config)
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    format!("Environment:\n{lines}")
}

/// Bytes of the files directly in `dir` (ZooKeeper sums its version-2 dir).
pub fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    })
}

fn configuration(c: &Config, tree: &zoocore_engine::DataTree) -> String {
    let mut text = format!(
        "clientPort={}\nclientPortAddress={}\nsecureClientPort=-1\ndataDir={}\ndataDirSize={}\n\
         dataLogDir={}\ndataLogSize={}\ntickTime={}\nmaxClientCnxns={}\nminSessionTimeout={}\n\
         maxSessionTimeout={}\nclientPortListenBacklog=-1\nserverId={}\njute.maxbuffer={}\n\
         snapCount={}\nautopurge.snapRetainCount={}\nautopurge.purgeInterval={}\n\
         zoocore.shards={}\nzoocore.sequencerCpu={}\nzoocore.sequencerQueue={}\n\
         zoocore.commitQueue={}\nzoocore.maxBatchTxns={}\nzoocore.maxBatchBytes={}\n\
         zoocore.commitLingerMicros={}\nzoocore.spinBeforeParkMicros={}\nzoocore.deferTaskrun={}\n\
         zoocore.logSegmentBytes={}\n",
        c.client_port,
        c.client_port_address,
        c.data_dir.display(),
        dir_size(&c.data_dir),
        c.data_log_dir.display(),
        dir_size(&c.data_log_dir),
        c.tick_time_ms,
        c.max_client_cnxns,
        c.min_session_timeout_ms,
        c.max_session_timeout_ms,
        c.ensemble.as_ref().map_or(0, |e| e.myid),
        c.jute_max_buffer,
        c.snap_count,
        c.snap_retain_count,
        c.purge_interval_hours,
        c.shards,
        c.sequencer_cpu,
        c.sequencer_queue,
        c.commit_queue,
        c.max_batch_txns,
        c.max_batch_bytes,
        c.commit_linger_us,
        c.spin_before_park_us,
        c.defer_taskrun,
        c.log_segment_bytes,
    );
    if let Some(e) = &c.ensemble {
        // ZooKeeper's quorum lines, then the membership as /zookeeper/config has it.
        let (election, quorum, peer_type) = e.me().map_or((0, 0, 0), |m| {
            (m.election_port, m.peer_port, u8::from(m.observer))
        });
        let _ = write!(
            text,
            "initLimit={}\nsyncLimit={}\nelectionAlg=3\nelectionPort={election}\nquorumPort={quorum}\n\
             peerType={peer_type}\nzoocore.raftTickMs={}\nzoocore.electionTicks={}\n\
             zoocore.heartbeatTicks={}\nmembership: \n",
            e.init_limit, e.sync_limit, e.raft_tick_ms, e.election_ticks, e.heartbeat_ticks
        );
        // The replicated one: a reconfig changes it.
        match tree
            .get("/zookeeper/config")
            .and_then(|n| n.data.as_deref())
        {
            Some(live) => text.push_str(&String::from_utf8_lossy(live)),
            None => text.push_str(&e.membership.config_text(e.config_version)),
        }
    }
    text
}

fn server_summary(cx: &Context<'_>, with_clients: bool) -> String {
    let stats = cx.stats;
    if !stats.ensemble.serving() && !stats.ensemble.read_only() {
        return NOT_SERVING.to_owned();
    }
    let clients = if with_clients {
        format!("Clients:\n{}\n", stats.client_lines(false))
    } else {
        String::new()
    };
    format!(
        "Zookeeper version: {}\n{clients}Latency min/avg/max: {}\n\
         Received: {}\nSent: {}\nConnections: {}\nOutstanding: {}\nZxid: {:#x}\nMode: {}\nNode count: {}\n",
        version_line(),
        stats.latency_line(),
        stats.received(),
        stats.sent(),
        Stats::get(&stats.connections),
        stats.outstanding(),
        cx.tree.last_zxid(),
        stats.ensemble.mode(),
        cx.tree.node_count(),
    )
}

/// A leader's rows about its followers (ZooKeeper shows them on the leader only).
fn ensemble_rows(stats: &Stats) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    let e = &stats.ensemble;
    if e.role() != crate::stats::Role::Leader {
        return Vec::new();
    }
    vec![
        ("learners", json!(Stats::get(&e.learners))),
        ("followers", json!(Stats::get(&e.followers))),
        ("synced_followers", json!(Stats::get(&e.synced_followers))),
        // zoocore has no non-voting followers (ZooKeeper's reconfig leftovers).
        ("synced_non_voting_followers", json!(0)),
        ("synced_observers", json!(Stats::get(&e.synced_observers))),
        ("pending_syncs", json!(Stats::get(&e.pending_syncs))),
    ]
}

/// What ZooKeeper answers while a member has no leader.
const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests\n";

/// Open and allowed file descriptors of this process.
fn file_descriptors() -> (usize, u64) {
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (open, limit.rlim_cur)
}

/// `mntr`'s values (and the admin `monitor` command's), by ZooKeeper's name
/// without its `zk_` prefix; zoocore's own start with `zoocore_`.
pub fn monitor_rows(cx: &Context<'_>) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    let stats = cx.stats;
    let (min, avg, max) = stats.latency();
    let (open_fds, max_fds) = file_descriptors();
    let watches: usize = cx.views.iter().map(|v| v.watch_count).sum();
    let sessions: usize = cx.views.iter().map(|v| v.sessions.len()).sum();
    [
        ("version", json!(version_line())),
        ("server_state", json!(stats.ensemble.mode())),
        ("ephemerals_count", json!(cx.tree.ephemeral_count())),
        (
            "num_alive_connections",
            json!(Stats::get(&stats.connections)),
        ),
        ("avg_latency", json!((avg * 10_000.0).round() / 10_000.0)),
        ("outstanding_requests", json!(stats.outstanding())),
        ("znode_count", json!(cx.tree.node_count())),
        ("global_sessions", json!(0)),
        ("local_sessions", json!(0)),
        ("packets_sent", json!(stats.sent())),
        ("packets_received", json!(stats.received())),
        ("watch_count", json!(watches)),
        ("min_latency", json!(min)),
        ("max_latency", json!(max)),
        ("max_file_descriptor_count", json!(max_fds)),
        ("open_file_descriptor_count", json!(open_fds)),
        (
            "approximate_data_size",
            json!(cx.tree.approximate_data_size()),
        ),
        ("uptime", json!(stats.uptime_ms())),
        ("last_zxid", json!(cx.tree.last_zxid())),
        ("zoocore_shards", json!(cx.config.shards)),
        ("zoocore_sessions", json!(sessions)),
        ("zoocore_commit_batches", json!(Stats::get(&stats.batches))),
        (
            "zoocore_commit_txns",
            json!(Stats::get(&stats.batched_txns)),
        ),
        (
            "zoocore_commit_bytes",
            json!(Stats::get(&stats.batched_bytes)),
        ),
        (
            "zoocore_commit_max_txns",
            json!(Stats::get(&stats.max_batch_txns)),
        ),
    ]
    .into_iter()
    .chain(ensemble_rows(stats))
    .collect()
}

fn monitor(cx: &Context<'_>) -> String {
    monitor_rows(cx)
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) if name == "avg_latency" => {
                    format!("{:.4}", n.as_f64().unwrap_or(0.0))
                }
                other => other.to_string(),
            };
            let prefix = if name.starts_with("zoocore_") {
                ""
            } else {
                "zk_"
            };
            format!("{prefix}{name}\t{value}\n")
        })
        .collect()
}

/// Every (path, watching session) of the data tables, all shards together.
pub fn data_watchers(views: &[ShardView]) -> impl Iterator<Item = (&str, i64)> + Clone {
    views
        .iter()
        .flat_map(|v| &v.data_watches)
        .flat_map(|(p, sessions)| sessions.iter().map(move |&s| (p.as_str(), s)))
}

fn watch_summary(views: &[ShardView]) -> String {
    let watchers = data_watchers(views);
    let sessions: BTreeSet<i64> = watchers.clone().map(|(_, s)| s).collect();
    let paths: BTreeSet<&str> = watchers.clone().map(|(p, _)| p).collect();
    format!(
        "{} connections watching {} paths\nTotal watches:{}\n",
        sessions.len(),
        paths.len(),
        watchers.count()
    )
}

fn watches_by_session(views: &[ShardView]) -> String {
    let mut by_session: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
    for (p, s) in data_watchers(views) {
        by_session.entry(s).or_default().insert(p);
    }
    let mut out = String::new();
    for (session, paths) in by_session {
        let _ = writeln!(out, "{session:#x}");
        for p in paths {
            let _ = writeln!(out, "\t{p}");
        }
    }
    out + "\n"
}

fn watches_by_path(views: &[ShardView]) -> String {
    let mut by_path: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for (p, s) in data_watchers(views) {
        by_path.entry(p).or_default().insert(s);
    }
    let mut out = String::new();
    for (path, sessions) in by_path {
        let _ = writeln!(out, "{path}");
        for s in sessions {
            let _ = writeln!(out, "\t{s:#x}");
        }
    }
    out + "\n"
}

fn dump(cx: &Context<'_>) -> String {
    let sessions: Vec<&SessionView> = cx.views.iter().flat_map(|v| &v.sessions).collect();
    // ZooKeeper groups sessions by expiry time rounded up to a tick.
    let tick = i64::from(cx.config.tick_time_ms.max(1));
    let mut buckets: BTreeMap<i64, Vec<&SessionView>> = BTreeMap::new();
    for s in &sessions {
        buckets
            .entry((s.expires_ms / tick + 1) * tick)
            .or_default()
            .push(s);
    }
    let mut out = format!(
        "SessionTracker dump:\nSession Sets ({})/({}):\n",
        buckets.len(),
        sessions.len()
    );
    for (expires, group) in &buckets {
        let _ = writeln!(out, "{} expire at {}:", group.len(), java_date(*expires));
        for s in group {
            let _ = writeln!(out, "\t{:#x}", s.id);
        }
    }
    let owners: Vec<_> = cx.tree.ephemerals().collect();
    let _ = writeln!(
        out,
        "ephemeral nodes dump:\nSessions with Ephemerals ({}):",
        owners.len()
    );
    for (session, paths) in owners {
        let _ = writeln!(out, "{session:#x}:");
        for p in paths {
            let _ = writeln!(out, "\t{p}");
        }
    }
    let attached: Vec<&&SessionView> = sessions.iter().filter(|s| s.peer.is_some()).collect();
    let _ = writeln!(
        out,
        "Connections dump:\nConnections Sets ({})/({}):",
        attached.len(),
        attached.len()
    );
    for s in attached {
        let _ = writeln!(out, "1 expire at {}:", java_date(s.expires_ms));
        if let Some(peer) = s.peer {
            let _ = writeln!(out, "\tip: /{peer} sessionId: {:#x}", s.id);
        }
    }
    out
}

/// A time as Java's `Date.toString` prints it in UTC: `Thu Dec 03 15:52:22 UTC 2026`.
pub fn java_date(epoch_ms: i64) -> String {
    let secs = epoch_ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {day:02} {:02}:{:02}:{:02} UTC {year}",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_as_java_prints_them() {
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(1_796_312_342_000), "Thu Dec 03 15:39:02 UTC 2026");
        assert_eq!(java_date(951_825_600_000), "Tue Feb 29 12:00:00 UTC 2000");
    }

    fn view(watches: &[(&str, &[i64])]) -> ShardView {
        ShardView {
            shard: 0,
            data_watches: watches
                .iter()
                .map(|(p, s)| (p.to_string(), s.to_vec()))
                .collect(),
            watch_count: 0,
            sessions: Vec::new(),
        }
    }

    #[test]
    fn watch_words_merge_the_shards() {
        let views = [
            view(&[("/a", &[1, 2]), ("/b", &[1])]),
            view(&[("/a", &[3])]),
        ];
        assert_eq!(
            watch_summary(&views),
            "3 connections watching 2 paths\nTotal watches:4\n"
        );
        assert_eq!(
            watches_by_session(&views),
            "0x1\n\t/a\n\t/b\n0x2\n\t/a\n0x3\n\t/a\n\n"
        );
        assert_eq!(
            watches_by_path(&views),
            "/a\n\t0x1\n\t0x2\n\t0x3\n/b\n\t0x1\n\n"
        );
    }
}
