//! The server process: recovery, then one glommio executor per shard core
//! and one for the sequencer (which may share a core with a shard),
//! connected by bounded channels; the snapshotter and autopurge threads;
//! signals.

use std::sync::Arc;

use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::{LocalExecutorBuilder, Placement};
use zoocore_consensus::{Replica, ReplicaConfig};
use zoocore_engine::DataTree;

use crate::config::{Config, Ensemble};
use crate::replicate::{self, transport};
use crate::storage::{self, raftlog, recovery, snapshotter, wal};
use crate::{audit, seq, serve, stats, tls};

/// Ends the process at once. Everything acknowledged is already durable, and
/// `std::process::exit` can hang tearing down executors on other threads.
pub fn terminate(code: i32) -> ! {
    // SAFETY: _exit only ends the process.
    unsafe { libc::_exit(code) }
}

/// io_uring memory per executor when the memlock limit allows it. Each
/// executor has three rings; executors x 3 x io_memory must fit
/// RLIMIT_MEMLOCK (see tuning/README.md).
pub const IO_MEMORY: usize = 2 << 20;

/// Below this glommio refuses to start.
pub const MIN_IO_MEMORY: usize = 512 << 10;

/// Raises RLIMIT_MEMLOCK (soft, and hard when privileged) to what the
/// executors' io_uring rings want; otherwise shrinks their io_memory to fit.
/// Returns the io_memory per executor.
pub(crate) fn size_io_memory(executors: usize) -> Result<usize, String> {
    let rings = executors * 3;
    let want = (rings * IO_MEMORY) as libc::rlim_t;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on stack values.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) != 0 {
            return Err("getrlimit(RLIMIT_MEMLOCK) failed".into());
        }
        if limit.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: limit.rlim_max.max(want),
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) == 0 {
                limit = raised;
            } else if limit.rlim_cur < limit.rlim_max {
                limit.rlim_cur = limit.rlim_max.min(want);
                libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit);
            }
        }
    }
    let per_executor = (limit.rlim_cur as usize / rings).min(IO_MEMORY);
    if per_executor < MIN_IO_MEMORY {
        return Err(format!(
            "RLIMIT_MEMLOCK is {} bytes; {executors} executors need at least {} (see tuning/README.md)",
            limit.rlim_cur,
            rings * MIN_IO_MEMORY
        ));
    }
    Ok(per_executor)
}

/// ZooKeeper's autopurge: at start, then every `autopurge.purgeInterval` hours.
pub(crate) fn spawn_autopurge(config: &Config) -> Result<(), String> {
    let (data_dir, log_dir) = (config.data_dir.clone(), config.data_log_dir.clone());
    let retain = config.snap_retain_count;
    let interval = std::time::Duration::from_secs(config.purge_interval_hours * 3600);
    std::thread::Builder::new()
        .name("autopurge".into())
        .spawn(move || loop {
            match recovery::purge(&data_dir, &log_dir, retain) {
                Ok(removed) => {
                    for file in removed {
                        tracing::info!(file = %file.display(), "purged");
                    }
                }
                Err(e) => tracing::error!(error = %e, "autopurge failed"),
            }
            std::thread::sleep(interval);
        })
        .map(|_| ())
        .map_err(|e| format!("starting autopurge: {e}"))
}

/// Blocks SIGINT/SIGTERM in every thread and waits for them on one.
pub(crate) fn handle_signals(shutdown: seq::Shutdown) {
    // SAFETY: signal masks manipulated before any other thread exists.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        // Over a file-size limit a write must fail (as on a full disk), not kill us.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        std::thread::spawn(move || {
            let mut signal = 0;
            libc::sigwait(&set, &mut signal);
            tracing::info!(signal, "shutting down");
            shutdown.request();
        });
    }
}

/// How long a member waits at start for every peer's host name to resolve:
/// members started together (a compose file, a StatefulSet) get their
/// names in DNS only as each of them starts.
const PEER_RESOLVE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

