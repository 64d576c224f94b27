//! An ensemble of real processes for tests: N zoocore members (the binary
//! cargo built) or N Apache ZooKeeper members (QuorumPeerMain), on free
//! ports on loopback (or each in its own network namespace, when a test
//! cuts them apart: `netns.rs`), each with its own data dir and `myid`;
//! killed (and their dirs removed) on drop. Members can be killed with
//! SIGKILL, paused with SIGSTOP, cut off from the others, and restarted.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{self, Subnet};
use crate::zk::{
    four_letter_word, free_port, wait_until_serving, zookeeper_classpath, zookeeper_command,
};

/// What the members run.
#[derive(Clone)]
enum Program {
    Zoocore(PathBuf),
    /// Apache ZooKeeper: its classpath and extra JVM properties.
    ZooKeeper {
        classpath: String,
        jvm_props: Vec<String>,
    },
}

pub struct Member {
    pub id: u64,
    pub client: SocketAddr,
    pub peer_port: u16,
    pub election_port: u16,
    /// zoocore members: where their Prometheus page is.
    pub metrics: Option<SocketAddr>,
    pub dir: PathBuf,
    child: Option<Child>,
    stopped: bool,
}

pub struct Ensemble {
    program: Program,
    pub root: PathBuf,
    pub members: Vec<Member>,
    /// The members' private network, when they run in namespaces. Dropped
    /// after the members are killed (fields drop after `drop` runs).
    subnet: Option<Subnet>,
}

impl Ensemble {
    /// Starts `n` members whose zoo.cfg holds the defaults below, the
    /// `server.N` lines and `extra`; waits until one of them leads.
    pub fn start(binary: &Path, n: u64, extra: &str) -> Ensemble {
        Ensemble::start_on(Program::Zoocore(binary.to_owned()), n, 0, extra, None)
    }

    /// As [`Ensemble::start`], the last `observers` of the `n` members
    /// observers (`:observer` in every server line, `peerType=observer` in
    /// their own zoo.cfg).
    pub fn start_with_observers(binary: &Path, n: u64, observers: u64, extra: &str) -> Ensemble {
        Ensemble::start_on(
            Program::Zoocore(binary.to_owned()),
            n,
            observers,
            extra,
            None,
        )
    }

    /// Apache ZooKeeper's counterpart of [`Ensemble::start_with_observers`].
    pub fn start_zookeeper_with_observers(n: u64, observers: u64, extra: &str) -> Ensemble {
        let program = Program::ZooKeeper {
            classpath: zookeeper_classpath(),
            jvm_props: Vec::new(),
        };
        Ensemble::start_on(program, n, observers, extra, None)
    }

    /// `n` Apache ZooKeeper members (Debian's package, through
    /// `scripts/zk-classpath.sh`), with extra zoo.cfg lines and JVM
    /// properties; waits until one of them leads.
    pub fn start_zookeeper(n: u64, extra: &str, jvm_props: &[String]) -> Ensemble {
        let program = Program::ZooKeeper {
            classpath: zookeeper_classpath(),
            jvm_props: jvm_props.to_vec(),
        };
        Ensemble::start_on(program, n, 0, extra, None)
    }

    /// As [`Ensemble::start`], each member in its own network namespace,
    /// so that [`Ensemble::isolate`] can cut it off. Needs root.
    pub fn start_partitionable(binary: &Path, n: u64, extra: &str) -> Ensemble {
        let subnet = Subnet::create(n as usize).unwrap_or_else(|e| panic!("{e}"));
        Ensemble::start_on(
            Program::Zoocore(binary.to_owned()),
            n,
            0,
            extra,
            Some(subnet),
        )
    }

