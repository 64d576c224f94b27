//! Starts and stops an Apache ZooKeeper server (Debian package `zookeeper`,
//! installed by `scripts/install-deps.sh`) on a free loopback port with its
//! own data dir. The process is killed and the dir removed on drop; in
//! between it can be SIGKILLed and restarted on the same dir. Below that:
//! a workload that leaves a data dir worth migrating ([`fill_and_crash`])
//! and a server's whole tree read over the wire ([`dump_tree`]), for the
//! import tests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::consts::perms;
use zoocore_net::records::{
    CheckVersionRequest, CreateRequest, CreateTtlRequest, DeleteRequest, PathRequest,
    PathWatchRequest, SetAclRequest, SetDataRequest,
};
use zoocore_net::{Acl, Request, Response, Stat};

pub struct ZooKeeperProcess {
    child: Option<Child>,
    dir: PathBuf,
    classpath: String,
    jvm_props: Vec<String>,
    pub addr: SocketAddr,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A loopback port nobody listens on right now, that no other call in this
/// process returns. It comes from below the kernel's ephemeral range: a port
/// from that range can be taken as the source port of any outgoing
/// connection (a peer's, another test's) before the server binds it.
pub fn free_port() -> u16 {
    const LOWEST: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let end = ephemeral_range_start().unwrap_or(LOWEST);
    if end > LOWEST {
        let span = end - LOWEST;
        let offset = std::process::id().wrapping_mul(7919) % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = LOWEST + (offset + n) % span;
            let port = u16::try_from(port).expect("below the ephemeral range");
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// The first port of `net.ipv4.ip_local_port_range`.
fn ephemeral_range_start() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Sends a four-letter word and returns the whole answer.
pub fn four_letter_word(addr: SocketAddr, word: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(word.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Waits until the server `child` started answers `ruok` at `addr`; panics
/// with the end of the `*.log` files in `log_dir` if it exits or takes more
/// than 30 s (the dir may be gone by the time anyone looks).
pub fn wait_until_serving(addr: SocketAddr, child: &mut Child, what: &str, log_dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while four_letter_word(addr, "ruok")
        .map(|a| a != "imok")
        .unwrap_or(true)
    {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status}{}", log_tails(log_dir));
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start{}",
            log_tails(log_dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last lines of each `*.log` file in `dir`, for a failure message.
fn log_tails(dir: &Path) -> String {
    const LINES: usize = 30;
    let mut out = format!("; logs in {}", dir.display());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LINES)..];
            out.push_str(&format!(
                "\n--- {} ---\n{}",
                path.display(),
                tail.join("\n")
            ));
        }
    }
    out
}

/// Apache ZooKeeper's classpath, from Debian's package
/// (`scripts/zk-classpath.sh`).
pub fn zookeeper_classpath() -> String {
    let classpath = Command::new("bash")
        .arg(repo_root().join("scripts/zk-classpath.sh"))
        .output()
        .expect("run scripts/zk-classpath.sh");
    assert!(
        classpath.status.success(),
        "Apache ZooKeeper is not installed; run scripts/install-deps.sh ({})",
        String::from_utf8_lossy(&classpath.stderr)
    );
    String::from_utf8_lossy(&classpath.stdout).trim().to_owned()
}

/// `java` running ZooKeeper's `main_class` on `config`, logging as the
/// tests configure it.
pub fn zookeeper_command(
    classpath: &str,
    heap: &str,
    jvm_props: &[String],
    main_class: &str,
    config: &Path,
) -> Command {
    let mut command = Command::new("java");
    command
        .arg(format!("-Xmx{heap}"))
        .arg(format!(
            "-Dlog4j.configuration=file:{}",
            repo_root().join("scripts/zk-log4j.properties").display()
        ))
        .args(jvm_props)
        .arg("-cp")
        .arg(classpath)
        .arg(main_class)
        .arg(config);
    command
}

impl ZooKeeperProcess {
    /// Starts ZooKeeper standalone with extra JVM system properties
    /// (`-Dkey=value`) and waits until it serves requests.
    pub fn start(jvm_props: &[String]) -> ZooKeeperProcess {
        Self::start_with("", jvm_props)
    }

    /// As [`ZooKeeperProcess::start`], with extra `zoo.cfg` lines (e.g. `snapCount=500`).
    pub fn start_with(cfg_extra: &str, jvm_props: &[String]) -> ZooKeeperProcess {
        let classpath = zookeeper_classpath();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("zoocore-zk-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).expect("create ZooKeeper dir");
        std::fs::write(
            dir.join("zoo.cfg"),
            format!(
                "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=*\n{cfg_extra}\n",
                dir.join("data").display()
            ),
        )
        .expect("write zoo.cfg");
        let mut zk = ZooKeeperProcess {
            child: None,
            dir,
            classpath,
            jvm_props: jvm_props.to_vec(),
            addr: ([127, 0, 0, 1], port).into(),
        };
        zk.spawn();
        zk
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("zookeeper.log"))
            .expect("open ZooKeeper log");
        let child = zookeeper_command(
            &self.classpath,
            "512m",
            &self.jvm_props,
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            &self.dir.join("zoo.cfg"),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
        .expect("start java (is OpenJDK installed? run scripts/install-deps.sh)");
        self.child = Some(child);
        self.wait_until_serving();
    }

    /// ZooKeeper's `dataDir`; its files are in `version-2/` below it.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The dir holding `zoo.cfg`, the log and the data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SIGKILL, as a crash would; the data dir stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts ZooKeeper again on the same data dir and port (killing it first if it runs).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// As [`ZooKeeperProcess::restart`], with other JVM system properties from now on.
    pub fn restart_with(&mut self, jvm_props: &[String]) {
        self.jvm_props = jvm_props.to_vec();
        self.restart();
    }

    /// ZooKeeper's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("zookeeper.log")).unwrap_or_default()
    }

    /// `ruok` answers before the server is ready; `srvr` shows `Mode:` once it is.
    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(answer) = four_letter_word(self.addr, "srvr") {
                if answer.contains("Mode:") {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "ZooKeeper exited with {status}; log in {}",
                    self.dir.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "ZooKeeper did not start within 60 s; log in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ZooKeeperProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ------------------------------------------------------------------------
// A ZooKeeper data dir worth migrating, and ZooKeeper's tree over the wire:
// shared by the import tests of the engine (zk_import) and the server
// (import-zk).

/// The super user of [`import_jvm_props`], who may read every node.
pub const IMPORT_SUPER: &str = "super:import-test";
/// A digest user owning some nodes of [`fill_and_crash`].
pub const IMPORT_USER: &str = "bob:secret";

/// JVM properties for an import test's ZooKeeper: TTL nodes on, the super
/// user, and how often containers and TTL nodes are expired.
pub fn import_jvm_props(container_check_ms: u64) -> Vec<String> {
    vec![
        "-Dzookeeper.extendedTypesEnabled=true".into(),
        format!("-Dznode.container.checkIntervalMs={container_check_ms}"),
        format!(
            "-Dzookeeper.DigestAuthenticationProvider.superDigest={}",
            zoocore_engine::acl::digest_of(IMPORT_SUPER)
        ),
    ]
}

/// Connects with a session timeout and the given digest identities.
pub fn connect_as(addr: SocketAddr, timeout_ms: i32, users: &[&str]) -> Client {
    let options = ConnectOptions {
        timeout_ms,
        io_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let mut client = Client::connect(addr, &options).expect("connect");
    for user in users {
        assert_eq!(client.add_auth("digest", user.as_bytes()).expect("auth"), 0);
    }
    client
}

/// A session with something for the admin words and commands to show:
/// `/w/e` ephemeral; data watches on `/w/a` (getData) and `/w/nope`
/// (exists); a child watch on `/w`.
pub fn watched_session(addr: SocketAddr) -> Client {
    let mut c = connect_as(addr, 10_000, &[]);
    for (path, flags) in [("/w", 0), ("/w/a", 0), ("/w/e", 1)] {
        let reply = c
            .call(&Request::Create(zoocore_net::records::CreateRequest {
                path: path.into(),
                data: Some(b"data".to_vec()),
                acl: vec![Acl::new(perms::ALL, "world", "anyone")],
                flags,
            }))
            .expect("create");
        assert_eq!(reply.header.err, 0, "create {path}");
    }
    let watch = |p: &str| zoocore_net::records::PathWatchRequest {
        path: p.into(),
        watch: true,
    };
    for request in [
        Request::GetData(watch("/w/a")),
        Request::Exists(watch("/w/nope")),
        Request::GetChildren(watch("/w")),
    ] {
        c.call(&request).expect("watching read");
    }
    c
}

/// Sends `requests` pipelined (at most 256 outstanding) and returns each
/// reply's error code and body, in order.
pub fn pipeline(client: &mut Client, requests: &[Request]) -> Vec<(i32, Response)> {
    const WINDOW: usize = 256;
    let mut out = Vec::with_capacity(requests.len());
    let mut outstanding = 0;
    for request in requests {
        if outstanding == WINDOW {
            let reply = client.recv().expect("reply");
            out.push((reply.header.err, reply.body));
            outstanding -= 1;
        }
        client.send(request).expect("send");
        outstanding += 1;
    }
    for _ in 0..outstanding {
        let reply = client.recv().expect("reply");
        out.push((reply.header.err, reply.body));
    }
    out
}

/// What [`fill_and_crash`] left behind.
pub struct Workload {
    /// A session still open when ZooKeeper was killed; it owns ephemerals.
    pub open_session: Client,
    /// Sessions closed by the client and by expiry; their ephemerals are gone.
    pub closed_session: i64,
    pub expired_session: i64,
    /// A parent of sequential nodes (some of them deleted).
    pub sequential_parent: &'static str,
}

/// Persistent nodes `/app/n<i>` created first, then updated and deleted at random.
const APP_NODES: usize = 3000;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn create(path: &str, data: Option<&[u8]>, acl: &[Acl], flags: i32) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: data.map(<[u8]>::to_vec),
        acl: acl.to_vec(),
        flags,
    })
}

fn set_data(path: &str, data: &[u8], version: i32) -> Request {
    Request::SetData(SetDataRequest {
        path: path.into(),
        data: Some(data.to_vec()),
        version,
    })
}

fn delete(path: &str, version: i32) -> Request {
    Request::Delete(DeleteRequest {
        path: path.into(),
        version,
    })
}

fn exists(client: &mut Client, path: &str) -> bool {
    let reply = client
        .call(&Request::Exists(PathWatchRequest {
            path: path.into(),
            watch: false,
        }))
        .expect("exists");
    reply.header.err == 0
}

/// Fills ZooKeeper (started with [`import_jvm_props`] and a low `snapCount`,
/// so it takes several fuzzy snapshots and rolls its log) with thousands of
/// txns of every kind, then SIGKILLs it while a client is still writing.
pub fn fill_and_crash(zk: &mut ZooKeeperProcess) -> Workload {
    let open = vec![Acl::new(perms::ALL, "world", "anyone")];
    let bob = zoocore_engine::acl::digest_of(IMPORT_USER);
    let guarded = vec![
        Acl::new(perms::ALL, "digest", &bob),
        Acl::new(perms::READ, "world", "anyone"),
    ];
    let private = vec![Acl::new(perms::ALL, "digest", &bob)];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut main = connect_as(zk.addr, 30_000, &[IMPORT_USER]);

    // Persistent nodes, some with null or large data, and a deep path.
    let mut requests = vec![create("/app", Some(b"app"), &open, 0)];
    for i in 0..APP_NODES {
        let data = match i % 97 {
            0 => None,
            1 => Some(vec![b'x'; 50_000]),
            _ => Some(format!("n{i}-{}", rng.below(1000)).into_bytes()),
        };
        requests.push(create(&format!("/app/n{i}"), data.as_deref(), &open, 0));
    }
    let mut deep = String::new();
    for part in ["deep", "a", "b", "c", "d", "e", "f"] {
        deep.push('/');
        deep.push_str(part);
        requests.push(create(&deep, Some(part.as_bytes()), &open, 0));
    }
    // ACLs: digest-owned nodes, some unreadable for everyone else.
    requests.push(create("/acl", None, &guarded, 0));
    for i in 0..100 {
        let acl = if i % 2 == 0 { &guarded } else { &private };
        requests.push(create(&format!("/acl/p{i}"), Some(b"secret"), acl, 0));
    }
    // Sequential nodes.
    requests.push(create("/seq", Some(b""), &open, 0));
    for _ in 0..400 {
        requests.push(create("/seq/job-", Some(b"job"), &open, 2));
    }
    // Containers, with children, some emptied later (and then expired).
    for i in 0..20 {
        requests.push(create(&format!("/cont{i}"), Some(b"c"), &open, 4));
        for k in 0..3 {
            requests.push(create(&format!("/cont{i}/k{k}"), Some(b"k"), &open, 0));
        }
    }
    // TTL nodes (some sequential), half with a child; the rest expire.
    for i in 0..20 {
        let (flags, path) = if i % 4 == 0 {
            (6, format!("/ttl{i}-"))
        } else {
            (5, format!("/ttl{i}"))
        };
        requests.push(Request::CreateTtl(CreateTtlRequest {
            path: path.clone(),
            data: Some(b"t".to_vec()),
            acl: open.clone(),
            flags,
            ttl: 300 + i as i64 * 10,
        }));
        if i % 2 == 1 {
            requests.push(create(&format!("{path}/keep"), None, &open, 0));
        }
    }
    let replies = pipeline(&mut main, &requests);
    let sequential: Vec<String> = replies
        .iter()
        .filter_map(|(_, body)| match body {
            Response::Create(p) if p.starts_with("/seq/job-") => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sequential.len(), 400);

    // Ephemerals of three sessions: one stays open, one closes, one expires.
    let mut open_session = connect_as(zk.addr, 40_000, &[]);
    let mut closing = connect_as(zk.addr, 30_000, &[]);
    let mut expiring = connect_as(zk.addr, 4_000, &[]);
    pipeline(&mut main, &[create("/eph", None, &open, 0)]);
    let mut eph = Vec::new();
    for i in 0..200 {
        eph.push(create(&format!("/eph/e{i}"), Some(b"e"), &open, 1));
    }
    for _ in 0..50 {
        eph.push(create("/eph/es-", Some(b"es"), &open, 3));
    }
    pipeline(&mut open_session, &eph);
    let closing_eph: Vec<Request> = (0..50)
        .map(|i| create(&format!("/eph/f{i}"), Some(b"f"), &open, 1))
        .collect();
    pipeline(&mut closing, &closing_eph);
    let expiring_eph: Vec<Request> = (0..50)
        .map(|i| create(&format!("/eph/g{i}"), Some(b"g"), &open, 1))
        .collect();
    pipeline(&mut expiring, &expiring_eph);
    let closed_session = closing.session_id();
    let expired_session = expiring.session_id();
    closing.close().expect("close session");
    drop(expiring); // no closeSession: ZooKeeper expires it

    // Updates while the expiring session times out: data, versions, ACLs,
    // deletes (some failing), multis (some failing), emptied containers.
    let started = Instant::now();
    let mut round = 0;
    while exists(&mut main, "/eph/g0") || round < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "session did not expire"
        );
        let mut requests = Vec::new();
        for _ in 0..600 {
            let i = rng.below(APP_NODES);
            let version = if rng.below(10) == 0 { 7 } else { -1 };
            let data = format!("v{round}-{}", rng.below(100_000));
            requests.push(set_data(&format!("/app/n{i}"), data.as_bytes(), version));
        }
        for _ in 0..60 {
            requests.push(delete(&format!("/app/n{}", rng.below(APP_NODES)), -1));
        }
        for _ in 0..20 {
            let p = &sequential[rng.below(sequential.len())];
            requests.push(delete(p, -1));
        }
        for _ in 0..20 {
            let i = rng.below(100);
            let acl = if rng.below(2) == 0 {
                &guarded
            } else {
                &private
            };
            requests.push(Request::SetAcl(SetAclRequest {
                path: format!("/acl/p{i}"),
                acl: acl.clone(),
                version: -1,
            }));
        }
        for m in 0..30 {
            let path = format!("/app/m{round}-{m}");
            let check_version = if m % 3 == 0 { 99 } else { -1 };
            requests.push(Request::Multi(vec![
                create(&path, Some(b"m"), &open, 0),
                set_data(&path, b"m2", 0),
                Request::Check(CheckVersionRequest {
                    path: "/app".into(),
                    version: check_version,
                }),
                create(&format!("{path}/child"), None, &private, 0),
                delete(&format!("/app/n{}", rng.below(APP_NODES)), -1),
            ]));
        }
        if round < 10 {
            requests.push(delete(&format!("/cont{round}/k0"), -1));
            requests.push(delete(&format!("/cont{round}/k1"), -1));
            requests.push(delete(&format!("/cont{round}/k2"), -1));
        }
        requests.push(create("/seq/job-", Some(b"late"), &open, 2));
        pipeline(&mut main, &requests);
        round += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!exists(&mut main, "/eph/f0"), "closed session's ephemerals");

    // Crash under load: a writer pipelines until the connection dies.
    let addr = zk.addr;
    let writer = std::thread::spawn(move || {
        let Ok(mut client) = Client::connect(addr, &ConnectOptions::default()) else {
            return;
        };
        for i in 0.. {
            let request = set_data(
                &format!("/app/n{}", i % APP_NODES),
                format!("w{i}").as_bytes(),
                -1,
            );
            if client.send(&request).is_err() || (i >= 128 && client.recv().is_err()) {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    zk.kill();
    writer.join().expect("writer");
    Workload {
        open_session,
        closed_session,
        expired_session,
        sequential_parent: "/seq",
    }
}

/// One node as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireNode {
    pub data: Option<Vec<u8>>,
    pub stat: Stat,
    pub acl: Vec<Acl>,
}

/// Every node of a server's tree (getChildren from the root, then getData
/// and getACL of each), read as the super user of [`import_jvm_props`].
pub fn dump_tree(addr: SocketAddr) -> BTreeMap<String, WireNode> {
    let mut client = connect_as(addr, 30_000, &[IMPORT_SUPER]);
    let mut paths = vec!["/".to_owned()];
    let mut level = vec!["/".to_owned()];
    while !level.is_empty() {
        let requests: Vec<Request> = level
            .iter()
            .map(|p| {
                Request::GetChildren(PathWatchRequest {
                    path: p.clone(),
                    watch: false,
                })
            })
            .collect();
        let mut next = Vec::new();
        for (parent, (err, body)) in level.iter().zip(pipeline(&mut client, &requests)) {
            let Response::Children(children) = body else {
                panic!("getChildren {parent}: error {err}");
            };
            for child in children {
                let p = if parent == "/" {
                    format!("/{child}")
                } else {
                    format!("{parent}/{child}")
                };
                next.push(p);
            }
        }
        paths.extend(next.iter().cloned());
        level = next;
    }
    let mut requests = Vec::new();
    for p in &paths {
        requests.push(Request::GetData(PathWatchRequest {
            path: p.clone(),
            watch: false,
        }));
        requests.push(Request::GetAcl(PathRequest { path: p.clone() }));
    }
    let replies = pipeline(&mut client, &requests);
    let mut out = BTreeMap::new();
    for (p, pair) in paths.into_iter().zip(replies.chunks(2)) {
        let (Response::GetData(data), Response::GetAcl(acl)) = (&pair[0].1, &pair[1].1) else {
            panic!("reading {p}: {pair:?}");
        };
        assert_eq!(data.stat, acl.stat, "{p} changed while read");
        out.insert(
            p,
            WireNode {
                data: data.data.clone(),
                stat: data.stat,
                acl: acl.acl.clone(),
            },
        );
    }
    out
}

/// The zxid a server reports in `srvr`.
pub fn server_zxid(addr: SocketAddr) -> i64 {
    let answer = four_letter_word(addr, "srvr").expect("srvr");
    let line = answer
        .lines()
        .find_map(|l| l.strip_prefix("Zxid: "))
        .unwrap_or_else(|| panic!("no Zxid in {answer}"));
    i64::from_str_radix(line.trim().trim_start_matches("0x"), 16).expect("hex zxid")
}

/// An HTTP GET on loopback: the status line and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}
