//! One member of an ensemble as a pure state machine: raft-rs's `RawNode`
//! around the sequencer's validate-and-order step. Inputs are method calls
//! (time, peer messages, proposals, "this is durable now"); everything to
//! do is collected in an [`Output`]. No I/O, no clock, no threads: the
//! server drives it on the sequencer's core, the simulation drives several
//! in one test, and the same inputs give the same outputs.
//!
//! The leader validates each proposal against its *speculative* tree (every
//! txn it has ordered, committed or not, applied), so a request sees every
//! request ordered before it, as ZooKeeper's outstanding changes do; txns
//! collect in an open batch that becomes one raft entry. Every member,
//! leader included, applies committed entries to its *applied* tree, which
//! is the only state clients read. A leader that steps down drops its
//! speculation; the next one rebuilds it from the applied tree and the
//! entries of its log that are not applied yet (raft commits all of them
//! with its first entry), so zxids continue from its log's last and are
//! never reused by a committed txn.

use std::collections::BTreeSet;

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState, Entry,
    HardState, Message, MessageType,
};
use raft::{RawNode, ReadOnlyOption, SnapshotStatus, StateRole, Storage};
use zoocore_engine::acl::{self, Identity};
use zoocore_engine::prep::prepare_expiry_delete;
use zoocore_engine::tree::Applied;
use zoocore_engine::txn::{Txn, TxnOp};
use zoocore_engine::{prepare, session, DataTree, PrepContext};
use zoocore_net::consts::perms;
use zoocore_net::{ErrorCode, ReconfigRequest, Request};

use crate::entry::{self, EntryError, EntryKind};
use crate::membership::Membership;
use crate::peer_msg::{PeerMsg, Proposal, ProposalOp, MAX_SNAPSHOT, MAX_TOUCHES, SNAPSHOT_CHUNK};
use crate::sessions::SessionTracker;
use crate::store::{EntryStore, SnapshotMeta};

/// What a replica is configured with; every duration is in ticks or in the
/// caller's milliseconds.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This server's id (`myid`), 1..=255.
    pub id: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// Milliseconds per raft tick (`zoocore.raftTickMs`).
    pub tick_ms: i64,
    /// Ticks without a leader before an election (`zoocore.electionTicks`).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats (`zoocore.heartbeatTicks`).
    pub heartbeat_ticks: usize,
    /// Randomised election timeout range `[min, max)` in ticks; `None` is
    /// raft's `[election, 2 x election)`. The simulation gives each member
    /// a fixed, distinct timeout so that a seed decides everything.
    pub election_range: Option<(usize, usize)>,
    /// A batch is sealed (becomes one entry) before it passes this size.
    pub max_batch_bytes: usize,
    /// Appends in flight to one follower (`zoocore.maxInflightAppends`).
    pub max_inflight_appends: usize,
    /// Bytes of entries in one append message (`zoocore.maxAppendBytes`).
    pub max_append_bytes: u64,
    pub extended_types: bool,
    /// How often the leader looks for empty containers and expired TTL
    /// nodes (ZooKeeper's `znode.container.checkIntervalMs`).
    pub container_check_ms: i64,
    /// What `/zookeeper/config` holds (`Membership::config_text`); empty
    /// leaves the node empty (and reconfig impossible). A snapshot whose
    /// configuration is newer (a later reconfig) wins over it.
    pub config_node: String,
    /// `reconfigEnabled`: the leader takes reconfig requests.
    pub reconfig_enabled: bool,
    /// Entries kept before a snapshot's index when the log is compacted, so
    /// that a member a little behind catches up from the log rather than
    /// by a whole snapshot (`zoocore.raftRetainedEntries`).
    pub retained_entries: u64,
}

/// How far a member is behind the leader's log (`Replica::peer_lag`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PeerLag {
    pub id: u64,
    /// Entries it lacks.
    pub entries: u64,
    /// Bytes of entry data it lacks (at least: a member behind the log's
    /// start also needs a snapshot).
    pub bytes: u64,
    /// Milliseconds since the first entry it lacks was appended here.
    pub ms: i64,
}

/// What a leader sees of the other members (`Replica::learners`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Learners {
    /// Members heard from recently, voters and observers.
    pub learners: usize,
    /// Of those, voters.
    pub followers: usize,
    /// Voters whose log holds everything committed.
    pub synced_followers: usize,
    /// Observers whose log holds everything committed.
    pub synced_observers: usize,
}

/// What a replica finds on its disk at start: the raft hard state, the
/// snapshot it starts from (`snapshot::recover` chooses it) and the entries
/// made durable after it (from index 1 without one). The hard state may be
/// newer than the entries (it is written first).
#[derive(Clone, Default)]
pub struct DurableState {
    pub hard_state: HardState,
    pub snapshot: Option<(SnapshotMeta, DataTree)>,
    pub entries: Vec<Entry>,
}

/// A snapshot taken from the leader, to make durable: the file first, then
/// a mark in the log at its index (see `snapshot.rs`).
#[derive(Debug, Clone)]
pub struct Installed {
    pub meta: SnapshotMeta,
    pub bytes: Vec<u8>,
}

/// Another member asks for snapshot bytes: send `PeerMsg::SnapshotChunk`
/// with up to `SNAPSHOT_CHUNK` bytes of the file from `offset` (or with a
/// `total` of 0 if it cannot be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkWanted {
    pub to: u64,
    pub meta: SnapshotMeta,
    pub offset: u64,
}

/// Entries and hard state to make durable, in order of `number`: the hard
/// state first, then an installed snapshot, then the entries, which replace
/// whatever the log holds from the first one's index on (raft cuts a
/// follower's conflicting suffix this way). Once all are durable, send
/// `after` and call [`Replica::persisted`] with `number`.
#[derive(Debug, Clone)]
pub struct Persist {
    pub number: u64,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub snapshot: Option<Installed>,
    pub after: Vec<(u64, PeerMsg)>,
}

/// A committed entry's txns, applied, with the tree they lead to.
#[derive(Clone)]
pub struct Committed {
    pub index: u64,
    pub term: u64,
    pub txns: Vec<(Txn, Applied)>,
    /// The applied tree after this entry (a version: cheap to keep).
    pub tree: DataTree,
    /// A snapshot from the leader replaced the tree (and there are no
    /// txns): what changed is not known, so watches cannot be told, and the
    /// server disconnects its clients (they reconnect and set them again).
    pub installed: bool,
}

/// Everything a replica asks its driver to do.
#[derive(Default)]
pub struct Output {
    /// Send now.
    pub messages: Vec<(u64, PeerMsg)>,
    /// Make durable, in order.
    pub persist: Vec<Persist>,
    /// Committed entries, applied, in order.
    pub committed: Vec<Committed>,
    /// Syncs (by the caller's id) that may be answered: everything
    /// committed before they were asked is applied here.
    pub synced: Vec<u64>,
    /// The leader this replica follows changed (0: none known). Requests of
    /// this server's clients that are in flight end in connection loss.
    pub leader_changed: Option<u64>,
    /// Proposals made while no leader is known: refused at once.
    pub refused: Vec<Proposal>,
    /// Snapshot bytes other members asked for.
    pub chunks: Vec<ChunkWanted>,
    /// `/zookeeper/config` changed (a reconfig committed, or a snapshot
    /// brought a newer one): the membership this member now talks to.
    pub config: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("committed {0}")]
    Entry(#[from] EntryError),
    #[error("committed entry {index} starts at zxid {zxid:#x}, the tree is at {last:#x}")]
    ZxidGap { index: u64, zxid: i64, last: i64 },
    #[error("raft restored a snapshot at index {0} that was never received")]
    SnapshotMissing(u64),
}

/// A snapshot arriving from the member that sent raft's snapshot message.
struct Fetch {
    from: u64,
    meta: SnapshotMeta,
    bytes: Vec<u8>,
    asked_at: i64,
    /// That message, stepped into raft once the bytes are here and valid.
    message: Message,
}

/// A snapshot received whole and decoded, waiting for raft to restore it.
struct Fetched {
    meta: SnapshotMeta,
    tree: DataTree,
    bytes: Vec<u8>,
}

