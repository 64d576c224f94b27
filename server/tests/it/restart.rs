//! Durability and lifecycle of the zoocore binary: acknowledged writes survive
//! SIGKILL, a torn log tail is cut, SIGTERM exits cleanly, sessions expire
//! and reconnect, and bad input only closes the offending connection.

use std::io::{Read, Write};

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::consts::perms;
use zoocore_net::records::*;
use zoocore_net::{Acl, ErrorCode, Request, Response};
use zoocore_testkit::zoocore::ZoocoreProcess;

fn server(extra: &str) -> ZoocoreProcess {
    ZoocoreProcess::start(Path::new(env!("CARGO_BIN_EXE_zoocore")), extra)
}

fn client(server: &ZoocoreProcess, timeout_ms: i32) -> Client {
    let options = ConnectOptions {
        timeout_ms,
        io_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    Client::connect(server.addr, &options).expect("connect")
}

fn create(path: &str, data: &[u8], flags: i32) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Some(data.to_vec()),
        acl: vec![Acl::new(perms::ALL, "world", "anyone")],
        flags,
    })
}

fn get(c: &mut Client, path: &str) -> (i32, Option<Vec<u8>>) {
    let reply = c
        .call(&Request::GetData(PathWatchRequest {
            path: path.into(),
            watch: false,
        }))
        .expect("getData");
    match reply.body {
        Response::GetData(r) => (reply.header.err, r.data),
        _ => (reply.header.err, None),
    }
}

/// The one log segment of a server that has written little.
fn only_segment(s: &ZoocoreProcess) -> std::path::PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(s.dir.join("data"))
        .expect("data dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("zoocore.log.") && n != "zoocore.log.next")
        })
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments.pop().expect("one segment")
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut s = server("zoocore.shards=2");
    let mut c = client(&s, 30_000);
    assert_eq!(c.call(&create("/r", b"root", 0)).unwrap().header.err, 0);
    for i in 0..200 {
        let reply = c
            .call(&create(
                &format!("/r/n{i:03}"),
                format!("v{i}").as_bytes(),
                0,
            ))
            .unwrap();
        assert_eq!(reply.header.err, 0);
    }
    let set = Request::SetData(SetDataRequest {
        path: "/r/n007".into(),
        data: Some(b"changed".to_vec()),
        version: 0,
    });
    assert_eq!(c.call(&set).unwrap().header.err, 0);
    let seq = c.call(&create("/r/s-", b"", 2)).unwrap();
    assert_eq!(seq.body, Response::Create("/r/s-0000000200".into()));
    let last_zxid = c.last_zxid();
    s.kill();
    s.restart();
    let mut c = client(&s, 30_000);
    assert!(c.last_zxid() <= last_zxid);
    for i in 0..200 {
        let expected = if i == 7 {
            b"changed".to_vec()
        } else {
            format!("v{i}").into_bytes()
        };
        assert_eq!(get(&mut c, &format!("/r/n{i:03}")), (0, Some(expected)));
    }
    // The sequence counter continues after the restart.
    let next = c.call(&create("/r/s-", b"", 2)).unwrap();
    assert_eq!(next.body, Response::Create("/r/s-0000000201".into()));
    assert!(
        c.last_zxid() > last_zxid,
        "zxids keep increasing across restarts"
    );
}

