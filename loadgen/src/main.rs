//! `loadgen`: load generator for ZooKeeper-compatible servers. Its workloads
//! arrive with the benchmarks milestone; it shares zoocore-net's client codec.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "loadgen {}: workloads are not implemented yet (see ARCHITECTURE.md)",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
