//! Whole protocol messages: a request (header + body chosen by opcode) and a
//! reply body (chosen by the opcode of the request it answers).

use crate::consts::OpCode;
use crate::jute::{DecodeError, Jute, Reader, Result};
use crate::records::*;

/// A client request body, by opcode. Path-only and path+watch bodies share a
/// record type; the variant carries the opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Create(CreateRequest),
    Create2(CreateRequest),
    CreateContainer(CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    /// Sent by ZooKeeper's container manager: the body is the bare UTF-8 path.
    DeleteContainer(PathRequest),
    Exists(PathWatchRequest),
    GetData(PathWatchRequest),
    SetData(SetDataRequest),
    GetAcl(PathRequest),
    SetAcl(SetAclRequest),
    GetChildren(PathWatchRequest),
    GetChildren2(PathWatchRequest),
    Sync(PathRequest),
    Ping,
    Check(CheckVersionRequest),
    /// Ops keep the opcode they were sent with (create2 stays create2).
    Multi(Vec<Request>),
    MultiRead(Vec<Request>),
    Reconfig(ReconfigRequest),
    CheckWatches(WatchesRequest),
    RemoveWatches(WatchesRequest),
    Auth(AuthPacket),
    /// A SASL token (`GetSASLRequest`): the client's next step of the
    /// exchange; `None` is jute's null buffer.
    Sasl(Option<Vec<u8>>),
    SetWatches(SetWatches),
    SetWatches2(SetWatches2),
    GetEphemerals(PathRequest),
    GetAllChildrenNumber(PathRequest),
    AddWatch(AddWatchRequest),
    WhoAmI,
    CloseSession,
    /// An opcode this protocol does not serve (unknown values): answered
    /// with `Unimplemented`; its body is not read.
    Unsupported {
        op: i32,
    },
}

/// Most ops a multi request may carry; beyond it the request is refused as malformed.
/// ZooKeeper has no such limit but `jute.maxbuffer` bounds it to about this many.
pub const MAX_MULTI_OPS: usize = 1 << 16;

impl Request {
    pub fn op(&self) -> i32 {
        use Request::*;
        let op = match self {
            Create(_) => OpCode::Create,
            Create2(_) => OpCode::Create2,
            CreateContainer(_) => OpCode::CreateContainer,
            CreateTtl(_) => OpCode::CreateTtl,
            Delete(_) => OpCode::Delete,
            DeleteContainer(_) => OpCode::DeleteContainer,
            Exists(_) => OpCode::Exists,
            GetData(_) => OpCode::GetData,
            SetData(_) => OpCode::SetData,
            GetAcl(_) => OpCode::GetAcl,
            SetAcl(_) => OpCode::SetAcl,
            GetChildren(_) => OpCode::GetChildren,
            GetChildren2(_) => OpCode::GetChildren2,
            Sync(_) => OpCode::Sync,
            Ping => OpCode::Ping,
            Check(_) => OpCode::Check,
            Multi(_) => OpCode::Multi,
            MultiRead(_) => OpCode::MultiRead,
            Reconfig(_) => OpCode::Reconfig,
            CheckWatches(_) => OpCode::CheckWatches,
            RemoveWatches(_) => OpCode::RemoveWatches,
            Auth(_) => OpCode::Auth,
            Sasl(_) => OpCode::Sasl,
            SetWatches(_) => OpCode::SetWatches,
            SetWatches2(_) => OpCode::SetWatches2,
            GetEphemerals(_) => OpCode::GetEphemerals,
            GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            AddWatch(_) => OpCode::AddWatch,
            WhoAmI => OpCode::WhoAmI,
            CloseSession => OpCode::CloseSession,
            Unsupported { op } => return *op,
        };
        op.code()
    }

    /// The path the request is about, if it has one.
    pub fn path(&self) -> Option<&str> {
        use Request::*;
        match self {
            Create(r) | Create2(r) | CreateContainer(r) => Some(&r.path),
            CreateTtl(r) => Some(&r.path),
            Delete(r) => Some(&r.path),
            DeleteContainer(r)
            | GetAcl(r)
            | Sync(r)
            | GetEphemerals(r)
            | GetAllChildrenNumber(r) => Some(&r.path),
            Exists(r) | GetData(r) | GetChildren(r) | GetChildren2(r) => Some(&r.path),
            SetData(r) => Some(&r.path),
            SetAcl(r) => Some(&r.path),
            Check(r) => Some(&r.path),
            CheckWatches(r) | RemoveWatches(r) => Some(&r.path),
            AddWatch(r) => Some(&r.path),
            _ => None,
        }
    }

