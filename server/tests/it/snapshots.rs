//! Snapshots and recovery from them: taken in the background after
//! snapCount txns, recovery from the newest valid one plus the log after it,
//! a corrupt snapshot skipped for an older one, autopurge's retention, the
//! refusal to start when no valid snapshot reaches the oldest log segment,
//! and `zoocore snapshot dump`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::consts::perms;
use zoocore_net::records::*;
use zoocore_net::{Acl, Request, Response};
use zoocore_testkit::zoocore::ZoocoreProcess;

/// Frequent snapshots and 1 MiB segments, so a few thousand writes make several of each.
const SMALL: &str = "snapCount=100\nzoocore.logSegmentBytes=1048576\n\
                     zoocore.maxBatchBytes=65536\njute.maxbuffer=262144\n";

fn server(extra: &str) -> ZoocoreProcess {
    ZoocoreProcess::start(Path::new(env!("CARGO_BIN_EXE_zoocore")), extra)
}

fn client(s: &ZoocoreProcess) -> Client {
    let options = ConnectOptions {
        timeout_ms: 30_000,
        io_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    Client::connect(s.addr, &options).expect("connect")
}

fn files(s: &ZoocoreProcess, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(s.dir.join("data"))
        .expect("data dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(prefix))
                .is_some_and(|hex| hex.len() == 16)
        })
        .collect();
    found.sort();
    found
}

fn snapshots(s: &ZoocoreProcess) -> Vec<PathBuf> {
    files(s, "zoocore.snap.")
}

fn segments(s: &ZoocoreProcess) -> Vec<PathBuf> {
    files(s, "zoocore.log.")
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn create(c: &mut Client, path: &str, data: &[u8], flags: i32) {
    let reply = c
        .call(&Request::Create(CreateRequest {
            path: path.into(),
            data: Some(data.to_vec()),
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
            flags,
        }))
        .expect("create");
    assert_eq!(reply.header.err, 0, "create {path}");
}

fn set(c: &mut Client, path: &str, data: &[u8]) {
    let reply = c
        .call(&Request::SetData(SetDataRequest {
            path: path.into(),
            data: Some(data.to_vec()),
            version: -1,
        }))
        .expect("setData");
    assert_eq!(reply.header.err, 0, "setData {path}");
}

/// Data and version of a node.
fn get(c: &mut Client, path: &str) -> Option<(Vec<u8>, i32)> {
    let reply = c
        .call(&Request::GetData(PathWatchRequest {
            path: path.into(),
            watch: false,
        }))
        .expect("getData");
    match reply.body {
        Response::GetData(r) if reply.header.err == 0 => {
            Some((r.data.unwrap_or_default(), r.stat.version))
        }
        _ => None,
    }
}

/// Writes `n` nodes, then sets every third one twice.
fn load(c: &mut Client, n: usize, size: usize) {
    create(c, "/d", b"", 0);
    for i in 0..n {
        create(
            c,
            &format!("/d/n{i}"),
            &vec![b'a' + (i % 26) as u8; size],
            0,
        );
    }
    for i in (0..n).step_by(3) {
        set(c, &format!("/d/n{i}"), b"once");
        set(c, &format!("/d/n{i}"), format!("twice {i}").as_bytes());
    }
}

fn verify(c: &mut Client, n: usize, size: usize) {
    for i in 0..n {
        let path = format!("/d/n{i}");
        let expected = if i % 3 == 0 {
            (format!("twice {i}").into_bytes(), 2)
        } else {
            (vec![b'a' + (i % 26) as u8; size], 0)
        };
        assert_eq!(get(c, &path), Some(expected), "{path}");
    }
}

fn flip_byte_in_the_middle(path: &Path) {
    let mut image = std::fs::read(path).expect("read snapshot");
    let middle = image.len() / 2;
    image[middle] ^= 0x40;
    std::fs::write(path, image).expect("write snapshot");
}

/// The last line of the server's log that mentions `event`.
fn last_line(s: &ZoocoreProcess, event: &str) -> String {
    s.log()
        .lines()
        .rev()
        .find(|l| l.contains(event))
        .unwrap_or_else(|| panic!("no {event:?} in the log:\n{}", s.log()))
        .to_owned()
}

#[test]
fn recovery_starts_from_the_newest_snapshot_and_replays_the_log_after_it() {
    let mut s = server(SMALL);
    let mut c = client(&s);
    load(&mut c, 600, 100);
    wait_for("several snapshots", || snapshots(&s).len() >= 3);
    s.kill();
    let newest = snapshots(&s).pop().expect("a snapshot");
    s.restart();
    // srvr reports the recovered state before anything new is written.
    let srvr = zoocore_testkit::zk::four_letter_word(s.addr, "srvr").expect("srvr");
    assert!(srvr.contains("Node count: 605"), "{srvr}");
    assert!(!srvr.contains("Zxid: 0x0\n"), "{srvr}");
    let line = last_line(&s, "recovered");
    assert!(
        line.contains(&newest.display().to_string()),
        "recovery did not start from {}: {line}",
        newest.display()
    );
    verify(&mut client(&s), 600, 100);
    // The restart replayed the tail of the log; the next restart gets a
    // snapshot of exactly the recovered state and replays nothing.
    wait_for("a snapshot of the recovered state", || {
        s.log().contains("snapshot taken") && snapshots(&s).last() != Some(&newest)
    });
    s.restart();
    // Only this test's own connection came after that snapshot.
    let line = last_line(&s, "recovered");
    let txns: usize = line
        .split("txns=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no txn count in {line}"));
    assert!(txns <= 2, "{line}");
    verify(&mut client(&s), 600, 100);
}

