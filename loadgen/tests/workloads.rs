//! Every workload of the `loadgen` binary against zoocore and Apache
//! ZooKeeper at once (two targets in one invocation): each must complete
//! operations of the classes it measures, without errors, and report the
//! server's CPU per operation found through /proc.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use zoocore_testkit::pki::Pki;
use zoocore_testkit::zk::{free_port, ZooKeeperProcess};
use zoocore_testkit::zoocore::ZoocoreProcess;

/// The zoocore binary of this build profile, built if this test runs alone.
fn zoocore_binary() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_loadgen")).with_file_name("zoocore");
    if !binary.exists() {
        let release = binary.parent().is_some_and(|d| d.ends_with("release"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--bin", "zoocore"]);
        if release {
            build.arg("--release");
        }
        assert!(build.status().expect("cargo build").success());
    }
    binary
}

fn run(zoocore: &ZoocoreProcess, zk: &ZooKeeperProcess, args: &[&str]) -> Vec<Value> {
    let targets = [
        format!("zoocore={}", zoocore.addr),
        format!("zookeeper={}", zk.addr),
    ];
    run_targets(&zoocore.dir, &targets, args)
}

/// loadgen against `targets` (name=address), its JSON report in `dir`.
fn run_targets(dir: &Path, targets: &[String], args: &[&str]) -> Vec<Value> {
    let json = dir.join("loadgen.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    for target in targets {
        command.arg("--target").arg(target);
    }
    let out = command
        .args([
            "--seconds",
            "1",
            "--warmup",
            "0",
            "--quiet",
            "--znodes",
            "100",
        ])
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .expect("run loadgen");
    assert!(
        out.status.success(),
        "loadgen {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON written")).expect("valid JSON");
    report["results"].as_array().expect("results").clone()
}

/// Both targets measured exactly the `expected` classes, without errors.
fn assert_measured(results: &[Value], expected: &[&str], args: &[&str]) {
    assert_eq!(results.len(), 2, "{args:?}");
    for result in results {
        let name = result["target"].as_str().unwrap_or("?");
        assert_eq!(classes(result), *expected, "{name} {args:?}");
        assert!(
            result["errors"].as_object().is_some_and(|e| e.is_empty()),
            "{name} {args:?}: {}",
            result["errors"]
        );
    }
}

fn classes(result: &Value) -> Vec<String> {
    result["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .filter(|c| c["count"].as_u64().unwrap_or(0) > 0)
        .map(|c| c["class"].as_str().expect("name").to_owned())
        .collect()
}

#[test]
fn every_workload_runs_against_zoocore_and_zookeeper() {
    let zoocore = ZoocoreProcess::start(&zoocore_binary(), "");
    let zk = ZooKeeperProcess::start_with("maxClientCnxns=0\n", &[]);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--read-pct", "90", "--depth", "4", "--sessions", "8"],
            &["read", "write"],
        ),
        (&["--workload", "exists", "--sessions", "4"], &["read"]),
        (&["--workload", "children", "--sessions", "4"], &["read"]),
        (
            &[
                "--workload",
                "create-delete",
                "--sessions",
                "4",
                "--depth",
                "2",
            ],
            &["write"],
        ),
        (
            &[
                "--workload",
                "create-delete",
                "--create-mode",
                "ephemeral-sequential",
                "--sessions",
                "4",
            ],
            &["write"],
        ),
        (&["--workload", "multi", "--sessions", "4"], &["write"]),
        (
            &["--workload", "connect", "--sessions", "4"],
            &["connect", "close"],
        ),
        (
            &["--workload", "watch", "--sessions", "5"],
            &["write", "event"],
        ),
        (
            &[
                "--read-pct",
                "50",
                "--rate",
                "2000",
                "--sessions",
                "4",
                "--depth",
                "8",
                "--threads",
                "2",
            ],
            &["read", "write"],
        ),
    ];
    for (args, expected) in cases {
        let results = run(&zoocore, &zk, args);
        assert_measured(&results, expected, args);
        for result in &results {
            let name = result["target"].as_str().unwrap_or("?");
            assert!(result["ops_per_sec"].as_f64().unwrap_or(0.0) > 0.0);
            assert!(
                result["server"]["cpu_us_per_op"].as_f64().is_some(),
                "{name}: server found through /proc"
            );
        }
        if args.contains(&"watch") {
            // Every watcher hears every write: events are 4 per write here.
            for result in &results {
                let count = |class: &str| {
                    result["classes"]
                        .as_array()
                        .and_then(|c| c.iter().find(|c| c["class"] == class))
                        .and_then(|c| c["count"].as_u64())
                        .unwrap_or(0)
                };
                let (writes, events) = (count("write"), count("event"));
                assert!(
                    events + 4 >= writes * 4 && events <= writes * 4 + 4,
                    "{writes} writes, {events} events"
                );
            }
        }
    }
    assert_eq!(
        results_pid(&run(&zoocore, &zk, &["--sessions", "2"])[0]),
        zoocore.pid(),
        "the CPU measured is the zoocore process's"
    );
}