    /// Whether the request changes state (goes through the write path).
    pub fn is_write(&self) -> bool {
        use Request::*;
        matches!(
            self,
            Create(_)
                | Create2(_)
                | CreateContainer(_)
                | CreateTtl(_)
                | Delete(_)
                | DeleteContainer(_)
                | SetData(_)
                | SetAcl(_)
                | Check(_)
                | Multi(_)
                | Reconfig(_)
                | CloseSession
        )
    }

    /// Decodes a request body for opcode `op` (the header already read).
    pub fn decode_body(op: i32, body: &[u8]) -> Result<Request> {
        let mut r = Reader::new(body);
        let req = Self::read_body(op, &mut r)?;
        if !matches!(req, Request::Unsupported { .. }) {
            r.finish()?;
        }
        Ok(req)
    }

    fn read_body(op: i32, r: &mut Reader<'_>) -> Result<Request> {
        use Request::*;
        let Some(code) = OpCode::from_i32(op) else {
            return Ok(Unsupported { op });
        };
        Ok(match code {
            OpCode::Create => Create(Jute::read(r)?),
            OpCode::Create2 => Create2(Jute::read(r)?),
            OpCode::CreateContainer => CreateContainer(Jute::read(r)?),
            OpCode::CreateTtl => CreateTtl(Jute::read(r)?),
            OpCode::Delete => Delete(Jute::read(r)?),
            OpCode::DeleteContainer => DeleteContainer(PathRequest {
                path: String::from_utf8_lossy(r.rest()).into_owned(),
            }),
            OpCode::Exists => Exists(Jute::read(r)?),
            OpCode::GetData => GetData(Jute::read(r)?),
            OpCode::SetData => SetData(Jute::read(r)?),
            OpCode::GetAcl => GetAcl(Jute::read(r)?),
            OpCode::SetAcl => SetAcl(Jute::read(r)?),
            OpCode::GetChildren => GetChildren(Jute::read(r)?),
            OpCode::GetChildren2 => GetChildren2(Jute::read(r)?),
            OpCode::Sync => Sync(Jute::read(r)?),
            OpCode::Ping => Ping,
            OpCode::Check => Check(Jute::read(r)?),
            OpCode::Multi => Multi(read_multi_ops(r)?),
            OpCode::MultiRead => MultiRead(read_multi_ops(r)?),
            OpCode::Reconfig => Reconfig(Jute::read(r)?),
            OpCode::CheckWatches => CheckWatches(Jute::read(r)?),
            OpCode::RemoveWatches => RemoveWatches(Jute::read(r)?),
            OpCode::Auth => Auth(Jute::read(r)?),
            OpCode::Sasl => Sasl(Jute::read(r)?),
            OpCode::SetWatches => SetWatches(Jute::read(r)?),
            OpCode::SetWatches2 => SetWatches2(Jute::read(r)?),
            OpCode::GetEphemerals => GetEphemerals(Jute::read(r)?),
            OpCode::GetAllChildrenNumber => GetAllChildrenNumber(Jute::read(r)?),
            OpCode::AddWatch => AddWatch(Jute::read(r)?),
            OpCode::WhoAmI => WhoAmI,
            OpCode::CloseSession => CloseSession,
            OpCode::Notification | OpCode::CreateSession | OpCode::Error => Unsupported { op },
        })
    }

    /// Encodes the body only (no header).
    pub fn write_body(&self, out: &mut Vec<u8>) {
        use Request::*;
        match self {
            Create(b) | Create2(b) | CreateContainer(b) => b.write(out),
            CreateTtl(b) => b.write(out),
            Delete(b) => b.write(out),
            DeleteContainer(b) => out.extend_from_slice(b.path.as_bytes()),
            Exists(b) | GetData(b) | GetChildren(b) | GetChildren2(b) => b.write(out),
            SetData(b) => b.write(out),
            GetAcl(b) | Sync(b) | GetEphemerals(b) | GetAllChildrenNumber(b) => b.write(out),
            SetAcl(b) => b.write(out),
            Check(b) => b.write(out),
            Multi(ops) | MultiRead(ops) => {
                for op in ops {
                    MultiHeader {
                        op: op.op(),
                        done: false,
                        err: -1,
                    }
                    .write(out);
                    op.write_body(out);
                }
                MultiHeader {
                    op: -1,
                    done: true,
                    err: -1,
                }
                .write(out);
            }
            Reconfig(b) => b.write(out),
            CheckWatches(b) | RemoveWatches(b) => b.write(out),
            Auth(b) => b.write(out),
            Sasl(token) => token.write(out),
            SetWatches(b) => b.write(out),
            SetWatches2(b) => b.write(out),
            AddWatch(b) => b.write(out),
            Ping | WhoAmI | CloseSession | Unsupported { .. } => {}
        }
    }

