//! The crate's integration tests, one module per area, linked into one
//! binary (one link of the crate's dependencies instead of one per file).

mod golden;
mod malformed;
mod roundtrip;
