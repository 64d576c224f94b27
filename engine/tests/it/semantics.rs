//! Deterministic checks of ZooKeeper semantics the engine reproduces, each
//! one confirmed against Apache ZooKeeper by the differential test. These run
//! without a JVM and pin the behaviour by name.

use zoocore_net::consts::perms;
use zoocore_net::records::*;
use zoocore_net::{Acl, ErrorCode, MultiResult, Request, Response};
use zoocore_testkit::model::Model;

const T: i64 = 1_700_000_000_000;

fn open() -> Vec<Acl> {
    vec![Acl::new(perms::ALL, "world", "anyone")]
}

fn create(path: &str, flags: i32) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Some(b"d".to_vec()),
        acl: open(),
        flags,
    })
}

fn stat(model: &mut Model, session: i64, path: &str) -> zoocore_net::Stat {
    match model.request(
        session,
        &Request::Exists(PathWatchRequest {
            path: path.into(),
            watch: false,
        }),
        T,
    ) {
        (0, Response::Stat(s), _) => s,
        other => panic!("exists {path}: {other:?}"),
    }
}

#[test]
fn sequential_suffix_uses_creations_while_cversion_counts_deletions_too() {
    let mut m = Model::new(None, T);
    let s = m.open_session(30_000, T);
    m.request(s, &create("/p", 0), T);
    assert_eq!(
        m.request(s, &create("/p/n-", 2), T).1,
        Response::Create("/p/n-0000000000".into())
    );
    assert_eq!(
        m.request(s, &create("/p/n-", 2), T).1,
        Response::Create("/p/n-0000000001".into())
    );
    m.request(
        s,
        &Request::Delete(DeleteRequest {
            path: "/p/n-0000000000".into(),
            version: -1,
        }),
        T,
    );
    assert_eq!(stat(&mut m, s, "/p").cversion, 3);
    assert_eq!(
        m.request(s, &create("/p/n-", 2), T).1,
        Response::Create("/p/n-0000000002".into())
    );
}

#[test]
fn the_root_reports_cversion_minus_one_at_start() {
    let mut m = Model::new(None, T);
    let s = m.open_session(30_000, T);
    let root = stat(&mut m, s, "/");
    assert_eq!((root.cversion, root.num_children), (-1, 1));
    assert_eq!(stat(&mut m, s, "/zookeeper/config").aversion, -1);
}

#[test]
fn failed_writes_take_a_zxid_and_a_failed_multi_reports_per_op_codes() {
    let mut m = Model::new(None, T);
    let s = m.open_session(30_000, T);
    let (_, _, z1) = m.request(s, &create("/a", 0), T);
    let (err, _, z2) = m.request(s, &create("/a", 0), T);
    assert_eq!((err, z2), (ErrorCode::NodeExists.code(), z1 + 1));
    let multi = Request::Multi(vec![
        create("/b", 0),
        Request::Check(CheckVersionRequest {
            path: "/a".into(),
            version: 7,
        }),
        create("/c", 0),
    ]);
    let (err, body, z3) = m.request(s, &multi, T);
    assert_eq!(err, 0, "a failed multi has header err 0");
    assert_eq!(z3, z2 + 1);
    assert_eq!(
        body,
        Response::Multi(vec![
            MultiResult::Error(0),
            MultiResult::Error(ErrorCode::BadVersion.code()),
            MultiResult::Error(ErrorCode::RuntimeInconsistency.code()),
        ])
    );
    let (err, _, _) = m.request(
        s,
        &Request::Exists(PathWatchRequest {
            path: "/b".into(),
            watch: false,
        }),
        T,
    );
    assert_eq!(
        err,
        ErrorCode::NoNode.code(),
        "nothing of a failed multi is applied"
    );
}

