//! zoocore driven by Apache ZooKeeper's own command-line client, Debian's
//! `zkCli.sh`, one command per invocation (`zkCli.sh -server HOST:PORT cmd
//! args...` runs the command and exits). The same script runs against
//! Apache ZooKeeper 3.8.0 to show the expected output is ZooKeeper's.
//!
//! zkCli.sh comes with the Debian package `zookeeper`, which
//! `scripts/install-deps.sh` installs; without it these tests fail.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zoocore_testkit::zk::ZooKeeperProcess;
use zoocore_testkit::zoocore::ZoocoreProcess;

/// Where the Debian package puts it; `ZKCLI` overrides.
const ZKCLI_PATHS: &[&str] = &[
    "/usr/share/zookeeper/bin/zkCli.sh",
    "/usr/bin/zkCli.sh",
    "/opt/zookeeper/bin/zkCli.sh",
];
/// `echo -n alice:secret | openssl sha1 -binary | base64`
const ALICE_DIGEST: &str = "alice:aYXlLOpEooaV1cRAvUL1fp9Qt7E=";

fn zkcli() -> PathBuf {
    if let Some(path) = std::env::var_os("ZKCLI") {
        return PathBuf::from(path);
    }
    ZKCLI_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "zkCli.sh not found (looked in {ZKCLI_PATHS:?}; it comes with the Debian package \
                 `zookeeper`): run scripts/install-deps.sh"
            )
        })
}

struct Cli {
    script: PathBuf,
    server: String,
}

struct Run {
    command: String,
    code: Option<i32>,
    /// stdout and stderr, without slf4j's start-up noise
    out: String,
}

impl Run {
    fn lines(&self) -> impl Iterator<Item = &str> {
        self.out.lines().map(str::trim_end)
    }

    fn ok(&self) -> &Run {
        assert_eq!(
            self.code,
            Some(0),
            "`{}` failed:\n{}",
            self.command,
            self.out
        );
        self
    }

    fn failed(&self) -> &Run {
        assert!(
            self.code.is_some() && self.code != Some(0),
            "`{}` was expected to fail:\n{}",
            self.command,
            self.out
        );
        self
    }

    fn has(&self, text: &str) -> &Run {
        assert!(
            self.out.contains(text),
            "`{}`: expected {text:?} in its output:\n{}",
            self.command,
            self.out
        );
        self
    }

    fn has_not(&self, text: &str) -> &Run {
        assert!(
            !self.out.contains(text),
            "`{}`: unexpected {text:?} in its output:\n{}",
            self.command,
            self.out
        );
        self
    }

    fn has_line(&self, line: &str) -> &Run {
        assert!(
            self.lines().any(|l| l == line),
            "`{}`: expected the line {line:?} in its output:\n{}",
            self.command,
            self.out
        );
        self
    }

    /// The children printed by `ls`: the `[a, b]` line, sorted (ZooKeeper
    /// lists them in hash order).
    fn children(&self) -> Vec<String> {
        let line = self
            .lines()
            .find(|l| l.starts_with('[') && l.ends_with(']'))
            .unwrap_or_else(|| panic!("`{}`: no [children] line:\n{}", self.command, self.out));
        let inner = &line[1..line.len() - 1];
        let mut children: Vec<String> = inner
            .split(", ")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        children.sort();
        children
    }

    /// A `name = value` field of a printed Stat.
    fn stat(&self, name: &str) -> String {
        let prefix = format!("{name} = ");
        self.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("`{}`: no {name} in:\n{}", self.command, self.out))
            .to_owned()
    }

    fn stat_hex(&self, name: &str) -> i64 {
        let v = self.stat(name);
        let digits = v
            .strip_prefix("0x")
            .unwrap_or_else(|| panic!("{name} = {v} is not hex"));
        i64::from_str_radix(digits, 16).unwrap_or_else(|_| panic!("{name} = {v} is not hex"))
    }
}

impl Cli {
    fn new(addr: SocketAddr) -> Cli {
        Cli {
            script: zkcli(),
            server: addr.to_string(),
        }
    }

