//! Counters read by the four-letter words. What changes per request is kept
//! per shard, on its own cache line, so no two cores write the same one;
//! readers add the shards up.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

/// Request latencies: min, max, sum and count, in microseconds.
pub struct Latency {
    min_us: AtomicU64,
    max_us: AtomicU64,
    sum_us: AtomicU64,
    count: AtomicU64,
    last_us: AtomicU64,
}

impl Latency {
    fn new() -> Self {
        Latency {
            min_us: AtomicU64::new(u64::MAX),
            max_us: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
        }
    }

    pub fn record(&self, latency: Duration) {
        let us = latency.as_micros() as u64;
        self.min_us.fetch_min(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.last_us.store(us, Ordering::Relaxed);
    }

    fn reset(&self) {
        self.min_us.store(u64::MAX, Ordering::Relaxed);
        self.max_us.store(0, Ordering::Relaxed);
        self.sum_us.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
        self.last_us.store(0, Ordering::Relaxed);
    }
}

/// (min, avg, max) in milliseconds over some latency records, as ZooKeeper
/// reports them (0 when there are none).
fn summary<'a>(all: impl Iterator<Item = &'a Latency> + Clone) -> (u64, f64, u64) {
    let count: u64 = all.clone().map(|l| l.count.load(Ordering::Relaxed)).sum();
    if count == 0 {
        return (0, 0.0, 0);
    }
    let sum: u64 = all.clone().map(|l| l.sum_us.load(Ordering::Relaxed)).sum();
    let min = all
        .clone()
        .map(|l| l.min_us.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0);
    let max = all
        .map(|l| l.max_us.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    (min / 1000, sum as f64 / count as f64 / 1000.0, max / 1000)
}

/// A histogram with fixed upper bounds, as Prometheus wants one: a count
/// per bucket and the sum, in atomics (the shards record apply latency into
/// one), read by the metrics page.
pub struct Buckets {
    /// Upper bounds, ascending; a last, implicit bucket is +Inf.
    pub bounds: Vec<u64>,
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
}

impl Buckets {
    /// Bounds 1, 2, 4, ... 2^(n-1).
    fn powers_of_two(n: u32) -> Self {
        let bounds: Vec<u64> = (0..n).map(|i| 1u64 << i).collect();
        Buckets {
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            bounds,
            sum: AtomicU64::new(0),
        }
    }

    pub fn record(&self, value: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Cumulative counts per bound, the +Inf count last, and the sum.
    pub fn cumulative(&self) -> (Vec<u64>, u64) {
        let mut total = 0;
        let counts = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        (counts, self.sum.load(Ordering::Relaxed))
    }
}

/// Counters of one connection, listed by `stat` and `cons`. Only its shard writes them.
pub struct ClientStats {
    pub peer: SocketAddr,
    pub received: AtomicU64,
    pub sent: AtomicU64,
    /// 0 until the connection has a session.
    pub session_id: AtomicI64,
    pub timeout_ms: AtomicI64,
    /// When the session was established here, in ms since the Unix epoch.
    pub established_ms: AtomicI64,
    /// Opcode of the last request, or `NO_OP`.
    pub last_op: AtomicI64,
    pub last_cxid: AtomicI64,
    pub last_zxid: AtomicI64,
    started: Instant,
    /// When the last reply left, in ms since the server started.
    pub last_response_ms: AtomicU64,
    pub latency: Latency,
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `last_op` before any request.
const NO_OP: i64 = i64::MIN;

impl ClientStats {
    /// `started`: when the server started (`Stats::started`).
    pub fn new(peer: SocketAddr, started: Instant) -> Self {
        ClientStats {
            peer,
            started,
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            session_id: AtomicI64::new(0),
            timeout_ms: AtomicI64::new(0),
            established_ms: AtomicI64::new(0),
            last_op: AtomicI64::new(NO_OP),
            last_cxid: AtomicI64::new(-1),
            last_zxid: AtomicI64::new(-1),
            last_response_ms: AtomicU64::new(0),
            latency: Latency::new(),
        }
    }

    /// A request arrived.
    pub fn note_request(&self, op: i32, cxid: i32) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.last_op.store(op.into(), Ordering::Relaxed);
        // Pings, auth and setWatches carry reserved negative xids, not cxids.
        if cxid >= 0 {
            self.last_cxid.store(cxid.into(), Ordering::Relaxed);
        }
    }

    /// A reply left.
    pub fn note_reply(&self, zxid: i64, latency: Duration) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.last_zxid.store(zxid, Ordering::Relaxed);
        self.last_response_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.latency.record(latency);
    }

    /// The connection now has a session.
    pub fn note_session(&self, session_id: i64, timeout_ms: i32) {
        self.session_id.store(session_id, Ordering::Relaxed);
        self.timeout_ms.store(timeout_ms.into(), Ordering::Relaxed);
        self.established_ms.store(epoch_ms(), Ordering::Relaxed);
    }

    /// What `crst` clears, as ZooKeeper's `resetStats` does.
    fn reset(&self) {
        self.received.store(0, Ordering::Relaxed);
        self.sent.store(0, Ordering::Relaxed);
        self.last_op.store(NO_OP, Ordering::Relaxed);
        self.last_cxid.store(-1, Ordering::Relaxed);
        self.last_zxid.store(-1, Ordering::Relaxed);
        self.last_response_ms.store(0, Ordering::Relaxed);
        self.latency.reset();
    }
}

/// One connection as `cons` and the admin `connections` command show it.
pub struct ClientRow {
    pub peer: SocketAddr,
    pub received: u64,
    pub sent: u64,
    /// 0 without a session.
    pub session_id: i64,
    pub last_op: &'static str,
    pub established_ms: i64,
    pub timeout_ms: i64,
    pub last_cxid: i64,
    pub last_zxid: i64,
    pub last_response_ms: u64,
    pub last_latency_ms: u64,
    pub min_latency_ms: u64,
    pub avg_latency_ms: f64,
    pub max_latency_ms: u64,
}

/// ZooKeeper's short name of an operation in `cons` (`lop=`).
fn op_name(op: i64) -> &'static str {
    use zoocore_net::OpCode::*;
    let Some(op) = i32::try_from(op)
        .ok()
        .and_then(zoocore_net::OpCode::from_i32)
    else {
        return "NA";
    };
    match op {
        Ping => "PING",
        CreateSession => "SESS",
        Multi | MultiRead => "MULT",
        Create | Create2 | CreateContainer | CreateTtl => "CREA",
        Delete | DeleteContainer => "DELE",
        SetData => "SETD",
        SetAcl => "SETA",
        CloseSession => "CLOS",
        Sync => "SYNC",
        Check => "CHEC",
        Exists => "EXIS",
        GetData => "GETD",
        SetWatches | SetWatches2 => "SETW",
        GetAcl => "GETA",
        GetChildren | GetChildren2 => "GETC",
        GetEphemerals => "GETE",
        GetAllChildrenNumber => "GETACN",
        CheckWatches => "CHKW",
        RemoveWatches => "REMW",
        AddWatch => "ADDW",
        WhoAmI => "HOMI",
        Auth => "AUTH",
        _ => "NA",
    }
}

