//! The crate's integration tests, one module per area, linked into one
//! binary.

mod simulation;
