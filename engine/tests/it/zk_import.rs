//! Import of Apache ZooKeeper data dirs: hand-built snapshots and logs for
//! every format rule and failure mode, then a real data dir written by
//! Apache ZooKeeper 3.8 compared node by node with what ZooKeeper itself
//! serves from it after a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use zoocore_engine::tree::StatPersisted;
use zoocore_engine::zk_import::{
    adler32, import, tree_digest, DigestCheck, Imported, ZkFiles, ZkImportError,
};
use zoocore_engine::DataTree;
use zoocore_net::consts::perms;
use zoocore_net::jute::WriteJute;
use zoocore_net::records::CreateRequest;
use zoocore_net::{Acl, Request, Response};
use zoocore_testkit::zk::{
    connect_as, dump_tree, fill_and_crash, import_jvm_props, pipeline, server_zxid, WireNode,
    ZooKeeperProcess,
};

// ------------------------------------------------------------ byte builders

const OPEN: i64 = -1;

struct Node {
    path: &'static str,
    data: Option<&'static [u8]>,
    acl: i64,
    stat: StatPersisted,
}

fn node(path: &'static str, data: &'static [u8], czxid: i64) -> Node {
    Node {
        path,
        data: Some(data),
        acl: OPEN,
        stat: StatPersisted {
            czxid,
            mzxid: czxid,
            ctime: 1000 + czxid,
            mtime: 1000 + czxid,
            pzxid: czxid,
            ..Default::default()
        },
    }
}

/// The nodes every ZooKeeper tree has, root written as "".
fn system_nodes() -> Vec<Node> {
    let mut config = node("/zookeeper/config", b"", 0);
    config.acl = 1;
    config.stat.aversion = -1;
    vec![
        node("", b"", 0),
        node("/zookeeper", b"", 0),
        node("/zookeeper/quota", b"", 0),
        config,
    ]
}

fn read_only() -> Vec<Acl> {
    vec![Acl::new(perms::READ, "world", "anyone")]
}

fn digest_acl() -> Vec<Acl> {
    vec![Acl::new(
        perms::ALL,
        "digest",
        "bob:Y9v2QpMvUjvNcRGhwBWydbNxq6I=",
    )]
}

fn put_stat(out: &mut Vec<u8>, s: &StatPersisted) {
    out.put_i64(s.czxid);
    out.put_i64(s.mzxid);
    out.put_i64(s.ctime);
    out.put_i64(s.mtime);
    out.put_i32(s.version);
    out.put_i32(s.cversion);
    out.put_i32(s.aversion);
    out.put_i64(s.ephemeral_owner);
    out.put_i64(s.pzxid);
}

fn seal(out: &mut Vec<u8>) {
    let sum = adler32(out);
    out.put_i64(sum);
    out.put_string("/");
}

/// A snapshot as ZooKeeper 3.8 writes it; `digest` adds the 3.6+ section.
fn snapshot(sessions: &[(i64, i32)], nodes: &[Node], digest: Option<(i64, i64)>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"ZKSN");
    out.put_i32(2);
    out.put_i64(0);
    out.put_i32(sessions.len() as i32);
    for (id, timeout) in sessions {
        out.put_i64(*id);
        out.put_i32(*timeout);
    }
    out.put_i32(2);
    out.put_i64(1);
    out.put_vec(&read_only());
    out.put_i64(2);
    out.put_vec(&digest_acl());
    for n in nodes {
        out.put_string(n.path);
        out.put_buffer(n.data);
        out.put_i64(n.acl);
        put_stat(&mut out, &n.stat);
    }
    out.put_string("/");
    seal(&mut out);
    if let Some((zxid, value)) = digest {
        out.put_i64(zxid);
        out.put_i32(2);
        out.put_i64(value);
        seal(&mut out);
    }
    out
}

const SESSION: i64 = 0x1000_0000_0000_0001;
const T0: i64 = 1_700_000_000_000;