    /// `zkCli.sh -server ADDR args...`, killed after 60 s.
    fn run(&self, args: &[&str]) -> Run {
        let command = args.join(" ");
        let mut child = Command::new(&self.script)
            .arg("-server")
            .arg(&self.server)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; run scripts/install-deps.sh",
                    self.script.display()
                )
            });
        let readers = [
            read_all(child.stdout.take().expect("stdout")),
            read_all(child.stderr.take().expect("stderr")),
        ];
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for zkCli.sh") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`zkCli.sh -server {} {command}` did not finish within 60 s",
                    self.server
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out: String = readers
            .into_iter()
            .map(|r| r.join().expect("reader thread"))
            .collect::<Vec<_>>()
            .join("\n");
        let out = out
            .lines()
            .filter(|l| !l.starts_with("SLF4J:"))
            .collect::<Vec<_>>()
            .join("\n");
        let run = Run {
            command,
            code: status.code(),
            out,
        };
        run.has("state:SyncConnected");
        run
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = r.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The whole session of commands, each a separate zkCli.sh run.
fn script(addr: SocketAddr) {
    let cli = Cli::new(addr);

    // a fresh server
    assert_eq!(
        cli.run(&["ls", "/"]).ok().children(),
        strings(&["zookeeper"])
    );

    // create, then create again
    cli.run(&["create", "/x", "data"])
        .ok()
        .has_line("Created /x");
    cli.run(&["create", "/x", "other"])
        .failed()
        .has("Node already exists: /x");
    cli.run(&["create", "/missing/x", "d"])
        .failed()
        .has("Node does not exist: /missing/x");
    assert_eq!(
        cli.run(&["ls", "/"]).ok().children(),
        strings(&["x", "zookeeper"])
    );

    // get, get -s, stat
    cli.run(&["get", "/x"]).ok().has_line("data");
    let created = cli.run(&["stat", "/x"]);
    created.ok();
    let czxid = created.stat_hex("cZxid");
    assert!(czxid > 0);
    assert_eq!(created.stat_hex("mZxid"), czxid);
    assert_eq!(created.stat_hex("pZxid"), czxid);
    assert_eq!(created.stat("dataVersion"), "0");
    assert_eq!(created.stat("cversion"), "0");
    assert_eq!(created.stat("aclVersion"), "0");
    assert_eq!(created.stat("ephemeralOwner"), "0x0");
    assert_eq!(created.stat("dataLength"), "4");
    assert_eq!(created.stat("numChildren"), "0");
    assert_eq!(created.stat("ctime"), created.stat("mtime"));

    // set, and set with a version
    cli.run(&["set", "/x", "new"]).ok();
    cli.run(&["get", "/x"]).ok().has_line("new").has_not("data");
    let after_set = cli.run(&["get", "-s", "/x"]);
    after_set.ok().has_line("new");
    assert_eq!(after_set.stat("dataVersion"), "1");
    assert_eq!(after_set.stat("dataLength"), "3");
    assert_eq!(after_set.stat_hex("cZxid"), czxid);
    assert!(after_set.stat_hex("mZxid") > czxid);
    assert_eq!(after_set.stat("ctime"), created.stat("ctime"));
    cli.run(&["set", "-v", "0", "/x", "stale"])
        .failed()
        .has("version No is not valid : /x");
    cli.run(&["set", "-v", "1", "/x", "newer"]).ok();
    let stat = cli.run(&["stat", "/x"]);
    stat.ok();
    assert_eq!(stat.stat("dataVersion"), "2");
    assert_eq!(stat.stat("dataLength"), "5");
    cli.run(&["get", "/missing"])
        .failed()
        .has("Node does not exist: /missing");
    cli.run(&["stat", "/missing"])
        .failed()
        .has("Node does not exist: /missing");
    cli.run(&["sync", "/x"]).ok().has("Sync is OK");

    // a subtree: ls, ls -R, getAllChildrenNumber, delete refused, deleteall
    cli.run(&["create", "/t"]).ok().has_line("Created /t");
    cli.run(&["create", "/t/a", "1"]).ok();
    cli.run(&["create", "/t/a/b", "2"]).ok();
    cli.run(&["create", "/t/c", "3"]).ok();
    assert_eq!(cli.run(&["ls", "/t"]).ok().children(), strings(&["a", "c"]));
    let tree = cli.run(&["ls", "-R", "/t"]);
    tree.ok();
    for path in ["/t", "/t/a", "/t/c", "/t/a/b"] {
        tree.has_line(path);
    }
    cli.run(&["getAllChildrenNumber", "/t"]).ok().has_line("3");
    let t = cli.run(&["stat", "/t"]);
    t.ok();
    assert_eq!(t.stat("numChildren"), "2");
    assert_eq!(t.stat("cversion"), "2");
    assert_eq!(t.stat("dataLength"), "0");
    cli.run(&["delete", "/t"])
        .failed()
        .has("Node not empty: /t");
    cli.run(&["delete", "/t/c"]).ok();
    let t = cli.run(&["stat", "/t"]);
    assert_eq!(
        (t.stat("numChildren"), t.stat("cversion")),
        ("1".into(), "3".into())
    );
    cli.run(&["deleteall", "/t"]).ok();
    cli.run(&["ls", "/t"])
        .failed()
        .has("Node does not exist: /t");
    assert_eq!(
        cli.run(&["ls", "/"]).ok().children(),
        strings(&["x", "zookeeper"])
    );

    // sequential, ephemeral, container, TTL
    let seq = cli.run(&["create", "-s", "/seq-", "s"]);
    seq.ok();
    let name = seq
        .lines()
        .find_map(|l| l.strip_prefix("Created /seq-"))
        .unwrap_or_else(|| panic!("no sequential name in:\n{}", seq.out))
        .to_owned();
    assert!(
        name.len() == 10 && name.bytes().all(|b| b.is_ascii_digit()),
        "{name}"
    );
    cli.run(&["get", &format!("/seq-{name}")])
        .ok()
        .has_line("s");
    cli.run(&["create", "-e", "/eph", "e"])
        .ok()
        .has_line("Created /eph");
    // zkCli exits without closing its session, so the ephemeral stays until
    // that session expires (30 s)
    let eph = cli.run(&["stat", "/eph"]);
    assert_ne!(eph.ok().stat_hex("ephemeralOwner"), 0);
    cli.run(&["create", "-c", "/cont"])
        .ok()
        .has_line("Created /cont");
    cli.run(&["create", "-t", "3600000", "/ttl", "t"])
        .ok()
        .has_line("Created /ttl");
    let ttl = cli.run(&["stat", "/ttl"]);
    assert_eq!(ttl.ok().stat("ephemeralOwner"), "0x0");
    assert_eq!(
        cli.run(&["ls", "/"]).ok().children(),
        strings(&[
            "cont",
            "eph",
            &format!("seq-{name}"),
            "ttl",
            "x",
            "zookeeper"
        ])
    );

    // ACLs
    cli.run(&["getAcl", "/x"])
        .ok()
        .has_line("'world,'anyone")
        .has_line(": cdrwa");
    let acl = format!("digest:{ALICE_DIGEST}:cdrwa");
    cli.run(&["create", "/secret", "hidden", &acl])
        .ok()
        .has_line("Created /secret");
    cli.run(&["getAcl", "/secret"])
        .failed()
        .has("Insufficient permission : /secret");
    cli.run(&["get", "/secret"])
        .failed()
        .has("Insufficient permission : /secret")
        .has_not("hidden");
    cli.run(&["setAcl", "/x", "world:anyone:r"]).ok();
    cli.run(&["getAcl", "/x"])
        .ok()
        .has_line("'world,'anyone")
        .has_line(": r");
    cli.run(&["set", "/x", "denied"])
        .failed()
        .has("Insufficient permission : /x");
    cli.run(&["whoami"]).ok().has_line("ip: 127.0.0.1");

    // delete, with a version
    cli.run(&["delete", "-v", "0", "/x"])
        .failed()
        .has("version No is not valid : /x");
    cli.run(&["delete", "-v", "2", "/x"]).ok();
    cli.run(&["delete", "/x"])
        .failed()
        .has("Node does not exist: /x");
    cli.run(&["delete", "/secret"]).ok();
    assert_eq!(
        cli.run(&["ls", "/"]).ok().children(),
        strings(&["cont", "eph", &format!("seq-{name}"), "ttl", "zookeeper"])
    );
}

