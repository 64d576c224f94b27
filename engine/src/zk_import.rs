//! Import of an Apache ZooKeeper 3.5–3.9 data dir (`<dataDir>/version-2`)
//! into a [`DataTree`], so an operator can migrate with data. Pure: the
//! caller lists the files and hands over their bytes ([`ZkSource`]); nothing
//! here touches a disk.
//!
//! What ZooKeeper writes there (jute encoding, every integer big-endian):
//!
//! - `snapshot.<hex zxid>`: `FileHeader("ZKSN", 2, dbid)`; the sessions
//!   (count, then `id: long, timeout: int` each); the ACL table (count, then
//!   `id: long, vector<ACL>` each; id -1, never in the table, means
//!   OPEN_ACL_UNSAFE); the nodes in pre-order, parents first, each as
//!   `path, data: buffer, acl id: long, StatPersisted`, the root named `""`,
//!   ended by the path `"/"`; then a seal: the Adler32 of every byte before
//!   it (long) and the string `"/"`. 3.6+ appends the zxid digest
//!   (`zxid: long, version: int, digest: long`) and a second seal over
//!   everything before it; 3.9 appends the last processed zxid (long) and a
//!   third. The name's zxid is where the snapshot *began*: it is fuzzy, and
//!   may already hold changes up to the zxid of its digest. `.gz`/`.snappy`
//!   suffixes mark compressed snapshots, which are refused.
//! - `log.<hex zxid of its first txn>`: `FileHeader("ZKLG", 2, dbid)`, then
//!   records `checksum: long, len: int, entry: len bytes, 'B'`, where the
//!   checksum is the Adler32 of the entry alone and the entry is
//!   `TxnHeader` + the txn body [+ `TxnDigest`, 3.6+]. The file is
//!   zero-filled ahead of the last record (preallocation): a zero length
//!   ends it. A record cut by a crash (short, no `'B'`, or a bad checksum
//!   with nothing valid after it) ends the file too, as it does for
//!   ZooKeeper, which starts a new log file when it restarts.
//!
//! The tree is the newest snapshot whose seals check (older ones are tried
//! when one does not), then every logged txn after its zxid, in zxid order
//! across the log files, replayed with [`DataTree::apply_over_fuzzy`] as
//! ZooKeeper replays its own. A zxid missing from the logs is an error, and
//! so is a damaged record followed by valid ones. When ZooKeeper logged a
//! tree digest (3.6+), the imported tree's digest is compared with it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use zoocore_net::consts::{perms, ErrorCode, OpCode};
use zoocore_net::jute::{DecodeError, Jute, Reader};
use zoocore_net::Acl;

use crate::acl::open_acl_unsafe;
use crate::ephemeral::{kind_of, ttl_owner, EphemeralKind};
use crate::path;
use crate::tree::{DataTree, StatPersisted};
use crate::txn::{CreateKind, CreateTxn, Txn, TxnOp};

const SNAP_MAGIC: i32 = i32::from_be_bytes(*b"ZKSN");
const LOG_MAGIC: i32 = i32::from_be_bytes(*b"ZKLG");
const FILE_FORMAT_VERSION: i32 = 2;
/// The digest algorithm [`tree_digest`] implements (ZooKeeper's `DigestCalculator`).
pub const DIGEST_VERSION: i32 = 2;
/// ACL id of OPEN_ACL_UNSAFE in ZooKeeper's ACL table; never stored in it.
const OPEN_ACL_ID: i64 = -1;
const END_OF_RECORD: u8 = b'B';
/// `TxnDigest`: version (int) and tree digest (long).
const TXN_DIGEST_LEN: usize = 12;
/// `TxnHeader`: clientId, cxid, zxid, time, type.
const TXN_HEADER_LEN: usize = 8 + 4 + 8 + 8 + 4;
/// checksum (long) and length (int) before a log entry.
const RECORD_PREFIX: usize = 12;
/// A 3.9 "last processed zxid" section: the zxid and a seal (long, string "/").
const LAST_ZXID_SECTION: usize = 8 + 8 + 5;

/// Where the files of a `version-2` dir come from.
pub trait ZkSource {
    /// The names of the files in the dir (others than snapshots and logs are ignored).
    fn names(&self) -> Vec<String>;
    /// One file's bytes. Called only for files the import needs, one at a
    /// time, so a dir with many snapshots or logs need not fit in memory.
    fn read(&mut self, name: &str) -> Result<Cow<'_, [u8]>, String>;
}

/// Files already in memory, by name.
#[derive(Debug, Clone, Default)]
pub struct ZkFiles<'a> {
    pub files: Vec<(String, &'a [u8])>,
}

impl ZkSource for ZkFiles<'_> {
    fn names(&self) -> Vec<String> {
        self.files.iter().map(|(name, _)| name.clone()).collect()
    }

    fn read(&mut self, name: &str) -> Result<Cow<'_, [u8]>, String> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, bytes)| Cow::Borrowed(*bytes))
            .ok_or_else(|| "no such file".to_owned())
    }
}