/// A log entry: TxnHeader, body, and the 3.6+ digest if given.
fn entry(zxid: i64, op: i32, body: &[u8], digest: Option<i64>) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i64(SESSION);
    out.put_i32(zxid as i32);
    out.put_i64(zxid);
    out.put_i64(T0 + zxid);
    out.put_i32(op);
    out.extend_from_slice(body);
    if let Some(d) = digest {
        out.put_i32(2);
        out.put_i64(d);
    }
    out
}

fn record(out: &mut Vec<u8>, entry: &[u8]) {
    out.put_i64(adler32(entry));
    out.put_buffer(Some(entry));
    out.push(b'B');
}

/// A log file: header, records, then zero padding as preallocation leaves.
fn log(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"ZKLG");
    out.put_i32(2);
    out.put_i64(0);
    for e in entries {
        record(&mut out, e);
    }
    out.resize(out.len() + 4096, 0);
    out
}

fn create_body(path: &str, data: &[u8], ephemeral: bool, parent_cversion: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_string(path);
    b.put_buffer(Some(data));
    b.put_vec(&digest_acl());
    b.put_bool(ephemeral);
    b.put_i32(parent_cversion);
    b
}

fn create(zxid: i64, path: &str, parent_cversion: i32) -> Vec<u8> {
    entry(
        zxid,
        1,
        &create_body(path, b"v", false, parent_cversion),
        None,
    )
}

fn set_data_body(path: &str, data: &[u8], version: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_string(path);
    b.put_buffer(Some(data));
    b.put_i32(version);
    b
}

fn path_body(path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_string(path);
    b
}

fn int_body(v: i32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn files<'a>(list: &'a [(&str, Vec<u8>)]) -> ZkFiles<'a> {
    ZkFiles {
        files: list
            .iter()
            .map(|(n, b)| (n.to_string(), b.as_slice()))
            .collect(),
    }
}

fn run(list: &[(&str, Vec<u8>)]) -> Imported {
    import(&files(list), true).expect("import")
}

fn fail(list: &[(&str, Vec<u8>)]) -> ZkImportError {
    match import(&files(list), true) {
        Ok(imported) => panic!("import succeeded: {imported:?}"),
        Err(e) => e,
    }
}

fn base_snapshot() -> Vec<u8> {
    let mut nodes = system_nodes();
    nodes[0].stat.cversion = 1;
    nodes.push(node("/a", b"hello", 3));
    snapshot(&[(SESSION, 30_000)], &nodes, None)
}

fn data(tree: &DataTree, p: &str) -> Option<Vec<u8>> {
    tree.get(p)
        .unwrap_or_else(|| panic!("{p} missing"))
        .data
        .as_deref()
        .map(<[u8]>::to_vec)
}

// ------------------------------------------------------------ format tests

#[test]
fn snapshot_nodes_acls_and_sessions_are_restored() {
    let mut nodes = system_nodes();
    let mut b = node("/b", b"", 4);
    b.acl = 2;
    b.data = None;
    b.stat.version = 3;
    b.stat.ephemeral_owner = SESSION;
    nodes.push(node("/a", b"hello", 3));
    nodes.push(node("/a/x", b"x", 5));
    nodes.push(b);
    let snap = snapshot(&[(SESSION, 30_000), (7, 4000)], &nodes, None);
    let imported = run(&[("snapshot.5", snap)]);
    let tree = &imported.tree;
    assert_eq!(imported.snapshot.as_deref(), Some("snapshot.5"));
    assert_eq!(imported.snapshot_zxid, 5);
    assert_eq!(tree.last_zxid(), 5);
    assert_eq!(imported.txns, 0);
    assert_eq!(tree.node_count(), 7);
    assert_eq!(data(tree, "/a"), Some(b"hello".to_vec()));
    assert_eq!(data(tree, "/b"), None, "null data stays null");
    assert_eq!(&*tree.get("/b").unwrap().acl, digest_acl().as_slice());
    assert_eq!(
        &*tree.get("/a").unwrap().acl,
        &[Acl::new(perms::ALL, "world", "anyone")]
    );
    assert_eq!(
        &*tree.get("/zookeeper/config").unwrap().acl,
        read_only().as_slice()
    );
    assert_eq!(tree.get("/b").unwrap().stat.version, 3);
    assert_eq!(tree.ephemerals_of(SESSION).collect::<Vec<_>>(), ["/b"]);
    assert_eq!(tree.sessions().get(&7), Some(&4000));
    assert_eq!(tree.sessions().len(), 2);
    assert_eq!(
        tree.child_names("/").collect::<Vec<_>>(),
        ["a", "b", "zookeeper"]
    );
    assert_eq!(imported.digest, DigestCheck::Unavailable);
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
}