/// The secure ports of both servers, with a client certificate as
/// `ssl.clientAuth=need` asks: reads, writes and connects over TLS.
#[test]
fn tls_targets_run_against_both_secure_ports() {
    let pki = Pki::new();
    pki.issue_client("/CN=loadgen");
    let (zc_port, zk_port) = (free_port(), free_port());
    let zoocore = ZoocoreProcess::start(&zoocore_binary(), &pki.keys_with(zc_port, "need"));
    let _zk = ZooKeeperProcess::start_with(
        &format!(
            "maxClientCnxns=0\nserverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n{}",
            pki.keys_with(zk_port, "need")
        ),
        &[],
    );
    let targets = [
        format!("zoocore=tls:127.0.0.1:{zc_port}"),
        format!("zookeeper=tls:127.0.0.1:{zk_port}"),
    ];
    let trust = pki.0.join("ca.pem").display().to_string();
    let key = pki.0.join("client-store.pem").display().to_string();
    let tls = ["--tls-trust", trust.as_str(), "--tls-key", key.as_str()];
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--read-pct", "50", "--depth", "4", "--sessions", "4"],
            &["read", "write"],
        ),
        (
            &["--workload", "connect", "--sessions", "2"],
            &["connect", "close"],
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = tls.iter().chain(args.iter()).copied().collect();
        let results = run_targets(&zoocore.dir, &targets, &args);
        assert_measured(&results, expected, &args);
    }
    // Without the client certificate both servers refuse the handshake.
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--target",
            &targets[0],
            "--tls-trust",
            &trust,
            "--seconds",
            "1",
        ])
        .output()
        .expect("run loadgen");
    assert!(!out.status.success(), "a handshake without a certificate");
}

fn results_pid(result: &Value) -> Option<u32> {
    result["server"]["pid"].as_u64().map(|p| p as u32)
}

/// tuning/sweep.sh, in its quick form: two settings, each run with
/// loadgen against its own zoocore, and a recommendation.
#[test]
fn the_tuning_sweep_runs_loadgen_over_settings_and_recommends_one() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(repo.join("tuning/sweep.sh"))
        .args(["--quick", "--seconds", "1", "--sessions", "4"])
        .env("ZOOCORE_BIN", zoocore_binary())
        .env("LOADGEN_BIN", env!("CARGO_BIN_EXE_loadgen"))
        .output()
        .expect("run tuning/sweep.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = text
        .lines()
        .filter(|l| l.contains("zoocore.maxBatchTxns="))
        .count();
    assert_eq!(rows, 3, "two settings and the recommendation:\n{text}");
    let recommended = text
        .lines()
        .find_map(|l| l.strip_prefix("recommended: "))
        .unwrap_or_else(|| panic!("no recommendation:\n{text}"));
    assert!(
        recommended.contains("zoocore.commitLingerMicros="),
        "{recommended}"
    );
}
