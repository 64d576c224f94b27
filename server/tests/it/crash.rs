//! Crash test: a concurrent write load (creates, versioned setData, multi,
//! ephemerals of sessions that are then closed) runs while the server is
//! killed with SIGKILL at a random moment; after each restart every
//! acknowledged result must be there, no multi may be half applied, sequence
//! numbers never go back, and ephemerals of closed sessions stay gone.
//!
//! `ZOOCORE_CRASH_CYCLES` (default 30) and `ZOOCORE_CRASH_SEED` set the run;
//! a soak: `ZOOCORE_CRASH_CYCLES=1000 cargo test --release -p zoocore --test it crash`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::consts::perms;
use zoocore_net::records::*;
use zoocore_net::{Acl, Request, Response};
use zoocore_testkit::zoocore::ZoocoreProcess;

const WRITERS: usize = 4;

#[derive(Default)]
struct Acknowledged {
    /// (path, data) of acknowledged creates.
    created: Vec<(String, Vec<u8>)>,
    /// (path, version, data) of the last acknowledged setData per writer node.
    versions: Vec<(String, i32, Vec<u8>)>,
    /// Pairs created by multis (acknowledged or not): both or neither.
    pairs: Vec<(String, String)>,
    /// Ephemerals whose session's close was acknowledged.
    closed_ephemerals: Vec<String>,
    /// Highest sequence suffix acknowledged under /seq.
    max_sequence: i64,
}

