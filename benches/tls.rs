//! `tls`: what TLS costs, zoocore and Apache ZooKeeper each over plaintext
//! and over TLS on their `secureClientPort`, into the "TLS against
//! plaintext" section of `benches/RESULTS.md`.
//!
//! One zoocore and one ZooKeeper run at once, each with a plaintext
//! `clientPort` and a `secureClientPort` from the same zoo.cfg keys and PEM
//! files (openssl makes a CA, a server key store with an RSA 2048 key for
//! 127.0.0.1 and a client certificate; `ssl.clientAuth=need`, as
//! ZooKeeper's default). ZooKeeper serves TLS only with its Netty
//! connection factory, so it runs Netty on both ports here. Every row is one
//! `loadgen` run with the four targets in turn; loadgen reads each server's
//! CPU time from /proc. `benches/tls.sh` builds and runs this.

use std::path::Path;
use std::process::Command;

use clap::Parser;
use serde_json::Value;
use zoocore_benches::{
    fmt_us, free_port, git, machine, ratio, replace_section, repo, Kind, Server,
};

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

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, the servers' key store (key and certificate in one PEM file) and
/// a client's; version 3 certificates, as rustls requires.
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).expect("certificate dir");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=zoocore-bench-ca",
        ],
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    for (name, subject) in [("server", "/CN=127.0.0.1"), ("client", "/CN=loadgen")] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let cert = format!("{name}.pem");
        let ext = format!("{name}.ext");
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                subject,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        let store = std::fs::read_to_string(dir.join(&key)).expect("key")
            + &std::fs::read_to_string(dir.join(&cert)).expect("certificate");
        std::fs::write(dir.join(format!("{name}-store.pem")), store).expect("key store");
    }
}

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
fn server(kind: Kind, certs: &Path) -> (Server, u16) {
    let secure = free_port();
    let config = format!(
        "secureClientPort={secure}\n\
         serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
         ssl.keyStore.location={store}\nssl.keyStore.type=PEM\n\
         ssl.trustStore.location={ca}\nssl.trustStore.type=PEM\nssl.clientAuth=need\n",
        store = certs.join("server-store.pem").display(),
        ca = certs.join("ca.pem").display(),
    );
    let name = match kind {
        Kind::Zoocore => "zoocore",
        Kind::Zookeeper => "zookeeper",
    };
    (Server::new(kind, "tls-bench", name, &config), secure)
}

fn main() {
    let args = Args::parse();
    let certs = repo().join("target/tls-bench/certs");
    let _ = std::fs::remove_dir_all(&certs);
    make_certificates(&certs);
    let mut servers: Vec<(Server, u16)> = [Kind::Zoocore, Kind::Zookeeper]
        .into_iter()
        .map(|kind| server(kind, &certs))
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
            .arg(certs.join("ca.pem"))
            .arg("--tls-key")
            .arg(certs.join("client-store.pem"))
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
         rustls negotiates TLS 1.3 with both). Apache ZooKeeper serves TLS only with its Netty \
         connection factory, so both its columns are Netty. One loadgen run per row, the four \
         targets in turn, {warmup} s warm-up and {seconds} s measured each. p99 is of reads, \
         else writes, else connects (a connect is TCP, the TLS handshake and the session). \
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
