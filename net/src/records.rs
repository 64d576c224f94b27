//! The jute records of the client protocol (`zookeeper.jute`), field for field.

use crate::jute::{record, Jute, Reader, Result, WriteJute};

record! {
    pub struct Id {
        pub scheme: String,
        pub id: String,
    }
}

record! {
    pub struct Acl {
        pub perms: i32,
        pub id: Id,
    }
}

impl Acl {
    pub fn new(perms: i32, scheme: &str, id: &str) -> Self {
        Acl {
            perms,
            id: Id {
                scheme: scheme.to_owned(),
                id: id.to_owned(),
            },
        }
    }
}

record! {
    /// A znode's metadata as clients see it.
    #[derive(Copy)]
    pub struct Stat {
        pub czxid: i64,
        pub mzxid: i64,
        pub ctime: i64,
        pub mtime: i64,
        pub version: i32,
        pub cversion: i32,
        pub aversion: i32,
        pub ephemeral_owner: i64,
        pub data_length: i32,
        pub num_children: i32,
        pub pzxid: i64,
    }
}

record! {
    pub struct ClientInfo {
        pub auth_scheme: String,
        pub user: String,
    }
}

record! {
    pub struct RequestHeader {
        pub xid: i32,
        pub op: i32,
    }
}

record! {
    pub struct ReplyHeader {
        pub xid: i32,
        pub zxid: i64,
        pub err: i32,
    }
}

record! {
    pub struct MultiHeader {
        pub op: i32,
        pub done: bool,
        pub err: i32,
    }
}

record! {
    /// The body of a watch notification (reply xid -1).
    pub struct WatcherEvent {
        pub event_type: i32,
        pub state: i32,
        pub path: String,
    }
}

/// The first frame a client sends. 3.4-era clients omit the trailing
/// `readOnly` byte, so it is optional on decode and kept as such.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: Option<bool>,
}

/// The server's answer to [`ConnectRequest`]; `read_only` is sent only when
/// the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: Option<bool>,
}

fn read_trailing_bool(r: &mut Reader<'_>) -> Result<Option<bool>> {
    if r.is_empty() {
        Ok(None)
    } else {
        r.bool().map(Some)
    }
}

impl Jute for ConnectRequest {
    const MIN_ENCODED_LEN: usize = 28;
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(ConnectRequest {
            protocol_version: r.i32()?,
            last_zxid_seen: r.i64()?,
            timeout: r.i32()?,
            session_id: r.i64()?,
            passwd: Jute::read(r)?,
            read_only: read_trailing_bool(r)?,
        })
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.put_i32(self.protocol_version);
        out.put_i64(self.last_zxid_seen);
        out.put_i32(self.timeout);
        out.put_i64(self.session_id);
        out.put_buffer(Some(&self.passwd));
        if let Some(ro) = self.read_only {
            out.put_bool(ro);
        }
    }
}

impl Jute for ConnectResponse {
    const MIN_ENCODED_LEN: usize = 20;
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(ConnectResponse {
            protocol_version: r.i32()?,
            timeout: r.i32()?,
            session_id: r.i64()?,
            passwd: Jute::read(r)?,
            read_only: read_trailing_bool(r)?,
        })
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.put_i32(self.protocol_version);
        out.put_i32(self.timeout);
        out.put_i64(self.session_id);
        out.put_buffer(Some(&self.passwd));
        if let Some(ro) = self.read_only {
            out.put_bool(ro);
        }
    }
}

record! {
    /// create, create2 and createContainer.
    pub struct CreateRequest {
        pub path: String,
        pub data: Option<Vec<u8>>,
        pub acl: Vec<Acl>,
        pub flags: i32,
    }
}

record! {
    pub struct CreateTtlRequest {
        pub path: String,
        pub data: Option<Vec<u8>>,
        pub acl: Vec<Acl>,
        pub flags: i32,
        pub ttl: i64,
    }
}

record! {
    pub struct DeleteRequest {
        pub path: String,
        pub version: i32,
    }
}

record! {
    /// exists, getData, getChildren and getChildren2.
    pub struct PathWatchRequest {
        pub path: String,
        pub watch: bool,
    }
}

record! {
    /// getACL, sync, getAllChildrenNumber and getEphemerals (whose field is the prefix).
    pub struct PathRequest {
        pub path: String,
    }
}

record! {
    pub struct SetDataRequest {
        pub path: String,
        pub data: Option<Vec<u8>>,
        pub version: i32,
    }
}

record! {
    pub struct SetAclRequest {
        pub path: String,
        pub acl: Vec<Acl>,
        pub version: i32,
    }
}

record! {
    pub struct CheckVersionRequest {
        pub path: String,
        pub version: i32,
    }
}

record! {
    pub struct ReconfigRequest {
        pub joining_servers: String,
        pub leaving_servers: String,
        pub new_members: String,
        pub cur_config_id: i64,
    }
}

record! {
    /// checkWatches and removeWatches.
    pub struct WatchesRequest {
        pub path: String,
        pub watcher_type: i32,
    }
}

record! {
    pub struct AddWatchRequest {
        pub path: String,
        pub mode: i32,
    }
}

record! {
    pub struct AuthPacket {
        pub auth_type: i32,
        pub scheme: String,
        pub auth: Vec<u8>,
    }
}

record! {
    pub struct SetWatches {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
    }
}

record! {
    pub struct SetWatches2 {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
        pub persistent_watches: Vec<String>,
        pub persistent_recursive_watches: Vec<String>,
    }
}

record! {
    pub struct Create2Response {
        pub path: String,
        pub stat: Stat,
    }
}

record! {
    pub struct GetDataResponse {
        pub data: Option<Vec<u8>>,
        pub stat: Stat,
    }
}

record! {
    pub struct GetAclResponse {
        pub acl: Vec<Acl>,
        pub stat: Stat,
    }
}

record! {
    pub struct GetChildren2Response {
        pub children: Vec<String>,
        pub stat: Stat,
    }
}
