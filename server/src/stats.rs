//! Counters read by the four-letter words. What changes per request is kept
//! per shard, on its own cache line, so no two cores write the same one;
//! readers add the shards up.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_utils::CachePadded;

/// Counters of one connection, listed by `stat`. Only its shard writes them.
pub struct ClientStats {
    pub peer: SocketAddr,
    pub received: AtomicU64,
    pub sent: AtomicU64,
}

/// Per-request counters of one shard; only that shard writes them.
pub struct ShardCounters {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    /// Requests sent to the sequencer and not yet answered.
    pub outstanding: AtomicI64,
    latency_min_us: AtomicU64,
    latency_max_us: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
}

impl ShardCounters {
    fn new() -> Self {
        ShardCounters {
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
            latency_min_us: AtomicU64::new(u64::MAX),
            latency_max_us: AtomicU64::new(0),
            latency_sum_us: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
        }
    }

    /// Time from a request's arrival to its reply.
    pub fn record_latency(&self, latency: Duration) {
        let us = latency.as_micros() as u64;
        self.latency_min_us.fetch_min(us, Ordering::Relaxed);
        self.latency_max_us.fetch_max(us, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct Stats {
    shards: Vec<CachePadded<ShardCounters>>,
    pub connections: AtomicU64,
    pub batches: AtomicU64,
    pub batched_txns: AtomicU64,
    pub batched_bytes: AtomicU64,
    pub max_batch_txns: AtomicU64,
    pub last_zxid: AtomicU64,
    pub node_count: AtomicU64,
    /// Open connections per client address (`maxClientCnxns`); touched only
    /// when a connection opens or closes, never per request.
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Open connections by (shard, connection id); changed on open and close only.
    clients: Mutex<BTreeMap<(usize, u64), Arc<ClientStats>>>,
}

impl Stats {
    pub fn new(shards: usize) -> Self {
        Stats {
            shards: (0..shards)
                .map(|_| CachePadded::new(ShardCounters::new()))
                .collect(),
            connections: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batched_txns: AtomicU64::new(0),
            batched_bytes: AtomicU64::new(0),
            max_batch_txns: AtomicU64::new(0),
            last_zxid: AtomicU64::new(0),
            node_count: AtomicU64::new(0),
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

    /// `min/avg/max` in milliseconds, as ZooKeeper prints them.
    pub fn latency_line(&self) -> String {
        let count = self.sum(|s| s.latency_count.load(Ordering::Relaxed));
        if count == 0 {
            return "0/0.0/0".into();
        }
        let sum = self.sum(|s| s.latency_sum_us.load(Ordering::Relaxed));
        let min = self
            .shards
            .iter()
            .map(|s| s.latency_min_us.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        let max = self
            .shards
            .iter()
            .map(|s| s.latency_max_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let avg = sum as f64 / count as f64 / 1000.0;
        format!("{}/{avg:.4}/{}", min / 1000, max / 1000)
    }

    pub fn add_client(&self, shard: usize, conn: u64, client: Arc<ClientStats>) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.insert((shard, conn), client);
    }

    pub fn remove_client(&self, shard: usize, conn: u64) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.remove(&(shard, conn));
    }

    /// One line per open connection, as ZooKeeper's `stat` lists them.
    pub fn client_lines(&self) -> String {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .values()
            .map(|c| {
                format!(
                    " /{}[1](queued=0,recved={},sent={})\n",
                    c.peer,
                    c.received.load(Ordering::Relaxed),
                    c.sent.load(Ordering::Relaxed)
                )
            })
            .collect()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
