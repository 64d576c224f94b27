//! What four-letter words and admin commands are answered from: a shard's
//! replica, the config and counters, and every shard's view of its
//! connections, gathered through the sequencer's batch stream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zoocore_engine::DataTree;

use crate::config::Config;
use crate::stats::Stats;

/// How long a word waits for every shard's view before it answers without.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// What one shard alone knows: the watches and sessions of its connections.
pub struct ShardView {
    pub shard: usize,
    /// Data-table watches (what ZooKeeper's wch* words show): path and the
    /// session ids of its watchers (0 for a connection without a session).
    pub data_watches: Vec<(String, Vec<i64>)>,
    /// Watches of both tables.
    pub watch_count: usize,
    pub sessions: Vec<SessionView>,
}

pub struct SessionView {
    pub id: i64,
    /// When the session expires unless it is heard from, in ms since the Unix epoch.
    pub expires_ms: i64,
    /// The connection it is attached to, if any.
    pub peer: Option<SocketAddr>,
}

/// Views collected from every shard for one word.
pub struct Gather {
    shards: usize,
    views: Mutex<Vec<ShardView>>,
}

impl Gather {
    pub fn new(shards: usize) -> Arc<Gather> {
        Arc::new(Gather {
            shards,
            views: Mutex::new(Vec::with_capacity(shards)),
        })
    }

    /// A shard adds its view (each shard once, when the request reaches it).
    pub fn add(&self, view: ShardView) {
        self.views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(view);
    }

    /// Waits for every shard's view; `None` after `GATHER_TIMEOUT`.
    pub async fn wait(&self) -> Option<Vec<ShardView>> {
        let deadline = Instant::now() + GATHER_TIMEOUT;
        loop {
            {
                let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
                if views.len() >= self.shards {
                    return Some(std::mem::take(&mut views));
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Whether a word needs every shard's view.
pub fn needs_views(word: &str) -> bool {
    matches!(word, "mntr" | "wchs" | "wchc" | "wchp" | "dump")
}

/// What a word is answered from.
pub struct Context<'a> {
    pub config: &'a Config,
    pub stats: &'a Stats,
    /// The answering shard's replica.
    pub tree: &'a DataTree,
    /// Every shard's view, for the words of `needs_views`.
    pub views: &'a [ShardView],
}
