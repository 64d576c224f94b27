//! An ensemble member's sequencer core: it drives `consensus::Replica`
//! (raft-rs around the validate-and-order step) with glommio at the edges.
//!
//! Tasks on the sequencer's executor, all feeding one replica:
//! - per shard: requests become proposals (the leader orders them, a
//!   follower forwards them), syncs become ReadIndex requests, touches
//!   feed the leader's session expiry;
//! - the peer transport (`transport.rs`) steps received messages;
//! - a ticker drives raft's clock and the leader's expiry;
//! - the writer makes each `Persist` durable in order (hard state file,
//!   then a snapshot received from the leader and its mark, then the
//!   entries as log batches), then sends what waited on it;
//! - snapshots: every `snapCount` txns (as a standalone server) the applied
//!   tree is written as a raft snapshot on a blocking thread; the replica
//!   then compacts its log and the files before it are dropped. Members
//!   too far behind read the newest one in chunks (`ChunkWanted`);
//! - the main loop collects the replica's output and fans committed batches
//!   out to the shards as a standalone sequencer does, each txn carrying
//!   the origin of the request it answers when this server took it.
//!
//! A leader change closes every client connection of this server (as a
//! ZooKeeper learner does when it loses its leader): requests in flight end
//! in connection loss, never in a reply for a write that did not commit.

pub mod transport;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use zoocore_consensus::peer_msg::SNAPSHOT_CHUNK;
use zoocore_consensus::{
    ChunkWanted, HardState, Output, PeerMsg, Persist, Proposal, ProposalOp, Replica,
};

use crate::seq::fanout::{commit_batch, fan_out, HandedVersions};
use crate::seq::{CommitBatch, Entry, Origin, Shutdown, Stopped, ToSequencer};
use crate::stats::{Role, Stats};
use crate::storage::raftlog;
use crate::storage::snapshotter::SnapshotPolicy;
use crate::storage::wal::LogWriter;
use transport::{Outbound, PeerEvent};

/// Persists waiting for the writer.
const PERSIST_QUEUE: usize = 1024;
/// Persists the writer makes durable with one write and fsync, at most:
/// those that queued while the previous fsync ran (group commit).
const PERSIST_GROUP: usize = 64;
/// Between attempts at a raft log write that failed (full disk, EIO): it
/// is retried until it succeeds, never skipped, since raft assumes what it
/// was told is durable stays so.
const WRITE_RETRY: Duration = Duration::from_millis(200);
/// How long a leader stopping on SIGTERM waits for a successor.
const HANDOVER: Duration = Duration::from_secs(2);

pub struct ReplicateSetup {
    pub replica: Replica,
    pub log: LogWriter,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    pub snapshot_policy: SnapshotPolicy,
    /// Raft snapshots kept on disk (`autopurge.snapRetainCount`).
    pub snap_retain_count: usize,
    /// The hard state the state file holds now.
    pub hard_state: HardState,
    pub inboxes: Vec<SharedReceiver<ToSequencer>>,
    pub outboxes: Vec<SharedSender<Arc<CommitBatch>>>,
    pub outbound: Outbound,
    pub inbound: LocalReceiver<PeerEvent>,
    pub tick: Duration,
    pub stats: Arc<Stats>,
    pub shutdown: Shutdown,
    pub fsync_warning: Duration,
    /// `readonlymode.enabled`: how long without a leader before this member
    /// serves reads to clients that allow a read-only server.
    pub read_only_after: Option<Duration>,
    /// With `reconfigEnabled`: the configuration file a reconfig rewrites
    /// (`storage::dynconfig`).
    pub config_file: Option<PathBuf>,
}

/// The replica and what this server is waiting for from it.
struct Glue {
    replica: Replica,
    /// Requests of this server's clients in the ensemble's hands, by
    /// (session, cxid): answered from the commit stream.
    pending: HashMap<(i64, i32), Origin>,
    /// Syncs waiting for their read index, and since when.
    syncs: HashMap<u64, (Origin, std::time::Instant)>,
    next_sync: u64,
    /// Entries for the shards that are not txns (attach, gather, sync,
    /// disconnect), sent with the next fan-out.
    local: Vec<Entry>,
    stats: Arc<Stats>,
    read_only_after: Option<Duration>,
    /// Since when this member has had no leader.
    looking_since: Option<std::time::Instant>,
    config_file: Option<PathBuf>,
}

