//! The container image's entrypoint (scripts/docker-entrypoint.sh), run
//! without Docker: from the official ZooKeeper image's environment
//! variables it must write a zoo.cfg and myid that start a standalone
//! server and a three-member ensemble, and leave a zoo.cfg or myid that
//! already exists alone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::consts::{perms, CreateMode};
use zoocore_net::records::{CreateRequest, PathRequest, PathWatchRequest};
use zoocore_net::{Acl, Request, Response};
use zoocore_testkit::zk::{four_letter_word, free_port, repo_root, wait_until_serving};

fn entrypoint() -> PathBuf {
    repo_root().join("scripts/docker-entrypoint.sh")
}

/// One container's worth: its own conf and data dirs under `root`, the
/// entrypoint run with `env` and the container's defaults otherwise.
struct Container {
    root: PathBuf,
    server: Option<Child>,
}

impl Container {
    fn new(name: &str) -> Container {
        let root = std::env::temp_dir().join(format!(
            "zoocore-docker-{}-{name}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&root).expect("create container dir");
        Container { root, server: None }
    }

    fn conf(&self) -> PathBuf {
        self.root.join("conf/zoo.cfg")
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The entrypoint with these variables and `command` as its arguments.
    fn command(&self, env: &[(&str, String)], command: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(entrypoint())
            .args(command)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ZOO_CONF_DIR", self.root.join("conf"))
            .env("ZOO_DATA_DIR", self.data())
            .env("ZOO_DATA_LOG_DIR", self.root.join("datalog"))
            // No such user here: the script must not try to drop to it.
            .env("ZOO_USER", "zoocore-test-no-such-user");
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// Runs the entrypoint with `true` as the server: only the files.
    fn configure(&self, env: &[(&str, String)]) {
        let status = self
            .command(env, &["true"])
            .status()
            .expect("run the entrypoint");
        assert!(status.success(), "entrypoint failed: {status}");
    }

    /// Runs the entrypoint as the image does, ending in zoocore.
    fn spawn(&self, env: &[(&str, String)]) -> Child {
        let binary = env!("CARGO_BIN_EXE_zoocore");
        let conf = self.conf();
        let log = std::fs::File::create(self.root.join("server.log")).expect("create log");
        self.command(
            env,
            &[binary, "--config", conf.to_str().expect("utf-8 path")],
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
        .expect("start the entrypoint")
    }

    /// As `spawn`; waits until it answers at `client`.
    fn start(&mut self, env: &[(&str, String)], client: SocketAddr) {
        let mut child = self.spawn(env);
        wait_until_serving(client, &mut child, "zoocore (entrypoint)", &self.root);
        self.server = Some(child);
    }

    fn cfg_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.conf())
            .expect("zoo.cfg written")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn loopback(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr, &ConnectOptions::default()).expect("connect")
}

fn create(client: &mut Client, path: &str, data: &[u8]) {
    let reply = client
        .call(&Request::Create(CreateRequest {
            path: path.into(),
            data: Some(data.to_vec()),
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
            flags: CreateMode::Persistent as i32,
        }))
        .expect("create");
    assert_eq!(reply.header.err, 0, "create {path}");
}

fn data_of(client: &mut Client, path: &str) -> Vec<u8> {
    let reply = client
        .call(&Request::GetData(PathWatchRequest {
            path: path.into(),
            watch: false,
        }))
        .expect("getData");
    match reply.body {
        Response::GetData(r) => r.data.unwrap_or_default(),
        _ => panic!("getData {path}: error {}", reply.header.err),
    }
}

fn mode(addr: SocketAddr) -> Option<String> {
    let answer = four_letter_word(addr, "srvr").ok()?;
    answer
        .lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(str::to_owned)
}

#[test]
fn the_entrypoint_writes_the_official_images_zoo_cfg_and_keeps_an_existing_one() {
    let c = Container::new("defaults");
    c.configure(&[]);
    let lines = c.cfg_lines();
    for expected in [
        format!("dataDir={}", c.data().display()),
        format!("dataLogDir={}", c.root.join("datalog").display()),
        "tickTime=2000".into(),
        "initLimit=5".into(),
        "syncLimit=2".into(),
        "autopurge.snapRetainCount=3".into(),
        "autopurge.purgeInterval=0".into(),
        "maxClientCnxns=60".into(),
        "standaloneEnabled=true".into(),
        "admin.enableServer=true".into(),
        "server.1=localhost:2888:3888;2181".into(),
    ] {
        assert!(
            lines.contains(&expected),
            "{expected:?} missing from {lines:?}"
        );
    }
    assert!(!lines.iter().any(|l| l.starts_with("4lw.")), "{lines:?}");
    assert_eq!(
        std::fs::read_to_string(c.data().join("myid")).expect("myid"),
        "1\n"
    );

    // A second start (a restarted container) keeps what is there.
    std::fs::write(c.conf(), "tickTime=1234\n").expect("overwrite zoo.cfg");
    std::fs::write(c.data().join("myid"), "7\n").expect("overwrite myid");
    c.configure(&[("ZOO_MY_ID", "2".into()), ("ZOO_TICK_TIME", "999".into())]);
    assert_eq!(c.cfg_lines(), vec!["tickTime=1234".to_owned()]);
    assert_eq!(
        std::fs::read_to_string(c.data().join("myid")).expect("myid"),
        "7\n"
    );
}

#[test]
fn a_standalone_container_serves_on_the_port_of_its_server_line() {
    let (client, admin) = (free_port(), free_port());
    let mut c = Container::new("standalone");
    let env = [
        ("ZOO_TICK_TIME", "500".to_owned()),
        ("ZOO_4LW_COMMANDS_WHITELIST", "ruok, srvr, conf".to_owned()),
        (
            "ZOO_SERVERS",
            format!(
                "server.1=127.0.0.1:{}:{};127.0.0.1:{client}",
                free_port(),
                free_port()
            ),
        ),
        (
            "ZOO_CFG_EXTRA",
            format!("admin.serverAddress=127.0.0.1 admin.serverPort={admin}"),
        ),
    ];
    c.start(&env, loopback(client));
    assert_eq!(mode(loopback(client)).as_deref(), Some("standalone"));
    let conf = four_letter_word(loopback(client), "conf").expect("conf");
    assert!(conf.contains("tickTime=500"), "{conf}");
    // ZOO_CFG_EXTRA's lines took effect: the admin server is where they say.
    assert!(
        std::net::TcpStream::connect(loopback(admin)).is_ok(),
        "no admin server on {admin}"
    );
    let mut zk = connect(loopback(client));
    create(&mut zk, "/from-the-container", b"hello");
    assert_eq!(data_of(&mut zk, "/from-the-container"), b"hello");
}

#[test]
fn three_containers_from_the_same_zoo_servers_form_an_ensemble() {
    let ports: Vec<(u16, u16, u16)> = (0..3)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let servers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (client, peer, election))| {
            format!("server.{}=127.0.0.1:{peer}:{election};{client}", i + 1)
        })
        .collect();
    let servers = servers.join(" ");
    let mut containers = Vec::new();
    // The members wait for each other's votes, so each is started and then
    // waited for together.
    let mut children = Vec::new();
    for (i, (client, ..)) in ports.iter().enumerate() {
        let c = Container::new(&format!("member-{}", i + 1));
        let env = [
            ("ZOO_MY_ID", (i + 1).to_string()),
            ("ZOO_SERVERS", servers.clone()),
            ("ZOO_ADMINSERVER_ENABLED", "false".to_owned()),
            ("ZOO_4LW_COMMANDS_WHITELIST", "*".to_owned()),
        ];
        children.push((loopback(*client), c.spawn(&env)));
        containers.push(c);
    }
    for ((addr, mut child), c) in children.into_iter().zip(containers.iter_mut()) {
        wait_until_serving(addr, &mut child, "zoocore member (entrypoint)", &c.root);
        c.server = Some(child);
    }
    for (i, c) in containers.iter().enumerate() {
        let myid = std::fs::read_to_string(c.data().join("myid")).expect("myid");
        assert_eq!(myid.trim(), (i + 1).to_string());
    }
    let addrs: Vec<SocketAddr> = ports.iter().map(|(client, ..)| loopback(*client)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let modes = loop {
        let modes: Vec<Option<String>> = addrs.iter().map(|a| mode(*a)).collect();
        let leaders = modes
            .iter()
            .filter(|m| m.as_deref() == Some("leader"))
            .count();
        let followers = modes
            .iter()
            .filter(|m| m.as_deref() == Some("follower"))
            .count();
        if (leaders, followers) == (1, 2) {
            break modes;
        }
        assert!(
            Instant::now() < deadline,
            "no leader and two followers within 30 s: {modes:?}; logs under {}",
            std::env::temp_dir().display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // A write through one member is read back through each of the others.
    let follower = modes
        .iter()
        .position(|m| m.as_deref() == Some("follower"))
        .expect("a follower");
    create(&mut connect(addrs[follower]), "/ensemble", b"replicated");
    for addr in &addrs {
        let mut zk = connect(*addr);
        let reply = zk
            .call(&Request::Sync(PathRequest {
                path: "/ensemble".into(),
            }))
            .expect("sync");
        assert_eq!(reply.header.err, 0, "sync through {addr}");
        assert_eq!(
            data_of(&mut zk, "/ensemble"),
            b"replicated",
            "through {addr}"
        );
    }
}
