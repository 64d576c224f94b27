//! Subcommands run instead of the server.
pub mod cli;
pub mod dump;
pub mod import_zk;
pub mod tune;