/// Whether the imported tree is the one ZooKeeper had, by its own digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestCheck {
    /// ZooKeeper's tree digest at `zxid` equals the imported tree's.
    Matched { zxid: i64 },
    /// They differ: the import does not reproduce ZooKeeper's tree.
    Mismatch {
        zxid: i64,
        expected: i64,
        actual: i64,
    },
    /// Nothing to compare with: ZooKeeper 3.5, digests disabled, or the last
    /// state was only in a fuzzy snapshot.
    Unavailable,
}

/// The result of [`import`].
pub struct Imported {
    pub tree: DataTree,
    /// The snapshot the tree started from; `None` if the dir had none.
    pub snapshot: Option<String>,
    pub snapshot_zxid: i64,
    /// Log records replayed on top of the snapshot.
    pub txns: usize,
    /// The files read (snapshots tried, then logs), in order.
    pub files_read: Vec<String>,
    pub digest: DigestCheck,
    /// Things an operator should know: snapshots skipped, torn log tails,
    /// ignored files, a digest mismatch. Each names its file.
    pub warnings: Vec<String>,
}

impl fmt::Debug for Imported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imported")
            .field("nodes", &self.tree.node_count())
            .field("sessions", &self.tree.sessions().len())
            .field("last_zxid", &self.tree.last_zxid())
            .field("snapshot", &self.snapshot)
            .field("snapshot_zxid", &self.snapshot_zxid)
            .field("txns", &self.txns)
            .field("files_read", &self.files_read)
            .field("digest", &self.digest)
            .field("warnings", &self.warnings)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZkImportError {
    #[error("no snapshot.* or log.* files: give ZooKeeper's dataDir or its version-2 dir")]
    NoFiles,
    #[error("{file}: cannot read: {detail}")]
    Read { file: String, detail: String },
    #[error("{file} is {method}-compressed, which the import does not read: {advice}")]
    Compressed {
        file: String,
        method: &'static str,
        advice: &'static str,
    },
    #[error("no usable snapshot: {}", .0.join("; "))]
    NoValidSnapshot(Vec<String>),
    #[error("{file}: not a ZooKeeper transaction log: {detail}")]
    BadLogHeader { file: String, detail: String },
    #[error("{file} offset {offset}: {detail}; valid records follow, so this is not a torn tail")]
    Corrupt {
        file: String,
        offset: usize,
        detail: String,
    },
    #[error("{file} offset {offset}: txn {zxid:#x}: {detail}")]
    BadTxn {
        file: String,
        offset: usize,
        zxid: i64,
        detail: String,
    },
    #[error("zxid {missing:#x} is in no log file: after {after:#x} the next txn is {next:#x} ({file} offset {offset}){note}")]
    Gap {
        missing: i64,
        after: i64,
        next: i64,
        file: String,
        offset: usize,
        /// Why the file before ended early, when it did.
        note: String,
    },
}

/// Imports files already in memory; see [`import_from`].
pub fn import(files: &ZkFiles<'_>, extended_types: bool) -> Result<Imported, ZkImportError> {
    import_from(&mut files.clone(), extended_types)
}

