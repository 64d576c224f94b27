//! Transactions: a write fully decided by validation. Applying one is a pure
//! function of (tree, txn): time, session id and sequence numbers are inside.

use zoocore_net::Acl;

/// One ordered, logged state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub zxid: i64,
    /// Wall-clock milliseconds decided by the sequencer; becomes ctime/mtime.
    pub time: i64,
    pub session_id: i64,
    pub cxid: i32,
    pub op: TxnOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    CreateSession {
        timeout: i32,
    },
    /// Deletes the listed ephemerals (and any the session still owns).
    CloseSession {
        ephemerals: Vec<String>,
    },
    Create(CreateTxn),
    Delete {
        path: String,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    /// A version check that passed (inside multi); changes nothing.
    Check {
        path: String,
    },
    /// A multi whose every op passed; applied in order, all or nothing.
    Multi(Vec<TxnOp>),
    /// A write that failed validation: it still takes a zxid, as in ZooKeeper.
    Error(i32),
    /// A multi that failed: per-op codes (0 before the failing op, its code,
    /// RuntimeInconsistency after). Nothing is applied.
    MultiError(Vec<i32>),
}

/// The kinds ZooKeeper logs as CreateTxn, CreateContainerTxn and CreateTTLTxn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateKind {
    /// Ephemeral nodes are owned by the txn's session.
    Plain {
        ephemeral: bool,
    },
    Container,
    Ttl(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTxn {
    /// Final path, sequence suffix included.
    pub path: String,
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub kind: CreateKind,
    /// The parent's stored cversion after this create.
    pub parent_cversion: i32,
}

impl TxnOp {
    /// Whether applying this op changes the tree or the session table.
    pub fn is_mutation(&self) -> bool {
        !matches!(
            self,
            TxnOp::Error(_) | TxnOp::MultiError(_) | TxnOp::Check { .. }
        )
    }
}