fn resolve_peers(
    membership: &zoocore_consensus::Membership,
) -> Result<std::collections::HashMap<u64, std::net::SocketAddr>, String> {
    let deadline = std::time::Instant::now() + PEER_RESOLVE_PATIENCE;
    loop {
        match transport::peer_addrs(membership) {
            Ok(addrs) => return Ok(addrs),
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "waiting for the peers' names to resolve");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// An executor builder with the settings every executor shares.
pub(crate) fn executor(placement: Placement, config: &Config) -> LocalExecutorBuilder {
    glommio::set_defer_taskrun(config.defer_taskrun);
    let builder = LocalExecutorBuilder::new(placement);
    match config.spin_before_park_us {
        0 => builder,
        us => builder.spin_before_park(std::time::Duration::from_micros(us)),
    }
}

/// What runs on the sequencer's executor once the shards exist.
type SequencerTask = Box<
    dyn FnOnce(
            Vec<SharedReceiver<seq::ToSequencer>>,
            Vec<SharedSender<Arc<seq::CommitBatch>>>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = seq::Stopped>>>
        + Send,
>;

/// What a server starts from: the tree its shards begin with, sessions
/// they expire unless the clients come back, and its sequencer.
struct Start {
    tree: DataTree,
    restored_sessions: Vec<(i64, i32)>,
    sequencer: SequencerTask,
}

/// Holds dataDir and dataLogDir for this process: two servers on one
/// directory would interleave their logs.
fn lock_dirs(config: &Config) -> Result<Vec<std::fs::File>, String> {
    // One directory named two ways must be locked once: a second flock of
    // the same file from this process would fail as if another held it.
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    for dir in [&config.data_dir, &config.data_log_dir] {
        let canonical = std::fs::create_dir_all(dir)
            .and_then(|()| dir.canonicalize())
            .map_err(|e| format!("cannot use {}: {e}", dir.display()))?;
        if !dirs.contains(&canonical) {
            dirs.push(canonical);
        }
    }
    let mut held = Vec::new();
    for dir in &dirs {
        match storage::dir::lock(dir) {
            Ok(Some(file)) => held.push(file),
            Ok(None) => {
                return Err(format!(
                    "{} is in use by another server ({} is locked)",
                    dir.display(),
                    dir.join(storage::dir::LOCK_FILE).display()
                ))
            }
            Err(e) => return Err(format!("cannot lock {}: {e}", dir.display())),
        }
    }
    Ok(held)
}

/// How long a listening socket found on our port may take to go away: a
/// server that just ended can leave its listener open for a moment, until
/// the kernel has torn down its io_uring rings (they hold the file).
const PORT_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Shards and the peer transport listen with SO_REUSEPORT (the shards share
/// the client port), which would let a second server share a port
/// unnoticed; so before they bind, a socket still listening there after
/// `PORT_RELEASE_WAIT` (ours do not exist yet) means another server. A
/// probing bind would not do: sockets a killed server left closing make it
/// fail.
fn ensure_free(addr: std::net::SocketAddr, what: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
    loop {
        match listening(addr) {
            Ok(false) => return Ok(()),
            Ok(true) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(true) => {
                return Err(format!(
                    "cannot listen on {what} {addr}: another socket has listened there for {}s; \
                     is another server running?",
                    PORT_RELEASE_WAIT.as_secs()
                ))
            }
            Err(e) => {
                return Err(format!(
                    "cannot read the socket tables for {what} {addr}: {e}"
                ))
            }
        }
    }
}

/// Whether a socket of this network namespace listens on `addr`'s port at
/// its address or a wildcard one (/proc/net/tcp and tcp6, state 0A).
fn listening(addr: std::net::SocketAddr) -> std::io::Result<bool> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(&"0A")) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((ip, port)) = local.split_once(':') else {
                continue;
            };
            if u16::from_str_radix(port, 16).ok() != Some(addr.port()) {
                continue;
            }
            let wildcard = ip.bytes().all(|b| b == b'0');
            if wildcard || addr.ip().is_unspecified() || proc_ip(ip) == Some(addr.ip()) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// An address as /proc/net/tcp{,6} prints it: 32-bit words in hex, each in
/// the host's byte order.
fn proc_ip(hex: &str) -> Option<std::net::IpAddr> {
    let words: Option<Vec<u32>> = (0..hex.len() / 8)
        .map(|i| {
            hex.get(i * 8..i * 8 + 8)
                .and_then(|w| u32::from_str_radix(w, 16).ok())
        })
        .collect();
    let bytes: Vec<u8> = words?.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

pub(crate) fn run(mut config: Config) -> Result<(), String> {
    config.check().map_err(|e| e.to_string())?;
    // Before anything is locked or bound: a bad TLS setting is a bad config.
    let tls = tls::ServerTls::start(&config.tls)?;
    config.resolve_myid().map_err(|e| e.to_string())?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let io_memory = size_io_memory(config.shards + 1)?;
    let _held = lock_dirs(&config)?;
    ensure_free(config.client_addr(), "client port")?;
    let shutdown = seq::Shutdown::default();
    handle_signals(shutdown.clone());
    let stats = Arc::new(stats::Stats::new(config.shards));
    let start = match &config.ensemble {
        None => standalone(&config, &stats, &shutdown)?,
        Some(ensemble) => member(&config, ensemble, &stats, &shutdown)?,
    };
    if let Some(addr) = config.secure_client_addr() {
        ensure_free(addr, "secure client port")?;
    }
    let config = Arc::new(config);
    let audit = start_audit(&config)?;
    let mut inboxes = Vec::new();
    let mut outboxes = Vec::new();
    let mut handles = Vec::new();
    for index in 0..config.shards {
        let (to_sequencer, inbox) = shared_channel::new_bounded(config.sequencer_queue);
        let (outbox, commits) = shared_channel::new_bounded(config.commit_queue);
        inboxes.push(inbox);
        outboxes.push(outbox);
        let setup = serve::ShardSetup {
            index,
            config: config.clone(),
            tree: start.tree.clone(),
            to_sequencer,
            commits,
            stats: stats.clone(),
            audit: audit.clone(),
            tls: tls.clone(),
            restored_sessions: if index == 0 {
                start.restored_sessions.clone()
            } else {
                Vec::new()
            },
        };
        let handle = executor(Placement::Fixed(index % cpus), &config)
            .name(&format!("shard-{index}"))
            .io_memory(io_memory)
            .spawn(move || async move {
                let admin = move |shard: &_| {
                    if index == 0 {
                        crate::ops::admin::spawn(shard);
                    }
                };
                if let Err(e) = serve::run(setup, admin).await {
                    tracing::error!(error = %e, "shard {index} stopped");
                    terminate(1);
                }
            })
            .map_err(|e| format!("starting shard {index}: {e}"))?;
        handles.push(handle);
    }
    let task = start.sequencer;
    let sequencer = executor(
        Placement::Fixed(config.sequencer_cpu.min(cpus - 1)),
        &config,
    )
    .name("sequencer")
    .io_memory(io_memory)
    .spawn(move || async move {
        let code = match task(inboxes, outboxes).await {
            seq::Stopped::Requested => 0,
            seq::Stopped::ShardGone => 3,
            seq::Stopped::Diverged => 4,
        };
        if let Some(audit) = &audit {
            audit.server_event("serverStop", audit::Outcome::Invoked);
            audit.flush();
        }
        terminate(code)
    })
    .map_err(|e| format!("starting the sequencer: {e}"))?;
    tracing::info!(addr = %config.client_addr(), shards = config.shards, "serving");
    sequencer.join().map_err(|e| e.to_string())?;
    for handle in handles {
        handle.join().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The audit log when `audit.enable` is on, its `serverStart` written.
fn start_audit(config: &Config) -> Result<Option<Arc<audit::AuditLog>>, String> {
    if !config.security.audit {
        return Ok(None);
    }
    let path = config
        .security
        .audit_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("zookeeper_audit.log"));
    let log = audit::AuditLog::start(&path)?;
    log.server_event("serverStart", audit::Outcome::Success);
    tracing::info!(path = %path.display(), "audit log enabled");
    Ok(Some(Arc::new(log)))
}

/// A standalone server: recovery from the newest snapshot and the log, the
/// snapshotter and autopurge, and the group-committing sequencer.
fn standalone(
    config: &Config,
    stats: &Arc<stats::Stats>,
    shutdown: &seq::Shutdown,
) -> Result<Start, String> {
    let started = std::time::Instant::now();
    let recovered = recovery::recover(
        &config.data_dir,
        &config.data_log_dir,
        config.extended_types,
    )
    .map_err(|e| format!("recovering {}: {e}", config.data_log_dir.display()))?;
    tracing::info!(
        snapshot = %recovered.snapshot.as_deref().map_or("none".into(), |p| p.display().to_string()),
        txns = recovered.txns,
        zxid = format!("{:#x}", recovered.tree.last_zxid()),
        nodes = recovered.tree.node_count(),
        ms = started.elapsed().as_millis() as u64,
        "recovered"
    );
    if config.purge_interval_hours > 0 {
        spawn_autopurge(config)?;
    }
    let (snapshot_wake, wake) = std::sync::mpsc::sync_channel(1);
    if recovered.txns > 0 {
        // Replaying a long log once is enough: snapshot what was recovered.
        let _ = snapshot_wake.try_send(recovered.tree.clone());
    }
    snapshotter::spawn(snapshotter::SnapshotterSetup {
        snapshot_zxid: recovered.snapshot_zxid,
        data_dir: config.data_dir.clone(),
        wake,
        stats: stats.clone(),
    })
    .map_err(|e| format!("starting the snapshotter: {e}"))?;
    let restored_sessions: Vec<(i64, i32)> = recovered
        .tree
        .sessions()
        .iter()
        .map(|(&id, &t)| (id, t))
        .collect();
    let log_dir = config.data_log_dir.clone();
    let append = recovered.append;
    let next_zxid = recovered.tree.last_zxid() + 1;
    let (segment_bytes, log_sync) = (config.log_segment_bytes, config.log_sync);
    let setup = {
        let (tree, stats, shutdown) = (recovered.tree.clone(), stats.clone(), shutdown.clone());
        let fsync_warning = std::time::Duration::from_millis(config.fsync_warning_ms);
        let snapshot_policy =
            snapshotter::SnapshotPolicy::new(config.snap_count, config.snap_size_limit_bytes);
        let (max_batch_txns, max_batch_bytes) = (config.max_batch_txns, config.max_batch_bytes);
        let linger = std::time::Duration::from_micros(config.commit_linger_us);
        let container_check_interval =
            std::time::Duration::from_millis(config.container_check_interval_ms);
        move |log, inboxes, outboxes| seq::SequencerSetup {
            tree,
            log,
            inboxes,
            outboxes,
            max_batch_txns,
            max_batch_bytes,
            linger,
            stats,
            server_id: 1,
            container_check_interval,
            snapshot_policy,
            snapshot_wake,
            fsync_warning,
            shutdown,
        }
    };
    Ok(Start {
        tree: recovered.tree,
        restored_sessions,
        sequencer: Box::new(move |inboxes, outboxes| {
            Box::pin(async move {
                match wal::LogWriter::open(
                    wal::LogKind::TXNS,
                    &log_dir,
                    append,
                    next_zxid,
                    segment_bytes,
                    log_sync,
                )
                .await
                {
                    Ok(log) => seq::run(setup(log, inboxes, outboxes)).await,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot open the log");
                        terminate(1);
                    }
                }
            })
        }),
    })
}

/// An ensemble member: its raft state, snapshot and entry log, the peer
/// port, and the replica on the sequencer's core. Shards start from the
/// snapshot's tree: the replica applies the committed log after it again
/// and fans it out.
fn member(
    config: &Config,
    ensemble: &Ensemble,
    stats: &Arc<stats::Stats>,
    shutdown: &seq::Shutdown,
) -> Result<Start, String> {
    let recovered = raftlog::recover(
        &config.data_dir,
        &config.data_log_dir,
        config.extended_types,
    )
    .map_err(|e| format!("recovering {}: {e}", config.data_log_dir.display()))?;
    tracing::info!(
        myid = ensemble.myid,
        snapshot = recovered
            .durable
            .snapshot
            .as_ref()
            .map_or(0, |(m, _)| m.index),
        entries = recovered.durable.entries.len(),
        term = recovered.durable.hard_state.term,
        commit = recovered.durable.hard_state.commit,
        "ensemble member recovered its raft log"
    );
    let membership = &ensemble.membership;
    let replica_config = ReplicaConfig {
        id: ensemble.myid,
        voters: membership.voters(),
        learners: membership.learners(),
        tick_ms: ensemble.raft_tick_ms as i64,
        election_ticks: ensemble.election_ticks,
        heartbeat_ticks: ensemble.heartbeat_ticks,
        election_range: None,
        max_batch_bytes: config.max_batch_bytes,
        max_inflight_appends: 256,
        max_append_bytes: config.max_batch_bytes as u64,
        extended_types: config.extended_types,
        container_check_ms: config.container_check_interval_ms as i64,
        config_node: membership.config_text(ensemble.config_version),
        reconfig_enabled: ensemble.reconfig_enabled,
        retained_entries: ensemble.retained_entries,
    };
    let hard_state = recovered.durable.hard_state.clone();
    let replica = Replica::new(replica_config, recovered.durable, stats::epoch_ms())
        .map_err(|e| format!("starting the replica: {e}"))?;
    // A snapshot may hold a newer membership than the configuration file
    // (a reconfig whose dynamic file was not written before a crash).
    let membership = &replica
        .membership()
        .map_or_else(|| membership.clone(), |(m, _)| m);
    let addrs = resolve_peers(membership)?;
    if let Some(&listen) = addrs.get(&ensemble.myid) {
        ensure_free(listen, "peer port")?;
    }
    // Shards start from the replica's first version (with /zookeeper/config).
    let tree = replica.tree().clone();
    let (myid, membership) = (ensemble.myid, membership.clone());
    let (log_dir, data_dir) = (config.data_log_dir.clone(), config.data_dir.clone());
    let (append, next_index, segment_bytes, log_sync) = (
        recovered.append,
        recovered.next_index,
        config.log_segment_bytes,
        config.log_sync,
    );
    let (stats, shutdown) = (stats.clone(), shutdown.clone());
    let snapshot_policy =
        snapshotter::SnapshotPolicy::new(config.snap_count, config.snap_size_limit_bytes);
    let snap_retain_count = config.snap_retain_count;
    let tick = std::time::Duration::from_millis(ensemble.raft_tick_ms);
    let read_only_after = ensemble.read_only_after;
    let reconfig_enabled = ensemble.reconfig_enabled;
    let peer_tls = match config.ssl_quorum {
        true => {
            let (server, client) = config.quorum_tls.peer_configs()?;
            Some(transport::PeerTls { server, client })
        }
        false => None,
    };
    let config_file = ensemble.config_file.clone();
    let fsync_warning = std::time::Duration::from_millis(config.fsync_warning_ms);
    Ok(Start {
        tree,
        restored_sessions: Vec::new(),
        sequencer: Box::new(move |inboxes, outboxes| {
            Box::pin(async move {
                let (outbound, inbound) = match transport::start(
                    myid,
                    &membership,
                    &addrs,
                    !reconfig_enabled,
                    peer_tls,
                ) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the peer transport");
                        terminate(1);
                    }
                };
                let log = match wal::LogWriter::open(
                    wal::LogKind::ENTRIES,
                    &log_dir,
                    append,
                    next_index as i64,
                    segment_bytes,
                    log_sync,
                )
                .await
                {
                    Ok(log) => log,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot open the raft log");
                        terminate(1);
                    }
                };
                replicate::run(replicate::ReplicateSetup {
                    replica,
                    log,
                    data_dir,
                    log_dir,
                    snapshot_policy,
                    snap_retain_count,
                    hard_state,
                    inboxes,
                    outboxes,
                    outbound,
                    inbound,
                    tick,
                    stats,
                    shutdown,
                    fsync_warning,
                    read_only_after,
                    config_file: reconfig_enabled.then_some(config_file),
                })
                .await
            })
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_addresses_decode() {
        if cfg!(target_endian = "little") {
            assert_eq!(proc_ip("0100007F"), Some([127, 0, 0, 1].into()));
            assert_eq!(
                proc_ip("00000000000000000000000001000000"),
                Some(std::net::Ipv6Addr::LOCALHOST.into())
            );
        }
        assert_eq!(proc_ip("12"), None);
    }

    #[test]
    fn a_directory_named_twice_is_locked_once_and_only_by_one_holder() {
        let dir = std::env::temp_dir().join(format!("zoocore-lock-{}", std::process::id()));
        let config = Config {
            data_dir: dir.clone(),
            data_log_dir: dir.join("..").join(dir.file_name().unwrap()),
            ..Config::default()
        };
        let held = lock_dirs(&config).unwrap();
        assert_eq!(held.len(), 1);
        let err = lock_dirs(&config).unwrap_err();
        assert!(err.contains("in use by another server"), "{err}");
        drop(held);
        assert_eq!(lock_dirs(&config).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_listening_socket_is_found_by_address_and_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(listening(addr).unwrap());
        assert!(listening(([0, 0, 0, 0], addr.port()).into()).unwrap());
        assert!(!listening(([127, 0, 0, 2], addr.port()).into()).unwrap());
        drop(listener);
        assert!(!listening(addr).unwrap());
    }
}
