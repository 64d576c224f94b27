//! `zoocore`: a ZooKeeper-compatible coordination server, thread-per-core.
//! This file turns argv into a subcommand; `process` runs the server.

mod audit;
mod auth;
mod config;
mod inspect;
mod ops;
mod process;
mod replicate;
mod seq;
mod serve;
mod stats;
mod storage;
mod tls;
mod tools;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::config::Config;
use crate::tools::{cli, tune};

#[derive(Parser, Debug)]
#[command(version, about = "zoocore: a ZooKeeper-compatible coordination server")]
struct Cli {
    /// A ZooKeeper config file (zoo.cfg). Without one, ZooKeeper's defaults
    /// apply: client port 2181, tickTime 2000, data in ./zoocore-data.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Overrides clientPort.
    #[arg(long, value_name = "PORT")]
    client_port: Option<u16>,
    /// Overrides dataDir (and dataLogDir).
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// A tool to run instead of the server.
    #[command(subcommand)]
    tool: Option<Tool>,
}

#[derive(clap::Subcommand, Debug)]
enum Tool {
    /// The transaction log.
    #[command(subcommand)]
    Log(LogTool),
    /// Snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotTool),
    /// Host tuning.
    #[command(subcommand)]
    Tune(TuneTool),
    /// A command-line client, as zkCli: interactive, or the commands of
    /// `-c "cmd; cmd"` (or the words after the options, as one command).
    /// Exit codes (scripted): 0 success, 1 the server refused a command, 2 a
    /// malformed command, 3 no server reachable; the shell exits 0.
    Cli {
        /// host:port[,host:port...] (zkCli's `-server` works too).
        #[arg(long = "server", default_value = "127.0.0.1:2181")]
        server: String,
        /// Commands to run, separated by `;`, instead of a shell.
        #[arg(short = 'c', value_name = "COMMANDS")]
        commands: Option<String>,
        /// One command and its arguments, as zkCli takes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Converts an Apache ZooKeeper 3.5-3.9 data dir (snapshots and
    /// transaction logs) into a snapshot in dataDir, which must hold no
    /// zoocore files yet. Stop ZooKeeper first.
    ImportZk {
        /// ZooKeeper's dataDir (or its version-2 dir); give --from twice
        /// when its dataLogDir is separate.
        #[arg(long, value_name = "DIR", required = true)]
        from: Vec<PathBuf>,
    },
}

#[derive(clap::Subcommand, Debug)]
enum TuneTool {
    /// Checks this host for what helps or hurts zoocore (io_uring, memlock,
    /// cores and isolation, governor, THP, swappiness, the log disk's
    /// fdatasync latency, NIC IRQs on the sequencer's core) and says how to
    /// fix each finding. Exit code 1 if a check fails.
    Check,
}

#[derive(clap::Subcommand, Debug)]
enum LogTool {
    /// Prints every txn of the log segments in dataLogDir, one per line.
    Dump,
}

#[derive(clap::Subcommand, Debug)]
enum SnapshotTool {
    /// Prints a snapshot's nodes (with Stat) and sessions: the newest in
    /// dataDir, or FILE.
    Dump {
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // A panic on any core leaves the others unable to make progress safely:
    // stop the whole process so a supervisor restarts it from the log.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    // zkCli spells the server option with one dash.
    let cli = Cli::parse_from(std::env::args().map(|a| match a.as_str() {
        "-server" => "--server".to_owned(),
        _ => a,
    }));
    let (mut config, warnings) = match &cli.config {
        Some(path) => match Config::from_file(path) {
            Ok(read) => read,
            Err(e) => {
                eprintln!("zoocore: {e}");
                return ExitCode::from(2);
            }
        },
        None => (Config::default(), Vec::new()),
    };
    // ZOOCORE_LOG (a tracing filter such as `debug` or `zoocore::shard=debug`)
    // overrides the config's zoocore.logLevel.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZOOCORE_LOG")
                .unwrap_or_else(|_| config.log_level.as_str().into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    for w in warnings {
        tracing::warn!("{w}");
    }
    if let Some(port) = cli.client_port {
        config.client_port = port;
        config.client_port_set = true;
    }
    if let Some(dir) = cli.data_dir {
        config.data_log_dir = dir.clone();
        config.data_dir = dir;
    }
    if let Some(tool) = cli.tool {
        let done = match tool {
            Tool::Log(LogTool::Dump) => tools::dump::dump_log(&config.data_log_dir),
            Tool::Snapshot(SnapshotTool::Dump { file }) => {
                tools::dump::dump_snapshot(&config.data_dir, file.as_deref(), config.extended_types)
            }
            Tool::Tune(TuneTool::Check) => {
                return ExitCode::from(tune::report(&tune::check(&config)));
            }
            Tool::Cli {
                server,
                commands,
                command,
            } => {
                let joined = command.join(" ");
                let commands = commands.or((!joined.is_empty()).then_some(joined));
                return match cli::servers(&server) {
                    Ok(servers) => ExitCode::from(cli::main(servers, commands.as_deref())),
                    Err(e) => {
                        eprintln!("zoocore cli: {e}");
                        ExitCode::from(2)
                    }
                };
            }
            Tool::ImportZk { from } => tools::import_zk::import_zk(
                &from,
                &config.data_dir,
                &config.data_log_dir,
                config.extended_types,
            ),
        };
        return match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("zoocore: {e}");
                ExitCode::from(1)
            }
        };
    }
    match process::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zoocore: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
