//! Counters read by the four-letter words. What changes per request is kept
//! per shard, on its own cache line, so no two cores write the same one;
//! readers add the shards up.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// When the last reply left, in ms since the server started.
    pub last_response_ms: AtomicU64,
    pub latency: Latency,
}

static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Milliseconds since the server started (since `Stats::new`).
pub fn elapsed_ms() -> u64 {
    STARTED
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
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
    pub fn new(peer: SocketAddr) -> Self {
        ClientStats {
            peer,
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
        self.last_response_ms.store(elapsed_ms(), Ordering::Relaxed);
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
    latency: Latency,
}

impl ShardCounters {
    fn new() -> Self {
        ShardCounters {
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
            latency: Latency::new(),
        }
    }

    /// Time from a request's arrival to its reply.
    pub fn record_latency(&self, latency: Duration) {
        self.latency.record(latency);
    }
}

pub struct Stats {
    shards: Vec<CachePadded<ShardCounters>>,
    pub connections: AtomicU64,
    pub batches: AtomicU64,
    pub batched_txns: AtomicU64,
    pub batched_bytes: AtomicU64,
    pub max_batch_txns: AtomicU64,
    /// Open connections per client address (`maxClientCnxns`); touched only
    /// when a connection opens or closes, never per request.
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Open connections by (shard, connection id); changed on open and close only.
    clients: Mutex<BTreeMap<(usize, u64), Arc<ClientStats>>>,
}

impl Stats {
    pub fn new(shards: usize) -> Self {
        elapsed_ms();
        Stats {
            shards: (0..shards)
                .map(|_| CachePadded::new(ShardCounters::new()))
                .collect(),
            connections: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batched_txns: AtomicU64::new(0),
            batched_bytes: AtomicU64::new(0),
            max_batch_txns: AtomicU64::new(0),
            per_ip: Mutex::new(HashMap::new()),
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    /// The counters shard `index` writes.
    pub fn shard(&self, index: usize) -> &ShardCounters {
        &self.shards[index]
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

    pub fn record_batch(&self, txns: usize, bytes: usize) {
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
        elapsed_ms()
    }

    pub fn add_client(&self, shard: usize, conn: u64, client: Arc<ClientStats>) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.insert((shard, conn), client);
    }

    pub fn remove_client(&self, shard: usize, conn: u64) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.remove(&(shard, conn));
    }

    /// One line per open connection, as ZooKeeper's `stat` lists them
    /// (`detailed`: as `cons` does).
    pub fn client_lines(&self, detailed: bool) -> String {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .values()
            .map(|c| {
                let load = |a: &AtomicI64| a.load(Ordering::Relaxed);
                let session = load(&c.session_id);
                let mut line = format!(
                    " /{}[{}](queued=0,recved={},sent={}",
                    c.peer,
                    u8::from(session != 0),
                    c.received.load(Ordering::Relaxed),
                    c.sent.load(Ordering::Relaxed)
                );
                if detailed && session != 0 {
                    let (min, avg, max) = summary(std::iter::once(&c.latency));
                    line += &format!(
                        ",sid={session:#x},lop={},est={},to={},lcxid={:#x},lzxid={:#x},lresp={},llat={},minlat={min},avglat={},maxlat={max}",
                        op_name(load(&c.last_op)),
                        load(&c.established_ms),
                        load(&c.timeout_ms),
                        load(&c.last_cxid),
                        load(&c.last_zxid),
                        c.last_response_ms.load(Ordering::Relaxed),
                        c.latency.last_us.load(Ordering::Relaxed) / 1000,
                        avg.round() as u64,
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