impl Glue {
    fn propose(&mut self, origin: Option<Origin>, proposal: Proposal) {
        if let Some(origin) = origin {
            self.pending
                .insert((proposal.session_id, proposal.cxid), origin);
        }
        if !self.replica.is_leader() {
            self.stats
                .ensemble
                .forwarded
                .fetch_add(1, Ordering::Relaxed);
        }
        self.replica.propose(proposal);
    }

    fn accept(&mut self, message: ToSequencer) {
        match message {
            ToSequencer::Write {
                origin,
                session_id,
                cxid,
                identity,
                request,
                // A member's shards do not answer reads from versions inside
                // a batch (its txns come from the leader's log), so never fence.
                fence: _,
            } => self.propose(
                Some(origin),
                Proposal {
                    session_id,
                    cxid,
                    identity: (*identity).clone(),
                    op: ProposalOp::Write(request),
                },
            ),
            ToSequencer::OpenSession { origin, timeout } => {
                let session_id = self.replica.next_session_id();
                self.propose(
                    Some(origin),
                    Proposal {
                        session_id,
                        cxid: 0,
                        identity: Default::default(),
                        op: ProposalOp::OpenSession { timeout },
                    },
                );
            }
            // Only the leader expires sessions: shards of a member never ask.
            ToSequencer::CloseSession { origin: None, .. } => {}
            ToSequencer::CloseSession {
                origin,
                session_id,
                cxid,
            } => self.propose(
                origin,
                Proposal {
                    session_id,
                    cxid,
                    identity: Default::default(),
                    op: ProposalOp::CloseSession,
                },
            ),
            ToSequencer::Touches(ids) => {
                for id in ids {
                    self.replica.touch(id);
                }
            }
            ToSequencer::Attach { session_id, shard } => {
                // The session reconnected here: the leader records this
                // member as its owner (requests through another get
                // SessionMoved), then this member's shards move it.
                self.propose(
                    None,
                    Proposal {
                        session_id,
                        cxid: 0,
                        identity: Default::default(),
                        op: ProposalOp::Revalidate,
                    },
                );
                self.local.push(Entry::Attached { session_id, shard })
            }
            ToSequencer::Sync { origin } => {
                let id = self.next_sync;
                self.next_sync += 1;
                self.syncs.insert(id, (origin, std::time::Instant::now()));
                self.stats
                    .ensemble
                    .pending_syncs
                    .store(self.syncs.len() as u64, Ordering::Relaxed);
                self.replica.sync(id);
            }
            ToSequencer::Gather(gather) => self.local.push(Entry::Gather(gather)),
        }
    }

