//! Property tests: every message and record of the codec round-trips
//! (encode, then decode gives back the same value and consumes every byte),
//! and every strict prefix of an encoding is refused rather than misread.
//!
//! Coverage of the message enums is enforced at compile time: the
//! `*_variant` functions below match exhaustively, so a new `Request`,
//! `Response` or `MultiResult` variant does not compile until it has a
//! generator here, and `generators_cover_every_variant` checks that the
//! generators actually produce each one.

use std::collections::BTreeSet;
use std::fmt::Debug;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::TestRunner;
use zoocore_net::frame::{split_frame, write_frame, LENGTH_PREFIX};
use zoocore_net::jute::Reader;
use zoocore_net::message::{encode_reply, MAX_MULTI_OPS};
use zoocore_net::records::*;
use zoocore_net::{
    decode_reply, decode_request, DecodeError, Jute, MultiResult, OpCode, Request, Response,
};

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// Arbitrary valid UTF-8 (any `char`, so multi-byte sequences too), short.
fn string() -> impl Strategy<Value = String> + Clone {
    vec(any::<char>(), 0..12).prop_map(|cs| cs.into_iter().collect())
}

/// A non-null buffer (`Vec<u8>` fields decode null as empty, so never null here).
fn bytes() -> impl Strategy<Value = Vec<u8>> + Clone {
    vec(any::<u8>(), 0..24)
}

/// A nullable buffer: None, Some(empty) and Some(bytes) all occur.
fn opt_bytes() -> impl Strategy<Value = Option<Vec<u8>>> + Clone {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Vec::new())),
        4 => bytes().prop_map(Some),
    ]
}

fn strings() -> impl Strategy<Value = Vec<String>> + Clone {
    vec(string(), 0..5)
}

fn id() -> impl Strategy<Value = Id> + Clone {
    (string(), string()).prop_map(|(scheme, id)| Id { scheme, id })
}

fn acl() -> impl Strategy<Value = Acl> + Clone {
    (any::<i32>(), id()).prop_map(|(perms, id)| Acl { perms, id })
}

fn acls() -> impl Strategy<Value = Vec<Acl>> + Clone {
    vec(acl(), 0..4)
}