/// Per-request counters of one shard; only that shard writes them (the
/// resets of `srst` aside).
pub struct ShardCounters {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    /// Requests sent to the sequencer and not yet answered.
    pub outstanding: AtomicI64,
    /// Batches the sequencer sent this shard, and those it has applied: the
    /// difference is its commit queue's depth.
    pub batches_sent: AtomicU64,
    pub batches_applied: AtomicU64,
    latency: Latency,
    /// Request latency in microseconds, since start (the UI's server page
    /// draws it); per shard, so recording touches only this core's lines.
    pub latency_us: Buckets,
}

impl ShardCounters {
    fn new() -> Self {
        ShardCounters {
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
            batches_sent: AtomicU64::new(0),
            batches_applied: AtomicU64::new(0),
            latency: Latency::new(),
            latency_us: Buckets::powers_of_two(25),
        }
    }

    /// Time from a request's arrival to its reply.
    pub fn record_latency(&self, latency: Duration) {
        self.latency.record(latency);
        self.latency_us.record(latency.as_micros() as u64);
    }
}

pub struct Stats {
    /// When the server started: uptime, and `cons`'s last response times.
    pub started: Instant,
    shards: Vec<CachePadded<ShardCounters>>,
    pub connections: AtomicU64,
    pub batches: AtomicU64,
    pub batched_txns: AtomicU64,
    pub batched_bytes: AtomicU64,
    pub max_batch_txns: AtomicU64,
    /// Txns per group commit (Prometheus histogram).
    pub batch_txns: Buckets,
    /// Bytes written per group commit.
    pub batch_bytes: Buckets,
    /// Log write + fdatasync per group commit, in microseconds.
    pub fsync_us: Buckets,
    /// From a batch being durable to a shard having applied it, in microseconds.
    pub apply_us: Buckets,
    /// Snapshot writes, in milliseconds.
    pub snapshot_ms: Buckets,
    /// Entries in the sequencer's open batch when it was last taken.
    pub open_batch: AtomicU64,
    /// This server's place in its ensemble (standalone without one).
    pub ensemble: EnsembleState,
    /// Open connections per client address (`maxClientCnxns`); touched only
    /// when a connection opens or closes, never per request.
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Open connections by (shard, connection id); changed on open and close only.
    clients: Mutex<BTreeMap<(usize, u64), Arc<ClientStats>>>,
}

