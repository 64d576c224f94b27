//! What the system benchmarks share: starting zoocore and Apache ZooKeeper
//! with the same zoo.cfg on free loopback ports, filling them with znodes,
//! and reading their processes' memory from /proc. The criterion
//! micro-benchmarks live beside this file; see README.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::consts::perms;
use zoocore_net::records::{CreateRequest, PathWatchRequest};
use zoocore_net::{Acl, Request, Response};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Zoocore,
    Zookeeper,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Zoocore => "zoocore",
            Kind::Zookeeper => "Apache ZooKeeper",
        }
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub struct Server {
    pub kind: Kind,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    /// A zoocore binary other than target/release/zoocore.
    binary: Option<PathBuf>,
    child: Option<Child>,
}

impl Server {
    /// A fresh data dir and zoo.cfg under `target/<bench>/<label>`; not started yet.
    pub fn new(kind: Kind, bench: &str, label: &str, extra: &str) -> Server {
        let port = free_port();
        let dir = repo().join("target").join(bench).join(label);
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
            binary: None,
            child: None,
        }
    }

    /// Runs this zoocore binary instead of target/release/zoocore.
    pub fn with_binary(mut self, binary: PathBuf) -> Server {
        self.binary = Some(binary);
        self
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("server log");
        let mut command = match self.kind {
            Kind::Zoocore => {
                let binary = self
                    .binary
                    .clone()
                    .unwrap_or_else(|| repo().join("target/release/zoocore"));
                let mut c = Command::new(binary);
                c.arg("--config").arg(self.dir.join("zoo.cfg"));
                c
            }
            Kind::Zookeeper => zookeeper_command(
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                &self.dir.join("zoo.cfg"),
            ),
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
    pub fn start(&mut self, probe: &str, value_size: usize) -> Duration {
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

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the server process, from /proc.
    pub fn rss_mib(&self) -> f64 {
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

    pub fn snapshot_files(&self) -> usize {
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

    /// The data dir's size: the files' lengths added up.
    pub fn data_bytes(&self) -> u64 {
        sum_files(&self.dir.join("data"), &|m| m.len())
    }

    /// The disk space the data dir's files take (as `du` counts: a sparse
    /// file's holes take none).
    pub fn data_allocated_bytes(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        sum_files(&self.dir.join("data"), &|m| m.blocks() * 512)
    }
}

/// Apache ZooKeeper's JVM running `main` (standalone or quorum) on `cfg`.
fn sum_files(dir: &Path, size: &dyn Fn(&std::fs::Metadata) -> u64) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => sum_files(&e.path(), size),
                Ok(m) => size(&m),
                Err(_) => 0,
            })
            .sum()
    })
}

pub fn zookeeper_command(main: &str, cfg: &Path) -> Command {
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
    .arg(main)
    .arg(cfg);
    c
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn connect(addr: SocketAddr, io_timeout: Duration) -> Option<Client> {
    let options = ConnectOptions {
        timeout_ms: 30_000,
        io_timeout,
        ..Default::default()
    };
    Client::connect(addr, &options).ok()
}

/// The data length of `path` if the server serves it. A server still
/// loading may accept a connection and not answer: give up on it quickly.
pub fn read_back(addr: SocketAddr, path: &str) -> Option<usize> {
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
pub fn path(i: usize) -> String {
    format!("/loadgen/n{i:07}")
}

/// Creates `/loadgen` and `n` znodes under it from 32 sessions with 64
/// requests in flight each (writes from many sessions share group commits).
pub fn populate(addr: SocketAddr, n: usize, value_size: usize) {
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

/// Microseconds as a table shows them.
pub fn fmt_us(v: Option<f64>) -> String {
    match v {
        Some(us) if us >= 1000.0 => format!("{:.1} ms", us / 1000.0),
        Some(us) => format!("{us:.0} µs"),
        None => "-".into(),
    }
}

/// `a / b` as a ratio, `-` when `b` is zero.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "-".into()
    }
}

/// The machine's CPUs, memory and kernel, for a report's header.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kib: f64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.0} GiB", kib / 1048576.0))
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} × {cpu}, {mem} RAM, Linux {}", kernel.trim())
}

/// What `git` prints for `args` in the repository (empty on failure).
pub fn git(args: &[&str]) -> String {
    Command::new("git")
        .args(args)
        .current_dir(repo())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Puts `md` in place of the section of the report at `path` that starts
/// with `heading` (up to the next `## ` heading), or at its end.
pub fn replace_section(path: &Path, heading: &str, md: &str) {
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    if let Some(at) = text.find(heading) {
        let end = text[at + heading.len()..]
            .find("\n## ")
            .map_or(text.len(), |e| at + heading.len() + e);
        text.replace_range(at..end, "");
        text.insert_str(at, md);
    } else {
        text.push_str(md);
    }
    std::fs::write(path, text).expect("write the report");
    eprint!("{md}");
}