/// Builds the tree ZooKeeper would load from these files. `extended_types`
/// is ZooKeeper's `zookeeper.extendedTypesEnabled` (TTL nodes).
pub fn import_from(
    source: &mut dyn ZkSource,
    extended_types: bool,
) -> Result<Imported, ZkImportError> {
    let mut warnings = Vec::new();
    let mut snapshots = Vec::new();
    let mut logs = Vec::new();
    for name in source.names() {
        match classify(&name) {
            FileKind::Snapshot(zxid, compression) => snapshots.push((zxid, name, compression)),
            FileKind::Log(zxid) => logs.push((zxid, name)),
            FileKind::Odd => warnings.push(format!("{name}: not a snapshot or log name, ignored")),
            FileKind::Other => {}
        }
    }
    if snapshots.is_empty() && logs.is_empty() {
        return Err(ZkImportError::NoFiles);
    }
    // Newest first; ZooKeeper tries up to 100 of them.
    snapshots.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    logs.sort();

    let mut files_read = Vec::new();
    let mut loaded = None;
    let mut failures = Vec::new();
    for (zxid, name, compression) in &snapshots {
        if let Some(method) = compression {
            return Err(compressed(name, method));
        }
        files_read.push(name.clone());
        let bytes = source.read(name).map_err(|detail| ZkImportError::Read {
            file: name.clone(),
            detail,
        })?;
        match read_snapshot(&bytes, *zxid, extended_types) {
            Ok(snapshot) => {
                loaded = Some((name.clone(), *zxid, snapshot));
                break;
            }
            Err(why) => {
                warnings.push(format!("{name}: unusable, trying an older snapshot: {why}"));
                failures.push(format!("{name}: {why}"));
            }
        }
    }
    let (snapshot_name, snapshot_zxid, mut tree, fuzzy_until, snapshot_digest) = match loaded {
        Some((name, zxid, snapshot)) => {
            warnings.extend(snapshot.warnings);
            (
                Some(name),
                zxid,
                snapshot.tree,
                snapshot.fuzzy_until,
                snapshot.digest,
            )
        }
        None if !snapshots.is_empty() => return Err(ZkImportError::NoValidSnapshot(failures)),
        None => {
            warnings.push(
                "no snapshot: replaying the logs onto a new tree, from their first txn".into(),
            );
            (None, 0, DataTree::new(extended_types), 0, None)
        }
    };

    // The log holding the first txn after the snapshot is the last one named
    // at or before it; older files hold nothing needed and are not read.
    let first_needed = snapshot_zxid.saturating_add(1);
    let start = logs
        .iter()
        .rposition(|(zxid, _)| *zxid <= first_needed)
        .unwrap_or(0);
    let mut replay = Replay {
        last: snapshot_zxid,
        snapshot_zxid,
        applied: 0,
        // The snapshot's digest is of the tree at its zxid, once replay gets there.
        last_digest: snapshot_digest
            .filter(|d| d.zxid >= snapshot_zxid)
            .map(|d| (d.zxid, d.version, d.digest)),
        stale: 0,
        torn_note: String::new(),
        reconfig_seen: false,
        bad_ttl: 0,
    };
    for (_, name) in &logs[start..] {
        files_read.push(name.clone());
        let bytes = source.read(name).map_err(|detail| ZkImportError::Read {
            file: name.clone(),
            detail,
        })?;
        replay.file(name, &bytes, &mut tree, &mut warnings)?;
    }
    if replay.stale > 0 {
        warnings.push(format!(
            "{} logged txns came after a txn with a higher zxid and were skipped",
            replay.stale
        ));
    }
    if replay.bad_ttl > 0 {
        warnings.push(format!(
            "{} createTTL txns had a TTL out of range; ZooKeeper cannot apply them either, \
             so they were replayed as failed writes",
            replay.bad_ttl
        ));
    }
    if replay.reconfig_seen {
        warnings.push(
            "the logs hold reconfig txns; /zookeeper/config keeps the old ensemble's configuration"
                .into(),
        );
    }
    if fuzzy_until > replay.last {
        warnings.push(format!(
            "the logs end at {:#x}, before {fuzzy_until:#x} where the snapshot's fuzzy range \
             ends: changes in between may be only partly applied",
            replay.last
        ));
    }
    if tree.get("/zookeeper").is_some() && tree.get("/zookeeper/config").is_none() {
        add_config_node(&mut tree);
    }
    warnings.extend(tree_warnings(&tree, extended_types));

    let expected = replay
        .last_digest
        .filter(|(zxid, _, _)| *zxid <= replay.last)
        .map(|(zxid, version, value)| (zxid, (version, value)));
    let digest = match expected {
        Some((zxid, (DIGEST_VERSION, expected))) => {
            let actual = tree_digest(&tree);
            if actual == expected {
                DigestCheck::Matched { zxid }
            } else {
                warnings.push(format!(
                    "the imported tree's digest {actual:#x} differs from ZooKeeper's {expected:#x} \
                     at zxid {zxid:#x}: the import does not reproduce ZooKeeper's tree"
                ));
                DigestCheck::Mismatch {
                    zxid,
                    expected,
                    actual,
                }
            }
        }
        _ => DigestCheck::Unavailable,
    };
    // After the digest check: ZooKeeper's digests were taken before this.
    let orphans = tree.remove_orphan_ephemerals();
    if !orphans.is_empty() {
        let sessions: std::collections::BTreeSet<i64> = orphans.iter().map(|(s, _)| *s).collect();
        warnings.push(format!(
            "{} ephemerals of {} sessions that are no longer open were deleted, as ZooKeeper \
             deletes them when it starts",
            orphans.len(),
            sessions.len()
        ));
    }

    Ok(Imported {
        tree,
        snapshot: snapshot_name,
        snapshot_zxid,
        txns: replay.applied,
        files_read,
        digest,
        warnings,
    })
}

enum FileKind {
    Snapshot(i64, Option<&'static str>),
    Log(i64),
    /// Named like a snapshot or log but not one (e.g. `snapshot.1f.tmp`).
    Odd,
    Other,
}

/// ZooKeeper's naming: `<prefix>.<hex zxid>`, snapshots with an optional
/// compression suffix.
fn classify(name: &str) -> FileKind {
    let mut parts = name.split('.');
    let prefix = parts.next().unwrap_or_default();
    if prefix != "snapshot" && prefix != "log" {
        return FileKind::Other;
    }
    let zxid = parts.next().and_then(|hex| {
        let ok = !hex.is_empty() && hex.len() <= 16 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| u64::from_str_radix(hex, 16).ok())
            .flatten()
            .and_then(|z| i64::try_from(z).ok())
    });
    let suffix: Vec<&str> = parts.collect();
    match (prefix, zxid, suffix.as_slice()) {
        ("snapshot", Some(z), []) => FileKind::Snapshot(z, None),
        ("snapshot", Some(z), [ext]) if ext.eq_ignore_ascii_case("gz") => {
            FileKind::Snapshot(z, Some("gzip"))
        }
        ("snapshot", Some(z), [ext]) if ext.eq_ignore_ascii_case("snappy") => {
            FileKind::Snapshot(z, Some("snappy"))
        }
        ("log", Some(z), []) => FileKind::Log(z),
        _ => FileKind::Odd,
    }
}

