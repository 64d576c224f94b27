//! `durability`: zoocore and Apache ZooKeeper side by side on recovery.
//!
//! - `restart`: fill a fresh server with N znodes of V bytes, stop it with
//!   SIGTERM, start it again and time spawn -> first successful getData of
//!   the last znode written. Repeated, median reported.
//! - `stall`: on a server holding N znodes, run `loadgen` (90% reads) once
//!   with snapshots off (snapCount 10^9) and once with snapCount low enough
//!   that snapshots of the whole tree run all through the measurement, and
//!   compare latency percentiles.
//!
//! Both servers get the same zoo.cfg (fsync on, loopback, data under
//! `target/durability/`, same disk), ZooKeeper with the JVM's default heap.
//! Results are printed as Markdown, with the commit and machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::consts::perms;
use zoocore_net::records::{CreateRequest, PathWatchRequest};
use zoocore_net::{Acl, Request, Response};

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
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Zoocore,
    Zookeeper,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Zoocore => "zoocore",
            Kind::Zookeeper => "Apache ZooKeeper",
        }
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct Server {
    kind: Kind,
    dir: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Server {
    /// A fresh data dir and zoo.cfg; not started yet.
    fn new(kind: Kind, label: &str, extra: &str) -> Server {
        let port = free_port();
        let dir = repo().join("target/durability").join(label);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("create bench dir");
        std::fs::write(
            dir.join("zoo.cfg"),
            format!(
                "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=*\n{extra}\n",
                dir.join("data").display()
            ),
        )
        .expect("write zoo.cfg");
        Server {
            kind,
            dir,
            addr: ([127, 0, 0, 1], port).into(),
            child: None,
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("server log");
        let mut command = match self.kind {
            Kind::Zoocore => {
                let mut c = Command::new(repo().join("target/release/zoocore"));
                c.arg("--config").arg(self.dir.join("zoo.cfg"));
                c
            }
            Kind::Zookeeper => {
                let classpath = Command::new("bash")
                    .arg(repo().join("scripts/zk-classpath.sh"))
                    .output()
                    .expect("scripts/zk-classpath.sh");
                assert!(classpath.status.success(), "run scripts/install-deps.sh");
                let mut c = Command::new("java");
                c.arg(format!(
                    "-Dlog4j.configuration=file:{}",
                    repo().join("scripts/zk-log4j.properties").display()
                ))
                .arg("-cp")
                .arg(String::from_utf8_lossy(&classpath.stdout).trim())
                .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
                .arg(self.dir.join("zoo.cfg"));
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start the server (cargo build --release first)");
        self.child = Some(child);
    }

    /// Starts the server and returns how long until `probe` was read back.
    fn start(&mut self, probe: &str, value_size: usize) -> Duration {
        let began = Instant::now();
        self.spawn();
        let deadline = began + Duration::from_secs(600);
        loop {
            if let Ok(Some(status)) = self.child.as_mut().expect("started").try_wait() {
                panic!("server exited with {status}; see {}", self.dir.display());
            }
            if read_back(self.addr, probe) == Some(value_size) {
                return began.elapsed();
            }
            assert!(Instant::now() < deadline, "no read within 10 minutes");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Resident memory of the server process, from /proc.
    fn rss_mib(&self) -> f64 {
        let pid = self.child.as_ref().map_or(0, Child::id);
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            })
            .map_or(0.0, |kib| kib / 1024.0)
    }

    fn snapshot_files(&self) -> usize {
        let (dir, prefix) = match self.kind {
            Kind::Zoocore => (self.dir.join("data"), "zoocore.snap."),
            Kind::Zookeeper => (self.dir.join("data/version-2"), "snapshot."),
        };
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count()
        })
    }

    fn data_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p).map_or(0, |entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => walk(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
        }
        walk(&self.dir.join("data"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn connect(addr: SocketAddr, io_timeout: Duration) -> Option<Client> {
    let options = ConnectOptions {
        timeout_ms: 30_000,
        io_timeout,
        ..Default::default()
    };
    Client::connect(addr, &options).ok()
}

/// The data length of `path` if the server serves it. A server still
/// loading may accept a connection and not answer: give up on it quickly.
fn read_back(addr: SocketAddr, path: &str) -> Option<usize> {
    let mut c = connect(addr, Duration::from_millis(250))?;
    let reply = c
        .call(&Request::GetData(PathWatchRequest {
            path: path.into(),
            watch: false,
        }))
        .ok()?;
    match reply.body {
        Response::GetData(r) if reply.header.err == 0 => Some(r.data.map_or(0, |d| d.len())),
        _ => None,
    }
}

/// loadgen's paths, so `loadgen --no-create` runs on what this wrote.
fn path(i: usize) -> String {
    format!("/loadgen/n{i:07}")
}

/// Creates `/loadgen` and `n` znodes under it from 32 sessions with 64
/// requests in flight each (writes from many sessions share group commits).
fn populate(addr: SocketAddr, n: usize, value_size: usize) {
    const SESSIONS: usize = 32;
    const DEPTH: usize = 64;
    let create = move |p: String| {
        Request::Create(CreateRequest {
            path: p,
            data: Some(vec![b'v'; value_size]),
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
            flags: 0,
        })
    };
    let mut c = connect(addr, Duration::from_secs(60)).expect("connect to populate");
    let reply = c.call(&create("/loadgen".into())).expect("create /loadgen");
    assert_eq!(reply.header.err, 0, "create /loadgen");
    let workers: Vec<_> = (0..SESSIONS)
        .map(|s| {
            std::thread::spawn(move || {
                let mut c = connect(addr, Duration::from_secs(60)).expect("connect to populate");
                let mut inflight = 0;
                for i in (s..n).step_by(SESSIONS) {
                    c.send(&create(path(i))).expect("send create");
                    inflight += 1;
                    if inflight == DEPTH {
                        assert_eq!(c.recv().expect("create reply").header.err, 0);
                        inflight -= 1;
                    }
                }
                for _ in 0..inflight {
                    assert_eq!(c.recv().expect("create reply").header.err, 0);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("populate thread");
    }
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
            let mut server = Server::new(kind, &label, "");
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
            let mut server = Server::new(kind, &dir, &format!("snapCount={count}\n{extra}"));
            server.start("/", 0);
            populate(server.addr, znodes, args.value_size);
            let before = server.snapshot_files();
            let out = Command::new(repo().join("target/release/loadgen"))
                .arg("--target")
                .arg(format!("{}={}", kind.name().replace(' ', "-"), server.addr))
                .args(["--read-pct", "90", "--no-create"])
                .arg(format!("--znodes={znodes}"))
                .arg(format!("--sessions={sessions}"))
                .arg(format!("--seconds={seconds}"))
                .arg(format!("--value-size={}", args.value_size))
                .output()
                .expect("run target/release/loadgen");
            let taken = server.snapshot_files() - before;
            server.stop();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "loadgen failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let field = |kind: &str, name: &str| -> String {
                text.lines()
                    .find(|l| l.split_whitespace().nth(1) == Some(kind))
                    .and_then(|l| {
                        let words: Vec<&str> = l.split_whitespace().collect();
                        words
                            .iter()
                            .position(|w| *w == name)
                            .map(|i| words[i + 1].to_owned())
                    })
                    .unwrap_or_else(|| "-".into())
            };
            let ops = text
                .lines()
                .find(|l| l.split_whitespace().nth(1) == Some("read"))
                .and_then(|l| l.split_whitespace().nth(2))
                .unwrap_or("-");
            println!(
                "| {} | {label} (snapCount {count}) | {taken} | {ops} | {} us | {} us | {} us |",
                kind.name(),
                field("read", "p99"),
                field("read", "p99.9"),
                field("write", "p99.9"),
            );
        }
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
    }
}