fn stat() -> impl Strategy<Value = Stat> + Clone {
    (
        (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
        (any::<i32>(), any::<i32>(), any::<i32>()),
        (any::<i64>(), any::<i32>(), any::<i32>(), any::<i64>()),
    )
        .prop_map(
            |(
                (czxid, mzxid, ctime, mtime),
                (version, cversion, aversion),
                (ephemeral_owner, data_length, num_children, pzxid),
            )| Stat {
                czxid,
                mzxid,
                ctime,
                mtime,
                version,
                cversion,
                aversion,
                ephemeral_owner,
                data_length,
                num_children,
                pzxid,
            },
        )
}

fn client_info() -> impl Strategy<Value = ClientInfo> + Clone {
    (string(), string()).prop_map(|(auth_scheme, user)| ClientInfo { auth_scheme, user })
}

fn request_header() -> impl Strategy<Value = RequestHeader> + Clone {
    (any::<i32>(), any::<i32>()).prop_map(|(xid, op)| RequestHeader { xid, op })
}

fn reply_header() -> impl Strategy<Value = ReplyHeader> + Clone {
    (any::<i32>(), any::<i64>(), any::<i32>()).prop_map(|(xid, zxid, err)| ReplyHeader {
        xid,
        zxid,
        err,
    })
}

fn multi_header() -> impl Strategy<Value = MultiHeader> + Clone {
    (any::<i32>(), any::<bool>(), any::<i32>()).prop_map(|(op, done, err)| MultiHeader {
        op,
        done,
        err,
    })
}

fn watcher_event() -> impl Strategy<Value = WatcherEvent> + Clone {
    (any::<i32>(), any::<i32>(), string()).prop_map(|(event_type, state, path)| WatcherEvent {
        event_type,
        state,
        path,
    })
}

fn connect_request() -> impl Strategy<Value = ConnectRequest> + Clone {
    (
        any::<i32>(),
        any::<i64>(),
        any::<i32>(),
        any::<i64>(),
        bytes(),
        option::of(any::<bool>()),
    )
        .prop_map(
            |(protocol_version, last_zxid_seen, timeout, session_id, passwd, read_only)| {
                ConnectRequest {
                    protocol_version,
                    last_zxid_seen,
                    timeout,
                    session_id,
                    passwd,
                    read_only,
                }
            },
        )
}

fn connect_response() -> impl Strategy<Value = ConnectResponse> + Clone {
    (
        any::<i32>(),
        any::<i32>(),
        any::<i64>(),
        bytes(),
        option::of(any::<bool>()),
    )
        .prop_map(
            |(protocol_version, timeout, session_id, passwd, read_only)| ConnectResponse {
                protocol_version,
                timeout,
                session_id,
                passwd,
                read_only,
            },
        )
}

fn create_request() -> impl Strategy<Value = CreateRequest> + Clone {
    (string(), opt_bytes(), acls(), any::<i32>()).prop_map(|(path, data, acl, flags)| {
        CreateRequest {
            path,
            data,
            acl,
            flags,
        }
    })
}

fn create_ttl_request() -> impl Strategy<Value = CreateTtlRequest> + Clone {
    (string(), opt_bytes(), acls(), any::<i32>(), any::<i64>()).prop_map(
        |(path, data, acl, flags, ttl)| CreateTtlRequest {
            path,
            data,
            acl,
            flags,
            ttl,
        },
    )
}

fn delete_request() -> impl Strategy<Value = DeleteRequest> + Clone {
    (string(), any::<i32>()).prop_map(|(path, version)| DeleteRequest { path, version })
}

fn path_watch() -> impl Strategy<Value = PathWatchRequest> + Clone {
    (string(), any::<bool>()).prop_map(|(path, watch)| PathWatchRequest { path, watch })
}

fn path_request() -> impl Strategy<Value = PathRequest> + Clone {
    string().prop_map(|path| PathRequest { path })
}

fn set_data_request() -> impl Strategy<Value = SetDataRequest> + Clone {
    (string(), opt_bytes(), any::<i32>()).prop_map(|(path, data, version)| SetDataRequest {
        path,
        data,
        version,
    })
}

fn set_acl_request() -> impl Strategy<Value = SetAclRequest> + Clone {
    (string(), acls(), any::<i32>()).prop_map(|(path, acl, version)| SetAclRequest {
        path,
        acl,
        version,
    })
}

fn check_request() -> impl Strategy<Value = CheckVersionRequest> + Clone {
    (string(), any::<i32>()).prop_map(|(path, version)| CheckVersionRequest { path, version })
}

fn reconfig_request() -> impl Strategy<Value = ReconfigRequest> + Clone {
    (string(), string(), string(), any::<i64>()).prop_map(
        |(joining_servers, leaving_servers, new_members, cur_config_id)| ReconfigRequest {
            joining_servers,
            leaving_servers,
            new_members,
            cur_config_id,
        },
    )
}

fn watches_request() -> impl Strategy<Value = WatchesRequest> + Clone {
    (string(), any::<i32>()).prop_map(|(path, watcher_type)| WatchesRequest { path, watcher_type })
}

fn add_watch_request() -> impl Strategy<Value = AddWatchRequest> + Clone {
    (string(), any::<i32>()).prop_map(|(path, mode)| AddWatchRequest { path, mode })
}

fn auth_packet() -> impl Strategy<Value = AuthPacket> + Clone {
    (any::<i32>(), string(), bytes()).prop_map(|(auth_type, scheme, auth)| AuthPacket {
        auth_type,
        scheme,
        auth,
    })
}

fn set_watches() -> impl Strategy<Value = SetWatches> + Clone {
    (any::<i64>(), strings(), strings(), strings()).prop_map(
        |(relative_zxid, data_watches, exist_watches, child_watches)| SetWatches {
            relative_zxid,
            data_watches,
            exist_watches,
            child_watches,
        },
    )
}

fn set_watches2() -> impl Strategy<Value = SetWatches2> + Clone {
    (
        any::<i64>(),
        strings(),
        strings(),
        strings(),
        strings(),
        strings(),
    )
        .prop_map(
            |(
                relative_zxid,
                data_watches,
                exist_watches,
                child_watches,
                persistent_watches,
                persistent_recursive_watches,
            )| SetWatches2 {
                relative_zxid,
                data_watches,
                exist_watches,
                child_watches,
                persistent_watches,
                persistent_recursive_watches,
            },
        )
}

fn create2_response() -> impl Strategy<Value = Create2Response> + Clone {
    (string(), stat()).prop_map(|(path, stat)| Create2Response { path, stat })
}

fn get_data_response() -> impl Strategy<Value = GetDataResponse> + Clone {
    (opt_bytes(), stat()).prop_map(|(data, stat)| GetDataResponse { data, stat })
}

fn get_acl_response() -> impl Strategy<Value = GetAclResponse> + Clone {
    (acls(), stat()).prop_map(|(acl, stat)| GetAclResponse { acl, stat })
}

fn get_children2_response() -> impl Strategy<Value = GetChildren2Response> + Clone {
    (strings(), stat()).prop_map(|(children, stat)| GetChildren2Response { children, stat })
}

/// Opcodes the codec does not serve: unknown values and the known opcodes
/// that are never client requests (notification, createSession, error).
fn unsupported_op() -> impl Strategy<Value = i32> + Clone {
    prop_oneof![
        any::<i32>().prop_filter("a served opcode", |op| OpCode::from_i32(*op).is_none()),
        prop::sample::select(vec![
            OpCode::Notification.code(),
            OpCode::CreateSession.code(),
            OpCode::Error.code(),
        ]),
    ]
}

/// The ops a multi or multiRead may carry (`MultiOperationRecord`).
fn multi_op() -> BoxedStrategy<Request> {
    Union::new(vec![
        create_request().prop_map(Request::Create).boxed(),
        create_request().prop_map(Request::Create2).boxed(),
        create_request().prop_map(Request::CreateContainer).boxed(),
        create_ttl_request().prop_map(Request::CreateTtl).boxed(),
        delete_request().prop_map(Request::Delete).boxed(),
        set_data_request().prop_map(Request::SetData).boxed(),
        check_request().prop_map(Request::Check).boxed(),
        path_watch().prop_map(Request::GetChildren).boxed(),
        path_watch().prop_map(Request::GetData).boxed(),
    ])
    .boxed()
}

fn request() -> BoxedStrategy<Request> {
    Union::new(vec![
        create_request().prop_map(Request::Create).boxed(),
        create_request().prop_map(Request::Create2).boxed(),
        create_request().prop_map(Request::CreateContainer).boxed(),
        create_ttl_request().prop_map(Request::CreateTtl).boxed(),
        delete_request().prop_map(Request::Delete).boxed(),
        path_request().prop_map(Request::DeleteContainer).boxed(),
        path_watch().prop_map(Request::Exists).boxed(),
        path_watch().prop_map(Request::GetData).boxed(),
        set_data_request().prop_map(Request::SetData).boxed(),
        path_request().prop_map(Request::GetAcl).boxed(),
        set_acl_request().prop_map(Request::SetAcl).boxed(),
        path_watch().prop_map(Request::GetChildren).boxed(),
        path_watch().prop_map(Request::GetChildren2).boxed(),
        path_request().prop_map(Request::Sync).boxed(),
        Just(Request::Ping).boxed(),
        check_request().prop_map(Request::Check).boxed(),
        vec(multi_op(), 0..6).prop_map(Request::Multi).boxed(),
        vec(multi_op(), 0..6).prop_map(Request::MultiRead).boxed(),
        reconfig_request().prop_map(Request::Reconfig).boxed(),
        watches_request().prop_map(Request::CheckWatches).boxed(),
        watches_request().prop_map(Request::RemoveWatches).boxed(),
        auth_packet().prop_map(Request::Auth).boxed(),
        opt_bytes().prop_map(Request::Sasl).boxed(),
        set_watches().prop_map(Request::SetWatches).boxed(),
        set_watches2().prop_map(Request::SetWatches2).boxed(),
        path_request().prop_map(Request::GetEphemerals).boxed(),
        path_request()
            .prop_map(Request::GetAllChildrenNumber)
            .boxed(),
        add_watch_request().prop_map(Request::AddWatch).boxed(),
        Just(Request::WhoAmI).boxed(),
        Just(Request::CloseSession).boxed(),
        unsupported_op()
            .prop_map(|op| Request::Unsupported { op })
            .boxed(),
    ])
    .boxed()
}

fn multi_result() -> BoxedStrategy<MultiResult> {
    Union::new(vec![
        string().prop_map(MultiResult::Create).boxed(),
        create2_response().prop_map(MultiResult::Create2).boxed(),
        Just(MultiResult::Delete).boxed(),
        stat().prop_map(MultiResult::SetData).boxed(),
        Just(MultiResult::Check).boxed(),
        strings().prop_map(MultiResult::GetChildren).boxed(),
        get_data_response().prop_map(MultiResult::GetData).boxed(),
        any::<i32>().prop_map(MultiResult::Error).boxed(),
    ])
    .boxed()
}

fn response() -> BoxedStrategy<Response> {
    Union::new(vec![
        Just(Response::Empty).boxed(),
        string().prop_map(Response::Create).boxed(),
        create2_response().prop_map(Response::Create2).boxed(),
        stat().prop_map(Response::Stat).boxed(),
        get_data_response().prop_map(Response::GetData).boxed(),
        get_acl_response().prop_map(Response::GetAcl).boxed(),
        strings().prop_map(Response::Children).boxed(),
        get_children2_response()
            .prop_map(Response::Children2)
            .boxed(),
        string().prop_map(Response::Sync).boxed(),
        any::<i32>().prop_map(Response::AllChildrenNumber).boxed(),
        strings().prop_map(Response::Ephemerals).boxed(),
        vec(client_info(), 0..4).prop_map(Response::WhoAmI).boxed(),
        vec(multi_result(), 0..6).prop_map(Response::Multi).boxed(),
        any::<i32>().prop_map(Response::ErrorResponse).boxed(),
        opt_bytes().prop_map(Response::Sasl).boxed(),
    ])
    .boxed()
}

/// The opcodes whose reply body a response variant is. `Empty` (a bare reply
/// header: errors, ping, close, ...) answers any opcode.
fn answered_ops(resp: &Response) -> Vec<i32> {
    use OpCode as O;
    let ops: &[OpCode] = match resp {
        Response::Empty => {
            return OpCode::ALL
                .iter()
                .map(|o| o.code())
                .chain([42, -77])
                .collect()
        }
        Response::Create(_) => &[O::Create],
        Response::Create2(_) => &[O::Create2, O::CreateContainer, O::CreateTtl],
        Response::Stat(_) => &[O::Exists, O::SetData, O::SetAcl],
        Response::GetData(_) => &[O::GetData, O::Reconfig],
        Response::GetAcl(_) => &[O::GetAcl],
        Response::Children(_) => &[O::GetChildren],
        Response::Children2(_) => &[O::GetChildren2],
        Response::Sync(_) => &[O::Sync],
        Response::AllChildrenNumber(_) => &[O::GetAllChildrenNumber],
        Response::Ephemerals(_) => &[O::GetEphemerals],
        Response::WhoAmI(_) => &[O::WhoAmI],
        Response::Multi(_) => &[O::Multi, O::MultiRead],
        Response::ErrorResponse(_) => &[O::AddWatch],
        Response::Sasl(_) => &[O::Sasl],
    };
    ops.iter().map(|o| o.code()).collect()
}

/// A response together with the opcode of a request it answers.
fn op_and_response() -> impl Strategy<Value = (i32, Response)> {
    response().prop_flat_map(|resp| {
        let ops = answered_ops(&resp);
        (prop::sample::select(ops), Just(resp))
    })
}

// ---------------------------------------------------------------------------
// Variant coverage (exhaustive matches: a new variant must be added here)
// ---------------------------------------------------------------------------

fn request_variant(r: &Request) -> &'static str {
    match r {
        Request::Create(_) => "Create",
        Request::Create2(_) => "Create2",
        Request::CreateContainer(_) => "CreateContainer",
        Request::CreateTtl(_) => "CreateTtl",
        Request::Delete(_) => "Delete",
        Request::DeleteContainer(_) => "DeleteContainer",
        Request::Exists(_) => "Exists",
        Request::GetData(_) => "GetData",
        Request::SetData(_) => "SetData",
        Request::GetAcl(_) => "GetAcl",
        Request::SetAcl(_) => "SetAcl",
        Request::GetChildren(_) => "GetChildren",
        Request::GetChildren2(_) => "GetChildren2",
        Request::Sync(_) => "Sync",
        Request::Ping => "Ping",
        Request::Check(_) => "Check",
        Request::Multi(_) => "Multi",
        Request::MultiRead(_) => "MultiRead",
        Request::Reconfig(_) => "Reconfig",
        Request::CheckWatches(_) => "CheckWatches",
        Request::RemoveWatches(_) => "RemoveWatches",
        Request::Auth(_) => "Auth",
        Request::Sasl(_) => "Sasl",
        Request::SetWatches(_) => "SetWatches",
        Request::SetWatches2(_) => "SetWatches2",
        Request::GetEphemerals(_) => "GetEphemerals",
        Request::GetAllChildrenNumber(_) => "GetAllChildrenNumber",
        Request::AddWatch(_) => "AddWatch",
        Request::WhoAmI => "WhoAmI",
        Request::CloseSession => "CloseSession",
        Request::Unsupported { .. } => "Unsupported",
    }
}
const REQUEST_VARIANTS: usize = 31;

