//! The transaction log's format, without I/O: how a [`Txn`] becomes bytes,
//! how txns are framed into records, and how a log image is scanned back.
//!
//! A record is `len: u32 | crc32c(payload): u32 | payload`, payload =
//! `term: u64 | txn`. A commit batch is a header `magic: u32 | len: u32 |
//! crc32c(records): u32 | kind: u32`, then its records. Batches follow one
//! another byte for byte; zeros where a batch would start end the log (the
//! log writer keeps everything after the last batch zero). Scanning stops at
//! the first batch whose header or checksum is wrong: a torn tail, unless a
//! valid batch starts somewhere after it, which makes it corruption in the
//! middle (the server then refuses to start rather than drop data). Batches
//! are written one after another, each only once the one before is durable,
//! so a torn batch never has a valid one after it.
//!
//! O_DIRECT writes whole [`BLOCK`]s, so the writer rewrites the block that
//! holds the end of the last batch together with the next one. The bytes it
//! rewrites are the same as on disk: a write torn at any sector leaves each
//! sector old or new, and either way the durable batches read the same.
//!
//! An ensemble member's log holds raft entries instead (batch kind 1): each
//! record's payload is `index: u64 | term: u64 | entry kind: u8 | data`, the
//! data of a commit batch being its txn records. Entries are only appended:
//! one whose index is at or below an earlier one's replaces that entry and
//! everything after it (raft cutting a conflicting suffix), so truncating
//! never rewrites the file. [`scan_entries`] reads such a log back.

use zoocore_net::jute::{Jute, Reader, WriteJute};
use zoocore_net::{Acl, DecodeError};

use crate::txn::{CreateKind, CreateTxn, Txn, TxnOp};

/// The unit of the log's O_DIRECT writes.
pub const BLOCK: usize = 4096;
const HEADER: usize = 8;
const BATCH_HEADER: usize = 16;
const BATCH_MAGIC: u32 = 0x5a43_4231; // "ZCB1"
/// Batch kinds (the header's last word): txn records, or raft entries.
const KIND_TXNS: u32 = 0;
const KIND_ENTRIES: u32 = 1;
/// An entry record's payload before its data: index, term, kind.
const ENTRY_HEAD: usize = 17;
/// Largest record payload accepted when scanning; a longer length is corruption.
pub const MAX_RECORD: usize = 64 << 20;

fn put_op(out: &mut Vec<u8>, op: &TxnOp) {
    match op {
        TxnOp::CreateSession { timeout } => {
            out.put_i32(1);
            out.put_i32(*timeout);
        }
        TxnOp::CloseSession { ephemerals } => {
            out.put_i32(2);
            out.put_vec(ephemerals);
        }
        TxnOp::Create(c) => {
            out.put_i32(3);
            out.put_string(&c.path);
            out.put_buffer(c.data.as_deref());
            out.put_vec(&c.acl);
            let (kind, value) = match c.kind {
                CreateKind::Plain { ephemeral } => (0, i64::from(ephemeral)),
                CreateKind::Container => (1, 0),
                CreateKind::Ttl(ttl) => (2, ttl),
            };
            out.put_i32(kind);
            out.put_i64(value);
            out.put_i32(c.parent_cversion);
        }
        TxnOp::Delete { path } => {
            out.put_i32(4);
            out.put_string(path);
        }
        TxnOp::SetData {
            path,
            data,
            version,
        } => {
            out.put_i32(5);
            out.put_string(path);
            out.put_buffer(data.as_deref());
            out.put_i32(*version);
        }
        TxnOp::SetAcl { path, acl, version } => {
            out.put_i32(6);
            out.put_string(path);
            out.put_vec(acl);
            out.put_i32(*version);
        }
        TxnOp::Check { path } => {
            out.put_i32(7);
            out.put_string(path);
        }
        TxnOp::Multi(ops) => {
            out.put_i32(8);
            out.put_i32(ops.len() as i32);
            for op in ops {
                put_op(out, op);
            }
        }
        TxnOp::Error(code) => {
            out.put_i32(9);
            out.put_i32(*code);
        }
        TxnOp::MultiError(codes) => {
            out.put_i32(10);
            out.put_vec(codes);
        }
    }
}

fn bad(what: &'static str, value: i64) -> DecodeError {
    DecodeError::BadValue { what, value }
}