fn compressed(name: &str, method: &'static str) -> ZkImportError {
    let advice = if method == "gzip" {
        "gunzip it (the result is a plain snapshot) and import again"
    } else {
        "restart ZooKeeper once without zookeeper.snapshot.compression.method so it writes a \
         plain snapshot, stop it, and import again"
    };
    ZkImportError::Compressed {
        file: name.to_owned(),
        method,
        advice,
    }
}

// ---------------------------------------------------------------- checksums

/// Adler-32 as `java.util.zip.Adler32` computes it, incrementally.
#[derive(Debug, Clone, Copy)]
struct Adler32 {
    a: u32,
    b: u32,
}

impl Adler32 {
    const MOD: u32 = 65_521;
    /// Most bytes summed before `b` could overflow a u32.
    const BLOCK: usize = 5_552;

    fn new() -> Self {
        Adler32 { a: 1, b: 0 }
    }

    fn update(&mut self, bytes: &[u8]) {
        for block in bytes.chunks(Self::BLOCK) {
            for &byte in block {
                self.a += u32::from(byte);
                self.b += self.a;
            }
            self.a %= Self::MOD;
            self.b %= Self::MOD;
        }
    }

    /// As Java's `Checksum.getValue()`: the 32 bits, unsigned, in a long.
    fn value(&self) -> i64 {
        i64::from((self.b << 16) | self.a)
    }
}

/// The Adler-32 of `bytes` as ZooKeeper stores it (a long holding 32 bits).
pub fn adler32(bytes: &[u8]) -> i64 {
    let mut sum = Adler32::new();
    sum.update(bytes);
    sum.value()
}

const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE, `java.util.zip.CRC32`) over several slices in turn.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut c = !0u32;
    for part in parts {
        for &byte in *part {
            c = CRC32_TABLE[((c ^ u32::from(byte)) & 0xff) as usize] ^ (c >> 8);
        }
    }
    !c
}