#[test]
fn zkcli_zoocore() {
    let server = ZoocoreProcess::start(
        Path::new(env!("CARGO_BIN_EXE_zoocore")),
        "extendedTypesEnabled=true",
    );
    let result = std::panic::catch_unwind(|| script(server.addr));
    if let Err(panic) = result {
        eprintln!(
            "---- zoocore log ----\n{}---- end of zoocore log ----",
            server.log()
        );
        std::panic::resume_unwind(panic);
    }
}

/// The same script through a follower of a 3-member zoocore ensemble: its
/// writes go to the leader and every command's session starts on the same
/// member, so one command sees the last one's writes as on one server.
#[test]
fn zkcli_zoocore_ensemble() {
    let ensemble =
        zoocore_testkit::ensemble::Ensemble::start(Path::new(env!("CARGO_BIN_EXE_zoocore")), 3, "");
    let leader = ensemble.wait_leader(Duration::from_secs(30));
    let follower = (1..=3).find(|&i| i != leader).expect("a follower");
    script(ensemble.member(follower).client);
}

/// The same through a follower of a 3-member Apache ZooKeeper ensemble.
#[test]
fn zkcli_zookeeper_ensemble() {
    let ensemble = zoocore_testkit::ensemble::Ensemble::start_zookeeper(
        3,
        "",
        &["-Dzookeeper.extendedTypesEnabled=true".to_owned()],
    );
    let leader = ensemble.wait_leader(Duration::from_secs(60));
    let follower = (1..=3).find(|&i| i != leader).expect("a follower");
    script(ensemble.member(follower).client);
}

#[test]
fn zkcli_zookeeper() {
    let server = ZooKeeperProcess::start(&["-Dzookeeper.extendedTypesEnabled=true".to_owned()]);
    script(server.addr);
}