    /// Header and body, without the frame length.
    pub fn encode(&self, xid: i32) -> Vec<u8> {
        let mut out = Vec::new();
        RequestHeader { xid, op: self.op() }.write(&mut out);
        self.write_body(&mut out);
        out
    }
}

/// Reads the ops of a multi or multiRead, as `MultiOperationRecord` does:
/// only create*, delete, setData, check, getChildren and getData may appear.
fn read_multi_ops(r: &mut Reader<'_>) -> Result<Vec<Request>> {
    let mut ops = Vec::new();
    loop {
        let header = MultiHeader::read(r)?;
        if header.done {
            return Ok(ops);
        }
        if ops.len() == MAX_MULTI_OPS {
            return Err(DecodeError::BadValue {
                what: "multi op count",
                value: ops.len() as i64,
            });
        }
        let op = match OpCode::from_i32(header.op) {
            Some(
                OpCode::Create
                | OpCode::Create2
                | OpCode::CreateContainer
                | OpCode::CreateTtl
                | OpCode::Delete
                | OpCode::SetData
                | OpCode::Check
                | OpCode::GetChildren
                | OpCode::GetData,
            ) => Request::read_body(header.op, r)?,
            _ => {
                return Err(DecodeError::BadValue {
                    what: "multi op type",
                    value: header.op.into(),
                })
            }
        };
        ops.push(op);
    }
}

/// Decodes a whole request frame payload (after the length): header and body.
pub fn decode_request(payload: &[u8]) -> Result<(RequestHeader, Request)> {
    let mut r = Reader::new(payload);
    let header = RequestHeader::read(&mut r)?;
    let body = Request::decode_body(header.op, r.rest())?;
    Ok((header, body))
}

/// One result inside a multi reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    Create(String),
    Create2(Create2Response),
    Delete,
    SetData(Stat),
    Check,
    GetChildren(Vec<String>),
    GetData(GetDataResponse),
    Error(i32),
}

impl MultiResult {
    fn op(&self) -> i32 {
        match self {
            MultiResult::Create(_) => OpCode::Create.code(),
            MultiResult::Create2(_) => OpCode::Create2.code(),
            MultiResult::Delete => OpCode::Delete.code(),
            MultiResult::SetData(_) => OpCode::SetData.code(),
            MultiResult::Check => OpCode::Check.code(),
            MultiResult::GetChildren(_) => OpCode::GetChildren.code(),
            MultiResult::GetData(_) => OpCode::GetData.code(),
            MultiResult::Error(_) => OpCode::Error.code(),
        }
    }
}

/// A reply body, by the opcode of the request it answers. Error replies carry
/// no body (`Empty`), except multi, whose body lists every op's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Empty,
    Create(String),
    Create2(Create2Response),
    /// exists, setData and setACL.
    Stat(Stat),
    /// getData and reconfig.
    GetData(GetDataResponse),
    GetAcl(GetAclResponse),
    Children(Vec<String>),
    Children2(GetChildren2Response),
    Sync(String),
    AllChildrenNumber(i32),
    Ephemerals(Vec<String>),
    WhoAmI(Vec<ClientInfo>),
    Multi(Vec<MultiResult>),
    /// An `ErrorResponse` record: the body of a successful addWatch reply.
    ErrorResponse(i32),
    /// A `SetSASLResponse`: the server's next SASL token.
    Sasl(Option<Vec<u8>>),
}