    /// Turns the replica's output into batches for the shards; returns them
    /// and what must be made durable.
    fn absorb(&mut self, out: Output, outbound: &Outbound) -> Absorbed {
        if let Some(text) = &out.config {
            self.reconfigured(text, outbound);
        }
        for (to, msg) in &out.messages {
            outbound.send(*to, msg);
        }
        let mut batches = Vec::new();
        let mut txns = 0;
        for committed in out.committed {
            if committed.installed {
                // The tree jumped to the leader's snapshot: watches cannot be
                // told what changed, so clients reconnect and set them again.
                tracing::info!(index = committed.index, "installed the leader's snapshot");
                self.pending.clear();
                self.syncs.clear();
                let entries = vec![Entry::Installed];
                batches.push(commit_batch(entries, committed.tree));
                continue;
            }
            txns += committed.txns.len() as u64;
            let entries = committed
                .txns
                .into_iter()
                .map(|(txn, applied)| Entry::Txn {
                    origin: self.pending.remove(&(txn.session_id, txn.cxid)),
                    txn,
                    applied,
                })
                .collect();
            batches.push(commit_batch(entries, committed.tree));
        }
        for id in out.synced {
            if let Some((origin, since)) = self.syncs.remove(&id) {
                self.stats
                    .ensemble
                    .sync_us
                    .record(since.elapsed().as_micros() as u64);
                self.local.push(Entry::Synced { origin });
            }
        }
        if let Some(leader) = out.leader_changed {
            tracing::info!(leader, "leader changed; closing client connections");
            self.stats.ensemble.leader.store(leader, Ordering::Relaxed);
            self.stats
                .ensemble
                .leader_changes
                .fetch_add(1, Ordering::Relaxed);
            self.pending.clear();
            self.syncs.clear();
            self.local.push(Entry::Disconnect { origin: None });
        }
        for proposal in out.refused {
            if let Some(origin) = self.pending.remove(&(proposal.session_id, proposal.cxid)) {
                self.local.push(Entry::Disconnect {
                    origin: Some(origin),
                });
            }
        }
        if !self.local.is_empty() {
            let entries = std::mem::take(&mut self.local);
            batches.push(commit_batch(entries, self.replica.tree().clone()));
        }
        let e = &self.stats.ensemble;
        e.set_role(if self.replica.is_leader() {
            Role::Leader
        } else if self.replica.leader_id() == 0 {
            Role::Looking
        } else if self.replica.is_observer() {
            Role::Observer
        } else {
            Role::Follower
        });
        e.set_learners(self.replica.learners());
        // Read-only mode (ZooKeeper's ReadOnlyZooKeeperServer): after a
        // while without a leader, shards take clients that allow it and
        // answer their reads. A leader's return closes those connections
        // (the leader change above), so the clients come back read-write.
        let looking = e.role() == Role::Looking;
        self.looking_since = match (looking, self.looking_since) {
            (true, None) => Some(std::time::Instant::now()),
            (true, since) => since,
            (false, since) => {
                // A leader found: how long this member went without one.
                if let Some(since) = since {
                    e.election_ms.record(since.elapsed().as_millis() as u64);
                }
                None
            }
        };
        let read_only = self
            .read_only_after
            .zip(self.looking_since)
            .is_some_and(|(after, since)| since.elapsed() >= after);
        if read_only != e.read_only() {
            tracing::info!(read_only, "read-only mode");
            e.set_read_only(read_only);
        }
        e.pending_syncs
            .store(self.syncs.len() as u64, Ordering::Relaxed);
        Absorbed {
            batches,
            persists: out.persist,
            chunks: out.chunks,
            txns,
        }
    }
}

impl Glue {
    /// `/zookeeper/config` changed: talk to the new membership, and leave
    /// the files ZooKeeper leaves (off the executor: they are fsynced).
    fn reconfigured(&mut self, text: &str, outbound: &Outbound) {
        let membership = match zoocore_consensus::Membership::parse_config(text) {
            Ok((membership, version)) => {
                tracing::info!(version = %format!("{version:x}"), "membership changed");
                membership
            }
            Err(e) => {
                tracing::error!(error = %e, "/zookeeper/config does not parse; membership unchanged");
                return;
            }
        };
        outbound.set_members(&membership);
        let Some(config_file) = self.config_file.clone() else {
            return;
        };
        let (text, myid) = (text.to_owned(), self.replica.id());
        glommio::spawn_local(async move {
            let written = glommio::executor()
                .spawn_blocking(move || {
                    crate::storage::dynconfig::write(&config_file, &text, myid)
                        .map_err(|e| format!("{}: {e}", config_file.display()))
                })
                .await;
            match written {
                Ok(dynamic) => {
                    tracing::info!(file = %dynamic.display(), "wrote the dynamic configuration")
                }
                Err(e) => tracing::error!(error = %e, "cannot write the dynamic configuration"),
            }
        })
        .detach();
    }
}

/// What the main loop does with one output of the replica.
struct Absorbed {
    batches: Vec<Arc<CommitBatch>>,
    persists: Vec<Persist>,
    chunks: Vec<ChunkWanted>,
    /// Txns committed, for the snapshot policy.
    txns: u64,
}

