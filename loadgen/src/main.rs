//! `loadgen`: closed-loop load against ZooKeeper-compatible servers.
//!
//! Each session is a thread with a blocking client that keeps `--depth`
//! requests in flight (getData or setData on pre-created znodes, mixed by
//! `--read-pct`). Several `--target`s are run one after the other in the same
//! invocation, so their numbers share the machine's conditions. Reads and
//! writes get separate HDR histograms; warm-up is excluded.
//!
//! This is the first cut of the benchmarks milestone's load generator: open
//! loop, other workloads, reports and plots are still to come.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::consts::perms;
use zoocore_net::records::{CreateRequest, PathWatchRequest, SetDataRequest};
use zoocore_net::{Acl, Request};

#[derive(Parser, Debug, Clone)]
#[command(
    version,
    about = "Closed-loop load generator for ZooKeeper-compatible servers"
)]
struct Args {
    /// A server to load, as name=host:port; repeat to compare servers in one run.
    #[arg(long = "target", required = true, value_parser = parse_target)]
    targets: Vec<(String, SocketAddr)>,
    /// Concurrent sessions (one connection and thread each).
    #[arg(long, default_value_t = 32)]
    sessions: usize,
    /// Requests each session keeps in flight (1 = not pipelined).
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Percentage of reads (getData); the rest are setData.
    #[arg(long, default_value_t = 100)]
    read_pct: u32,
    /// Znodes the load spreads over, created before the run.
    #[arg(long, default_value_t = 1000)]
    znodes: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 128)]
    value_size: usize,
    /// Measured seconds per target.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Unmeasured warm-up seconds per target.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// The znodes already exist (made by an earlier run or a benchmark script).
    #[arg(long)]
    no_create: bool,
}

fn parse_target(s: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = s.split_once('=').ok_or("expected name=host:port")?;
    let addr = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("address resolves to nothing")?;
    Ok((name.to_owned(), addr))
}

struct Totals {
    reads: Histogram<u64>,
    writes: Histogram<u64>,
    errors: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn connect(addr: SocketAddr) -> Result<Client, String> {
    let options = ConnectOptions {
        timeout_ms: 30_000,
        io_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    Client::connect(addr, &options).map_err(|e| format!("connect {addr}: {e}"))
}

fn path(i: usize) -> String {
    format!("/loadgen/n{i:07}")
}

fn prepare(addr: SocketAddr, args: &Args) -> Result<(), String> {
    let mut c = connect(addr)?;
    let value = Some(vec![b'v'; args.value_size]);
    let acl = vec![Acl::new(perms::ALL, "world", "anyone")];
    let create = |p: String| {
        Request::Create(CreateRequest {
            path: p,
            data: value.clone(),
            acl: acl.clone(),
            flags: 0,
        })
    };
    c.call(&create("/loadgen".into()))
        .map_err(|e| e.to_string())?;
    for i in 0..args.znodes {
        c.send(&create(path(i))).map_err(|e| e.to_string())?;
        if i % 256 == 255 {
            for _ in 0..256 {
                c.recv().map_err(|e| e.to_string())?;
            }
        }
    }
    for _ in 0..args.znodes % 256 {
        c.recv().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One session's loop; returns its histograms once `stop` is set.
fn session(
    addr: SocketAddr,
    args: Arc<Args>,
    seed: u64,
    start: Arc<Barrier>,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Result<Totals, String> {
    let mut c = connect(addr)?;
    let mut totals = Totals {
        reads: histogram(),
        writes: histogram(),
        errors: 0,
    };
    let mut rng = seed | 1;
    let mut next = || {
        // xorshift: cheap and good enough to pick paths and mix operations.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let value = Some(vec![b'w'; args.value_size]);
    let mut inflight = std::collections::VecDeque::with_capacity(args.depth);
    start.wait();
    loop {
        while inflight.len() < args.depth && !stop.load(Ordering::Relaxed) {
            let r = next();
            let p = path((r >> 8) as usize % args.znodes);
            let read = (r % 100) < u64::from(args.read_pct);
            let request = if read {
                Request::GetData(PathWatchRequest {
                    path: p,
                    watch: false,
                })
            } else {
                Request::SetData(SetDataRequest {
                    path: p,
                    data: value.clone(),
                    version: -1,
                })
            };
            c.send(&request).map_err(|e| e.to_string())?;
            inflight.push_back((read, Instant::now()));
        }
        let Some((read, sent)) = inflight.pop_front() else {
            break;
        };
        let reply = c.recv().map_err(|e| e.to_string())?;
        if measuring.load(Ordering::Relaxed) {
            let micros = sent.elapsed().as_micros().max(1) as u64;
            let h = if read {
                &mut totals.reads
            } else {
                &mut totals.writes
            };
            let _ = h.record(micros);
            totals.errors += u64::from(reply.header.err != 0);
        }
    }
    Ok(totals)
}

fn run_target(name: &str, addr: SocketAddr, args: &Arc<Args>) -> Result<(), String> {
    if !args.no_create {
        prepare(addr, args)?;
    }
    let start = Arc::new(Barrier::new(args.sessions + 1));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..args.sessions)
        .map(|i| {
            let (args, start, measuring, stop) =
                (args.clone(), start.clone(), measuring.clone(), stop.clone());
            std::thread::spawn(move || {
                session(
                    addr,
                    args,
                    0x9E37_79B9_7F4A_7C15 ^ i as u64,
                    start,
                    measuring,
                    stop,
                )
            })
        })
        .collect();
    start.wait();
    std::thread::sleep(Duration::from_secs(args.warmup));
    measuring.store(true, Ordering::Relaxed);
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(args.seconds));
    measuring.store(false, Ordering::Relaxed);
    let elapsed = began.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut total = Totals {
        reads: histogram(),
        writes: histogram(),
        errors: 0,
    };
    for t in threads {
        let part = t.join().map_err(|_| "session thread panicked")??;
        total.reads.add(&part.reads).map_err(|e| e.to_string())?;
        total.writes.add(&part.writes).map_err(|e| e.to_string())?;
        total.errors += part.errors;
    }
    for (kind, h) in [("read", &total.reads), ("write", &total.writes)] {
        if h.is_empty() {
            continue;
        }
        println!(
            "{name:>12} {kind:>5} {:>10.0} ops/s  p50 {:>6} us  p90 {:>6} us  p99 {:>6} us  p99.9 {:>6} us  max {:>7} us",
            h.len() as f64 / elapsed,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    }
    if total.errors > 0 {
        println!("{name:>12} errors {}", total.errors);
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Arc::new(Args::parse());
    println!(
        "sessions {} depth {} read {}% znodes {} value {} B, {} s per target",
        args.sessions, args.depth, args.read_pct, args.znodes, args.value_size, args.seconds
    );
    for (name, addr) in &args.targets {
        if let Err(e) = run_target(name, *addr, &args) {
            eprintln!("loadgen: {name}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