fn read_op(r: &mut Reader<'_>, depth: u8) -> Result<TxnOp, DecodeError> {
    let tag = r.i32()?;
    Ok(match tag {
        1 => TxnOp::CreateSession { timeout: r.i32()? },
        2 => TxnOp::CloseSession {
            ephemerals: r.vec()?,
        },
        3 => {
            let path = r.string()?;
            let data = Option::<Vec<u8>>::read(r)?;
            let acl: Vec<Acl> = r.vec()?;
            let kind = match (r.i32()?, r.i64()?) {
                (0, e) => CreateKind::Plain { ephemeral: e != 0 },
                (1, _) => CreateKind::Container,
                (2, ttl) => CreateKind::Ttl(ttl),
                (k, _) => return Err(bad("create kind", k.into())),
            };
            TxnOp::Create(CreateTxn {
                path,
                data,
                acl,
                kind,
                parent_cversion: r.i32()?,
            })
        }
        4 => TxnOp::Delete { path: r.string()? },
        5 => TxnOp::SetData {
            path: r.string()?,
            data: Option::<Vec<u8>>::read(r)?,
            version: r.i32()?,
        },
        6 => TxnOp::SetAcl {
            path: r.string()?,
            acl: r.vec()?,
            version: r.i32()?,
        },
        7 => TxnOp::Check { path: r.string()? },
        8 if depth == 0 => {
            let n = r.i32()?;
            let n = usize::try_from(n).map_err(|_| bad("multi length", n.into()))?;
            if n > r.remaining() / 4 {
                return Err(bad("multi length", n as i64));
            }
            let mut ops = Vec::with_capacity(n);
            for _ in 0..n {
                ops.push(read_op(r, depth + 1)?);
            }
            TxnOp::Multi(ops)
        }
        9 => TxnOp::Error(r.i32()?),
        10 => TxnOp::MultiError(r.vec()?),
        other => return Err(bad("txn op", other.into())),
    })
}

impl Txn {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.put_i64(self.zxid);
        out.put_i64(self.time);
        out.put_i64(self.session_id);
        out.put_i32(self.cxid);
        put_op(out, &self.op);
    }

    pub fn decode(bytes: &[u8]) -> Result<Txn, DecodeError> {
        let mut r = Reader::new(bytes);
        let txn = Txn {
            zxid: r.i64()?,
            time: r.i64()?,
            session_id: r.i64()?,
            cxid: r.i32()?,
            op: read_op(&mut r, 0)?,
        };
        r.finish()?;
        Ok(txn)
    }
}

/// Appends one record (not padded).
pub fn append_record(out: &mut Vec<u8>, term: u64, txn: &Txn) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&term.to_be_bytes());
    txn.write(out);
    let payload = &out[start + HEADER..];
    let len = u32::try_from(payload.len()).expect("record over 4 GiB");
    let crc = crc32c::crc32c(payload);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Starts a batch in an empty buffer: room for its header.
pub fn begin_batch(out: &mut Vec<u8>) {
    assert!(out.is_empty(), "a batch starts its own buffer");
    out.extend_from_slice(&[0; BATCH_HEADER]);
}

/// Completes a batch begun with [`begin_batch`]: fills in its header.
pub fn seal_batch(out: &mut [u8]) {
    seal(out, KIND_TXNS);
}

/// Completes a batch of raft entries begun with [`begin_batch`].
pub fn seal_entries_batch(out: &mut [u8]) {
    seal(out, KIND_ENTRIES);
}

fn seal(out: &mut [u8], kind: u32) {
    assert!(out.len() >= BATCH_HEADER, "a batch was begun");
    let len = u32::try_from(out.len() - BATCH_HEADER).expect("batch over 4 GiB");
    let crc = crc32c::crc32c(&out[BATCH_HEADER..]);
    out[..4].copy_from_slice(&BATCH_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&len.to_be_bytes());
    out[8..12].copy_from_slice(&crc.to_be_bytes());
    out[12..16].copy_from_slice(&kind.to_be_bytes());
}

/// One raft entry as an ensemble member's log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEntry {
    pub index: u64,
    pub term: u64,
    /// Raft's entry type (normal, conf change, ...).
    pub kind: u8,
    pub data: Vec<u8>,
}

