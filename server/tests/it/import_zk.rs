//! `zoocore import-zk`: Apache ZooKeeper fills a data dir (several fuzzy
//! snapshots, rolled logs, a torn tail from SIGKILL), zoocore imports it and
//! serves it, and both servers, ZooKeeper restarted on its own dir, answer
//! alike for every node; sessions and sequential numbering carry over.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::consts::perms;
use zoocore_net::records::CreateRequest;
use zoocore_net::{Acl, Request, Response};
use zoocore_testkit::zk::{
    connect_as, dump_tree, fill_and_crash, import_jvm_props, server_zxid, ZooKeeperProcess,
    IMPORT_SUPER,
};
use zoocore_testkit::zoocore::ZoocoreProcess;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zoocore"))
}

/// A scratch dir removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn import_zk(config: &Path, from: &Path) -> Output {
    Command::new(binary())
        .arg("--config")
        .arg(config)
        .arg("import-zk")
        .arg("--from")
        .arg(from)
        .output()
        .expect("run zoocore import-zk")
}

/// The reply to a persistent sequential create, and its zxid.
fn create_sequential(client: &mut Client, prefix: &str) -> (Response, i64) {
    let request = Request::Create(CreateRequest {
        path: prefix.to_owned(),
        data: Some(b"after".to_vec()),
        acl: vec![Acl::new(perms::ALL, "world", "anyone")],
        flags: 2,
    });
    let reply = client.call(&request).expect("create");
    (reply.body, reply.header.zxid)
}

#[test]
fn an_imported_zookeeper_data_dir_serves_the_same_tree() {
    let mut zk =
        ZooKeeperProcess::start_with("snapCount=1000\npreAllocSize=64\n", &import_jvm_props(1000));
    let workload = fill_and_crash(&mut zk);

    let scratch = Scratch(std::env::temp_dir().join(format!(
        "zoocore-import-zk-{}-{}",
        std::process::id(),
        zk.addr.port()
    )));
    let data = scratch.0.join("data");
    std::fs::create_dir_all(&scratch.0).expect("scratch dir");
    let config = scratch.0.join("import.cfg");
    std::fs::write(
        &config,
        format!("dataDir={}\nextendedTypesEnabled=true\n", data.display()),
    )
    .expect("write import.cfg");

    let out = import_zk(&config, &zk.data_dir());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "import-zk failed: {stdout}{stderr}");
    assert!(
        stdout.starts_with("imported ") && stdout.contains("digest") && stdout.lines().count() == 1,
        "summary: {stdout}"
    );
    eprintln!("{stdout}{stderr}");
    // A second import would overwrite zoocore's data: refused.
    let again = import_zk(&config, &zk.data_dir().join("version-2"));
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds zoocore files"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // ZooKeeper with a separate dataLogDir: snapshots and logs in two dirs.
    let (snaps, logs) = (scratch.0.join("zk-data"), scratch.0.join("zk-logs"));
    for entry in std::fs::read_dir(zk.data_dir().join("version-2")).expect("version-2") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let to = if name.starts_with("log.") {
            &logs
        } else {
            &snaps
        };
        let to = to.join("version-2");
        std::fs::create_dir_all(&to).expect("mkdir");
        std::fs::copy(entry.path(), to.join(&name)).expect("copy");
    }
    let split = Command::new(binary())
        .arg("import-zk")
        .args([
            "--from".as_ref(),
            snaps.as_os_str(),
            "--from".as_ref(),
            logs.as_os_str(),
        ])
        .arg("--data-dir")
        .arg(scratch.0.join("split"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run zoocore import-zk");
    let summary = |s: &str| s.split(" from ").next().unwrap_or_default().to_owned();
    assert_eq!(
        summary(&String::from_utf8_lossy(&split.stdout)),
        summary(&stdout),
        "{}",
        String::from_utf8_lossy(&split.stderr)
    );

    zk.restart_with(&import_jvm_props(600_000));
    let superdigest = zoocore_engine::acl::digest_of(IMPORT_SUPER);
    let zoocore = ZoocoreProcess::start(
        binary(),
        &format!(
            "dataDir={}\nDigestAuthenticationProvider.superDigest={superdigest}\n",
            data.display()
        ),
    );

    let theirs = dump_tree(zk.addr);
    let ours = dump_tree(zoocore.addr);
    let paths: BTreeSet<&String> = theirs.keys().chain(ours.keys()).collect();
    let diffs: Vec<String> = paths
        .into_iter()
        .filter(|p| theirs.get(*p) != ours.get(*p))
        .map(|p| {
            format!(
                "{p}: ZooKeeper {:?}\n  zoocore {:?}",
                theirs.get(p),
                ours.get(p)
            )
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "{} of {} nodes differ, first ones:\n{}",
        diffs.len(),
        theirs.len(),
        diffs[..diffs.len().min(10)].join("\n")
    );
    assert!(theirs.len() > 2000, "{} nodes", theirs.len());

    // Ephemerals are owned by the session left open, on both.
    let open = workload.open_session.session_id();
    let owners: BTreeSet<i64> = ours
        .values()
        .map(|n| n.stat.ephemeral_owner)
        .filter(|&o| o != 0)
        .collect();
    assert_eq!(owners, BTreeSet::from([open]));
    assert!(!owners.contains(&workload.closed_session));
    assert!(!owners.contains(&workload.expired_session));

    // That session resumes on zoocore with ZooKeeper's id and password.
    let resume = ConnectOptions {
        timeout_ms: workload.open_session.negotiated_timeout(),
        session_id: open,
        passwd: workload.open_session.passwd().to_vec(),
        io_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let resumed = Client::connect(zoocore.addr, &resume).expect("resume the imported session");
    assert_eq!(resumed.session_id(), open);

    // The next sequential name under a parent with deleted children, and
    // the next zxids: both servers continue where ZooKeeper's log ended
    // (each saw the same session creations since).
    let parent = workload.sequential_parent;
    let mut on_zk = connect_as(zk.addr, 30_000, &[]);
    let mut on_zoocore = connect_as(zoocore.addr, 30_000, &[]);
    let prefix = format!("{parent}/job-");
    let (zk_name, zk_zxid) = create_sequential(&mut on_zk, &prefix);
    assert!(matches!(&zk_name, Response::Create(p) if p.starts_with(&prefix)));
    assert_eq!(
        create_sequential(&mut on_zoocore, &prefix),
        (zk_name, zk_zxid)
    );
    assert_eq!(server_zxid(zoocore.addr), server_zxid(zk.addr));
}
