//! A 3-member zoocore ensemble of real processes on loopback: elections,
//! writes through followers, sync, failover after kill -9 and SIGSTOP of
//! the leader with every history checked (acknowledged writes committed at
//! their zxid and present after a full restart, writes linearizable, a read
//! after sync sees every write acknowledged before it), sessions and their
//! ephemerals surviving a failover, and bad peers refused; a leader cut off
//! by a network partition (members in network namespaces), with register
//! histories checked by a linearizability checker.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zoocore_net::client::{Client, ClientError, ConnectOptions, Reply};
use zoocore_net::consts::{perms, CreateMode};
use zoocore_net::records::{
    CreateRequest, PathRequest, PathWatchRequest, ReconfigRequest, SetDataRequest,
};
use zoocore_net::{Acl, ErrorCode, Request, Response};
use zoocore_testkit::ensemble::Ensemble;
use zoocore_testkit::linearizability::{self, Op, Operation, Outcome, Register};
use zoocore_testkit::zk::four_letter_word;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zoocore"))
}

fn open_acl() -> Vec<Acl> {
    vec![Acl::new(perms::ALL, "world", "anyone")]
}

fn create(path: &str, data: &[u8], mode: i32) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Some(data.to_vec()),
        acl: open_acl(),
        flags: mode,
    })
}

fn get(path: &str) -> Request {
    Request::GetData(PathWatchRequest {
        path: path.into(),
        watch: false,
    })
}

fn sync(path: &str) -> Request {
    Request::Sync(PathRequest { path: path.into() })
}

/// A client that moves along the connect string as ZooKeeper's do: on a
/// lost connection it reconnects to the next member with its session id,
/// password and the last zxid it saw.
struct Roaming {
    addrs: Vec<SocketAddr>,
    next: usize,
    client: Option<Client>,
    options: ConnectOptions,
}

impl Roaming {
    fn new(addrs: Vec<SocketAddr>, first: usize) -> Roaming {
        Roaming {
            addrs,
            next: first,
            client: None,
            // A client stuck on a paused member waits out its read timeout
            // before it moves on; on a loaded machine that can add up to
            // more than a short session timeout, and the session would
            // expire, as it rightly does in ZooKeeper.
            options: ConnectOptions {
                timeout_ms: 30_000,
                io_timeout: Duration::from_secs(3),
                ..ConnectOptions::default()
            },
        }
    }

    fn session_id(&self) -> i64 {
        self.options.session_id
    }

    /// Connects (or reconnects) within `patience`; `Err` when no member
    /// took the session (expired, or none serving).
    fn ensure(&mut self, patience: Duration) -> Result<(), String> {
        if self.client.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + patience;
        loop {
            let addr = self.addrs[self.next % self.addrs.len()];
            self.next += 1;
            match Client::connect(addr, &self.options) {
                Ok(c) => {
                    self.options.session_id = c.session_id();
                    self.options.passwd = c.passwd().to_vec();
                    self.client = Some(c);
                    return Ok(());
                }
                Err(ClientError::SessionRefused) if self.options.session_id != 0 => {
                    return Err(format!(
                        "session {:#x} refused by {addr}",
                        self.options.session_id
                    ));
                }
                Err(_) => {}
            }
            if Instant::now() > deadline {
                return Err("no member took the connection".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A request answered, whatever leader changes it meets: on a lost
    /// connection it reconnects and sends it again (a retried create may
    /// then find its own node: see `created`).
    fn must(&mut self, request: &Request) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no answer within 30 s");
            if self.ensure(Duration::from_secs(20)).is_err() {
                continue;
            }
            if let Some(reply) = self.call(request) {
                return reply;
            }
        }
    }

    /// One request; `None` when the connection was lost first (the outcome
    /// of a write is then unknown).
    fn call(&mut self, request: &Request) -> Option<Reply> {
        let client = self.client.as_mut()?;
        match client.call(request) {
            Ok(reply) => {
                self.options.last_zxid_seen = client.last_zxid();
                Some(reply)
            }
            Err(_) => {
                self.client = None;
                None
            }
        }
    }
}

/// A create that succeeded, or that was retried after succeeding.
fn created(reply: &Reply) -> bool {
    reply.header.err == 0 || reply.header.err == ErrorCode::NodeExists.code()
}

fn addrs(e: &Ensemble) -> Vec<SocketAddr> {
    e.members.iter().map(|m| m.client).collect()
}

#[test]
fn three_members_elect_one_leader_and_serve_writes_through_followers() {
    let e = Ensemble::start(binary(), 3, "");
    let leader = e.wait_leader(Duration::from_secs(30));
    let follower = (1..=3).find(|&i| i != leader).expect("a follower");
    let mut c = Roaming::new(vec![e.member(follower).client], 0);
    c.ensure(Duration::from_secs(10))
        .expect("connect to a follower");
    let reply = c.must(&create("/through-follower", b"x", 0));
    assert!(
        created(&reply),
        "create through a follower: {}",
        reply.header.err
    );
    let mut czxids = Vec::new();
    for id in 1..=3 {
        let mut r = Roaming::new(vec![e.member(id).client], 0);
        assert_eq!(r.must(&sync("/")).header.err, 0);
        let reply = r.must(&get("/through-follower"));
        match reply.body {
            Response::GetData(d) => {
                assert_eq!(d.data.as_deref(), Some(&b"x"[..]));
                czxids.push(d.stat.czxid);
            }
            other => panic!("member {id}: {other:?}"),
        }
    }
    assert!(
        czxids.windows(2).all(|w| w[0] == w[1]),
        "every member has the same node: {czxids:?}"
    );
    let leader = e.wait_leader(Duration::from_secs(30));
    let modes: Vec<String> = (1..=3).map(|id| e.mode(id).unwrap_or_default()).collect();
    assert_eq!(
        modes.iter().filter(|m| *m == "leader").count(),
        1,
        "{modes:?}"
    );
    assert_eq!(
        modes.iter().filter(|m| *m == "follower").count(),
        2,
        "{modes:?}"
    );
    let mntr = four_letter_word(e.member(leader).client, "mntr").expect("mntr");
    assert!(mntr.contains("zk_server_state\tleader"), "{mntr}");
    assert!(mntr.contains("zk_followers\t2"), "{mntr}");
    // /zookeeper/config as a ZooKeeper member writes it (checked against
    // Apache ZooKeeper 3.8.0): the member lines, then version=0, no newline
    // at the end, data version -1.
    let expected: String = e
        .members
        .iter()
        .map(|m| {
            format!(
                "server.{}=127.0.0.1:{}:{}:participant;{}\n",
                m.id, m.peer_port, m.election_port, m.client
            )
        })
        .collect::<String>()
        + "version=0";
    for id in 1..=3 {
        let mut r = Roaming::new(vec![e.member(id).client], 0);
        let reply = r.must(&get("/zookeeper/config"));
        match reply.body {
            Response::GetData(d) => {
                assert_eq!(
                    String::from_utf8_lossy(d.data.as_deref().unwrap_or_default()),
                    expected
                );
                assert_eq!(d.stat.version, -1);
            }
            other => panic!("member {id}: /zookeeper/config: {other:?}"),
        }
    }
    let conf = four_letter_word(e.member(follower).client, "conf").expect("conf");
    assert!(conf.contains(&format!("serverId={follower}")), "{conf}");
    for m in &e.members {
        let line = format!("server.{}=127.0.0.1:{}:", m.id, m.peer_port);
        assert!(conf.contains(&line), "{line} in {conf}");
    }
}

/// One write of the history: when it was sent and answered, and the zxid
/// it was acknowledged with (`None`: the connection was lost, outcome unknown).
#[derive(Debug, Clone)]
struct Write {
    path: String,
    invoked: Instant,
    completed: Instant,
    zxid: Option<i64>,
}

fn writer(
    addrs: Vec<SocketAddr>,
    first: usize,
    name: &str,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Write>>>,
) {
    let mut c = Roaming::new(addrs, first);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = c.ensure(Duration::from_secs(20)) {
            // The session is gone (it cannot be after a failover alone).
            panic!("writer {name} lost its session {:#x}: {e}", c.session_id());
        }
        n += 1;
        let path = format!("/h/{name}-{n}");
        let invoked = Instant::now();
        let reply = c.call(&create(&path, name.as_bytes(), 0));
        let completed = Instant::now();
        let zxid = match reply {
            Some(r) if r.header.err == 0 => Some(r.header.zxid),
            Some(r) => panic!("create {path} failed with {}", r.header.err),
            None => None,
        };
        log.lock().expect("history").push(Write {
            path,
            invoked,
            completed,
            zxid,
        });
    }
}

/// Writes acknowledged are linearizable: one acknowledged before another
/// began has the smaller zxid; no two share one.
fn check_linearizable(history: &[Write]) {
    let acked: Vec<&Write> = history.iter().filter(|w| w.zxid.is_some()).collect();
    let mut zxids: Vec<i64> = acked.iter().filter_map(|w| w.zxid).collect();
    zxids.sort_unstable();
    zxids.dedup();
    assert_eq!(
        zxids.len(),
        acked.len(),
        "two acknowledged writes share a zxid"
    );
    for a in &acked {
        for b in &acked {
            if a.completed < b.invoked {
                assert!(
                    a.zxid < b.zxid,
                    "{} acknowledged at zxid {:?} before {} began, which got {:?}",
                    a.path,
                    a.zxid,
                    b.path,
                    b.zxid
                );
            }
        }
    }
}

/// The longest time between two acknowledged writes.
fn longest_gap(history: &[Write]) -> Duration {
    let mut done: Vec<Instant> = history
        .iter()
        .filter(|w| w.zxid.is_some())
        .map(|w| w.completed)
        .collect();
    done.sort();
    done.windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// After every member restarts, each acknowledged write is there with the
/// zxid it was acknowledged with.
fn check_all_present(e: &Ensemble, history: &[Write]) {
    let mut c = Roaming::new(addrs(e), 0);
    assert_eq!(c.must(&sync("/")).header.err, 0);
    for w in history {
        let Some(zxid) = w.zxid else { continue };
        let reply = c.must(&get(&w.path));
        match reply.body {
            Response::GetData(d) => assert_eq!(
                d.stat.czxid, zxid,
                "{} was acknowledged at {zxid:#x}",
                w.path
            ),
            other => panic!(
                "acknowledged {} is gone after a full restart: {other:?} (err {})",
                w.path, reply.header.err
            ),
        }
    }
}

/// Writer threads and their shared history.
struct Writers {
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<Write>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    fn start(e: &Ensemble, names: &[&str]) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(Mutex::new(Vec::new()));
        let threads = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (addrs, stop, history, name) =
                    (addrs(e), stop.clone(), history.clone(), name.to_string());
                std::thread::spawn(move || writer(addrs, i, &name, stop, history))
            })
            .collect();
        Writers {
            stop,
            history,
            threads,
        }
    }

    fn len(&self) -> usize {
        self.history.lock().expect("history").len()
    }

    /// Stops the writers and returns the whole history.
    fn finish(self) -> Vec<Write> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("writer");
        }
        let history = self.history.lock().expect("history").clone();
        history
    }
}

