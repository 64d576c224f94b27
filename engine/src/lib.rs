//! ZooKeeper's state machine without I/O.
//!
//! - [`tree::DataTree`]: znodes, Stat, ephemeral/container/TTL indexes, sessions.
//! - [`prep::prepare`]: a write request becomes a [`txn::TxnOp`] or an error,
//!   with ZooKeeper's checks in ZooKeeper's order.
//! - [`tree::DataTree::apply`]: a pure function of (tree, txn).
//! - [`read::read`]: reads served from any replica; [`read::write_reply`]
//!   shapes write replies from what apply did.
//! - [`watch::WatchTable`]: which watchers an applied txn fires.
//! - [`acl`], [`session`], [`path`], [`ephemeral`]: the rules behind them.

pub mod acl;
pub mod ephemeral;
pub mod path;
mod path_key;
pub mod prep;
pub mod read;
pub mod session;
pub mod snapshot;
pub mod tree;
pub mod txn;
pub mod watch;

pub use acl::Identity;
pub use prep::{prepare, PrepContext};
pub use read::{read, write_reply};
pub use tree::{Applied, DataTree};
pub use txn::{Txn, TxnOp};
pub use watch::{handle_watch_request, watch_for, WatchTable};
pub mod log;
pub mod zk_import;
