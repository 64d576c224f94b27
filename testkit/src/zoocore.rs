//! A zoocore server process for tests (started from the binary cargo built,
//! on a free loopback port, with its own data dir; killed and removed on
//! drop), and the differential harness's [`Target`] that talks to it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::records::{PathRequest, WatcherEvent};
use zoocore_net::{Request, Response};

use crate::differential::Target;
use crate::zk::{free_port, wait_until_serving};

pub struct ZoocoreProcess {
    child: Option<Child>,
    binary: PathBuf,
    pub dir: PathBuf,
    pub addr: SocketAddr,
}

impl ZoocoreProcess {
    /// Starts `binary` with a zoo.cfg made of the defaults below plus `extra` lines.
    pub fn start(binary: &Path, extra: &str) -> ZoocoreProcess {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("zoocore-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create test dir");
        std::fs::write(
            dir.join("zoo.cfg"),
            format!(
                "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=*\nextendedTypesEnabled=true\n{extra}\n",
                dir.join("data").display()
            ),
        )
        .expect("write zoo.cfg");
        let mut process = ZoocoreProcess {
            child: None,
            binary: binary.to_owned(),
            dir,
            addr: ([127, 0, 0, 1], port).into(),
        };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("zoocore.log"))
            .expect("open server log");
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(self.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start zoocore");
        let child = self.child.insert(child);
        wait_until_serving(self.addr, child, "zoocore", &self.dir);
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data dir and port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Stops with SIGTERM and returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("zoocore did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs one of the binary's tools (`log dump`, ...) on this server's config.
    pub fn tool(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.binary)
            .arg("--config")
            .arg(self.dir.join("zoo.cfg"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run a zoocore tool")
    }

    /// Runs the binary on this server's config (not as this server) and
    /// expects it to refuse to start; returns what it printed on stderr.
    pub fn refused_start(&self) -> String {
        let mut child = Command::new(&self.binary)
            .arg("--config")
            .arg(self.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start zoocore");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("zoocore started although it should have refused");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(!status.success(), "zoocore exited with success");
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        stderr
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("zoocore.log")).unwrap_or_default()
    }
}

impl Drop for ZoocoreProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// zoocore over the wire, one client connection per session.
pub struct WireTarget {
    pub server: ZoocoreProcess,
    clients: HashMap<i64, Client>,
    closed_events: HashMap<i64, Vec<WatcherEvent>>,
}

impl WireTarget {
    pub fn new(server: ZoocoreProcess) -> WireTarget {
        WireTarget {
            server,
            clients: HashMap::new(),
            closed_events: HashMap::new(),
        }
    }
}

impl Target for WireTarget {
    fn open_session(&mut self, timeout: i32, _now: i64) -> i64 {
        let options = ConnectOptions {
            timeout_ms: timeout,
            io_timeout: Duration::from_secs(20),
            ..Default::default()
        };
        let client = Client::connect(self.server.addr, &options).expect("connect to zoocore");
        let id = client.session_id();
        self.clients.insert(id, client);
        id
    }

    fn request(&mut self, session: i64, request: &Request, _now: i64) -> (i32, Response, i64) {
        let client = self
            .clients
            .get_mut(&session)
            .expect("zoocore session is open");
        let answered_by_shard = !request.is_write()
            && !matches!(
                request,
                Request::Sync(_) | Request::CloseSession | Request::Auth(_)
            );
        if answered_by_shard {
            // This session's shard may not have applied yet the batch that
            // answered another session's last request, or a txn the server
            // made itself (ZooKeeper orders reads per session only): a sync
            // makes the reply zxid comparable with ZooKeeper's.
            let synced = client.call(&Request::Sync(PathRequest { path: "/".into() }));
            assert_eq!(synced.map(|r| r.header.err).ok(), Some(0), "sync");
        }
        let reply = client
            .call(request)
            .unwrap_or_else(|e| panic!("zoocore call failed: {e} for {request:?}"));
        if matches!(request, Request::CloseSession) {
            let mut client = self.clients.remove(&session).expect("open");
            self.closed_events.insert(session, client.take_events());
        }
        (reply.header.err, reply.body, reply.header.zxid)
    }

    fn take_events(&mut self, session: i64) -> Vec<WatcherEvent> {
        if let Some(events) = self.closed_events.remove(&session) {
            return events;
        }
        let client = self
            .clients
            .get_mut(&session)
            .expect("zoocore session is open");
        // A sync is answered once this session's shard applied everything
        // committed before it, so every event due has been queued ahead.
        client
            .call(&Request::Sync(PathRequest { path: "/".into() }))
            .expect("sync");
        client.take_events()
    }
}
