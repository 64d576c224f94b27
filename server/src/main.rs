//! `zoocore`: the server binary. The network server (shard-per-core
//! executors, sequencer, log) is the next milestone; until it lands this
//! binary only reports its version, so the README's run command is honest.

use std::process::ExitCode;

fn main() -> ExitCode {
    let version = env!("CARGO_PKG_VERSION");
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("zoocore {version}");
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "zoocore {version}: the network server is not implemented yet; \
         the engine and protocol codec are (see ARCHITECTURE.md)"
    );
    ExitCode::from(2)
}
