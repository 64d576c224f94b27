//! `loadgen`: load against ZooKeeper-compatible servers, zoocore and Apache
//! ZooKeeper alike, with their numbers side by side.
//!
//! Sessions are multiplexed on a few threads, each an event loop over
//! non-blocking sockets, so loadgen costs a few microseconds of CPU per
//! operation and leaves the machine to the servers. Targets are measured one
//! after the other within each round (`--rounds` alternates them), so their
//! numbers share the machine's conditions.

mod procfs;
mod report;
mod runner;
mod session;
mod stats;
mod workload;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::records::PathWatchRequest;
use zoocore_net::{CreateMode, ErrorCode, Request};

use crate::report::TargetResult;
use crate::stats::{Class, Recorder};
use crate::workload::{CreateKind, Spec, Workload};

#[derive(Parser, Debug, Clone)]
#[command(
    version,
    // A later flag overrides an earlier one, so scripts can append overrides.
    args_override_self = true,
    about = "Load generator for ZooKeeper-compatible servers (zoocore, Apache ZooKeeper, ...)",
    long_about = "Load generator for ZooKeeper-compatible servers (zoocore, Apache ZooKeeper, ...).\n\n\
        Runs one workload against one or more targets, one after the other (and, with --rounds, \
        alternately), and reports per target: throughput, latency percentiles of reads and writes \
        (and of watch events, connects and closes) from HDR histograms, errors by code, the \
        server's CPU time per operation and memory (from /proc, when the server is a local \
        process loadgen may inspect), and loadgen's own CPU per operation. Warm-up is not \
        measured. A progress line is printed every second.\n\n\
        Closed loop (default): every session keeps --depth requests in flight. Open loop \
        (--rate): requests are due at a fixed rate and their latency counts from when they were \
        due, so a server that stalls is charged for the requests it held back (coordinated \
        omission corrected).\n\n\
        Example, zoocore and Apache ZooKeeper side by side:\n  \
        loadgen --target zoocore=127.0.0.1:2181 --target zookeeper=127.0.0.1:2182 \
        --sessions 32 --read-pct 90 --html report.html"
)]
struct Args {
    /// A server to load, as name=host:port; several host:port (comma-separated)
    /// spread the sessions over an ensemble; name=tls:host:port speaks TLS (a
    /// secureClientPort; see --tls-trust). Repeat to compare servers in one run.
    #[arg(long = "target", required = true, value_parser = parse_target, value_name = "NAME=[tls:]HOST:PORT[,HOST:PORT]")]
    targets: Vec<Target>,
    /// TLS targets: the PEM CA certificates the servers' certificates are
    /// checked against (they must name the address connected to).
    #[arg(long, value_name = "FILE")]
    tls_trust: Option<std::path::PathBuf>,
    /// TLS targets: a PEM file with the client's private key and
    /// certificate chain, for servers that ask for one (ssl.clientAuth).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<std::path::PathBuf>,
    /// What the sessions do.
    #[arg(long, value_enum, default_value_t = Workload::Mix)]
    workload: Workload,
    /// mix: percentage of getData; the rest are setData.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=100))]
    read_pct: u32,
    /// Znodes (/loadgen/nNNNNNNN) the load spreads over; created before the run if missing.
    #[arg(long, default_value_t = 1000)]
    znodes: usize,
    /// Bytes of data per znode and per setData/create.
    #[arg(long, default_value_t = 128)]
    value_size: usize,
    /// create-delete: the kind of node created.
    #[arg(long, value_enum, default_value_t = CreateKind::Persistent)]
    create_mode: CreateKind,
    /// multi: setData operations per multi.
    #[arg(long, default_value_t = 4)]
    multi_ops: usize,
    /// Sessions (connections), spread over the threads. For watch: one writer, the rest watchers.
    #[arg(long, default_value_t = 32)]
    sessions: usize,
    /// Requests a session keeps in flight (1 = not pipelined); in open loop, the most it may have.
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Open loop: total requests per second, due at even intervals. Without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Load threads, each an event loop over its share of the sessions
    /// (watch uses one). One thread drives well over 100k ops/s.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Measured seconds per target and round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Unmeasured warm-up seconds per target and round.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Rounds: each runs every target once, in the order given; the
    /// results of a target add up over the rounds.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// The znodes already exist: do not check or create them.
    #[arg(long)]
    no_create: bool,
    /// Session timeout asked for, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    session_timeout_ms: i32,
    /// Seed of the operation mix and path choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Also write an HTML report with SVG plots (latency by percentile,
    /// throughput over time) to this file.
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
}

