//! Golden frames captured from kazoo 2.11 against Apache ZooKeeper 3.8.0
//! (`tests/golden/`, see its README): every frame decodes to exactly the
//! fields the independent Python decoder wrote to `expected.json`, and
//! re-encoding the decoded value gives back the identical bytes, length
//! prefix included.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use zoocore_net::consts::{limits, xid};
use zoocore_net::frame::{split_frame, write_frame, LENGTH_PREFIX};
use zoocore_net::jute::Reader;
use zoocore_net::message::encode_reply;
use zoocore_net::{
    decode_reply, decode_request, Acl, ConnectRequest, ConnectResponse, ErrorCode, EventType, Jute,
    KeeperState, MultiResult, OpCode, ReplyHeader, Request, RequestHeader, Response, Stat,
    WatcherEvent,
};

const MAX: usize = limits::DEFAULT_MAX_BUFFER;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read_json(name: &str) -> Value {
    let text = fs::read_to_string(golden_dir().join(name)).expect("read golden json");
    serde_json::from_str(&text).expect("golden json parses")
}

/// `expected.json`'s per-file entries.
fn expected_frames() -> Map<String, Value> {
    match read_json("expected.json") {
        Value::Object(mut top) => match top.remove("frames") {
            Some(Value::Object(frames)) => frames,
            other => panic!("expected.json: no frames object: {other:?}"),
        },
        other => panic!("expected.json is not an object: {other:?}"),
    }
}

fn bin_files() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(golden_dir()).expect("list golden dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "bin") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.insert(name, fs::read(&path).expect("read .bin"));
        }
    }
    out
}

fn golden(name: &str) -> Vec<u8> {
    fs::read(golden_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Splits a whole golden file into its single frame's payload, checking that
/// the frame covers the file exactly.
fn payload_of(name: &str, bytes: &[u8]) -> Vec<u8> {
    let (payload, used) = split_frame(bytes, MAX)
        .unwrap_or_else(|e| panic!("{name}: bad frame: {e}"))
        .unwrap_or_else(|| panic!("{name}: incomplete frame"));
    assert_eq!(
        used,
        bytes.len(),
        "{name}: the frame must be the whole file"
    );
    assert_eq!(payload.len() + LENGTH_PREFIX, bytes.len());
    payload.to_vec()
}

fn framed(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, write);
    out
}

/// A JSON object whose keys must all be looked at: `finish` fails on any key
/// the test did not check, so a field added to `expected.json` cannot be
/// silently ignored.
struct Fields<'a> {
    ctx: String,
    map: &'a Map<String, Value>,
    seen: BTreeSet<&'static str>,
}

