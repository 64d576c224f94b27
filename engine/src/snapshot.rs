//! The snapshot format, without I/O: a [`DataTree`] (nodes, ACL lists, live
//! sessions, last zxid) as a header followed by checksummed rkyv chunks.
//!
//! ```text
//! header   64 bytes: magic | version u32 | flags u32 | zxid i64 | nodes u64
//!          | sessions u64 | acl lists u64 | reserved | crc32c(bytes 0..60) u32
//! frame*   len u32 | crc32c(payload) u32 | reserved u64 | payload | pad to 16
//! end      a frame with len 0
//! ```
//! All integers little-endian. Each payload is one archived [`Chunk`] and
//! starts 16-aligned, so an mmap'ed file is accessed in place. Chunks are
//! bounded (nodes and bytes), so writing needs no second copy of the tree.
//! Nodes come parents first (depth-first from `/`), ACL lists before nodes.

use std::io::Write;

use rkyv::rancor;
use zoocore_net::{Acl, Id};

use crate::tree::{DataTree, RestoreError, StatPersisted};

const MAGIC: &[u8; 8] = b"ZOOCSNAP";
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 64;
const FRAME_LEN: usize = 16;
const ALIGN: usize = 16;
/// A chunk closes at whichever limit it reaches first.
const CHUNK_NODES: usize = 4096;
const CHUNK_BYTES: usize = 4 << 20;

