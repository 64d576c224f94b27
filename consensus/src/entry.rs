//! A raft entry is one sealed commit batch: its data is the batch's log
//! records (`len | crc32c | term | txn`, as `engine::log` writes them),
//! so the raft log and zoocore's log are one log. An entry without data is
//! the no-op a new leader appends to commit its predecessors' entries.

use zoocore_engine::log;
use zoocore_engine::txn::Txn;

/// What a raft entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// The empty entry raft appends when a leader takes office.
    LeaderNoop,
    /// A commit batch: one or more txns with consecutive zxids.
    Batch,
    /// A change of membership (raft's conf-change entries).
    ConfChange,
}

impl EntryKind {
    pub fn of(entry: &raft::eraftpb::Entry) -> EntryKind {
        match entry.get_entry_type() {
            raft::eraftpb::EntryType::EntryNormal if entry.data.is_empty() => EntryKind::LeaderNoop,
            raft::eraftpb::EntryType::EntryNormal => EntryKind::Batch,
            _ => EntryKind::ConfChange,
        }
    }
}

/// Raft's entry type as a byte, for the log.
pub fn type_byte(entry: &raft::eraftpb::Entry) -> u8 {
    match entry.get_entry_type() {
        raft::eraftpb::EntryType::EntryNormal => 0,
        raft::eraftpb::EntryType::EntryConfChange => 1,
        raft::eraftpb::EntryType::EntryConfChangeV2 => 2,
    }
}

/// A raft entry from what the log holds; `None` for an unknown type byte.
pub fn from_log(
    index: u64,
    term: u64,
    type_byte: u8,
    data: Vec<u8>,
) -> Option<raft::eraftpb::Entry> {
    let entry_type = match type_byte {
        0 => raft::eraftpb::EntryType::EntryNormal,
        1 => raft::eraftpb::EntryType::EntryConfChange,
        2 => raft::eraftpb::EntryType::EntryConfChangeV2,
        _ => return None,
    };
    Some(raft::eraftpb::Entry {
        entry_type,
        term,
        index,
        data: data.into(),
        ..Default::default()
    })
}

/// Why an entry's data is not a valid batch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("batch entry {index}: record at byte {at} is damaged")]
    Damaged { index: u64, at: usize },
    #[error("batch entry {index}: zxid {zxid:#x} does not follow {previous:#x}")]
    ZxidGap {
        index: u64,
        zxid: i64,
        previous: i64,
    },
    #[error("batch entry {index} holds no txn")]
    Empty { index: u64 },
    #[error(
        "entry {index} is a membership change of raft's first format, which zoocore never writes"
    )]
    ConfChangeV1 { index: u64 },
}

/// Appends a txn's record to a batch being built (records only; the log
/// writer adds the batch header and padding).
pub fn append_txn(records: &mut Vec<u8>, term: u64, txn: &Txn) {
    log::append_record(records, term, txn);
}

/// The txns of a batch entry, checked: every record whole, zxids consecutive.
pub fn decode_batch(index: u64, data: &[u8]) -> Result<Vec<Txn>, EntryError> {
    if data.is_empty() {
        return Err(EntryError::Empty { index });
    }
    let mut image = Vec::with_capacity(data.len() + log::BLOCK);
    log::begin_batch(&mut image);
    image.extend_from_slice(data);
    log::seal_batch(&mut image);
    let scan = log::scan(&image);
    if let Some(at) = scan.torn_at {
        return Err(EntryError::Damaged { index, at });
    }
    let txns: Vec<Txn> = scan.txns.into_iter().map(|(_, txn)| txn).collect();
    let Some(first) = txns.first() else {
        return Err(EntryError::Empty { index });
    };
    let mut previous = first.zxid - 1;
    for txn in &txns {
        if txn.zxid != previous + 1 {
            return Err(EntryError::ZxidGap {
                index,
                zxid: txn.zxid,
                previous,
            });
        }
        previous = txn.zxid;
    }
    Ok(txns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zoocore_engine::txn::TxnOp;

    fn txn(zxid: i64) -> Txn {
        Txn {
            zxid,
            time: 7,
            session_id: 1,
            cxid: zxid as i32,
            op: TxnOp::SetData {
                path: "/a".into(),
                data: Some(vec![1, 2, 3]),
                version: -1,
            },
        }
    }

    #[test]
    fn entries_survive_the_log_s_byte_form() {
        for t in 0..3 {
            let e = from_log(7, 3, t, vec![1, 2]).expect("known type");
            assert_eq!(
                (e.index, e.term, type_byte(&e), &e.data[..]),
                (7, 3, t, &[1u8, 2][..])
            );
        }
        assert!(from_log(7, 3, 9, Vec::new()).is_none());
    }

    #[test]
    fn a_batch_decodes_to_its_txns_and_damage_is_refused() {
        let mut records = Vec::new();
        for z in 5..8 {
            append_txn(&mut records, 2, &txn(z));
        }
        let decoded = decode_batch(1, &records).expect("valid");
        assert_eq!(decoded, vec![txn(5), txn(6), txn(7)]);
        let mut flipped = records.clone();
        flipped[20] ^= 1;
        assert!(matches!(
            decode_batch(1, &flipped),
            Err(EntryError::Damaged { .. })
        ));
        assert_eq!(decode_batch(3, &[]), Err(EntryError::Empty { index: 3 }));
        let mut gap = Vec::new();
        append_txn(&mut gap, 2, &txn(5));
        append_txn(&mut gap, 2, &txn(7));
        assert!(matches!(
            decode_batch(1, &gap),
            Err(EntryError::ZxidGap { zxid: 7, .. })
        ));
    }
}
