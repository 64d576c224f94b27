//! Curator's ensemble tracker (Debian's libcurator-framework-java, the
//! program in `server/tests/curator/`): a client given one member's
//! address learns the ensemble from `/zookeeper/config` and follows the
//! reconfigs that add and remove a member, against a zoocore ensemble and
//! an Apache ZooKeeper ensemble, with the same output from both.

use std::path::{Path, PathBuf};
use std::process::Command;

use zoocore_testkit::ensemble::Ensemble;
use zoocore_testkit::zk::{free_port, repo_root, zookeeper_classpath};

const SUPER: &str = "super:curator";

/// ZooKeeper's classpath plus Curator's jars and what they need.
fn classpath() -> String {
    let extra = ["curator-framework", "curator-client", "guava"]
        .map(|jar| format!("/usr/share/java/{jar}.jar"));
    for jar in &extra {
        assert!(
            Path::new(jar).is_file(),
            "{jar} is missing: run scripts/install-deps.sh"
        );
    }
    format!("{}:{}", zookeeper_classpath(), extra.join(":"))
}

/// Compiles the check into its own directory; returns it.
fn compile(classpath: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("zoocore-curator-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("class dir");
    let source = repo_root().join("server/tests/curator/EnsembleTrackerCheck.java");
    let status = Command::new("javac")
        .arg("-d")
        .arg(&out)
        .args(["-cp", classpath])
        .arg(&source)
        .status()
        .expect("run javac (scripts/install-deps.sh installs OpenJDK)");
    assert!(status.success(), "javac {}", source.display());
    out
}

/// What the check printed against `e`, and what it should have.
fn tracked(e: &Ensemble, classes: &Path, classpath: &str) -> (String, String) {
    let lines: Vec<String> = e
        .members
        .iter()
        .map(|m| {
            format!(
                "server.{}=127.0.0.1:{}:{}:participant;127.0.0.1:{}",
                m.id,
                m.peer_port,
                m.election_port,
                m.client.port()
            )
        })
        .collect();
    // Nobody listens there: connections to it are refused at once.
    let observer_client = free_port();
    let observer = format!(
        "server.9=127.0.0.1:{}:{}:observer;127.0.0.1:{observer_client}",
        free_port(),
        free_port()
    );
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!("{}:{classpath}", classes.display()))
        .arg(format!(
            "-Dlog4j.configuration=file:{}",
            repo_root().join("scripts/zk-log4j.properties").display()
        ))
        .arg("EnsembleTrackerCheck")
        .arg(e.members[0].client.to_string())
        .arg(SUPER)
        .arg(lines.join(","))
        .arg(&observer)
        .output()
        .expect("run java");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the Curator check failed: {printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut clients: Vec<String> = e.members.iter().map(|m| m.client.to_string()).collect();
    clients.sort();
    let three = clients.join(",");
    clients.push(format!("127.0.0.1:{observer_client}"));
    clients.sort();
    let four = clients.join(",");
    (
        printed,
        format!("tracked {three}\nadded {four}\nremoved {three}\n"),
    )
}

#[test]
fn curator_s_ensemble_tracker_follows_reconfigs_as_on_zookeeper() {
    let classpath = classpath();
    let classes = compile(&classpath);
    let keys = format!(
        "reconfigEnabled=true\nDigestAuthenticationProvider.superDigest={}\n",
        zoocore_engine::acl::digest_of(SUPER)
    );
    let zookeeper = Ensemble::start_zookeeper(3, &keys, &[]);
    let (printed, expected) = tracked(&zookeeper, &classes, &classpath);
    assert_eq!(printed, expected, "Apache ZooKeeper");
    drop(zookeeper);
    let zoocore = Ensemble::start(Path::new(env!("CARGO_BIN_EXE_zoocore")), 3, &keys);
    let (printed, expected) = tracked(&zoocore, &classes, &classpath);
    assert_eq!(printed, expected, "zoocore");
    let _ = std::fs::remove_dir_all(&classes);
}
