//! The ZooKeeper client protocol (as of 3.9): jute records, every request and
//! reply body, framing, four-letter-word detection, and a small blocking client
//! for tests and the load generator.
//!
//! The codec works on byte slices and owns no runtime, so the server, loadgen
//! and tests share it. Decoding untrusted bytes never panics, and every length
//! or count is checked against the bytes the frame still holds before anything
//! is allocated for it, so memory stays proportional to the frame.

pub mod client;
pub mod consts;
pub mod frame;
pub mod jute;
pub mod message;
pub mod records;
#[cfg(feature = "tls")]
pub mod tls;

pub use consts::{
    AddWatchMode, CreateMode, ErrorCode, EventType, KeeperState, OpCode, WatcherType,
};
pub use jute::{DecodeError, Jute};
pub use message::{decode_reply, decode_request, encode_reply, MultiResult, Request, Response};
pub use records::*;
