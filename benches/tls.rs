//! `tls`: what TLS costs, zoocore and Apache ZooKeeper each over plaintext
//! and over TLS on their `secureClientPort`, into the "TLS against
//! plaintext" section of `benches/RESULTS.md`.
//!
//! One zoocore and one ZooKeeper run at once, each with a plaintext
//! `clientPort` and a `secureClientPort` from the same zoo.cfg keys and PEM
//! files (the testkit's `Pki`: a CA, a server key store with an RSA 2048
//! key for 127.0.0.1 and a client certificate; `ssl.clientAuth=need`, as
//! ZooKeeper's default). ZooKeeper serves TLS only with its Netty
//! connection factory, so it runs Netty on both ports here. Every row is one
//! `loadgen` run with the four targets in turn; loadgen reads each server's
//! CPU time from /proc. `benches/tls.sh` builds and runs this.

use std::process::Command;

use clap::Parser;
use serde_json::Value;
use zoocore_benches::{
    fmt_us, free_port, git, machine, ratio, replace_section, repo, Kind, Server,
};
use zoocore_testkit::pki::Pki;

#[derive(Parser)]
#[command(about = "zoocore and Apache ZooKeeper over TLS and plaintext, into benches/RESULTS.md")]
struct Args {
    /// Measured seconds per row and target.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Warm-up seconds per row and target.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Where the report goes (its "TLS against plaintext" section).
    #[arg(long, default_value = "benches/RESULTS.md")]
    out: std::path::PathBuf,
}

const HEADING: &str = "\n## TLS against plaintext";

/// What one target did in one row.
struct Outcome {
    ops: f64,
    p99: Option<f64>,
    cpu_us: Option<f64>,
}

fn outcome(result: &Value) -> Outcome {
    let p99 = ["read", "write", "connect"].into_iter().find_map(|name| {
        result["classes"]
            .as_array()?
            .iter()
            .find(|c| c["class"] == name)?["p99_us"]
            .as_f64()
    });
    Outcome {
        ops: result["ops_per_sec"].as_f64().unwrap_or(0.0),
        p99,
        cpu_us: result["server"]["cpu_us_per_op"].as_f64(),
    }
}

/// A server with both ports; the secure one's port.
fn server(kind: Kind, pki: &Pki) -> (Server, u16) {
    let secure = free_port();
    let config = format!(
        "{}\nserverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n",
        pki.keys_with(secure, "need")
    );
    let name = match kind {
        Kind::Zoocore => "zoocore",
        Kind::Zookeeper => "zookeeper",
    };
    (Server::new(kind, "tls-bench", name, &config), secure)
}

