//! Files in dataDir and dataLogDir: log segments, snapshots, recovery.
pub mod dir;
pub mod dynconfig;
pub mod raftlog;
pub mod recovery;
pub mod snapfile;
pub mod snapshotter;
pub mod wal;