/// ZooKeeper's tree digest (version 2, `DigestCalculator`): the wrapping sum,
/// over every node outside `/zookeeper/`, of the CRC-32 of its path (the
/// root as ""), its data and its persisted stat.
pub fn tree_digest(tree: &DataTree) -> i64 {
    let mut sum = 0i64;
    for (p, node) in tree.iter() {
        if p.starts_with("/zookeeper/") {
            continue;
        }
        let p = if p == "/" { "" } else { p };
        let s = &node.stat;
        let mut stat = [0u8; 60];
        let fields: [&[u8]; 9] = [
            &s.czxid.to_be_bytes(),
            &s.mzxid.to_be_bytes(),
            &s.pzxid.to_be_bytes(),
            &s.ctime.to_be_bytes(),
            &s.mtime.to_be_bytes(),
            &s.version.to_be_bytes(),
            &s.cversion.to_be_bytes(),
            &s.aversion.to_be_bytes(),
            &s.ephemeral_owner.to_be_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            stat[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        }
        let data = node.data.as_deref().unwrap_or_default();
        sum = sum.wrapping_add(i64::from(crc32(&[p.as_bytes(), data, &stat])));
    }
    sum
}

// ---------------------------------------------------------------- snapshots

#[derive(Debug, Clone, Copy)]
struct ZxidDigest {
    zxid: i64,
    version: i32,
    digest: i64,
}

struct Snapshot {
    tree: DataTree,
    /// The highest zxid the fuzzy snapshot may reflect (its digest's, or 3.9's
    /// last processed zxid); 0 when unknown.
    fuzzy_until: i64,
    digest: Option<ZxidDigest>,
    warnings: Vec<String>,
}

fn at(e: DecodeError) -> String {
    format!("malformed: {e}")
}

/// Reads a whole snapshot and checks its seals; the error says why it is unusable.
fn read_snapshot(bytes: &[u8], zxid: i64, extended_types: bool) -> Result<Snapshot, String> {
    // Every snapshot ends with a seal's "/" (length 1, then the byte).
    if !bytes.ends_with(&[0, 0, 0, 1, b'/']) {
        return Err(format!(
            "incomplete ({} bytes, no final seal): ZooKeeper stopped while writing it",
            bytes.len()
        ));
    }
    let mut r = Reader::new(bytes);
    let magic = r.i32().map_err(at)?;
    let version = r.i32().map_err(at)?;
    let _dbid = r.i64().map_err(at)?;
    if magic != SNAP_MAGIC {
        return Err(format!("bad magic {magic:#010x}, not a snapshot"));
    }
    if version != FILE_FORMAT_VERSION {
        return Err(format!("snapshot format version {version}, expected 2"));
    }
    let mut tree = DataTree::restored(extended_types, zxid);

    let sessions = r.i32().map_err(at)?;
    for _ in 0..sessions.max(0) {
        let id = r.i64().map_err(at)?;
        let timeout = r.i32().map_err(at)?;
        tree.restore_session(id, timeout);
    }

    let mut acls: HashMap<i64, Vec<Acl>> = HashMap::new();
    let lists = r.i32().map_err(at)?;
    for _ in 0..lists.max(0) {
        let id = r.i64().map_err(at)?;
        let list: Vec<Acl> = r.vec().map_err(at)?;
        acls.insert(id, list);
    }
    let open = open_acl_unsafe();

    loop {
        let offset = r.position();
        let raw = r.buffer().map_err(at)?;
        let p = match raw {
            None => return Err(format!("offset {offset}: null path")),
            Some(b) => String::from_utf8_lossy(b),
        };
        if p == "/" {
            break;
        }
        let data = r.buffer().map_err(at)?;
        let acl_id = r.i64().map_err(at)?;
        let stat = read_stat(&mut r).map_err(at)?;
        let acl = match acl_id {
            OPEN_ACL_ID => &open,
            id => acls.get(&id).ok_or_else(|| {
                format!("offset {offset}: node {p} names ACL {id}, which is not in the ACL table")
            })?,
        };
        // ZooKeeper writes the root as "".
        let p = if p.is_empty() { "/" } else { &p };
        tree.restore_node(p, data, acl, stat)
            .map_err(|e| format!("offset {offset}: {e}"))?;
    }
    if tree.get("/").is_none() {
        return Err("no root node".into());
    }

    let mut sum = Adler32::new();
    let mut summed = 0;
    seal(&mut r, bytes, &mut sum, &mut summed)?;
    let mut snapshot = Snapshot {
        tree,
        fuzzy_until: 0,
        digest: None,
        warnings: Vec::new(),
    };
    // 3.6+: the zxid digest and its seal. 3.9: the last zxid and its seal.
    if r.remaining() > 0 && r.remaining() != LAST_ZXID_SECTION {
        let zxid = r.i64().map_err(at)?;
        let version = r.i32().map_err(at)?;
        let digest = if version < 2 {
            // Digest version 1 stored the value as a hex string.
            let hex = r.string().map_err(at)?;
            u64::from_str_radix(&hex, 16).map_or(0, |d| d as i64)
        } else {
            r.i64().map_err(at)?
        };
        seal(&mut r, bytes, &mut sum, &mut summed)?;
        if zxid > 0 {
            snapshot.digest = Some(ZxidDigest {
                zxid,
                version,
                digest,
            });
            snapshot.fuzzy_until = zxid;
        }
    }
    if r.remaining() == LAST_ZXID_SECTION {
        let last = r.i64().map_err(at)?;
        seal(&mut r, bytes, &mut sum, &mut summed)?;
        snapshot.fuzzy_until = snapshot.fuzzy_until.max(last);
    }
    if r.remaining() > 0 {
        snapshot.warnings.push(format!(
            "{} unrecognised bytes after the snapshot's last seal, ignored",
            r.remaining()
        ));
    }
    Ok(snapshot)
}

fn read_stat(r: &mut Reader<'_>) -> Result<StatPersisted, DecodeError> {
    Ok(StatPersisted {
        czxid: r.i64()?,
        mzxid: r.i64()?,
        ctime: r.i64()?,
        mtime: r.i64()?,
        version: r.i32()?,
        cversion: r.i32()?,
        aversion: r.i32()?,
        ephemeral_owner: r.i64()?,
        pzxid: r.i64()?,
    })
}

/// Checks a seal: the Adler32 of everything before it, then the string "/".
fn seal(
    r: &mut Reader<'_>,
    bytes: &[u8],
    sum: &mut Adler32,
    summed: &mut usize,
) -> Result<(), String> {
    let offset = r.position();
    sum.update(&bytes[*summed..offset]);
    *summed = offset;
    let stored = r.i64().map_err(at)?;
    let slash = r.buffer().map_err(at)?;
    if slash != Some(b"/") {
        return Err(format!("offset {offset}: seal not followed by \"/\""));
    }
    if stored != sum.value() {
        return Err(format!(
            "offset {offset}: checksum mismatch (stored {stored:#x}, computed {:#x})",
            sum.value()
        ));
    }
    Ok(())
}

/// ZooKeeper's `/zookeeper/config` as its tree constructor makes it, for a
/// snapshot that lacks it.
fn add_config_node(tree: &mut DataTree) {
    let stat = StatPersisted {
        aversion: -1,
        ..Default::default()
    };
    let read_only = [Acl::new(perms::READ, "world", "anyone")];
    // The parent exists and the node does not, so this cannot fail.
    let _ = tree.restore_node("/zookeeper/config", Some(&[]), &read_only, stat);
}

/// What about the final tree deserves the operator's attention.
fn tree_warnings(tree: &DataTree, extended_types: bool) -> Vec<String> {
    let mut ttl_like = 0usize;
    for (_, node) in tree.iter() {
        let owner = node.stat.ephemeral_owner;
        if kind_of(owner, extended_types) == EphemeralKind::Normal
            && !extended_types
            && matches!(kind_of(owner, true), EphemeralKind::Ttl(_))
        {
            ttl_like += 1;
        }
    }
    let mut out = Vec::new();
    if ttl_like > 0 {
        out.push(format!(
            "{ttl_like} nodes are TTL nodes but extended types are off: they pass for \
             ephemerals of a session that does not exist; import with extended types on"
        ));
    }
    out
}

// ---------------------------------------------------------------- logs

/// How the records of one log file ended.
enum LogEnd {
    /// At the end of the file or of the written part (zeros to the end).
    Clean,
    /// At a record cut short or damaged; nothing valid after it.
    Torn { offset: usize, why: String },
}

/// The framed entries of a log file: (offset, entry bytes).
type Entries<'b> = Vec<(usize, &'b [u8])>;