fn main() {
    let args = Args::parse();
    let pki = Pki::in_dir(&repo().join("target/tls-bench/certs"));
    pki.issue_client("/CN=loadgen");
    let mut servers: Vec<(Server, u16)> = [Kind::Zoocore, Kind::Zookeeper]
        .into_iter()
        .map(|kind| server(kind, &pki))
        .collect();
    for (s, _) in &mut servers {
        s.start("/", 0);
    }
    let targets: Vec<String> = servers
        .iter()
        .flat_map(|(s, secure)| {
            let name = match s.kind {
                Kind::Zoocore => "zoocore",
                Kind::Zookeeper => "zookeeper",
            };
            [
                format!("{name}={}", s.addr),
                format!("{name}-tls=tls:127.0.0.1:{secure}"),
            ]
        })
        .collect();
    let rows: [(&str, &[&str]); 4] = [
        (
            "100% reads, 32 sessions, not pipelined",
            &["--read-pct", "100", "--sessions", "32"],
        ),
        (
            "100% reads, 32 sessions, 16 in flight each",
            &["--read-pct", "100", "--sessions", "32", "--depth", "16"],
        ),
        (
            "0% reads, 32 sessions, not pipelined",
            &["--read-pct", "0", "--sessions", "32"],
        ),
        (
            "connect + close storm, 16 at a time",
            &["--workload", "connect", "--sessions", "16"],
        ),
    ];
    let dir = repo().join("target/tls-bench");
    let mut table = String::new();
    for (n, (label, flags)) in rows.iter().enumerate() {
        let json = dir.join(format!("row-{n}.json"));
        let mut command = Command::new(repo().join("target/release/loadgen"));
        for t in &targets {
            command.arg("--target").arg(t);
        }
        command
            .arg("--tls-trust")
            .arg(pki.0.join("ca.pem"))
            .arg("--tls-key")
            .arg(pki.0.join("client-store.pem"))
            .arg(format!("--seconds={}", args.seconds))
            .arg(format!("--warmup={}", args.warmup))
            .args(["--quiet", "--json"])
            .arg(&json)
            .args(*flags);
        eprintln!("tls: {label} ...");
        let out = command.output().expect("run target/release/loadgen");
        assert!(
            out.status.success(),
            "loadgen failed on {label}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
        let report: Value = serde_json::from_slice(&std::fs::read(&json).expect("loadgen's JSON"))
            .expect("loadgen's JSON parses");
        let o: Vec<Outcome> = report["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(outcome)
            .collect();
        assert_eq!(o.len(), 4, "one result per target");
        let cpu = |x: &Outcome| fmt_us(x.cpu_us);
        let cost = |plain: &Outcome, tls: &Outcome| ratio(tls.ops, plain.ops);
        let _ = std::fmt::Write::write_fmt(
            &mut table,
            format_args!(
                "| {label} | {:.0} | {:.0} | {} | {} / {} | {} / {} | {:.0} | {:.0} | {} | {} / {} | {} / {} | {} |\n",
                o[0].ops,
                o[1].ops,
                cost(&o[0], &o[1]),
                fmt_us(o[0].p99),
                fmt_us(o[1].p99),
                cpu(&o[0]),
                cpu(&o[1]),
                o[2].ops,
                o[3].ops,
                cost(&o[2], &o[3]),
                fmt_us(o[2].p99),
                fmt_us(o[3].p99),
                cpu(&o[2]),
                cpu(&o[3]),
                ratio(o[1].ops, o[3].ops),
            ),
        );
    }
    for (s, _) in &mut servers {
        s.stop();
    }
    let md = format!(
        "{HEADING}\n\n\
         Generated by `benches/tls.sh` (`benches/tls.rs`) on {date} at commit `{commit}`; {machine}.\n\n\
         Each server serves its plaintext `clientPort` and a TLS `secureClientPort` from the same \
         PEM files (RSA 2048, `ssl.clientAuth=need`, loadgen presenting a client certificate; \
         zoocore negotiates TLS 1.3, ZooKeeper TLS 1.2, its default `ssl.protocol`). Apache ZooKeeper serves TLS only with its Netty \
         connection factory, so both its columns are Netty. One loadgen run per row, the four \
         targets in turn, {warmup} s warm-up and {seconds} s measured each. p99 is of reads, \
         else writes, else connects (a connect is TCP, the TLS handshake and the session; loadgen \
         shakes hands blocking, one session at a time, so the TLS storm row is bound by \
         handshake latency, not by either server's CPU). \
         CPU is the server's user + system time per operation. \"TLS / plain\" is throughput over \
         TLS as a share of plaintext; the last column is zoocore's TLS throughput over \
         ZooKeeper's.\n\n\
         | workload | zoocore ops/s | zoocore TLS ops/s | zoocore TLS / plain | zoocore p99 plain / TLS | zoocore CPU/op plain / TLS | ZooKeeper ops/s | ZooKeeper TLS ops/s | ZooKeeper TLS / plain | ZooKeeper p99 plain / TLS | ZooKeeper CPU/op plain / TLS | TLS: zoocore / ZooKeeper |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n{table}",
        date = git(&["log", "-1", "--format=%cs"]),
        commit = git(&["rev-parse", "--short", "HEAD"]),
        machine = machine(),
        warmup = args.warmup,
        seconds = args.seconds,
    );
    replace_section(&repo().join(&args.out), HEADING, &md);
}
