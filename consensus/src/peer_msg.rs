//! What servers of an ensemble say to each other, and its wire form.
//!
//! A frame is `len: u32 | crc32c(body): u32 | body`, body = `kind: u8 |
//! payload`. Decoding checks the length against [`MAX_FRAME`] before
//! buffering and the checksum before parsing, and never panics: a bad
//! frame closes that peer's connection only.

use protobuf::Message as _;
use zoocore_engine::acl::Identity;
use zoocore_net::jute::{Reader, WriteJute};
use zoocore_net::records::Id;
use zoocore_net::{decode_request, Request};

/// Version of this protocol, exchanged in [`PeerMsg::Hello`]; a peer with
/// another version is refused with a message saying both.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame body accepted: a raft append carries at most
/// `max_size_per_msg` of entries plus one batch, and a batch is bounded by
/// the batch byte limit (itself below `jute.maxbuffer` plus headers).
pub const MAX_FRAME: usize = 64 << 20;
/// Bytes before a frame's body: its length and checksum.
pub const FRAME_HEADER: usize = 8;
/// Most session ids one `Touches` may carry.
pub const MAX_TOUCHES: usize = 1 << 16;
/// Most snapshot bytes in one `SnapshotChunk`.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;
/// Largest snapshot a member takes from another (it is held in memory
/// while it arrives): refuses a length no real tree reaches.
pub const MAX_SNAPSHOT: u64 = 64 << 30;