#[test]
fn log_txns_after_the_snapshot_are_replayed_in_zxid_order_across_files() {
    let snap = base_snapshot();
    let mut multi = Vec::new();
    multi.put_i32(3);
    for (op, body) in [
        (1, create_body("/m", b"", false, 3)),
        (13, {
            let mut b = path_body("/a");
            b.put_i32(0);
            b
        }),
        (5, set_data_body("/m", b"set-in-multi", 1)),
    ] {
        multi.put_i32(op);
        multi.put_buffer(Some(&body));
    }
    let mut close = Vec::new();
    close.put_vec(&["/e".to_string()]);
    let log_a = log(&[
        create(2, "/old", 0), // before the snapshot: skipped
        create(3, "/a", 1),   // the snapshot may hold it already (fuzzy)
        entry(4, -10, &int_body(10_000), None),
        entry(5, 1, &create_body("/e", b"eph", true, 2), None),
    ]);
    let log_b = log(&[
        entry(6, 5, &set_data_body("/a", b"again", 1), None),
        entry(7, -1, &int_body(-110), None),
        entry(8, 14, &multi, None),
        entry(9, -11, &close, None),
        entry(10, 2, &path_body("/m"), None),
    ]);
    // Log names are the first zxid in them; the snapshot began at 4.
    let imported = run(&[
        ("log.6", log_b),
        ("snapshot.4", snap),
        ("log.2", log_a),
        ("acceptedEpoch", b"0".to_vec()),
    ]);
    let tree = &imported.tree;
    assert_eq!(imported.txns, 6);
    assert_eq!(imported.files_read, ["snapshot.4", "log.2", "log.6"]);
    assert_eq!(tree.last_zxid(), 10);
    assert!(tree.get("/old").is_none());
    assert!(
        tree.get("/e").is_none(),
        "closeSession deleted the ephemeral"
    );
    assert!(tree.get("/m").is_none());
    assert_eq!(data(tree, "/a"), Some(b"again".to_vec()));
    let a = tree.get("/a").unwrap();
    assert_eq!((a.stat.version, a.stat.mzxid, a.stat.mtime), (1, 6, T0 + 6));
    let root = tree.get("/").unwrap().stat;
    // Creations counted: /a (snapshot), /e, /m; the last change is /m's delete.
    assert_eq!((root.cversion, root.pzxid), (3, 10));
    assert!(
        tree.sessions().is_empty(),
        "closeSession ended the snapshot's session"
    );
}

#[test]
fn a_failed_multi_applies_nothing() {
    let mut multi = Vec::new();
    multi.put_i32(3);
    for (op, body) in [
        (1, create_body("/m", b"", false, 2)),
        (-1, int_body(-101)),
        (-1, int_body(-2)),
    ] {
        multi.put_i32(op);
        multi.put_buffer(Some(&body));
    }
    let imported = run(&[
        ("snapshot.4", base_snapshot()),
        ("log.5", log(&[entry(5, 14, &multi, None)])),
    ]);
    assert!(imported.tree.get("/m").is_none());
    assert_eq!(imported.tree.last_zxid(), 5);
}

#[test]
fn close_session_bodies_of_every_version_are_read() {
    // 3.6+: CloseSessionTxn and digest; closeSessionTxn disabled: digest
    // only; 3.5: nothing.
    let mut with_paths = Vec::new();
    with_paths.put_vec(&["/e".to_string()]);
    for body in [with_paths.clone(), Vec::new()] {
        for digest in [None, Some(0)] {
            let imported = run(&[
                ("snapshot.4", base_snapshot()),
                (
                    "log.5",
                    log(&[
                        entry(5, 1, &create_body("/e", b"", true, 2), None),
                        entry(6, -11, &body, digest),
                    ]),
                ),
            ]);
            assert!(imported.tree.get("/e").is_none());
            assert!(!imported.tree.sessions().contains_key(&SESSION));
        }
    }
}