/// The framed entries of a log file and how it ended.
fn scan_log<'b>(name: &str, bytes: &'b [u8]) -> Result<(Entries<'b>, LogEnd), ZkImportError> {
    let header_error = |detail: String| ZkImportError::BadLogHeader {
        file: name.to_owned(),
        detail,
    };
    if bytes.is_empty() {
        // ZooKeeper died between creating the file and writing its header.
        return Ok((
            Vec::new(),
            LogEnd::Torn {
                offset: 0,
                why: "empty file".into(),
            },
        ));
    }
    let mut r = Reader::new(bytes);
    let (magic, version) = match (r.i32(), r.i32(), r.i64()) {
        (Ok(magic), Ok(version), Ok(_dbid)) => (magic, version),
        _ => return Err(header_error(format!("only {} bytes", bytes.len()))),
    };
    if magic != LOG_MAGIC {
        return Err(header_error(format!("bad magic {magic:#010x}")));
    }
    if version != FILE_FORMAT_VERSION {
        return Err(header_error(format!(
            "format version {version}, expected 2"
        )));
    }
    let mut entries = Vec::new();
    let mut pos = r.position();
    loop {
        match frame_at(bytes, pos) {
            Frame::Entry { entry, next } => {
                entries.push((pos, entry));
                pos = next;
            }
            Frame::End => {
                let end = match bytes[pos..].iter().position(|&b| b != 0) {
                    None => LogEnd::Clean,
                    Some(nonzero) => LogEnd::Torn {
                        offset: pos,
                        why: format!(
                            "a zero-length record ends the log but non-zero bytes follow at \
                             offset {}",
                            pos + nonzero
                        ),
                    },
                };
                return Ok((entries, end));
            }
            Frame::Torn(why) => return Ok((entries, LogEnd::Torn { offset: pos, why })),
            Frame::BadChecksum { next } => {
                let why = "checksum mismatch".to_owned();
                if matches!(frame_at(bytes, next), Frame::Entry { .. }) {
                    return Err(ZkImportError::Corrupt {
                        file: name.to_owned(),
                        offset: pos,
                        detail: why,
                    });
                }
                return Ok((entries, LogEnd::Torn { offset: pos, why }));
            }
        }
    }
}

enum Frame<'b> {
    Entry {
        entry: &'b [u8],
        next: usize,
    },
    /// A zero length or the end of the file: ZooKeeper's end of log.
    End,
    Torn(String),
    BadChecksum {
        next: usize,
    },
}

fn frame_at(bytes: &[u8], pos: usize) -> Frame<'_> {
    let rest = &bytes[pos.min(bytes.len())..];
    if rest.is_empty() {
        return Frame::End;
    }
    if rest.len() < RECORD_PREFIX {
        return if rest.iter().all(|&b| b == 0) {
            Frame::End
        } else {
            Frame::Torn(format!("{} bytes, too short for a record", rest.len()))
        };
    }
    let crc = i64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
    let len = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
    if len == 0 {
        return Frame::End;
    }
    let Ok(len) = usize::try_from(len) else {
        return Frame::Torn(format!("negative record length {len}"));
    };
    if len > rest.len() - RECORD_PREFIX - 1 {
        return Frame::Torn(format!("record length {len} runs past the end of the file"));
    }
    let entry = &rest[RECORD_PREFIX..RECORD_PREFIX + len];
    if rest[RECORD_PREFIX + len] != END_OF_RECORD {
        return Frame::Torn("record not terminated by 'B' (partly written)".into());
    }
    let next = pos + RECORD_PREFIX + len + 1;
    if adler32(entry) != crc {
        return Frame::BadChecksum { next };
    }
    Frame::Entry { entry, next }
}

struct Replay {
    last: i64,
    snapshot_zxid: i64,
    applied: usize,
    /// (zxid, version, digest) of the last txn logged with a digest (or of
    /// the snapshot), unless a change logged without one came after it.
    /// Failed writes carry none and change nothing.
    last_digest: Option<(i64, i32, i64)>,
    stale: usize,
    /// Why the previous file ended early, for a gap's message.
    torn_note: String,
    reconfig_seen: bool,
    bad_ttl: usize,
}

struct TxnHeader {
    client_id: i64,
    cxid: i32,
    zxid: i64,
    time: i64,
    op: i32,
}

/// Whether `next` may directly follow `last`: the next counter of the same
/// epoch, or the first txn of a later epoch.
fn follows(last: i64, next: i64) -> bool {
    next == last + 1 || ((next >> 32) > (last >> 32) && next & 0xffff_ffff == 1)
}

