//! A deterministic simulation of an ensemble: N `consensus::Replica`s in one
//! thread, on a simulated clock, a seeded network (delay, drop, duplicate,
//! corrupt, reorder, partitions) and simulated disks (fsync latency,
//! crash-restart losing what was not durable, torn tails), with clients
//! that open sessions, write compare-and-set registers, sync and read, and,
//! with spare members outside the first configuration, ask for reconfigs
//! that add and remove members (each member keeps the configuration it last
//! applied as the server keeps its dynamic file, and restarts from it).
//!
//! Invariants are checked at every step; the first violation stops the run
//! with the seed, the command that replays it, and the last events:
//! - at most one leader per term;
//! - committed entries agree across members (same term and data at an index);
//! - committed zxids are gapless and increase with the index;
//! - trees are equal at equal index (digest of every node and session);
//! - an acknowledged write is committed at the zxid it was acknowledged with,
//!   and writes are linearizable: one acknowledged before another started
//!   has the smaller zxid;
//! - a read after `sync` sees every write acknowledged before the sync began;
//!   a session's plain reads never go back in zxid;
//! - sessions are expired only by a leader, never earlier than a full
//!   timeout after it took office (a failover alone expires nothing);
//! - after the faults stop and every member restarts, the ensemble elects a
//!   leader, commits a write, and every member of the final configuration
//!   holds every acknowledged write.
//!
//! The same seed gives the same run: every choice comes from one `StdRng`,
//! every collection iterates in a fixed order, and each member's election
//! timeout is fixed and distinct (raft-rs draws its randomised timeout from
//! a thread-local generator, so the range is one tick wide).

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zoocore_consensus::peer_msg::PeerMsg;
use zoocore_consensus::{
    DurableState, Entry, HardState, Logged, Membership, Output, Persist, Proposal, ProposalOp,
    Replica, ReplicaConfig, SnapshotMeta,
};
use zoocore_engine::acl::Identity;
use zoocore_engine::tree::Applied;
use zoocore_engine::txn::TxnOp;
use zoocore_engine::DataTree;
use zoocore_net::jute::Jute;
use zoocore_net::records::{CreateRequest, ReconfigRequest, SetDataRequest};
use zoocore_net::{Acl, ErrorCode, Request};

/// What can go wrong, as probabilities per event or per millisecond.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Per message.
    pub drop: f64,
    pub duplicate: f64,
    /// A byte of the frame flipped: the receiver must refuse it.
    pub corrupt: f64,
    /// Delivery delay, uniform in this range (reorders messages).
    pub delay_ms: (i64, i64),
    /// Per millisecond: a new partition (isolate one member, or split in two).
    pub partition: f64,
    /// How long a partition lasts.
    pub partition_ms: (i64, i64),
    /// Per millisecond: a member crashes (at most a minority is down).
    pub crash: f64,
    pub down_ms: (i64, i64),
    /// At a crash, part of the write in progress lands (a torn tail).
    pub torn: f64,
    /// Time from a write to its fsync completing.
    pub fsync_ms: (i64, i64),
}

impl Faults {
    pub fn standard() -> Faults {
        Faults {
            drop: 0.02,
            duplicate: 0.01,
            corrupt: 0.002,
            delay_ms: (0, 8),
            partition: 0.0004,
            partition_ms: (200, 2500),
            crash: 0.0003,
            down_ms: (100, 2000),
            torn: 0.5,
            fsync_ms: (0, 4),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Voting members, ids 1..=replicas.
    pub replicas: u64,
    /// Observers (raft learners) after them.
    pub observers: u64,
    /// Members after those, outside the first configuration: each starts
    /// with every line and its own. With spares, `/zookeeper/config` holds
    /// the membership, reconfig is on, and clients ask for reconfigs that
    /// add or remove a member of all of them.
    pub spares: u64,
    pub clients: usize,
    /// Simulated time with faults; then the faults stop and every member
    /// restarts for the final checks.
    pub millis: i64,
    pub faults: Faults,
    /// Milliseconds per raft tick, and the election and heartbeat ticks.
    pub tick_ms: i64,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    pub session_timeout_ms: i32,
    /// A member snapshots its tree after this many applied entries and
    /// keeps `retained_entries` of the log before it.
    pub snapshot_entries: u64,
    pub retained_entries: u64,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            replicas: 3,
            observers: 0,
            spares: 0,
            clients: 4,
            millis: 6000,
            faults: Faults::standard(),
            tick_ms: 10,
            election_ticks: 10,
            heartbeat_ticks: 2,
            session_timeout_ms: 1500,
            snapshot_entries: 40,
            retained_entries: 10,
        }
    }
}

/// What a run did, for the test's summary.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub committed_txns: usize,
    pub acked_writes: usize,
    pub syncs: usize,
    pub reads: usize,
    pub leader_terms: usize,
    pub crashes: usize,
    pub partitions: usize,
    pub expiries: usize,
    pub refused_frames: usize,
    pub snapshots_taken: usize,
    /// Snapshots members received from the leader and installed.
    pub snapshots_installed: usize,
    /// Durable log entries a member replaced because a newer leader's log
    /// differed there (an old leader's uncommitted suffix).
    pub diverged_entries_replaced: usize,
    /// Reconfigs committed (each counted once, at its first commit).
    pub reconfigs: usize,
}

/// Keys the clients write: compare-and-set registers.
const KEYS: usize = 3;
/// Snapshot bytes per chunk: small, so a transfer takes several under the
/// network's faults (the server sends `peer_msg::SNAPSHOT_CHUNK`).
const CHUNK: usize = 512;