/// Runs the member's sequencer on the current executor until it is asked
/// to stop.
pub async fn run(setup: ReplicateSetup) -> Stopped {
    let ReplicateSetup {
        replica,
        mut log,
        data_dir,
        log_dir,
        mut snapshot_policy,
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
        config_file,
    } = setup;
    stats.ensemble.set_role(Role::Looking);
    let glue = Rc::new(RefCell::new(Glue {
        replica,
        pending: HashMap::new(),
        syncs: HashMap::new(),
        next_sync: 1,
        local: Vec::new(),
        stats: stats.clone(),
        read_only_after,
        // A member starts without a leader; one that hears from the leader
        // before its first pass below must still count that election.
        looking_since: Some(std::time::Instant::now()),
        config_file,
    }));
    let (kick_tx, kick_rx) = local_channel::new_bounded::<()>(1);
    let kick_tx = Rc::new(kick_tx);
    for inbox in inboxes {
        let (glue, kick_tx) = (glue.clone(), kick_tx.clone());
        glommio::spawn_local(async move {
            let inbox = inbox.connect().await;
            while let Some(message) = inbox.recv().await {
                glue.borrow_mut().accept(message);
                let _ = kick_tx.try_send(());
            }
        })
        .detach();
    }
    {
        let (glue, kick_tx) = (glue.clone(), kick_tx.clone());
        glommio::spawn_local(async move {
            while let Some(event) = inbound.recv().await {
                match event {
                    PeerEvent::Message(from, msg) => {
                        if let Err(e) = glue.borrow_mut().replica.step(from, msg) {
                            tracing::warn!(peer = from, error = %e, "peer message refused");
                        }
                    }
                    PeerEvent::Lost(peer) => glue.borrow_mut().replica.peer_lost(peer),
                }
                let _ = kick_tx.try_send(());
            }
        })
        .detach();
    }
    {
        let (glue, kick_tx) = (glue.clone(), kick_tx.clone());
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(tick).await;
                let mut g = glue.borrow_mut();
                g.replica.tick(crate::stats::epoch_ms());
                // Once a tick is often enough for /metrics.
                g.stats.ensemble.set_peer_lag(g.replica.peer_lag());
                drop(g);
                let _ = kick_tx.try_send(());
            }
        })
        .detach();
    }
    let (persist_tx, persist_rx) = local_channel::new_bounded::<Persist>(PERSIST_QUEUE);
    {
        let (glue, kick_tx, outbound, stats) = (
            glue.clone(),
            kick_tx.clone(),
            outbound.clone(),
            stats.clone(),
        );
        let (data_dir, log_dir) = (data_dir.clone(), log_dir.clone());
        glommio::spawn_local(async move {
            let mut written = hard_state;
            let mut carried: Option<Persist> = None;
            loop {
                let Some(first) = (match carried.take() {
                    Some(p) => Some(p),
                    None => persist_rx.recv().await,
                }) else {
                    break;
                };
                // What queued meanwhile goes in the same write, but for an
                // installed snapshot, which is written on its own.
                let mut group = vec![first];
                while group.len() < PERSIST_GROUP && group[0].snapshot.is_none() {
                    match futures_lite::future::poll_once(persist_rx.recv()).await {
                        Some(Some(p)) if p.snapshot.is_some() => {
                            carried = Some(p);
                            break;
                        }
                        Some(Some(p)) => group.push(p),
                        _ => break,
                    }
                }
                let started = std::time::Instant::now();
                // A failed write is retried until it succeeds: nothing after
                // it is acknowledged meanwhile, and the others go on committing.
                while let Err(e) = write(&mut log, &data_dir, &mut written, &group).await {
                    tracing::error!(error = %e, "raft log write failed; retrying");
                    glommio::timer::sleep(WRITE_RETRY).await;
                }
                let took = started.elapsed();
                if took >= fsync_warning {
                    tracing::warn!(
                        ms = took.as_millis() as u64,
                        "raft log write and fsync took longer than fsync.warningthresholdms"
                    );
                }
                stats.fsync_us.record(took.as_micros() as u64);
                for (to, msg) in group.iter().flat_map(|p| p.after.iter()) {
                    outbound.send(*to, msg);
                }
                let (number, installed) = match group.last() {
                    Some(p) => (p.number, p.snapshot.is_some()),
                    None => continue,
                };
                glue.borrow_mut().replica.persisted(number);
                if installed {
                    // The log before the installed snapshot is obsolete.
                    let kept_from = glue.borrow().replica.log_kept_from();
                    purge(&data_dir, &log_dir, kept_from, snap_retain_count).await;
                }
                let _ = kick_tx.try_send(());
            }
        })
        .detach();
    }
    let mut senders: Vec<ConnectedSender<Arc<CommitBatch>>> = Vec::new();
    for outbox in outboxes {
        senders.push(outbox.connect().await);
    }
    let mut handed = HandedVersions::default();
    let mut stopping: Option<std::time::Instant> = None;
    let snapshotting = Rc::new(std::cell::Cell::new(false));
    let mut snapshot_due = false;
    loop {
        if shutdown.requested() && stopping.is_none() {
            // A leader hands over first, so the ensemble does not wait out an
            // election timeout; a follower just goes.
            let to = glue.borrow_mut().replica.transfer_leadership();
            tracing::info!(to, "shutting down");
            stopping = Some(std::time::Instant::now());
        }
        if let Some(since) = stopping {
            let leads = glue.borrow().replica.is_leader();
            if !leads || since.elapsed() > HANDOVER {
                return Stopped::Requested;
            }
        }
        futures_lite::future::or(
            async {
                let _ = kick_rx.recv().await;
            },
            glommio::timer::sleep(Duration::from_millis(50)),
        )
        .await;
        let absorbed = {
            let mut g = glue.borrow_mut();
            let out = match g.replica.output() {
                Ok(out) => out,
                Err(e) => {
                    tracing::error!(error = %e, "the replica cannot go on");
                    return Stopped::Diverged;
                }
            };
            g.absorb(out, &outbound)
        };
        let Absorbed {
            batches,
            persists,
            chunks,
            txns,
        } = absorbed;
        for want in chunks {
            glommio::spawn_local(send_chunk(data_dir.clone(), want, outbound.clone())).detach();
        }
        let bytes: usize = persists
            .iter()
            .flat_map(|p| p.entries.iter())
            .map(|e| e.data.len())
            .sum();
        if (txns > 0 || bytes > 0) && snapshot_policy.record(txns, bytes as u64) {
            snapshot_due = true;
        }
        // A member a reconfig added needs a snapshot that knows it.
        snapshot_due |= glue.borrow().replica.snapshot_wanted();
        // A snapshot that falls due while the last one is still being written
        // waits for it: dropped, the log would grow until the next one falls
        // due, which never happens once writes stop.
        if snapshot_due && !snapshotting.get() {
            let point = glue.borrow().replica.snapshot_point();
            if let Some((index, term, tree)) = point {
                snapshot_due = false;
                snapshotting.set(true);
                let task = take_snapshot(
                    (index, term, tree),
                    (data_dir.clone(), log_dir.clone(), snap_retain_count),
                    glue.clone(),
                    stats.clone(),
                    snapshotting.clone(),
                );
                glommio::spawn_local(task).detach();
            }
        }
        for persist in persists {
            if persist_tx.send(persist).await.is_err() {
                return Stopped::Diverged;
            }
        }
        for batch in batches {
            if let Err(stopped) = fan_out(&senders, &stats, batch.clone()).await {
                return stopped;
            }
            handed.push(&batch, &stats);
        }
    }
}

