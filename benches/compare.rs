//! `compare`: the standard benchmark matrix, zoocore against Apache
//! ZooKeeper on this machine, into `benches/RESULTS.md`.
//!
//! Both servers run at once with the same zoo.cfg (fsync on, loopback, data
//! under `target/compare/` on the same disk, ZooKeeper with the JVM's
//! default heap). Every cell is one `loadgen` invocation with both targets,
//! so the two are measured minutes apart at most; loadgen reads each
//! server's CPU time and memory from /proc. `benches/compare.sh` builds,
//! installs ZooKeeper if missing and runs this.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use serde_json::Value;
use zoocore_benches::{fmt_us, git, machine, ratio, repo, Kind, Server};

#[derive(Parser)]
#[command(
    about = "The standard benchmark matrix, zoocore vs Apache ZooKeeper, into benches/RESULTS.md"
)]
struct Args {
    /// Measured seconds per cell and server.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Warm-up seconds per cell and server.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Requests in flight per session in the pipelined rows.
    #[arg(long, default_value_t = 16)]
    pipeline_depth: usize,
    /// Znodes for the memory row (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    memory_znodes: usize,
    /// Only the rows the README's headline table shows.
    #[arg(long)]
    headline: bool,
    /// Where the report goes.
    #[arg(long, default_value = "benches/RESULTS.md")]
    out: PathBuf,
    /// Another zoocore binary (an earlier build, say) measured in every cell
    /// beside target/release/zoocore; the report gains a section comparing
    /// the two builds.
    #[arg(long, value_name = "BINARY")]
    baseline: Option<PathBuf>,
    /// A zoo.cfg line for the baseline server only (repeatable); without
    /// --baseline the baseline is the same binary, so two settings are
    /// compared in one run.
    #[arg(long, value_name = "KEY=VALUE")]
    baseline_config: Vec<String>,
}

impl Args {
    fn has_baseline(&self) -> bool {
        self.baseline.is_some() || !self.baseline_config.is_empty()
    }
}

/// One cell: a loadgen invocation with both targets.
struct Cell {
    label: String,
    args: Vec<String>,
}

