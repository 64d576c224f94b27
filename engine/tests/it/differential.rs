//! Differential test of the engine in-process against Apache ZooKeeper (see
//! `zoocore_testkit::differential`). Defaults: 50 seeds x 250 ops. Soak:
//! `ZOOCORE_DIFF_SEEDS=2000 ZOOCORE_DIFF_OPS=1000 cargo test --release -p
//! zoocore-engine --test it differential`. Reproduce one seed:
//! `ZOOCORE_DIFF_FIRST_SEED=17 ZOOCORE_DIFF_SEEDS=1`.

use std::time::Duration;

use zoocore_net::client::Client;
use zoocore_net::consts::perms;
use zoocore_net::records::*;
use zoocore_net::{Acl, Request};
use zoocore_testkit::differential::{
    compare_trees, connect, now_ms, run_random, Run, SESSION_TIMEOUT,
};
use zoocore_testkit::model::Model;

#[test]
fn random_operations_match_apache_zookeeper() {
    let mut run = Run::start(86_400_000, |digest, t0| Model::new(Some(digest), t0));
    run_random(&mut run, "differential (engine)");
}

fn create(path: &str, acl: Acl, flags: i32) -> CreateRequest {
    CreateRequest {
        path: path.into(),
        data: Some(b"x".to_vec()),
        acl: vec![acl],
        flags,
    }
}

fn open_acl() -> Acl {
    Acl::new(perms::ALL, "world", "anyone")
}

/// Watch events reach only sessions that may read the node (ZooKeeper's fix
/// for CVE-2024-23944); one-shot watches are used up even when filtered.
#[test]
fn watch_events_honour_read_acl() {
    let mut run = Run::start(86_400_000, |digest, t0| Model::new(Some(digest), t0));
    let mut owner = run.open(0);
    let mut watcher = run.open(0);
    run.call(0, &mut owner, &Request::Create(create("/w", open_acl(), 0)));
    let cases = [
        ("/w/open", open_acl()),
        ("/w/other-ip", Acl::new(perms::ALL, "ip", "10.0.0.0/8")),
        (
            "/w/write-only",
            Acl::new(perms::WRITE | perms::DELETE, "world", "anyone"),
        ),
    ];
    for (p, acl) in cases {
        run.call(0, &mut owner, &Request::Create(create(p, acl, 0)));
        run.call(
            0,
            &mut watcher,
            &Request::AddWatch(AddWatchRequest {
                path: p.into(),
                mode: 0,
            }),
        );
        // Only the watching session asks, so 3.8.0 and 3.9 semantics agree.
        for watcher_type in 1..=3 {
            let check = WatchesRequest {
                path: p.into(),
                watcher_type,
            };
            run.call(0, &mut watcher, &Request::CheckWatches(check));
        }
        run.call(
            0,
            &mut watcher,
            &Request::Exists(PathWatchRequest {
                path: format!("{p}/kid"),
                watch: true,
            }),
        );
        run.call(
            0,
            &mut owner,
            &Request::Create(create(&format!("{p}/kid"), open_acl(), 0)),
        );
        run.call(
            0,
            &mut owner,
            &Request::SetData(SetDataRequest {
                path: p.into(),
                data: None,
                version: -1,
            }),
        );
        run.call(
            0,
            &mut owner,
            &Request::Delete(DeleteRequest {
                path: format!("{p}/kid"),
                version: -1,
            }),
        );
        run.call(
            0,
            &mut owner,
            &Request::Delete(DeleteRequest {
                path: p.into(),
                version: -1,
            }),
        );
        run.sync_events(0, std::slice::from_mut(&mut watcher));
        run.sync_events(0, std::slice::from_mut(&mut owner));
    }
    run.close(0, watcher);
    run.close(0, owner);
}

/// Containers and TTL nodes expire as ZooKeeper's container manager decides:
/// ZooKeeper checks every 100 ms here; the engine is asked once ZooKeeper has
/// deleted what it will, and both trees must then agree.
#[test]
fn containers_and_ttl_nodes_expire_like_zookeeper() {
    let mut run = Run::start(100, |digest, t0| Model::new(Some(digest), t0));
    let mut s = run.open(0);
    run.call(0, &mut s, &Request::Create(create("/e", open_acl(), 0)));
    let ttl = |path: &str, ttl: i64| {
        Request::CreateTtl(CreateTtlRequest {
            path: path.into(),
            data: None,
            acl: vec![open_acl()],
            flags: 5,
            ttl,
        })
    };
    run.call(
        0,
        &mut s,
        &Request::CreateContainer(create("/e/used", open_acl(), 4)),
    );
    run.call(
        0,
        &mut s,
        &Request::Create(create("/e/used/kid", open_acl(), 0)),
    );
    run.call(
        0,
        &mut s,
        &Request::CreateContainer(create("/e/never-used", open_acl(), 4)),
    );
    run.call(
        0,
        &mut s,
        &Request::CreateContainer(create("/e/busy", open_acl(), 4)),
    );
    run.call(
        0,
        &mut s,
        &Request::Create(create("/e/busy/kid", open_acl(), 0)),
    );
    run.call(0, &mut s, &ttl("/e/short", 1));
    // Long enough to outlive a check of ZooKeeper's before its kid exists
    // (with 1 ms, a check in between deleted it first about once in 30 runs).
    const WITH_KID_TTL: i64 = 50;
    run.call(0, &mut s, &ttl("/e/short-with-kid", WITH_KID_TTL));
    let with_kid_made = now_ms();
    run.call(
        0,
        &mut s,
        &Request::Create(create("/e/short-with-kid/kid", open_acl(), 0)),
    );
    run.call(0, &mut s, &ttl("/e/long", 3_600_000));
    run.call(
        0,
        &mut s,
        &Request::Delete(DeleteRequest {
            path: "/e/used/kid".into(),
            version: -1,
        }),
    );
    run.sync_events(0, std::slice::from_mut(&mut s));

    // Watch ZooKeeper alone (no engine call) until its manager has acted.
    let mut probe = connect(run.zk.addr);
    let gone = |probe: &mut Client, p: &str| {
        let reply = probe
            .call(&Request::Exists(PathWatchRequest {
                path: p.into(),
                watch: false,
            }))
            .expect("exists");
        reply.header.err == zoocore_net::ErrorCode::NoNode.code()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(gone(&mut probe, "/e/used") && gone(&mut probe, "/e/short")) {
        assert!(
            std::time::Instant::now() < deadline,
            "ZooKeeper did not expire the nodes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The engine's check must come after /e/short-with-kid expired, so that
    // it is kept for its kid alone, as ZooKeeper keeps it.
    while now_ms() <= with_kid_made + WITH_KID_TTL {
        std::thread::sleep(Duration::from_millis(5));
    }
    probe.close().expect("close probe");
    // The probe session took two zxids on ZooKeeper; mirror them.
    let probe_model = run.model.open_session(SESSION_TIMEOUT, now_ms());
    let mut expired = run.model.expire(now_ms());
    expired.sort();
    assert_eq!(expired, vec!["/e/short".to_owned(), "/e/used".to_owned()]);
    run.model
        .request(probe_model, &Request::CloseSession, now_ms());
    compare_trees(&mut run, 0, &mut s, "/e");
    run.close(0, s);
}
