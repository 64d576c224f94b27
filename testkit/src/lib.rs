//! Test support shared by the engine's and the server's tests. It exists as a
//! crate so both can use one differential harness (see ARCHITECTURE.md).

pub mod cluster;
pub mod differential;
pub mod ensemble;
pub mod linearizability;
pub mod model;
pub mod netns;
pub mod pki;
pub mod zk;
pub mod zoocore;
