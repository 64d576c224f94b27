//! `ensemble`: zoocore with 3 members against Apache ZooKeeper with 3
//! members on this machine, in one run: throughput and latency (loadgen,
//! sessions spread over the members), and failover: the longest gap
//! between acknowledged writes of a client that moves along the connect
//! string, after kill -9 and after SIGSTOP of the leader, and after a
//! partition cuts the leader off (a second pair of ensembles, each member
//! in its own network namespace: needs root), repeated; and the leader
//! changes of a healthy ensemble, idle and under load (false elections);
//! and catch-up: a follower restarted with an empty data dir after its
//! ensemble holds 1M znodes, timed until it follows with the leader's
//! zxid (the leader's snapshot crosses, then the log after it).
//! It writes its sections of `benches/RESULTS.md` (after `compare`'s,
//! which rewrites the file). Run it through `benches/compare.sh`, or alone
//! after `cargo build --release -p zoocore -p zoocore-loadgen -p zoocore-benches --bins`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;
use zoocore_benches::{free_port, path, populate, repo, zookeeper_command, Kind};
use zoocore_net::client::{Client, ClientError, ConnectOptions};
use zoocore_net::consts::perms;
use zoocore_net::records::{CreateRequest, SetDataRequest};
use zoocore_net::{Acl, Request};
use zoocore_testkit::netns::{self, Subnet};

#[derive(Parser)]
#[command(about = "3-member zoocore vs 3-member Apache ZooKeeper: throughput and failover")]
struct Args {
    /// Rounds of each failover nemesis per system.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Measured seconds per throughput cell.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Seconds the healthy, idle ensembles are watched for leader changes.
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// Only the partition rows (a quick rerun; the section written holds
    /// only them).
    #[arg(long)]
    only_partition: bool,
    /// Znodes of 128 B the catch-up rows start from (0 skips them).
    #[arg(long, default_value_t = 1_000_000)]
    catch_up_znodes: usize,
    /// Only the catch-up rows (they get a section of their own).
    #[arg(long)]
    only_catch_up: bool,
    #[arg(long, default_value = "benches/RESULTS.md")]
    out: PathBuf,
}

/// How a member is started.
struct Member {
    client: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
}

struct Cluster {
    kind: Kind,
    members: Vec<Member>,
    /// The members' private network, when a partition is the nemesis.
    subnet: Option<Subnet>,
}