/// The leader's side: speculation, the open batch, session deadlines.
struct Leading {
    /// Every txn this leader has ordered, committed or not, applied.
    tree: DataTree,
    next_zxid: i64,
    /// Records of the open batch (not yet an entry), and their count.
    open: Vec<u8>,
    open_txns: usize,
    /// The speculation as it was before the open batch's first txn: where
    /// it returns if the batch cannot be proposed.
    open_base: Option<(DataTree, i64)>,
    sessions: SessionTracker,
    /// The member each session last connected through, when it said so
    /// (ZooKeeper's session owner): requests through another member get
    /// `SessionMoved`. This leader's own: a new one starts without owners,
    /// as every client reconnects after a leader change anyway.
    owners: std::collections::HashMap<i64, u64>,
}

impl Leading {
    /// Gives `op` the next zxid and applies it to the speculation.
    fn speculate_txn(&mut self, time: i64, session_id: i64, cxid: i32, op: TxnOp) -> Txn {
        let txn = Txn {
            zxid: self.next_zxid,
            time,
            session_id,
            cxid,
            op,
        };
        self.next_zxid += 1;
        self.tree.apply(&txn);
        txn
    }
}

pub struct Replica {
    config: ReplicaConfig,
    raw: RawNode<EntryStore>,
    /// The state clients read: every committed entry up to `applied`.
    tree: DataTree,
    applied: u64,
    leading: Option<Leading>,
    leader_id: u64,
    term: u64,
    now: i64,
    last_tick: i64,
    next_container_check: i64,
    next_session_id: i64,
    /// Sessions heard from since the last report to the leader.
    touched: BTreeSet<i64>,
    /// Syncs waiting for `applied` to reach their read index.
    reads: Vec<(u64, u64)>,
    fetch: Option<Fetch>,
    fetched: Option<Fetched>,
    out: Output,
}