#[test]
fn a_torn_log_tail_is_cut_and_the_server_starts() {
    let mut s = server("zoocore.shards=1");
    let mut c = client(&s, 30_000);
    assert_eq!(c.call(&create("/kept", b"yes", 0)).unwrap().header.err, 0);
    s.kill();
    // A torn write leaves a partial record right after the last batch; the
    // file is zero-filled beyond it.
    let log = only_segment(&s);
    let mut image = std::fs::read(&log).expect("read log");
    let end = log_end(&s);
    assert!(end > 0, "the create is in the log");
    assert!(image[end..].iter().all(|&b| b == 0), "zeros after the log");
    image[end..end + 11]
        .copy_from_slice(&[0x00, 0x00, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
    std::fs::write(&log, &image).expect("write log");
    s.restart();
    assert!(s.log().contains("torn log tail cut"), "{}", s.log());
    let mut c = client(&s, 30_000);
    assert_eq!(get(&mut c, "/kept"), (0, Some(b"yes".to_vec())));
    assert_eq!(c.call(&create("/after", b"", 0)).unwrap().header.err, 0);
}

#[test]
fn sigterm_exits_cleanly_and_keeps_data() {
    let mut s = server("");
    let mut c = client(&s, 30_000);
    assert_eq!(c.call(&create("/t", b"x", 0)).unwrap().header.err, 0);
    assert_eq!(s.terminate(), Some(0));
    s.restart();
    let mut c = client(&s, 30_000);
    assert_eq!(get(&mut c, "/t"), (0, Some(b"x".to_vec())));
}

#[test]
fn sigterm_under_write_load_exits_cleanly_and_keeps_every_acknowledged_write() {
    let mut s = server("zoocore.shards=2");
    let addr = s.addr;
    let writer = std::thread::spawn(move || {
        let options = ConnectOptions {
            io_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        let mut c = Client::connect(addr, &options).expect("connect");
        let mut acknowledged = Vec::new();
        for i in 0.. {
            match c.call(&create(&format!("/w{i}"), b"", 0)) {
                Ok(reply) if reply.header.err == 0 => acknowledged.push(i),
                _ => break,
            }
        }
        acknowledged
    });
    // Let the writer get going, then stop the server under its load.
    let mut probe = client(&s, 30_000);
    while get(&mut probe, "/w100").0 != 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(s.terminate(), Some(0));
    let acknowledged = writer.join().expect("writer");
    assert!(acknowledged.len() > 100);
    s.restart();
    let mut c = client(&s, 30_000);
    for i in acknowledged {
        assert_eq!(
            get(&mut c, &format!("/w{i}")).0,
            0,
            "acknowledged /w{i} lost"
        );
    }
}

#[test]
fn sessions_expire_and_their_ephemerals_go() {
    let s = server("tickTime=100\nminSessionTimeout=200\nmaxSessionTimeout=1000");
    let mut owner = client(&s, 300);
    assert_eq!(owner.negotiated_timeout(), 300);
    assert_eq!(owner.call(&create("/eph", b"", 1)).unwrap().header.err, 0);
    let id = owner.session_id();
    let passwd = owner.passwd().to_vec();
    drop(owner); // the connection drops; the session lives until it times out
    let mut watcher = client(&s, 1000);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&mut watcher, "/eph").0 == 0 {
        assert!(
            Instant::now() < deadline,
            "ephemeral of an expired session still there"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Too late to reconnect: the session is gone.
    let options = ConnectOptions {
        session_id: id,
        passwd,
        ..Default::default()
    };
    assert!(Client::connect(s.addr, &options).is_err());
}

#[test]
fn reconnect_keeps_the_session_and_a_bad_password_is_refused() {
    let s = server("zoocore.shards=2");
    let mut first = client(&s, 30_000);
    assert_eq!(first.call(&create("/mine", b"", 1)).unwrap().header.err, 0);
    let (id, passwd) = (first.session_id(), first.passwd().to_vec());
    let options = ConnectOptions {
        session_id: id,
        passwd: passwd.clone(),
        last_zxid_seen: first.last_zxid(),
        ..Default::default()
    };
    let mut again = Client::connect(s.addr, &options).expect("reconnect");
    assert_eq!(again.session_id(), id);
    let eph = again
        .call(&Request::GetEphemerals(PathRequest { path: "/".into() }))
        .unwrap();
    assert_eq!(eph.body, Response::Ephemerals(vec!["/mine".into()]));
    let mut wrong = passwd;
    wrong[0] ^= 1;
    let bad = ConnectOptions {
        session_id: id,
        passwd: wrong,
        ..Default::default()
    };
    assert!(Client::connect(s.addr, &bad).is_err());
    // Seen a zxid from the future: refused.
    let future = ConnectOptions {
        session_id: id,
        passwd: again.passwd().to_vec(),
        last_zxid_seen: 1 << 40,
        ..Default::default()
    };
    assert!(Client::connect(s.addr, &future).is_err());
    again.close().expect("close");
}

#[test]
fn malformed_and_oversized_frames_close_only_their_connection() {
    let s = server("jute.maxbuffer=4096");
    let mut healthy = client(&s, 30_000);
    // Garbage after a valid handshake.
    let mut bad = client(&s, 30_000);
    let _ = bad.call(&Request::Unsupported { op: 9999 });
    // A frame over jute.maxbuffer.
    let mut raw = TcpStream::connect(s.addr).unwrap();
    raw.write_all(&(1_000_000i32).to_be_bytes()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        raw.read(&mut buf).unwrap_or(0),
        0,
        "oversized frame closes the connection"
    );
    // A request body that does not decode.
    let mut junk = client(&s, 30_000);
    // getData's opcode with an empty body, which cannot decode.
    let _ = junk.call(&Request::Unsupported {
        op: zoocore_net::OpCode::GetData.code(),
    });
    assert_eq!(
        healthy
            .call(&create("/still-fine", b"", 0))
            .unwrap()
            .header
            .err,
        0
    );
}

/// A client that sends requests but never reads the replies: the server
/// drops it once its queued output passes the limit (32 MiB with the
/// default jute.maxbuffer) instead of holding every reply in memory.
#[test]
fn a_client_that_stops_reading_is_disconnected_and_others_are_served() {
    const DATA: usize = 1_000_000;
    const REQUESTS: usize = 200; // 200 MB of replies
    let s = server("");
    let mut healthy = client(&s, 30_000);
    assert_eq!(
        healthy
            .call(&create("/big", &vec![7u8; DATA], 0))
            .unwrap()
            .header
            .err,
        0
    );
    let mut greedy = client(&s, 30_000);
    for _ in 0..REQUESTS {
        greedy
            .send(&Request::GetData(PathWatchRequest {
                path: "/big".into(),
                watch: true,
            }))
            .expect("send getData");
    }
    // The replies the socket buffers held, then the end of the connection;
    // a server that kept everything would deliver all 200 and then block.
    let mut received = 0;
    let ended = loop {
        match greedy.recv() {
            Ok(reply) => {
                assert_eq!(reply.header.err, 0);
                received += 1;
            }
            Err(e) => break e,
        }
    };
    let timed_out = matches!(&ended, zoocore_net::client::ClientError::Io(e)
        if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    assert!(
        !timed_out && received < REQUESTS,
        "the server kept a non-reading client: {received} replies, then {ended}"
    );
    assert!(
        s.log().contains("not reading its replies"),
        "the server says why it closed the connection"
    );
    let (err, data) = get(&mut healthy, "/big");
    assert_eq!((err, data.map(|d| d.len())), (0, Some(DATA)));
}

/// Runs the server binary on `config` and returns its exit status and
/// output, failing if it is still running after 20 s (it started serving).
fn run_to_exit(config: &Path) -> (std::process::ExitStatus, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zoocore"))
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start zoocore");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a second server on {} started serving", config.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    (status, stderr)
}

/// The shards listen with SO_REUSEPORT, so without a check a second server
/// would share the port, and the data dir, of a running one.
#[test]
fn a_second_server_on_the_same_port_or_data_dir_refuses_to_start() {
    let s = server("");
    let mut c = client(&s, 30_000);
    assert_eq!(c.call(&create("/kept", b"1", 0)).unwrap().header.err, 0);
    let same = s.dir.join("zoo.cfg");
    let (status, stderr) = run_to_exit(&same);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("in use by another server"), "{stderr}");
    // Another port, the same data dir.
    let text = std::fs::read_to_string(&same).unwrap();
    // The config with one key's value replaced.
    let with = |key: &str, value: &str| -> String {
        text.lines()
            .map(|l| match l.split_once('=') {
                Some((k, _)) if k == key => format!("{key}={value}\n"),
                _ => format!("{l}\n"),
            })
            .collect()
    };
    let port = zoocore_testkit::zk::free_port().to_string();
    let other = s.dir.join("other.cfg");
    std::fs::write(&other, with("clientPort", &port)).unwrap();
    let (status, stderr) = run_to_exit(&other);
    assert!(
        !status.success() && stderr.contains("zoocore.lock"),
        "{stderr}"
    );
    // Another data dir, the same port.
    let fresh = s.dir.join("fresh-data");
    let other = s.dir.join("same-port.cfg");
    std::fs::write(&other, with("dataDir", &fresh.display().to_string())).unwrap();
    let (status, stderr) = run_to_exit(&other);
    assert!(
        !status.success() && stderr.contains("is another server running"),
        "{stderr}"
    );
    // The first server still serves, with its data.
    let (err, data) = get(&mut c, "/kept");
    assert_eq!((err, data), (0, Some(b"1".to_vec())));
}

#[test]
fn four_letter_words_follow_the_whitelist() {
    let s = server("4lw.commands.whitelist=ruok,srvr");
    let ask = |word: &str| zoocore_testkit::zk::four_letter_word(s.addr, word).unwrap();
    assert_eq!(ask("ruok"), "imok");
    let srvr = ask("srvr");
    assert!(
        srvr.contains("Zookeeper version: 3.9") && srvr.contains("Mode: standalone"),
        "{srvr}"
    );
    assert_eq!(
        ask("stat"),
        "stat is not executed because it is not in the whitelist.\n"
    );
}

#[test]
fn unknown_opcodes_are_unimplemented() {
    let s = server("");
    let mut c = client(&s, 30_000);
    let reply = c.call(&Request::Unsupported { op: 9999 }).unwrap();
    assert_eq!(reply.header.err, ErrorCode::Unimplemented.code());
}

#[test]
fn empty_containers_and_expired_ttl_nodes_are_deleted() {
    let s = server("znode.container.checkIntervalMs=50");
    let mut c = client(&s, 30_000);
    let container = |path: &str| {
        Request::CreateContainer(CreateRequest {
            path: path.into(),
            data: None,
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
            flags: 4,
        })
    };
    let ttl = |path: &str, ttl: i64| {
        Request::CreateTtl(CreateTtlRequest {
            path: path.into(),
            data: None,
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
            flags: 5,
            ttl,
        })
    };
    for request in [
        container("/used"),
        create("/used/kid", b"", 0),
        container("/never-used"),
        ttl("/short", 1),
        ttl("/long", 3_600_000),
    ] {
        assert_eq!(c.call(&request).unwrap().header.err, 0, "{request:?}");
    }
    let delete = Request::Delete(DeleteRequest {
        path: "/used/kid".into(),
        version: -1,
    });
    assert_eq!(c.call(&delete).unwrap().header.err, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&mut c, "/used").0 == 0 || get(&mut c, "/short").0 == 0 {
        assert!(Instant::now() < deadline, "expired nodes were not deleted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        get(&mut c, "/never-used").0,
        0,
        "a never-used container stays"
    );
    assert_eq!(get(&mut c, "/long").0, 0, "an unexpired TTL node stays");
}

#[test]
fn max_client_cnxns_limits_connections_per_address() {
    let s = server("maxClientCnxns=2");
    let first = client(&s, 30_000);
    let second = client(&s, 30_000);
    let options = ConnectOptions {
        io_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    assert!(
        Client::connect(s.addr, &options).is_err(),
        "a third connection from 127.0.0.1 is refused"
    );
    drop(first);
    // Once one closes, a new one is admitted (the count drops when the server sees the close).
    let deadline = Instant::now() + Duration::from_secs(10);
    let third = loop {
        if let Ok(c) = Client::connect(s.addr, &options) {
            break c;
        }
        assert!(Instant::now() < deadline, "a slot did not free up");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop((second, third));
}

#[test]
fn log_dump_lists_every_txn() {
    let mut s = server("");
    let mut c = client(&s, 30_000);
    assert_eq!(c.call(&create("/dumped", b"abc", 0)).unwrap().header.err, 0);
    assert_eq!(
        c.call(&create("/dumped", b"abc", 0)).unwrap().header.err,
        ErrorCode::NodeExists.code()
    );
    s.kill();
    let out = s.tool(&["log", "dump"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("createSession timeout"), "{text}");
    assert!(
        text.contains("create /dumped persistent data 3 bytes acl [world:anyone:31]"),
        "{text}"
    );
    assert!(text.contains("error NodeExists"), "{text}");
    assert!(text.contains("3 txns in 3 batches;"), "{text}");
}

/// Caps (or lifts) the server's file-size limit, so growing the log fails as
/// it would on a full disk.
fn limit_file_size(s: &ZoocoreProcess, bytes: Option<u64>) {
    let limit = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    let pid = s.pid().expect("server running") as i32;
    // SAFETY: prlimit on our own child with a valid rlimit value.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// A small tmpfs mounted for one test, unmounted on drop (after the server
/// using it, which is declared later and so dropped first).
struct SmallFilesystem(std::path::PathBuf);

impl SmallFilesystem {
    /// `None` when this process may not mount (not root).
    fn mount(megabytes: u32) -> Option<SmallFilesystem> {
        let dir = std::env::temp_dir().join(format!(
            "zoocore-fs-{}-{}",
            std::process::id(),
            zoocore_testkit::zk::free_port()
        ));
        std::fs::create_dir_all(&dir).expect("create mount point");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(SmallFilesystem(dir))
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes until the log cannot take more, checks that reads and the server
/// go on, makes room, and checks that writes resume and nothing acknowledged
/// is lost across a restart.
fn writes_stop_and_resume(s: &mut ZoocoreProcess, make_room: impl FnOnce(&ZoocoreProcess)) {
    let mut c = client(s, 30_000);
    let mut acknowledged = Vec::new();
    let mut rejected = None;
    for i in 0..6000 {
        let path = format!("/n{i}");
        let reply = c
            .call(&create(&path, &[b'x'; 3000], 0))
            .expect("the server answers");
        match reply.header.err {
            0 => acknowledged.push(path),
            e if e == ErrorCode::SystemError.code() => {
                rejected = Some(path);
                break;
            }
            e => panic!("unexpected error {e} for {path}"),
        }
    }
    let rejected = rejected.expect("writes fail once the log cannot grow");
    assert!(s.log().contains("log write failed"), "{}", s.log());
    // Reads keep working, the server keeps answering, nothing of the failed write exists.
    assert_eq!(get(&mut c, "/before"), (0, Some(b"x".to_vec())));
    assert_eq!(get(&mut c, &rejected).0, ErrorCode::NoNode.code());
    // Reads pipelined between refused writes are answered in turn.
    let get_before = Request::GetData(PathWatchRequest {
        path: "/before".into(),
        watch: false,
    });
    let mut sent = Vec::new();
    for i in 0..4 {
        let write = create(&format!("/refused{i}"), &[b'x'; 3000], 0);
        sent.push((c.send(&write).expect("send"), ErrorCode::SystemError.code()));
        sent.push((c.send(&get_before).expect("send"), 0));
    }
    for (xid, err) in sent {
        let reply = c.recv().expect("reply");
        assert_eq!((reply.header.xid, reply.header.err), (xid, err));
    }
    assert_eq!(
        zoocore_testkit::zk::four_letter_word(s.addr, "ruok").unwrap(),
        "imok"
    );
    make_room(s);
    assert_eq!(c.call(&create("/after", b"y", 0)).unwrap().header.err, 0);
    assert_eq!(c.call(&create(&rejected, b"z", 0)).unwrap().header.err, 0);
    s.kill();
    s.restart();
    let mut c = client(s, 30_000);
    for path in acknowledged.iter().chain([&"/after".to_owned(), &rejected]) {
        assert_eq!(get(&mut c, path).0, 0, "acknowledged {path} lost");
    }
}

#[test]
fn the_next_log_segment_is_zero_filled_only_once_the_current_one_is_half_full() {
    let mut s = server(
        "zoocore.logSegmentBytes=1048576\nzoocore.maxBatchBytes=65536\njute.maxbuffer=262144\n",
    );
    let next = s.dir.join("data/zoocore.log.next");
    let mut c = client(&s, 30_000);
    assert_eq!(c.call(&create("/small", b"x", 0)).unwrap().header.err, 0);
    assert!(!next.exists(), "a log of one txn keeps no second segment");
    // A segment an earlier run prepared is dropped at start.
    assert_eq!(s.terminate(), Some(0));
    std::fs::write(&next, vec![0u8; 1 << 20]).expect("write a prepared segment");
    s.restart();
    let mut c = client(&s, 30_000);
    assert!(
        !next.exists(),
        "a stale prepared segment is removed at start"
    );
    // 6 x 100 kB: past half of the 1 MiB segment.
    for i in 0..6 {
        let reply = c.call(&create(&format!("/big{i}"), &[7; 100_000], 0));
        assert_eq!(reply.unwrap().header.err, 0);
    }
    // Zero-filled in the background: nothing signals its end, so poll.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&next).map_or(0, |m| m.len()) < 1 << 20 {
        assert!(
            Instant::now() < deadline,
            "no next segment after half of this one"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_full_filesystem_stops_writes_not_the_server_and_writes_resume() {
    // A 13 MiB tmpfs: two 4 MiB segments (the current one and the next,
    // made when the current one is half full) plus a 4 MiB filler leave
    // 1 MiB, so the third segment cannot be made and the log fills after
    // 8 MiB. Without the right to
    // mount, a file-size limit on the server stands in for the full disk.
    let Some(fs) = SmallFilesystem::mount(13) else {
        eprintln!("cannot mount a tmpfs here (not root): limiting the server's file size instead");
        let mut s = server("zoocore.logSegmentBytes=4194304");
        let mut c = client(&s, 30_000);
        assert_eq!(c.call(&create("/before", b"x", 0)).unwrap().header.err, 0);
        // No write may now reach past 1 MiB in any file.
        limit_file_size(&s, Some(1 << 20));
        writes_stop_and_resume(&mut s, |s| limit_file_size(s, None));
        return;
    };
    let mut s = server(&format!(
        "dataDir={}\nzoocore.logSegmentBytes=4194304\n",
        fs.0.join("data").display()
    ));
    let mut c = client(&s, 30_000);
    assert_eq!(c.call(&create("/before", b"x", 0)).unwrap().header.err, 0);
    let filler = fs.0.join("filler");
    std::fs::write(&filler, vec![1u8; 4 << 20]).expect("write the filler");
    writes_stop_and_resume(&mut s, |_| {
        std::fs::remove_file(&filler).expect("remove the filler")
    });
    assert!(
        s.log().contains("No space left on device"),
        "the failure was a full filesystem: {}",
        s.log()
    );
}

#[test]
fn srvr_and_stat_report_real_counters_and_clients() {
    let s = server("");
    let mut c = client(&s, 30_000);
    for i in 0..3 {
        assert_eq!(
            c.call(&create(&format!("/s{i}"), b"", 0))
                .unwrap()
                .header
                .err,
            0
        );
    }
    let stat = zoocore_testkit::zk::four_letter_word(s.addr, "stat").unwrap();
    assert!(
        field(&stat, "Received:").parse::<u64>().unwrap() >= 3,
        "{stat}"
    );
    assert_eq!(field(&stat, "Outstanding:"), "0");
    assert_eq!(field(&stat, "Mode:"), "standalone");
    let latency: Vec<&str> = field(&stat, "Latency min/avg/max:").split('/').collect();
    assert_eq!(latency.len(), 3, "{stat}");
    let avg: f64 = latency[1].parse().unwrap();
    assert!(avg > 0.0, "writes take time: {stat}");
    let client_line = stat
        .lines()
        .find(|l| l.starts_with(" /127.0.0.1:"))
        .unwrap_or_else(|| panic!("the client is not listed: {stat}"));
    assert!(client_line.contains("recved=3,sent=3"), "{client_line}");
}

/// The value after `name` on its line of a four-letter word's answer.
fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
}

#[test]
fn corruption_in_the_middle_of_the_log_refuses_to_start() {
    let mut s = server("");
    let mut c = client(&s, 30_000);
    for i in 0..5 {
        assert_eq!(
            c.call(&create(&format!("/k{i}"), b"v", 0))
                .unwrap()
                .header
                .err,
            0
        );
    }
    s.kill();
    let log = only_segment(&s);
    let mut image = std::fs::read(&log).expect("read log");
    // A byte of /k1's record: later batches (/k2 on) are intact.
    let k1 = image
        .windows(3)
        .position(|w| w == b"/k1")
        .expect("/k1 is in the log");
    image[k1 + 1] ^= 0xff;
    std::fs::write(&log, &image).expect("write log");
    let stderr = s.refused_start();
    assert!(
        stderr.contains("zoocore.log.0000000000000001")
            && stderr.contains("corrupt record at byte")
            && stderr.contains("with valid records after it"),
        "{stderr}"
    );
}

#[test]
fn pipelined_writes_of_one_session_are_answered_in_order_and_share_group_commits() {
    let mut s = server("zoocore.shards=1");
    let mut c = client(&s, 30_000);
    const N: usize = 1000;
    let mut xids = Vec::new();
    for i in 0..N {
        xids.push(c.send(&create(&format!("/p{i}"), b"v", 0)).expect("send"));
    }
    // A read behind the writes, in the same pipeline, sees all of them.
    let read = c
        .send(&Request::GetChildren(PathWatchRequest {
            path: "/".into(),
            watch: false,
        }))
        .expect("send");
    for (i, xid) in xids.iter().enumerate() {
        let reply = c.recv().expect("reply");
        assert_eq!(reply.header.xid, *xid, "reply {i} out of order");
        assert_eq!(reply.header.err, 0, "create /p{i}");
    }
    let reply = c.recv().expect("read reply");
    assert_eq!(reply.header.xid, read);
    match reply.body {
        Response::Children(children) => assert_eq!(children.len(), N + 1),
        other => panic!("unexpected {other:?}"),
    }
    s.kill();
    // One session's writes were batched: far fewer batches than txns.
    let batches = logged_batches(&s);
    assert!(
        batches < N / 4,
        "{batches} batches for {N} pipelined creates: not grouped"
    );
}

#[test]
fn reads_between_pipelined_writes_see_the_writes_before_them_and_do_not_hold_back_later_ones() {
    let mut s = server("zoocore.shards=1");
    let mut c = client(&s, 30_000);
    assert_eq!(c.call(&create("/k", b"start", 0)).unwrap().header.err, 0);
    const N: usize = 300;
    let mut sent = Vec::new();
    for i in 0..N {
        let set = Request::SetData(SetDataRequest {
            path: "/k".into(),
            data: Some(format!("v{i}").into_bytes()),
            version: -1,
        });
        let get = Request::GetData(PathWatchRequest {
            path: "/k".into(),
            watch: true,
        });
        let (set, get) = (c.send(&set).expect("send"), c.send(&get).expect("send"));
        // Every other read has a sync behind it: the next write must still
        // not reach the read before the sync.
        let sync = (i % 2 == 1).then(|| {
            let sync = Request::Sync(PathRequest { path: "/".into() });
            c.send(&sync).expect("send")
        });
        sent.push((set, get, sync));
    }
    for (i, (set, get, sync)) in sent.into_iter().enumerate() {
        let reply = c.recv().expect("setData reply");
        assert_eq!(
            (reply.header.xid, reply.header.err),
            (set, 0),
            "setData {i}"
        );
        // The watch the read before set: fired by this write, before its reply.
        let events = c.take_events();
        assert_eq!(
            events.len(),
            usize::from(i > 0),
            "events before setData {i}'s reply"
        );
        let reply = c.recv().expect("getData reply");
        assert_eq!(reply.header.xid, get, "getData {i}");
        match reply.body {
            Response::GetData(r) => {
                // The write just before it, none of the later ones.
                assert_eq!(r.data, Some(format!("v{i}").into_bytes()), "getData {i}");
                assert_eq!(r.stat.version, i as i32 + 1, "getData {i}");
            }
            other => panic!("unexpected {other:?}"),
        }
        if let Some(sync) = sync {
            let reply = c.recv().expect("sync reply");
            assert_eq!((reply.header.xid, reply.header.err), (sync, 0), "sync {i}");
        }
    }
    s.kill();
    // Each read waited for the write before it, not the writes after it for
    // the read: the writes still shared group commits.
    let batches = logged_batches(&s);
    assert!(
        batches < N / 4,
        "{batches} batches for {N} setData with a read after each: reads held back the writes"
    );
}

/// Where the only segment's data ends, as `zoocore log dump` reads it.
fn log_end(s: &ZoocoreProcess) -> usize {
    log_dump_number(s, "data ends at byte ")
}

/// The commit batches in the log, as `zoocore log dump` counts them.
fn logged_batches(s: &ZoocoreProcess) -> usize {
    log_dump_number(s, " txns in ")
}

/// The number `zoocore log dump` prints after `label`.
fn log_dump_number(s: &ZoocoreProcess, label: &str) -> usize {
    let out = s.tool(&["log", "dump"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(label)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
}
