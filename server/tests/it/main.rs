//! The crate's integration tests, one module per area, linked into one
//! binary (one link of the crate's dependencies instead of one per file).

mod admin;
mod audit;
mod cli;
mod crash;
mod curator;
mod differential;
mod docker;
mod ensemble;
mod fourlw;
mod import_zk;
mod restart;
mod runtime;
mod sasl;
mod snapshots;
mod tls;
mod tune;
mod zkcli;
mod zookeeper_client;