fn four_letter_word(addr: SocketAddr, word: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(word.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

impl Cluster {
    /// A cluster on loopback, or (with a subnet) each member in its own
    /// network namespace.
    fn start(kind: Kind, subnet: Option<Subnet>) -> Cluster {
        Cluster::start_with(kind, subnet, "")
    }

    /// As `start`, with `extra` lines in every member's zoo.cfg.
    fn start_with(kind: Kind, subnet: Option<Subnet>, extra: &str) -> Cluster {
        let label = match kind {
            Kind::Zoocore => "zoocore",
            Kind::Zookeeper => "zookeeper",
        };
        let host = |i: usize| -> IpAddr {
            subnet
                .as_ref()
                .map_or(IpAddr::from([127, 0, 0, 1]), |s| IpAddr::V4(s.addrs[i]))
        };
        let label = if subnet.is_some() {
            format!("{label}-netns")
        } else {
            label.to_owned()
        };
        let root = repo().join("target/ensemble-bench").join(label);
        let _ = std::fs::remove_dir_all(&root);
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let lines: String = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer, election))| {
                let h = host(i);
                match kind {
                    Kind::Zoocore => {
                        format!("server.{}={h}:{peer}:{election};{h}:{client}\n", i + 1)
                    }
                    Kind::Zookeeper => format!("server.{}={h}:{peer}:{election}\n", i + 1),
                }
            })
            .collect();
        let mut members = Vec::new();
        for (i, (client, _, _)) in ports.iter().enumerate() {
            let dir = root.join(format!("member-{}", i + 1));
            let data = dir.join("data");
            std::fs::create_dir_all(&data).expect("bench dir");
            std::fs::write(data.join("myid"), format!("{}\n", i + 1)).expect("myid");
            std::fs::write(
                dir.join("zoo.cfg"),
                format!(
                    "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={client}\n\
                     clientPortAddress={}\nmaxClientCnxns=0\nadmin.enableServer=false\n\
                     4lw.commands.whitelist=*\n{lines}{extra}",
                    data.display(),
                    host(i)
                ),
            )
            .expect("zoo.cfg");
            members.push(Member {
                client: SocketAddr::new(host(i), *client),
                dir,
                child: None,
                paused: false,
            });
        }
        let mut cluster = Cluster {
            kind,
            members,
            subnet,
        };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster.settle(Duration::from_secs(120));
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let namespace = self
            .subnet
            .as_ref()
            .map(|s| s.namespace(i).unwrap_or_else(|e| panic!("{e}")));
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.join("server.log"))
            .expect("server log");
        let mut command = match self.kind {
            Kind::Zoocore => {
                let mut c = Command::new(repo().join("target/release/zoocore"));
                c.arg("--config").arg(m.dir.join("zoo.cfg"));
                c
            }
            Kind::Zookeeper => zookeeper_command(
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                &m.dir.join("zoo.cfg"),
            ),
        };
        if let Some(ns) = namespace {
            // SAFETY: the closure only makes the setns syscall.
            unsafe { command.pre_exec(move || netns::enter(&ns)) };
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start a member (cargo build --release first)");
        m.child = Some(child);
        m.paused = false;
    }

    fn mode(&self, i: usize) -> Option<String> {
        let m = &self.members[i];
        if m.child.is_none() || m.paused {
            return None;
        }
        four_letter_word(m.client, "srvr")?
            .lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .map(str::to_owned)
    }

    /// Waits until every running member serves, one of them as leader.
    fn settle(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let modes: Vec<Option<String>> = (0..3).map(|i| self.mode(i)).collect();
            let running = self
                .members
                .iter()
                .filter(|m| m.child.is_some() && !m.paused)
                .count();
            let leaders: Vec<usize> = (0..3)
                .filter(|&i| modes[i].as_deref() == Some("leader"))
                .collect();
            let serving = modes
                .iter()
                .filter(|m| matches!(m.as_deref(), Some("leader" | "follower")))
                .count();
            if leaders.len() == 1 && serving == running {
                return leaders[0];
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not settle: {modes:?}",
                self.kind.name()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&mut self, i: usize, signal: i32) {
        if let Some(child) = &self.members[i].child {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
        self.members[i].paused = signal == libc::SIGSTOP;
    }

    fn kill(&mut self, i: usize) {
        if self.members[i].paused {
            self.signal(i, libc::SIGCONT);
        }
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.client).collect()
    }

    fn isolate(&mut self, i: usize) {
        let subnet = self.subnet.as_mut().expect("a cluster in namespaces");
        subnet.isolate(i).unwrap_or_else(|e| panic!("{e}"));
    }

    fn heal(&mut self) {
        let subnet = self.subnet.as_mut().expect("a cluster in namespaces");
        subnet.heal().unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// A client writing as fast as it is answered, moving along the connect
/// string when a member stops answering; records when each write was
/// acknowledged.
fn writer(addrs: Vec<SocketAddr>, stop: Arc<AtomicBool>, acks: Arc<Mutex<Vec<Instant>>>) {
    let mut options = ConnectOptions {
        timeout_ms: 30_000,
        io_timeout: Duration::from_secs(1),
        ..ConnectOptions::default()
    };
    let mut client: Option<Client> = None;
    let mut next = 0;
    let set = Request::SetData(SetDataRequest {
        path: "/failover".into(),
        data: Some(vec![b'x'; 128]),
        version: -1,
    });
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = client.as_mut() else {
            let addr = addrs[next % addrs.len()];
            next += 1;
            match Client::connect(addr, &options) {
                Ok(c) => {
                    options.session_id = c.session_id();
                    options.passwd = c.passwd().to_vec();
                    client = Some(c);
                }
                Err(ClientError::SessionRefused) => options.session_id = 0,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
            continue;
        };
        match c.call(&set) {
            Ok(r) if r.header.err == 0 => {
                options.last_zxid_seen = c.last_zxid();
                acks.lock().expect("acks").push(Instant::now());
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => client = None,
        }
    }
}

#[derive(Clone, Copy)]
enum Nemesis {
    Kill,
    Pause,
    /// A partition between the leader and the other members (clients
    /// still reach every member).
    Isolate,
}

/// Longest gap between acknowledged writes in each round of `nemesis`.
fn failover(cluster: &mut Cluster, nemesis: Nemesis, rounds: usize) -> Vec<Duration> {
    let mut setup =
        Client::connect(cluster.addrs()[0], &ConnectOptions::default()).expect("connect");
    let _ = setup.call(&Request::Create(CreateRequest {
        path: "/failover".into(),
        data: Some(Vec::new()),
        acl: vec![Acl::new(perms::ALL, "world", "anyone")],
        flags: 0,
    }));
    drop(setup);
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let thread = {
        let (addrs, stop, acks) = (cluster.addrs(), stop.clone(), acks.clone());
        std::thread::spawn(move || writer(addrs, stop, acks))
    };
    let acked_after = |t: Instant| acks.lock().expect("acks").last().is_some_and(|&a| a > t);
    let mut gaps = Vec::new();
    for round in 0..rounds {
        let leader = cluster.settle(Duration::from_secs(120));
        let warm = Instant::now();
        while !acked_after(warm + Duration::from_millis(300)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let from = Instant::now();
        match nemesis {
            Nemesis::Kill => cluster.kill(leader),
            Nemesis::Pause => cluster.signal(leader, libc::SIGSTOP),
            Nemesis::Isolate => cluster.isolate(leader),
        }
        // Writes in flight may still complete just after the nemesis (a
        // partition does not stop what was already replicated), so the
        // stall is over only once writes flow again, well after it.
        let deadline = from + Duration::from_secs(120);
        while Instant::now() < from + Duration::from_millis(200)
            || !acked_after(Instant::now() - Duration::from_millis(50))
        {
            assert!(
                Instant::now() < deadline,
                "no write acknowledged within 120 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let end = Instant::now() + Duration::from_millis(300);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let gap = {
            let acks = acks.lock().expect("acks");
            let window: Vec<Instant> = acks
                .iter()
                .copied()
                .filter(|&a| a + Duration::from_secs(1) >= from)
                .collect();
            window
                .windows(2)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or_default()
        };
        eprintln!(
            "ensemble: {} {} round {round}: {gap:?}",
            cluster.kind.name(),
            nemesis_name(nemesis)
        );
        gaps.push(gap);
        match nemesis {
            Nemesis::Kill => cluster.spawn(leader),
            Nemesis::Pause => cluster.signal(leader, libc::SIGCONT),
            Nemesis::Isolate => {
                // The old leader must have given up office before the
                // partition heals, or the next round would measure nothing.
                let deadline = Instant::now() + Duration::from_secs(120);
                while cluster.mode(leader).as_deref() == Some("leader") {
                    assert!(Instant::now() < deadline, "the cut-off leader kept leading");
                    std::thread::sleep(Duration::from_millis(20));
                }
                cluster.heal();
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = thread.join();
    gaps
}

fn nemesis_name(n: Nemesis) -> &'static str {
    match n {
        Nemesis::Kill => "kill -9 of the leader",
        Nemesis::Pause => "SIGSTOP of the leader",
        Nemesis::Isolate => "partition isolating the leader",
    }
}

/// Counts leader changes seen by polling `srvr` on every member of each
/// cluster every 100 ms: a different member leading, or no member leading
/// for half a second or more (a re-election of the same one), counts once.
struct LeaderWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<usize>>,
}

impl LeaderWatch {
    fn start(clusters: &[&Cluster]) -> LeaderWatch {
        let addrs: Vec<Vec<SocketAddr>> = clusters.iter().map(|c| c.addrs()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut changes = vec![0; addrs.len()];
                let mut last: Vec<Option<usize>> = vec![None; addrs.len()];
                let mut leaderless_since: Vec<Option<Instant>> = vec![None; addrs.len()];
                let mut counted_gap = vec![false; addrs.len()];
                while !stop.load(Ordering::Relaxed) {
                    for (c, members) in addrs.iter().enumerate() {
                        let modes: Vec<Option<String>> = members
                            .iter()
                            .map(|&a| four_letter_word(a, "srvr"))
                            .collect();
                        let leader = modes
                            .iter()
                            .position(|m| m.as_deref().is_some_and(|m| m.contains("Mode: leader")));
                        let all_answered = modes.iter().all(Option::is_some);
                        match leader {
                            Some(l) => {
                                if last[c].is_some_and(|p| p != l) {
                                    changes[c] += 1;
                                }
                                last[c] = Some(l);
                                leaderless_since[c] = None;
                                counted_gap[c] = false;
                            }
                            None if all_answered => {
                                let since = *leaderless_since[c].get_or_insert_with(Instant::now);
                                if since.elapsed() >= Duration::from_millis(500) && !counted_gap[c]
                                {
                                    changes[c] += 1;
                                    counted_gap[c] = true;
                                }
                            }
                            None => {}
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                changes
            })
        };
        LeaderWatch { stop, thread }
    }

    fn finish(self) -> Vec<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("leader watch")
    }
}

/// Throughput and p99 of one loadgen cell against both ensembles.
fn throughput(
    clusters: &[&Cluster],
    label: &str,
    cell: &[&str],
    seconds: u64,
) -> Vec<(f64, Option<f64>)> {
    let dir = repo().join("target/ensemble-bench");
    let json = dir.join("cell.json");
    let mut command = Command::new(repo().join("target/release/loadgen"));
    for c in clusters {
        let addrs: Vec<String> = c.addrs().iter().map(SocketAddr::to_string).collect();
        let name = match c.kind {
            Kind::Zoocore => "zoocore",
            Kind::Zookeeper => "zookeeper",
        };
        command
            .arg("--target")
            .arg(format!("{name}={}", addrs.join(",")));
    }
    command
        .arg(format!("--seconds={seconds}"))
        .arg("--warmup=2")
        .arg("--threads=3")
        .arg("--quiet")
        .arg("--json")
        .arg(&json)
        .args(cell);
    eprintln!("ensemble: {label} ...");
    let out = command.output().expect("run target/release/loadgen");
    assert!(
        out.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("loadgen JSON")).expect("JSON");
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let p99 = ["read", "write"].into_iter().find_map(|name| {
                r["classes"]
                    .as_array()?
                    .iter()
                    .find(|c| c["class"] == name)?["p99_us"]
                    .as_f64()
            });
            (r["ops_per_sec"].as_f64().unwrap_or(0.0), p99)
        })
        .collect()
}

fn stats(gaps: &[Duration]) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = gaps.iter().map(|g| g.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let median = if ms.is_empty() { 0.0 } else { ms[ms.len() / 2] };
    (
        ms.first().copied().unwrap_or(0.0),
        median,
        ms.last().copied().unwrap_or(0.0),
    )
}

fn main() {
    let args = Args::parse();
    if args.only_catch_up {
        catch_up_section(&args);
        return;
    }
    if args.only_partition {
        let mut md = String::from("\n## Ensemble: 3 members each, on this machine\n\n");
        partition_rows(&args, &mut md);
        write_section(&args, &md);
        return;
    }
    let mut zoocore = Cluster::start(Kind::Zoocore, None);
    let mut zookeeper = Cluster::start(Kind::Zookeeper, None);
    // Healthy ensembles must not elect: watched while idle, then while the
    // throughput cells run (loadgen loads one system, then the other).
    let idle = LeaderWatch::start(&[&zoocore, &zookeeper]);
    std::thread::sleep(Duration::from_secs(args.idle_seconds));
    let idle_changes = idle.finish();
    let busy = LeaderWatch::start(&[&zoocore, &zookeeper]);
    let busy_started = Instant::now();
    let mut md = String::from(
        "\n## Ensemble: 3 members each, on this machine\n\n\
         From `target/release/ensemble` (run by `benches/compare.sh`): both ensembles run at \
         once on the same two vCPUs with the load generator; zoo.cfg has tickTime=2000, \
         initLimit=10, syncLimit=5 for both, zoocore's raft timing at its defaults. \
         loadgen spreads 32 sessions over the three members of each.\n\n\
         | workload (32 sessions) | zoocore | Apache ZooKeeper | zoocore / ZooKeeper |\n|---|---|---|---|\n",
    );
    for (label, cell) in [
        ("getData", &["--sessions=32", "--read-pct=100"][..]),
        ("setData", &["--sessions=32", "--read-pct=0"][..]),
        ("90/10 mix", &["--sessions=32", "--read-pct=90"][..]),
        (
            "setData, 16 in flight",
            &["--sessions=32", "--read-pct=0", "--depth=16"][..],
        ),
    ] {
        let r = throughput(&[&zoocore, &zookeeper], label, cell, args.seconds);
        let fmt = |(ops, p99): (f64, Option<f64>)| {
            format!(
                "{:.1}k ops/s, p99 {}",
                ops / 1000.0,
                p99.map_or("-".into(), |us| format!("{:.2} ms", us / 1000.0))
            )
        };
        let ratio = if r[1].0 > 0.0 {
            format!("{:.2}×", r[0].0 / r[1].0)
        } else {
            "-".into()
        };
        let _ = writeln!(md, "| {label} | {} | {} | {ratio} |", fmt(r[0]), fmt(r[1]));
    }
    let busy_seconds = busy_started.elapsed().as_secs();
    let busy_changes = busy.finish();
    let _ = write!(
        md,
        "\nLeader changes of the healthy ensembles (false elections), polling `srvr` on every member \
         every 100 ms: {} s idle: zoocore {}, ZooKeeper {}; during the {busy_seconds} s of the cells \
         above (each system under load about half of it): zoocore {}, ZooKeeper {}.\n",
        args.idle_seconds, idle_changes[0], idle_changes[1], busy_changes[0], busy_changes[1]
    );
    let _ = write!(
        md,
        "\nFailover: the longest gap between acknowledged writes of one client writing as fast as it \
         is answered and moving along the connect string, {} rounds of each (min / median / max):\n\n\
         | nemesis | zoocore | Apache ZooKeeper | median ratio |\n|---|---|---|---|\n",
        args.rounds
    );
    let fmt = |(lo, mid, hi): (f64, f64, f64)| format!("{lo:.0} / {mid:.0} / {hi:.0} ms");
    let mut row = |nemesis: Nemesis, z: (f64, f64, f64), k: (f64, f64, f64)| {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2}× |",
            nemesis_name(nemesis),
            fmt(z),
            fmt(k),
            if k.1 > 0.0 { z.1 / k.1 } else { 0.0 }
        );
    };
    for nemesis in [Nemesis::Kill, Nemesis::Pause] {
        let z = stats(&failover(&mut zoocore, nemesis, args.rounds));
        let k = stats(&failover(&mut zookeeper, nemesis, args.rounds));
        row(nemesis, z, k);
    }
    drop(zoocore);
    drop(zookeeper);
    partition_rows(&args, &mut md);
    write_section(&args, &md);
    catch_up_section(&args);
}

/// The newest complete file in `dir` whose name starts with `prefix`: its size.
fn newest_file_size(dir: &std::path::Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with(prefix) && !name.ends_with(".tmp")
                })
                .filter_map(|e| e.metadata().ok())
                .max_by_key(|m| m.modified().ok())
                .map_or(0, |m| m.len())
        })
        .unwrap_or(0)
}