impl Response {
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Response::Empty => {}
            Response::Create(p) | Response::Sync(p) => p.write(out),
            Response::Create2(b) => b.write(out),
            Response::Stat(s) => s.write(out),
            Response::GetData(b) => b.write(out),
            Response::GetAcl(b) => b.write(out),
            Response::Children(c) | Response::Ephemerals(c) => c.write(out),
            Response::Children2(b) => b.write(out),
            Response::AllChildrenNumber(n) | Response::ErrorResponse(n) => n.write(out),
            Response::WhoAmI(c) => c.write(out),
            Response::Sasl(token) => token.write(out),
            Response::Multi(results) => {
                for result in results {
                    let err = match result {
                        MultiResult::Error(e) => *e,
                        _ => 0,
                    };
                    MultiHeader {
                        op: result.op(),
                        done: false,
                        err,
                    }
                    .write(out);
                    match result {
                        MultiResult::Create(p) => p.write(out),
                        MultiResult::Create2(b) => b.write(out),
                        MultiResult::Delete | MultiResult::Check => {}
                        MultiResult::SetData(s) => s.write(out),
                        MultiResult::GetChildren(c) => c.write(out),
                        MultiResult::GetData(b) => b.write(out),
                        MultiResult::Error(e) => e.write(out),
                    }
                }
                MultiHeader {
                    op: -1,
                    done: true,
                    err: -1,
                }
                .write(out);
            }
        }
    }

    /// Decodes the body of a reply to a request of opcode `op`.
    pub fn decode(op: i32, body: &[u8]) -> Result<Response> {
        if body.is_empty() {
            return Ok(Response::Empty);
        }
        let mut r = Reader::new(body);
        let response = match OpCode::from_i32(op) {
            Some(OpCode::Create) => Response::Create(Jute::read(&mut r)?),
            Some(OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl) => {
                Response::Create2(Jute::read(&mut r)?)
            }
            Some(OpCode::Exists | OpCode::SetData | OpCode::SetAcl) => {
                Response::Stat(Jute::read(&mut r)?)
            }
            Some(OpCode::GetData | OpCode::Reconfig) => Response::GetData(Jute::read(&mut r)?),
            Some(OpCode::GetAcl) => Response::GetAcl(Jute::read(&mut r)?),
            Some(OpCode::GetChildren) => Response::Children(Jute::read(&mut r)?),
            Some(OpCode::GetChildren2) => Response::Children2(Jute::read(&mut r)?),
            Some(OpCode::Sync) => Response::Sync(Jute::read(&mut r)?),
            Some(OpCode::GetAllChildrenNumber) => Response::AllChildrenNumber(r.i32()?),
            Some(OpCode::GetEphemerals) => Response::Ephemerals(Jute::read(&mut r)?),
            Some(OpCode::WhoAmI) => Response::WhoAmI(Jute::read(&mut r)?),
            Some(OpCode::Multi | OpCode::MultiRead) => Response::Multi(read_multi_results(&mut r)?),
            Some(OpCode::AddWatch) => Response::ErrorResponse(r.i32()?),
            Some(OpCode::Sasl) => Response::Sasl(Jute::read(&mut r)?),
            _ => {
                return Err(DecodeError::BadValue {
                    what: "reply body for opcode",
                    value: op.into(),
                })
            }
        };
        r.finish()?;
        Ok(response)
    }
}

fn read_multi_results(r: &mut Reader<'_>) -> Result<Vec<MultiResult>> {
    let mut results = Vec::new();
    loop {
        let header = MultiHeader::read(r)?;
        if header.done {
            return Ok(results);
        }
        if results.len() == MAX_MULTI_OPS {
            return Err(DecodeError::BadValue {
                what: "multi result count",
                value: results.len() as i64,
            });
        }
        let result = match OpCode::from_i32(header.op) {
            Some(OpCode::Create) => MultiResult::Create(Jute::read(r)?),
            Some(OpCode::Create2) => MultiResult::Create2(Jute::read(r)?),
            Some(OpCode::Delete) => MultiResult::Delete,
            Some(OpCode::SetData) => MultiResult::SetData(Jute::read(r)?),
            Some(OpCode::Check) => MultiResult::Check,
            Some(OpCode::GetChildren) => MultiResult::GetChildren(Jute::read(r)?),
            Some(OpCode::GetData) => MultiResult::GetData(Jute::read(r)?),
            Some(OpCode::Error) => MultiResult::Error(r.i32()?),
            _ => {
                return Err(DecodeError::BadValue {
                    what: "multi result type",
                    value: header.op.into(),
                })
            }
        };
        results.push(result);
    }
}

/// Encodes a reply (header + body) without the frame length.
pub fn encode_reply(header: &ReplyHeader, body: &Response, out: &mut Vec<u8>) {
    header.write(out);
    body.write(out);
}

/// Decodes a reply payload given the opcode of the request it answers.
pub fn decode_reply(op: i32, payload: &[u8]) -> Result<(ReplyHeader, Response)> {
    let mut r = Reader::new(payload);
    let header = ReplyHeader::read(&mut r)?;
    let body = Response::decode(op, r.rest())?;
    Ok((header, body))
}
