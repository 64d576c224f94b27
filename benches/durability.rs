//! `durability`: zoocore and Apache ZooKeeper side by side on recovery.
//!
//! - `restart`: fill a fresh server with N znodes of V bytes, stop it with
//!   SIGTERM, start it again and time spawn -> first successful getData of
//!   the last znode written. Repeated, median reported.
//! - `stall`: on a server holding N znodes, run `loadgen` (90% reads) once
//!   with snapshots off (snapCount 10^9) and once with snapCount low enough
//!   that snapshots of the whole tree run all through the measurement, and
//!   compare latency percentiles.
//! - `disk`: start a fresh server, run `loadgen` setData for a few seconds,
//!   stop it; repeat, then report the disk space the data dir takes (blocks
//!   allocated, as `du` counts) against the writes acknowledged. Both with
//!   autopurge off, their default.
//!
//! Both servers get the same zoo.cfg (fsync on, loopback, data under
//! `target/durability/`, same disk), ZooKeeper with the JVM's default heap.
//! Results are printed as Markdown, with the commit and machine.

use std::process::Command;
use std::time::Duration;

use clap::{Parser, Subcommand};
use zoocore_benches::{path, populate, repo, Kind, Server};

#[derive(Parser)]
#[command(about = "Restart time and snapshot stall, zoocore vs Apache ZooKeeper")]
struct Args {
    #[command(subcommand)]
    what: What,
    /// Which servers to measure.
    #[arg(long, value_delimiter = ',', default_value = "zoocore,zookeeper")]
    servers: Vec<Kind>,
    /// Value size of each znode in bytes.
    #[arg(long, default_value_t = 128)]
    value_size: usize,
}