impl Stats {
    pub fn new(shards: usize) -> Self {
        Stats {
            started: Instant::now(),
            shards: (0..shards)
                .map(|_| CachePadded::new(ShardCounters::new()))
                .collect(),
            connections: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batched_txns: AtomicU64::new(0),
            batched_bytes: AtomicU64::new(0),
            max_batch_txns: AtomicU64::new(0),
            batch_txns: Buckets::powers_of_two(11),
            batch_bytes: Buckets::powers_of_two(24),
            fsync_us: Buckets::powers_of_two(20),
            apply_us: Buckets::powers_of_two(20),
            snapshot_ms: Buckets::powers_of_two(18),
            open_batch: AtomicU64::new(0),
            ensemble: EnsembleState::default(),
            per_ip: Mutex::new(HashMap::new()),
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    /// The counters shard `index` writes.
    pub fn shard(&self, index: usize) -> &ShardCounters {
        &self.shards[index]
    }

    /// Committed batches that every shard has applied.
    pub fn min_batches_applied(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.batches_applied.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// Per shard: requests in the sequencer's hands, and committed batches
    /// not yet applied.
    pub fn queue_depths(&self) -> Vec<(u64, u64)> {
        self.shards
            .iter()
            .map(|s| {
                let sent = s.batches_sent.load(Ordering::Relaxed);
                let applied = s.batches_applied.load(Ordering::Relaxed);
                (
                    s.outstanding.load(Ordering::Relaxed).max(0) as u64,
                    sent.saturating_sub(applied),
                )
            })
            .collect()
    }

    fn sum(&self, counter: impl Fn(&ShardCounters) -> u64) -> u64 {
        self.shards.iter().map(|s| counter(s)).sum()
    }

    pub fn received(&self) -> u64 {
        self.sum(|s| s.received.load(Ordering::Relaxed))
    }

    pub fn sent(&self) -> u64 {
        self.sum(|s| s.sent.load(Ordering::Relaxed))
    }

    pub fn outstanding(&self) -> u64 {
        self.sum(|s| s.outstanding.load(Ordering::Relaxed).max(0) as u64)
    }

    /// Counts a new connection from `ip`; false if it is over `limit` (0 = none).
    pub fn admit(&self, ip: IpAddr, limit: u32) -> bool {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let count = per_ip.entry(ip).or_default();
        if limit != 0 && *count >= limit {
            return false;
        }
        *count += 1;
        self.connections.fetch_add(1, Ordering::Relaxed);
        true
    }

    pub fn release(&self, ip: IpAddr) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// A durable group commit: its txns, bytes written, and the time the
    /// write and fdatasync took.
    pub fn record_batch(&self, txns: usize, bytes: usize, took: Duration) {
        self.batch_txns.record(txns as u64);
        self.batch_bytes.record(bytes as u64);
        self.fsync_us.record(took.as_micros() as u64);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_txns.fetch_add(txns as u64, Ordering::Relaxed);
        self.batched_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.max_batch_txns
            .fetch_max(txns as u64, Ordering::Relaxed);
        let batches = self.batches.load(Ordering::Relaxed);
        // One line per 1000 batches shows group commit at work without flooding.
        if batches % 1000 == 0 {
            tracing::info!(
                batches,
                avg_txns = self.batched_txns.load(Ordering::Relaxed) as f64 / batches as f64,
                max_txns = self.max_batch_txns.load(Ordering::Relaxed),
                "group commit"
            );
        }
    }

    /// (min, avg, max) request latency in milliseconds since the last `srst`.
    pub fn latency(&self) -> (u64, f64, u64) {
        summary(self.shards.iter().map(|s| &s.latency))
    }

    /// `min/avg/max` in milliseconds, as ZooKeeper's `srvr` prints them.
    pub fn latency_line(&self) -> String {
        let (min, avg, max) = self.latency();
        format!("{min}/{avg:.4}/{max}")
    }

    /// `srst`: latency and packet counts start again.
    pub fn reset_server(&self) {
        for s in &self.shards {
            s.received.store(0, Ordering::Relaxed);
            s.sent.store(0, Ordering::Relaxed);
            s.latency.reset();
        }
    }

    /// `crst`: every connection's counters start again.
    pub fn reset_connections(&self) {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        for c in clients.values() {
            c.reset();
        }
    }

    /// Milliseconds since the server started.
    pub fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn add_client(&self, shard: usize, conn: u64, client: Arc<ClientStats>) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.insert((shard, conn), client);
    }

    pub fn remove_client(&self, shard: usize, conn: u64) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.remove(&(shard, conn));
    }

    /// Every open connection's counters, in connection order.
    pub fn clients(&self) -> Vec<ClientRow> {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .values()
            .map(|c| {
                let load = |a: &AtomicI64| a.load(Ordering::Relaxed);
                let (min_latency_ms, avg_latency_ms, max_latency_ms) =
                    summary(std::iter::once(&c.latency));
                ClientRow {
                    peer: c.peer,
                    received: c.received.load(Ordering::Relaxed),
                    sent: c.sent.load(Ordering::Relaxed),
                    session_id: load(&c.session_id),
                    last_op: op_name(load(&c.last_op)),
                    established_ms: load(&c.established_ms),
                    timeout_ms: load(&c.timeout_ms),
                    last_cxid: load(&c.last_cxid),
                    last_zxid: load(&c.last_zxid),
                    last_response_ms: c.last_response_ms.load(Ordering::Relaxed),
                    last_latency_ms: c.latency.last_us.load(Ordering::Relaxed) / 1000,
                    min_latency_ms,
                    avg_latency_ms,
                    max_latency_ms,
                }
            })
            .collect()
    }

    /// One line per open connection, as ZooKeeper's `stat` lists them
    /// (`detailed`: as `cons` does).
    pub fn client_lines(&self, detailed: bool) -> String {
        self.clients()
            .iter()
            .map(|c| {
                let mut line = format!(
                    " /{}[{}](queued=0,recved={},sent={}",
                    c.peer,
                    u8::from(c.session_id != 0),
                    c.received,
                    c.sent
                );
                if detailed && c.session_id != 0 {
                    line += &format!(
                        ",sid={:#x},lop={},est={},to={},lcxid={:#x},lzxid={:#x},lresp={},llat={},minlat={},avglat={},maxlat={}",
                        c.session_id,
                        c.last_op,
                        c.established_ms,
                        c.timeout_ms,
                        c.last_cxid,
                        c.last_zxid,
                        c.last_response_ms,
                        c.last_latency_ms,
                        c.min_latency_ms,
                        c.avg_latency_ms.round() as u64,
                        c.max_latency_ms,
                    );
                }
                line + ")\n"
            })
            .collect()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What this server is in its ensemble, as srvr's `Mode:` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Standalone = 0,
    /// A member that knows of no leader: it takes no clients.
    Looking = 1,
    Follower = 2,
    Leader = 3,
    Observer = 4,
}

/// An ensemble member's state, written by the sequencer's core and read by
/// shards (may they take clients?) and by the operator's words and pages.
pub struct EnsembleState {
    role: AtomicU64,
    pub leader: AtomicU64,
    pub leader_changes: AtomicU64,
    /// Leader only: members connected (voters and observers), voters
    /// connected, and those of each kind that hold everything committed.
    pub learners: AtomicU64,
    pub followers: AtomicU64,
    pub synced_followers: AtomicU64,
    pub synced_observers: AtomicU64,
    /// Without a leader for a while, serving reads to clients that allow a
    /// read-only server (`readonlymode.enabled`).
    read_only: AtomicBool,
    /// `sync` requests waiting for their read index.
    pub pending_syncs: AtomicU64,
    /// Requests this follower forwarded to the leader.
    pub forwarded: AtomicU64,
    /// Leader only: how far each member is behind; written once a raft
    /// tick, read by /metrics.
    peer_lag: Mutex<Vec<zoocore_consensus::PeerLag>>,
    /// From losing (or starting without) a leader to having one, ms.
    pub election_ms: Buckets,
    /// From a `sync` reaching the sequencer to its read index, in µs.
    pub sync_us: Buckets,
}

impl Default for EnsembleState {
    fn default() -> Self {
        EnsembleState {
            role: AtomicU64::new(0),
            leader: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            learners: AtomicU64::new(0),
            followers: AtomicU64::new(0),
            synced_followers: AtomicU64::new(0),
            synced_observers: AtomicU64::new(0),
            read_only: AtomicBool::new(false),
            pending_syncs: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            peer_lag: Mutex::new(Vec::new()),
            election_ms: Buckets::powers_of_two(18),
            sync_us: Buckets::powers_of_two(24),
        }
    }
}

impl EnsembleState {
    pub fn set_role(&self, role: Role) {
        self.role.store(role as u64, Ordering::Relaxed);
    }

    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Relaxed) {
            1 => Role::Looking,
            2 => Role::Follower,
            3 => Role::Leader,
            4 => Role::Observer,
            _ => Role::Standalone,
        }
    }

