//! Subcommands run instead of the server.
pub mod cli;
pub mod dump;
pub mod tune;
