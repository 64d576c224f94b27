//! Counters shared by all cores, read by the four-letter words.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub sent: AtomicU64,
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
}

impl Stats {
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

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