#[test]
fn a_torn_tail_keeps_the_records_before_it() {
    let good = [create(5, "/x", 2), create(6, "/y", 3)];
    let full = log(&[good[0].clone(), good[1].clone(), create(7, "/z", 4)]);
    let cut_at = {
        let mut prefix = Vec::new();
        prefix.extend_from_slice(&full[..16]);
        for e in &good {
            record(&mut prefix, e);
        }
        prefix.len()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // The file ends inside the last record.
        ("short", full[..cut_at + 20].to_vec()),
        // Its end was never written: zeros where 'B' should be.
        ("no terminator", {
            let mut b = full[..full.len() - 4096].to_vec();
            *b.last_mut().unwrap() = 0;
            b.resize(b.len() + 4096, 0);
            b
        }),
        // A garbage length.
        ("garbage length", {
            let mut b = full.clone();
            b[cut_at + 8..cut_at + 12].copy_from_slice(&0x7fff_fff0i32.to_be_bytes());
            b
        }),
        // The last record's bytes differ from its checksum.
        ("bad checksum", {
            let mut b = full.clone();
            b[cut_at + 40] ^= 0xff;
            b
        }),
    ];
    for (what, bytes) in cases {
        let imported = run(&[("snapshot.4", base_snapshot()), ("log.5", bytes)]);
        assert_eq!(imported.txns, 2, "{what}");
        assert!(imported.tree.get("/y").is_some(), "{what}");
        assert!(imported.tree.get("/z").is_none(), "{what}");
        assert_eq!(
            imported.warnings.len(),
            1,
            "{what}: {:?}",
            imported.warnings
        );
        let warning = &imported.warnings[0];
        assert!(
            warning.contains("log.5") && warning.contains(&format!("offset {cut_at}")),
            "{what}: {warning}"
        );
    }
    // A clean end (zeros after the last record) is no warning.
    let imported = run(&[("snapshot.4", base_snapshot()), ("log.5", full)]);
    assert_eq!((imported.txns, imported.warnings.len()), (3, 0));
}