impl Replay {
    fn file(
        &mut self,
        name: &str,
        bytes: &[u8],
        tree: &mut DataTree,
        warnings: &mut Vec<String>,
    ) -> Result<(), ZkImportError> {
        let (entries, end) = scan_log(name, bytes)?;
        for (offset, entry) in entries {
            let bad = |zxid: i64, detail: String| ZkImportError::BadTxn {
                file: name.to_owned(),
                offset,
                zxid,
                detail,
            };
            let mut r = Reader::new(entry);
            let header = read_header(&mut r).map_err(|e| bad(0, at(e)))?;
            let zxid = header.zxid;
            if zxid <= self.last {
                if zxid > self.snapshot_zxid {
                    self.stale += 1;
                }
                continue;
            }
            if !follows(self.last, zxid) {
                return Err(ZkImportError::Gap {
                    missing: self.last + 1,
                    after: self.last,
                    next: zxid,
                    file: name.to_owned(),
                    offset,
                    note: self.torn_note.clone(),
                });
            }
            let (mut op, digest) = self.decode(&header, &mut r).map_err(|e| bad(zxid, e))?;
            if let TxnOp::CloseSession { ephemerals } = &mut op {
                // In a fuzzy replay a listed path may since have become a
                // parent; ZooKeeper never deletes one with children either.
                ephemerals.retain(|p| tree.get(p).is_none_or(|n| !n.has_children()));
            }
            let txn = Txn {
                zxid,
                time: header.time,
                session_id: header.client_id,
                cxid: header.cxid,
                op,
            };
            tree.apply_over_fuzzy(&txn);
            self.last = zxid;
            match digest {
                Some((version, value)) => self.last_digest = Some((zxid, version, value)),
                None if txn.op.is_mutation() => self.last_digest = None,
                None => {}
            }
            self.applied += 1;
        }
        self.torn_note.clear();
        if let LogEnd::Torn { offset, why } = end {
            warnings.push(format!(
                "{name}: records end at offset {offset}: {why} (a crash's torn tail; what \
                 follows is ignored, as ZooKeeper does)"
            ));
            self.torn_note = format!("; {name} ends early at offset {offset}: {why}");
        }
        Ok(())
    }

    /// The txn body (and digest) after a header, as a zoocore op.
    fn decode(
        &mut self,
        header: &TxnHeader,
        r: &mut Reader<'_>,
    ) -> Result<(TxnOp, Option<(i32, i64)>), String> {
        let op = OpCode::from_i32(header.op);
        let op = match op {
            Some(OpCode::CloseSession) => return close_session(r.rest()),
            Some(OpCode::Reconfig) => {
                // Logged as setData of /zookeeper/config.
                self.reconfig_seen = true;
                decode_op(OpCode::SetData, r)?
            }
            Some(OpCode::Multi) => {
                let count = r.i32().map_err(at)?;
                if count < 0 || count as usize > r.remaining() / 8 {
                    return Err(format!("bad multi op count {count}"));
                }
                let mut subs = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let op = r.i32().map_err(at)?;
                    let body = r.buffer().map_err(at)?.unwrap_or_default();
                    subs.push((op, body));
                }
                multi(&subs)?
            }
            Some(code) => decode_op(code, r)?,
            None => return Err(format!("unknown txn type {}", header.op)),
        };
        let op = if bad_ttl(&op) {
            self.bad_ttl += 1;
            TxnOp::Error(ErrorCode::BadArguments.code())
        } else {
            op
        };
        Ok((op, digest(r)?))
    }
}

/// A create of a TTL out of range, which ZooKeeper fails to apply (it logs
/// createTTL with non-TTL flags without checking the TTL).
fn bad_ttl(op: &TxnOp) -> bool {
    match op {
        TxnOp::Create(CreateTxn {
            kind: CreateKind::Ttl(ttl),
            ..
        }) => ttl_owner(*ttl).is_none(),
        TxnOp::Multi(ops) => ops.iter().any(bad_ttl),
        _ => false,
    }
}

fn read_header(r: &mut Reader<'_>) -> Result<TxnHeader, DecodeError> {
    if r.remaining() < TXN_HEADER_LEN {
        return Err(DecodeError::Truncated {
            offset: r.position(),
            needed: TXN_HEADER_LEN - r.remaining(),
        });
    }
    Ok(TxnHeader {
        client_id: r.i64()?,
        cxid: r.i32()?,
        zxid: r.i64()?,
        time: r.i64()?,
        op: r.i32()?,
    })
}

/// The optional `TxnDigest` that ends an entry (3.6+).
fn digest(r: &mut Reader<'_>) -> Result<Option<(i32, i64)>, String> {
    match r.remaining() {
        0 => Ok(None),
        TXN_DIGEST_LEN => Ok(Some((r.i32().map_err(at)?, r.i64().map_err(at)?))),
        n => Err(format!("{n} unexpected bytes after the txn")),
    }
}