#[test]
fn a_corrupt_snapshot_is_skipped_for_an_older_one() {
    let mut s = server(SMALL);
    let mut c = client(&s);
    load(&mut c, 400, 50);
    wait_for("two snapshots", || snapshots(&s).len() >= 2);
    s.kill();
    let all = snapshots(&s);
    let newest = all.last().expect("a snapshot");
    flip_byte_in_the_middle(newest);
    s.restart();
    assert!(
        s.log().contains("snapshot does not validate"),
        "{}",
        s.log()
    );
    let line = last_line(&s, "recovered");
    assert!(
        line.contains(&all[all.len() - 2].display().to_string()),
        "{line}"
    );
    verify(&mut client(&s), 400, 50);
}

#[test]
fn autopurge_keeps_the_newest_snapshots_and_the_log_they_need() {
    let config = format!("{SMALL}autopurge.purgeInterval=1\nautopurge.snapRetainCount=3\n");
    let mut s = server(&config);
    let mut c = client(&s);
    // ~3.5 MiB of txns: several 1 MiB segments.
    load(&mut c, 1000, 3500);
    wait_for("many snapshots", || snapshots(&s).len() >= 5);
    wait_for("several segments", || segments(&s).len() >= 3);
    s.kill();
    let before = segments(&s);
    let old_snapshots = snapshots(&s);
    // Autopurge runs at start, as ZooKeeper's does.
    s.restart();
    wait_for("a purge", || s.log().contains("purged"));
    let (gone, kept) = old_snapshots.split_at(old_snapshots.len() - 3);
    assert!(gone.iter().all(|p| !p.exists()), "{gone:?}");
    assert!(kept.iter().all(|p| p.exists()), "{kept:?}");
    let after = segments(&s);
    assert!(after.len() < before.len(), "{before:?} -> {after:?}");
    assert_eq!(after.last(), before.last(), "the last segment stays");
    verify(&mut client(&s), 1000, 3500);
    // The remaining log starts after zxid 1: without a valid snapshot the
    // state before it is gone, and the server must say so rather than start.
    s.kill();
    for snapshot in snapshots(&s) {
        flip_byte_in_the_middle(&snapshot);
    }
    let stderr = s.refused_start();
    let first = after[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        stderr.contains(&first)
            && stderr.contains("records before it are missing")
            && stderr.contains("refusing to start"),
        "{stderr}"
    );
}

#[test]
fn snapshot_dump_prints_nodes_with_stat_and_sessions() {
    let mut s = server(SMALL);
    let mut c = client(&s);
    create(&mut c, "/eph", b"e", 1); // ephemeral, session stays open
    load(&mut c, 120, 10);
    wait_for("a snapshot", || !snapshots(&s).is_empty());
    let session = format!("{:#x}", c.session_id());
    s.kill();
    let out = s.tool(&["snapshot", "dump"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "ZNode Details (count=",
        "\n/d/n7\n",
        "  dataVersion = 0",
        "acl = [world:anyone:31]",
        &format!("ephemeralOwner = {session}"),
        "Session Details (sid, timeout, ephemeralCount): 1",
        &format!("{session}, 30000, 1"),
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
}