    fn start_on(
        program: Program,
        n: u64,
        observers: u64,
        extra: &str,
        subnet: Option<Subnet>,
    ) -> Ensemble {
        let observer = |i: usize| i as u64 >= n - observers;
        let zookeeper = matches!(program, Program::ZooKeeper { .. });
        let host = |i: usize| -> IpAddr {
            subnet
                .as_ref()
                .map_or(IpAddr::from([127, 0, 0, 1]), |s| IpAddr::V4(s.addrs[i]))
        };
        let root = std::env::temp_dir().join(format!(
            "zoocore-ensemble-{}-{}",
            std::process::id(),
            free_port()
        ));
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let metrics_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let lines: String = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer, election))| {
                let h = host(i);
                let role = if observer(i) { ":observer" } else { "" };
                if zookeeper {
                    format!("server.{}={h}:{peer}:{election}{role}\n", i + 1)
                } else {
                    format!(
                        "server.{}={h}:{peer}:{election}{role};{h}:{client}\n",
                        i + 1
                    )
                }
            })
            .collect();
        let mut members = Vec::new();
        for (i, (client, peer, election)) in ports.iter().enumerate() {
            let id = i as u64 + 1;
            let metrics = metrics_ports[i];
            let dir = root.join(format!("member-{id}"));
            let data = dir.join("data");
            std::fs::create_dir_all(&data).expect("create member dir");
            std::fs::write(data.join("myid"), format!("{id}\n")).expect("write myid");
            // ZooKeeper takes its client port from its own keys here.
            let mut own = if zookeeper {
                format!(
                    "initLimit=10\nsyncLimit=5\nclientPort={client}\nclientPortAddress={}\n",
                    host(i)
                )
            } else {
                zoocore_keys(host(i), metrics)
            };
            if observer(i) {
                own.push_str("peerType=observer\n");
            }
            write_config(&dir, &data, &format!("{own}{lines}{extra}"));
            members.push(Member {
                id,
                client: SocketAddr::new(host(i), *client),
                peer_port: *peer,
                election_port: *election,
                metrics: (!zookeeper).then(|| SocketAddr::new(host(i), metrics)),
                dir,
                child: None,
                stopped: false,
            });
        }
        let mut ensemble = Ensemble {
            program,
            root,
            members,
            subnet,
        };
        for id in 1..=n {
            if zookeeper {
                // A ZooKeeper member serves nothing until a quorum has formed.
                ensemble.spawn(id);
            } else {
                ensemble.start_member(id);
            }
        }
        ensemble.wait_leader(Duration::from_secs(60));
        ensemble
    }

    /// A zoocore member that is not yet in the ensemble, as an operator
    /// starts one before `reconfig -add`: its zoo.cfg holds every current
    /// member's line (as participants), its own (an observer's if
    /// `observer`), and `extra`. Started, not waited for: it serves once a
    /// reconfig adds it. Returns its id and its server line.
    pub fn add_member(&mut self, observer: bool, extra: &str) -> (u64, String) {
        assert!(
            matches!(self.program, Program::Zoocore(_)),
            "add_member starts zoocore members"
        );
        let id = self.members.iter().map(|m| m.id).max().unwrap_or(0) + 1;
        let h = IpAddr::from([127, 0, 0, 1]);
        let (client, peer, election, metrics) =
            (free_port(), free_port(), free_port(), free_port());
        let role = if observer { "observer" } else { "participant" };
        let own_line = format!("server.{id}={h}:{peer}:{election}:{role};{h}:{client}");
        let lines: String = self
            .members
            .iter()
            .map(|m| {
                format!(
                    "server.{}={}:{}:{};{}\n",
                    m.id,
                    m.client.ip(),
                    m.peer_port,
                    m.election_port,
                    m.client
                )
            })
            .collect();
        let dir = self.root.join(format!("member-{id}"));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("create member dir");
        std::fs::write(data.join("myid"), format!("{id}\n")).expect("write myid");
        let peer_type = if observer { "peerType=observer\n" } else { "" };
        let own = zoocore_keys(h, metrics);
        write_config(
            &dir,
            &data,
            &format!("{own}{peer_type}{lines}{own_line}\n{extra}"),
        );
        self.members.push(Member {
            id,
            client: SocketAddr::new(h, client),
            peer_port: peer,
            election_port: election,
            metrics: Some(SocketAddr::new(h, metrics)),
            dir,
            child: None,
            stopped: false,
        });
        self.spawn(id);
        (id, own_line)
    }

    pub fn member(&self, id: u64) -> &Member {
        &self.members[(id - 1) as usize]
    }

    fn member_mut(&mut self, id: u64) -> &mut Member {
        &mut self.members[(id - 1) as usize]
    }

    /// `host:port,...` of every member, as clients are given it.
    pub fn connect_string(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `host:port,...` of the members that follow now. Apache ZooKeeper's
    /// leader answers `sync` without waiting for txns it has committed but not
    /// yet applied, so a test that syncs and then expects another server's
    /// acknowledged write connects its clients to followers only.
    pub fn followers_connect_string(&self) -> String {
        let followers: Vec<String> = self
            .members
            .iter()
            .filter(|m| self.mode(m.id).as_deref() == Some("follower"))
            .map(|m| m.client.to_string())
            .collect();
        assert!(!followers.is_empty(), "no member follows");
        followers.join(",")
    }

    /// Starts a member (again) on its data dir; waits until it answers.
    pub fn start_member(&mut self, id: u64) {
        self.spawn(id);
        let m = self.member_mut(id);
        let child = m.child.as_mut().expect("just spawned");
        wait_until_serving(m.client, child, &format!("member {id}"), &m.dir);
    }

    fn spawn(&mut self, id: u64) {
        let program = self.program.clone();
        let namespace = self.subnet.as_ref().map(|s| {
            s.namespace((id - 1) as usize)
                .unwrap_or_else(|e| panic!("{e}"))
        });
        let m = self.member_mut(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.join("server.log"))
            .expect("open member log");
        let mut command = match &program {
            Program::Zoocore(binary) => {
                let mut c = Command::new(binary);
                c.arg("--config").arg(m.dir.join("zoo.cfg"));
                c
            }
            Program::ZooKeeper {
                classpath,
                jvm_props,
            } => zookeeper_command(
                classpath,
                "256m",
                jvm_props,
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
            .expect("start a member (zoocore, or java for ZooKeeper)");
        m.child = Some(child);
        m.stopped = false;
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self, id: u64) {
        let m = self.member_mut(id);
        if let Some(mut child) = m.child.take() {
            if m.stopped {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        m.stopped = false;
    }

    /// SIGTERM; returns the exit code.
    pub fn terminate(&mut self, id: u64) -> Option<i32> {
        let m = self.member_mut(id);
        let mut child = m.child.take()?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("member {id} did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Cuts member `id` off from every other member; clients still reach it.
    pub fn isolate(&mut self, id: u64) {
        let subnet = self
            .subnet
            .as_mut()
            .expect("started with start_partitionable");
        subnet
            .isolate((id - 1) as usize)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Ends every partition.
    pub fn heal(&mut self) {
        let subnet = self
            .subnet
            .as_mut()
            .expect("started with start_partitionable");
        subnet.heal().unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): a member that hangs.
    pub fn pause(&mut self, id: u64, paused: bool) {
        let m = self.member_mut(id);
        if let Some(child) = &m.child {
            let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, signal) };
            m.stopped = paused;
        }
    }

    /// What `srvr` says a member is (`leader`, `follower`, `looking` when it
    /// is not serving), or `None` when it does not answer.
    pub fn mode(&self, id: u64) -> Option<String> {
        let m = self.member(id);
        if m.child.is_none() || m.stopped {
            return None;
        }
        let answer = four_letter_word(m.client, "srvr").ok()?;
        if answer.contains("not currently serving") {
            return Some("looking".into());
        }
        answer
            .lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .map(str::to_owned)
    }

    /// The running members that say they lead.
    pub fn leaders(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|m| self.mode(m.id).as_deref() == Some("leader"))
            .map(|m| m.id)
            .collect()
    }

    /// Waits until exactly one member leads and every other running,
    /// unpaused member follows or observes it; returns the leader.
    pub fn wait_leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let modes: Vec<(u64, Option<String>)> = self
                .members
                .iter()
                .map(|m| (m.id, self.mode(m.id)))
                .collect();
            let leaders: Vec<u64> = modes
                .iter()
                .filter(|(_, m)| m.as_deref() == Some("leader"))
                .map(|(id, _)| *id)
                .collect();
            let settled = modes.iter().all(|(_, m)| {
                matches!(
                    m.as_deref(),
                    None | Some("leader") | Some("follower") | Some("observer")
                )
            });
            if leaders.len() == 1 && settled {
                return leaders[0];
            }
            assert!(
                Instant::now() < deadline,
                "no single leader within {timeout:?}: {modes:?}; logs under {}",
                self.root.display()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// A running member's process id.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.member(id).child.as_ref().map(Child::id)
    }

    /// The member's log so far.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.member(id).dir.join("server.log")).unwrap_or_default()
    }
}

/// A zoocore member's own keys: one shard, its Prometheus page.
fn zoocore_keys(host: IpAddr, metrics: u16) -> String {
    format!(
        "zoocore.shards=1\nmetricsProvider.className=\
         org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
         metricsProvider.httpHost={host}\nmetricsProvider.httpPort={metrics}\n"
    )
}

/// A member's zoo.cfg: the keys every member has, then `rest`.
fn write_config(dir: &Path, data: &Path, rest: &str) {
    std::fs::write(
        dir.join("zoo.cfg"),
        format!(
            "tickTime=2000\ndataDir={}\nmaxClientCnxns=0\nadmin.enableServer=false\n\
             4lw.commands.whitelist=*\nextendedTypesEnabled=true\n{rest}\n",
            data.display()
        ),
    )
    .expect("write zoo.cfg");
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.members.iter().map(|m| m.id).collect();
        for id in ids {
            self.kill(id);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