#[derive(rkyv::Archive, rkyv::Serialize)]
pub struct AclImage {
    pub perms: i32,
    pub scheme: String,
    pub id: String,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
pub struct NodeImage {
    pub path: String,
    pub data: Option<Vec<u8>>,
    /// Index into the snapshot's ACL lists.
    pub acl: u32,
    pub stat: StatPersisted,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
pub struct SessionImage {
    pub id: i64,
    pub timeout: i32,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
pub enum Chunk {
    Acls(Vec<Vec<AclImage>>),
    Nodes(Vec<NodeImage>),
    Sessions(Vec<SessionImage>),
}

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub zxid: i64,
    pub nodes: u64,
    pub sessions: u64,
    pub acl_lists: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a zoocore snapshot (bad magic)")]
    Magic,
    #[error("snapshot format version {0}; this build reads version {FORMAT_VERSION}")]
    Version(u32),
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("chunk at byte {0}: checksum mismatch")]
    ChunkChecksum(usize),
    #[error("chunk at byte {offset}: {reason}")]
    Chunk { offset: usize, reason: String },
    #[error("chunk at byte {offset}: {error}")]
    Tree { offset: usize, error: RestoreError },
    #[error("{what}: header says {expected}, chunks hold {found}")]
    Count {
        what: &'static str,
        expected: u64,
        found: u64,
    },
    #[error("{0} bytes after the end frame")]
    Trailing(usize),
}

/// Writes `tree` as a snapshot; returns the bytes written.
pub fn write(tree: &DataTree, out: &mut impl Write) -> std::io::Result<u64> {
    let acl_lists: Vec<&crate::tree::AclList> = tree.acl_lists().collect();
    let index: std::collections::HashMap<*const Acl, u32> = acl_lists
        .iter()
        .enumerate()
        .map(|(i, list)| (list.as_ptr(), i as u32))
        .collect();
    let header = Header {
        version: FORMAT_VERSION,
        zxid: tree.last_zxid(),
        nodes: tree.node_count() as u64,
        sessions: tree.sessions().len() as u64,
        acl_lists: acl_lists.len() as u64,
    };
    let mut written = HEADER_LEN as u64;
    out.write_all(&encode_header(&header))?;
    let acls = acl_lists
        .iter()
        .map(|list| {
            list.iter()
                .map(|acl| AclImage {
                    perms: acl.perms,
                    scheme: acl.id.scheme.clone(),
                    id: acl.id.id.clone(),
                })
                .collect()
        })
        .collect();
    written += write_chunk(out, &Chunk::Acls(acls))?;
    let mut nodes = Vec::with_capacity(CHUNK_NODES);
    let mut bytes = 0;
    // Path order puts every parent before its children, as reading needs.
    for (path, node) in tree.iter() {
        bytes += path.len() + node.data.as_ref().map_or(0, |d| d.len());
        nodes.push(NodeImage {
            data: node.data.as_ref().map(|d| d.to_vec()),
            acl: index[&node.acl.as_ptr()],
            stat: node.stat,
            path: path.to_owned(),
        });
        if nodes.len() == CHUNK_NODES || bytes >= CHUNK_BYTES {
            written += write_chunk(out, &Chunk::Nodes(std::mem::take(&mut nodes)))?;
            bytes = 0;
        }
    }
    if !nodes.is_empty() {
        written += write_chunk(out, &Chunk::Nodes(nodes))?;
    }
    let mut sessions: Vec<SessionImage> = tree
        .sessions()
        .iter()
        .map(|(&id, &timeout)| SessionImage { id, timeout })
        .collect();
    sessions.sort_by_key(|s| s.id);
    written += write_chunk(out, &Chunk::Sessions(sessions))?;
    out.write_all(&[0; FRAME_LEN])?;
    Ok(written + FRAME_LEN as u64)
}

fn encode_header(h: &Header) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&h.version.to_le_bytes());
    b[16..24].copy_from_slice(&h.zxid.to_le_bytes());
    b[24..32].copy_from_slice(&h.nodes.to_le_bytes());
    b[32..40].copy_from_slice(&h.sessions.to_le_bytes());
    b[40..48].copy_from_slice(&h.acl_lists.to_le_bytes());
    let crc = crc32c::crc32c(&b[..60]);
    b[60..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn write_chunk(out: &mut impl Write, chunk: &Chunk) -> std::io::Result<u64> {
    let payload = rkyv::to_bytes::<rancor::Error>(chunk).map_err(std::io::Error::other)?;
    let len = u32::try_from(payload.len()).map_err(std::io::Error::other)?;
    let mut frame = [0u8; FRAME_LEN];
    frame[..4].copy_from_slice(&len.to_le_bytes());
    frame[4..8].copy_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.write_all(&frame)?;
    out.write_all(&payload)?;
    let pad = payload.len().next_multiple_of(ALIGN) - payload.len();
    out.write_all(&[0; ALIGN][..pad])?;
    Ok((FRAME_LEN + payload.len() + pad) as u64)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads and checks the header alone.
pub fn header(bytes: &[u8]) -> Result<Header, SnapshotError> {
    let b = bytes.get(..HEADER_LEN).ok_or(SnapshotError::Truncated(0))?;
    if &b[..8] != MAGIC {
        return Err(SnapshotError::Magic);
    }
    if crc32c::crc32c(&b[..60]) != u32_at(b, 60) {
        return Err(SnapshotError::HeaderChecksum);
    }
    let version = u32_at(b, 8);
    if version != FORMAT_VERSION {
        return Err(SnapshotError::Version(version));
    }
    Ok(Header {
        version,
        zxid: u64_at(b, 16) as i64,
        nodes: u64_at(b, 24),
        sessions: u64_at(b, 32),
        acl_lists: u64_at(b, 40),
    })
}

/// Validates a whole snapshot image (checksums, archive layout, counts) and
/// rebuilds the tree from it, reading strings and data in place.
pub fn read(bytes: &[u8], extended_types: bool) -> Result<DataTree, SnapshotError> {
    let header = header(bytes)?;
    let mut tree = DataTree::restored(extended_types, header.zxid);
    let mut acls: Vec<Vec<Acl>> = Vec::new();
    let (mut nodes, mut sessions) = (0u64, 0u64);
    let mut pos = HEADER_LEN;
    loop {
        let frame = bytes
            .get(pos..pos + FRAME_LEN)
            .ok_or(SnapshotError::Truncated(pos))?;
        let len = u32_at(frame, 0) as usize;
        // Unused bytes are zero, so no byte of the file goes unchecked.
        let unused_zero = if len == 0 {
            frame.iter().all(|&b| b == 0)
        } else {
            frame[8..].iter().all(|&b| b == 0)
        };
        if !unused_zero {
            return Err(SnapshotError::Chunk {
                offset: pos,
                reason: "reserved frame bytes are not zero".into(),
            });
        }
        if len == 0 {
            pos += FRAME_LEN;
            break;
        }
        let start = pos + FRAME_LEN;
        let payload = bytes
            .get(start..start + len)
            .ok_or(SnapshotError::Truncated(pos))?;
        if crc32c::crc32c(payload) != u32_at(frame, 4) {
            return Err(SnapshotError::ChunkChecksum(pos));
        }
        let chunk = rkyv::access::<ArchivedChunk, rancor::Error>(payload).map_err(|e| {
            SnapshotError::Chunk {
                offset: pos,
                reason: e.to_string(),
            }
        })?;
        match chunk {
            ArchivedChunk::Acls(lists) => {
                acls.extend(lists.iter().map(|list| {
                    list.iter()
                        .map(|a| Acl {
                            perms: a.perms.to_native(),
                            id: Id {
                                scheme: a.scheme.as_str().to_owned(),
                                id: a.id.as_str().to_owned(),
                            },
                        })
                        .collect()
                }));
            }
            ArchivedChunk::Nodes(list) => {
                for n in list.iter() {
                    let acl = acls.get(n.acl.to_native() as usize).ok_or_else(|| {
                        SnapshotError::Chunk {
                            offset: pos,
                            reason: format!("node {} names ACL list {}", n.path, n.acl.to_native()),
                        }
                    })?;
                    let stat = rkyv::deserialize::<StatPersisted, rancor::Error>(&n.stat).map_err(
                        |e| SnapshotError::Chunk {
                            offset: pos,
                            reason: e.to_string(),
                        },
                    )?;
                    let data = n.data.as_ref().map(|d| d.as_slice());
                    tree.restore_node(n.path.as_str(), data, acl, stat)
                        .map_err(|error| SnapshotError::Tree { offset: pos, error })?;
                    nodes += 1;
                }
            }
            ArchivedChunk::Sessions(list) => {
                for s in list.iter() {
                    tree.restore_session(s.id.to_native(), s.timeout.to_native());
                    sessions += 1;
                }
            }
        }
        let next = start + len.next_multiple_of(ALIGN);
        let pad = bytes
            .get(start + len..next)
            .ok_or(SnapshotError::Truncated(pos))?;
        if pad.iter().any(|&b| b != 0) {
            return Err(SnapshotError::Chunk {
                offset: pos,
                reason: "padding is not zero".into(),
            });
        }
        pos = next;
    }
    for (what, expected, found) in [
        ("nodes", header.nodes, nodes),
        ("sessions", header.sessions, sessions),
        ("ACL lists", header.acl_lists, acls.len() as u64),
    ] {
        if expected != found {
            return Err(SnapshotError::Count {
                what,
                expected,
                found,
            });
        }
    }
    if pos != bytes.len() {
        return Err(SnapshotError::Trailing(bytes.len().saturating_sub(pos)));
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::{CreateKind, CreateTxn, Txn, TxnOp};
    use zoocore_net::consts::perms;

    fn sample() -> DataTree {
        let mut tree = DataTree::new(true);
        let mut zxid = 0;
        let mut apply = |tree: &mut DataTree, session_id: i64, op: TxnOp| {
            zxid += 1;
            tree.apply(&Txn {
                zxid,
                time: 1000 + zxid,
                session_id,
                cxid: 0,
                op,
            });
        };
        apply(&mut tree, 7, TxnOp::CreateSession { timeout: 4000 });
        let digest = vec![Acl::new(perms::ALL, "digest", "u:h")];
        let open = vec![Acl::new(perms::ALL, "world", "anyone")];
        for (i, (path, kind, acl)) in [
            ("/a", CreateKind::Plain { ephemeral: false }, &open),
            ("/a/b", CreateKind::Plain { ephemeral: false }, &digest),
            ("/a/e", CreateKind::Plain { ephemeral: true }, &open),
            ("/c", CreateKind::Container, &open),
            ("/t", CreateKind::Ttl(500), &digest),
        ]
        .into_iter()
        .enumerate()
        {
            apply(
                &mut tree,
                7,
                TxnOp::Create(CreateTxn {
                    path: path.into(),
                    data: (i % 2 == 0).then(|| vec![i as u8; 3]),
                    acl: acl.clone(),
                    kind,
                    parent_cversion: 1 + i as i32,
                }),
            );
        }
        apply(
            &mut tree,
            7,
            TxnOp::SetData {
                path: "/a/b".into(),
                data: Some(b"new".to_vec()),
                version: 1,
            },
        );
        tree
    }

    fn image(tree: &DataTree) -> Vec<u8> {
        let mut out = Vec::new();
        let n = write(tree, &mut out).unwrap();
        assert_eq!(n, out.len() as u64);
        out
    }

    fn same(a: &DataTree, b: &DataTree) {
        assert_eq!(a.last_zxid(), b.last_zxid());
        assert_eq!(a.node_count(), b.node_count());
        assert_eq!(a.sessions(), b.sessions());
        for (path, node) in a.iter() {
            let other = b.get(path).unwrap_or_else(|| panic!("{path} missing"));
            assert_eq!(node.data, other.data, "{path}");
            assert_eq!(node.acl, other.acl, "{path}");
            assert_eq!(node.stat, other.stat, "{path}");
            assert!(a.child_names(path).eq(b.child_names(path)), "{path}");
        }
        assert_eq!(a.containers(), b.containers());
        assert_eq!(a.ttls(), b.ttls());
        assert_eq!(a.ephemerals_of(7).count(), b.ephemerals_of(7).count());
    }

    /// rkyv access wants the payload aligned as an mmap'ed file gives it.
    fn aligned(bytes: &[u8]) -> rkyv::util::AlignedVec {
        let mut v = rkyv::util::AlignedVec::new();
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn a_tree_round_trips() {
        let tree = sample();
        let bytes = aligned(&image(&tree));
        same(&tree, &read(&bytes, true).unwrap());
        let h = header(&bytes).unwrap();
        assert_eq!((h.zxid, h.nodes, h.sessions), (7, 9, 1));
    }

    #[test]
    fn many_nodes_span_chunks() {
        let mut tree = DataTree::new(false);
        for i in 0..(CHUNK_NODES * 2 + 10) {
            tree.apply(&Txn {
                zxid: i as i64 + 1,
                time: 0,
                session_id: 0,
                cxid: 0,
                op: TxnOp::Create(CreateTxn {
                    path: format!("/n{i}"),
                    data: Some(vec![1; 16]),
                    acl: vec![Acl::new(perms::ALL, "world", "anyone")],
                    kind: CreateKind::Plain { ephemeral: false },
                    parent_cversion: i as i32 + 1,
                }),
            });
        }
        let bytes = aligned(&image(&tree));
        same(&tree, &read(&bytes, false).unwrap());
    }

    #[test]
    fn damage_anywhere_is_detected() {
        let good = image(&sample());
        for at in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[at] ^= 0x5a;
            let bad = aligned(&bad);
            assert!(
                read(&bad, true).is_err(),
                "flip at byte {at} went unnoticed"
            );
        }
        for cut in [0, 10, HEADER_LEN, good.len() / 2, good.len() - 1] {
            assert!(read(&aligned(&good[..cut]), true).is_err(), "cut at {cut}");
        }
    }
}
