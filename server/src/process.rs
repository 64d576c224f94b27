//! The server process: recovery, then one glommio executor per shard core
//! and one for the sequencer (which may share a core with a shard),
//! connected by bounded channels; the snapshotter and autopurge threads;
//! signals.

use std::sync::Arc;

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::storage::{recovery, snapshotter, wal};
use crate::{seq, serve, stats};

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

/// An executor builder with the settings every executor shares.
pub(crate) fn executor(placement: Placement, config: &Config) -> LocalExecutorBuilder {
    let builder = LocalExecutorBuilder::new(placement);
    match config.spin_before_park_us {
        0 => builder,
        us => builder.spin_before_park(std::time::Duration::from_micros(us)),
    }
}

pub(crate) fn run(config: Config) -> Result<(), String> {
    config.check().map_err(|e| e.to_string())?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let io_memory = size_io_memory(config.shards + 1)?;
    let shutdown = seq::Shutdown::default();
    handle_signals(shutdown.clone());
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
        spawn_autopurge(&config)?;
    }
    let (snapshot_wake, wake) = std::sync::mpsc::sync_channel(1);
    if recovered.txns > 0 {
        // Replaying a long log once is enough: snapshot what was recovered.
        let _ = snapshot_wake.try_send(recovered.tree.clone());
    }
    let stats = Arc::new(stats::Stats::new(config.shards));
    snapshotter::spawn(snapshotter::SnapshotterSetup {
        snapshot_zxid: recovered.snapshot_zxid,
        data_dir: config.data_dir.clone(),
        wake,
        stats: stats.clone(),
    })
    .map_err(|e| format!("starting the snapshotter: {e}"))?;
    let config = Arc::new(config);
    let restored: Vec<(i64, i32)> = recovered
        .tree
        .sessions()
        .iter()
        .map(|(&id, &t)| (id, t))
        .collect();
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
            tree: recovered.tree.clone(),
            to_sequencer,
            commits,
            stats: stats.clone(),
            restored_sessions: if index == 0 {
                restored.clone()
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
    let log_dir = config.data_log_dir.clone();
    let append = recovered.append;
    let next_zxid = recovered.tree.last_zxid() + 1;
    let segment_bytes = config.log_segment_bytes;
    let fsync_warning = std::time::Duration::from_millis(config.fsync_warning_ms);
    let snapshot_policy =
        snapshotter::SnapshotPolicy::new(config.snap_count, config.snap_size_limit_bytes);
    let max_batch_txns = config.max_batch_txns;
    let max_batch_bytes = config.max_batch_bytes;
    let linger = std::time::Duration::from_micros(config.commit_linger_us);
    let container_check_interval =
        std::time::Duration::from_millis(config.container_check_interval_ms);
    let sequencer_setup = move |log| seq::SequencerSetup {
        tree: recovered.tree,
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
    };
    let sequencer = executor(
        Placement::Fixed(config.sequencer_cpu.min(cpus - 1)),
        &config,
    )
    .name("sequencer")
    .io_memory(io_memory)
    .spawn(move || async move {
        match wal::LogWriter::open(&log_dir, append, next_zxid, segment_bytes).await {
            Ok(log) => match seq::run(sequencer_setup(log)).await {
                seq::Stopped::Requested => terminate(0),
                seq::Stopped::ShardGone => terminate(3),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot open the log");
                terminate(1);
            }
        }
    })
    .map_err(|e| format!("starting the sequencer: {e}"))?;
    tracing::info!(addr = %config.client_addr(), shards = config.shards, "serving");
    sequencer.join().map_err(|e| e.to_string())?;
    for handle in handles {
        handle.join().map_err(|e| e.to_string())?;
    }
    Ok(())
}