fn cell(label: impl Into<String>, args: &[&str]) -> Cell {
    Cell {
        label: label.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

/// What one server did in one cell.
struct Outcome {
    ops: f64,
    /// p99 of the row's main class: reads, else watch events, else writes, else connects.
    p99: Option<f64>,
    p999: Vec<(String, f64)>,
    cpu_us: Option<f64>,
    rss: Option<f64>,
    errors: u64,
    /// Machine-wide rescheduling and function-call interrupts per operation.
    interrupts: Option<(f64, f64)>,
}

fn outcome(result: &Value) -> Outcome {
    let class = |name: &str| {
        result["classes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["class"] == name))
    };
    Outcome {
        ops: result["ops_per_sec"].as_f64().unwrap_or(0.0),
        p99: ["read", "event", "write", "connect"]
            .into_iter()
            .find_map(|name| class(name)?["p99_us"].as_f64()),
        p999: result["classes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["class"].as_str()?.to_owned(), c["p999_us"].as_f64()?)))
            .collect(),
        cpu_us: result["server"]["cpu_us_per_op"].as_f64(),
        rss: result["server"]["rss_bytes"].as_f64(),
        errors: result["errors"]
            .as_object()
            .map_or(0, |e| e.values().filter_map(Value::as_u64).sum()),
        interrupts: result["interrupts_per_op"]["rescheduling"]
            .as_f64()
            .zip(result["interrupts_per_op"]["function_call"].as_f64()),
    }
}

fn run_cell(
    cell: &Cell,
    servers: &[(&str, Server)],
    args: &Args,
    dir: &std::path::Path,
    n: usize,
) -> Vec<Outcome> {
    let json = dir.join(format!("cell-{n:02}.json"));
    let mut command = Command::new(repo().join("target/release/loadgen"));
    for (name, s) in servers {
        command.arg("--target").arg(format!("{name}={}", s.addr));
    }
    command
        .arg(format!("--seconds={}", args.seconds))
        .arg(format!("--warmup={}", args.warmup))
        .arg("--quiet")
        .arg("--json")
        .arg(&json)
        .args(&cell.args);
    eprintln!("compare: {} ...", cell.label);
    let out = command.output().expect("run target/release/loadgen");
    assert!(
        out.status.success(),
        "loadgen failed on {}: {}{}",
        cell.label,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    let report: Value = serde_json::from_slice(&std::fs::read(&json).expect("loadgen's JSON"))
        .expect("loadgen's JSON parses");
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(outcome)
        .collect()
}

/// This build against the `--baseline` build, row by row.
fn baseline_section(md: &mut String, rows: &[(String, Vec<Outcome>)], args: &Args) {
    let _ = writeln!(
        md,
        "\n## This build against a baseline\n\nBaseline: `{}`{}, measured in every cell of the same run \
         (the third target, after zoocore and ZooKeeper). Ratios are this / baseline for throughput and \
         baseline / this for CPU per operation; interrupts are machine-wide per operation, as above.\n",
        args.baseline
            .as_ref()
            .map_or("target/release/zoocore".to_owned(), |b| b.display().to_string()),
        if args.baseline_config.is_empty() {
            String::new()
        } else {
            format!(" with `{}` added to its zoo.cfg", args.baseline_config.join("`, `"))
        }
    );
    let _ = writeln!(
        md,
        "| workload | ops/s this / baseline | ratio | CPU/op this / baseline | ratio | p99 this / baseline | RES/op this / baseline | CAL/op this / baseline |\n|---|---|---|---|---|---|---|---|"
    );
    for (label, o) in rows {
        let (this, base) = (&o[0], &o[2]);
        let _ = writeln!(
            md,
            "| {label} | {:.0} / {:.0} | {} | {} / {} | {} | {} / {} | {} / {} | {} / {} |",
            this.ops,
            base.ops,
            ratio(this.ops, base.ops),
            fmt_us(this.cpu_us),
            fmt_us(base.cpu_us),
            cpu_ratio(this, base),
            fmt_us(this.p99),
            fmt_us(base.p99),
            fmt_per_op(this.interrupts.map(|i| i.0)),
            fmt_per_op(base.interrupts.map(|i| i.0)),
            fmt_per_op(this.interrupts.map(|i| i.1)),
            fmt_per_op(base.interrupts.map(|i| i.1)),
        );
    }
}

/// A count per operation (interrupts), or "-" where it is unknown.
fn fmt_per_op(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.2}"))
}

/// How many times less CPU per operation `a` took than `b`.
fn cpu_ratio(a: &Outcome, b: &Outcome) -> String {
    match (a.cpu_us, b.cpu_us) {
        (Some(x), Some(y)) => ratio(y, x),
        _ => "-".into(),
    }
}

fn target_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Zoocore => "zoocore",
        Kind::Zookeeper => "zookeeper",
    }
}

fn main() {
    let args = Args::parse();
    let config = "snapCount=100000\n";
    let mut servers: Vec<(&str, Server)> = [Kind::Zoocore, Kind::Zookeeper]
        .into_iter()
        .map(|kind| {
            let name = target_name(kind);
            (name, Server::new(kind, "compare", name, config))
        })
        .collect();
    if args.has_baseline() {
        let name = "zoocore-baseline";
        let extra = format!("{config}{}\n", args.baseline_config.join("\n"));
        let mut server = Server::new(Kind::Zoocore, "compare", name, &extra);
        if let Some(binary) = &args.baseline {
            server = server.with_binary(binary.clone());
        }
        servers.push((name, server));
    }
    for (_, s) in &mut servers {
        s.start("/", 0);
    }
    let dir = repo().join("target/compare");
    let depth = args.pipeline_depth.to_string();
    let mut matrix = Vec::new();
    let (read_pcts, session_counts): (&[u32], &[usize]) = if args.headline {
        (&[100, 90, 0], &[32])
    } else {
        (&[100, 90, 50, 0], &[1, 32, 128])
    };
    for &pct in read_pcts {
        for &sessions in session_counts {
            for d in ["1", depth.as_str()] {
                let label = format!(
                    "{pct}% reads, {sessions} session{}, {}",
                    if sessions == 1 { "" } else { "s" },
                    if d == "1" {
                        "not pipelined".to_owned()
                    } else {
                        format!("{d} in flight each")
                    }
                );
                let pct = pct.to_string();
                let s = sessions.to_string();
                matrix.push(cell(
                    label,
                    &["--read-pct", &pct, "--sessions", &s, "--depth", d],
                ));
            }
        }
    }
    matrix.push(cell(
        "create + delete (persistent), 32 sessions",
        &["--workload", "create-delete", "--sessions", "32"],
    ));
    if !args.headline {
        matrix.push(cell(
            "create + delete (ephemeral sequential), 32 sessions",
            &[
                "--workload",
                "create-delete",
                "--create-mode",
                "ephemeral-sequential",
                "--sessions",
                "32",
            ],
        ));
        matrix.push(cell(
            "multi of 4 setData, 32 sessions",
            &["--workload", "multi", "--sessions", "32"],
        ));
        matrix.push(cell(
            "exists, 32 sessions",
            &["--workload", "exists", "--sessions", "32"],
        ));
        matrix.push(cell(
            "connect + close storm, 16 at a time",
            &["--workload", "connect", "--sessions", "16"],
        ));
    }
    matrix.push(cell(
        "watch fan-out: 1 writer, 32 watchers (writes + events per s)",
        &["--workload", "watch", "--sessions", "33"],
    ));
    let mut rows = Vec::new();
    for (n, c) in matrix.iter().enumerate() {
        rows.push((c.label.clone(), run_cell(c, &servers, &args, &dir, n)));
    }
    // Open loop at half of ZooKeeper's closed-loop maximum for the 90/10 mix.
    let zk_max = rows
        .iter()
        .find(|(l, _)| l == "90% reads, 32 sessions, not pipelined")
        .map_or(10_000.0, |(_, o)| o[1].ops);
    let rate = format!("{:.0}", zk_max / 2.0);
    let open = cell(
        format!("90% reads, 32 sessions, open loop at {rate}/s (half of ZooKeeper's maximum)"),
        &[
            "--read-pct",
            "90",
            "--sessions",
            "32",
            "--depth",
            "16",
            "--rate",
            &rate,
        ],
    );
    let open_outcome = run_cell(&open, &servers, &args, &dir, matrix.len());
    let memory = (args.memory_znodes > 0).then(|| {
        let n = args.memory_znodes.to_string();
        let c = cell(
            format!("{n} znodes of 128 B, 100% reads"),
            &[
                "--read-pct",
                "100",
                "--znodes",
                &n,
                "--sessions",
                "32",
                "--seconds",
                "2",
                "--warmup",
                "1",
            ],
        );
        let outcomes = run_cell(&c, &servers, &args, &dir, matrix.len() + 1);
        (c.label, outcomes)
    });
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark results: zoocore vs Apache ZooKeeper\n");
    let _ = writeln!(
        md,
        "Generated by `benches/compare.sh` (the `compare` tool in `benches/compare.rs`) on {} at commit `{}`{}.\n",
        git(&["log", "-1", "--format=%cs"]),
        git(&["rev-parse", "--short", "HEAD"]),
        if git(&["status", "--porcelain", "--untracked-files=no"]).is_empty() { "" } else { " (with uncommitted changes)" }
    );
    let _ = writeln!(
        md,
        "Machine: {}. Both servers and the load generator share it.\n",
        machine()
    );
    let _ = writeln!(
        md,
        "Method: both servers run at once, each with the same zoo.cfg (fsync on, loopback, data on the same disk; \
         Apache ZooKeeper 3.8.0 from Debian with the JVM's default heap, zoocore with its defaults). Every row is one \
         `loadgen` run with both targets one after the other: {} s warm-up, {} s measured, 1000 znodes of 128 B unless \
         said otherwise. Server CPU is user + system time of the server process per completed operation, from /proc. \
         p99 is of reads where there are reads, of watch events in the watch row, else of writes (connects for the storm). The ratio is zoocore / ZooKeeper \
         for throughput and ZooKeeper / zoocore for CPU per operation (higher is better for zoocore in both).\n",
        args.warmup, args.seconds
    );
    let _ = writeln!(md, "| workload | zoocore ops/s | ZooKeeper ops/s | throughput ratio | zoocore p99 | ZooKeeper p99 | zoocore CPU/op | ZooKeeper CPU/op | CPU ratio | errors (zoocore / ZooKeeper) |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for (label, o) in &rows {
        let (a, b) = (&o[0], &o[1]);
        let _ = writeln!(
            md,
            "| {label} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} / {} |",
            a.ops,
            b.ops,
            ratio(a.ops, b.ops),
            fmt_us(a.p99),
            fmt_us(b.p99),
            fmt_us(a.cpu_us),
            fmt_us(b.cpu_us),
            cpu_ratio(a, b),
            a.errors,
            b.errors
        );
    }
    let _ = writeln!(
        md,
        "\n## Interrupts per operation\n\nInter-processor interrupts the whole machine took per completed operation \
         while each server was measured (from /proc/interrupts; the load generator's share included): `RES` \
         (rescheduling: a running thread kicked, e.g. to run io_uring task work, or preempted) and `CAL` \
         (function calls: wake-ups of threads sleeping on another CPU, membarrier, TLB shootdowns).\n"
    );
    let _ = writeln!(
        md,
        "| workload | zoocore RES/op | zoocore CAL/op | ZooKeeper RES/op | ZooKeeper CAL/op |\n|---|---|---|---|---|"
    );
    for (label, o) in &rows {
        let (a, b) = (o[0].interrupts, o[1].interrupts);
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} |",
            fmt_per_op(a.map(|i| i.0)),
            fmt_per_op(a.map(|i| i.1)),
            fmt_per_op(b.map(|i| i.0)),
            fmt_per_op(b.map(|i| i.1)),
        );
    }
    let _ = writeln!(md, "\n## Open loop\n\n{}\n", open.label);
    let _ = writeln!(
        md,
        "| class | zoocore p99.9 | ZooKeeper p99.9 | ZooKeeper / zoocore |"
    );
    let _ = writeln!(md, "|---|---|---|---|");
    for (class, zc) in &open_outcome[0].p999 {
        let zk = open_outcome[1]
            .p999
            .iter()
            .find(|(c, _)| c == class)
            .map(|(_, v)| *v);
        let _ = writeln!(
            md,
            "| {class} | {} | {} | {} |",
            fmt_us(Some(*zc)),
            fmt_us(zk),
            zk.map_or("-".into(), |zk| ratio(zk, *zc))
        );
    }
    if let Some((label, o)) = &memory {
        let mib = |x: &Outcome| {
            x.rss
                .map_or("-".into(), |b| format!("{:.0} MiB", b / 1048576.0))
        };
        let _ = writeln!(md, "\n## Memory\n\nResident memory after `{label}` (the tree created by loadgen, then read for 2 s):\n");
        let _ = writeln!(
            md,
            "| zoocore | Apache ZooKeeper | zoocore / ZooKeeper |\n|---|---|---|"
        );
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            mib(&o[0]),
            mib(&o[1]),
            match (o[0].rss, o[1].rss) {
                (Some(a), Some(b)) => ratio(a, b),
                _ => "-".into(),
            }
        );
    }
    if args.has_baseline() {
        baseline_section(&mut md, &rows, &args);
    }
    for (_, s) in &mut servers {
        s.stop();
    }
    std::fs::write(repo().join(&args.out), &md).expect("write the report");
    print!("{md}");
}