/// A server under load: its name in the report, its addresses, and whether
/// the sessions speak TLS.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    addrs: Vec<SocketAddr>,
    tls: bool,
}

fn parse_target(s: &str) -> Result<Target, String> {
    let (name, addrs) = s.split_once('=').ok_or("expected name=host:port")?;
    let (tls, addrs) = match addrs.strip_prefix("tls:") {
        Some(rest) => (true, rest),
        None => (false, addrs),
    };
    let addrs = addrs
        .split(',')
        .map(|a| {
            a.to_socket_addrs()
                .map_err(|e| format!("{a}: {e}"))?
                .next()
                .ok_or_else(|| format!("{a} resolves to nothing"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Target {
        name: name.to_owned(),
        addrs,
        tls,
    })
}

impl Args {
    fn spec(&self) -> Spec {
        Spec {
            workload: self.workload,
            read_pct: self.read_pct,
            znodes: self.znodes.max(1),
            value_size: self.value_size,
            create_mode: self.create_mode,
            multi_ops: self.multi_ops,
        }
    }

    fn threads(&self) -> usize {
        match self.workload {
            Workload::Watch => 1,
            _ => self.threads.clamp(1, self.sessions.max(1)),
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.sessions == 0 || self.depth == 0 || self.seconds == 0 {
            return Err("--sessions, --depth and --seconds must be at least 1".into());
        }
        if self.workload == Workload::Watch && self.sessions < 2 {
            return Err("watch needs --sessions of at least 2 (a writer and watchers)".into());
        }
        if self.rate.is_some() && matches!(self.workload, Workload::Watch | Workload::Connect) {
            return Err("watch and connect run closed loop only".into());
        }
        if self.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
            return Err("--rate must be positive".into());
        }
        Ok(())
    }

    /// The TLS configuration of the tls: targets; `None` when there are none.
    fn tls(&self) -> Result<Option<Arc<ClientConfig>>, String> {
        if !self.targets.iter().any(|t| t.tls) {
            return Ok(None);
        }
        let trust = self
            .tls_trust
            .as_deref()
            .ok_or("a tls: target needs --tls-trust")?;
        let key = self.tls_key.as_deref().map(|k| (k, "--tls-key"));
        zoocore_net::tls::client_config((trust, "--tls-trust"), key).map(Some)
    }
}

fn connect(addr: SocketAddr, tls: Option<&Arc<ClientConfig>>) -> Result<Client, String> {
    let options = ConnectOptions {
        timeout_ms: 30_000,
        io_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    match tls {
        Some(config) => {
            Client::connect_tls(addr, &options, config.clone(), ServerName::from(addr.ip()))
        }
        None => Client::connect(addr, &options),
    }
    .map_err(|e| format!("connect {addr}: {e}"))
}

/// Creates what the workload needs and is missing: /loadgen and its znodes,
/// or /loadgen-cd. Many creates are kept in flight.
fn prepare(addr: SocketAddr, args: &Args, tls: Option<&Arc<ClientConfig>>) -> Result<(), String> {
    const WINDOW: usize = 256;
    let mut c = connect(addr, tls)?;
    let value = vec![b'v'; args.value_size];
    let fail = |e: zoocore_net::client::ClientError| format!("preparing {addr}: {e}");
    let ok = |err: i32| err == 0 || err == ErrorCode::NodeExists.code();
    let create = |c: &mut Client, path: String| -> Result<(), String> {
        let reply = c
            .call(&workload::create(
                path.clone(),
                value.clone(),
                CreateMode::Persistent,
            ))
            .map_err(fail)?;
        if ok(reply.header.err) {
            Ok(())
        } else {
            Err(format!(
                "create {path}: {}",
                report::error_name(reply.header.err)
            ))
        }
    };
    let znodes = match args.workload {
        Workload::CreateDelete => return create(&mut c, workload::SCRATCH.into()),
        Workload::Connect => return Ok(()),
        Workload::Watch => 1,
        _ => args.znodes.max(1),
    };
    create(&mut c, workload::ROOT.into())?;
    let last = Request::Exists(PathWatchRequest {
        path: workload::path(znodes - 1),
        watch: false,
    });
    if c.call(&last).map_err(fail)?.header.err == 0 {
        return Ok(());
    }
    let started = Instant::now();
    let mut in_flight = 0;
    for i in 0..znodes {
        let request = workload::create(workload::path(i), value.clone(), CreateMode::Persistent);
        c.send(&request).map_err(fail)?;
        in_flight += 1;
        if in_flight == WINDOW {
            let err = c.recv().map_err(fail)?.header.err;
            if !ok(err) {
                return Err(format!("creating znodes: {}", report::error_name(err)));
            }
            in_flight -= 1;
        }
    }
    for _ in 0..in_flight {
        let err = c.recv().map_err(fail)?.header.err;
        if !ok(err) {
            return Err(format!("creating znodes: {}", report::error_name(err)));
        }
    }
    eprintln!(
        "loadgen: created {znodes} znodes on {addr} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let _ = c.close();
    Ok(())
}

/// What one round of one target measured.
struct RoundResult {
    recorder: Recorder,
    loadgen_cpu_us: f64,
    server_cpu_us: Option<f64>,
    interrupts: Option<procfs::Interrupts>,
}

fn run_round(
    name: &str,
    addrs: &[SocketAddr],
    args: &Args,
    tls: Option<Arc<ClientConfig>>,
    server: Option<u32>,
) -> Result<RoundResult, String> {
    let threads = args.threads();
    let shared = Arc::new(runner::Shared::new(threads));
    let per_thread_rate = args.rate.map(|r| r / threads as f64);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let plan = runner::Plan {
                addr: addrs[t % addrs.len()],
                spec: args.spec(),
                sessions: (t..args.sessions).step_by(threads).collect(),
                depth: args.depth,
                rate: per_thread_rate,
                warmup: Duration::from_secs(args.warmup),
                seconds: args.seconds,
                seed: args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t as u64,
                session_timeout_ms: args.session_timeout_ms,
                tls: tls.clone(),
            };
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || runner::run(plan, &shared))
                .map_err(|e| format!("starting a load thread: {e}"))
        })
        .collect::<Result<_, _>>()?;
    shared.ready.wait();
    let epoch = *shared.epoch.get_or_init(Instant::now);
    let measure = epoch + Duration::from_secs(args.warmup);
    let end = measure + Duration::from_secs(args.seconds);
    let mut cpu_at_start = None;
    let (mut last, mut last_count) = (epoch, 0);
    loop {
        let now = Instant::now();
        if cpu_at_start.is_none() && now >= measure {
            cpu_at_start = Some((
                procfs::own_cpu_time(),
                server.and_then(procfs::cpu_time),
                procfs::interrupts(),
            ));
        }
        if now >= end || handles.iter().any(|h| h.is_finished()) {
            break;
        }
        let next = (last + Duration::from_secs(1)).min(end);
        let next = if cpu_at_start.is_none() {
            next.min(measure)
        } else {
            next
        };
        std::thread::sleep(next.saturating_duration_since(now));
        let now = Instant::now();
        if now >= last + Duration::from_secs(1) {
            let count = shared.completed.load(Ordering::Relaxed);
            if !args.quiet {
                let phase = if now < measure { "warm-up" } else { "measured" };
                eprintln!(
                    "{name:>12} {:>4.0}s {phase:>8} {:>9.0} ops/s  errors {}",
                    (now - epoch).as_secs_f64(),
                    (count - last_count) as f64 / (now - last).as_secs_f64(),
                    shared.errors.load(Ordering::Relaxed)
                );
            }
            (last, last_count) = (now, count);
        }
    }
    let cpu_at_end = (
        procfs::own_cpu_time(),
        server.and_then(procfs::cpu_time),
        procfs::interrupts(),
    );
    let mut recorder = Recorder::new(args.seconds);
    for h in handles {
        let part = h
            .join()
            .map_err(|_| "a load thread panicked".to_owned())??;
        recorder.merge(&part);
    }
    let (own_start, server_start, interrupts_start) = cpu_at_start.unwrap_or(cpu_at_end);
    let server_cpu_us = match (server_start, cpu_at_end.1) {
        (Some(a), Some(b)) => Some((b - a).as_secs_f64() * 1e6),
        _ => None,
    };
    Ok(RoundResult {
        recorder,
        loadgen_cpu_us: (cpu_at_end.0 - own_start).as_secs_f64() * 1e6,
        server_cpu_us,
        interrupts: interrupts_start
            .zip(cpu_at_end.2)
            .map(|(start, end)| end.since(start)),
    })
}

fn describe(args: &Args) -> String {
    let what = match args.workload {
        Workload::Mix => format!(
            "mix {}% getData / {}% setData",
            args.read_pct,
            100 - args.read_pct
        ),
        Workload::CreateDelete => format!("create-delete ({:?})", args.create_mode),
        Workload::Multi => format!("multi of {} setData", args.multi_ops),
        other => format!("{other:?}").to_lowercase(),
    };
    let lp = match args.rate {
        Some(rate) => format!("open loop at {rate:.0}/s"),
        None => format!("closed loop, depth {}", args.depth),
    };
    format!(
        "{what}; {} sessions on {} threads, {lp}; {} znodes of {} B; {} s measured after {} s warm-up, {} round(s)",
        args.sessions,
        args.threads(),
        args.znodes,
        args.value_size,
        args.seconds,
        args.warmup,
        args.rounds
    )
}

fn run(args: &Args) -> Result<Vec<TargetResult>, String> {
    args.check()?;
    let mut rounds: Vec<Vec<RoundResult>> = args.targets.iter().map(|_| Vec::new()).collect();
    let servers: Vec<Option<u32>> = args
        .targets
        .iter()
        .map(|t| procfs::listener_pid(t.addrs[0].port()).filter(|_| t.addrs.len() == 1))
        .collect();
    let tls = args.tls()?;
    let tls_of = |t: &Target| tls.clone().filter(|_| t.tls);
    if !args.no_create {
        for t in &args.targets {
            prepare(t.addrs[0], args, tls_of(t).as_ref())?;
        }
    }
    for _ in 0..args.rounds {
        for (k, t) in args.targets.iter().enumerate() {
            let name = &t.name;
            let round = run_round(name, &t.addrs, args, tls_of(t), servers[k])
                .map_err(|e| format!("{name}: {e}"))?;
            rounds[k].push(round);
        }
    }
    let seconds = (args.seconds * args.rounds as u64) as f64;
    Ok(args
        .targets
        .iter()
        .zip(rounds)
        .zip(&servers)
        .map(|((target, rounds), server)| {
            let mut recorder = Recorder::new(0);
            let mut timeline: Vec<[u64; Class::ALL.len()]> = Vec::new();
            let (mut own, mut cpu) = (0.0, Some(0.0));
            let mut interrupts = Some(procfs::Interrupts::default());
            for r in &rounds {
                recorder.merge(&r.recorder);
                timeline.extend_from_slice(&r.recorder.timeline);
                own += r.loadgen_cpu_us;
                cpu = cpu.zip(r.server_cpu_us).map(|(a, b)| a + b);
                interrupts = interrupts.zip(r.interrupts).map(|(a, b)| a.add(b));
            }
            let usage = server
                .zip(cpu)
                .map(|(pid, cpu)| (pid, cpu, procfs::rss_bytes(pid)));
            let measured = report::Measured {
                recorder: &recorder,
                timeline: &timeline,
                rounds: args.rounds,
                seconds,
                loadgen_cpu_us: own,
                server: usage,
                interrupts,
            };
            TargetResult::new(
                target.name.clone(),
                target.addrs.iter().map(ToString::to_string).collect(),
                measured,
            )
        })
        .collect())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let title = describe(&args);
    println!("{title}");
    let results = match run(&args) {
        Ok(results) => results,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report::table(&results));
    if let Some(file) = &args.json {
        let json = serde_json::json!({
            "title": title,
            "config": {
                "workload": args.workload,
                "read_pct": args.read_pct,
                "znodes": args.znodes,
                "value_size": args.value_size,
                "create_mode": args.create_mode,
                "multi_ops": args.multi_ops,
                "sessions": args.sessions,
                "depth": args.depth,
                "rate": args.rate,
                "threads": args.threads(),
                "seconds": args.seconds,
                "warmup": args.warmup,
                "rounds": args.rounds,
            },
            "results": results,
        });
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        if let Err(e) = std::fs::write(file, text + "\n") {
            eprintln!("loadgen: writing {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(file) = &args.html {
        if let Err(e) = std::fs::write(file, report::html(&title, &results)) {
            eprintln!("loadgen: writing {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