/// closeSession's body is a `CloseSessionTxn` (3.6+ with
/// `zookeeper.closeSessionTxn.enabled`, the default) or nothing, either
/// possibly followed by a digest.
fn close_session(body: &[u8]) -> Result<(TxnOp, Option<(i32, i64)>), String> {
    let mut r = Reader::new(body);
    if let Ok(paths) = r.vec::<String>() {
        let rest = r.remaining();
        if (rest == 0 || rest == TXN_DIGEST_LEN) && paths.iter().all(|p| valid_path(p)) {
            return Ok((TxnOp::CloseSession { ephemerals: paths }, digest(&mut r)?));
        }
    }
    // Not a CloseSessionTxn: an empty body, possibly with a digest.
    let mut r = Reader::new(body);
    let digest = digest(&mut r)?;
    Ok((
        TxnOp::CloseSession {
            ephemerals: Vec::new(),
        },
        digest,
    ))
}

fn valid_path(p: &str) -> bool {
    path::is_valid(p)
}

/// A path a create or delete may name: valid and not the root.
fn node_path(p: String) -> Result<String, String> {
    if p != "/" && path::is_valid(&p) {
        Ok(p)
    } else {
        Err(format!("invalid path {p:?}"))
    }
}

fn any_path(p: String) -> Result<String, String> {
    if path::is_valid(&p) {
        Ok(p)
    } else {
        Err(format!("invalid path {p:?}"))
    }
}

/// One txn body of the given type (top level or inside a multi).
fn decode_op(code: OpCode, r: &mut Reader<'_>) -> Result<TxnOp, String> {
    Ok(match code {
        OpCode::CreateSession => TxnOp::CreateSession {
            timeout: r.i32().map_err(at)?,
        },
        OpCode::Create | OpCode::Create2 => {
            let path = node_path(r.string().map_err(at)?)?;
            let data = Option::<Vec<u8>>::read(r).map_err(at)?;
            let acl = r.vec().map_err(at)?;
            let ephemeral = r.bool().map_err(at)?;
            let parent_cversion = r.i32().map_err(at)?;
            TxnOp::Create(CreateTxn {
                path,
                data,
                acl,
                kind: CreateKind::Plain { ephemeral },
                parent_cversion,
            })
        }
        OpCode::CreateContainer | OpCode::CreateTtl => {
            let path = node_path(r.string().map_err(at)?)?;
            let data = Option::<Vec<u8>>::read(r).map_err(at)?;
            let acl = r.vec().map_err(at)?;
            let parent_cversion = r.i32().map_err(at)?;
            let kind = if code == OpCode::CreateTtl {
                CreateKind::Ttl(r.i64().map_err(at)?)
            } else {
                CreateKind::Container
            };
            TxnOp::Create(CreateTxn {
                path,
                data,
                acl,
                kind,
                parent_cversion,
            })
        }
        OpCode::Delete | OpCode::DeleteContainer => TxnOp::Delete {
            path: node_path(r.string().map_err(at)?)?,
        },
        OpCode::SetData => TxnOp::SetData {
            path: any_path(r.string().map_err(at)?)?,
            data: Option::<Vec<u8>>::read(r).map_err(at)?,
            version: r.i32().map_err(at)?,
        },
        OpCode::SetAcl => TxnOp::SetAcl {
            path: any_path(r.string().map_err(at)?)?,
            acl: r.vec().map_err(at)?,
            version: r.i32().map_err(at)?,
        },
        OpCode::Check => {
            let path = any_path(r.string().map_err(at)?)?;
            let _version = r.i32().map_err(at)?;
            TxnOp::Check { path }
        }
        OpCode::Error => TxnOp::Error(r.i32().map_err(at)?),
        other => {
            return Err(format!(
                "txn type {other:?} ({}) is never logged",
                other.code()
            ))
        }
    })
}

/// A multi's sub-txns. If any is an error the multi failed and nothing
/// applies: the codes are ZooKeeper's (0 before the failure, the errors'
/// own codes, RuntimeInconsistency after).
fn multi(subs: &[(i32, &[u8])]) -> Result<TxnOp, String> {
    let failed = subs.iter().any(|(op, _)| *op == OpCode::Error.code());
    let mut ops = Vec::with_capacity(subs.len());
    let mut codes = Vec::with_capacity(subs.len());
    let mut after_failure = false;
    for (i, (op, body)) in subs.iter().enumerate() {
        let code = OpCode::from_i32(*op).filter(|c| {
            matches!(
                c,
                OpCode::Create
                    | OpCode::CreateTtl
                    | OpCode::CreateContainer
                    | OpCode::Delete
                    | OpCode::DeleteContainer
                    | OpCode::SetData
                    | OpCode::Check
                    | OpCode::Error
            )
        });
        let code = code.ok_or_else(|| format!("multi op {i}: type {op} cannot be in a multi"))?;
        let mut r = Reader::new(body);
        let sub = decode_op(code, &mut r).map_err(|e| format!("multi op {i}: {e}"))?;
        r.finish().map_err(|e| format!("multi op {i}: {e}"))?;
        match sub {
            TxnOp::Error(err) => {
                after_failure = true;
                codes.push(err);
            }
            sub => {
                codes.push(if after_failure {
                    ErrorCode::RuntimeInconsistency.code()
                } else {
                    0
                });
                ops.push(sub);
            }
        }
    }
    Ok(if failed {
        TxnOp::MultiError(codes)
    } else {
        TxnOp::Multi(ops)
    })
}