impl Replica {
    /// A replica starting at `now` from what its disk holds.
    pub fn new(
        mut config: ReplicaConfig,
        durable: DurableState,
        now: i64,
    ) -> Result<Replica, ReplicaError> {
        let (snapshot_meta, snapshot_tree) = match durable.snapshot {
            Some((meta, tree)) => (Some(meta), Some(tree)),
            None => (None, None),
        };
        let start = snapshot_meta.map_or(0, |s| s.index);
        // Term and vote must be durable before the messages that depend on
        // them, so the hard state is written before the entries it came
        // with; a crash between the two leaves a commit index past the log.
        // The commit index is only a hint: bring it within the log.
        let mut hard_state = durable.hard_state.clone();
        let last = durable.entries.last().map_or(start, |e| e.index);
        hard_state.commit = hard_state.commit.min(last).max(start);
        let mut tree = snapshot_tree.unwrap_or_else(|| DataTree::new(config.extended_types));
        // The configuration this member was started with, unless the
        // snapshot holds a newer one (a reconfig since; the log after it
        // replays any later one). A started-with configuration newer than
        // the snapshot's was written after a reconfig this member applied:
        // its log replays that, so the tree is left as every member had it
        // at the snapshot's index. Only the static configuration (the same
        // version) is written into the tree, as it is no txn.
        let started_with = Membership::parse_config(&config.config_node).map_or(0, |(_, v)| v);
        let in_tree = config_in(&tree);
        let tree_version = in_tree.as_ref().map_or(0, |(_, v)| *v);
        match in_tree {
            Some((membership, version)) if version > started_with => {
                config.voters = membership.voters();
                config.learners = membership.learners();
            }
            _ if tree_version < started_with => {}
            _ => {
                let config_now = tree
                    .get(CONFIG_NODE)
                    .and_then(|n| n.data.as_deref())
                    .unwrap_or_default();
                if !config.config_node.is_empty() && config_now != config.config_node.as_bytes() {
                    tree.set_config(config.config_node.as_bytes(), now);
                }
            }
        }
        let mut storage = EntryStore::new(
            ConfState::from((config.voters.clone(), config.learners.clone())),
            hard_state,
            snapshot_meta,
        );
        storage.append(&durable.entries, now)?;
        let mut raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: start,
            max_size_per_msg: config.max_append_bytes,
            max_inflight_msgs: config.max_inflight_appends,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            // raft-rs 0.7's batch_append merges new entries into a pending
            // empty append whose index is past them, so the follower reports a
            // match beyond its log and later panics on a heartbeat's commit.
            // The simulation found it under message reordering (seed 1).
            batch_append: false,
            ..Default::default()
        };
        if let Some((min, max)) = config.election_range {
            raft_config.min_election_tick = min;
            raft_config.max_election_tick = max;
        }
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&raft_config, storage, &logger)?;
        let server_id = u8::try_from(config.id).unwrap_or(u8::MAX);
        Ok(Replica {
            tree,
            applied: start,
            leading: None,
            leader_id: 0,
            term: durable.hard_state.term,
            now,
            last_tick: now,
            next_container_check: now,
            next_session_id: session::first_session_id(server_id, now),
            touched: BTreeSet::new(),
            reads: Vec::new(),
            fetch: None,
            fetched: None,
            out: Output::default(),
            raw,
            config,
        })
    }

    pub fn id(&self) -> u64 {
        self.config.id
    }

    pub fn is_leader(&self) -> bool {
        self.leading.is_some()
    }

    /// The leader this replica follows, 0 when none is known.
    pub fn leader_id(&self) -> u64 {
        self.leader_id
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    /// The tree clients of this server read.
    pub fn tree(&self) -> &DataTree {
        &self.tree
    }

    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// Where the disk must keep the log from: one entry before raft's first,
    /// as a snapshot's index may name that entry and recovery looks for it.
    /// Everything before may be dropped.
    pub fn log_kept_from(&self) -> u64 {
        self.raw
            .store()
            .first_index()
            .unwrap_or(1)
            .saturating_sub(1)
    }

    /// What a snapshot taken now holds: the applied tree, after the entry at
    /// this index and term. `None` before anything is applied.
    pub fn snapshot_point(&self) -> Option<(u64, u64, DataTree)> {
        // Not inside a joint configuration: a member restarting from a
        // snapshot takes its membership from the tree's /zookeeper/config,
        // which cannot say "joint".
        if self.applied == 0 || self.joint() {
            return None;
        }
        let term = self.raw.raft.raft_log.term(self.applied).ok()?;
        Some((self.applied, term, self.tree.clone()))
    }

    /// A snapshot of [`Replica::snapshot_point`] is durable: raft sends it
    /// to members too far behind, and the log before it is dropped, but for
    /// the last `retained_entries`.
    pub fn snapshot_taken(&mut self, meta: SnapshotMeta) {
        if meta.index == 0 || meta.index > self.applied {
            return;
        }
        let compact_to = meta
            .index
            .saturating_sub(self.config.retained_entries)
            .min(self.applied);
        self.raw.mut_store().snapshot_taken(meta, compact_to);
    }

    /// The newest snapshot this member holds.
    pub fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.raw.store().snapshot_meta()
    }

    /// Leader only: the other members heard from recently, and which of
    /// them hold everything committed (ZooKeeper's learners, synced
    /// followers and synced observers).
    pub fn learners(&self) -> Learners {
        let mut counts = Learners::default();
        if self.leading.is_none() {
            return counts;
        }
        let commit = self.commit_index();
        for (&id, progress) in self.raw.raft.prs().iter() {
            if id == self.config.id || !progress.recent_active {
                continue;
            }
            let voter = self.config.voters.contains(&id);
            counts.learners += 1;
            counts.followers += usize::from(voter);
            if progress.matched >= commit {
                if voter {
                    counts.synced_followers += 1;
                } else {
                    counts.synced_observers += 1;
                }
            }
        }
        counts
    }

    /// The membership and its version as `/zookeeper/config` says now.
    pub fn membership(&self) -> Option<(Membership, i64)> {
        config_in(&self.tree)
    }

    /// Whether raft's membership is joint (a change under way).
    fn joint(&self) -> bool {
        !self
            .raw
            .raft
            .prs()
            .conf()
            .to_conf_state()
            .voters_outgoing
            .is_empty()
    }

    /// Whether this member is an observer: it replicates but never votes.
    pub fn is_observer(&self) -> bool {
        self.config.learners.contains(&self.config.id)
    }

    /// The leader could not send a member its snapshot because the newest
    /// one predates that member (a reconfig added it since): take one now.
    pub fn snapshot_wanted(&self) -> bool {
        self.leading.is_some() && self.raw.store().snapshot_wanted()
    }

    /// Leader only: how far each other member is behind this log.
    pub fn peer_lag(&self) -> Vec<PeerLag> {
        if self.leading.is_none() {
            return Vec::new();
        }
        let last = self.raw.raft.raft_log.last_index();
        let store = self.raw.store();
        let mut lag: Vec<PeerLag> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(&id, _)| id != self.config.id)
            .map(|(&id, p)| {
                let (bytes, ms) = store.lag_after(p.matched, self.now);
                PeerLag {
                    id,
                    entries: last.saturating_sub(p.matched),
                    bytes,
                    ms,
                }
            })
            .collect();
        lag.sort_unstable_by_key(|l| l.id);
        lag
    }

    /// Hands leadership to the voter whose log is furthest along (a leader
    /// stopping on SIGTERM); returns whom, or `None` if there is no one.
    pub fn transfer_leadership(&mut self) -> Option<u64> {
        self.leading.as_ref()?;
        let me = self.config.id;
        let to = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(&id, p)| id != me && p.recent_active && self.config.voters.contains(&id))
            .max_by_key(|(&id, p)| (p.matched, std::cmp::Reverse(id)))
            .map(|(&id, _)| id)?;
        self.raw.transfer_leader(to);
        Some(to)
    }

    /// The id for a session a client of this server opens. Server ids sit in
    /// the top byte, so members never pick the same one.
    pub fn next_session_id(&mut self) -> i64 {
        loop {
            let id = self.next_session_id;
            self.next_session_id += 1;
            if !self.tree.sessions().contains_key(&id) {
                return id;
            }
        }
    }

    /// Time passes: raft ticks, the leader expires sessions not heard from,
    /// a follower reports the sessions its clients touched.
    pub fn tick(&mut self, now: i64) {
        self.now = self.now.max(now);
        // One raft tick per call at most: after a stall (a busy core, a
        // paused process) the ticks missed are dropped, as a Go ticker drops
        // them, rather than run at once, which would expire the election
        // timeout (or a leader's quorum check) before the messages that
        // waited meanwhile are read.
        if self.last_tick + self.config.tick_ms <= self.now {
            self.last_tick =
                (self.last_tick + self.config.tick_ms).max(self.now - self.config.tick_ms);
            self.raw.tick();
        }
        // raft never times out a learner's leader: a learner calls no
        // election. An observer that has not heard from its leader for an
        // election timeout forgets it, as a ZooKeeper observer goes back to
        // looking, and serves again once a leader's message names one.
        // A member a reconfig removed hears no more from the leader either.
        let voter = self.config.voters.contains(&self.config.id);
        let raft = &mut self.raw.raft;
        if !voter && raft.leader_id != raft::INVALID_ID && raft.pass_election_timeout() {
            raft.leader_id = raft::INVALID_ID;
        }
        let raft = &mut self.raw.raft;
        // raft-rs leaves a joint configuration by itself only when the
        // leader that applies the change was the one in office when it was
        // proposed; a successor proposes the way out here.
        if self.leading.is_some()
            && raft.state == StateRole::Leader
            && *raft.prs().conf().auto_leave()
            && !raft.has_pending_conf()
        {
            let mut leave = ConfChangeV2::default();
            leave.set_transition(ConfChangeTransition::Auto);
            let _ = self.raw.propose_conf_change(Vec::new(), leave);
        }
        if let Some(leading) = &mut self.leading {
            let due = leading.sessions.due(self.now);
            for session_id in due {
                self.order(
                    Proposal {
                        session_id,
                        cxid: 0,
                        identity: Identity::default(),
                        op: ProposalOp::CloseSession,
                    },
                    None,
                );
            }
            if self.now >= self.next_container_check {
                self.next_container_check = self.now + self.config.container_check_ms;
                let expired = self
                    .leading
                    .as_ref()
                    .map(|l| l.tree.expired_nodes(self.now))
                    .unwrap_or_default();
                for path in expired {
                    self.expire_node(&path);
                }
            }
        } else if self.leader_id != 0 && !self.touched.is_empty() {
            self.report_touches();
        }
        // A snapshot read that went unanswered (a lost message) is asked again.
        let retry = self.config.tick_ms * self.config.election_ticks as i64;
        if let Some(f) = &mut self.fetch {
            if self.now - f.asked_at >= retry {
                f.asked_at = self.now;
                let read = PeerMsg::SnapshotRead {
                    index: f.meta.index,
                    term: f.meta.term,
                    offset: f.bytes.len() as u64,
                };
                self.out.messages.push((f.from, read));
            }
        }
    }

    fn report_touches(&mut self) {
        let touched: Vec<i64> = std::mem::take(&mut self.touched).into_iter().collect();
        for chunk in touched.chunks(MAX_TOUCHES) {
            self.out
                .messages
                .push((self.leader_id, PeerMsg::Touches(chunk.to_vec())));
        }
    }

    /// The connection from `peer` closed (a crashed process's socket is reset
    /// at once). If it is the leader, this member stops deferring to it: its
    /// lease ends now, so it grants votes and campaigns within one election
    /// timeout instead of waiting out a full one first. A leader that is in
    /// fact alive keeps its office: pre-vote fails while the others hear it.
    pub fn peer_lost(&mut self, peer: u64) {
        if self.leading.is_some() || peer != self.leader_id {
            return;
        }
        let raft = &mut self.raw.raft;
        raft.election_elapsed = raft.election_elapsed.max(raft.election_timeout());
    }

    /// A client of this server was heard from.
    pub fn touch(&mut self, session_id: i64) {
        match &mut self.leading {
            Some(leading) => leading.sessions.touch(session_id, self.now),
            None => {
                self.touched.insert(session_id);
            }
        }
    }

    /// A message from another member.
    pub fn step(&mut self, from: u64, msg: PeerMsg) -> Result<(), ReplicaError> {
        match msg {
            PeerMsg::Raft(m) => {
                // Proposals travel as `Forward` (validated by the leader),
                // never as raft's MsgPropose: a deposed leader's batch,
                // numbered with its zxids, must not reach another's log.
                if m.from != from
                    || m.to != self.config.id
                    || m.get_msg_type() == MessageType::MsgPropose
                {
                    return Ok(());
                }
                if m.get_msg_type() == MessageType::MsgSnapshot && !self.may_restore(&m) {
                    self.want_snapshot(from, *m);
                    return Ok(());
                }
                self.step_raft(*m)?;
            }
            PeerMsg::SnapshotRead {
                index,
                term,
                offset,
            } => {
                let reply = match self.raw.store().snapshot_meta() {
                    Some(meta) if (meta.index, meta.term) == (index, term) => {
                        if offset < meta.len {
                            self.out.chunks.push(ChunkWanted {
                                to: from,
                                meta,
                                offset,
                            });
                        }
                        None
                    }
                    // Replaced by a newer one: the asker gives up and the
                    // leader sends the newest.
                    _ => Some(PeerMsg::SnapshotChunk {
                        index,
                        term,
                        offset,
                        total: 0,
                        data: Vec::new(),
                    }),
                };
                if let Some(reply) = reply {
                    self.out.messages.push((from, reply));
                }
            }
            PeerMsg::SnapshotChunk {
                index,
                term,
                offset,
                total,
                data,
            } => self.snapshot_chunk(from, (index, term), offset, total, data)?,
            PeerMsg::Forward(proposal) => {
                // A proposal for an older leader is dropped: its server fails
                // the request when it sees the leader change.
                if self.leading.is_some() {
                    self.touch(proposal.session_id);
                    self.order(proposal, Some(from));
                }
            }
            PeerMsg::Touches(ids) => {
                if let Some(leading) = &mut self.leading {
                    for id in ids {
                        leading.sessions.touch(id, self.now);
                    }
                }
            }
            PeerMsg::Hello { .. } => {}
        }
        Ok(())
    }

    fn step_raft(&mut self, mut m: Message) -> Result<(), ReplicaError> {
        let mut lacking = None;
        match m.get_msg_type() {
            // A member restarted with an empty (or older) disk hears a
            // commit index beyond its log from a leader that still counts
            // what it had acknowledged; raft would abort on it. Commit only
            // covers what this log holds, and the leader is told (below).
            MessageType::MsgHeartbeat => {
                let last = self.raw.raft.raft_log.last_index();
                if m.commit > last {
                    lacking = Some((m.from, m.commit, last));
                    m.commit = last;
                }
            }
            // Such a member refuses appends with a log shorter than what it
            // acknowledged, a refusal raft takes for a stale one. Its
            // progress goes back to what it holds, so the leader probes it
            // from there (and sends a snapshot when that is compacted).
            // Commit never goes back: what this member had counted for
            // rests on the others' copies, as if its disk had died.
            MessageType::MsgAppendResponse if m.reject && self.leading.is_some() => {
                if let Some(progress) = self.raw.raft.mut_prs().get_mut(m.from) {
                    if m.reject_hint < progress.matched {
                        progress.matched = m.reject_hint;
                        progress.become_probe();
                    }
                }
            }
            _ => {}
        }
        match self.raw.step(m) {
            // Stale or foreign messages are raft's to ignore.
            Ok(()) | Err(raft::Error::StepPeerNotFound) | Err(raft::Error::StepLocalMsg) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some((leader, commit, last)) = lacking {
            // The refusal an append would have met, so an idle leader also
            // learns where this log ends (it promises nothing, so it need not
            // wait for the new term to be durable).
            let mut refusal = Message::default();
            refusal.set_msg_type(MessageType::MsgAppendResponse);
            refusal.to = leader;
            refusal.from = self.config.id;
            refusal.term = self.raw.raft.term;
            refusal.reject = true;
            refusal.index = commit;
            refusal.reject_hint = last;
            self.out.messages.push((leader, raft_msg(refusal)));
        }
        Ok(())
    }

    /// Whether raft may take this snapshot message now: it needs no bytes
    /// (raft ignores it, or the log already holds its index and term), or
    /// the bytes are here.
    fn may_restore(&self, m: &Message) -> bool {
        let Some(meta) = SnapshotMeta::from_raft(m.get_snapshot()) else {
            return false;
        };
        let log = &self.raw.raft.raft_log;
        let needs_bytes = m.term >= self.raw.raft.term
            && meta.index > log.committed
            && !log.match_term(meta.index, meta.term);
        !needs_bytes || self.fetched.as_ref().is_some_and(|f| f.meta == meta)
    }

    /// Starts reading the snapshot a leader sent from it, or notes the
    /// newer copy of the message for a read under way.
    fn want_snapshot(&mut self, from: u64, m: Message) {
        let Some(meta) = SnapshotMeta::from_raft(m.get_snapshot()) else {
            return;
        };
        if meta.len == 0 || meta.len > MAX_SNAPSHOT {
            return;
        }
        if let Some(f) = &mut self.fetch {
            if f.from == from && f.meta == meta {
                f.message = m;
                return;
            }
        }
        let capacity = meta.len.min(SNAPSHOT_CHUNK as u64 * 64) as usize;
        self.fetch = Some(Fetch {
            from,
            meta,
            bytes: Vec::with_capacity(capacity),
            asked_at: self.now,
            message: m,
        });
        let read = PeerMsg::SnapshotRead {
            index: meta.index,
            term: meta.term,
            offset: 0,
        };
        self.out.messages.push((from, read));
    }

    fn snapshot_chunk(
        &mut self,
        from: u64,
        (index, term): (u64, u64),
        offset: u64,
        total: u64,
        data: Vec<u8>,
    ) -> Result<(), ReplicaError> {
        let now = self.now;
        let extended_types = self.config.extended_types;
        let Some(f) = &mut self.fetch else {
            return Ok(());
        };
        if f.from != from || (f.meta.index, f.meta.term) != (index, term) {
            return Ok(());
        }
        if total != f.meta.len {
            // The sender no longer has it (0) or it is not what it announced:
            // the leader sends its newest when this member next refuses an
            // append.
            self.fetch = None;
            return Ok(());
        }
        if offset != f.bytes.len() as u64 {
            return Ok(()); // a duplicate, or one overtaken by a retry
        }
        f.bytes.extend_from_slice(&data);
        f.asked_at = now;
        if (f.bytes.len() as u64) < f.meta.len {
            let read = PeerMsg::SnapshotRead {
                index,
                term,
                offset: f.bytes.len() as u64,
            };
            self.out.messages.push((from, read));
            return Ok(());
        }
        let Some(f) = self.fetch.take() else {
            return Ok(());
        };
        match zoocore_engine::snapshot::read(&f.bytes, extended_types) {
            Ok(tree) => {
                self.fetched = Some(Fetched {
                    meta: f.meta,
                    tree,
                    bytes: f.bytes,
                });
                self.step_raft(f.message)
            }
            Err(_) => Ok(()),
        }
    }

    /// A client of this server asks for a write or a session change.
    pub fn propose(&mut self, proposal: Proposal) {
        if self.leading.is_some() {
            self.touch(proposal.session_id);
            self.order(proposal, Some(self.config.id));
        } else if self.leader_id != 0 {
            self.touch(proposal.session_id);
            self.out
                .messages
                .push((self.leader_id, PeerMsg::Forward(proposal)));
        } else {
            self.out.refused.push(proposal);
        }
    }

    /// `sync`: answered (in `Output::synced`) once this replica has applied
    /// everything the leader had committed when it confirmed leadership.
    pub fn sync(&mut self, id: u64) {
        // The leader keeps one pending ReadIndex per context and drops a
        // second with the same bytes: the member's id makes every member's
        // contexts distinct.
        let mut ctx = id.to_be_bytes().to_vec();
        ctx.extend_from_slice(&self.config.id.to_be_bytes());
        self.raw.read_index(ctx);
    }

    /// What `Persist::number` named is durable.
    pub fn persisted(&mut self, number: u64) {
        self.raw.on_persist_ready(number);
        self.advance_applied();
    }

    /// Tells raft what is applied: at most what is durable here (a restored
    /// snapshot is applied before its persist completes).
    fn advance_applied(&mut self) {
        let log = &self.raw.raft.raft_log;
        let to = self.applied.min(log.persisted).min(log.committed);
        if to > log.applied {
            self.raw.advance_apply_to(to);
        }
    }

    /// Seals the open batch and collects everything there is to do.
    pub fn output(&mut self) -> Result<Output, ReplicaError> {
        self.seal()?;
        while self.raw.has_ready() {
            self.handle_ready()?;
        }
        Ok(std::mem::take(&mut self.out))
    }

    /// Validates a proposal that came through member `via` (`None`: the
    /// leader's own expiry) against the speculative tree and orders it.
    fn order(&mut self, proposal: Proposal, via: Option<u64>) {
        let now = self.now;
        let Some(leading) = &self.leading else {
            return;
        };
        let known = leading.tree.sessions().contains_key(&proposal.session_id);
        let owner = leading.owners.get(&proposal.session_id).copied();
        let moved = matches!((owner, via), (Some(o), Some(v)) if o != v);
        if let ProposalOp::Write(Request::Reconfig(request)) = &proposal.op {
            if known && !moved {
                match self.prepare_reconfig(request, &proposal.identity) {
                    Ok(next) => self.reconfigure(proposal.session_id, proposal.cxid, &next),
                    Err(code) => self.append_txn(
                        proposal.session_id,
                        proposal.cxid,
                        TxnOp::Error(code.code()),
                    ),
                }
                return;
            }
        }
        let Some(leading) = &mut self.leading else {
            return;
        };
        let op = match &proposal.op {
            ProposalOp::Revalidate => {
                if let Some(via) = via {
                    leading.owners.insert(proposal.session_id, via);
                }
                return;
            }
            // ZooKeeper's check: a request through a member the session
            // has left fails (a txn, like every failed write). A close is
            // exempt there too: it ends the session wherever it comes from.
            ProposalOp::Write(_) if known && moved => TxnOp::Error(ErrorCode::SessionMoved.code()),
            ProposalOp::Write(request) if known => {
                let ctx = PrepContext {
                    session_id: proposal.session_id,
                    identity: &proposal.identity,
                    zxid: leading.next_zxid,
                    time: now,
                };
                prepare(&leading.tree, &ctx, request)
            }
            ProposalOp::OpenSession { timeout } if !known => {
                if let Some(via) = via {
                    leading.owners.insert(proposal.session_id, via);
                }
                TxnOp::CreateSession { timeout: *timeout }
            }
            ProposalOp::CloseSession if known => {
                let ctx = PrepContext {
                    session_id: proposal.session_id,
                    identity: &proposal.identity,
                    zxid: leading.next_zxid,
                    time: now,
                };
                prepare(&leading.tree, &ctx, &Request::CloseSession)
            }
            // An expiry of a session already gone is nothing to order.
            ProposalOp::CloseSession if proposal.cxid == 0 => return,
            _ => TxnOp::Error(ErrorCode::SessionExpired.code()),
        };
        self.append_txn(proposal.session_id, proposal.cxid, op);
    }

    /// ZooKeeper's checks of a reconfig, in its order; the membership it
    /// asks for.
    fn prepare_reconfig(
        &self,
        request: &ReconfigRequest,
        identity: &Identity,
    ) -> Result<Membership, ErrorCode> {
        if !self.config.reconfig_enabled {
            return Err(ErrorCode::ReconfigDisabled);
        }
        let leading = self.leading.as_ref().ok_or(ErrorCode::ReconfigInProgress)?;
        // One at a time: raft's change must be over (joint configuration
        // left) and the last reconfig ordered must have committed.
        let raft = &self.raw.raft;
        let ordered = leading.tree.get(CONFIG_NODE).map(|n| n.stat.mzxid);
        let committed = self.tree.get(CONFIG_NODE).map(|n| n.stat.mzxid);
        if raft.has_pending_conf() || self.joint() || ordered != committed {
            return Err(ErrorCode::ReconfigInProgress);
        }
        let (current, version) = config_in(&leading.tree).ok_or(ErrorCode::ReconfigDisabled)?;
        if request.cur_config_id != -1 && request.cur_config_id != version {
            return Err(ErrorCode::BadVersion);
        }
        let next = if request.new_members.is_empty() {
            current.changed(&request.joining_servers, &request.leaving_servers)
        } else {
            Membership::parse_config(&request.new_members).map(|(m, _)| m)
        }
        .map_err(|_| ErrorCode::BadArguments)?;
        // ZooKeeper's standaloneEnabled (its default) wants two voters.
        let voters = next.voters();
        if voters.len() < 2 {
            return Err(ErrorCode::BadArguments);
        }
        // A quorum of the new voters must be connected to this leader now.
        let me = self.config.id;
        let live = voters
            .iter()
            .filter(|&&id| id == me || raft.prs().get(id).is_some_and(|p| p.recent_active))
            .count();
        if live <= voters.len() / 2 {
            return Err(ErrorCode::NewConfigNoQuorum);
        }
        let node = leading.tree.get(CONFIG_NODE).ok_or(ErrorCode::NoNode)?;
        if !acl::check(&node.acl, perms::WRITE, identity) {
            return Err(ErrorCode::NoAuth);
        }
        Ok(next)
    }

    /// Orders a reconfig to `next`: a txn that sets `/zookeeper/config`,
    /// carried by raft's membership change (joint consensus, left
    /// automatically) when the voters or observers change, or in a batch
    /// when only addresses do.
    fn reconfigure(&mut self, session_id: i64, cxid: i32, next: &Membership) {
        let mut cc = conf_change(&self.raw.raft.prs().conf().to_conf_state(), next);
        let Some(leading) = &self.leading else {
            return;
        };
        if cc.changes.is_empty() {
            let op = config_op(next, leading.next_zxid);
            self.append_txn(session_id, cxid, op);
            return;
        }
        // Txns ordered before it go first, in their own entry.
        let _ = self.seal();
        let (now, term) = (self.now, self.term);
        let Some(leading) = &mut self.leading else {
            return;
        };
        let base = (leading.tree.clone(), leading.next_zxid);
        let op = config_op(next, leading.next_zxid);
        let txn = leading.speculate_txn(now, session_id, cxid, op);
        let mut context = Vec::new();
        entry::append_txn(&mut context, term, &txn);
        cc.context = context.into();
        let leads = self.raw.raft.state == StateRole::Leader;
        if !leads || self.raw.propose_conf_change(Vec::new(), cc).is_err() {
            if let Some(leading) = &mut self.leading {
                (leading.tree, leading.next_zxid) = base;
            }
        }
    }

    fn expire_node(&mut self, path: &str) {
        let Some(leading) = &self.leading else {
            return;
        };
        let op = prepare_expiry_delete(&leading.tree, leading.next_zxid, path);
        if !matches!(op, TxnOp::Error(_)) {
            self.append_txn(0, 0, op);
        }
    }

    fn append_txn(&mut self, session_id: i64, cxid: i32, op: TxnOp) {
        let (now, term, max_bytes) = (self.now, self.term, self.config.max_batch_bytes);
        let Some(leading) = &mut self.leading else {
            return;
        };
        if leading.open_base.is_none() {
            leading.open_base = Some((leading.tree.clone(), leading.next_zxid));
        }
        let txn = leading.speculate_txn(now, session_id, cxid, op);
        entry::append_txn(&mut leading.open, term, &txn);
        leading.open_txns += 1;
        if leading.open.len() >= max_bytes {
            let _ = self.seal();
        }
    }

    /// Proposes the open batch as one entry.
    fn seal(&mut self) -> Result<(), ReplicaError> {
        let Some(leading) = &mut self.leading else {
            return Ok(());
        };
        if leading.open_txns == 0 {
            return Ok(());
        }
        let records = std::mem::take(&mut leading.open);
        leading.open_txns = 0;
        let base = leading.open_base.take();
        // raft-rs forwards a follower's proposal to its leader: a replica
        // deposed since it ordered these txns (its role changes in the next
        // ready) must drop them instead, or another leader would log zxids
        // it did not assign.
        let leads = self.raw.raft.state == StateRole::Leader;
        if !leads || self.raw.propose(Vec::new(), records).is_err() {
            // Dropped (deposed, or a leader transfer under way): the
            // speculation returns to before the batch, and the batch's
            // clients see their connection lost at the leader change.
            if let (Some(leading), Some((tree, next_zxid))) = (&mut self.leading, base) {
                leading.tree = tree;
                leading.next_zxid = next_zxid;
            }
        }
        Ok(())
    }

    fn handle_ready(&mut self) -> Result<(), ReplicaError> {
        let mut rd = self.raw.ready();
        let role_change = rd.ss().map(|ss| (ss.leader_id, ss.raft_state));
        let mut snapshots_sent = Vec::new();
        for m in rd.take_messages() {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                snapshots_sent.push(m.to);
            }
            self.out.messages.push((m.to, raft_msg(m)));
        }
        let committed = rd.take_committed_entries();
        let entries = rd.take_entries();
        let hard_state = rd.hs().cloned();
        let installed = if rd.snapshot().is_empty() {
            None
        } else {
            Some(self.install(rd.snapshot())?)
        };
        {
            let now = self.now;
            let store = self.raw.mut_store();
            store.append(&entries, now)?;
            if let Some(hs) = &hard_state {
                store.set_hard_state(hs.clone());
            }
        }
        if let Some(hs) = &hard_state {
            self.term = hs.term;
        }
        for entry in committed {
            self.apply(entry)?;
        }
        for state in rd.take_read_states() {
            let id = state
                .request_ctx
                .first_chunk::<8>()
                .map_or(0, |b| u64::from_be_bytes(*b));
            self.reads.push((id, state.index));
        }
        let after: Vec<(u64, PeerMsg)> = rd
            .take_persisted_messages()
            .into_iter()
            .map(|m| (m.to, raft_msg(m)))
            .collect();
        if !entries.is_empty() || hard_state.is_some() || installed.is_some() || !after.is_empty() {
            self.out.persist.push(Persist {
                number: rd.number(),
                entries,
                hard_state,
                snapshot: installed,
                after,
            });
        }
        self.raw.advance_append_async(rd);
        self.advance_applied();
        // The snapshot message only announces the snapshot; the member reads
        // it in chunks. Raft would wait for its answer for good if that were
        // lost, so it is told at once that the snapshot went out: it probes
        // again, the member refuses appends until it has restored, and each
        // refusal brings the announcement again.
        for to in snapshots_sent {
            self.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
        if let Some((leader_id, role)) = role_change {
            self.role_changed(leader_id, role)?;
        }
        let applied = self.applied;
        self.reads.retain(|&(id, index)| {
            let ready = index <= applied;
            if ready {
                self.out.synced.push(id);
            }
            !ready
        });
        Ok(())
    }

    /// Raft restored the snapshot received whole: it becomes the tree.
    fn install(&mut self, snapshot: &raft::eraftpb::Snapshot) -> Result<Installed, ReplicaError> {
        let index = snapshot.get_metadata().index;
        let meta = SnapshotMeta::from_raft(snapshot);
        let fetched = self
            .fetched
            .take()
            .filter(|f| Some(f.meta) == meta)
            .ok_or(ReplicaError::SnapshotMissing(index))?;
        self.tree = fetched.tree;
        self.applied = index;
        // raft took the snapshot's membership; so do the store and the driver.
        let conf_state = snapshot.get_metadata().get_conf_state().clone();
        self.raw
            .mut_store()
            .install(fetched.meta, conf_state.clone());
        self.set_conf_state(index, conf_state);
        self.config_changed();
        self.out.committed.push(Committed {
            index,
            term: fetched.meta.term,
            txns: Vec::new(),
            tree: self.tree.clone(),
            installed: true,
        });
        Ok(Installed {
            meta: fetched.meta,
            bytes: fetched.bytes,
        })
    }

    fn role_changed(&mut self, leader_id: u64, role: StateRole) -> Result<(), ReplicaError> {
        if leader_id != self.leader_id {
            self.leader_id = leader_id;
            self.out.leader_changed = Some(leader_id);
            // A snapshot read from a deposed leader would be refused by
            // raft: the new one sends its own.
            if self.fetch.as_ref().is_some_and(|f| f.from != leader_id) {
                self.fetch = None;
            }
        }
        let leads = role == StateRole::Leader;
        if leads && self.leading.is_none() {
            let sessions = SessionTracker::taking_office(
                self.tree.sessions().iter().map(|(&id, &t)| (id, t)),
                self.now,
            );
            self.leading = Some(Leading {
                tree: self.tree.clone(),
                next_zxid: 0,
                open: Vec::new(),
                open_txns: 0,
                open_base: None,
                sessions,
                owners: std::collections::HashMap::new(),
            });
            self.speculate()?;
        } else if !leads {
            self.leading = None;
            self.touched.clear();
        }
        Ok(())
    }

    /// Rebuilds the leader's speculation: the applied tree plus every entry
    /// of the log after it (all of which this leader will commit).
    fn speculate(&mut self) -> Result<(), ReplicaError> {
        let Some(leading) = &mut self.leading else {
            return Ok(());
        };
        let mut tree = self.tree.clone();
        let store = self.raw.store();
        let last = store.last_index()?;
        if last > self.applied {
            let entries = store.entries(
                self.applied + 1,
                last + 1,
                None,
                raft::GetEntriesContext::empty(false),
            )?;
            for e in entries {
                let records = match EntryKind::of(&e) {
                    EntryKind::Batch => e.data.to_vec(),
                    EntryKind::ConfChange => decode_conf_change(&e)?.context.to_vec(),
                    EntryKind::LeaderNoop => continue,
                };
                if !records.is_empty() {
                    for txn in entry::decode_batch(e.index, &records)? {
                        tree.apply(&txn);
                    }
                }
            }
        }
        leading.next_zxid = tree.last_zxid() + 1;
        leading.tree = tree;
        leading.open.clear();
        leading.open_txns = 0;
        leading.open_base = None;
        Ok(())
    }

    fn apply(&mut self, e: Entry) -> Result<(), ReplicaError> {
        let (index, term) = (e.index, e.term);
        match EntryKind::of(&e) {
            EntryKind::Batch => {
                let txns = entry::decode_batch(index, &e.data)?;
                self.apply_txns(index, term, txns)?;
            }
            EntryKind::ConfChange => {
                let cc = decode_conf_change(&e)?;
                if !cc.context.is_empty() {
                    let txns = entry::decode_batch(index, &cc.context)?;
                    self.apply_txns(index, term, txns)?;
                }
                self.change_membership(index, &cc)?;
            }
            EntryKind::LeaderNoop => {}
        }
        self.applied = index;
        Ok(())
    }

    fn apply_txns(&mut self, index: u64, term: u64, txns: Vec<Txn>) -> Result<(), ReplicaError> {
        let last = self.tree.last_zxid();
        if txns.first().map(|t| t.zxid) != Some(last + 1) {
            return Err(ReplicaError::ZxidGap {
                index,
                zxid: txns.first().map_or(0, |t| t.zxid),
                last,
            });
        }
        let mut done = Vec::with_capacity(txns.len());
        let mut config_set = false;
        for txn in txns {
            let applied = self.tree.apply(&txn);
            config_set |= matches!(&applied, Applied::DataSet { path, .. } if path == CONFIG_NODE);
            if let Some(leading) = &mut self.leading {
                match &applied {
                    Applied::SessionCreated => {
                        if let TxnOp::CreateSession { timeout } = txn.op {
                            leading.sessions.opened(txn.session_id, timeout, self.now);
                        }
                    }
                    Applied::SessionClosed { .. } => {
                        leading.sessions.closed(txn.session_id);
                        leading.owners.remove(&txn.session_id);
                    }
                    _ => {}
                }
            }
            done.push((txn, applied));
        }
        if config_set {
            self.config_changed();
        }
        self.out.committed.push(Committed {
            index,
            term,
            txns: done,
            tree: self.tree.clone(),
            installed: false,
        });
        Ok(())
    }

    /// Tells the driver what `/zookeeper/config` now says.
    fn config_changed(&mut self) {
        if let Some(text) = self
            .tree
            .get(CONFIG_NODE)
            .and_then(|n| n.data.as_deref())
            .and_then(|d| std::str::from_utf8(d).ok())
        {
            self.out.config = Some(text.to_owned());
        }
    }

    /// Applies raft's membership change committed at `index`.
    fn change_membership(&mut self, index: u64, cc: &ConfChangeV2) -> Result<(), ReplicaError> {
        let joint = self.joint();
        // A member restarted from a configuration file written after the
        // change was applied replays its entries: entering the joint
        // configuration again is harmless, leaving it twice is not.
        if cc.leave_joint() && !joint {
            return Ok(());
        }
        let cs = self.raw.apply_conf_change(cc)?;
        self.set_conf_state(index, cs);
        if self.raw.raft.state == StateRole::Leader && !self.config.voters.contains(&self.config.id)
        {
            self.resign()?;
        }
        Ok(())
    }

    /// A leader the committed configuration leaves out steps down at once,
    /// as a removed ZooKeeper leader gives up leadership: raft-rs would lead
    /// on without counting itself, and panic on its next proposal or
    /// acknowledgement if the change removed it altogether. The voter
    /// furthest along is told to campaign now if it has the whole log;
    /// otherwise the election timeout picks a successor.
    fn resign(&mut self) -> Result<(), ReplicaError> {
        let me = self.config.id;
        let last = self.raw.raft.raft_log.last_index();
        let successor = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(&id, _)| id != me && self.config.voters.contains(&id))
            .max_by_key(|(&id, p)| (p.matched, std::cmp::Reverse(id)))
            .filter(|(_, p)| p.matched == last)
            .map(|(&id, _)| id);
        if let Some(to) = successor {
            self.raw.raft.send_timeout_now(to);
        }
        let term = self.raw.raft.term;
        self.raw.raft.become_follower(term, raft::INVALID_ID);
        self.role_changed(raft::INVALID_ID, StateRole::Follower)
    }

    fn set_conf_state(&mut self, index: u64, cs: ConfState) {
        let mut voters: Vec<u64> = cs
            .voters
            .iter()
            .chain(&cs.voters_outgoing)
            .copied()
            .collect();
        voters.sort_unstable();
        voters.dedup();
        let mut learners: Vec<u64> = cs
            .learners
            .iter()
            .chain(&cs.learners_next)
            .copied()
            .collect();
        learners.sort_unstable();
        learners.dedup();
        learners.retain(|id| !voters.contains(id));
        self.config.voters = voters;
        self.config.learners = learners;
        self.raw.mut_store().set_conf_state(index, cs);
    }
}