fn setup_parent(e: &Ensemble) {
    let mut c = Roaming::new(addrs(e), 0);
    c.ensure(Duration::from_secs(10)).expect("connect");
    assert!(created(&c.must(&create("/h", b"", 0))));
}

#[test]
fn acknowledged_writes_survive_kill_9_of_the_leader_and_a_full_restart() {
    let mut e = Ensemble::start(binary(), 3, "");
    setup_parent(&e);
    let writers = Writers::start(&e, &["a", "b"]);
    let registers = RegisterClients::start(&e, 3);
    for round in 0..2 {
        std::thread::sleep(Duration::from_millis(800));
        let leader = e.wait_leader(Duration::from_secs(30));
        let before = writers.len();
        e.kill(leader);
        let new_leader = e.wait_leader(Duration::from_secs(30));
        assert_ne!(new_leader, leader, "round {round}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while writers.len() <= before + 5 {
            assert!(
                Instant::now() < deadline,
                "writes go on after the leader died (round {round})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        e.start_member(leader);
    }
    let history = writers.finish();
    check_linearizable(&history);
    let acked = history.iter().filter(|w| w.zxid.is_some()).count();
    assert!(acked > 20, "only {acked} writes acknowledged");
    eprintln!(
        "{acked} writes acknowledged, {} unknown; longest gap between acknowledged writes: {:?}",
        history.len() - acked,
        longest_gap(&history)
    );
    for id in 1..=3 {
        e.kill(id);
    }
    for id in 1..=3 {
        e.start_member(id);
    }
    e.wait_leader(Duration::from_secs(30));
    check_all_present(&e, &history);
    // The register histories end with a read of each after the restart.
    registers.finish_and_check(&e);
}

#[test]
fn a_paused_leader_is_replaced_and_steps_down_when_it_resumes() {
    let mut e = Ensemble::start(binary(), 3, "");
    setup_parent(&e);
    let writers = Writers::start(&e, &["p"]);
    let registers = RegisterClients::start(&e, 3);
    std::thread::sleep(Duration::from_millis(500));
    let leader = e.wait_leader(Duration::from_secs(30));
    e.pause(leader, true);
    let new_leader = e.wait_leader(Duration::from_secs(30));
    assert_ne!(new_leader, leader);
    // A client of the paused member notices only when its read times out
    // (as a ZooKeeper client's ping does), then moves on.
    let during = writers.len();
    let deadline = Instant::now() + Duration::from_secs(15);
    while writers.len() <= during + 5 {
        assert!(
            Instant::now() < deadline,
            "writes go on while the old leader is paused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    e.pause(leader, false);
    // The old leader hears of the newer term and follows; it never answers
    // a write on its own (check-quorum already made it step down).
    let settled = e.wait_leader(Duration::from_secs(30));
    assert_ne!(
        settled, leader,
        "the resumed leader took over again at once"
    );
    let history = writers.finish();
    check_linearizable(&history);
    check_all_present(&e, &history);
    registers.finish_and_check(&e);
}

#[test]
fn a_session_and_its_ephemeral_survive_the_leader_s_death() {
    let mut e = Ensemble::start(binary(), 3, "");
    let leader = e.wait_leader(Duration::from_secs(30));
    let others: Vec<SocketAddr> = (1..=3)
        .filter(|&i| i != leader)
        .map(|i| e.member(i).client)
        .collect();
    let mut c = Roaming::new(others, 0);
    c.ensure(Duration::from_secs(10)).expect("connect");
    let session = c.session_id();
    assert!(created(&c.must(&create(
        "/owner",
        b"",
        CreateMode::Ephemeral as i32
    ))));
    e.kill(leader);
    e.wait_leader(Duration::from_secs(30));
    // The member's connections were closed at the leader change; the client
    // comes back with its session, within its timeout.
    let _ = c.call(&get("/owner"));
    c.ensure(Duration::from_secs(10))
        .expect("the session is kept across the failover");
    assert_eq!(c.session_id(), session);
    let reply = c.must(&get("/owner"));
    assert_eq!(
        c.session_id(),
        session,
        "the session is kept across the failover"
    );
    match reply.body {
        Response::GetData(d) => assert_eq!(d.stat.ephemeral_owner, session),
        other => panic!(
            "the ephemeral is gone: {other:?} (err {})",
            reply.header.err
        ),
    }
    // A session nobody talks to is expired by the leader alone: its ephemeral goes.
    let mut quiet = Roaming::new(
        addrs(&e)
            .into_iter()
            .filter(|a| *a != e.member(leader).client)
            .collect(),
        0,
    );
    quiet.options.timeout_ms = 4000;
    quiet.ensure(Duration::from_secs(10)).expect("connect");
    assert!(created(&quiet.must(&create(
        "/quiet",
        b"",
        CreateMode::Ephemeral as i32
    ))));
    drop(quiet.client.take());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = c.must(&get("/quiet"));
        if !matches!(reply.body, Response::GetData(_)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "an abandoned session did not expire"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let reply = c.must(&get("/owner"));
    assert!(
        matches!(reply.body, Response::GetData(_)),
        "a live session's ephemeral must stay"
    );
}

#[test]
fn members_with_other_server_lines_or_garbage_on_the_peer_port_are_refused() {
    let mut e = Ensemble::start(binary(), 3, "");
    let leader = e.wait_leader(Duration::from_secs(30));
    // Garbage on a member's peer port closes that connection only.
    {
        use std::io::Write as _;
        let peer: SocketAddr = ([127, 0, 0, 1], e.member(leader).peer_port).into();
        let mut s = std::net::TcpStream::connect(peer).expect("peer port");
        let _ = s.write_all(&[0xff; 64]);
    }
    let mut c = Roaming::new(addrs(&e), 0);
    assert!(created(&c.must(&create("/after-garbage", b"", 0))));
    assert!(
        e.log(leader).contains("bad frame"),
        "the bad frame is logged"
    );
    // Connections that never say hello: past two per other member the
    // leader closes new ones at once (and every silent one after a while).
    {
        use std::io::Read as _;
        let peer: SocketAddr = ([127, 0, 0, 1], e.member(leader).peer_port).into();
        let silent: Vec<std::net::TcpStream> = (0..6)
            .map(|_| std::net::TcpStream::connect(peer).expect("peer port"))
            .collect();
        let closed = silent
            .into_iter()
            .filter(|mut s| {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                matches!(s.read(&mut [0u8; 1]), Ok(0))
            })
            .count();
        assert!(closed >= 2, "only {closed} of 6 silent connections closed");
        assert!(e.log(leader).contains("too many peer connections"));
    }
    assert!(created(&c.must(&create("/after-silence", b"", 0))));
    // A member whose server lines differ is refused by the others.
    let third = (1..=3).find(|&i| i != leader).expect("a follower");
    e.kill(third);
    let cfg = e.member(third).dir.join("zoo.cfg");
    let text = std::fs::read_to_string(&cfg).expect("zoo.cfg");
    std::fs::write(&cfg, format!("{text}server.9=127.0.0.1:1:2\n")).expect("edit");
    e.start_member(third);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert_ne!(
            e.mode(third).as_deref(),
            Some("follower"),
            "a member with other server lines joined"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = (1..=3)
        .filter(|&i| i != third)
        .any(|i| e.log(i).contains("refusing to form a quorum"));
    assert!(refused, "the refusal is logged");
    assert!(created(&c.must(&create("/still-committing", b"", 0))));
}

#[test]
fn sigterm_on_the_leader_hands_leadership_over_and_exits_cleanly() {
    let mut e = Ensemble::start(binary(), 3, "");
    let leader = e.wait_leader(Duration::from_secs(30));
    let mut c = Roaming::new(addrs(&e), 0);
    assert!(created(&c.must(&create("/before-handover", b"", 0))));
    assert_eq!(e.terminate(leader), Some(0), "a clean exit");
    let next = e.wait_leader(Duration::from_secs(30));
    assert_ne!(next, leader);
    let log = e.log(leader);
    assert!(
        log.lines()
            .any(|l| l.contains("shutting down") && l.contains(" to=")),
        "the leader named a successor before it stopped:\n{log}"
    );
    assert!(created(&c.must(&create("/after-handover", b"", 0))));
    let reply = c.must(&get("/before-handover"));
    assert!(matches!(reply.body, Response::GetData(_)));
}

#[test]
fn a_sync_pipelined_behind_a_write_is_answered_after_it_on_a_follower() {
    let e = Ensemble::start(binary(), 3, "");
    let leader = e.wait_leader(Duration::from_secs(30));
    let follower = (1..=3).find(|&i| i != leader).expect("a follower");
    let mut c = Roaming::new(vec![e.member(follower).client], 0);
    assert!(created(&c.must(&create("/pipelined", b"", 0))));
    let client = c.client.as_mut().expect("connected");
    // The sync's ReadIndex may come back before the write commits; its reply
    // must still follow the write's, on the same connection.
    for i in 0..50 {
        let set = Request::SetData(zoocore_net::records::SetDataRequest {
            path: "/pipelined".into(),
            data: Some(vec![i]),
            version: -1,
        });
        let w = client.send(&set).expect("send the write");
        let s = client.send(&sync("/pipelined")).expect("send the sync");
        let first = client.recv().expect("the write's reply");
        let second = client.recv().expect("the sync's reply");
        assert_eq!(
            (first.header.xid, second.header.xid),
            (w, s),
            "replies in request order"
        );
        assert_eq!((first.header.err, second.header.err), (0, 0));
        assert!(second.header.zxid >= first.header.zxid);
    }
}

/// Limits (or with `None` frees) how large a member may write any file:
/// past the limit its writes fail (EFBIG), as they would on a full disk.
fn limit_file_size(pid: u32, bytes: Option<u64>) {
    let limit = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit on our own child with a valid rlimit value.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn a_follower_that_cannot_write_its_log_does_not_stop_the_ensemble_and_catches_up() {
    let e = Ensemble::start(binary(), 3, "");
    let leader = e.wait_leader(Duration::from_secs(30));
    let full = (1..=3).find(|&i| i != leader).expect("a follower");
    let others: Vec<SocketAddr> = (1..=3)
        .filter(|&i| i != full)
        .map(|i| e.member(i).client)
        .collect();
    let mut c = Roaming::new(others, 0);
    assert!(created(&c.must(&create("/disk", b"", 0))));
    // The member's log segment may grow no further than 64 KiB from now on.
    let pid = e.pid(full).expect("running");
    limit_file_size(pid, Some(64 << 10));
    let mut last = 0;
    for i in 0..40 {
        let reply = c.must(&create(&format!("/disk/n{i}"), &[7u8; 16 << 10], 0));
        assert!(created(&reply), "the other two go on committing");
        last = last.max(reply.header.zxid);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !e.log(full).contains("raft log write failed") {
        assert!(
            Instant::now() < deadline,
            "the member's writes never failed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(e.mode(full).is_some(), "the member still answers");
    limit_file_size(pid, None);
    // Its writes succeed again: it catches up and serves everything.
    let mut r = Roaming::new(vec![e.member(full).client], 0);
    assert_eq!(r.must(&sync("/")).header.err, 0);
    let reply = r.must(&get("/disk/n39"));
    match reply.body {
        Response::GetData(d) => {
            assert!(d.stat.czxid <= last && d.data.map_or(0, |d| d.len()) == 16 << 10)
        }
        other => panic!("the member did not catch up: {other:?}"),
    }
}

#[test]
fn a_write_through_a_member_the_session_has_left_closes_that_connection() {
    let e = Ensemble::start(binary(), 3, "");
    let options = ConnectOptions {
        timeout_ms: 10_000,
        io_timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    };
    let mut first = Client::connect(e.member(1).client, &options).expect("connect to member 1");
    // The same session connects again through member 2 (as a client that
    // moved on does), and writes there: member 2 now owns it.
    let moved = ConnectOptions {
        session_id: first.session_id(),
        passwd: first.passwd().to_vec(),
        ..options.clone()
    };
    let mut second = Client::connect(e.member(2).client, &moved).expect("connect to member 2");
    let reply = second.call(&create("/moved-here", b"", 0)).expect("reply");
    assert_eq!(reply.header.err, 0);
    // The old connection is still open; its write is refused as ZooKeeper
    // refuses it (checked against a 3-member Apache ZooKeeper 3.8): the
    // connection is closed, with no answer. (A read first, so that its
    // write's cxid is not the other connection's: replies are matched to
    // requests by session and cxid.)
    assert_eq!(first.call(&get("/")).expect("reply").header.err, 0);
    match first.call(&create("/left-behind", b"", 0)) {
        Err(ClientError::Io(_)) => {}
        other => panic!(
            "the moved session's old connection answered {other:?}; modes {:?}",
            (1..=3).map(|i| e.mode(i)).collect::<Vec<_>>()
        ),
    }
    assert_eq!(second.call(&sync("/")).expect("reply").header.err, 0);
    let reply = second.call(&get("/left-behind")).expect("reply");
    assert_eq!(
        reply.header.err,
        ErrorCode::NoNode.code(),
        "the refused write did nothing"
    );
}

/// Files in a member's data dir whose names start with `prefix`.
fn files(e: &Ensemble, id: u64, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(e.member(id).dir.join("data"))
        .expect("data dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix) && !name.ends_with(".tmp"))
        .collect();
    names.sort();
    names
}

fn children(reply: &Reply) -> usize {
    match &reply.body {
        Response::Children(c) => c.len(),
        other => panic!("not children: {other:?}"),
    }
}

#[test]
fn a_member_past_the_retained_log_catches_up_by_snapshot_and_all_restart_from_one() {
    // Snapshots every 20 to 40 txns, 4 entries kept before each, 3 MiB log
    // segments (the least allowed): a member stopped for 400 writes of
    // 16 KiB is past the log, and the first segments are dropped.
    let mut e = Ensemble::start(
        binary(),
        3,
        "snapCount=40\nzoocore.raftRetainedEntries=4\nzoocore.logSegmentBytes=3145728\n",
    );
    let leader = e.wait_leader(Duration::from_secs(30));
    let behind = (1..=3).find(|&i| i != leader).expect("a follower");
    e.kill(behind);
    let others: Vec<SocketAddr> = (1..=3)
        .filter(|&i| i != behind)
        .map(|i| e.member(i).client)
        .collect();
    let mut c = Roaming::new(others, 0);
    assert!(created(&c.must(&create("/snap", b"", 0))));
    for i in 0..400 {
        assert!(created(&c.must(&create(
            &format!("/snap/n{i}"),
            &[(i % 256) as u8; 16 << 10],
            0
        ))));
    }
    let leader = e.wait_leader(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let snapshots = files(&e, leader, "zoocore.raftsnap.");
        let segments = files(&e, leader, "zoocore.raftlog.");
        let first_kept = segments
            .first()
            .is_none_or(|s| !s.ends_with("0000000000000001"));
        if !snapshots.is_empty() && snapshots.len() <= 3 && first_kept {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader neither snapshots nor drops its old log: {snapshots:?} {segments:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    e.start_member(behind);
    let mut r = Roaming::new(vec![e.member(behind).client], 0);
    assert_eq!(r.must(&sync("/")).header.err, 0);
    let list = Request::GetChildren(PathWatchRequest {
        path: "/snap".into(),
        watch: false,
    });
    assert_eq!(children(&r.must(&list)), 400);
    assert!(
        e.log(behind).contains("installed the leader's snapshot"),
        "the member caught up without a snapshot: the log was not compacted"
    );
    drop(r);
    drop(c);
    // Every member restarts from its newest snapshot and the log after it.
    for id in 1..=3 {
        e.kill(id);
    }
    for id in 1..=3 {
        e.start_member(id);
    }
    e.wait_leader(Duration::from_secs(30));
    for id in 1..=3 {
        let mut r = Roaming::new(vec![e.member(id).client], 0);
        assert_eq!(r.must(&sync("/")).header.err, 0);
        assert_eq!(children(&r.must(&list)), 400, "member {id}");
        match r.must(&get("/snap/n399")).body {
            Response::GetData(d) => assert_eq!(d.data, Some(vec![(399 % 256) as u8; 16 << 10])),
            other => panic!("member {id}: {other:?}"),
        }
    }
}

/// Registers the history clients work on: znodes `/reg/k0..`, each an
/// 8-byte value with its data version.
const REGISTERS: usize = 3;

fn register_path(key: usize) -> String {
    format!("/reg/k{key}")
}

fn set_data(path: &str, value: u64, version: i32) -> Request {
    Request::SetData(SetDataRequest {
        path: path.into(),
        data: Some(value.to_be_bytes().to_vec()),
        version,
    })
}

/// A register as a getData reply shows it.
fn register_of(reply: &Reply) -> Option<Register> {
    match &reply.body {
        Response::GetData(d) => {
            let bytes: [u8; 8] = d.data.as_deref()?.try_into().ok()?;
            Some(Register {
                version: d.stat.version,
                value: u64::from_be_bytes(bytes),
            })
        }
        _ => None,
    }
}

/// One client of the register workload: linearizable reads (sync, then
/// getData on the same member), blind and conditional sets, and plain
/// reads, which must never show an older version than this session has
/// already seen or written (ZooKeeper's per-session order). Returns its
/// history as (key, operation).
fn register_client(
    addrs: Vec<SocketAddr>,
    client: usize,
    stop: Arc<AtomicBool>,
) -> Vec<(usize, Operation)> {
    let mut c = Roaming::new(addrs, client);
    let mut history = Vec::new();
    let mut seen = [0i32; REGISTERS];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = c.ensure(Duration::from_secs(20)) {
            panic!(
                "client {client} lost its session {:#x}: {e}",
                c.session_id()
            );
        }
        n += 1;
        let key = (n as usize * 7 + client) % REGISTERS;
        let path = register_path(key);
        let roll = (n * 31 + client as u64 * 17) % 10;
        let call = Instant::now();
        let (op, outcome) = match roll {
            0..=1 => {
                // A plain read: served locally, per-session order only.
                let Some(reply) = c.call(&get(&path)) else {
                    continue;
                };
                let register = register_of(&reply).expect("a register");
                assert!(
                    register.version >= seen[key],
                    "client {client} read version {} of {path} after seeing {}",
                    register.version,
                    seen[key]
                );
                seen[key] = register.version;
                continue;
            }
            2..=5 => {
                let Some(synced) = c.call(&sync(&path)) else {
                    continue; // a read that was lost has no effect
                };
                assert_eq!(synced.header.err, 0);
                let Some(reply) = c.call(&get(&path)) else {
                    continue;
                };
                let register = register_of(&reply).expect("a register");
                seen[key] = seen[key].max(register.version);
                (Op::Read, Outcome::Read(register))
            }
            _ => {
                let value = ((client as u64) << 32) | n;
                // Half conditional on the version last seen, half blind.
                let expected = if roll >= 8 { seen[key] } else { -1 };
                let outcome = match c.call(&set_data(&path, value, expected)) {
                    None => Outcome::Unknown,
                    Some(r) if r.header.err == ErrorCode::BadVersion.code() => Outcome::BadVersion,
                    Some(r) => match r.body {
                        Response::Stat(stat) => {
                            seen[key] = seen[key].max(stat.version);
                            Outcome::Set {
                                version: stat.version,
                            }
                        }
                        other => panic!("setData {path}: {} {other:?}", r.header.err),
                    },
                };
                (Op::Set { value, expected }, outcome)
            }
        };
        let ret = (outcome != Outcome::Unknown).then(Instant::now);
        history.push((
            key,
            Operation {
                client,
                op,
                call,
                ret,
                outcome,
            },
        ));
    }
    history
}

/// Register clients running until `finish`.
struct RegisterClients {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<(usize, Operation)>>>,
}

impl RegisterClients {
    fn start(e: &Ensemble, clients: usize) -> RegisterClients {
        let mut c = Roaming::new(addrs(e), 0);
        c.ensure(Duration::from_secs(10)).expect("connect");
        assert!(created(&c.must(&create("/reg", b"", 0))));
        for key in 0..REGISTERS {
            let path = register_path(key);
            assert!(created(&c.must(&create(&path, &0u64.to_be_bytes(), 0))));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|i| {
                let (addrs, stop) = (addrs(e), stop.clone());
                std::thread::spawn(move || register_client(addrs, i, stop))
            })
            .collect();
        RegisterClients { stop, threads }
    }

    /// Stops the clients, adds a final linearizable read of every register
    /// (through any member), and checks each register's history.
    fn finish_and_check(self, e: &Ensemble) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let mut history: Vec<(usize, Operation)> = Vec::new();
        for t in self.threads {
            history.extend(t.join().expect("register client"));
        }
        eprintln!(
            "checking {} register operations ({} with a lost reply)",
            history.len(),
            history
                .iter()
                .filter(|(_, o)| o.outcome == Outcome::Unknown)
                .count()
        );
        let mut c = Roaming::new(addrs(e), 0);
        for key in 0..REGISTERS {
            let call = Instant::now();
            assert_eq!(c.must(&sync(&register_path(key))).header.err, 0);
            let register = register_of(&c.must(&get(&register_path(key)))).expect("register");
            history.push((
                key,
                Operation {
                    client: usize::MAX,
                    op: Op::Read,
                    call,
                    ret: Some(Instant::now()),
                    outcome: Outcome::Read(register),
                },
            ));
        }
        let initial = Register {
            version: 0,
            value: 0,
        };
        for key in 0..REGISTERS {
            let ops: Vec<Operation> = history
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, o)| o.clone())
                .collect();
            if let Err(e) = linearizability::check(initial, &ops) {
                panic!("register {}: {e}", register_path(key));
            }
        }
        history
            .iter()
            .filter(|(_, o)| matches!(o.outcome, Outcome::Set { .. }))
            .count()
    }
}

/// Waits until a member other than `isolated` leads, and returns it.
fn wait_other_leader(e: &Ensemble, isolated: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(id) = (1..=3)
            .filter(|&i| i != isolated)
            .find(|&i| e.mode(i).as_deref() == Some("leader"))
        {
            return id;
        }
        assert!(Instant::now() < deadline, "no leader on the majority side");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_leader_cut_off_by_a_partition_is_replaced_and_every_history_is_linearizable() {
    let mut e = Ensemble::start_partitionable(binary(), 3, "");
    setup_parent(&e);
    let writers = Writers::start(&e, &["w"]);
    let clients = RegisterClients::start(&e, 4);
    for round in 0..2 {
        std::thread::sleep(Duration::from_millis(800));
        let leader = e.wait_leader(Duration::from_secs(30));
        e.isolate(leader);
        let isolated_at = Instant::now();
        let new_leader = wait_other_leader(&e, leader, Duration::from_secs(20));
        eprintln!(
            "round {round}: member {new_leader} leads {:?} after member {leader} was cut off",
            isolated_at.elapsed()
        );
        // The old leader cannot reach a quorum: it steps down (raft's
        // check-quorum) and stops serving, so its clients move on.
        let deadline = Instant::now() + Duration::from_secs(20);
        while e.mode(leader).as_deref() == Some("leader") {
            assert!(
                Instant::now() < deadline,
                "the cut-off leader still leads (round {round})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(1500));
        e.heal();
    }
    e.wait_leader(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let history = writers.finish();
    check_linearizable(&history);
    eprintln!(
        "longest gap between acknowledged creates: {:?}",
        longest_gap(&history)
    );
    check_all_present(&e, &history);
    let sets = clients.finish_and_check(&e);
    assert!(sets > 20, "only {sets} sets acknowledged");
}

/// A `mntr` value of a member, when it reports it.
fn mntr_value(e: &Ensemble, id: u64, key: &str) -> Option<String> {
    let mntr = four_letter_word(e.member(id).client, "mntr").ok()?;
    mntr.lines()
        .find_map(|l| l.strip_prefix(&format!("zk_{key}\t")))
        .map(str::to_owned)
}

/// Waits until the leader's mntr counts three learners, two synced
/// followers and one synced observer (ZooKeeper's keys and meaning).
fn wait_observed_by_leader(e: &Ensemble, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leader = e.wait_leader(Duration::from_secs(60));
        let counts: Vec<Option<String>> = [
            "learners",
            "synced_followers",
            "synced_non_voting_followers",
            "synced_observers",
        ]
        .iter()
        .map(|k| mntr_value(e, leader, k))
        .collect();
        let expected = ["3", "2", "0", "1"].map(|v| Some(v.to_owned()));
        if counts == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: leader {leader}'s mntr learners / synced_followers / \
             synced_non_voting_followers / synced_observers are {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three voters and an observer, zoocore beside Apache ZooKeeper: the
/// observer says so in srvr and mntr, serves reads, forwards writes, and
/// counts in the leader's mntr as ZooKeeper counts it. zoocore's observer
/// then never leads, and with two voters gone it and the last voter are
/// no quorum.
#[test]
fn an_observer_serves_and_forwards_writes_but_never_votes() {
    let zookeeper = Ensemble::start_zookeeper_with_observers(4, 1, "");
    let mut zoocore = Ensemble::start_with_observers(binary(), 4, 1, "");
    for (what, e) in [("zookeeper", &zookeeper), ("zoocore", &zoocore)] {
        assert_ne!(e.wait_leader(Duration::from_secs(60)), 4, "{what}");
        assert_eq!(e.mode(4).as_deref(), Some("observer"), "{what}");
        assert_eq!(
            mntr_value(e, 4, "server_state").as_deref(),
            Some("observer"),
            "{what}"
        );
        wait_observed_by_leader(e, what);
        let mut observer = Roaming::new(vec![e.member(4).client], 0);
        let reply = observer.must(&create("/observed", b"through the observer", 0));
        assert_eq!(reply.header.err, 0, "{what}: create through the observer");
        for id in 1..=4 {
            let mut r = Roaming::new(vec![e.member(id).client], 0);
            assert_eq!(r.must(&sync("/")).header.err, 0, "{what}: sync on {id}");
            match r.must(&get("/observed")).body {
                Response::GetData(d) => assert_eq!(
                    d.data.as_deref(),
                    Some(&b"through the observer"[..]),
                    "{what}: member {id}"
                ),
                other => panic!("{what}: member {id}: {other:?}"),
            }
        }
    }
    drop(zookeeper);

    let leader = zoocore.wait_leader(Duration::from_secs(30));
    zoocore.kill(leader);
    let next = zoocore.wait_leader(Duration::from_secs(30));
    assert_ne!(next, 4, "the observer took the lead");
    assert_eq!(zoocore.mode(4).as_deref(), Some("observer"));
    let mut observer = Roaming::new(vec![zoocore.member(4).client], 0);
    assert_eq!(
        observer.must(&create("/after-failover", b"", 0)).header.err,
        0
    );

    // One voter and the observer: raft's election needs two of three votes,
    // and the observer has none to give. A few election timeouts (0.5-1 s
    // each) pass without a leader, and both stop serving.
    zoocore.kill(next);
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        assert!(
            zoocore.leaders().is_empty(),
            "a leader without a quorum of voters: {:?}",
            zoocore.leaders()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(zoocore.mode(4).as_deref(), Some("looking"));

    // The voters come back: the observer serves again, and has everything.
    zoocore.start_member(leader);
    zoocore.start_member(next);
    assert_ne!(zoocore.wait_leader(Duration::from_secs(30)), 4);
    assert_eq!(zoocore.mode(4).as_deref(), Some("observer"));
    let mut observer = Roaming::new(vec![zoocore.member(4).client], 0);
    assert_eq!(observer.must(&sync("/")).header.err, 0);
    assert_eq!(observer.must(&get("/after-failover")).header.err, 0);
}

/// A session with a short timeout that keeps talking through whatever
/// happens to the ensemble, owning an ephemeral: if the session expired,
/// its next request fails with SessionExpired and the thread panics.
struct EphemeralOwner {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<i64>,
}

impl EphemeralOwner {
    const TIMEOUT_MS: i32 = 6_000;

    fn start(e: &Ensemble, path: &'static str) -> EphemeralOwner {
        let mut c = Roaming::new(addrs(e), 1);
        c.options.timeout_ms = Self::TIMEOUT_MS;
        c.options.io_timeout = Duration::from_secs(1);
        assert!(created(&c.must(&create(path, b"owner", 1))));
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        let thread = std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Err(e) = c.ensure(Duration::from_secs(5)) {
                    panic!("the owner's session {:#x} is gone: {e}", c.session_id());
                }
                if let Some(reply) = c.call(&get(path)) {
                    assert_eq!(
                        reply.header.err,
                        0,
                        "the owner's ephemeral {path} (session {:#x})",
                        c.session_id()
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            c.session_id()
        });
        EphemeralOwner { stop, thread }
    }

    /// Stops talking; returns the session id, still the first one.
    fn finish(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("ephemeral owner")
    }
}

/// Each member in turn stopped with SIGTERM and started again (followers
/// first, the leader last, as an operator rolls an ensemble), each time
/// only once the ensemble has a leader and writes go on: no acknowledged
/// write is lost, the writers keep their sessions, and a session with a
/// 6 s timeout keeps its ephemeral throughout.
#[test]
fn a_rolling_restart_under_load_loses_no_write_and_expires_no_session() {
    let mut e = Ensemble::start(binary(), 3, "");
    setup_parent(&e);
    let writers = Writers::start(&e, &["r1", "r2"]);
    let owner = EphemeralOwner::start(&e, "/rolling-owner");
    let leader = e.wait_leader(Duration::from_secs(30));
    let order: Vec<u64> = (1..=3)
        .filter(|&i| i != leader)
        .chain(std::iter::once(leader))
        .collect();
    for id in order {
        let before = writers.len();
        assert_eq!(e.terminate(id), Some(0), "member {id} exits cleanly");
        e.wait_leader(Duration::from_secs(30));
        // Down for a while, as a member being upgraded is: the three
        // restarts together outlast the owner's session timeout, so a
        // session kept alive only by the members that restarted would
        // expire.
        std::thread::sleep(Duration::from_millis(2_500));
        e.start_member(id);
        e.wait_leader(Duration::from_secs(30));
        // The restarted member is back in the ensemble, and writes go on.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(e.mode(id).as_deref(), Some("leader" | "follower"))
            || writers.len() <= before + 20
        {
            assert!(
                Instant::now() < deadline,
                "member {id} did not rejoin, or writes stopped ({} -> {})",
                before,
                writers.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let session = owner.finish();
    let history = writers.finish();
    check_linearizable(&history);
    check_all_present(&e, &history);
    let mut c = Roaming::new(addrs(&e), 0);
    match c.must(&get("/rolling-owner")).body {
        Response::GetData(d) => assert_eq!(d.stat.ephemeral_owner, session),
        other => panic!("the ephemeral is gone after the rolling restart: {other:?}"),
    }
}

/// A peer speaking another version of the peer protocol (a member of an
/// incompatible release, met during an upgrade) is refused with a log
/// line that says so, and the ensemble goes on.
#[test]
fn a_member_speaking_another_peer_protocol_version_is_refused_with_a_clear_message() {
    use std::io::Write as _;
    use zoocore_consensus::peer_msg::PROTOCOL_VERSION;
    use zoocore_consensus::PeerMsg;
    let e = Ensemble::start(binary(), 3, "");
    let leader = e.wait_leader(Duration::from_secs(30));
    let other = (1..=3).find(|&i| i != leader).expect("another member");
    let mut frame = Vec::new();
    PeerMsg::Hello {
        version: PROTOCOL_VERSION + 1,
        server_id: other,
        membership: 0,
    }
    .encode(&mut frame);
    let peer: SocketAddr = ([127, 0, 0, 1], e.member(leader).peer_port).into();
    let mut s = std::net::TcpStream::connect(peer).expect("peer port");
    s.write_all(&frame).expect("send hello");
    let expected = format!(
        "server.{other} speaks peer protocol {}, this server {PROTOCOL_VERSION}: refusing it",
        PROTOCOL_VERSION + 1
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.log(leader).contains(&expected) {
        assert!(
            Instant::now() < deadline,
            "no refusal logged: {}",
            e.log(leader)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = Roaming::new(addrs(&e), 0);
    assert!(created(&c.must(&create("/after-a-newer-peer", b"", 0))));
}

/// What a client sees of a member left alone with `readonlymode.enabled`,
/// recorded the same way for zoocore and Apache ZooKeeper.
#[derive(Debug, PartialEq, Eq)]
struct ReadOnlyView {
    isro: String,
    mode: Option<String>,
    server_state: Option<String>,
    connect_read_only: bool,
    data: Option<Vec<u8>>,
    children: Option<Vec<String>>,
    /// Error codes of create, setData, delete, sync, check-in-multi.
    refused: Vec<i32>,
    /// A client that does not allow a read-only server gets no session.
    read_write_client_refused: bool,
    /// Nor does one that has seen a newer zxid than the member holds.
    future_client_refused: bool,
    /// addauth on a read-only session.
    auth: i32,
    isro_after_quorum: String,
    read_only_connection_closed: bool,
    write_after_quorum: i32,
}

fn read_only_view(what: &str, e: &mut Ensemble) -> ReadOnlyView {
    use zoocore_net::records::{CheckVersionRequest, DeleteRequest};
    let mut c = Roaming::new(vec![e.member(1).client], 0);
    assert!(created(&c.must(&create("/ro", b"kept", 0))));
    assert!(created(&c.must(&create("/ro/kid", b"", 0))));
    drop(c);
    e.kill(2);
    e.kill(3);
    let alone = e.member(1).client;
    let deadline = Instant::now() + Duration::from_secs(60);
    while four_letter_word(alone, "isro").unwrap_or_default() != "ro" {
        assert!(
            Instant::now() < deadline,
            "{what}: member 1 never became read-only"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let isro = four_letter_word(alone, "isro").unwrap_or_default();
    let srvr = four_letter_word(alone, "srvr").unwrap_or_default();
    let mode = srvr
        .lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(str::to_owned);
    let server_state = mntr_value(e, 1, "server_state");
    let options = ConnectOptions {
        can_be_read_only: true,
        io_timeout: Duration::from_secs(10),
        ..ConnectOptions::default()
    };
    let mut ro = Client::connect(alone, &options)
        .unwrap_or_else(|err| panic!("{what}: a read-only session: {err:?}"));
    let data = match ro.call(&get("/ro")).expect("getData").body {
        Response::GetData(d) => d.data,
        _ => None,
    };
    let children = match ro
        .call(&Request::GetChildren(PathWatchRequest {
            path: "/ro".into(),
            watch: true,
        }))
        .expect("getChildren")
        .body
    {
        Response::Children(c) => Some(c),
        _ => None,
    };
    let set = Request::SetData(SetDataRequest {
        path: "/ro".into(),
        data: Some(b"changed".to_vec()),
        version: -1,
    });
    let delete = Request::Delete(DeleteRequest {
        path: "/ro/kid".into(),
        version: -1,
    });
    let multi = Request::Multi(vec![Request::Check(CheckVersionRequest {
        path: "/ro".into(),
        version: 0,
    })]);
    let refused = [create("/ro/new", b"", 0), set, delete, sync("/ro"), multi]
        .iter()
        .map(|r| ro.call(r).expect("a reply").header.err)
        .collect();
    let plain = ConnectOptions {
        io_timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    };
    let read_write_client_refused = Client::connect(alone, &plain).is_err();
    let from_the_future = ConnectOptions {
        last_zxid_seen: i64::MAX / 2,
        ..options.clone()
    };
    let future_client_refused = Client::connect(alone, &from_the_future).is_err();
    let auth = ro.add_auth("digest", b"ro-user:secret").expect("addauth");

    e.start_member(2);
    e.start_member(3);
    e.wait_leader(Duration::from_secs(90));
    let deadline = Instant::now() + Duration::from_secs(60);
    while four_letter_word(alone, "isro").unwrap_or_default() != "rw" {
        assert!(
            Instant::now() < deadline,
            "{what}: member 1 never became read-write"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let isro_after_quorum = four_letter_word(alone, "isro").unwrap_or_default();
    // The read-only connection is closed once the quorum is back; a read
    // on it fails (ZooKeeper closes it when its read-only server stops).
    let read_only_connection_closed = ro.call(&get("/ro")).is_err();
    let mut c = Roaming::new(vec![alone], 0);
    let write_after_quorum = c.must(&create("/ro/after", b"", 0)).header.err;
    ReadOnlyView {
        isro,
        mode,
        server_state,
        connect_read_only: ro.is_read_only(),
        data,
        children,
        refused,
        read_write_client_refused,
        future_client_refused,
        auth,
        isro_after_quorum,
        read_only_connection_closed,
        write_after_quorum,
    }
}

/// `readonlymode.enabled`: a member cut off from its quorum serves reads to
/// clients that allow a read-only server, refuses their writes with
/// NotReadOnly, says `ro`, and closes those sessions when the quorum is
/// back; the same sequence against Apache ZooKeeper gives the same view.
#[test]
fn a_member_without_quorum_serves_reads_read_only_as_zookeeper_does() {
    // ZooKeeper opens a new session on a read-only server only as a local
    // session (without them it answers the connect with a NotReadOnly
    // reply header); kazoo's own read-only test turns them on too.
    let mut zookeeper = Ensemble::start_zookeeper(
        3,
        "localSessionsEnabled=true\nlocalSessionsUpgradingEnabled=true\n",
        &["-Dreadonlymode.enabled=true".to_owned()],
    );
    let expected = read_only_view("zookeeper", &mut zookeeper);
    drop(zookeeper);
    let mut zoocore = Ensemble::start(binary(), 3, "readonlymode.enabled=true\n");
    let seen = read_only_view("zoocore", &mut zoocore);
    let not_read_only = ErrorCode::NotReadOnly.code();
    assert_eq!(expected.refused, vec![not_read_only; 5], "{expected:?}");
    assert_eq!(expected.mode.as_deref(), Some("read-only"), "{expected:?}");
    assert!(expected.future_client_refused, "{expected:?}");
    assert_eq!(expected.auth, 0, "{expected:?}");
    assert_eq!(seen, expected);
}

/// A sample of a member's Prometheus page, when it has one.
fn metric_value(e: &Ensemble, id: u64, series: &str) -> Option<f64> {
    let addr = e
        .member(id)
        .metrics
        .expect("zoocore members export metrics");
    let (_, page) = zoocore_testkit::zk::http_get(addr, "/metrics");
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .and_then(|v| v.parse().ok())
}

/// Waits until `series` on member `id` satisfies `ok`; returns its value.
fn wait_metric(e: &Ensemble, id: u64, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = metric_value(e, id, series);
        if let Some(v) = value.filter(|v| ok(*v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "member {id}'s {series} is {value:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The ensemble's own metrics: the election each member waited for, syncs
/// and forwarded writes on a follower, and on the leader each member's lag
/// in entries, bytes and time, growing while a follower is paused and back
/// to nothing once it resumes.
#[test]
fn ensemble_metrics_show_elections_syncs_forwarding_and_each_member_s_lag() {
    let mut e = Ensemble::start(binary(), 3, "");
    let leader = e.wait_leader(Duration::from_secs(30));
    let follower = (1..=3).find(|&i| i != leader).expect("a follower");
    let paused = (1..=3)
        .find(|&i| i != leader && i != follower)
        .expect("another follower");
    for id in 1..=3 {
        wait_metric(&e, id, "zoocore_election_milliseconds_count", |v| v >= 1.0);
    }
    let mut c = Roaming::new(vec![e.member(follower).client], 0);
    assert!(created(&c.must(&create("/metered", b"", 0))));
    assert_eq!(c.must(&sync("/metered")).header.err, 0);
    wait_metric(&e, follower, "zoocore_forwarded_requests_total", |v| {
        v >= 1.0
    });
    wait_metric(&e, follower, "zoocore_sync_microseconds_count", |v| {
        v >= 1.0
    });
    wait_metric(&e, leader, "zoocore_leader_changes_total", |v| v >= 1.0);
    let lag = |what: &str, id: u64| format!("zoocore_peer_lag_{what}{{peer=\"{id}\"}}");
    wait_metric(&e, leader, &lag("entries", follower), |v| v == 0.0);

    e.pause(paused, true);
    let mut writer = Roaming::new(vec![e.member(leader).client], 0);
    for i in 0..200 {
        let reply = writer.must(&create(&format!("/metered/n{i}"), &[7; 100], 0));
        assert_eq!(reply.header.err, 0);
    }
    wait_metric(&e, leader, &lag("entries", paused), |v| v >= 1.0);
    // 200 creates of 100 bytes each: their entries hold at least that.
    wait_metric(&e, leader, &lag("bytes", paused), |v| v >= 20_000.0);
    wait_metric(&e, leader, &lag("milliseconds", paused), |v| v >= 100.0);
    wait_metric(&e, leader, &lag("entries", follower), |v| v == 0.0);

    e.pause(paused, false);
    wait_metric(&e, leader, &lag("entries", paused), |v| v == 0.0);
    wait_metric(&e, leader, &lag("bytes", paused), |v| v == 0.0);
    wait_metric(&e, leader, &lag("milliseconds", paused), |v| v == 0.0);
}

/// A follower that loses its whole disk (restarted with only `myid` in its
/// data dir, as after a disk replacement) rejoins: the leader notices the
/// log it had acknowledged is gone, probes it from nothing and sends its
/// snapshot; the member then holds everything, and nobody crashed on the
/// commit index it had been told before.
#[test]
fn a_follower_restarted_with_an_empty_disk_catches_up_by_snapshot() {
    let mut e = Ensemble::start(binary(), 3, "snapCount=40\nzoocore.raftRetainedEntries=4\n");
    let leader = e.wait_leader(Duration::from_secs(30));
    let wiped = (1..=3).find(|&i| i != leader).expect("a follower");
    let mut c = Roaming::new(addrs(&e), 0);
    assert!(created(&c.must(&create("/disk", b"", 0))));
    for i in 0..200 {
        assert!(created(&c.must(&create(&format!("/disk/n{i}"), b"x", 0))));
    }
    // The leader counts the follower's log: it acknowledged these.
    let metric = format!("zoocore_peer_lag_entries{{peer=\"{wiped}\"}}");
    wait_metric(&e, leader, &metric, |v| v == 0.0);
    e.kill(wiped);
    let data = e.member(wiped).dir.join("data");
    for entry in std::fs::read_dir(&data).expect("data dir").flatten() {
        if entry.file_name() != "myid" {
            std::fs::remove_file(entry.path()).expect("wipe the member's disk");
        }
    }
    e.start_member(wiped);
    for i in 200..220 {
        assert!(created(&c.must(&create(&format!("/disk/n{i}"), b"x", 0))));
    }
    let leader = e.wait_leader(Duration::from_secs(30));
    wait_metric(&e, leader, &metric, |v| v == 0.0);
    assert!(
        !files(&e, wiped, "zoocore.raftsnap.").is_empty(),
        "the wiped member holds the leader's snapshot"
    );
    let mut r = Roaming::new(vec![e.member(wiped).client], 0);
    assert_eq!(r.must(&sync("/")).header.err, 0);
    let list = Request::GetChildren(PathWatchRequest {
        path: "/disk".into(),
        watch: false,
    });
    assert_eq!(children(&r.must(&list)), 220);
    assert!(
        !e.log(wiped).contains("panicked"),
        "the wiped member crashed: {}",
        e.log(wiped)
    );
}

const RECONFIG_SUPER: &str = "super:reconfig";

fn reconfig_keys() -> String {
    format!(
        "reconfigEnabled=true\nDigestAuthenticationProvider.superDigest={}\n",
        zoocore_engine::acl::digest_of(RECONFIG_SUPER)
    )
}

/// A reconfig as the super user through any running member, sent again
/// after a lost connection or while another is in progress (a repeated
/// add or remove changes nothing); returns its error code and the
/// configuration it answered with.
fn reconfig(e: &Ensemble, joining: &str, leaving: &str) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "reconfig +{joining} -{leaving} unanswered"
        );
        for m in e.members.iter().filter(|m| e.mode(m.id).is_some()) {
            let Ok(mut c) = Client::connect(m.client, &ConnectOptions::default()) else {
                continue;
            };
            if c.add_auth("digest", RECONFIG_SUPER.as_bytes()).ok() != Some(0) {
                continue;
            }
            let request = Request::Reconfig(ReconfigRequest {
                joining_servers: joining.into(),
                leaving_servers: leaving.into(),
                new_members: String::new(),
                cur_config_id: -1,
            });
            match c.call(&request) {
                Ok(r) if r.header.err == ErrorCode::ReconfigInProgress.code() => {}
                Ok(r) => {
                    let text = match r.body {
                        Response::GetData(d) => String::from_utf8(d.data.unwrap_or_default())
                            .expect("the configuration is text"),
                        _ => String::new(),
                    };
                    return (r.header.err, text);
                }
                Err(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until member `id` serves `/zookeeper/config` equal to `text`.
fn wait_config(e: &Ensemble, id: u64, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = Client::connect(e.member(id).client, &ConnectOptions::default())
            .ok()
            .and_then(|mut c| c.call(&get("/zookeeper/config")).ok())
            .and_then(|r| match r.body {
                Response::GetData(d) => d.data,
                _ => None,
            });
        if seen.as_deref() == Some(text.as_bytes()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {id} serves {:?}, not {text:?}",
            seen.map(|s| String::from_utf8_lossy(&s).into_owned())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn server_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("server.")).collect()
}

#[test]
fn reconfig_adds_removes_and_replaces_members_under_load_and_races_a_leader_kill() {
    let keys = reconfig_keys();
    let mut e = Ensemble::start(binary(), 3, &keys);
    setup_parent(&e);
    let writers = Writers::start(&e, &["c1", "c2"]);

    // A fourth voter: started with everyone's lines and its own, then added.
    let (four, line4) = e.add_member(false, &keys);
    let (err, text) = reconfig(&e, &line4, "");
    assert_eq!(err, 0, "adding server.4: {text}");
    assert!(server_lines(&text).contains(&line4.as_str()), "{text}");
    wait_config(&e, four, &text);
    e.wait_leader(Duration::from_secs(30));
    assert!(matches!(
        e.mode(four).as_deref(),
        Some("leader" | "follower")
    ));

    // Replace a follower by a new member in one reconfig (joint consensus).
    let leader = e.wait_leader(Duration::from_secs(30));
    let gone = (1..=3).find(|&id| id != leader).expect("a follower");
    let (five, line5) = e.add_member(false, &keys);
    let (err, text) = reconfig(&e, &line5, &gone.to_string());
    assert_eq!(err, 0, "replacing server.{gone} by server.5: {text}");
    assert!(!text.contains(&format!("server.{gone}=")), "{text}");
    wait_config(&e, five, &text);
    e.kill(gone);

    // A reconfig racing the leader's death: it commits or it does not, and
    // either way every member ends with the same configuration and the
    // next reconfig goes through.
    let leader = e.wait_leader(Duration::from_secs(30));
    let victim = [1, 2, 3, 4, 5]
        .into_iter()
        .find(|&id| id != leader && id != gone)
        .expect("a member to remove");
    let racing = {
        let members: Vec<SocketAddr> = vec![e.member(leader).client];
        std::thread::spawn(move || {
            let mut c = Client::connect(members[0], &ConnectOptions::default()).ok()?;
            c.add_auth("digest", RECONFIG_SUPER.as_bytes()).ok()?;
            c.call(&Request::Reconfig(ReconfigRequest {
                joining_servers: String::new(),
                leaving_servers: victim.to_string(),
                new_members: String::new(),
                cur_config_id: -1,
            }))
            .ok()
        })
    };
    std::thread::sleep(Duration::from_millis(5));
    e.kill(leader);
    let _ = racing.join().expect("racing reconfig");
    e.start_member(leader);
    // Whatever happened, removing the victim now succeeds.
    let (err, text) = reconfig(&e, "", &victim.to_string());
    assert_eq!(err, 0, "removing server.{victim}: {text}");
    assert!(!text.contains(&format!("server.{victim}=")), "{text}");
    e.kill(victim);
    for id in [1, 2, 3, 4, 5]
        .into_iter()
        .filter(|&id| id != gone && id != victim)
    {
        wait_config(&e, id, &text);
    }

    // Removing the leader itself: it steps down as soon as the change
    // commits (raft-rs would lead on without counting itself), and the
    // others elect one of themselves.
    let resigned = e.wait_leader(Duration::from_secs(30));
    let (err, text) = reconfig(&e, "", &resigned.to_string());
    assert_eq!(err, 0, "removing the leader, server.{resigned}: {text}");
    assert!(!text.contains(&format!("server.{resigned}=")), "{text}");
    let live: Vec<u64> = [1, 2, 3, 4, 5]
        .into_iter()
        .filter(|&id| id != gone && id != victim && id != resigned)
        .collect();
    for &id in &live {
        wait_config(&e, id, &text);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !live
        .iter()
        .any(|&id| e.mode(id).as_deref() == Some("leader"))
    {
        assert!(Instant::now() < deadline, "no leader among {live:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
    // Still running, out of the ensemble, as a removed ZooKeeper member.
    let log = e.log(resigned);
    assert!(
        e.mode(resigned).is_some() && !log.contains("panicked"),
        "the removed leader failed: {log}"
    );
    e.kill(resigned);

    let history = writers.finish();
    check_linearizable(&history);
    check_all_present(&e, &history);
    let acked = history.iter().filter(|w| w.zxid.is_some()).count();
    assert!(acked > 20, "only {acked} writes acknowledged");

    // The remaining members restart from the dynamic files the reconfigs
    // left, and form the same ensemble.
    for &id in &live {
        let cfg = std::fs::read_to_string(e.member(id).dir.join("zoo.cfg")).expect("zoo.cfg");
        assert!(cfg.contains("dynamicConfigFile="), "member {id}: {cfg}");
        assert!(!cfg.contains("\nserver."), "member {id}: {cfg}");
        e.kill(id);
    }
    for &id in &live {
        e.start_member(id);
    }
    e.wait_leader(Duration::from_secs(60));
    for &id in &live {
        wait_config(&e, id, &text);
    }
    check_all_present(&e, &history);
}
