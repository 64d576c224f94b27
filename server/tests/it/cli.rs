//! `zoocore cli`, scripted and interactive. Its output is compared with
//! Debian's `zkCli.sh` on the same server, and the same script runs
//! against zoocore and Apache ZooKeeper; one test drives the interactive
//! shell through a pseudo-terminal.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zoocore_testkit::zk::{free_port, ZooKeeperProcess};
use zoocore_testkit::zoocore::ZoocoreProcess;

fn zoocore() -> ZoocoreProcess {
    ZoocoreProcess::start(Path::new(env!("CARGO_BIN_EXE_zoocore")), "")
}

/// `zoocore cli -server ADDR args...`: exit code, stdout, stderr.
fn cli(addr: SocketAddr, args: &[&str]) -> (i32, String, String) {
    cli_with_flags(addr, args, "")
}

/// As `cli`, with `CLIENT_JVMFLAGS` set to `flags`, as zkCli.sh is given them.
fn cli_with_flags(addr: SocketAddr, args: &[&str], flags: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zoocore"))
        .args(["cli", "-server", &addr.to_string()])
        .args(args)
        .env("CLIENT_JVMFLAGS", flags)
        .env_remove("JVMFLAGS")
        .stdin(Stdio::null())
        .output()
        .expect("run zoocore cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// zkCli.sh's answer to one command, without its connection chatter.
fn zkcli(addr: SocketAddr, command: &[&str]) -> String {
    let out = Command::new("/usr/share/zookeeper/bin/zkCli.sh")
        .args(["-server", &addr.to_string()])
        .args(command)
        .stdin(Stdio::null())
        .output()
        .expect("run zkCli.sh (scripts/install-deps.sh installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .filter(|l| {
            !(l.is_empty()
                || l.starts_with("SLF4J")
                || l.starts_with("log4j")
                || l.starts_with("Connecting to")
                || l.starts_with("WATCHER::")
                || l.contains("type:None"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn scripted_commands_exit_codes_and_output() {
    let server = zoocore();
    let (code, out, err) = cli(
        server.addr,
        &[
            "-c",
            "create /a hello; create -e /a/e; create -s /a/s x; set /a v2; get /a; ls /a; sync /a",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "Created /a\nCreated /a/e\nCreated /a/s0000000001\nv2\n[e, s0000000001]\nSync is OK\n"
    );
    // The server refuses: exit 1, with zkCli's words, and later commands do not run.
    let (code, out, err) = cli(server.addr, &["-c", "get /missing; create /never"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "Node does not exist: /missing\n");
    assert_eq!(
        cli(server.addr, &["stat", "/never"]).0,
        1,
        "the script stopped at the failure"
    );
    let (code, _, err) = cli(server.addr, &["delete", "/a"]);
    assert_eq!((code, err.as_str()), (1, "Node not empty: /a\n"));
    let (code, _, err) = cli(server.addr, &["set", "-v", "7", "/a", "x"]);
    assert_eq!((code, err.as_str()), (1, "version No is not valid : /a\n"));
    // Malformed: exit 2. Nobody listening: exit 3.
    assert_eq!(cli(server.addr, &["frobnicate"]).0, 2);
    assert_eq!(cli(server.addr, &["create", "-t"]).0, 2);
    let closed: SocketAddr = ([127, 0, 0, 1], zoocore_testkit::zk::free_port()).into();
    assert_eq!(cli(closed, &["ls", "/"]).0, 3);
    // ACLs and auth, TTL and container nodes, deleteall.
    let (code, out, err) = cli(
        server.addr,
        &["-c", "addauth digest u:p; create /secret s auth::cdrwa; getAcl /secret; create -t 60000 /ttl t; create -c /box; deleteall /a; ls /"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("'digest,'u:") && out.contains("\n: cdrwa\n"),
        "{out}"
    );
    assert!(out.ends_with("[box, secret, ttl, zookeeper]\n"), "{out}");
    let (code, _, err) = cli(server.addr, &["get", "/secret"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "Insufficient permission : /secret\n")
    );
}

#[test]
fn output_matches_zkcli_on_the_same_server() {
    let server = zoocore();
    let (code, _, err) = cli(
        server.addr,
        &[
            "-c",
            "create /z data; create /z/a; create /z/b b; setAcl /z/b world:anyone:rw",
        ],
    );
    assert_eq!(code, 0, "{err}");
    for command in [
        &["get", "-s", "/z"][..],
        &["stat", "/z/b"],
        &["ls", "/z"],
        &["ls", "-R", "/z"],
        &["ls", "-s", "/z"],
        &["getAcl", "/z/b"],
        &["get", "/z/a"],
        &["getAllChildrenNumber", "/z"],
        &["get", "/nope"],
    ] {
        let (_, out, err) = cli(server.addr, command);
        assert_eq!(out + &err, zkcli(server.addr, command), "{command:?}");
    }
}

#[test]
fn the_same_script_runs_against_zoocore_and_zookeeper() {
    let zoocore = zoocore();
    let zk = ZooKeeperProcess::start(&[]);
    let script = "create /s one; create -s /s/q- x; create -s /s/q- y; ls /s; set /s two; get /s; \
                  getAcl /s; delete /s/q-0000000000; ls /s; deleteall /s; stat /s";
    let answers: Vec<(i32, String, String)> = [zoocore.addr, zk.addr]
        .iter()
        .map(|addr| cli(*addr, &["-c", script]))
        .collect();
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 1, "the last stat fails: {:?}", answers[0]);
    assert_eq!(answers[0].2, "Node does not exist: /s\n");
}

#[test]
fn tls_to_the_secure_port_of_zoocore_and_zookeeper() {
    let pki = zoocore_testkit::pki::Pki::new();
    pki.issue_client("/O=zoocore-tests/CN=cli");
    let (zc_port, zk_port) = (free_port(), free_port());
    let _zoocore =
        ZoocoreProcess::start(Path::new(env!("CARGO_BIN_EXE_zoocore")), &pki.keys(zc_port));
    let _zk = ZooKeeperProcess::start_with(
        &format!(
            "{}\nserverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
            pki.keys(zk_port)
        ),
        &[],
    );
    let flags = format!(
        "-Dzookeeper.client.secure=true -Dzookeeper.ssl.trustStore.location={} \
         -Dzookeeper.ssl.trustStore.type=PEM -Dzookeeper.ssl.keyStore.location={} \
         -Dzookeeper.ssl.keyStore.type=PEM",
        pki.0.join("ca.pem").display(),
        pki.0.join("client-store.pem").display()
    );
    let script = "create /t over-tls; get /t; getAcl /t; delete /t; ls /";
    let answers: Vec<(i32, String, String)> = [zc_port, zk_port]
        .iter()
        .map(|port| cli_with_flags(([127, 0, 0, 1], *port).into(), &["-c", script], &flags))
        .collect();
    assert_eq!(answers[0], answers[1], "zoocore, then ZooKeeper");
    assert_eq!(answers[0].0, 0, "{:?}", answers[0]);
    // Without TLS, the secure port answers nothing a client can use.
    let (code, _, _) = cli(([127, 0, 0, 1], zc_port).into(), &["ls", "/"]);
    assert_eq!(code, 3);
    // zkCli's own class with the Netty client and a PEM trust store, as
    // zkCli.sh runs it with those flags (Debian's zkCli.sh leaves two Netty
    // jars off its classpath, so the test starts the class itself).
    let zkcli_flags = format!(
        "-Dzookeeper.client.secure=true \
         -Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty \
         -Dzookeeper.ssl.trustStore.location={} -Dzookeeper.ssl.trustStore.type=PEM \
         -Dzookeeper.ssl.keyStore.location={} -Dzookeeper.ssl.keyStore.type=PEM",
        pki.0.join("ca.pem").display(),
        pki.0.join("client-store.pem").display()
    );
    let java: Vec<String> = [zc_port, zk_port]
        .iter()
        .map(|port| zkcli_java(([127, 0, 0, 1], *port).into(), &["ls", "/"], &zkcli_flags))
        .collect();
    assert_eq!(java[0], java[1], "zkCli over TLS: zoocore, then ZooKeeper");
    assert_eq!(java[0], "[zookeeper]\n");
}

/// zkCli.sh's class (`ZooKeeperMain`) started with ZooKeeper's classpath
/// and these JVM flags; its answer without the connection chatter.
fn zkcli_java(addr: SocketAddr, command: &[&str], flags: &str) -> String {
    let out = Command::new("java")
        .arg("-cp")
        .arg(zoocore_testkit::zk::zookeeper_classpath())
        .arg(format!(
            "-Dlog4j.configuration=file:{}",
            zoocore_testkit::zk::repo_root()
                .join("scripts/zk-log4j.properties")
                .display()
        ))
        .args(flags.split_whitespace())
        .arg("org.apache.zookeeper.ZooKeeperMain")
        .args(["-server", &addr.to_string()])
        .args(command)
        .stdin(Stdio::null())
        .output()
        .expect("run java (scripts/install-deps.sh installs it)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !(l.is_empty()
                || l.starts_with("Connecting to")
                || l.starts_with("WATCHER::")
                || l.contains("type:None"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

const SASL_PROVIDER: &str =
    "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider";

#[test]
fn sasl_from_the_jaas_client_section_against_zoocore_and_zookeeper() {
    let dir = std::env::temp_dir().join(format!("zoocore-cli-sasl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let jaas = |name: &str, password: &str| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "Server {{ org.apache.zookeeper.server.auth.DigestLoginModule required user_bob=\"bobsecret\"; }};\n\
                 Client {{ org.apache.zookeeper.server.auth.DigestLoginModule required username=\"bob\" password=\"{password}\"; }};\n"
            ),
        )
        .expect("write jaas");
        format!("-Djava.security.auth.login.config={}", path.display())
    };
    let good = jaas("good.conf", "bobsecret");
    let bad = jaas("bad.conf", "wrong");
    let zoocore = ZoocoreProcess::start(
        Path::new(env!("CARGO_BIN_EXE_zoocore")),
        &format!(
            "{SASL_PROVIDER}\nzoocore.jaasConfig={}",
            dir.join("good.conf").display()
        ),
    );
    let zk = ZooKeeperProcess::start_with(SASL_PROVIDER, std::slice::from_ref(&good));
    let script = "create /s secret sasl:bob:cdrwa; getAcl /s; get /s";
    let mut answers = Vec::new();
    for addr in [zoocore.addr, zk.addr] {
        let authed = cli_with_flags(addr, &["-c", script], &good);
        let anonymous = cli(addr, &["get", "/s"]);
        let refused = cli_with_flags(addr, &["ls", "/"], &bad);
        answers.push((authed, anonymous, refused));
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(answers[0], answers[1], "zoocore, then ZooKeeper");
    let (authed, anonymous, refused) = &answers[0];
    assert_eq!(
        authed,
        &(
            0,
            "Created /s\n'sasl,'bob\n: cdrwa\nsecret\n".into(),
            String::new()
        )
    );
    assert_eq!(anonymous.0, 1, "{anonymous:?}");
    assert_eq!(refused.0, 3, "{refused:?}");
    assert!(
        refused.2.contains("SASL authentication failed: AuthFailed"),
        "{refused:?}"
    );
}

/// A pseudo-terminal pair: (controller, terminal the child gets).
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut controller, mut terminal) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the given ints.
    let rc = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned here.
    unsafe {
        (
            OwnedFd::from_raw_fd(controller),
            OwnedFd::from_raw_fd(terminal),
        )
    }
}

#[test]
fn interactive_shell_through_a_pseudo_terminal() {
    let server = zoocore();
    let home = server.dir.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let (controller, terminal) = pty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_zoocore"))
        .args(["cli", "-server", &server.addr.to_string()])
        .env("HOME", &home)
        .env("TERM", "dumb")
        .stdin(Stdio::from(terminal.try_clone().expect("dup")))
        .stdout(Stdio::from(terminal.try_clone().expect("dup")))
        .stderr(Stdio::from(terminal))
        .spawn()
        .expect("start zoocore cli");
    let mut writer = std::fs::File::from(controller.try_clone().expect("dup"));
    let mut reader = std::fs::File::from(controller);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut expect = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !seen.contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(bytes) => seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!("{text:?} never came; the terminal showed:\n{seen}"),
            }
        }
        seen = seen
            .split_once(text)
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default();
    };
    expect("[zoocore");
    writer.write_all(b"create /tty hello\r").expect("type");
    expect("Created /tty");
    writer.write_all(b"get -w /tty\r").expect("type");
    expect("hello");
    writer.write_all(b"set /tty again\r").expect("type");
    expect("type:NodeDataChanged path:/tty");
    writer.write_all(b"get /missing\r").expect("type");
    expect("Node does not exist: /missing");
    writer.write_all(b"quit\r").expect("type");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the shell did not quit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "quit ends the shell cleanly: {status}");
    let history =
        std::fs::read_to_string(home.join(".zoocore_cli_history")).expect("history saved");
    assert!(history.contains("create /tty hello"), "{history}");
}

#[test]
fn config_and_reconfig_on_an_ensemble_print_what_zkcli_prints() {
    let super_user = "super:clitest";
    let keys = format!(
        "reconfigEnabled=true\nDigestAuthenticationProvider.superDigest={}\n",
        zoocore_engine::acl::digest_of(super_user)
    );
    let e = zoocore_testkit::ensemble::Ensemble::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_zoocore")),
        3,
        &keys,
    );
    let addr = e.members[0].client;
    let (code, out, _) = cli(addr, &["-c", "config -c"]);
    assert_eq!(code, 0);
    let clients: Vec<String> = e.members.iter().map(|m| m.client.to_string()).collect();
    assert_eq!(out, format!("0 {}\n", clients.join(",")));
    let line = "server.9=127.0.0.1:1:2:observer;127.0.0.1:3";
    let (code, _, err) = cli(addr, &["-c", &format!("reconfig -add {line}")]);
    assert_eq!(
        (code, err.trim()),
        (1, "Insufficient permission : /zookeeper/config")
    );
    let script = format!("addauth digest {super_user}; reconfig -s -add {line}; config");
    let (code, out, err) = cli(addr, &["-c", &script]);
    assert_eq!(code, 0, "{err}");
    let (committed, rest) = out
        .split_once("cZxid = ")
        .expect("reconfig -s prints the Stat");
    assert!(
        committed.starts_with("Committed new configuration:\nserver.1="),
        "{out}"
    );
    assert!(committed.contains(&format!("{line}\nversion=")), "{out}");
    // `config` prints the same configuration after the Stat.
    let config = rest.split_once("numChildren = 0\n").expect("stat end").1;
    assert_eq!(config, &committed["Committed new configuration:\n".len()..]);
}