fn response_variant(r: &Response) -> &'static str {
    match r {
        Response::Empty => "Empty",
        Response::Create(_) => "Create",
        Response::Create2(_) => "Create2",
        Response::Stat(_) => "Stat",
        Response::GetData(_) => "GetData",
        Response::GetAcl(_) => "GetAcl",
        Response::Children(_) => "Children",
        Response::Children2(_) => "Children2",
        Response::Sync(_) => "Sync",
        Response::AllChildrenNumber(_) => "AllChildrenNumber",
        Response::Ephemerals(_) => "Ephemerals",
        Response::WhoAmI(_) => "WhoAmI",
        Response::Multi(_) => "Multi",
        Response::ErrorResponse(_) => "ErrorResponse",
        Response::Sasl(_) => "Sasl",
    }
}
const RESPONSE_VARIANTS: usize = 15;

fn multi_result_variant(r: &MultiResult) -> &'static str {
    match r {
        MultiResult::Create(_) => "Create",
        MultiResult::Create2(_) => "Create2",
        MultiResult::Delete => "Delete",
        MultiResult::SetData(_) => "SetData",
        MultiResult::Check => "Check",
        MultiResult::GetChildren(_) => "GetChildren",
        MultiResult::GetData(_) => "GetData",
        MultiResult::Error(_) => "Error",
    }
}
const MULTI_RESULT_VARIANTS: usize = 8;

