//! Four-letter words answered on the client port: ruok, srvr, stat, envi
//! (the full set comes with the operability milestone).

use std::sync::Arc;

use crate::config::Config;
use crate::stats::Stats;

/// ZooKeeper version clients see; kazoo and zkServer.sh parse it.
pub const ZK_VERSION: &str = "3.9.2";

pub fn version_line() -> String {
    format!("{ZK_VERSION}-zoocore-{}", env!("CARGO_PKG_VERSION"))
}

/// The answer to a four-letter word.
pub fn answer(word: &str, config: &Config, stats: &Arc<Stats>) -> String {
    if !config.allows_word(word) {
        return format!("{word} is not executed because it is not in the whitelist.\n");
    }
    match word {
        "ruok" => "imok".to_owned(),
        "srvr" => server_summary(stats, false),
        "stat" => server_summary(stats, true),
        "envi" => format!(
            "Environment:\nzookeeper.version={}, built for zoocore\nhost.name={}\n\
             java.version=none (zoocore is written in Rust)\nos.name=Linux\n\
             user.dir={}\nzoocore.shards={}\n",
            version_line(),
            hostname(),
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            config.shards
        ),
        other => format!("{other} is not supported by zoocore yet.\n"),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn server_summary(stats: &Arc<Stats>, with_clients: bool) -> String {
    let clients = if with_clients {
        format!("Clients:\n{}\n", stats.client_lines())
    } else {
        String::new()
    };
    format!(
        "Zookeeper version: {}, built on unknown\n{clients}Latency min/avg/max: {}\n\
         Received: {}\nSent: {}\nConnections: {}\nOutstanding: {}\nZxid: {:#x}\nMode: standalone\nNode count: {}\n",
        version_line(),
        stats.latency_line(),
        stats.received(),
        stats.sent(),
        Stats::get(&stats.connections),
        stats.outstanding(),
        Stats::get(&stats.last_zxid),
        Stats::get(&stats.node_count),
    )
}