struct Message {
    at: i64,
    seq: u64,
    from: u64,
    to: u64,
    frame: Vec<u8>,
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Message {}
impl PartialOrd for Message {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Message {
    /// Earliest first in a max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A member's disk: what survived its last fsync.
#[derive(Default, Clone)]
struct Disk {
    hard_state: HardState,
    /// The log as recovery reads it: a later record at an index replaces
    /// that record and every one after it.
    log: Vec<Logged>,
    /// Snapshot files by (index, term).
    snapshots: BTreeMap<(u64, u64), (SnapshotMeta, Vec<u8>)>,
}

/// How much of a write landed when a crash interrupted it.
#[derive(Clone, Copy)]
enum Landed {
    All,
    /// The hard state, the snapshot file (without its mark) if `file`, and
    /// no entries; or, without a snapshot, the first `entries` entries.
    Part {
        file: bool,
        entries: usize,
    },
}

impl Disk {
    fn log_index(l: &Logged) -> u64 {
        match l {
            Logged::Entry(e) => e.index,
            Logged::Mark { index, .. } => *index,
        }
    }

    /// Appends records from `index` on, replacing what the log held there.
    fn append(&mut self, index: u64, records: impl IntoIterator<Item = Logged>) {
        let keep = self
            .log
            .iter()
            .take_while(|l| Disk::log_index(l) < index)
            .count();
        self.log.truncate(keep);
        self.log.extend(records);
    }

    /// How many of the durable entries from `entries[0]`'s index on differ
    /// in term from `entries`: what a newer leader's log replaces.
    fn diverging(&self, entries: &[Entry]) -> usize {
        let Some(first) = entries.first() else {
            return 0;
        };
        self.log
            .iter()
            .filter_map(|l| match l {
                Logged::Entry(e) if e.index >= first.index => Some(e),
                _ => None,
            })
            .filter(|e| {
                let new = entries.get((e.index - first.index) as usize);
                new.is_none_or(|n| n.term != e.term)
            })
            .count()
    }

    /// What a write makes durable, in the server's order: the hard state,
    /// the snapshot file, its mark, the entries. Returns how many durable
    /// entries of another term it replaced.
    fn write(&mut self, persist: &Persist, landed: Landed) -> usize {
        if let Some(hs) = &persist.hard_state {
            self.hard_state = hs.clone();
        }
        let entries = match (landed, &persist.snapshot) {
            (Landed::All, _) => persist.entries.len(),
            (Landed::Part { file, .. }, Some(installed)) => {
                if file {
                    let m = installed.meta;
                    self.snapshots
                        .insert((m.index, m.term), (m, installed.bytes.clone()));
                }
                return 0;
            }
            (Landed::Part { entries, .. }, None) => entries.min(persist.entries.len()),
        };
        if let Some(installed) = &persist.snapshot {
            let m = installed.meta;
            self.snapshots
                .insert((m.index, m.term), (m, installed.bytes.clone()));
            self.append(
                m.index,
                [Logged::Mark {
                    index: m.index,
                    term: m.term,
                }],
            );
        }
        let written = &persist.entries[..entries];
        let replaced = self.diverging(written);
        if let Some(first) = written.first() {
            self.append(first.index, written.iter().cloned().map(Logged::Entry));
        }
        replaced
    }