#[derive(Subcommand)]
enum What {
    /// Restart-to-first-served-read for each tree size.
    Restart {
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<usize>,
        /// Restarts per size (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Latency under load with and without snapshots of the whole tree.
    Stall {
        #[arg(long, default_value_t = 1_000_000)]
        znodes: usize,
        /// snapCount while snapshots are on.
        #[arg(long, default_value_t = 20_000)]
        snap_count: u64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        sessions: usize,
        /// Extra zoo.cfg lines for zoocore only (`;`-separated), to try settings.
        #[arg(long, default_value = "")]
        zoocore_config: String,
    },
    /// Disk space after short write runs, each between a start and a stop.
    Disk {
        #[arg(long, default_value_t = 10)]
        runs: usize,
        #[arg(long, default_value_t = 1)]
        seconds: u64,
        #[arg(long, default_value_t = 4)]
        sessions: usize,
    },
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn restart(args: &Args, sizes: &[usize], runs: usize) {
    println!("| znodes ({} B values) | server | restart to first read (median of {runs}) | runs | RSS after restart | data dir (incl. preallocated log) |", args.value_size);
    println!("|---|---|---|---|---|---|");
    for &size in sizes {
        for &kind in &args.servers {
            let label = format!("restart-{}-{size}", kind.name().replace(' ', "-"));
            let mut server = Server::new(kind, "durability", &label, "");
            let probe = path(size - 1);
            server.start("/", 0);
            populate(server.addr, size, args.value_size);
            server.stop();
            let mut rss = 0.0;
            let times: Vec<Duration> = (0..runs)
                .map(|_| {
                    let t = server.start(&probe, args.value_size);
                    rss = server.rss_mib();
                    server.stop();
                    t
                })
                .collect();
            let shown: Vec<String> = times
                .iter()
                .map(|t| format!("{:.2}", t.as_secs_f64()))
                .collect();
            println!(
                "| {size} | {} | {:.2} s | {} | {rss:.0} MiB | {:.0} MiB |",
                kind.name(),
                median(times).as_secs_f64(),
                shown.join(" / "),
                server.data_bytes() as f64 / (1 << 20) as f64
            );
        }
    }
}

fn stall(args: &Args, znodes: usize, snap_count: u64, seconds: u64, sessions: usize, extra: &str) {
    println!("| server | snapshots | snapshots taken during the run | read ops/s | read p99 | read p99.9 | write p99.9 |");
    println!("|---|---|---|---|---|---|---|");
    for &kind in &args.servers {
        for (label, count) in [("off", 1_000_000_000), ("on", snap_count)] {
            let dir = format!("stall-{}-{label}", kind.name().replace(' ', "-"));
            let extra = match kind {
                Kind::Zoocore => extra.replace(';', "\n"),
                Kind::Zookeeper => String::new(),
            };
            let mut server = Server::new(
                kind,
                "durability",
                &dir,
                &format!("snapCount={count}\n{extra}"),
            );
            server.start("/", 0);
            populate(server.addr, znodes, args.value_size);
            let before = server.snapshot_files();
            let report = loadgen(
                &server,
                &[
                    "--read-pct=90".into(),
                    "--no-create".into(),
                    format!("--znodes={znodes}"),
                    format!("--sessions={sessions}"),
                    format!("--seconds={seconds}"),
                    format!("--value-size={}", args.value_size),
                ],
            );
            let taken = server.snapshot_files() - before;
            server.stop();
            let class = |name: &str| {
                report["results"][0]["classes"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["class"] == name).cloned())
                    .unwrap_or_default()
            };
            let (read, write) = (class("read"), class("write"));
            let us = |v: &serde_json::Value| v.as_f64().map_or("-".into(), |x| format!("{x:.0}"));
            println!(
                "| {} | {label} (snapCount {count}) | {taken} | {} | {} us | {} us | {} us |",
                kind.name(),
                us(&read["ops_per_sec"]),
                us(&read["p99_us"]),
                us(&read["p999_us"]),
                us(&write["p999_us"]),
            );
        }
    }
}

/// Runs `loadgen` against `server` with `flags` and returns its JSON report.
fn loadgen(server: &Server, flags: &[String]) -> serde_json::Value {
    let json = server.dir.join("loadgen.json");
    let out = Command::new(repo().join("target/release/loadgen"))
        .arg("--target")
        .arg(format!(
            "{}={}",
            server.kind.name().replace(' ', "-"),
            server.addr
        ))
        .arg("--quiet")
        .args(flags)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run target/release/loadgen");
    assert!(
        out.status.success(),
        "loadgen failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&json).expect("loadgen's JSON"))
        .expect("loadgen's JSON parses")
}

/// Runs loadgen's setData against `server` and returns the writes it completed.
fn write_for(server: &Server, seconds: u64, sessions: usize, value_size: usize) -> u64 {
    let report = loadgen(
        server,
        &[
            "--read-pct=0".into(),
            "--warmup=0".into(),
            format!("--sessions={sessions}"),
            format!("--seconds={seconds}"),
            format!("--value-size={value_size}"),
        ],
    );
    report["results"][0]["classes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["class"] == "write"))
        .and_then(|c| c["count"].as_u64())
        .unwrap_or(0)
}

fn disk(args: &Args, runs: usize, seconds: u64, sessions: usize) {
    println!("| server | runs of {seconds} s setData ({sessions} sessions, {} B) | writes acknowledged | disk used (allocated) | apparent size | disk per write |", args.value_size);
    println!("|---|---|---|---|---|---|");
    for &kind in &args.servers {
        let label = format!("disk-{}", kind.name().replace(' ', "-"));
        let mut server = Server::new(kind, "durability", &label, "");
        let mut writes = 0;
        for _ in 0..runs {
            server.start("/", 0);
            writes += write_for(&server, seconds, sessions, args.value_size);
            server.stop();
        }
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let used = server.data_allocated_bytes();
        println!(
            "| {} | {runs} | {writes} | {:.1} MiB | {:.1} MiB | {:.0} B |",
            kind.name(),
            mib(used),
            mib(server.data_bytes()),
            used as f64 / writes.max(1) as f64
        );
    }
}

fn main() {
    let args = Args::parse();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("commit {commit}, {cpus} CPUs, servers and load on the same machine\n");
    match &args.what {
        What::Restart { sizes, runs } => restart(&args, sizes, *runs),
        What::Stall {
            znodes,
            snap_count,
            seconds,
            sessions,
            zoocore_config,
        } => stall(
            &args,
            *znodes,
            *snap_count,
            *seconds,
            *sessions,
            zoocore_config,
        ),
        What::Disk {
            runs,
            seconds,
            sessions,
        } => disk(&args, *runs, *seconds, *sessions),
    }
}