fn options() -> ConnectOptions {
    ConnectOptions {
        io_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

fn create(path: &str, data: &[u8], flags: i32) -> CreateRequest {
    CreateRequest {
        path: path.into(),
        data: Some(data.to_vec()),
        acl: vec![Acl::new(perms::ALL, "world", "anyone")],
        flags,
    }
}

/// One writer's load until the server dies under it.
fn writer(
    addr: std::net::SocketAddr,
    cycle: usize,
    w: usize,
    seed: u64,
    acked: Arc<Mutex<Acknowledged>>,
) {
    let Ok(mut c) = Client::connect(addr, &options()) else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let node = format!("/v{w}");
    let mut version = match c.call(&Request::Exists(PathWatchRequest {
        path: node.clone(),
        watch: false,
    })) {
        Ok(r) => match r.body {
            Response::Stat(s) => s.version,
            _ => return,
        },
        Err(_) => return,
    };
    for i in 0.. {
        let result = match rng.gen_range(0..5) {
            0 | 1 => {
                let path = format!("/c/{cycle}-{w}-{i}");
                // A kilobyte each, so the log rolls over its 1 MiB segments
                // several times a run (batches are packed, not padded).
                let data = format!("d{i:01000}").into_bytes();
                c.call(&Request::Create(create(&path, &data, 0))).map(|r| {
                    if r.header.err == 0 {
                        acked.lock().unwrap().created.push((path, data));
                    }
                })
            }
            2 => {
                let data = format!("{cycle}-{i}").into_bytes();
                let set = SetDataRequest {
                    path: node.clone(),
                    data: Some(data.clone()),
                    version,
                };
                c.call(&Request::SetData(set)).map(|r| {
                    if let (0, Response::Stat(s)) = (r.header.err, &r.body) {
                        version = s.version;
                        let mut a = acked.lock().unwrap();
                        a.versions.retain(|(p, _, _)| p != &node);
                        a.versions.push((node.clone(), s.version, data));
                    }
                })
            }
            3 => {
                let (a, b) = (
                    format!("/m/{cycle}-{w}-{i}-a"),
                    format!("/m/{cycle}-{w}-{i}-b"),
                );
                acked.lock().unwrap().pairs.push((a.clone(), b.clone()));
                let multi = Request::Multi(vec![
                    Request::Create(create(&a, b"", 0)),
                    Request::Create(create(&b, b"", 0)),
                ]);
                c.call(&multi).map(|_| ())
            }
            _ => {
                let seq = c.call(&Request::Create(create("/seq/s-", b"", 2)));
                seq.map(|r| {
                    if let Response::Create(p) = r.body {
                        let n: i64 = p.trim_start_matches("/seq/s-").parse().expect("suffix");
                        let mut a = acked.lock().unwrap();
                        a.max_sequence = a.max_sequence.max(n);
                    }
                })
            }
        };
        if result.is_err() {
            return;
        }
        if i % 25 == 24 {
            // A short-lived session with an ephemeral, closed on purpose.
            let Ok(mut s) = Client::connect(addr, &options()) else {
                return;
            };
            let path = format!("/e/{cycle}-{w}-{i}");
            let made = s
                .call(&Request::Create(create(&path, b"", 1)))
                .map(|r| r.header.err == 0);
            if let (Ok(true), Ok(())) = (made, s.close()) {
                acked.lock().unwrap().closed_ephemerals.push(path);
            }
        }
    }
}

fn exists(c: &mut Client, path: &str) -> bool {
    let reply = c
        .call(&Request::Exists(PathWatchRequest {
            path: path.into(),
            watch: false,
        }))
        .expect("exists");
    reply.header.err == 0
}

fn verify(addr: std::net::SocketAddr, acked: &Acknowledged, cycle: usize) {
    let mut c = Client::connect(addr, &options()).expect("connect after restart");
    for (path, data) in &acked.created {
        let reply = c
            .call(&Request::GetData(PathWatchRequest {
                path: path.clone(),
                watch: false,
            }))
            .expect("get");
        match reply.body {
            Response::GetData(r) => assert_eq!(
                r.data.as_deref(),
                Some(&data[..]),
                "cycle {cycle}: {path} data"
            ),
            _ => panic!(
                "cycle {cycle}: acknowledged create {path} lost ({})",
                reply.header.err
            ),
        }
    }
    for (path, version, data) in &acked.versions {
        let reply = c
            .call(&Request::GetData(PathWatchRequest {
                path: path.clone(),
                watch: false,
            }))
            .expect("get");
        let Response::GetData(r) = reply.body else {
            panic!("cycle {cycle}: {path} lost")
        };
        assert!(
            r.stat.version >= *version,
            "cycle {cycle}: {path} version went back"
        );
        if r.stat.version == *version {
            assert_eq!(
                r.data.as_deref(),
                Some(&data[..]),
                "cycle {cycle}: {path} data at version {version}"
            );
        }
    }
    for (a, b) in &acked.pairs {
        assert_eq!(
            exists(&mut c, a),
            exists(&mut c, b),
            "cycle {cycle}: half-applied multi {a} / {b}"
        );
    }
    for path in &acked.closed_ephemerals {
        assert!(
            !exists(&mut c, path),
            "cycle {cycle}: ephemeral {path} of a closed session is back"
        );
    }
    let next = c
        .call(&Request::Create(create("/seq/s-", b"", 2)))
        .expect("sequential create");
    let Response::Create(p) = next.body else {
        panic!(
            "cycle {cycle}: sequential create failed ({})",
            next.header.err
        )
    };
    let n: i64 = p.trim_start_matches("/seq/s-").parse().expect("suffix");
    assert!(
        n > acked.max_sequence,
        "cycle {cycle}: sequence went back: {n} after {}",
        acked.max_sequence
    );
    c.close().expect("close");
}

#[test]
fn acknowledged_writes_survive_random_sigkills() {
    let cycles: usize = std::env::var("ZOOCORE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("ZOOCORE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let mut rng = StdRng::seed_from_u64(seed);
    // Small segments and frequent snapshots, purged at every start: crashes
    // land mid-snapshot and mid-roll, and recovery goes through all of it.
    let mut server = ZoocoreProcess::start(
        Path::new(env!("CARGO_BIN_EXE_zoocore")),
        "zoocore.shards=2\nsnapCount=300\nzoocore.logSegmentBytes=1048576\n\
         zoocore.maxBatchBytes=65536\njute.maxbuffer=262144\nautopurge.purgeInterval=1\n",
    );
    {
        let mut c = Client::connect(server.addr, &options()).expect("connect");
        for p in ["/c", "/m", "/e", "/seq"] {
            assert_eq!(
                c.call(&Request::Create(create(p, b"", 0)))
                    .unwrap()
                    .header
                    .err,
                0
            );
        }
        for w in 0..WRITERS {
            assert_eq!(
                c.call(&Request::Create(create(&format!("/v{w}"), b"", 0)))
                    .unwrap()
                    .header
                    .err,
                0
            );
        }
    }
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    for cycle in 0..cycles {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (addr, acked) = (server.addr, acked.clone());
                let seed = rng.gen();
                std::thread::spawn(move || writer(addr, cycle, w, seed, acked))
            })
            .collect();
        // The crash comes at a random moment of the load.
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..200)));
        server.kill();
        for t in writers {
            t.join().expect("writer thread");
        }
        server.restart();
        verify(server.addr, &acked.lock().unwrap(), cycle);
    }
    let a = acked.lock().unwrap();
    eprintln!(
        "crash test: {cycles} cycles, {} creates, {} multis, {} closed sessions verified, sequence at {}",
        a.created.len(),
        a.pairs.len(),
        a.closed_ephemerals.len(),
        a.max_sequence
    );
    assert!(
        a.created.len() > cycles,
        "the load made too little progress to test anything"
    );
    let log = server.log();
    for event in [
        "snapshot taken",
        "log segment rolled",
        "purged",
        "recovered",
    ] {
        assert!(log.contains(event), "the run never saw {event:?}");
    }
}