fn sample_variants<T: Debug>(
    strategy: impl Strategy<Value = T>,
    name: impl Fn(&T) -> &'static str,
    samples: usize,
) -> BTreeSet<&'static str> {
    let mut runner = TestRunner::deterministic();
    (0..samples)
        .map(|_| name(&strategy.new_tree(&mut runner).expect("generate").current()))
        .collect()
}

#[test]
fn generators_cover_every_variant() {
    let reqs = sample_variants(request(), request_variant, 3000);
    assert_eq!(reqs.len(), REQUEST_VARIANTS, "requests generated: {reqs:?}");
    let multi_ops = sample_variants(multi_op(), request_variant, 1000);
    assert_eq!(multi_ops.len(), 9, "multi ops generated: {multi_ops:?}");
    let resps = sample_variants(response(), response_variant, 2000);
    assert_eq!(
        resps.len(),
        RESPONSE_VARIANTS,
        "responses generated: {resps:?}"
    );
    let results = sample_variants(multi_result(), multi_result_variant, 1000);
    assert_eq!(
        results.len(),
        MULTI_RESULT_VARIANTS,
        "results generated: {results:?}"
    );
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

fn ok<T>(r: Result<T, DecodeError>) -> Result<T, TestCaseError> {
    r.map_err(|e| TestCaseError::fail(format!("decode failed: {e}")))
}

/// Encode, decode with a bare reader (which must end exactly at the end),
/// decode with `Jute::decode`; the encoding is at least `MIN_ENCODED_LEN`
/// (vector counts are bounded with it, so it must be a lower bound), a
/// trailing byte is refused and so is every strict prefix (unless `strict` is
/// false: a connect record without its optional trailing readOnly byte).
fn check_record<T: Jute + PartialEq + Debug>(v: &T, strict: bool) -> Result<(), TestCaseError> {
    let bytes = v.encode();
    let mut r = Reader::new(&bytes);
    let back = ok(T::read(&mut r))?;
    prop_assert_eq!(&back, v);
    prop_assert_eq!(r.remaining(), 0, "read left bytes unconsumed");
    prop_assert_eq!(&ok(T::decode(&bytes))?, v);
    prop_assert!(
        bytes.len() >= T::MIN_ENCODED_LEN,
        "{} bytes < MIN_ENCODED_LEN {}",
        bytes.len(),
        T::MIN_ENCODED_LEN
    );
    if strict {
        let mut longer = bytes.clone();
        longer.push(0x5a);
        prop_assert!(T::decode(&longer).is_err(), "trailing byte accepted");
        for cut in 0..bytes.len() {
            prop_assert!(
                T::decode(&bytes[..cut]).is_err(),
                "prefix of {} bytes accepted",
                cut
            );
        }
    }
    Ok(())
}

/// A vector of the record round-trips too (its count is checked against
/// `MIN_ENCODED_LEN` times the bytes left).
fn check_record_vec<T: Jute + PartialEq + Debug + Clone>(items: &[T]) -> Result<(), TestCaseError> {
    let v: Vec<T> = items.to_vec();
    let bytes = v.encode();
    prop_assert_eq!(&ok(Vec::<T>::decode(&bytes))?, &v);
    Ok(())
}

/// Request: header + body round-trip through `decode_request` and
/// `Request::decode_body`; a trailing byte or a strict prefix is refused
/// (except where the body is "the rest": deleteContainer and unsupported ops).
fn check_request_roundtrip(xid: i32, req: &Request) -> Result<(), TestCaseError> {
    let encoded = req.encode(xid);
    let (header, back) = ok(decode_request(&encoded))?;
    prop_assert_eq!(header, RequestHeader { xid, op: req.op() });
    prop_assert_eq!(&back, req);
    let mut body = Vec::new();
    req.write_body(&mut body);
    prop_assert_eq!(&encoded[8..], body.as_slice());
    prop_assert_eq!(&ok(Request::decode_body(req.op(), &body))?, req);

    let rest_is_body = matches!(
        req,
        Request::DeleteContainer(_) | Request::Unsupported { .. }
    );
    if !rest_is_body {
        let mut longer = encoded.clone();
        longer.push(0);
        prop_assert!(decode_request(&longer).is_err(), "trailing byte accepted");
        for cut in 0..encoded.len() {
            prop_assert!(
                decode_request(&encoded[..cut]).is_err(),
                "prefix of {} bytes accepted",
                cut
            );
        }
    }
    Ok(())
}

fn check_response_roundtrip(
    header: &ReplyHeader,
    op: i32,
    resp: &Response,
) -> Result<(), TestCaseError> {
    let mut body = Vec::new();
    resp.write(&mut body);
    prop_assert_eq!(
        body.is_empty(),
        *resp == Response::Empty,
        "only Empty has an empty body"
    );
    prop_assert_eq!(&ok(Response::decode(op, &body))?, resp);

    let mut payload = Vec::new();
    encode_reply(header, resp, &mut payload);
    prop_assert_eq!(&payload[16..], body.as_slice());
    let (h, back) = ok(decode_reply(op, &payload))?;
    prop_assert_eq!(&h, header);
    prop_assert_eq!(&back, resp);

    // The body is read to its end: one more byte is refused, and so is every
    // non-empty strict prefix (an empty body is `Empty`).
    let mut longer = body.clone();
    longer.push(0);
    prop_assert!(
        Response::decode(op, &longer).is_err(),
        "trailing byte accepted"
    );
    for cut in 1..body.len() {
        prop_assert!(
            Response::decode(op, &body[..cut]).is_err(),
            "prefix of {} bytes accepted",
            cut
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    // No regression files: failures print the minimal input instead.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn requests_round_trip(xid in any::<i32>(), req in request()) {
        check_request_roundtrip(xid, &req)?;
    }

    #[test]
    fn multi_requests_round_trip(xid in any::<i32>(), ops in vec(multi_op(), 0..12), read in any::<bool>()) {
        let req = if read { Request::MultiRead(ops) } else { Request::Multi(ops) };
        check_request_roundtrip(xid, &req)?;
    }

    /// Unsupported opcodes keep only the opcode; whatever body follows is not read.
    #[test]
    fn unsupported_requests_ignore_their_body(xid in any::<i32>(), op in unsupported_op(), body in vec(any::<u8>(), 0..64)) {
        let mut payload = Request::Unsupported { op }.encode(xid);
        prop_assert_eq!(payload.len(), 8);
        payload.extend_from_slice(&body);
        let (header, req) = ok(decode_request(&payload))?;
        prop_assert_eq!(header, RequestHeader { xid, op });
        prop_assert_eq!(req, Request::Unsupported { op });
    }

    #[test]
    fn responses_round_trip(header in reply_header(), (op, resp) in op_and_response()) {
        check_response_roundtrip(&header, op, &resp)?;
    }

    #[test]
    fn multi_results_round_trip(header in reply_header(), results in vec(multi_result(), 0..12), read in any::<bool>()) {
        let op = if read { OpCode::MultiRead } else { OpCode::Multi }.code();
        check_response_roundtrip(&header, op, &Response::Multi(results))?;
    }

    #[test]
    fn connect_request_round_trips(req in connect_request()) {
        check_record(&req, false)?;
        let bytes = req.encode();
        if req.read_only.is_none() {
            // A 3.4-era request: one more byte is the readOnly flag, two are too many.
            let mut longer = bytes.clone();
            longer.push(1);
            prop_assert_eq!(ok(ConnectRequest::decode(&longer))?, ConnectRequest { read_only: Some(true), ..req.clone() });
            longer.push(0);
            prop_assert!(ConnectRequest::decode(&longer).is_err());
            for cut in 0..bytes.len() {
                prop_assert!(ConnectRequest::decode(&bytes[..cut]).is_err());
            }
        } else {
            // With readOnly the record minus its last byte is a valid 3.4-era request.
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(ConnectRequest::decode(&longer).is_err());
            let stripped = ok(ConnectRequest::decode(&bytes[..bytes.len() - 1]))?;
            prop_assert_eq!(stripped, ConnectRequest { read_only: None, ..req.clone() });
            for cut in 0..bytes.len() - 1 {
                prop_assert!(ConnectRequest::decode(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn connect_response_round_trips(resp in connect_response()) {
        check_record(&resp, false)?;
        let bytes = resp.encode();
        if resp.read_only.is_none() {
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert_eq!(ok(ConnectResponse::decode(&longer))?, ConnectResponse { read_only: Some(false), ..resp.clone() });
            longer.push(0);
            prop_assert!(ConnectResponse::decode(&longer).is_err());
            for cut in 0..bytes.len() {
                prop_assert!(ConnectResponse::decode(&bytes[..cut]).is_err());
            }
        } else {
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(ConnectResponse::decode(&longer).is_err());
            let stripped = ok(ConnectResponse::decode(&bytes[..bytes.len() - 1]))?;
            prop_assert_eq!(stripped, ConnectResponse { read_only: None, ..resp.clone() });
            for cut in 0..bytes.len() - 1 {
                prop_assert!(ConnectResponse::decode(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn headers_round_trip(rq in request_header(), rp in reply_header(), mh in multi_header()) {
        check_record(&rq, true)?;
        check_record(&rp, true)?;
        check_record(&mh, true)?;
        prop_assert_eq!(rq.encode().len(), 8);
        prop_assert_eq!(rp.encode().len(), 16);
        prop_assert_eq!(mh.encode().len(), 9);
    }

    #[test]
    fn watcher_event_round_trips(ev in watcher_event(), header in reply_header()) {
        check_record(&ev, true)?;
        // As a notification frame: ReplyHeader then WatcherEvent.
        let mut payload = Vec::new();
        header.write(&mut payload);
        ev.write(&mut payload);
        let mut r = Reader::new(&payload);
        prop_assert_eq!(ok(ReplyHeader::read(&mut r))?, header);
        prop_assert_eq!(ok(WatcherEvent::read(&mut r))?, ev);
        prop_assert!(r.is_empty());
    }

    #[test]
    fn stat_round_trips(s in stat()) {
        check_record(&s, true)?;
        prop_assert_eq!(s.encode().len(), Stat::MIN_ENCODED_LEN);
        prop_assert_eq!(Stat::MIN_ENCODED_LEN, 68);
    }

    #[test]
    fn acl_and_id_round_trip(a in acl(), i in id(), many in acls()) {
        check_record(&a, true)?;
        check_record(&i, true)?;
        check_record_vec(&many)?;
    }

    #[test]
    fn session_records_round_trip(
        sw in set_watches(),
        sw2 in set_watches2(),
        auth in auth_packet(),
        reconfig in reconfig_request(),
    ) {
        check_record(&sw, true)?;
        check_record(&sw2, true)?;
        check_record(&auth, true)?;
        check_record(&reconfig, true)?;
    }

    #[test]
    fn request_records_round_trip(
        c in create_request(),
        ct in create_ttl_request(),
        (d, pw, p) in (delete_request(), path_watch(), path_request()),
        (sd, sa, cv) in (set_data_request(), set_acl_request(), check_request()),
        (w, aw) in (watches_request(), add_watch_request()),
    ) {
        check_record(&c, true)?;
        check_record(&ct, true)?;
        check_record(&d, true)?;
        check_record(&pw, true)?;
        check_record(&p, true)?;
        check_record(&sd, true)?;
        check_record(&sa, true)?;
        check_record(&cv, true)?;
        check_record(&w, true)?;
        check_record(&aw, true)?;
    }

    #[test]
    fn response_records_round_trip(
        c2 in create2_response(),
        gd in get_data_response(),
        ga in get_acl_response(),
        gc in get_children2_response(),
        infos in vec(client_info(), 0..4),
    ) {
        check_record(&c2, true)?;
        check_record(&gd, true)?;
        check_record(&ga, true)?;
        check_record(&gc, true)?;
        for info in &infos {
            check_record(info, true)?;
        }
        check_record_vec(&infos)?;
    }

    /// Primitive jute values, including null vs empty buffers.
    #[test]
    fn jute_primitives_round_trip(
        s in string(),
        b in bytes(),
        ob in opt_bytes(),
        ss in strings(),
        (i, l, flag) in (any::<i32>(), any::<i64>(), any::<bool>()),
    ) {
        check_record(&s, true)?;
        check_record(&b, true)?;
        check_record(&ob, true)?;
        check_record(&ss, true)?;
        check_record(&i, true)?;
        check_record(&l, true)?;
        check_record(&flag, true)?;
        prop_assert_eq!(Option::<Vec<u8>>::decode(&ob.encode()), Ok(ob.clone()));
    }

    /// Frames: write_frame then split_frame gives the payload back; several
    /// frames in one buffer come out one at a time; any prefix waits for more.
    #[test]
    fn frames_round_trip(payloads in vec(vec(any::<u8>(), 0..300), 1..6)) {
        let mut stream = Vec::new();
        for p in &payloads {
            write_frame(&mut stream, |b| b.extend_from_slice(p));
        }
        prop_assert_eq!(stream.len(), payloads.iter().map(|p| p.len() + LENGTH_PREFIX).sum::<usize>());

        let max = payloads.iter().map(Vec::len).max().unwrap_or(0);
        let mut rest = stream.as_slice();
        for p in &payloads {
            let (payload, used) = split_frame(rest, max).unwrap().expect("complete frame");
            prop_assert_eq!(payload, p.as_slice());
            prop_assert_eq!(used, p.len() + LENGTH_PREFIX);
            // Every prefix of this frame is incomplete, not an error.
            for cut in 0..used {
                prop_assert_eq!(split_frame(&rest[..cut], max), Ok(None));
            }
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(split_frame(rest, max), Ok(None));

        // A frame one byte over the limit is refused.
        let biggest = payloads.iter().find(|p| p.len() == max).unwrap();
        let mut one = Vec::new();
        write_frame(&mut one, |b| b.extend_from_slice(biggest));
        if max > 0 {
            prop_assert!(split_frame(&one, max - 1).is_err());
        }
    }

    /// Requests and replies framed as on the wire.
    #[test]
    fn framed_messages_round_trip(xid in any::<i32>(), req in request(), header in reply_header(), (op, resp) in op_and_response()) {
        let mut stream = Vec::new();
        write_frame(&mut stream, |b| b.extend_from_slice(&req.encode(xid)));
        write_frame(&mut stream, |b| encode_reply(&header, &resp, b));
        let (p, used) = split_frame(&stream, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(ok(decode_request(p))?, (RequestHeader { xid, op: req.op() }, req.clone()));
        let (p, used2) = split_frame(&stream[used..], usize::MAX).unwrap().unwrap();
        prop_assert_eq!(ok(decode_reply(op, p))?, (header, resp.clone()));
        prop_assert_eq!(used + used2, stream.len());
    }
}

/// Null vectors and buffers decode as empty where the field is not nullable;
/// a nullable data field keeps null.
#[test]
fn null_lengths() {
    let null = (-1i32).to_be_bytes();
    assert_eq!(Vec::<u8>::decode(&null), Ok(Vec::new()));
    assert_eq!(String::decode(&null), Ok(String::new()));
    assert_eq!(Vec::<String>::decode(&null), Ok(Vec::new()));
    assert_eq!(Option::<Vec<u8>>::decode(&null), Ok(None));
    assert_eq!(
        Option::<Vec<u8>>::decode(&0i32.to_be_bytes()),
        Ok(Some(Vec::new()))
    );
}

/// A multi of `MAX_MULTI_OPS` ops is accepted; one more is refused.
#[test]
fn multi_op_limit() {
    let op = Request::Check(CheckVersionRequest {
        path: String::new(),
        version: 0,
    });
    let req = Request::Multi(vec![op.clone(); MAX_MULTI_OPS]);
    let (_, back) = decode_request(&req.encode(1)).expect("the limit itself is fine");
    assert_eq!(back, req);
    let req = Request::Multi(vec![op; MAX_MULTI_OPS + 1]);
    assert!(matches!(
        decode_request(&req.encode(1)),
        Err(DecodeError::BadValue { .. })
    ));
}