    pub fn set_read_only(&self, on: bool) {
        self.read_only.store(on, Ordering::Relaxed);
    }

    /// Serving read-only: no leader, `readonlymode.enabled`, and waited out.
    pub fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    /// ZooKeeper's name for the role (srvr's Mode, mntr's zk_server_state).
    pub fn mode(&self) -> &'static str {
        if self.read_only() {
            return "read-only";
        }
        match self.role() {
            Role::Standalone => "standalone",
            Role::Looking => "looking",
            Role::Follower => "follower",
            Role::Leader => "leader",
            Role::Observer => "observer",
        }
    }

    pub fn set_learners(&self, l: zoocore_consensus::Learners) {
        self.learners.store(l.learners as u64, Ordering::Relaxed);
        self.followers.store(l.followers as u64, Ordering::Relaxed);
        self.synced_followers
            .store(l.synced_followers as u64, Ordering::Relaxed);
        self.synced_observers
            .store(l.synced_observers as u64, Ordering::Relaxed);
    }

    pub fn set_peer_lag(&self, lag: Vec<zoocore_consensus::PeerLag>) {
        *self.peer_lag.lock().unwrap_or_else(|p| p.into_inner()) = lag;
    }

    pub fn peer_lag(&self) -> Vec<zoocore_consensus::PeerLag> {
        self.peer_lag
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether clients may be served: standalone, or an ensemble member
    /// that follows (or is) a leader.
    pub fn serving(&self) -> bool {
        self.role() != Role::Looking
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_with_an_infinite_last_one() {
        let b = Buckets::powers_of_two(3);
        for v in [1, 2, 3, 4, 100] {
            b.record(v);
        }
        assert_eq!(b.bounds, [1, 2, 4]);
        assert_eq!(b.cumulative(), (vec![1, 2, 4, 5], 110));
    }
}