    /// Drops log records before `index` (whole segments, on a real disk)
    /// and all but the newest two snapshots.
    fn purge(&mut self, index: u64) {
        self.log.retain(|l| Disk::log_index(l) >= index);
        while self.snapshots.len() > 2 {
            self.snapshots.pop_first();
        }
    }
}

struct Member {
    replica: Option<Replica>,
    disk: Disk,
    /// Writes waiting for their fsync, in order, with when it completes.
    writing: VecDeque<(i64, zoocore_consensus::Persist)>,
    down_until: i64,
    /// Applied index seen last, to check it never goes back while up.
    applied: u64,
    /// Applied index of the last snapshot this member took.
    snapshot_at: u64,
    /// The configuration it last applied, kept as the server keeps its
    /// dynamic config file (written at once here): it restarts from it.
    config_file: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Open,
    Create(usize),
    Set { key: usize, version: i32 },
    Sync(u64),
    Close,
    Reconfig,
}

struct Pending {
    kind: OpKind,
    cxid: i32,
    invoked: i64,
    session_id: i64,
}

struct Client {
    server: Option<u64>,
    session: Option<i64>,
    cxid: i32,
    pending: Option<Pending>,
    last_zxid: i64,
    next_action: i64,
    next_ping: i64,
    /// Versions last seen per key (for compare-and-set).
    versions: [i32; KEYS],
}

/// One entry as first seen committed anywhere.
struct Seen {
    term: u64,
    data: u64,
    digest: u64,
    zxids: (i64, i64),
}

struct Sim {
    cfg: SimConfig,
    rng: StdRng,
    now: i64,
    members: BTreeMap<u64, Member>,
    clients: Vec<Client>,
    net: BinaryHeap<Message>,
    seq: u64,
    /// Pairs that cannot talk until the given time.
    cut: BTreeMap<(u64, u64), i64>,
    log: BTreeMap<u64, Seen>,
    /// zxid -> (session, cxid) of every committed txn.
    txns: BTreeMap<i64, (i64, i32)>,
    leaders: BTreeMap<u64, (u64, i64)>,
    /// (completed, zxid) of acknowledged writes, in completion order, and
    /// the running maximum zxid.
    acked: Vec<(i64, i64, i64)>,
    next_sync: BTreeMap<u64, u64>,
    trace: VecDeque<String>,
    report: Report,
}

fn hash_of(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Every node (path, data, Stat) and session, hashed.
pub fn tree_digest(tree: &DataTree) -> u64 {
    let mut h = DefaultHasher::new();
    for (path, node) in tree.iter() {
        let stat = tree.stat_of(node);
        // Until the first reconfig's txn writes it, /zookeeper/config is
        // each member's own static configuration (as in ZooKeeper): a member
        // that joins later, or restarts with a newer one, differs there.
        if path == "/zookeeper/config" && stat.mzxid == 0 {
            continue;
        }
        path.hash(&mut h);
        node.data.hash(&mut h);
        let mut bytes = Vec::new();
        stat.write(&mut bytes);
        bytes.hash(&mut h);
    }
    let mut sessions: Vec<(i64, i32)> = tree.sessions().iter().map(|(&k, &v)| (k, v)).collect();
    sessions.sort_unstable();
    sessions.hash(&mut h);
    tree.last_zxid().hash(&mut h);
    h.finish()
}

/// A member's line in `/zookeeper/config`, as the server prints it.
fn member_line(id: u64, observer: bool) -> String {
    let role = if observer { "observer" } else { "participant" };
    format!("server.{id}=10.0.0.{id}:2888:3888:{role};0.0.0.0:2181")
}

fn key_path(key: usize) -> String {
    format!("/k{key}")
}

impl Sim {
    fn new(cfg: SimConfig) -> Sim {
        let rng = StdRng::seed_from_u64(cfg.seed);
        let mut sim = Sim {
            rng,
            now: 0,
            members: BTreeMap::new(),
            clients: Vec::new(),
            net: BinaryHeap::new(),
            seq: 0,
            cut: BTreeMap::new(),
            log: BTreeMap::new(),
            txns: BTreeMap::new(),
            leaders: BTreeMap::new(),
            acked: Vec::new(),
            next_sync: BTreeMap::new(),
            trace: VecDeque::new(),
            report: Report::default(),
            cfg,
        };
        let first = sim.cfg.replicas + sim.cfg.observers;
        for id in 1..=first + sim.cfg.spares {
            // Spares start once the ensemble has a leader and a log, as an
            // operator starts a new server: at time 0, with every log
            // empty, one could win an election in a configuration the
            // others do not share.
            let spare = id > first;
            let member = Member {
                replica: None,
                disk: Disk::default(),
                writing: VecDeque::new(),
                down_until: if spare { 500 } else { 0 },
                applied: 0,
                snapshot_at: 0,
                config_file: None,
            };
            sim.members.insert(id, member);
            if !spare {
                sim.start(id);
            }
        }
        for _ in 0..sim.cfg.clients {
            let next_action = sim.rng.gen_range(0..50);
            sim.clients.push(Client {
                server: None,
                session: None,
                cxid: 0,
                pending: None,
                last_zxid: 0,
                next_action,
                next_ping: 0,
                versions: [-1; KEYS],
            });
        }
        sim
    }

    fn event(&mut self, text: String) {
        if self.trace.len() == 300 {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{:>6} ms  {text}", self.now));
    }

    fn fail(&self, what: String) -> String {
        let mut out = format!(
            "simulation seed {} failed at {} ms: {what}\nreproduce: ZOOCORE_SIM_SEED={} cargo test -p zoocore-consensus --test it simulation\nlast events:\n",
            self.cfg.seed, self.now, self.cfg.seed
        );
        for line in &self.trace {
            let _ = writeln!(out, "  {line}");
        }
        out
    }

    fn config(&self, id: u64) -> ReplicaConfig {
        // Fixed, distinct election timeouts: see the module comment.
        let timeout = self.cfg.election_ticks + 3 * (id as usize - 1);
        let first = self.cfg.replicas + self.cfg.observers;
        let (voters, learners, config_node) = if self.cfg.spares == 0 {
            let learners = (self.cfg.replicas + 1..=first).collect();
            ((1..=self.cfg.replicas).collect(), learners, String::new())
        } else {
            let text = match self.members.get(&id).and_then(|m| m.config_file.clone()) {
                Some(text) => text,
                None => {
                    let lines: Vec<String> = (1..=first)
                        .chain((id > first).then_some(id))
                        .map(|n| member_line(n, n > self.cfg.replicas && n <= first))
                        .collect();
                    format!("{}\nversion=0", lines.join("\n"))
                }
            };
            let (membership, _) = Membership::parse_config(&text)
                .unwrap_or_else(|e| panic!("member {id}'s configuration {text:?}: {e}"));
            (membership.voters(), membership.learners(), text)
        };
        ReplicaConfig {
            id,
            voters,
            learners,
            tick_ms: self.cfg.tick_ms,
            election_ticks: self.cfg.election_ticks,
            heartbeat_ticks: self.cfg.heartbeat_ticks,
            election_range: Some((timeout, timeout + 1)),
            max_batch_bytes: 4096,
            max_inflight_appends: 64,
            max_append_bytes: 64 << 10,
            extended_types: true,
            container_check_ms: 1000,
            config_node,
            reconfig_enabled: self.cfg.spares > 0,
            retained_entries: self.cfg.retained_entries,
        }
    }

    fn start(&mut self, id: u64) {
        let config = self.config(id);
        let now = self.now;
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        let metas: Vec<SnapshotMeta> = member.disk.snapshots.values().map(|(m, _)| *m).collect();
        let recovered = zoocore_consensus::snapshot::recover(&metas, member.disk.log.clone())
            .unwrap_or_else(|e| panic!("member {id} cannot start from its disk: {e}"));
        let snapshot = recovered.snapshot.map(|meta| {
            let (_, bytes) = &member.disk.snapshots[&(meta.index, meta.term)];
            let tree = zoocore_engine::snapshot::read(bytes, true)
                .unwrap_or_else(|e| panic!("member {id}'s snapshot {meta:?}: {e}"));
            (meta, tree)
        });
        let start = snapshot.as_ref().map_or(0, |(m, _)| m.index);
        let durable = DurableState {
            hard_state: member.disk.hard_state.clone(),
            snapshot,
            entries: recovered.entries,
        };
        let replica = Replica::new(config, durable, now)
            .unwrap_or_else(|e| panic!("member {id} cannot start from its disk: {e}"));
        member.replica = Some(replica);
        member.applied = start;
        member.snapshot_at = start;
        self.event(format!("member {id} starts"));
    }

    fn crash(&mut self, id: u64, restart_at: i64) {
        let torn = self.rng.gen_bool(self.cfg.faults.torn);
        let cut = self.rng.gen_range(0..4usize);
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        member.replica = None;
        member.down_until = restart_at;
        // The write in progress may have partly landed; later ones did not.
        // The server writes the hard state before the entries it goes with.
        if let Some((_, first)) = member.writing.front() {
            if torn {
                let landed = Landed::Part {
                    file: cut % 2 == 1,
                    entries: cut,
                };
                self.report.diverged_entries_replaced += member.disk.write(first, landed);
            }
        }
        member.writing.clear();
        // A crashed process's connections are reset: the others notice.
        for other in self.members.values_mut() {
            if let Some(r) = other.replica.as_mut() {
                r.peer_lost(id);
            }
        }
        self.report.crashes += 1;
        self.event(format!("member {id} crashes (torn write: {torn})"));
        for client in &mut self.clients {
            if client.server == Some(id) {
                client.server = None;
                client.pending = None;
            }
        }
    }

    fn can_talk(&self, a: u64, b: u64) -> bool {
        let key = (a.min(b), a.max(b));
        self.cut.get(&key).is_none_or(|&until| until <= self.now)
    }

    fn send(&mut self, from: u64, to: u64, msg: &PeerMsg) {
        let f = self.cfg.faults.clone();
        if !self.can_talk(from, to) || self.rng.gen_bool(f.drop) {
            return;
        }
        let mut frame = Vec::new();
        msg.encode(&mut frame);
        let copies = if self.rng.gen_bool(f.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let mut frame = frame.clone();
            if self.rng.gen_bool(f.corrupt) {
                let i = self.rng.gen_range(0..frame.len());
                frame[i] ^= 1 << self.rng.gen_range(0..8);
            }
            let at = self.now + self.rng.gen_range(f.delay_ms.0..=f.delay_ms.1);
            self.seq += 1;
            self.net.push(Message {
                at,
                seq: self.seq,
                from,
                to,
                frame,
            });
        }
    }

    /// Carries out what a member asked for and checks what it committed.
    fn handle(&mut self, id: u64, out: Output) -> Result<(), String> {
        if let Some(text) = &out.config {
            if let Some(member) = self.members.get_mut(&id) {
                member.config_file = Some(text.clone());
            }
            let version = text.rsplit_once("version=").map_or("?", |(_, v)| v);
            self.event(format!("member {id} takes configuration {version}"));
        }
        for (to, msg) in &out.messages {
            self.send(id, *to, msg);
        }
        for want in &out.chunks {
            let m = want.meta;
            let data = self.members[&id]
                .disk
                .snapshots
                .get(&(m.index, m.term))
                .map(|(_, bytes)| {
                    let from = (want.offset as usize).min(bytes.len());
                    let to = (from + CHUNK).min(bytes.len());
                    bytes[from..to].to_vec()
                });
            let chunk = PeerMsg::SnapshotChunk {
                index: m.index,
                term: m.term,
                offset: want.offset,
                total: if data.is_some() { m.len } else { 0 },
                data: data.unwrap_or_default(),
            };
            self.send(id, want.to, &chunk);
        }
        for persist in out.persist {
            let took = self
                .rng
                .gen_range(self.cfg.faults.fsync_ms.0..=self.cfg.faults.fsync_ms.1);
            if let Some(member) = self.members.get_mut(&id) {
                let after = member.writing.back().map_or(self.now, |(t, _)| *t);
                member
                    .writing
                    .push_back((after.max(self.now) + took, persist));
            }
        }
        if let Some(leader) = out.leader_changed {
            self.event(format!("member {id} follows {leader}"));
            // ZooKeeper closes a learner's connections when it loses its
            // leader: the requests in flight end in connection loss.
            for client in &mut self.clients {
                if client.server == Some(id) {
                    client.server = None;
                    client.pending = None;
                }
            }
        }
        for proposal in out.refused {
            for client in &mut self.clients {
                if client.server == Some(id)
                    && client.pending.as_ref().is_some_and(|p| {
                        p.cxid == proposal.cxid && p.session_id == proposal.session_id
                    })
                {
                    client.server = None;
                    client.pending = None;
                }
            }
        }
        for committed in &out.committed {
            self.check_committed(id, committed)?;
        }
        for committed in out.committed {
            for (txn, applied) in &committed.txns {
                self.answer_write(id, txn, applied)?;
            }
        }
        for sync_id in out.synced {
            self.answer_sync(id, sync_id)?;
        }
        self.maybe_snapshot(id);
        Ok(())
    }

    /// A member snapshots its applied tree every `snapshot_entries`, and
    /// when its newest snapshot predates a member that needs one (the file
    /// is durable at once: the server's snapshotter only delays this), then
    /// compacts its log.
    fn maybe_snapshot(&mut self, id: u64) {
        let every = self.cfg.snapshot_entries;
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        let Some(r) = member.replica.as_mut() else {
            return;
        };
        let wanted = r.snapshot_wanted() && r.applied_index() > member.snapshot_at;
        if r.applied_index() < member.snapshot_at + every && !wanted {
            return;
        }
        let Some((index, term, tree)) = r.snapshot_point() else {
            return;
        };
        let mut bytes = Vec::new();
        if let Err(e) = zoocore_engine::snapshot::write(&tree, &mut bytes) {
            panic!("member {id} cannot write a snapshot: {e}");
        }
        let meta = SnapshotMeta {
            index,
            term,
            len: bytes.len() as u64,
        };
        member.disk.snapshots.insert((index, term), (meta, bytes));
        r.snapshot_taken(meta);
        member.disk.purge(r.log_kept_from());
        member.snapshot_at = index;
        self.report.snapshots_taken += 1;
    }

    fn check_committed(&mut self, id: u64, c: &zoocore_consensus::Committed) -> Result<(), String> {
        if c.installed {
            return self.check_installed(id, c);
        }
        let mut records = Vec::new();
        for (txn, _) in &c.txns {
            txn.write(&mut records);
        }
        let data = hash_of(&records);
        let digest = tree_digest(&c.tree);
        let zxids = (
            c.txns.first().map_or(0, |(t, _)| t.zxid),
            c.txns.last().map_or(0, |(t, _)| t.zxid),
        );
        let member = self.members.get_mut(&id).ok_or("no member")?;
        if c.index <= member.applied {
            return Err(format!(
                "member {id} applied index {} after {}",
                c.index, member.applied
            ));
        }
        member.applied = c.index;
        match self.log.get(&c.index) {
            Some(seen) => {
                if (seen.term, seen.data, seen.zxids) != (c.term, data, zxids) {
                    return Err(format!(
                        "member {id} committed a different entry at index {} (term {} vs {}, zxids {:?} vs {:?})",
                        c.index, c.term, seen.term, zxids, seen.zxids
                    ));
                }
                if seen.digest != digest {
                    return Err(format!(
                        "member {id}'s tree differs from others' after index {}",
                        c.index
                    ));
                }
            }
            None => {
                let before = self
                    .log
                    .range(..c.index)
                    .next_back()
                    .map(|(_, s)| s.zxids.1);
                let after = self.log.range(c.index + 1..).next().map(|(_, s)| s.zxids.0);
                if before.unwrap_or(0) + 1 != zxids.0 || after.is_some_and(|a| a != zxids.1 + 1) {
                    return Err(format!(
                        "zxids {zxids:?} at index {} do not follow {before:?} / precede {after:?}",
                        c.index
                    ));
                }
                for (txn, _) in &c.txns {
                    self.txns.insert(txn.zxid, (txn.session_id, txn.cxid));
                    self.report.committed_txns += 1;
                    if matches!(&txn.op, TxnOp::SetData { path, .. } if path == "/zookeeper/config")
                    {
                        self.report.reconfigs += 1;
                    }
                    if matches!(txn.op, TxnOp::CloseSession { .. }) && txn.cxid == 0 {
                        self.check_expiry(c.term, txn.time)?;
                    }
                }
                self.log.insert(
                    c.index,
                    Seen {
                        term: c.term,
                        data,
                        digest,
                        zxids,
                    },
                );
            }
        }
        Ok(())
    }

    /// A snapshot a member installed is the tree every member had at its index.
    fn check_installed(&mut self, id: u64, c: &zoocore_consensus::Committed) -> Result<(), String> {
        let digest = tree_digest(&c.tree);
        let member = self.members.get_mut(&id).ok_or("no member")?;
        if c.index <= member.applied || !c.txns.is_empty() {
            return Err(format!(
                "member {id} installed a snapshot at index {} after applying {}",
                c.index, member.applied
            ));
        }
        member.applied = c.index;
        member.snapshot_at = c.index;
        // The tree after the last batch at or before the index (an entry
        // without txns, a new leader's no-op, changes nothing).
        let before = self.log.range(..=c.index).next_back();
        let expected = before.map(|(_, seen)| seen.digest);
        let empty = tree_digest(&DataTree::new(true));
        if expected.unwrap_or(empty) != digest {
            return Err(format!(
                "member {id} installed a snapshot at index {} unlike the tree committed there",
                c.index
            ));
        }
        self.report.snapshots_installed += 1;
        self.event(format!(
            "member {id} installs a snapshot at index {}",
            c.index
        ));
        Ok(())
    }

    /// An expiry is the leader's, a full timeout after it took office.
    fn check_expiry(&mut self, term: u64, time: i64) -> Result<(), String> {
        self.report.expiries += 1;
        let Some(&(leader, since)) = self.leaders.get(&term) else {
            return Err(format!("an expiry in term {term}, which had no leader"));
        };
        if time < since + i64::from(self.cfg.session_timeout_ms) {
            return Err(format!(
                "leader {leader} of term {term} expired a session at {time} ms, less than a timeout after taking office at {since} ms"
            ));
        }
        Ok(())
    }

    fn answer_write(
        &mut self,
        id: u64,
        txn: &zoocore_engine::Txn,
        applied: &Applied,
    ) -> Result<(), String> {
        let now = self.now;
        let Some(c) = self.clients.iter().position(|c| {
            c.server == Some(id)
                && c.pending
                    .as_ref()
                    .is_some_and(|p| p.session_id == txn.session_id && p.cxid == txn.cxid)
        }) else {
            return Ok(());
        };
        let Some(pending) = self.clients[c].pending.take() else {
            return Ok(());
        };
        let client = &mut self.clients[c];
        client.last_zxid = client.last_zxid.max(txn.zxid);
        let ok = !matches!(applied, Applied::Error(_) | Applied::MultiError(_));
        match pending.kind {
            OpKind::Open => {
                client.session = ok.then_some(txn.session_id);
            }
            OpKind::Close => {
                client.session = None;
            }
            OpKind::Create(key) | OpKind::Set { key, .. } => {
                if let Applied::Error(code) = applied {
                    if *code == ErrorCode::SessionExpired.code() {
                        client.session = None;
                    }
                    // The server closes the connection (as ZooKeeper does);
                    // reconnecting makes the new server the owner.
                    if *code == ErrorCode::SessionMoved.code() {
                        client.server = None;
                    }
                    if *code == ErrorCode::BadVersion.code()
                        || *code == ErrorCode::NodeExists.code()
                    {
                        client.versions[key] = -1;
                    }
                } else {
                    client.versions[key] = match pending.kind {
                        OpKind::Set { version, .. } if version >= 0 => version + 1,
                        OpKind::Create(_) => 0,
                        _ => -1,
                    };
                }
            }
            OpKind::Sync(_) => return Err(format!("sync cxid {} answered by a txn", pending.cxid)),
            OpKind::Reconfig => {}
        }
        if ok {
            // Linearizable writes: one acknowledged before this began has a smaller zxid.
            let before = self
                .acked
                .partition_point(|&(completed, _, _)| completed < pending.invoked);
            if let Some(&(_, _, max)) = before.checked_sub(1).and_then(|i| self.acked.get(i)) {
                if max >= txn.zxid {
                    return Err(format!(
                        "write at zxid {:#x} started at {} ms after a write at zxid {max:#x} was acknowledged",
                        txn.zxid, pending.invoked
                    ));
                }
            }
            let running = self
                .acked
                .last()
                .map_or(txn.zxid, |&(_, _, m)| m.max(txn.zxid));
            self.acked.push((now, txn.zxid, running));
            self.report.acked_writes += 1;
        }
        self.event(format!(
            "member {id} acknowledges {:?} of session {:#x} at zxid {:#x} ({})",
            pending.kind,
            txn.session_id,
            txn.zxid,
            if ok { "ok" } else { "error" }
        ));
        Ok(())
    }

    fn answer_sync(&mut self, id: u64, sync_id: u64) -> Result<(), String> {
        let Some(c) = self.clients.iter().position(|c| {
            c.server == Some(id)
                && c.pending
                    .as_ref()
                    .is_some_and(|p| p.kind == OpKind::Sync(sync_id))
        }) else {
            return Ok(());
        };
        let Some(pending) = self.clients[c].pending.take() else {
            return Ok(());
        };
        let seen = self.members[&id]
            .replica
            .as_ref()
            .map_or(0, |r| r.tree().last_zxid());
        // Every write acknowledged before the sync began.
        let before = self
            .acked
            .partition_point(|&(completed, _, _)| completed < pending.invoked);
        if let Some(&(_, _, max)) = before.checked_sub(1).and_then(|i| self.acked.get(i)) {
            if seen < max {
                return Err(format!(
                    "member {id} answered a sync begun at {} ms at zxid {seen:#x}, before the acknowledged write {max:#x}",
                    pending.invoked
                ));
            }
        }
        let client = &mut self.clients[c];
        client.last_zxid = client.last_zxid.max(seen);
        self.report.syncs += 1;
        Ok(())
    }

    fn deliver(&mut self) -> Result<(), String> {
        while self.net.peek().is_some_and(|m| m.at <= self.now) {
            let Some(m) = self.net.pop() else { break };
            if !self.can_talk(m.from, m.to) {
                continue;
            }
            let msg = match PeerMsg::decode(&m.frame) {
                Ok(Some((msg, used))) if used == m.frame.len() => msg,
                // A damaged frame (a bad checksum, or a length that no longer
                // fits) closes that connection; raft sends again.
                _ => {
                    self.report.refused_frames += 1;
                    continue;
                }
            };
            let Some(replica) = self.members.get_mut(&m.to).and_then(|n| n.replica.as_mut()) else {
                continue;
            };
            replica
                .step(m.from, msg)
                .map_err(|e| format!("member {} refused a message: {e}", m.to))?;
        }
        Ok(())
    }

    fn complete_writes(&mut self) {
        let now = self.now;
        // What waited on the writes goes out through the same faulty network.
        let mut sends = Vec::new();
        for member in self.members.values_mut() {
            while member.writing.front().is_some_and(|(at, _)| *at <= now) {
                let Some((_, persist)) = member.writing.pop_front() else {
                    break;
                };
                self.report.diverged_entries_replaced += member.disk.write(&persist, Landed::All);
                let Some(replica) = member.replica.as_mut() else {
                    continue;
                };
                replica.persisted(persist.number);
                let from = replica.id();
                sends.extend(persist.after.into_iter().map(|(to, msg)| (from, to, msg)));
            }
        }
        for (from, to, msg) in sends {
            self.send(from, to, &msg);
        }
    }

    fn clients_act(&mut self) -> Result<(), String> {
        for c in 0..self.clients.len() {
            self.client_act(c)?;
        }
        Ok(())
    }

    fn up_members(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|(_, m)| m.replica.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    fn client_act(&mut self, c: usize) -> Result<(), String> {
        let now = self.now;
        // A request unanswered for two session timeouts: the client gives up
        // on this server (ZooKeeper's client reports connection loss).
        let patience = 2 * i64::from(self.cfg.session_timeout_ms);
        if self.clients[c]
            .pending
            .as_ref()
            .is_some_and(|p| now - p.invoked > patience)
        {
            self.clients[c].pending = None;
            self.clients[c].server = None;
        }
        if self.clients[c].next_ping <= now {
            self.clients[c].next_ping = now + i64::from(self.cfg.session_timeout_ms) / 4;
            if let (Some(server), Some(session)) = (self.clients[c].server, self.clients[c].session)
            {
                if let Some(r) = self
                    .members
                    .get_mut(&server)
                    .and_then(|m| m.replica.as_mut())
                {
                    r.touch(session);
                }
            }
        }
        if self.clients[c].pending.is_some() || self.clients[c].next_action > now {
            return Ok(());
        }
        self.clients[c].next_action = now + self.rng.gen_range(1..40);
        if self.clients[c].server.is_none() {
            // Connect to a member that has seen at least what this client saw
            // (ZooKeeper refuses the others, and the client moves on).
            let up = self.up_members();
            if up.is_empty() {
                return Ok(());
            }
            let pick = up[self.rng.gen_range(0..up.len())];
            let seen = self.members[&pick]
                .replica
                .as_ref()
                .map_or(0, |r| r.tree().last_zxid());
            if seen < self.clients[c].last_zxid {
                return Ok(());
            }
            if let Some(session) = self.clients[c].session {
                let replica = self.members.get_mut(&pick).and_then(|m| m.replica.as_mut());
                match replica {
                    Some(r) if r.tree().sessions().contains_key(&session) => {
                        // As a server does when a session reconnects to it.
                        r.propose(Proposal {
                            session_id: session,
                            cxid: 0,
                            identity: Identity::default(),
                            op: ProposalOp::Revalidate,
                        });
                    }
                    // Expired (or not yet visible here): start over with a new one.
                    _ => self.clients[c].session = None,
                }
            }
            self.clients[c].server = Some(pick);
            return Ok(());
        }
        let Some(server) = self.clients[c].server else {
            return Ok(());
        };
        let roll = self.rng.gen_range(0..100);
        let key = self.rng.gen_range(0..KEYS);
        let client = &mut self.clients[c];
        let Some(replica) = self
            .members
            .get_mut(&server)
            .and_then(|m| m.replica.as_mut())
        else {
            client.server = None;
            return Ok(());
        };
        let Some(session_id) = client.session else {
            let session_id = replica.next_session_id();
            client.cxid = 0;
            client.versions = [-1; KEYS];
            client.pending = Some(Pending {
                kind: OpKind::Open,
                cxid: 0,
                invoked: now,
                session_id,
            });
            replica.propose(Proposal {
                session_id,
                cxid: 0,
                identity: Identity::default(),
                op: ProposalOp::OpenSession {
                    timeout: self.cfg.session_timeout_ms,
                },
            });
            return Ok(());
        };
        client.cxid += 1;
        let cxid = client.cxid;
        let (kind, op) = match roll {
            0..=9 => {
                // A plain read: served here, never older than what the session saw.
                let tree = replica.tree();
                let zxid = tree.last_zxid();
                if zxid < client.last_zxid {
                    return Err(format!(
                        "a read on member {server} at zxid {zxid:#x} went back from {:#x}",
                        client.last_zxid
                    ));
                }
                if let Some(node) = tree.get(&key_path(key)) {
                    client.versions[key] = node.stat.version;
                }
                client.last_zxid = zxid;
                self.report.reads += 1;
                return Ok(());
            }
            10..=19 => {
                // Sync ids count per member, as each server counts its own.
                let next = self.next_sync.entry(server).or_insert(1);
                let id = *next;
                *next += 1;
                replica.sync(id);
                (OpKind::Sync(id), None)
            }
            20..=21 => (OpKind::Close, Some(ProposalOp::CloseSession)),
            96..=99 if self.cfg.spares > 0 => {
                // Add a member the configuration lacks, or remove one it has.
                let all = self.cfg.replicas + self.cfg.observers + self.cfg.spares;
                let id = self.rng.gen_range(1..=all);
                let present = replica
                    .membership()
                    .is_some_and(|(m, _)| m.get(id).is_some());
                let (joining, leaving) = if present {
                    (String::new(), id.to_string())
                } else {
                    (member_line(id, self.rng.gen_bool(0.3)), String::new())
                };
                (
                    OpKind::Reconfig,
                    Some(ProposalOp::Write(Request::Reconfig(ReconfigRequest {
                        joining_servers: joining,
                        leaving_servers: leaving,
                        new_members: String::new(),
                        cur_config_id: -1,
                    }))),
                )
            }
            22..=34 => (
                OpKind::Create(key),
                Some(ProposalOp::Write(Request::Create(CreateRequest {
                    path: key_path(key),
                    data: Some(vec![c as u8]),
                    acl: vec![Acl::new(zoocore_net::consts::perms::ALL, "world", "anyone")],
                    flags: 0,
                }))),
            ),
            _ => {
                let version = client.versions[key];
                (
                    OpKind::Set { key, version },
                    Some(ProposalOp::Write(Request::SetData(SetDataRequest {
                        path: key_path(key),
                        data: Some(cxid.to_be_bytes().to_vec()),
                        version,
                    }))),
                )
            }
        };
        client.pending = Some(Pending {
            kind,
            cxid,
            invoked: now,
            session_id,
        });
        if let Some(op) = op {
            // Reconfigs need the super user (/zookeeper/config is read-only).
            let identity = match kind {
                OpKind::Reconfig => Identity::from_ids(vec![zoocore_net::Id {
                    scheme: "super".into(),
                    id: "super".into(),
                }]),
                _ => Identity::default(),
            };
            replica.propose(Proposal {
                session_id,
                cxid,
                identity,
                op,
            });
        }
        Ok(())
    }

    fn faults(&mut self) {
        let f = self.cfg.faults.clone();
        if self.rng.gen_bool(f.partition) {
            let ids: Vec<u64> = self.members.keys().copied().collect();
            let until = self.now + self.rng.gen_range(f.partition_ms.0..=f.partition_ms.1);
            let isolated = ids[self.rng.gen_range(0..ids.len())];
            let split = self.rng.gen_bool(0.3) && ids.len() > 3;
            let side: BTreeSet<u64> = if split {
                ids.iter()
                    .copied()
                    .filter(|_| self.rng.gen_bool(0.5))
                    .collect()
            } else {
                [isolated].into()
            };
            for &a in &ids {
                for &b in &ids {
                    if a < b && side.contains(&a) != side.contains(&b) {
                        self.cut.insert((a, b), until);
                    }
                }
            }
            self.report.partitions += 1;
            self.event(format!("partition {side:?} from the rest until {until} ms"));
        }
        let up = self.up_members();
        let down = self.members.len() - up.len();
        let minority = (self.members.len() - 1) / 2;
        if down < minority && self.rng.gen_bool(f.crash) {
            let id = up[self.rng.gen_range(0..up.len())];
            let until = self.now + self.rng.gen_range(f.down_ms.0..=f.down_ms.1);
            self.crash(id, until);
        }
    }

    fn restart_due(&mut self) {
        let restart: Vec<u64> = self
            .members
            .iter()
            .filter(|(_, m)| m.replica.is_none() && m.down_until <= self.now)
            .map(|(&id, _)| id)
            .collect();
        for id in restart {
            self.start(id);
        }
    }

    fn check_leaders(&mut self) -> Result<(), String> {
        let now = self.now;
        let leaders: Vec<(u64, u64)> = self
            .members
            .iter()
            .filter_map(|(&id, m)| {
                m.replica
                    .as_ref()
                    .filter(|r| r.is_leader())
                    .map(|r| (id, r.term()))
            })
            .collect();
        for (id, term) in leaders {
            match self.leaders.get(&term) {
                Some(&(other, _)) if other != id => {
                    return Err(format!("members {other} and {id} both lead term {term}"));
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(term, (id, now));
                    self.report.leader_terms += 1;
                    self.event(format!("member {id} leads term {term}"));
                }
            }
        }
        Ok(())
    }

    /// One millisecond of the simulation.
    fn step(&mut self, faults: bool) -> Result<(), String> {
        self.now += 1;
        if faults {
            self.faults();
        } else {
            self.cut.clear();
        }
        self.restart_due();
        let clients_act = faults;
        self.deliver()?;
        self.complete_writes();
        let ids: Vec<u64> = self.members.keys().copied().collect();
        for &id in &ids {
            if let Some(r) = self.members.get_mut(&id).and_then(|m| m.replica.as_mut()) {
                r.tick(self.now);
            }
        }
        if clients_act {
            // After the faults the clients stop, so the members can settle.
            self.clients_act()?;
        }
        for &id in &ids {
            let out = match self.members.get_mut(&id).and_then(|m| m.replica.as_mut()) {
                Some(r) => r.output().map_err(|e| format!("member {id}: {e}"))?,
                None => continue,
            };
            self.handle(id, out)?;
        }
        self.check_leaders()
    }

    /// After the faults: every member restarts; the ensemble must elect a
    /// leader, commit a write, and hold every acknowledged write.
    fn settle(&mut self) -> Result<(), String> {
        let ids: Vec<u64> = self.members.keys().copied().collect();
        for &id in &ids {
            let until = self.now;
            self.crash(id, until);
        }
        self.report.crashes -= ids.len();
        self.cut.clear();
        self.faults_off();
        let target = self.log.values().next_back().map_or(0, |s| s.zxids.1);
        let deadline = self.now + 20_000;
        let mut probe: Option<i64> = None;
        loop {
            self.step(false)?;
            let leader = self.leader();
            if let (Some(leader), None) = (leader, probe) {
                // A write through the leader proves the ensemble is live again.
                let now = self.now;
                if let Some(r) = self
                    .members
                    .get_mut(&leader)
                    .and_then(|m| m.replica.as_mut())
                {
                    let session_id = r.next_session_id();
                    r.propose(Proposal {
                        session_id,
                        cxid: 0,
                        identity: Identity::default(),
                        op: ProposalOp::OpenSession { timeout: 30_000 },
                    });
                    probe = Some(session_id);
                    self.event(format!("probe session {session_id:#x} at {now} ms"));
                }
            }
            let current = self.final_members(leader);
            let done = probe.is_some_and(|p| {
                self.members
                    .iter()
                    .filter(|(id, _)| current.contains(id))
                    .all(|(_, m)| {
                        m.replica.as_ref().is_some_and(|r| {
                            r.tree().sessions().contains_key(&p) && r.tree().last_zxid() >= target
                        })
                    })
            });
            if done {
                break;
            }
            if self.now > deadline {
                let states: Vec<String> = self
                    .members
                    .values()
                    .filter_map(|m| m.replica.as_ref())
                    .map(|r| {
                        format!(
                            "member {} applied {} commit {} zxid {:#x}",
                            r.id(),
                            r.applied_index(),
                            r.commit_index(),
                            r.tree().last_zxid()
                        )
                    })
                    .collect();
                return Err(format!(
                    "no progress within 20 s after the faults stopped (leader: {leader:?}, probe: {probe:?}, target zxid {target:#x}; {})",
                    states.join(", ")
                ));
            }
        }
        // Every acknowledged write is committed at its zxid on every member
        // of the final configuration.
        let current = self.final_members(self.leader());
        for (_, member) in self.members.iter().filter(|(id, _)| current.contains(id)) {
            let Some(r) = member.replica.as_ref() else {
                continue;
            };
            let last = r.tree().last_zxid();
            if let Some(&(_, zxid, _)) = self.acked.iter().find(|&&(_, z, _)| z > last) {
                return Err(format!(
                    "member {} lost acknowledged zxid {zxid:#x}",
                    r.id()
                ));
            }
        }
        for &(_, zxid, _) in &self.acked {
            if !self.txns.contains_key(&zxid) {
                return Err(format!(
                    "acknowledged zxid {zxid:#x} is not in the committed log"
                ));
            }
        }
        Ok(())
    }

    /// The members the leader's configuration names (every member when
    /// there is no configuration or no leader).
    /// The member that leads now, if one does.
    fn leader(&self) -> Option<u64> {
        self.members
            .values()
            .filter_map(|m| m.replica.as_ref())
            .find(|r| r.is_leader())
            .map(|r| r.id())
    }

    fn final_members(&self, leader: Option<u64>) -> BTreeSet<u64> {
        let membership = leader
            .and_then(|id| self.members.get(&id))
            .and_then(|m| m.replica.as_ref())
            .and_then(Replica::membership);
        match membership {
            Some((m, _)) => m.members().iter().map(|m| m.id).collect(),
            None => self.members.keys().copied().collect(),
        }
    }

    fn faults_off(&mut self) {
        self.net.clear();
    }
}

/// Runs one seed; `Err` holds the report of the first violated invariant
/// (a panic inside a member, raft-rs's assertions included, counts as one).
pub fn run(cfg: SimConfig) -> Result<Report, String> {
    let millis = cfg.millis;
    let mut sim = Sim::new(cfg);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while sim.now < millis {
            sim.step(true)?;
        }
        sim.settle()
    }));
    match outcome {
        Ok(Ok(())) => Ok(sim.report),
        Ok(Err(what)) => Err(sim.fail(what)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Err(sim.fail(format!("a member panicked: {what}")))
        }
    }
}
