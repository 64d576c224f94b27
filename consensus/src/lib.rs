//! zoocore's replication core, sans I/O: raft-rs's `RawNode` driven around
//! the sequencer's validate-and-order step. No glommio, no clock, no
//! sockets or files: the server (on its sequencer core) and the
//! deterministic simulation (`tests/it/simulation.rs`) feed it time, peer
//! messages and proposals, and carry out the [`Output`] it returns.
//!
//! - `replica.rs`: [`Replica`], one member: leader speculation, batches as
//!   raft entries, apply, sessions, sync through raft's ReadIndex.
//! - `entry.rs`: a sealed commit batch is one raft entry.
//! - `peer_msg.rs`: what members say to each other, framed and checksummed.
//! - `sessions.rs`: the leader's session tracker (expiry only by the leader).
//! - `membership.rs`: the ensemble from zoo.cfg's `server.N` lines.
//! - `store.rs`: the log as raft reads it, compacted behind snapshots.
//! - `snapshot.rs`: which snapshot a restarting member starts from.

pub mod entry;
pub mod membership;
pub mod peer_msg;
pub mod replica;
pub mod sessions;
pub mod snapshot;
pub mod store;

pub use membership::{Member, Membership};
pub use peer_msg::{PeerMsg, Proposal, ProposalOp};
/// raft's persistent state and log entries, as a driver stores them.
pub use raft::eraftpb::{Entry, HardState};
pub use replica::{
    ChunkWanted, Committed, DurableState, Installed, Learners, Output, PeerLag, Persist, Replica,
    ReplicaConfig, ReplicaError,
};
pub use snapshot::{Logged, Recovered};
pub use store::SnapshotMeta;