/// Writes the applied tree as a raft snapshot off the executor, then lets
/// the replica compact its log and drops the files before it.
async fn take_snapshot(
    (index, term, tree): (u64, u64, zoocore_engine::DataTree),
    (data_dir, log_dir, keep): (PathBuf, PathBuf, usize),
    glue: Rc<RefCell<Glue>>,
    stats: Arc<Stats>,
    snapshotting: Rc<std::cell::Cell<bool>>,
) {
    let started = std::time::Instant::now();
    let dir = data_dir.clone();
    let written = glommio::executor()
        .spawn_blocking(move || {
            // Serving threads come first (as the standalone snapshotter).
            // SAFETY: setpriority on this thread's own id.
            let tid = unsafe { libc::gettid() } as libc::id_t;
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 19) };
            let written = raftlog::write_snapshot(&dir, index, term, &tree);
            // SAFETY: as above; the blocking pool's thread goes back to normal.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 0) };
            written
        })
        .await;
    snapshotting.set(false);
    match written {
        Ok(meta) => {
            stats
                .snapshot_ms
                .record(started.elapsed().as_millis() as u64);
            tracing::info!(
                index,
                term,
                bytes = meta.len,
                ms = started.elapsed().as_millis() as u64,
                "raft snapshot taken"
            );
            let kept_from = {
                let mut g = glue.borrow_mut();
                g.replica.snapshot_taken(meta);
                g.replica.log_kept_from()
            };
            purge(&data_dir, &log_dir, kept_from, keep).await;
        }
        Err(e) => tracing::error!(error = %e, "raft snapshot failed"),
    }
}