const CONFIG_NODE: &str = "/zookeeper/config";

/// The membership and version `/zookeeper/config` holds in `tree`.
fn config_in(tree: &DataTree) -> Option<(Membership, i64)> {
    let text = std::str::from_utf8(tree.get(CONFIG_NODE)?.data.as_deref()?).ok()?;
    Membership::parse_config(text).ok()
}

/// The reconfig txn that makes `next` the configuration at `zxid`.
fn config_op(next: &Membership, zxid: i64) -> TxnOp {
    TxnOp::SetData {
        path: CONFIG_NODE.into(),
        data: Some(next.config_text(zxid).into_bytes()),
        // ZooKeeper's reconfig txn sets the node's version to -1.
        version: -1,
    }
}

/// The raft changes that turn membership `from` into `to`.
fn conf_change(from: &ConfState, to: &Membership) -> ConfChangeV2 {
    let single = |node_id, change_type| ConfChangeSingle {
        node_id,
        change_type,
        ..Default::default()
    };
    let mut changes = Vec::new();
    for id in to.voters() {
        if !from.voters.contains(&id) {
            changes.push(single(id, ConfChangeType::AddNode));
        }
    }
    for id in to.learners() {
        if !from.learners.contains(&id) {
            changes.push(single(id, ConfChangeType::AddLearnerNode));
        }
    }
    for &id in from.voters.iter().chain(&from.learners) {
        if to.get(id).is_none() {
            changes.push(single(id, ConfChangeType::RemoveNode));
        }
    }
    let mut cc = ConfChangeV2::default();
    cc.set_transition(ConfChangeTransition::Auto);
    cc.set_changes(changes.into());
    cc
}