#[test]
fn create_checks_come_in_zookeepers_order() {
    let mut m = Model::new(None, T);
    let s = m.open_session(30_000, T);
    // A missing parent is reported before the bad trailing slash.
    assert_eq!(
        m.request(s, &create("/nope/", 0), T).0,
        ErrorCode::NoNode.code()
    );
    m.request(s, &create("/x", 0), T);
    assert_eq!(
        m.request(s, &create("/x/", 0), T).0,
        ErrorCode::BadArguments.code()
    );
    // With the sequential flag "/x/" is a valid prefix.
    assert_eq!(
        m.request(s, &create("/x/", 2), T).1,
        Response::Create("/x/0000000000".into())
    );
    // An invalid ACL is reported before the missing parent.
    let bad_acl = Request::Create(CreateRequest {
        path: "/nope/a".into(),
        data: None,
        acl: vec![],
        flags: 0,
    });
    assert_eq!(m.request(s, &bad_acl, T).0, ErrorCode::InvalidAcl.code());
    // Ephemeral parents take no children.
    m.request(s, &create("/eph", 1), T);
    assert_eq!(
        m.request(s, &create("/eph/kid", 0), T).0,
        ErrorCode::NoChildrenForEphemerals.code()
    );
}

#[test]
fn closing_a_session_deletes_its_ephemerals_in_one_txn_and_fires_watches() {
    let mut m = Model::new(None, T);
    let owner = m.open_session(30_000, T);
    let watcher = m.open_session(30_000, T);
    m.request(owner, &create("/e", 0), T);
    m.request(owner, &create("/e/one", 1), T);
    m.request(owner, &create("/e/two", 1), T);
    m.request(
        watcher,
        &Request::GetChildren(PathWatchRequest {
            path: "/e".into(),
            watch: true,
        }),
        T,
    );
    m.request(
        watcher,
        &Request::Exists(PathWatchRequest {
            path: "/e/one".into(),
            watch: true,
        }),
        T,
    );
    let before = m.zxid;
    m.request(owner, &Request::CloseSession, T);
    assert_eq!(m.zxid, before + 1, "one txn");
    assert_eq!(stat(&mut m, watcher, "/e").num_children, 0);
    let events: Vec<(i32, String)> = m
        .take_events(watcher)
        .into_iter()
        .map(|e| (e.event_type, e.path))
        .collect();
    assert_eq!(events, vec![(2, "/e/one".to_owned()), (4, "/e".to_owned())]);
}

#[test]
fn digest_acl_and_super_user() {
    let super_digest = zoocore_engine::acl::digest_of("super:pw");
    let mut m = Model::new(Some(super_digest), T);
    let alice = m.open_session(30_000, T);
    let other = m.open_session(30_000, T);
    let root = m.open_session(30_000, T);
    let auth = |who: &str| {
        Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: "digest".into(),
            auth: who.as_bytes().to_vec(),
        })
    };
    m.request(alice, &auth("alice:secret"), T);
    m.request(root, &auth("super:pw"), T);
    let private = Request::Create(CreateRequest {
        path: "/private".into(),
        data: Some(b"s".to_vec()),
        acl: vec![Acl::new(perms::ALL, "auth", "")],
        flags: 0,
    });
    assert_eq!(m.request(alice, &private, T).0, 0);
    let get = Request::GetData(PathWatchRequest {
        path: "/private".into(),
        watch: false,
    });
    assert_eq!(m.request(alice, &get, T).0, 0);
    assert_eq!(m.request(other, &get, T).0, ErrorCode::NoAuth.code());
    assert_eq!(m.request(root, &get, T).0, 0, "super may read anything");
    // Without ADMIN the digest in getACL is masked.
    let set_acl = Request::SetAcl(SetAclRequest {
        path: "/private".into(),
        acl: vec![
            Acl::new(perms::ALL, "auth", ""),
            Acl::new(perms::READ, "world", "anyone"),
        ],
        version: 0,
    });
    assert_eq!(m.request(alice, &set_acl, T).0, 0);
    match m.request(
        other,
        &Request::GetAcl(PathRequest {
            path: "/private".into(),
        }),
        T,
    ) {
        (0, Response::GetAcl(r), _) => {
            assert_eq!(r.acl[0].id.id, "alice:x");
            assert_eq!(r.stat.aversion, 1);
        }
        other => panic!("{other:?}"),
    }
}