fn zxid(addr: SocketAddr) -> Option<i64> {
    four_letter_word(addr, "srvr")?
        .lines()
        .find_map(|l| l.strip_prefix("Zxid: 0x"))
        .and_then(|hex| i64::from_str_radix(hex.trim(), 16).ok())
}

/// One system's catch-up: (snapshot bytes, time until the wiped follower
/// follows with the leader's zxid).
fn catch_up(kind: Kind, znodes: usize) -> (u64, Duration) {
    // zoocore keeps 1000 raft entries before its newest snapshot, and 1M
    // creates make only a few hundred (group commits): keep fewer, so the
    // member gets a snapshot, as ZooKeeper's does (it sends one to any
    // follower further behind than its 500 newest proposals).
    let extra = match kind {
        Kind::Zoocore => "zoocore.raftRetainedEntries=10\n",
        Kind::Zookeeper => "",
    };
    let mut cluster = Cluster::start_with(kind, None, extra);
    let leader = cluster.settle(Duration::from_secs(120));
    let started = Instant::now();
    populate(cluster.members[leader].client, znodes, 128);
    eprintln!(
        "ensemble: {} populated with {znodes} znodes in {:.0?}",
        kind.name(),
        started.elapsed()
    );
    if kind == Kind::Zoocore {
        // A snapshot begun after the last create holds all of them: write
        // (setData on one znode) until the leader has one. ZooKeeper sends
        // its tree from memory, so it needs no such wait.
        let populated = std::time::SystemTime::now();
        let leader_data = cluster.members[leader].dir.join("data");
        let snapshot_since = || {
            std::fs::read_dir(&leader_data).is_ok_and(|entries| {
                entries.flatten().any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with("zoocore.raftsnap.")
                        && !name.ends_with(".tmp")
                        && e.metadata()
                            .and_then(|m| m.modified())
                            .is_ok_and(|t| t > populated)
                })
            })
        };
        let mut c =
            zoocore_benches::connect(cluster.members[leader].client, Duration::from_secs(60))
                .expect("connect to the leader");
        let deadline = Instant::now() + Duration::from_secs(300);
        while !snapshot_since() {
            assert!(
                Instant::now() < deadline,
                "zoocore's leader took no snapshot"
            );
            for _ in 0..1000 {
                c.send(&Request::SetData(SetDataRequest {
                    path: path(0),
                    data: Some(vec![b'w'; 128]),
                    version: -1,
                }))
                .expect("send setData");
            }
            for _ in 0..1000 {
                assert_eq!(c.recv().expect("setData reply").header.err, 0);
            }
        }
    }
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    cluster.kill(follower);
    let data = cluster.members[follower].dir.join("data");
    for entry in std::fs::read_dir(&data).expect("member data dir").flatten() {
        if entry.file_name() != "myid" {
            let path = entry.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
    let target = zxid(cluster.members[leader].client).expect("the leader's zxid");
    let started = Instant::now();
    cluster.spawn(follower);
    let addr = cluster.members[follower].client;
    let deadline = started + Duration::from_secs(900);
    while !(cluster.mode(follower).as_deref() == Some("follower")
        && zxid(addr).is_some_and(|z| z >= target))
    {
        assert!(
            Instant::now() < deadline,
            "{} did not catch up within 900 s",
            kind.name()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    // What crossed: the snapshot the member writes once it has it (it may
    // serve from it a moment before the file is durable).
    let received = || match kind {
        Kind::Zoocore => newest_file_size(&data, "zoocore.raftsnap."),
        Kind::Zookeeper => newest_file_size(&data.join("version-2"), "snapshot."),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while received() == 0 {
        assert!(
            Instant::now() < deadline,
            "{} caught up without writing a snapshot",
            kind.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (received(), took)
}

fn catch_up_section(args: &Args) {
    if args.catch_up_znodes == 0 {
        return;
    }
    let n = args.catch_up_znodes;
    let z = catch_up(Kind::Zoocore, n);
    let k = catch_up(Kind::Zookeeper, n);
    let row = |name: &str, (bytes, took): (u64, Duration)| {
        format!(
            "| {name} | {:.0} MiB | {:.2} s | {:.0} MiB/s |\n",
            bytes as f64 / (1 << 20) as f64,
            took.as_secs_f64(),
            bytes as f64 / (1 << 20) as f64 / took.as_secs_f64().max(1e-3)
        )
    };
    let md = format!(
        "\n## Ensemble catch-up: a member with an empty disk\n\n\
         From `target/release/ensemble --only-catch-up` (also at the end of a full run): a \
         3-member ensemble is filled with {n} znodes of 128 B through its leader, one follower is \
         killed, its data dir emptied but for myid, and started again; timed from its start \
         until `srvr` says it follows with the leader's zxid. It gets the leader's snapshot \
         (its size as the member wrote it below; the rate is that size over the whole time, \
         process start included), then the log after it; zoocore keeps 10 raft entries before \
         a snapshot here (`zoocore.raftRetainedEntries`, 1000 by default, which with group \
         commits would let it catch up from the log alone). Each system alone on the machine.\n\n\
         | system | snapshot received | catch-up time | rate |\n|---|---|---|---|\n{}{}",
        row("zoocore", z),
        row("Apache ZooKeeper", k)
    );
    replace_section(args, "\n## Ensemble catch-up", &md);
}

/// The partition nemesis, on a second pair of ensembles whose members each
/// run in their own network namespace.
fn partition_rows(args: &Args, md: &mut String) {
    let subnet = || Subnet::create(3).unwrap_or_else(|e| panic!("{e}"));
    let z = {
        let mut c = Cluster::start(Kind::Zoocore, Some(subnet()));
        stats(&failover(&mut c, Nemesis::Isolate, args.rounds))
    };
    let k = {
        let mut c = Cluster::start(Kind::Zookeeper, Some(subnet()));
        stats(&failover(&mut c, Nemesis::Isolate, args.rounds))
    };
    let fmt = |(lo, mid, hi): (f64, f64, f64)| format!("{lo:.0} / {mid:.0} / {hi:.0} ms");
    let _ = writeln!(
        md,
        "| {} | {} | {} | {:.2}× |",
        nemesis_name(Nemesis::Isolate),
        fmt(z),
        fmt(k),
        if k.1 > 0.0 { z.1 / k.1 } else { 0.0 }
    );
    md.push_str(
        "\nThe partition rows run a second pair of ensembles, each member in its own network \
         namespace joined by a bridge (`testkit/src/netns.rs`); the partition is a pair of \
         blackhole routes between the leader and each other member, and the client reaches every \
         member throughout.\n",
    );
}

fn write_section(args: &Args, md: &str) {
    replace_section(args, "\n## Ensemble: 3 members each", md);
}

fn replace_section(args: &Args, heading: &str, md: &str) {
    zoocore_benches::replace_section(&repo().join(&args.out), heading, md);
}
