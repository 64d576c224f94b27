//! Starts and stops an Apache ZooKeeper server (Debian package `zookeeper`,
//! installed by `scripts/install-deps.sh`) on a free loopback port with its
//! own data dir. The process is killed and the dir removed on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ZooKeeperProcess {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// Sends a four-letter word and returns the whole answer.
pub fn four_letter_word(addr: SocketAddr, word: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(word.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

impl ZooKeeperProcess {
    /// Starts ZooKeeper standalone with extra JVM system properties
    /// (`-Dkey=value`) and waits until it serves requests.
    pub fn start(jvm_props: &[String]) -> ZooKeeperProcess {
        let root = repo_root();
        let classpath = Command::new("bash")
            .arg(root.join("scripts/zk-classpath.sh"))
            .output()
            .expect("run scripts/zk-classpath.sh");
        assert!(
            classpath.status.success(),
            "Apache ZooKeeper is not installed; run scripts/install-deps.sh ({})",
            String::from_utf8_lossy(&classpath.stderr)
        );
        let classpath = String::from_utf8_lossy(&classpath.stdout).trim().to_owned();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("zoocore-zk-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).expect("create ZooKeeper dir");
        let cfg = dir.join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=*\n",
                dir.join("data").display()
            ),
        )
        .expect("write zoo.cfg");
        let log = std::fs::File::create(dir.join("zookeeper.log")).expect("create log");
        let child = Command::new("java")
            .arg("-Xmx512m")
            .arg(format!(
                "-Dlog4j.configuration=file:{}",
                root.join("scripts/zk-log4j.properties").display()
            ))
            .args(jvm_props)
            .arg("-cp")
            .arg(classpath)
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start java (is OpenJDK installed? run scripts/install-deps.sh)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut zk = ZooKeeperProcess { child, dir, addr };
        zk.wait_until_serving();
        zk
    }

    /// `ruok` answers before the server is ready; `srvr` shows `Mode:` once it is.
    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(answer) = four_letter_word(self.addr, "srvr") {
                if answer.contains("Mode:") {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "ZooKeeper exited with {status}; log in {}",
                    self.dir.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "ZooKeeper did not start within 60 s; log in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ZooKeeperProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