/// A client's request, as the server it is connected to hands it to the
/// leader's sequencer (directly, or forwarded over the peer port).
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub session_id: i64,
    pub cxid: i32,
    /// What the client has proven on its connection (ACL checks use it).
    pub identity: Identity,
    pub op: ProposalOp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProposalOp {
    Write(Request),
    /// A new session, with the id the client's server chose (server ids sit
    /// in the top byte, so servers never choose the same one).
    OpenSession {
        timeout: i32,
    },
    CloseSession,
    /// The client reconnected to the proposing member: from now on the
    /// session's requests through any other member get `SessionMoved`.
    /// Orders no txn.
    Revalidate,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PeerMsg {
    /// First frame on a connection, each way.
    Hello {
        version: u32,
        server_id: u64,
        /// `Membership::digest` of the sender's configuration: members whose
        /// configurations disagree refuse to talk.
        membership: u32,
    },
    Raft(Box<raft::eraftpb::Message>),
    Forward(Proposal),
    /// Sessions heard from since the last report, for the leader's expiry.
    Touches(Vec<i64>),
    /// Asks for the bytes of the snapshot at (index, term) from `offset` on.
    SnapshotRead {
        index: u64,
        term: u64,
        offset: u64,
    },
    /// Bytes of a snapshot of `total` bytes from `offset`; a `total` of 0
    /// says the sender no longer has that snapshot.
    SnapshotChunk {
        index: u64,
        term: u64,
        offset: u64,
        total: u64,
        data: Vec<u8>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerMsgError {
    #[error("peer frame of {0} bytes is over the limit of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("peer frame checksum mismatch")]
    Checksum,
    #[error("peer frame is malformed: {0}")]
    Malformed(String),
}

const HELLO: u8 = 1;
const RAFT: u8 = 2;
const FORWARD: u8 = 3;
const TOUCHES: u8 = 4;
const SNAPSHOT_READ: u8 = 5;
const SNAPSHOT_CHUNK_KIND: u8 = 6;

const OP_WRITE: u8 = 1;
const OP_OPEN: u8 = 2;
const OP_CLOSE: u8 = 3;
const OP_REVALIDATE: u8 = 4;

impl PeerMsg {
    /// Appends this message as one frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER]);
        match self {
            PeerMsg::Hello {
                version,
                server_id,
                membership,
            } => {
                out.push(HELLO);
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(&server_id.to_be_bytes());
                out.extend_from_slice(&membership.to_be_bytes());
            }
            PeerMsg::Raft(m) => {
                out.push(RAFT);
                // Encoding a message built in memory cannot fail; an empty body
                // would be refused by the receiver rather than misread.
                if let Ok(bytes) = m.write_to_bytes() {
                    out.extend_from_slice(&bytes);
                }
            }
            PeerMsg::Forward(p) => {
                out.push(FORWARD);
                out.put_i64(p.session_id);
                out.put_i32(p.cxid);
                out.put_vec(p.identity.ids());
                match &p.op {
                    ProposalOp::Write(request) => {
                        out.push(OP_WRITE);
                        out.extend_from_slice(&request.encode(p.cxid));
                    }
                    ProposalOp::OpenSession { timeout } => {
                        out.push(OP_OPEN);
                        out.put_i32(*timeout);
                    }
                    ProposalOp::CloseSession => out.push(OP_CLOSE),
                    ProposalOp::Revalidate => out.push(OP_REVALIDATE),
                }
            }
            PeerMsg::Touches(ids) => {
                out.push(TOUCHES);
                out.put_i32(ids.len() as i32);
                for id in ids {
                    out.put_i64(*id);
                }
            }
            PeerMsg::SnapshotRead {
                index,
                term,
                offset,
            } => {
                out.push(SNAPSHOT_READ);
                for word in [index, term, offset] {
                    out.extend_from_slice(&word.to_be_bytes());
                }
            }
            PeerMsg::SnapshotChunk {
                index,
                term,
                offset,
                total,
                data,
            } => {
                out.push(SNAPSHOT_CHUNK_KIND);
                for word in [index, term, offset, total] {
                    out.extend_from_slice(&word.to_be_bytes());
                }
                out.extend_from_slice(data);
            }
        }
        let body = &out[start + FRAME_HEADER..];
        let len = body.len() as u32;
        let crc = crc32c::crc32c(body);
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    }

    /// The frame at the start of `buf`, if it is all there: the message and
    /// the bytes it took. `Ok(None)` asks for more bytes.
    pub fn decode(buf: &[u8]) -> Result<Option<(PeerMsg, usize)>, PeerMsgError> {
        let Some(header) = buf.first_chunk::<FRAME_HEADER>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_FRAME {
            return Err(PeerMsgError::TooLarge(len));
        }
        let Some(body) = buf.get(FRAME_HEADER..FRAME_HEADER + len) else {
            return Ok(None);
        };
        if crc32c::crc32c(body) != crc {
            return Err(PeerMsgError::Checksum);
        }
        let msg = decode_body(body).map_err(PeerMsgError::Malformed)?;
        Ok(Some((msg, FRAME_HEADER + len)))
    }
}

fn decode_body(body: &[u8]) -> Result<PeerMsg, String> {
    let (&kind, rest) = body.split_first().ok_or("empty frame")?;
    let mut r = Reader::new(rest);
    let e = |e: zoocore_net::DecodeError| e.to_string();
    let msg = match kind {
        HELLO => {
            let version = r.i32().map_err(e)? as u32;
            let server_id = r.i64().map_err(e)? as u64;
            let membership = r.i32().map_err(e)? as u32;
            PeerMsg::Hello {
                version,
                server_id,
                membership,
            }
        }
        RAFT => {
            let m = raft::eraftpb::Message::parse_from_bytes(r.rest())
                .map_err(|err| format!("raft message: {err}"))?;
            PeerMsg::Raft(Box::new(m))
        }
        FORWARD => {
            let session_id = r.i64().map_err(e)?;
            let cxid = r.i32().map_err(e)?;
            let ids: Vec<Id> = r.vec().map_err(e)?;
            let op = match r.take(1).map_err(e)?[0] {
                OP_WRITE => {
                    let (header, request) = decode_request(r.rest()).map_err(e)?;
                    if header.xid != cxid {
                        return Err(format!("forwarded xid {} is not cxid {cxid}", header.xid));
                    }
                    if !request.is_write() {
                        return Err(format!("forwarded opcode {} is not a write", request.op()));
                    }
                    ProposalOp::Write(request)
                }
                OP_OPEN => ProposalOp::OpenSession {
                    timeout: r.i32().map_err(e)?,
                },
                OP_CLOSE => ProposalOp::CloseSession,
                OP_REVALIDATE => ProposalOp::Revalidate,
                other => return Err(format!("proposal kind {other}")),
            };
            PeerMsg::Forward(Proposal {
                session_id,
                cxid,
                identity: Identity::from_ids(ids),
                op,
            })
        }
        TOUCHES => {
            let n = r.i32().map_err(e)?;
            let n = usize::try_from(n).map_err(|_| format!("touch count {n}"))?;
            if n > MAX_TOUCHES || n * 8 > r.remaining() {
                return Err(format!("touch count {n}"));
            }
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(r.i64().map_err(e)?);
            }
            PeerMsg::Touches(ids)
        }
        SNAPSHOT_READ => PeerMsg::SnapshotRead {
            index: r.i64().map_err(e)? as u64,
            term: r.i64().map_err(e)? as u64,
            offset: r.i64().map_err(e)? as u64,
        },
        SNAPSHOT_CHUNK_KIND => {
            let index = r.i64().map_err(e)? as u64;
            let term = r.i64().map_err(e)? as u64;
            let offset = r.i64().map_err(e)? as u64;
            let total = r.i64().map_err(e)? as u64;
            let data = r.rest().to_vec();
            let end = offset.checked_add(data.len() as u64);
            // `total` 0 with no data is the sender's "no longer there", at
            // whatever offset was asked for.
            let gone = total == 0 && data.is_empty();
            if data.len() > SNAPSHOT_CHUNK
                || total > MAX_SNAPSHOT
                || (!gone && end.is_none_or(|end| end > total))
            {
                return Err(format!(
                    "snapshot chunk of {} bytes at {offset} of {total}",
                    data.len()
                ));
            }
            PeerMsg::SnapshotChunk {
                index,
                term,
                offset,
                total,
                data,
            }
        }
        other => return Err(format!("frame kind {other}")),
    };
    r.finish().map_err(e)?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zoocore_net::records::SetDataRequest;

    fn samples() -> Vec<PeerMsg> {
        let mut raft_msg = raft::eraftpb::Message::default();
        raft_msg.set_msg_type(raft::eraftpb::MessageType::MsgAppend);
        raft_msg.to = 2;
        raft_msg.from = 1;
        raft_msg.term = 9;
        let entry = raft::eraftpb::Entry {
            index: 4,
            term: 9,
            data: vec![1, 2, 3].into(),
            ..Default::default()
        };
        raft_msg.entries = vec![entry].into();
        vec![
            PeerMsg::Hello {
                version: PROTOCOL_VERSION,
                server_id: 3,
                membership: 0xdead_beef,
            },
            PeerMsg::Raft(Box::new(raft_msg)),
            PeerMsg::Forward(Proposal {
                session_id: 0x0100_0000_0000_0001,
                cxid: 17,
                identity: Identity::from_ip("127.0.0.1"),
                op: ProposalOp::Write(Request::SetData(SetDataRequest {
                    path: "/a".into(),
                    data: Some(b"x".to_vec()),
                    version: 3,
                })),
            }),
            PeerMsg::Forward(Proposal {
                session_id: 5,
                cxid: 0,
                identity: Identity::default(),
                op: ProposalOp::OpenSession { timeout: 30_000 },
            }),
            PeerMsg::Forward(Proposal {
                session_id: 5,
                cxid: 9,
                identity: Identity::default(),
                op: ProposalOp::CloseSession,
            }),
            PeerMsg::Forward(Proposal {
                session_id: 5,
                cxid: 0,
                identity: Identity::default(),
                op: ProposalOp::Revalidate,
            }),
            PeerMsg::Touches(vec![1, 2, i64::MAX]),
            PeerMsg::SnapshotRead {
                index: 40,
                term: 3,
                offset: 1 << 20,
            },
            PeerMsg::SnapshotChunk {
                index: 40,
                term: 3,
                offset: 8,
                total: 11,
                data: vec![1, 2, 3],
            },
            // "No longer there", answered to a read past the first chunk.
            PeerMsg::SnapshotChunk {
                index: 40,
                term: 3,
                offset: 1 << 20,
                total: 0,
                data: Vec::new(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips_through_one_stream() {
        let mut stream = Vec::new();
        for m in samples() {
            m.encode(&mut stream);
        }
        let mut at = 0;
        let mut decoded = Vec::new();
        while let Some((m, used)) = PeerMsg::decode(&stream[at..]).expect("valid") {
            decoded.push(m);
            at += used;
        }
        assert_eq!(at, stream.len());
        assert_eq!(decoded, samples());
    }

    #[test]
    fn partial_frames_wait_and_damaged_or_oversized_ones_are_errors() {
        let mut frame = Vec::new();
        samples()[2].encode(&mut frame);
        for cut in 0..frame.len() {
            assert_eq!(PeerMsg::decode(&frame[..cut]), Ok(None), "cut at {cut}");
        }
        for i in FRAME_HEADER..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x40;
            assert_eq!(PeerMsg::decode(&bad), Err(PeerMsgError::Checksum));
        }
        let mut huge = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 4]);
        assert_eq!(
            PeerMsg::decode(&huge),
            Err(PeerMsgError::TooLarge(MAX_FRAME + 1))
        );
        // A checksummed body that is not a message: refused, not a panic.
        for body in [
            vec![],
            vec![99],
            vec![FORWARD, 1, 2],
            vec![TOUCHES, 0x7f, 0, 0, 0],
            // A chunk running past the snapshot's length.
            [
                &[SNAPSHOT_CHUNK_KIND][..],
                &[0; 24],
                &2u64.to_be_bytes(),
                &[1, 2, 3],
            ]
            .concat(),
        ] {
            let mut f = (body.len() as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
            f.extend_from_slice(&body);
            assert!(matches!(
                PeerMsg::decode(&f),
                Err(PeerMsgError::Malformed(_))
            ));
        }
    }
}