#[test]
fn a_bad_checksum_followed_by_valid_records_is_corruption() {
    let mut bytes = log(&[create(5, "/x", 2), create(6, "/y", 3), create(7, "/z", 4)]);
    let second = 16 + 12 + create(5, "/x", 2).len() + 1;
    bytes[second + 40] ^= 0xff;
    match fail(&[("snapshot.4", base_snapshot()), ("log.5", bytes)]) {
        ZkImportError::Corrupt { file, offset, .. } => {
            assert_eq!((file.as_str(), offset), ("log.5", second));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_missing_zxid_is_a_gap_naming_it() {
    let err = fail(&[
        ("snapshot.4", base_snapshot()),
        ("log.5", log(&[create(5, "/x", 2), create(6, "/y", 3)])),
        ("log.9", log(&[create(9, "/z", 4)])),
    ]);
    match &err {
        ZkImportError::Gap {
            missing,
            next,
            file,
            ..
        } => assert_eq!((*missing, *next, file.as_str()), (7, 9, "log.9")),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("0x7"), "{err}");

    // The logs start after the snapshot.
    let err = fail(&[
        ("snapshot.4", base_snapshot()),
        ("log.6", log(&[create(6, "/y", 3)])),
    ]);
    assert!(
        matches!(err, ZkImportError::Gap { missing: 5, .. }),
        "{err}"
    );

    // A file cut short by a crash, continued in the next one ZooKeeper
    // started after restarting, is no gap; the gap message names the cut.
    let torn = {
        let mut b = log(&[create(5, "/x", 2)]);
        let end = 16 + 12 + create(5, "/x", 2).len() + 1;
        // A record whose length was written but not its end.
        b[end..end + 12].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 99]);
        b
    };
    let imported = run(&[
        ("snapshot.4", base_snapshot()),
        ("log.5", torn.clone()),
        ("log.6", log(&[create(6, "/y", 3)])),
    ]);
    assert_eq!(imported.txns, 2);
    let err = fail(&[
        ("snapshot.4", base_snapshot()),
        ("log.5", torn),
        ("log.7", log(&[create(7, "/y", 3)])),
    ]);
    assert!(err.to_string().contains("log.5 ends early"), "{err}");
}

#[test]
fn a_new_epoch_continues_the_log() {
    let imported = run(&[
        ("snapshot.4", base_snapshot()),
        ("log.5", log(&[create(5, "/x", 2)])),
        ("log.100000001", log(&[create(0x1_0000_0001, "/y", 3)])),
    ]);
    assert_eq!(imported.tree.last_zxid(), 0x1_0000_0001);
    let err = fail(&[
        ("snapshot.4", base_snapshot()),
        ("log.5", log(&[create(5, "/x", 2)])),
        ("log.100000002", log(&[create(0x1_0000_0002, "/y", 3)])),
    ]);
    assert!(
        matches!(err, ZkImportError::Gap { missing: 6, .. }),
        "{err}"
    );
}

#[test]
fn a_snapshot_with_a_bad_checksum_falls_back_to_an_older_one() {
    let mut newer = base_snapshot();
    let n = newer.len();
    newer[n - 20] ^= 1; // inside the checksummed nodes
    let older = snapshot(&[], &system_nodes(), None);
    let imported = run(&[
        ("snapshot.4", newer.clone()),
        ("snapshot.2", older),
        (
            "log.1",
            log(&[create(1, "/q", 1), create(3, "/a", 1), create(4, "/x", 2)]),
        ),
    ]);
    assert_eq!(imported.snapshot.as_deref(), Some("snapshot.2"));
    assert_eq!(imported.txns, 2);
    assert!(imported.tree.get("/a").is_some() && imported.tree.get("/x").is_some());
    assert!(
        imported.tree.get("/q").is_none(),
        "zxid 1 is before the snapshot"
    );
    assert!(
        imported.warnings[0].contains("snapshot.4") && imported.warnings[0].contains("checksum"),
        "{:?}",
        imported.warnings
    );
    // A truncated newest snapshot (a crash while writing it) is skipped too.
    let imported = run(&[
        ("snapshot.4", newer[..n / 2].to_vec()),
        ("snapshot.2", snapshot(&[], &system_nodes(), None)),
        ("log.3", log(&[create(3, "/a", 1)])),
    ]);
    assert_eq!(imported.snapshot.as_deref(), Some("snapshot.2"));

    let err = fail(&[("snapshot.4", newer)]);
    assert!(matches!(err, ZkImportError::NoValidSnapshot(_)), "{err}");
    assert!(err.to_string().contains("snapshot.4"), "{err}");
}

#[test]
fn compressed_snapshots_are_refused_by_name() {
    let err = fail(&[("snapshot.4.gz", vec![0x1f, 0x8b, 8, 0])]);
    assert!(
        matches!(err, ZkImportError::Compressed { method: "gzip", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("snapshot.4.gz"), "{err}");
    let err = fail(&[("snapshot.4.snappy", vec![0x82, b'S'])]);
    assert!(
        matches!(
            err,
            ZkImportError::Compressed {
                method: "snappy",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn no_files_and_bad_headers_are_clear_errors() {
    assert_eq!(fail(&[("myid", b"1".to_vec())]), ZkImportError::NoFiles);
    let mut bad = log(&[create(5, "/x", 2)]);
    bad[0] = b'X';
    let err = fail(&[("snapshot.4", base_snapshot()), ("log.5", bad)]);
    assert!(matches!(err, ZkImportError::BadLogHeader { .. }), "{err}");
    assert!(err.to_string().contains("log.5"), "{err}");
    let err = fail(&[
        ("snapshot.4", base_snapshot()),
        ("log.5", log(&[entry(5, 16 + 1000, &[], None)])),
    ]);
    assert!(
        matches!(err, ZkImportError::BadTxn { zxid: 5, .. }),
        "{err}"
    );
}

#[test]
fn the_tree_digest_is_checked_against_the_last_txn() {
    let imported = run(&[("snapshot.4", base_snapshot())]);
    let before = tree_digest(&imported.tree);
    // The digest ZooKeeper would log after creating /x: compute it by
    // importing without one, then log it.
    let plain = run(&[
        ("snapshot.4", base_snapshot()),
        ("log.5", log(&[create(5, "/x", 2)])),
    ]);
    let after = tree_digest(&plain.tree);
    assert_ne!(before, after);
    let with = |d: i64| {
        run(&[
            ("snapshot.4", base_snapshot()),
            (
                "log.5",
                log(&[entry(5, 1, &create_body("/x", b"v", false, 2), Some(d))]),
            ),
        ])
    };
    assert_eq!(with(after).digest, DigestCheck::Matched { zxid: 5 });
    let wrong = with(after ^ 1);
    assert!(matches!(
        wrong.digest,
        DigestCheck::Mismatch { zxid: 5, .. }
    ));
    assert!(wrong.warnings.iter().any(|w| w.contains("digest")));

    // A snapshot whose digest zxid is its own (not fuzzy) is checked alone.
    let mut nodes = system_nodes();
    nodes[0].stat.cversion = 1;
    nodes.push(node("/a", b"hello", 3));
    let snap = snapshot(&[(SESSION, 30_000)], &nodes, Some((4, before)));
    assert_eq!(
        run(&[("snapshot.4", snap)]).digest,
        DigestCheck::Matched { zxid: 4 }
    );
}

#[test]
fn without_a_snapshot_the_logs_replay_onto_a_new_tree() {
    let imported = run(&[("log.1", log(&[create(1, "/x", 1), create(2, "/y", 2)]))]);
    assert_eq!(imported.snapshot, None);
    assert_eq!(imported.txns, 2);
    assert!(imported.tree.get("/zookeeper/config").is_some());
    assert!(imported.tree.get("/y").is_some());
}

// ------------------------------------------------------------ a real data dir

/// The files of a `version-2` dir.
fn read_version2(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read version-2") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push((name, std::fs::read(entry.path()).expect("read file")));
    }
    out.sort();
    out
}

/// Makes the newest log that has records end as a crash in the middle of
/// writing its last record would (no end-of-record byte); returns that
/// record's zxid. (The newest file may hold none yet: ZooKeeper had just
/// rolled its log.)
fn tear_last_record(dir: &Path) -> i64 {
    let mut logs: Vec<(i64, String)> = std::fs::read_dir(dir)
        .expect("read version-2")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter_map(|n| Some((i64::from_str_radix(n.strip_prefix("log.")?, 16).ok()?, n)))
        .collect();
    logs.sort();
    for (_, name) in logs.iter().rev() {
        let path = dir.join(name);
        let mut bytes = std::fs::read(&path).expect("read log");
        let mut pos = 16;
        let mut last = None;
        while pos + 12 <= bytes.len() {
            let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
            if len == 0 {
                break;
            }
            last = Some((pos, len));
            pos += 12 + len + 1;
        }
        let Some((pos, len)) = last else { continue };
        assert_eq!(bytes[pos + 12 + len], b'B');
        bytes[pos + 12 + len] = 0;
        std::fs::write(&path, &bytes).expect("write log");
        return i64::from_be_bytes(bytes[pos + 12 + 12..pos + 12 + 20].try_into().unwrap());
    }
    panic!("no log record in {logs:?}");
}

/// Every difference between the imported tree and ZooKeeper's over the wire.
fn differences(tree: &DataTree, wire: &BTreeMap<String, WireNode>) -> Vec<String> {
    let mut out = Vec::new();
    let ours: BTreeSet<&str> = tree.iter().map(|(p, _)| p).collect();
    let theirs: BTreeSet<&str> = wire.keys().map(String::as_str).collect();
    for p in ours.difference(&theirs) {
        out.push(format!("{p}: imported, not in ZooKeeper"));
    }
    for p in theirs.difference(&ours) {
        out.push(format!("{p}: in ZooKeeper, not imported"));
    }
    for (p, zk) in wire {
        let Some(node) = tree.get(p) else { continue };
        let data = node.data.as_deref().map(<[u8]>::to_vec);
        if data != zk.data {
            out.push(format!("{p}: data differs"));
        }
        let stat = tree.stat_of(node);
        if stat != zk.stat {
            out.push(format!("{p}: stat {stat:?} != ZooKeeper's {:?}", zk.stat));
        }
        if *node.acl != *zk.acl {
            out.push(format!(
                "{p}: acl {:?} != ZooKeeper's {:?}",
                node.acl, zk.acl
            ));
        }
    }
    out
}

#[test]
fn a_zookeeper_data_dir_imports_as_the_tree_zookeeper_restarts_with() {
    let imported = import_matches_zookeeper(&[]);
    assert!(
        matches!(imported.digest, DigestCheck::Matched { zxid } if zxid > imported.snapshot_zxid),
        "ZooKeeper's own digest of its tree: {:?}",
        imported.digest
    );
}

/// As 3.5 wrote them: no digests, closeSession without its list of ephemerals.
#[test]
fn a_data_dir_without_digests_or_close_session_txns_imports_too() {
    let imported = import_matches_zookeeper(&[
        "-Dzookeeper.digest.enabled=false",
        "-Dzookeeper.closeSessionTxn.enabled=false",
    ]);
    assert_eq!(imported.digest, DigestCheck::Unavailable);
}

/// Fills a ZooKeeper started with `props`, SIGKILLs it, tears its last log
/// record, imports its data dir and compares with what it serves after a
/// restart on that dir.
fn import_matches_zookeeper(props: &[&str]) -> Imported {
    let with = |check_ms| {
        let mut all = import_jvm_props(check_ms);
        all.extend(props.iter().map(|p| p.to_string()));
        all
    };
    // Small preallocation keeps the many log files small.
    let mut zk = ZooKeeperProcess::start_with("snapCount=1000\npreAllocSize=64\n", &with(1000));
    let workload = fill_and_crash(&mut zk);
    let dir = zk.data_dir().join("version-2");
    let torn = tear_last_record(&dir);
    let owned = read_version2(&dir);
    let count = |prefix: &str| owned.iter().filter(|(n, _)| n.starts_with(prefix)).count();
    assert!(
        count("snapshot.") >= 3 && count("log.") >= 3,
        "want several snapshots and logs: {:?}",
        owned.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let files = ZkFiles {
        files: owned
            .iter()
            .map(|(n, b)| (n.clone(), b.as_slice()))
            .collect(),
    };
    let imported = import(&files, true).unwrap_or_else(|e| panic!("import: {e}"));
    eprintln!("{imported:?}");
    // The same from the first snapshot: every txn of the run replayed.
    let oldest = owned
        .iter()
        .filter_map(|(n, _)| i64::from_str_radix(n.strip_prefix("snapshot.")?, 16).ok())
        .min()
        .expect("a snapshot");
    let from_oldest = ZkFiles {
        files: files
            .files
            .iter()
            .filter(|(n, _)| !n.starts_with("snapshot.") || *n == format!("snapshot.{oldest:x}"))
            .cloned()
            .collect(),
    };
    let replayed = import(&from_oldest, true).unwrap_or_else(|e| panic!("import: {e}"));
    eprintln!("{replayed:?}");
    assert!(replayed.txns > 10_000, "{} txns", replayed.txns);
    assert_eq!(
        replayed.digest == DigestCheck::Unavailable,
        imported.digest == DigestCheck::Unavailable
    );
    let tree = &imported.tree;
    assert!(imported.txns > 0, "replayed txns after the newest snapshot");
    assert!(
        tree.last_zxid() < torn,
        "the torn txn {torn:#x} is not replayed"
    );
    // The torn record, and a snapshot ZooKeeper was writing when killed.
    let (torn_tails, others): (Vec<&String>, Vec<&String>) = imported
        .warnings
        .iter()
        .partition(|w| w.contains("torn tail"));
    assert_eq!(torn_tails.len(), 1, "{:?}", imported.warnings);
    assert!(
        others.iter().all(|w| w.contains("incomplete")) && others.len() <= 1,
        "{:?}",
        imported.warnings
    );

    // ZooKeeper restarted on the same dir (expiring nothing meanwhile)
    // serves the tree that was imported.
    zk.restart_with(&with(600_000));
    assert_eq!(server_zxid(zk.addr), tree.last_zxid());
    let wire = dump_tree(zk.addr);
    for (what, tree) in [("newest snapshot", tree), ("all logs", &replayed.tree)] {
        let diffs = differences(tree, &wire);
        assert!(
            diffs.is_empty(),
            "from the {what}: {} differences, first ones:\n{}",
            diffs.len(),
            diffs[..diffs.len().min(20)].join("\n")
        );
    }
    assert!(wire.len() > 2000, "{} nodes", wire.len());
    assert_eq!(wire.len(), tree.node_count());
    for kind in ["/cont", "/ttl", "/acl/p", "/eph/es-", "/deep/a/b/c/d/e/f"] {
        assert!(wire.keys().any(|p| p.starts_with(kind)), "no {kind} node");
    }

    // Sessions: the open one and its ephemerals survive, the others do not.
    let open = workload.open_session.session_id();
    assert_eq!(
        tree.sessions().get(&open),
        Some(&workload.open_session.negotiated_timeout())
    );
    assert!(!tree.sessions().contains_key(&workload.closed_session));
    assert!(!tree.sessions().contains_key(&workload.expired_session));
    assert_eq!(tree.ephemerals_of(open).count(), 250);
    let owners: BTreeSet<i64> = wire
        .values()
        .map(|n| n.stat.ephemeral_owner)
        .filter(|&o| o != 0)
        .collect();
    assert_eq!(owners, BTreeSet::from([open]));

    // The next sequential name comes from the imported parent's cversion.
    let parent = workload.sequential_parent;
    let expected = format!(
        "{parent}/job-{:010}",
        tree.get(parent).unwrap().stat.cversion
    );
    let mut client = connect_as(zk.addr, 30_000, &[]);
    let created = pipeline(
        &mut client,
        &[Request::Create(CreateRequest {
            path: format!("{parent}/job-"),
            data: None,
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
            flags: 2,
        })],
    );
    assert_eq!(created[0].1, Response::Create(expected));
    imported
}

#[test]
fn the_sections_3_9_appends_are_read_and_a_short_fuzzy_replay_is_warned() {
    // Digest (3.6+) and last processed zxid (3.9), each with its seal: the
    // snapshot began at 4 but holds changes up to 6, which no log covers.
    let mut snap = snapshot(&[], &system_nodes(), Some((6, 12345)));
    snap.put_i64(6);
    seal(&mut snap);
    let imported = run(&[
        ("snapshot.4", snap.clone()),
        ("snapshot.3.tmp", b"partial".to_vec()),
    ]);
    assert_eq!(imported.snapshot.as_deref(), Some("snapshot.4"));
    assert_eq!(imported.digest, DigestCheck::Unavailable);
    let warnings = imported.warnings.join("\n");
    assert!(warnings.contains("snapshot.3.tmp"), "{warnings}");
    assert!(warnings.contains("fuzzy range"), "{warnings}");
    // A damaged last seal makes the snapshot unusable.
    let n = snap.len();
    snap[n - 14] ^= 1;
    assert!(matches!(
        fail(&[("snapshot.4", snap)]),
        ZkImportError::NoValidSnapshot(_)
    ));
}

#[test]
fn ephemerals_of_sessions_not_open_are_reported() {
    let mut nodes = system_nodes();
    let mut e = node("/e", b"", 3);
    e.stat.ephemeral_owner = 0x77;
    nodes.push(e);
    let imported = run(&[("snapshot.4", snapshot(&[], &nodes, None))]);
    assert!(
        imported.warnings.iter().any(|w| w.contains("1 ephemerals")),
        "{:?}",
        imported.warnings
    );
}
