//! Four-letter words on zoocore and on Apache ZooKeeper, set up the same
//! way: one session with an ephemeral node, two data watches and a child
//! watch. Each word's answer is checked on both servers, with session ids
//! and values that differ by nature (sizes, times, versions) left out.

use std::net::SocketAddr;
use std::path::Path;

use zoocore_testkit::zk::{four_letter_word, watched_session, ZooKeeperProcess};
use zoocore_testkit::zoocore::ZoocoreProcess;

/// Lines of an answer with the session id replaced, sorted (ZooKeeper lists
/// paths and sessions in hash order).
fn normalized(answer: &str, session: i64) -> Vec<String> {
    let mut lines: Vec<String> = answer
        .lines()
        .map(|l| l.replace(&format!("{session:#x}"), "SESSION"))
        .collect();
    lines.sort();
    lines
}

fn keys(answer: &str, separator: char) -> Vec<String> {
    answer
        .lines()
        .filter_map(|l| l.split_once(separator).map(|(k, _)| k.to_owned()))
        .collect()
}

fn value<'a>(answer: &'a str, key: &str) -> Option<&'a str> {
    answer
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}\t")))
}

/// Everything a server answers, by word, with its session id.
fn answers(addr: SocketAddr) -> (i64, Vec<(&'static str, String)>) {
    let client = watched_session(addr);
    let words = [
        "ruok", "isro", "wchs", "wchc", "wchp", "dump", "cons", "mntr", "conf", "dirs", "envi",
        "crst", "srst",
    ];
    let answered = words
        .iter()
        .map(|w| (*w, four_letter_word(addr, w).expect("four-letter word")))
        .collect();
    let session = client.session_id();
    drop(client);
    (session, answered)
}

#[test]
fn every_word_answers_as_apache_zookeeper_does() {
    let zoocore = ZoocoreProcess::start(Path::new(env!("CARGO_BIN_EXE_zoocore")), "");
    let zk = ZooKeeperProcess::start(&[]);
    let servers = [
        ("zoocore", answers(zoocore.addr)),
        ("zookeeper", answers(zk.addr)),
    ];
    for (name, (session, answers)) in &servers {
        let get = |word: &str| &answers.iter().find(|(w, _)| *w == word).expect("asked").1;
        let ctx = |word: &str| format!("{name} {word}:\n{}", get(word));
        assert_eq!(get("ruok"), "imok", "{}", ctx("ruok"));
        assert_eq!(get("isro"), "rw", "{}", ctx("isro"));
        assert_eq!(get("crst"), "Connection stats reset.\n", "{}", ctx("crst"));
        assert_eq!(get("srst"), "Server stats reset.\n", "{}", ctx("srst"));
        assert_eq!(
            get("wchs"),
            "1 connections watching 2 paths\nTotal watches:2\n",
            "{}",
            ctx("wchs")
        );
        assert_eq!(
            normalized(get("wchc"), *session),
            ["", "\t/w/a", "\t/w/nope", "SESSION"],
            "{}",
            ctx("wchc")
        );
        assert_eq!(
            normalized(get("wchp"), *session),
            ["", "\tSESSION", "\tSESSION", "/w/a", "/w/nope"],
            "{}",
            ctx("wchp")
        );
        let dump = get("dump");
        for part in [
            "SessionTracker dump:\nSession Sets (".to_owned(),
            format!("\t{session:#x}\n"),
            "ephemeral nodes dump:\nSessions with Ephemerals (1):\n".to_owned(),
            format!("{session:#x}:\n\t/w/e\n"),
            "Connections dump:\n".to_owned(),
        ] {
            assert!(dump.contains(&part), "{part:?} missing; {}", ctx("dump"));
        }
        let cons = get("cons");
        assert!(
            cons.lines()
                .any(|l| l.contains(&format!("sid={session:#x},lop=")) && l.contains(",lzxid=0x")),
            "{}",
            ctx("cons")
        );
        assert!(cons.ends_with(")\n\n"), "{}", ctx("cons"));
        let mntr = get("mntr");
        for key in [
            "zk_version",
            "zk_server_state",
            "zk_ephemerals_count",
            "zk_num_alive_connections",
            "zk_avg_latency",
            "zk_min_latency",
            "zk_max_latency",
            "zk_outstanding_requests",
            "zk_znode_count",
            "zk_watch_count",
            "zk_packets_sent",
            "zk_packets_received",
            "zk_approximate_data_size",
            "zk_open_file_descriptor_count",
            "zk_max_file_descriptor_count",
            "zk_uptime",
        ] {
            assert!(
                keys(mntr, '\t').iter().any(|k| k == key),
                "{key} missing; {}",
                ctx("mntr")
            );
        }
        assert_eq!(value(mntr, "zk_server_state"), Some("standalone"));
        assert_eq!(
            value(mntr, "zk_ephemerals_count"),
            Some("1"),
            "{}",
            ctx("mntr")
        );
        // Two data watches and one child watch.
        assert_eq!(value(mntr, "zk_watch_count"), Some("3"), "{}", ctx("mntr"));
        let conf = keys(get("conf"), '=');
        for key in [
            "clientPort",
            "dataDir",
            "dataLogDir",
            "tickTime",
            "maxClientCnxns",
            "minSessionTimeout",
            "maxSessionTimeout",
            "serverId",
        ] {
            assert!(
                conf.iter().any(|k| k == key),
                "{key} missing; {}",
                ctx("conf")
            );
        }
        assert_eq!(
            keys(get("dirs"), ':'),
            ["datadir_size", "logdir_size"],
            "{}",
            ctx("dirs")
        );
        let envi = get("envi");
        assert!(
            envi.starts_with("Environment:\nzookeeper.version=") && envi.contains("\nhost.name="),
            "{}",
            ctx("envi")
        );
    }
}

/// zoocore's default whitelist is ZooKeeper's, `srvr` alone (a unit test
/// of the config pins it); these servers allow `ruok` too, which the test
/// harness uses to see that a server is up.
#[test]
fn words_outside_the_whitelist_are_refused_as_zookeeper_refuses_them() {
    let whitelist = "4lw.commands.whitelist=srvr,ruok";
    let zoocore = ZoocoreProcess::start(Path::new(env!("CARGO_BIN_EXE_zoocore")), whitelist);
    let zk = ZooKeeperProcess::start_with(whitelist, &[]);
    for addr in [zoocore.addr, zk.addr] {
        let srvr = four_letter_word(addr, "srvr").expect("srvr");
        assert!(srvr.contains("Mode: standalone"), "{srvr}");
        for word in [
            "mntr", "wchs", "wchc", "wchp", "cons", "dump", "conf", "dirs", "crst", "srst", "envi",
            "stat",
        ] {
            assert_eq!(
                four_letter_word(addr, word).expect("answer"),
                format!("{word} is not executed because it is not in the whitelist.\n")
            );
        }
    }
}

/// Debian's `zkServer.sh status`, which asks `srvr` and parses its Mode
/// line, reports both servers as standalone.
#[test]
fn zkserver_sh_status_reads_both_servers() {
    let zoocore = ZoocoreProcess::start(Path::new(env!("CARGO_BIN_EXE_zoocore")), "");
    let zk = ZooKeeperProcess::start(&[]);
    for dir in [zoocore.dir.clone(), zk.dir().to_owned()] {
        let out = std::process::Command::new("/usr/share/zookeeper/bin/zkServer.sh")
            .arg("status")
            .arg(dir.join("zoo.cfg"))
            .env("ZOOCFGDIR", &dir)
            .output()
            .expect("run zkServer.sh (scripts/install-deps.sh installs it)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("Mode: standalone"), "{text}");
    }
}