/// Appends one entry record to a batch begun with [`begin_batch`].
pub fn append_entry(out: &mut Vec<u8>, index: u64, term: u64, kind: u8, data: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&term.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(data);
    let payload = &out[start + HEADER..];
    let len = u32::try_from(payload.len()).expect("entry over 4 GiB");
    let crc = crc32c::crc32c(payload);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// What scanning a log image found.
#[derive(Debug, Default)]
pub struct Scan {
    pub txns: Vec<(u64, Txn)>,
    /// For each txn, where its batch starts: a place scanning can resume from.
    pub batch_starts: Vec<usize>,
    /// Bytes up to the end of the last valid batch: where appending resumes.
    /// Anything after it is a torn or empty tail.
    pub valid_len: usize,
    /// Set when scanning stopped at damage rather than at a clean end.
    pub torn_at: Option<usize>,
    /// A valid record found after the damage: the damage is not a torn tail
    /// but corruption in the middle, and cutting there would lose data.
    pub valid_after_damage: Option<usize>,
}

/// The payload of the record at `pos` and where the next one starts, if a
/// whole valid record starts there.
fn read_payload(image: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let header = image.get(pos..pos + HEADER)?;
    let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
    if !(8..=MAX_RECORD).contains(&len) {
        return None;
    }
    let payload = image.get(pos + HEADER..pos + HEADER + len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    Some((payload, pos + HEADER + len))
}

/// The txn record at `pos`, if a whole valid one starts there.
fn read_record(image: &[u8], pos: usize) -> Option<((u64, Txn), usize)> {
    let (payload, next) = read_payload(image, pos)?;
    let term = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
    let txn = Txn::decode(&payload[8..]).ok()?;
    Some(((term, txn), next))
}

/// The entry record at `pos`, if a whole valid one starts there.
fn read_entry(image: &[u8], pos: usize) -> Option<(LoggedEntry, usize)> {
    let (payload, next) = read_payload(image, pos)?;
    let head = payload.get(..ENTRY_HEAD)?;
    let entry = LoggedEntry {
        index: u64::from_be_bytes(head[..8].try_into().expect("8 bytes")),
        term: u64::from_be_bytes(head[8..16].try_into().expect("8 bytes")),
        kind: head[16],
        data: payload[ENTRY_HEAD..].to_vec(),
    };
    Some((entry, next))
}

/// Reads the record at a position of a batch's records: the item and where
/// the next record starts.
type ReadRecord<T> = fn(&[u8], usize) -> Option<(T, usize)>;

/// The records of the batch of `kind` at `pos` if a whole valid one starts
/// there, and where the next batch would start.
fn read_batch_of<T>(
    image: &[u8],
    pos: usize,
    kind: u32,
    read: ReadRecord<T>,
) -> Option<(Vec<T>, usize)> {
    let header = image.get(pos..pos + BATCH_HEADER)?;
    let word = |i: usize| u32::from_be_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    let len = word(4) as usize;
    if word(0) != BATCH_MAGIC || word(12) != kind || len == 0 {
        return None;
    }
    let start = pos + BATCH_HEADER;
    let records = image.get(start..start.checked_add(len)?)?;
    if crc32c::crc32c(records) != word(8) {
        return None;
    }
    let mut items = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let (item, next) = read(records, at)?;
        items.push(item);
        at = next;
    }
    Some((items, start + len))
}

/// The first place after `damage` where a valid batch of `kind` starts: any
/// byte may begin one, so every place holding the header's magic is tried.
fn valid_batch_after<T>(
    image: &[u8],
    damage: usize,
    kind: u32,
    read: ReadRecord<T>,
) -> Option<usize> {
    let magic = BATCH_MAGIC.to_be_bytes();
    (damage + 1..image.len().saturating_sub(BATCH_HEADER - 1))
        .filter(|&at| image[at..at + 4] == magic)
        .find(|&at| read_batch_of(image, at, kind, read).is_some())
}

fn read_batch(image: &[u8], pos: usize) -> Option<(Vec<(u64, Txn)>, usize)> {
    read_batch_of(image, pos, KIND_TXNS, read_record)
}

/// What scanning an ensemble member's log image found: its entries, each
/// later one replacing what it overlaps, and where the valid part ends.
#[derive(Debug, Default)]
pub struct EntryScan {
    pub entries: Vec<LoggedEntry>,
    /// As [`Scan::valid_len`].
    pub valid_len: usize,
    pub torn_at: Option<usize>,
    pub valid_after_damage: Option<usize>,
}

/// Scans an image of raft-entry batches from its start; `entries` continues
/// `before` (the entries of earlier segments).
pub fn scan_entries(image: &[u8], before: Vec<LoggedEntry>) -> EntryScan {
    let mut scan = EntryScan {
        entries: before,
        ..EntryScan::default()
    };
    let mut pos = 0;
    while pos + BATCH_HEADER <= image.len() {
        if image[pos..pos + BATCH_HEADER].iter().all(|&b| b == 0) {
            break;
        }
        let Some((entries, next)) = read_batch_of(image, pos, KIND_ENTRIES, read_entry) else {
            scan.torn_at = Some(pos);
            scan.valid_after_damage = valid_batch_after(image, pos, KIND_ENTRIES, read_entry);
            break;
        };
        for entry in entries {
            // An entry at or below the last replaces it and all after it.
            let keep = scan.entries.partition_point(|e| e.index < entry.index);
            scan.entries.truncate(keep);
            scan.entries.push(entry);
        }
        pos = next;
        scan.valid_len = pos;
    }
    scan
}

/// Scans a log image from its start, batch by batch.
pub fn scan(image: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut pos = 0;
    while pos + BATCH_HEADER <= image.len() {
        if image[pos..pos + BATCH_HEADER].iter().all(|&b| b == 0) {
            break; // where the next batch would start: the end of the log
        }
        let Some((txns, next)) = read_batch(image, pos) else {
            scan.torn_at = Some(pos);
            scan.valid_after_damage = valid_batch_after(image, pos, KIND_TXNS, read_record);
            break;
        };
        scan.batch_starts
            .extend(std::iter::repeat_n(pos, txns.len()));
        scan.txns.extend(txns);
        pos = next;
        scan.valid_len = pos;
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;
    use zoocore_net::consts::perms;

    fn txns() -> Vec<Txn> {
        let ops = vec![
            TxnOp::CreateSession { timeout: 30_000 },
            TxnOp::Create(CreateTxn {
                path: "/a".into(),
                data: Some(b"x".to_vec()),
                acl: vec![Acl::new(perms::ALL, "world", "anyone")],
                kind: CreateKind::Ttl(5000),
                parent_cversion: 1,
            }),
            TxnOp::SetData {
                path: "/a".into(),
                data: None,
                version: 1,
            },
            TxnOp::Multi(vec![
                TxnOp::Check { path: "/a".into() },
                TxnOp::Delete { path: "/a".into() },
            ]),
            TxnOp::MultiError(vec![0, -101, -2]),
            TxnOp::Error(-110),
            TxnOp::CloseSession {
                ephemerals: vec!["/e".into()],
            },
        ];
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| Txn {
                zxid: i as i64 + 1,
                time: 1000 + i as i64,
                session_id: 42,
                cxid: i as i32,
                op,
            })
            .collect()
    }

    fn batch(txns: &[Txn]) -> Vec<u8> {
        let mut out = Vec::new();
        begin_batch(&mut out);
        for txn in txns {
            append_record(&mut out, 1, txn);
        }
        seal_batch(&mut out);
        out
    }

    fn image(batches: &[&[Txn]]) -> Vec<u8> {
        batches.iter().flat_map(|b| batch(b)).collect()
    }

    #[test]
    fn records_round_trip_through_batches_packed_one_after_another() {
        let all = txns();
        let mut log = image(&[&all[..3], &all[3..]]);
        let second = batch(&all[..3]).len();
        let end = log.len();
        log.resize(BLOCK * 2, 0); // the zeros after the last batch
        let scan = scan(&log);
        assert_eq!(scan.torn_at, None);
        assert_eq!(scan.valid_len, end);
        assert_eq!(scan.batch_starts, [0, 0, 0, second, second, second, second]);
        assert_eq!(
            scan.txns.into_iter().map(|(_, t)| t).collect::<Vec<_>>(),
            all
        );
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_last_valid_batch() {
        let all = txns();
        let mut log = image(&[&all[..3], &all[3..]]);
        let second = batch(&all[..3]).len();
        // Tear the second batch: flip a byte inside its first record.
        log[second + 12] ^= 0xff;
        let scan = scan(&log);
        assert_eq!(scan.torn_at, Some(second));
        assert_eq!(scan.txns.len(), 3);
        // Tearing the second record of a batch drops the whole batch.
        let mut log = image(&[&all[..3], &all[3..]]);
        let mut first = Vec::new();
        append_record(&mut first, 1, &all[3]);
        log[second + BATCH_HEADER + first.len() + 12] ^= 0xff;
        let again = super::scan(&log);
        assert_eq!((again.txns.len(), again.valid_len), (3, second));
        assert_eq!(scan.valid_len, second);
    }

    #[test]
    fn damage_followed_by_valid_batches_is_corruption_not_a_torn_tail() {
        let all = txns();
        let mut log = image(&[&all[..2], &all[2..4], &all[4..]]);
        let second = batch(&all[..2]).len();
        let third = second + batch(&all[2..4]).len();
        log[second + 12] ^= 0xff; // inside the second batch
        let scan = scan(&log);
        assert_eq!(scan.torn_at, Some(second));
        assert_eq!(scan.valid_after_damage, Some(third));
        let mut tail = image(&[&all[..2], &all[2..4]]);
        tail[second + 12] ^= 0xff; // the last batch: a torn tail
        assert_eq!(super::scan(&tail).valid_after_damage, None);
    }

    /// The write of a batch covers the block where the last one ends: any
    /// sector of it may keep its old bytes (zeros, or the same bytes of the
    /// durable batches) and the result is the durable batches, cut cleanly.
    #[test]
    fn a_torn_batch_write_is_a_torn_tail_whatever_sectors_landed() {
        const SECTOR: usize = 512;
        let sized = |zxid: i64, data: usize| Txn {
            zxid,
            time: 0,
            session_id: 1,
            cxid: 0,
            op: TxnOp::SetData {
                path: "/a".into(),
                data: Some(vec![7; data]),
                version: 1,
            },
        };
        let first = batch(&[sized(1, 10)]);
        let second = batch(&[sized(2, BLOCK), sized(3, BLOCK), sized(4, 100)]);
        let mut old = first.clone();
        let mut new = [first.clone(), second].concat();
        let blocks = new.len().div_ceil(BLOCK) * BLOCK;
        old.resize(blocks, 0);
        new.resize(blocks, 0);
        for lost in 0..blocks / SECTOR {
            let at = lost * SECTOR;
            if old[at..at + SECTOR] == new[at..at + SECTOR] {
                continue; // losing it changes nothing
            }
            let mut log = new.clone();
            log[at..at + SECTOR].copy_from_slice(&old[at..at + SECTOR]);
            let scan = scan(&log);
            assert_eq!(scan.txns.len(), 1, "lost sector {lost}");
            assert_eq!(scan.valid_after_damage, None, "lost sector {lost}");
            assert_eq!(scan.valid_len, first.len(), "lost sector {lost}");
        }
    }

    #[test]
    fn a_truncated_record_is_a_torn_tail() {
        let all = txns();
        let log = image(&[&all]);
        let cut = &log[..20];
        let scan = scan(cut);
        assert_eq!(scan.torn_at, Some(0));
        assert!(scan.txns.is_empty());
        assert_eq!(scan.valid_len, 0);
    }

    fn entries_batch(entries: &[(u64, u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        begin_batch(&mut out);
        for (index, term, data) in entries {
            append_entry(&mut out, *index, *term, 0, data);
        }
        seal_entries_batch(&mut out);
        out
    }

    #[test]
    fn entries_round_trip_and_a_later_entry_replaces_the_suffix_it_overlaps() {
        let log = [
            entries_batch(&[(1, 1, b"a"), (2, 1, b"b"), (3, 1, b"c")]),
            entries_batch(&[(2, 2, b"B"), (3, 2, b"")]),
            entries_batch(&[(4, 2, b"d")]),
        ]
        .concat();
        let read = scan_entries(&log, Vec::new());
        assert_eq!((read.torn_at, read.valid_len), (None, log.len()));
        let got: Vec<(u64, u64, Vec<u8>)> = read
            .entries
            .iter()
            .map(|e| (e.index, e.term, e.data.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (1, 1, b"a".to_vec()),
                (2, 2, b"B".to_vec()),
                (3, 2, vec![]),
                (4, 2, b"d".to_vec())
            ]
        );
        // A torn entry batch is cut like a torn txn batch; kinds do not mix.
        let third = log.len() - entries_batch(&[(4, 2, b"d")]).len();
        let mut torn = log.clone();
        torn[third + 30] ^= 1;
        let cut = scan_entries(&torn, Vec::new());
        assert_eq!((cut.torn_at, cut.entries.len()), (Some(third), 3));
        assert_eq!(
            scan(&log).torn_at,
            Some(0),
            "entry batches are not txn batches"
        );
        let txn_log = image(&[&txns()]);
        assert_eq!(scan_entries(&txn_log, Vec::new()).torn_at, Some(0));
    }

    #[test]
    fn an_empty_or_zeroed_log_is_clean() {
        assert_eq!(scan(&[]).txns.len(), 0);
        let zeros = vec![0u8; BLOCK * 2];
        let s = scan(&zeros);
        assert_eq!((s.txns.len(), s.valid_len, s.torn_at), (0, 0, None));
    }
}