async fn purge(data_dir: &std::path::Path, log_dir: &std::path::Path, kept_from: u64, keep: usize) {
    let (data_dir, log_dir) = (data_dir.to_owned(), log_dir.to_owned());
    let purged = glommio::executor()
        .spawn_blocking(move || raftlog::purge(&data_dir, &log_dir, kept_from, keep))
        .await;
    if let Err(e) = purged {
        tracing::warn!(error = %e, "dropping raft log segments or snapshots failed");
    }
}

/// Reads one chunk of a snapshot another member asked for and sends it (or
/// says the snapshot is gone, if it cannot be read).
async fn send_chunk(data_dir: PathBuf, want: ChunkWanted, outbound: Outbound) {
    let meta = want.meta;
    let read = glommio::executor()
        .spawn_blocking(move || raftlog::read_chunk(&data_dir, &meta, want.offset, SNAPSHOT_CHUNK))
        .await;
    let (total, data) = match read {
        Ok(data) => (meta.len, data),
        Err(e) => {
            tracing::warn!(error = %e, index = meta.index, "a snapshot asked for cannot be read");
            (0, Vec::new())
        }
    };
    let chunk = PeerMsg::SnapshotChunk {
        index: meta.index,
        term: meta.term,
        offset: want.offset,
        total,
        data,
    };
    outbound.send(want.to, &chunk);
}

/// Makes a group of persists durable: the newest hard state first (when
/// its term or vote changed), then a snapshot from the leader and its mark
/// (a group with one is that persist alone), then every entry, in order,
/// as log batches.
async fn write(
    log: &mut LogWriter,
    data_dir: &std::path::Path,
    written: &mut HardState,
    group: &[Persist],
) -> std::io::Result<()> {
    if let Some(hs) = group.iter().rev().find_map(|p| p.hard_state.as_ref()) {
        // The commit index is a hint (recovery lowers it to the log), so a
        // change of commit alone is not worth a file write.
        if hs.term != written.term || hs.vote != written.vote {
            let (dir, state) = (data_dir.to_owned(), hs.clone());
            glommio::executor()
                .spawn_blocking(move || raftlog::write_state(&dir, &state))
                .await?;
            *written = hs.clone();
        }
    }
    if let Some(installed) = group.iter().find_map(|p| p.snapshot.as_ref()) {
        let (dir, meta, bytes) = (data_dir.to_owned(), installed.meta, installed.bytes.clone());
        glommio::executor()
            .spawn_blocking(move || raftlog::write_received(&dir, &meta, &bytes))
            .await?;
        log.append(raftlog::encode_mark(&meta), meta.index as i64)
            .await?;
    }
    for (first, batch) in raftlog::encode(group.iter().flat_map(|p| p.entries.iter())) {
        log.append(batch, first as i64).await?;
    }
    Ok(())
}