fn decode_conf_change(e: &Entry) -> Result<ConfChangeV2, ReplicaError> {
    match e.get_entry_type() {
        raft::eraftpb::EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&e.data)
            .map_err(|err| ReplicaError::Raft(raft::Error::CodecError(err))),
        _ => Err(ReplicaError::Entry(EntryError::ConfChangeV1 {
            index: e.index,
        })),
    }
}

fn raft_msg(m: Message) -> PeerMsg {
    PeerMsg::Raft(Box::new(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64) -> Replica {
        Replica::new(config(id), DurableState::default(), 0).expect("replica")
    }

    fn config(id: u64) -> ReplicaConfig {
        ReplicaConfig {
            id,
            voters: vec![1, 2, 3],
            learners: Vec::new(),
            tick_ms: 10,
            election_ticks: 10,
            heartbeat_ticks: 1,
            election_range: Some((10 + 5 * id as usize, 11 + 5 * id as usize)),
            max_batch_bytes: 4096,
            max_inflight_appends: 16,
            max_append_bytes: 1 << 16,
            extended_types: false,
            container_check_ms: 1000,
            config_node: String::new(),
            reconfig_enabled: false,
            retained_entries: 100,
        }
    }

    /// What each member answered while settling.
    #[derive(Default)]
    struct Settled {
        synced: Vec<Vec<u64>>,
        committed: Vec<Vec<(Txn, Applied)>>,
    }

    /// Delivers every message at once and completes every write at once,
    /// until nothing moves.
    fn settle(members: &mut [Replica]) -> Settled {
        let mut settled = Settled {
            synced: vec![Vec::new(); members.len()],
            committed: vec![Vec::new(); members.len()],
        };
        loop {
            let mut moved = false;
            for i in 0..members.len() {
                let out = members[i].output().expect("output");
                settled.synced[i].extend(out.synced);
                settled.committed[i].extend(out.committed.into_iter().flat_map(|c| c.txns));
                let mut sends = out.messages;
                for p in out.persist {
                    members[i].persisted(p.number);
                    sends.extend(p.after);
                }
                for (to, msg) in sends {
                    moved = true;
                    let from = members[i].id();
                    members[(to - 1) as usize].step(from, msg).expect("step");
                }
            }
            if !moved {
                return settled;
            }
        }
    }

    /// Ticks and settles until one member leads; returns its index.
    fn elect(members: &mut [Replica], now: &mut i64) -> usize {
        loop {
            if let Some(i) = members.iter().position(Replica::is_leader) {
                return i;
            }
            *now += 10;
            members.iter_mut().for_each(|m| m.tick(*now));
            settle(members);
            assert!(*now < 20_000, "no leader");
        }
    }

    fn reconfig_member(id: u64, lines: &str) -> Replica {
        let (membership, _) = Membership::parse_config(lines).expect("member lines");
        let config = ReplicaConfig {
            voters: membership.voters(),
            learners: membership.learners(),
            config_node: membership.config_text(0),
            reconfig_enabled: true,
            ..config(id)
        };
        Replica::new(config, DurableState::default(), 0).expect("replica")
    }

    fn config_text(member: &Replica) -> String {
        let node = member.tree().get(CONFIG_NODE).expect("config node");
        String::from_utf8(node.data.as_deref().unwrap_or_default().to_vec()).expect("utf-8")
    }

    fn last_error(settled: &Settled, i: usize) -> Option<i32> {
        match settled.committed[i].last() {
            Some((_, Applied::Error(code))) => Some(*code),
            _ => None,
        }
    }

    #[test]
    fn reconfig_adds_a_voter_and_removes_the_leader_through_joint_consensus() {
        let line = |id: u64| format!("server.{id}=10.0.0.{id}:2888:3888:participant;0.0.0.0:2181");
        let lines = |ids: &[u64]| {
            ids.iter()
                .map(|&id| line(id))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let three = lines(&[1, 2, 3]);
        let mut members: Vec<Replica> = (1..=3).map(|id| reconfig_member(id, &three)).collect();
        // A new server starts with the ensemble's lines and its own.
        members.push(reconfig_member(4, &lines(&[1, 2, 3, 4])));
        let mut now = 0;
        let leader = elect(&mut members, &mut now);
        let leader_id = members[leader].id();
        assert_ne!(leader_id, 4, "a server not yet added never leads");
        let session_id = members[leader].next_session_id();
        members[leader].propose(Proposal {
            session_id,
            cxid: 0,
            identity: Identity::default(),
            op: ProposalOp::OpenSession { timeout: 30_000 },
        });
        settle(&mut members);
        let super_user = Identity::from_ids(vec![zoocore_net::Id {
            scheme: "super".into(),
            id: "super".into(),
        }]);
        let reconfig = |cxid, joining: &str, leaving: &str, new_members: &str, from| Proposal {
            session_id,
            cxid,
            identity: super_user.clone(),
            op: ProposalOp::Write(Request::Reconfig(ReconfigRequest {
                joining_servers: joining.into(),
                leaving_servers: leaving.into(),
                new_members: new_members.into(),
                cur_config_id: from,
            })),
        };
        let refused = |members: &mut Vec<Replica>, proposal: Proposal| {
            members[leader].propose(proposal);
            last_error(&settle(members), leader)
        };
        let code = |c: ErrorCode| Some(c.code());
        let anyone = Proposal {
            identity: Identity::default(),
            ..reconfig(1, &line(4), "", "", -1)
        };
        assert_eq!(refused(&mut members, anyone), code(ErrorCode::NoAuth));
        let bad = reconfig(2, "some thing", "", "", -1);
        assert_eq!(refused(&mut members, bad), code(ErrorCode::BadArguments));
        let future = reconfig(3, &line(4), "", "", 1);
        assert_eq!(refused(&mut members, future), code(ErrorCode::BadVersion));
        let unreachable = reconfig(
            4,
            "",
            "",
            &format!("{}\n{}\n{}", line(1), line(5), line(6)),
            -1,
        );
        assert_eq!(
            refused(&mut members, unreachable),
            code(ErrorCode::NewConfigNoQuorum)
        );
        let alone = reconfig(5, "", "", &line(1), -1);
        assert_eq!(refused(&mut members, alone), code(ErrorCode::BadArguments));

        // Two at once: the second finds the first in progress.
        members[leader].propose(reconfig(6, &line(4), "", "", 0));
        members[leader].propose(reconfig(7, "", "2", "", -1));
        let settled = settle(&mut members);
        let added = settled.committed[leader]
            .iter()
            .find(|(txn, _)| txn.cxid == 6)
            .expect("the reconfig committed");
        assert!(matches!(added.1, Applied::DataSet { .. }), "{:?}", added.1);
        assert_eq!(
            last_error(&settled, leader),
            code(ErrorCode::ReconfigInProgress)
        );
        let version = added.0.zxid;
        let four = format!("{}\nversion={version:x}", lines(&[1, 2, 3, 4]));
        for m in &members {
            assert_eq!(config_text(m), four, "member {}", m.id());
            assert_eq!(m.config.voters, [1, 2, 3, 4], "member {}", m.id());
            assert!(!m.joint(), "the joint configuration was left");
            assert_eq!(m.tree().last_zxid(), members[leader].tree().last_zxid());
        }

        // The leader removes itself: it hands over to one of the others.
        let remove = reconfig(8, "", &leader_id.to_string(), "", version);
        members[leader].propose(remove);
        settle(&mut members);
        let next = loop {
            now += 10;
            members.iter_mut().for_each(|m| m.tick(now));
            settle(&mut members);
            let next = members
                .iter()
                .position(|m| m.is_leader() && m.id() != leader_id);
            if let (Some(i), false) = (next, members[leader].is_leader()) {
                break i;
            }
            assert!(now < 20_000, "no new leader");
        };
        let rest: Vec<u64> = [1, 2, 3, 4]
            .into_iter()
            .filter(|&id| id != leader_id)
            .collect();
        assert_eq!(members[next].config.voters, rest);
        assert!(config_text(&members[next]).starts_with(&lines(&rest)));
    }

    #[test]
    fn a_follower_that_lost_its_disk_is_probed_from_nothing_and_catches_up() {
        let mut members: Vec<Replica> = (1..=3).map(member).collect();
        let mut now = 0;
        let leader = elect(&mut members, &mut now);
        for cxid in 1..=5 {
            members[leader].propose(Proposal {
                session_id: 0,
                cxid,
                identity: Identity::default(),
                op: ProposalOp::Write(Request::Create(zoocore_net::records::CreateRequest {
                    path: format!("/n{cxid}"),
                    data: Some(Vec::new()),
                    acl: vec![zoocore_net::Acl::new(31, "world", "anyone")],
                    flags: 0,
                })),
            });
            settle(&mut members);
        }
        let committed = members[leader].commit_index();
        let wiped = (0..3).find(|&i| i != leader).expect("a follower");
        assert_eq!(members[wiped].commit_index(), committed);
        // Same id, empty disk; the leader still counts the log it had.
        members[wiped] = member(wiped as u64 + 1);
        // The leader's heartbeats come first: they carry a commit index
        // beyond the new log, which raft alone would abort on.
        let mut heartbeats = 0;
        while heartbeats == 0 {
            now += 10;
            members[leader].tick(now);
            let out = members[leader].output().expect("output");
            for (to, msg) in out.messages {
                if to == wiped as u64 + 1 {
                    heartbeats += 1;
                    let from = members[leader].id();
                    members[wiped].step(from, msg).expect("step");
                }
            }
        }
        // Then everything flows: the leader finds the log gone and sends it
        // all again (as a snapshot, had it been compacted).
        while members[wiped].commit_index() < committed {
            now += 10;
            members.iter_mut().for_each(|m| m.tick(now));
            settle(&mut members);
            assert!(now < 20_000, "the wiped follower never caught up");
        }
        assert_eq!(
            members[wiped].tree().last_zxid(),
            members[leader].tree().last_zxid(),
            "the wiped follower has applied every txn again"
        );
    }

    #[test]
    fn a_deposed_leader_drops_what_it_ordered_and_no_other_logs_it() {
        let mut members: Vec<Replica> = (1..=3).map(member).collect();
        let mut now = 0;
        while !members.iter().any(Replica::is_leader) {
            now += 10;
            members.iter_mut().for_each(|m| m.tick(now));
            settle(&mut members);
        }
        let old = (0..3).find(|&i| members[i].is_leader()).expect("a leader");
        // The old leader hears nothing while the others elect another.
        let mut others: Vec<Replica> = Vec::new();
        let mut rest: Vec<usize> = (0..3).filter(|&i| i != old).collect();
        rest.sort_unstable();
        for &i in rest.iter().rev() {
            others.push(members.remove(i));
        }
        let mut deposed = members.pop().expect("the old leader");
        let new = loop {
            now += 10;
            for m in &mut others {
                m.tick(now);
            }
            // Messages between the two others only.
            for _ in 0..10 {
                for i in 0..2 {
                    let out = others[i].output().expect("output");
                    let mut sends = out.messages;
                    for p in out.persist {
                        others[i].persisted(p.number);
                        sends.extend(p.after);
                    }
                    for (to, msg) in sends {
                        let from = others[i].id();
                        if let Some(j) = others.iter().position(|m| m.id() == to) {
                            others[j].step(from, msg).expect("step");
                        }
                    }
                }
            }
            if let Some(n) = others.iter().position(Replica::is_leader) {
                break n;
            }
            assert!(now < 20_000, "no new leader");
        };
        // The new leader's heartbeat reaches the old one, which follows it in
        // raft; before its next output, a client's write is ordered there.
        let mut delivered = false;
        while !delivered {
            now += 10;
            others[new].tick(now);
            let out = others[new].output().expect("output");
            for (to, msg) in out.messages {
                if to == deposed.id() {
                    deposed.step(others[new].id(), msg).expect("step");
                    delivered = true;
                }
            }
        }
        assert!(
            deposed.is_leader(),
            "its role changes only at its next output"
        );
        deposed.propose(Proposal {
            session_id: 42,
            cxid: 1,
            identity: Identity::default(),
            op: ProposalOp::Write(Request::Delete(zoocore_net::records::DeleteRequest {
                path: "/x".into(),
                version: -1,
            })),
        });
        let out = deposed.output().expect("output");
        assert!(!deposed.is_leader());
        let later = out.persist.iter().flat_map(|p| p.after.iter());
        let forwarded = out.messages.iter().chain(later).any(|(_, m)| {
            matches!(m, PeerMsg::Raft(r) if r.get_msg_type() == raft::eraftpb::MessageType::MsgPropose)
        });
        assert!(
            !forwarded,
            "the deposed leader forwarded its batch to the new one"
        );
        // Even a MsgPropose that arrived is not taken.
        let mut propose = raft::eraftpb::Message::default();
        propose.set_msg_type(raft::eraftpb::MessageType::MsgPropose);
        propose.from = deposed.id();
        propose.to = others[new].id();
        propose.entries = vec![raft::eraftpb::Entry {
            data: vec![1, 2, 3].into(),
            ..Default::default()
        }]
        .into();
        let last = others[new].raw.raft.raft_log.last_index();
        others[new]
            .step(deposed.id(), PeerMsg::Raft(Box::new(propose)))
            .expect("step");
        assert_eq!(others[new].raw.raft.raft_log.last_index(), last);
    }

    #[test]
    fn syncs_with_the_same_id_from_two_members_are_both_answered() {
        let mut members: Vec<Replica> = (1..=3).map(member).collect();
        let mut now = 0;
        while !members.iter().any(Replica::is_leader) {
            now += 10;
            for m in &mut members {
                m.tick(now);
            }
            settle(&mut members);
            assert!(now < 10_000, "no leader");
        }
        let followers: Vec<usize> = (0..3).filter(|&i| !members[i].is_leader()).collect();
        for &f in &followers {
            members[f].sync(1);
        }
        let mut answered = vec![Vec::new(); 3];
        for _ in 0..5 {
            now += 10;
            for m in &mut members {
                m.tick(now);
            }
            for (i, s) in settle(&mut members).synced.into_iter().enumerate() {
                answered[i].extend(s);
            }
        }
        for &f in &followers {
            assert_eq!(
                answered[f],
                vec![1],
                "member {} answered {:?}",
                f + 1,
                answered[f]
            );
        }
    }
}