impl<'a> Fields<'a> {
    fn new(ctx: impl Into<String>, value: &'a Value) -> Self {
        let ctx = ctx.into();
        let map = value
            .as_object()
            .unwrap_or_else(|| panic!("{ctx}: not an object: {value}"));
        Fields {
            ctx,
            map,
            seen: BTreeSet::new(),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn get(&mut self, key: &'static str) -> &'a Value {
        self.seen.insert(key);
        self.map
            .get(key)
            .unwrap_or_else(|| panic!("{}: missing key {key}", self.ctx))
    }

    fn i64(&mut self, key: &'static str) -> i64 {
        let v = self.get(key);
        v.as_i64()
            .unwrap_or_else(|| panic!("{}: {key} is not an integer: {v}", self.ctx))
    }

    fn i32(&mut self, key: &'static str) -> i32 {
        let v = self.i64(key);
        i32::try_from(v).unwrap_or_else(|_| panic!("{}: {key}={v} is not an int", self.ctx))
    }

    fn bool(&mut self, key: &'static str) -> bool {
        let v = self.get(key);
        v.as_bool()
            .unwrap_or_else(|| panic!("{}: {key} is not a bool: {v}", self.ctx))
    }

    fn str(&mut self, key: &'static str) -> &'a str {
        let v = self.get(key);
        v.as_str()
            .unwrap_or_else(|| panic!("{}: {key} is not a string: {v}", self.ctx))
    }

    fn array(&mut self, key: &'static str) -> &'a Vec<Value> {
        let v = self.get(key);
        v.as_array()
            .unwrap_or_else(|| panic!("{}: {key} is not an array: {v}", self.ctx))
    }

    /// Marks keys that carry no information beyond what was checked.
    fn ignore(&mut self, keys: &[&'static str]) {
        self.seen.extend(keys);
    }

    fn finish(self) {
        let unchecked: Vec<&String> = self
            .map
            .keys()
            .filter(|k| !self.seen.contains(k.as_str()))
            .collect();
        assert!(
            unchecked.is_empty(),
            "{}: expected.json keys not checked: {unchecked:?}",
            self.ctx
        );
    }
}

fn op_name_matches(op: i32, name: &str) -> bool {
    let op = OpCode::from_i32(op).unwrap_or_else(|| panic!("unknown opcode {op}"));
    format!("{op:?}").eq_ignore_ascii_case(name)
}

fn check_opname(f: &mut Fields<'_>, op: i32) {
    let name = f.str("opname");
    assert!(
        op_name_matches(op, name),
        "{}: opname {name} does not name opcode {op}",
        f.ctx
    );
}

fn check_errname(f: &mut Fields<'_>, err: i32) {
    let name = f.str("errname");
    let code = ErrorCode::from_i32(err).unwrap_or_else(|| panic!("unknown error code {err}"));
    assert_eq!(
        format!("{code:?}").to_ascii_uppercase(),
        name,
        "{}: errname",
        f.ctx
    );
}

/// `data` (utf-8 or null) and `data_hex` (absent for null) against a nullable buffer.
fn check_data(f: &mut Fields<'_>, data: &Option<Vec<u8>>) {
    let ctx = f.ctx.clone();
    match f.get("data") {
        Value::Null => {
            assert_eq!(*data, None, "{ctx}: data should be null");
            assert!(!f.has("data_hex") || f.get("data_hex").is_null());
        }
        Value::String(s) => {
            let hex = unhex(f.str("data_hex"));
            let data = data
                .as_deref()
                .unwrap_or_else(|| panic!("{ctx}: data decoded as null"));
            assert_eq!(data, hex.as_slice(), "{ctx}: data bytes");
            assert_eq!(data, s.as_bytes(), "{ctx}: data as utf-8");
        }
        other => panic!("{ctx}: bad data value {other}"),
    }
}

fn check_acl(ctx: &str, acl: &[Acl], expected: &[Value]) {
    assert_eq!(acl.len(), expected.len(), "{ctx}: acl count");
    for (i, (a, e)) in acl.iter().zip(expected).enumerate() {
        let mut f = Fields::new(format!("{ctx}.acl[{i}]"), e);
        assert_eq!(a.perms, f.i32("perms"), "{}: perms", f.ctx);
        assert_eq!(a.id.scheme, f.str("scheme"), "{}: scheme", f.ctx);
        assert_eq!(a.id.id, f.str("id"), "{}: id", f.ctx);
        f.finish();
    }
}

fn check_stat(ctx: &str, stat: &Stat, expected: &Value) {
    let mut f = Fields::new(format!("{ctx}.stat"), expected);
    assert_eq!(stat.czxid, f.i64("czxid"), "{ctx}: czxid");
    assert_eq!(stat.mzxid, f.i64("mzxid"), "{ctx}: mzxid");
    assert_eq!(stat.ctime, f.i64("ctime"), "{ctx}: ctime");
    assert_eq!(stat.mtime, f.i64("mtime"), "{ctx}: mtime");
    assert_eq!(stat.version, f.i32("version"), "{ctx}: version");
    assert_eq!(stat.cversion, f.i32("cversion"), "{ctx}: cversion");
    assert_eq!(stat.aversion, f.i32("aversion"), "{ctx}: aversion");
    assert_eq!(
        stat.ephemeral_owner,
        f.i64("ephemeralOwner"),
        "{ctx}: ephemeralOwner"
    );
    assert_eq!(stat.data_length, f.i32("dataLength"), "{ctx}: dataLength");
    assert_eq!(
        stat.num_children,
        f.i32("numChildren"),
        "{ctx}: numChildren"
    );
    assert_eq!(stat.pzxid, f.i64("pzxid"), "{ctx}: pzxid");
    f.finish();
}

/// The closing MultiHeader of a multi request or response.
fn check_multi_end(f: &mut Fields<'_>) {
    let mut end = Fields::new(format!("{}.end", f.ctx), f.get("end"));
    assert_eq!(end.i32("type"), -1);
    assert!(end.bool("done"));
    assert_eq!(end.i32("err"), -1);
    end.finish();
}

/// The body fields of a request (or of one op of a multi).
fn check_request_body(f: &mut Fields<'_>, req: &Request) {
    let ctx = f.ctx.clone();
    match req {
        Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => {
            assert_eq!(r.path, f.str("path"), "{ctx}: path");
            check_data(f, &r.data);
            check_acl(&ctx, &r.acl, f.array("acl"));
            assert_eq!(r.flags, f.i32("flags"), "{ctx}: flags");
        }
        Request::Delete(r) => {
            assert_eq!(r.path, f.str("path"), "{ctx}: path");
            assert_eq!(r.version, f.i32("version"), "{ctx}: version");
        }
        Request::Check(r) => {
            assert_eq!(r.path, f.str("path"), "{ctx}: path");
            assert_eq!(r.version, f.i32("version"), "{ctx}: version");
        }
        Request::SetData(r) => {
            assert_eq!(r.path, f.str("path"), "{ctx}: path");
            check_data(f, &r.data);
            assert_eq!(r.version, f.i32("version"), "{ctx}: version");
        }
        Request::Exists(r)
        | Request::GetData(r)
        | Request::GetChildren(r)
        | Request::GetChildren2(r) => {
            assert_eq!(r.path, f.str("path"), "{ctx}: path");
            assert_eq!(r.watch, f.bool("watch"), "{ctx}: watch");
        }
        Request::Multi(ops) | Request::MultiRead(ops) => {
            let expected = f.array("ops");
            assert_eq!(ops.len(), expected.len(), "{ctx}: op count");
            for (i, (op, e)) in ops.iter().zip(expected).enumerate() {
                let mut of = Fields::new(format!("{ctx}.ops[{i}]"), e);
                assert_eq!(op.op(), of.i32("type"), "{}: type", of.ctx);
                check_opname(&mut of, op.op());
                // What the encoder writes in every op header (and kazoo sent).
                assert!(!of.bool("done"), "{}: done", of.ctx);
                assert_eq!(of.i32("err"), -1, "{}: err", of.ctx);
                check_request_body(&mut of, op);
                of.finish();
            }
            check_multi_end(f);
        }
        Request::Ping | Request::CloseSession => {}
        other => panic!("{ctx}: no golden frame carries {other:?}"),
    }
}

fn check_request(name: &str, bytes: &[u8], e: &Value) -> (RequestHeader, Request) {
    let mut f = Fields::new(name, e);
    assert_eq!(f.str("direction"), "client_to_server");
    let payload = payload_of(name, bytes);
    assert_eq!(payload.len() as i64, f.i64("length"), "{name}: length");
    let (header, req) = decode_request(&payload).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(header.xid, f.i32("xid"), "{name}: xid");
    assert_eq!(header.op, f.i32("opcode"), "{name}: opcode");
    assert_eq!(req.op(), header.op, "{name}: variant opcode");
    check_opname(&mut f, header.op);
    check_request_body(&mut f, &req);
    f.ignore(&["kind", "file_size"]);
    f.finish();

    assert_eq!(
        req.encode(header.xid),
        payload,
        "{name}: re-encoded payload"
    );
    let reencoded = framed(|b| b.extend_from_slice(&req.encode(header.xid)));
    assert_eq!(reencoded, bytes, "{name}: re-encoded frame");
    (header, req)
}

fn check_multi_results(f: &mut Fields<'_>, results: &[MultiResult]) {
    let ctx = f.ctx.clone();
    let expected = f.array("results");
    assert_eq!(results.len(), expected.len(), "{ctx}: result count");
    for (i, (res, e)) in results.iter().zip(expected).enumerate() {
        let mut rf = Fields::new(format!("{ctx}.results[{i}]"), e);
        let ty = rf.i32("type");
        check_opname(&mut rf, ty);
        assert!(!rf.bool("done"), "{}: done", rf.ctx);
        let err = rf.i32("err");
        check_errname(&mut rf, err);
        let rctx = rf.ctx.clone();
        match res {
            MultiResult::Error(code) => {
                assert_eq!(ty, OpCode::Error.code(), "{rctx}: type");
                assert_eq!(*code, err, "{rctx}: header err");
                assert_eq!(*code, rf.i32("error_err"), "{rctx}: error_err");
            }
            ok => {
                assert_eq!(err, 0, "{rctx}: a successful result has err 0");
                let expected_type = match ok {
                    MultiResult::Create(path) => {
                        assert_eq!(path, rf.str("path"), "{rctx}: path");
                        OpCode::Create
                    }
                    MultiResult::Create2(r) => {
                        assert_eq!(r.path, rf.str("path"), "{rctx}: path");
                        check_stat(&rctx, &r.stat, rf.get("stat"));
                        OpCode::Create2
                    }
                    MultiResult::Delete => OpCode::Delete,
                    MultiResult::SetData(stat) => {
                        check_stat(&rctx, stat, rf.get("stat"));
                        OpCode::SetData
                    }
                    MultiResult::Check => OpCode::Check,
                    MultiResult::GetData(r) => {
                        check_data(&mut rf, &r.data);
                        check_stat(&rctx, &r.stat, rf.get("stat"));
                        OpCode::GetData
                    }
                    MultiResult::GetChildren(c) => panic!("{rctx}: unexpected children {c:?}"),
                    MultiResult::Error(_) => unreachable!(),
                };
                assert_eq!(ty, expected_type.code(), "{rctx}: type");
            }
        }
        rf.finish();
    }
    check_multi_end(f);
}

fn check_response(name: &str, bytes: &[u8], e: &Value, request_op: i32) {
    let mut f = Fields::new(name, e);
    assert_eq!(f.str("direction"), "server_to_client");
    let payload = payload_of(name, bytes);
    assert_eq!(payload.len() as i64, f.i64("length"), "{name}: length");
    let op = f.i32("opcode");
    assert_eq!(op, request_op, "{name}: opcode of the matching request");
    check_opname(&mut f, op);
    let (header, body) = decode_reply(op, &payload).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(header.xid, f.i32("xid"), "{name}: xid");
    assert_eq!(header.zxid, f.i64("zxid"), "{name}: zxid");
    assert_eq!(header.err, f.i32("err"), "{name}: err");
    check_errname(&mut f, header.err);

    match &body {
        Response::Empty => {
            for key in ["path", "data", "stat", "results"] {
                assert!(!f.has(key), "{name}: empty body but expected has {key}");
            }
        }
        Response::Create(path) => assert_eq!(path, f.str("path"), "{name}: path"),
        Response::Create2(r) => {
            assert_eq!(r.path, f.str("path"), "{name}: path");
            check_stat(name, &r.stat, f.get("stat"));
        }
        Response::Stat(stat) => check_stat(name, stat, f.get("stat")),
        Response::GetData(r) => {
            check_data(&mut f, &r.data);
            check_stat(name, &r.stat, f.get("stat"));
        }
        Response::Multi(results) => check_multi_results(&mut f, results),
        other => panic!("{name}: no golden frame carries {other:?}"),
    }
    f.ignore(&["kind", "file_size"]);
    f.finish();

    let reencoded = framed(|b| encode_reply(&header, &body, b));
    assert_eq!(reencoded, bytes, "{name}: re-encoded frame");
}

fn check_notification(name: &str, bytes: &[u8], e: &Value) {
    let mut f = Fields::new(name, e);
    assert_eq!(f.str("direction"), "server_to_client");
    let payload = payload_of(name, bytes);
    assert_eq!(payload.len() as i64, f.i64("length"), "{name}: length");
    let mut r = Reader::new(&payload);
    let header = ReplyHeader::read(&mut r).expect("reply header");
    let event = WatcherEvent::read(&mut r).expect("watcher event");
    r.finish().expect("nothing after the event");

    assert_eq!(header.xid, xid::NOTIFICATION);
    assert_eq!(header.xid, f.i32("xid"), "{name}: xid");
    assert_eq!(header.zxid, f.i64("zxid"), "{name}: zxid");
    assert_eq!(header.err, f.i32("err"), "{name}: err");
    check_errname(&mut f, header.err);
    assert_eq!(event.event_type, f.i32("type"), "{name}: type");
    assert_eq!(event.state, f.i32("state"), "{name}: state");
    assert_eq!(event.path, f.str("path"), "{name}: path");
    let ty = EventType::from_i32(event.event_type).expect("known event type");
    assert_eq!(format!("{ty:?}"), f.str("typename"));
    let state = KeeperState::from_i32(event.state).expect("known keeper state");
    assert_eq!(format!("{state:?}"), f.str("statename"));
    f.ignore(&["kind", "file_size"]);
    f.finish();

    let reencoded = framed(|b| {
        header.write(b);
        event.write(b);
    });
    assert_eq!(reencoded, bytes, "{name}: re-encoded frame");
}

fn check_passwd(f: &mut Fields<'_>, passwd: &[u8]) {
    assert_eq!(
        passwd.len() as i64,
        f.i64("passwd_len"),
        "{}: passwd_len",
        f.ctx
    );
    assert_eq!(passwd, unhex(f.str("passwd_hex")), "{}: passwd", f.ctx);
}

fn check_read_only(f: &mut Fields<'_>, read_only: Option<bool>) {
    if f.bool("readOnly_present") {
        assert_eq!(read_only, Some(f.bool("readOnly")), "{}: readOnly", f.ctx);
    } else {
        assert_eq!(read_only, None, "{}: readOnly must be absent", f.ctx);
        assert!(!f.has("readOnly") || f.get("readOnly").is_null());
    }
}

fn check_connect_request(name: &str, bytes: &[u8], e: &Value) -> ConnectRequest {
    let mut f = Fields::new(name, e);
    assert_eq!(f.str("direction"), "client_to_server");
    let payload = payload_of(name, bytes);
    assert_eq!(payload.len() as i64, f.i64("length"), "{name}: length");
    let req = ConnectRequest::decode(&payload).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(req.protocol_version, f.i32("protocolVersion"));
    assert_eq!(req.last_zxid_seen, f.i64("lastZxidSeen"));
    assert_eq!(req.timeout, f.i32("timeOut"));
    assert_eq!(req.session_id, f.i64("sessionId"));
    check_passwd(&mut f, &req.passwd);
    check_read_only(&mut f, req.read_only);
    f.ignore(&["kind", "file_size"]);
    f.finish();

    assert_eq!(req.encode(), payload, "{name}: re-encoded payload");
    assert_eq!(framed(|b| req.write(b)), bytes, "{name}: re-encoded frame");
    req
}

fn check_connect_response(name: &str, bytes: &[u8], e: &Value) -> ConnectResponse {
    let mut f = Fields::new(name, e);
    assert_eq!(f.str("direction"), "server_to_client");
    let payload = payload_of(name, bytes);
    assert_eq!(payload.len() as i64, f.i64("length"), "{name}: length");
    let resp = ConnectResponse::decode(&payload).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(resp.protocol_version, f.i32("protocolVersion"));
    assert_eq!(resp.timeout, f.i32("timeOut"));
    assert_eq!(resp.session_id, f.i64("sessionId"));
    check_passwd(&mut f, &resp.passwd);
    check_read_only(&mut f, resp.read_only);
    f.ignore(&["kind", "file_size"]);
    f.finish();

    assert_eq!(resp.encode(), payload, "{name}: re-encoded payload");
    assert_eq!(framed(|b| resp.write(b)), bytes, "{name}: re-encoded frame");
    resp
}

/// Every `.bin` file is described by `expected.json`, and every description has its file.
#[test]
fn every_golden_file_is_described() {
    let bins = bin_files();
    let expected = expected_frames();
    let bin_names: BTreeSet<&String> = bins.keys().collect();
    let json_names: BTreeSet<&String> = expected.keys().collect();
    assert_eq!(bin_names, json_names);
    assert!(bins.len() >= 23, "golden set shrank: {} files", bins.len());
    for (name, bytes) in &bins {
        let mut f = Fields::new(name.as_str(), &expected[name]);
        assert_eq!(bytes.len() as i64, f.i64("file_size"), "{name}: file_size");
    }
}

/// Decodes every golden frame, compares each field with `expected.json` and
/// checks that re-encoding reproduces the bytes.
#[test]
fn golden_frames_decode_to_expected_fields_and_reencode_identically() {
    let bins = bin_files();
    let expected = expected_frames();

    // Requests first: replies are decoded with the opcode of the request with
    // the same xid, as a client does.
    let mut request_ops: HashMap<i32, i32> = HashMap::new();
    let mut checked = 0;
    for (name, bytes) in &bins {
        let e = &expected[name];
        match e["kind"].as_str() {
            Some("Request") => {
                let (header, _) = check_request(name, bytes, e);
                if let Some(prev) = request_ops.insert(header.xid, header.op) {
                    panic!("{name}: xid {} reused (op {prev})", header.xid);
                }
                checked += 1;
            }
            Some("ConnectRequest") => {
                let req = check_connect_request(name, bytes, e);
                assert_eq!(req.read_only, Some(false));
                checked += 1;
            }
            _ => {}
        }
    }
    for (name, bytes) in &bins {
        let e = &expected[name];
        match e["kind"].as_str() {
            Some("Response") => {
                let reply_xid = e["xid"].as_i64().expect("xid") as i32;
                let op = *request_ops
                    .get(&reply_xid)
                    .unwrap_or_else(|| panic!("{name}: no golden request with xid {reply_xid}"));
                check_response(name, bytes, e, op);
                checked += 1;
            }
            Some("WatcherEvent") => {
                check_notification(name, bytes, e);
                checked += 1;
            }
            Some("ConnectResponse") => {
                let resp = check_connect_response(name, bytes, e);
                assert_eq!(resp.read_only, Some(false));
                checked += 1;
            }
            Some("Request" | "ConnectRequest") => {}
            other => panic!("{name}: unknown kind {other:?}"),
        }
    }
    assert_eq!(checked, bins.len(), "every golden frame was checked");
}

/// Spot checks written out by hand, independent of `expected.json`.
#[test]
fn golden_frames_hand_checked() {
    let bytes = golden("create_request.bin");
    let (header, req) = decode_request(payload_of("create", &bytes).as_slice()).unwrap();
    assert_eq!(header, RequestHeader { xid: 1, op: 1 });
    let Request::Create(create) = req else {
        panic!("not a create: {req:?}")
    };
    assert_eq!(create.path, "/golden");
    assert_eq!(create.data.as_deref(), Some(&b"hello"[..]));
    assert_eq!(create.acl, vec![Acl::new(31, "world", "anyone")]);
    assert_eq!(create.flags, 0);

    let bytes = golden("multi_error_response.bin");
    let (header, body) = decode_reply(OpCode::Multi.code(), &payload_of("multi", &bytes)).unwrap();
    assert_eq!(
        header,
        ReplyHeader {
            xid: 7,
            zxid: 6,
            err: 0
        }
    );
    assert_eq!(
        body,
        Response::Multi(vec![
            MultiResult::Error(ErrorCode::Ok.code()),
            MultiResult::Error(ErrorCode::BadVersion.code()),
            MultiResult::Error(ErrorCode::RuntimeInconsistency.code()),
        ])
    );

    let bytes = golden("ping_request.bin");
    let (header, req) = decode_request(&payload_of("ping", &bytes)).unwrap();
    assert_eq!((header.xid, req), (xid::PING, Request::Ping));

    let bytes = golden("close_response.bin");
    let (header, body) =
        decode_reply(OpCode::CloseSession.code(), &payload_of("close", &bytes)).unwrap();
    assert_eq!(
        (header.xid, header.zxid, header.err, body),
        (10, 11, 0, Response::Empty)
    );
}

/// A 3.4-era client omits the trailing readOnly byte: the request still
/// decodes (read_only None) and re-encodes to the stripped bytes.
#[test]
fn connect_request_without_read_only_byte() {
    let full = golden("connect_request.bin");
    let payload = payload_of("connect_request.bin", &full);
    assert_eq!(
        payload.last(),
        Some(&0),
        "the captured readOnly byte is false"
    );
    let stripped_payload = &payload[..payload.len() - 1];
    let stripped = framed(|b| b.extend_from_slice(stripped_payload));
    assert_eq!(stripped.len(), full.len() - 1);
    assert_eq!(&stripped[..4], &44i32.to_be_bytes());

    let (p, used) = split_frame(&stripped, MAX).unwrap().unwrap();
    assert_eq!(used, stripped.len());
    let req = ConnectRequest::decode(p).expect("3.4-era connect request decodes");
    let with_ro = ConnectRequest::decode(&payload).unwrap();
    assert_eq!(req.read_only, None);
    assert_eq!(
        req,
        ConnectRequest {
            read_only: None,
            ..with_ro
        }
    );
    assert_eq!(req.protocol_version, 0);
    assert_eq!(req.timeout, 10_000);
    assert_eq!(req.passwd, vec![0; 16]);
    assert_eq!(req.encode(), stripped_payload);
    assert_eq!(framed(|b| req.write(b)), stripped);

    // The same for the server's answer to such a client.
    let full = golden("connect_response.bin");
    let payload = payload_of("connect_response.bin", &full);
    let stripped_payload = &payload[..payload.len() - 1];
    let resp = ConnectResponse::decode(stripped_payload).expect("response without readOnly");
    assert_eq!(resp.read_only, None);
    assert_eq!(
        resp,
        ConnectResponse {
            read_only: None,
            ..ConnectResponse::decode(&payload).unwrap()
        }
    );
    assert_eq!(resp.encode(), stripped_payload);

    // A readOnly=true byte is kept as such.
    let mut ro_true = payload_of("connect_request.bin", &golden("connect_request.bin"));
    *ro_true.last_mut().unwrap() = 1;
    let req = ConnectRequest::decode(&ro_true).unwrap();
    assert_eq!(req.read_only, Some(true));
    assert_eq!(req.encode(), ro_true);
}

/// The whole recorded connection, as a server and a client would read it:
/// each direction's frames concatenated into one stream, split frame by frame,
/// requests decoded (the first as the ConnectRequest), replies decoded with
/// the opcode of their pending request and the notification as a WatcherEvent.
#[test]
fn transcript_streams_decode_and_reencode() {
    let transcript = read_json("transcript.json");
    let frames = transcript["frames"].as_array().expect("frames");
    let mut client_stream = Vec::new();
    let mut server_stream = Vec::new();
    for frame in frames {
        let bytes = unhex(frame["hex"].as_str().expect("hex"));
        match frame["direction"].as_str() {
            Some("client_to_server") => client_stream.extend_from_slice(&bytes),
            Some("server_to_client") => server_stream.extend_from_slice(&bytes),
            other => panic!("bad direction {other:?}"),
        }
    }
    let expect = |direction: &str| {
        frames
            .iter()
            .filter(|f| f["direction"] == direction)
            .collect::<Vec<_>>()
    };

    // Client to server, as the server's connection reader sees it.
    let mut pending: HashMap<i32, i32> = HashMap::new();
    let mut rebuilt = Vec::new();
    let mut rest = client_stream.as_slice();
    for (i, exp) in expect("client_to_server").into_iter().enumerate() {
        let (payload, used) = split_frame(rest, MAX).unwrap().expect("complete frame");
        if i == 0 {
            assert_eq!(exp["opname"], "ConnectRequest");
            let req = ConnectRequest::decode(payload).unwrap();
            write_frame(&mut rebuilt, |b| req.write(b));
        } else {
            let (header, req) = decode_request(payload).unwrap();
            assert_eq!(Some(i64::from(header.xid)), exp["xid"].as_i64());
            assert_eq!(Some(i64::from(header.op)), exp["opcode"].as_i64());
            assert!(op_name_matches(header.op, exp["opname"].as_str().unwrap()));
            pending.insert(header.xid, header.op);
            write_frame(&mut rebuilt, |b| {
                b.extend_from_slice(&req.encode(header.xid))
            });
        }
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    assert_eq!(split_frame(rest, MAX), Ok(None));
    assert_eq!(rebuilt, client_stream);

    // Server to client, as the client reads it.
    let mut rebuilt = Vec::new();
    let mut rest = server_stream.as_slice();
    for (i, exp) in expect("server_to_client").into_iter().enumerate() {
        let (payload, used) = split_frame(rest, MAX).unwrap().expect("complete frame");
        if i == 0 {
            let resp = ConnectResponse::decode(payload).unwrap();
            write_frame(&mut rebuilt, |b| resp.write(b));
        } else {
            let mut r = Reader::new(payload);
            let header = ReplyHeader::read(&mut r).unwrap();
            assert_eq!(Some(i64::from(header.xid)), exp["xid"].as_i64());
            assert_eq!(Some(i64::from(header.err)), exp["err"].as_i64());
            if header.xid == xid::NOTIFICATION {
                let event = WatcherEvent::decode(r.rest()).unwrap();
                write_frame(&mut rebuilt, |b| {
                    header.write(b);
                    event.write(b);
                });
            } else {
                let op = pending
                    .remove(&header.xid)
                    .expect("reply to a pending request");
                assert_eq!(Some(i64::from(op)), exp["opcode"].as_i64());
                let (h, body) = decode_reply(op, payload).unwrap();
                assert_eq!(h, header);
                write_frame(&mut rebuilt, |b| encode_reply(&h, &body, b));
            }
        }
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    assert!(pending.is_empty(), "unanswered requests: {pending:?}");
    assert_eq!(rebuilt, server_stream);
}
