//! Hostile input: decoding arbitrary bytes never panics, a length prefix larger
//! than the bytes that follow is an error rather than an allocation, frame
//! lengths are bounded, and malformed structure (bad multi op types, missing
//! terminators, bodies where none belong) is refused.
//!
//! A counting global allocator measures what each decode allocates on the
//! current thread, so "not an allocation" is checked, not assumed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use proptest::collection::vec;
use proptest::prelude::*;
use zoocore_net::consts::limits;
use zoocore_net::frame::{split_frame, write_frame, FrameError};
use zoocore_net::jute::WriteJute;
use zoocore_net::message::MAX_MULTI_OPS;
use zoocore_net::records::*;
use zoocore_net::{decode_reply, decode_request, DecodeError, Jute, OpCode, Request, Response};

// ---------------------------------------------------------------------------
// Allocation accounting (per thread, so parallel tests do not interfere)
// ---------------------------------------------------------------------------

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn on_alloc(size: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(size);
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

fn on_dealloc(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_dealloc(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_dealloc(layout.size());
        on_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// What `f` allocated on this thread: (peak live bytes above the starting
/// point, largest single allocation).
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    LARGEST.with(|l| l.set(0));
    let out = f();
    let peak = PEAK.with(Cell::get).saturating_sub(base);
    let largest = LARGEST.with(Cell::get);
    (out, peak, largest)
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const MAX: usize = limits::DEFAULT_MAX_BUFFER;

/// Every opcode the codec knows, plus unknown ones.
fn all_ops() -> Vec<i32> {
    OpCode::ALL
        .iter()
        .map(|o| o.code())
        .chain([10, 23, 99, 108, 1000, -2, -12, i32::MIN, i32::MAX])
        .collect()
}

fn header(xid: i32, op: OpCode) -> Vec<u8> {
    RequestHeader { xid, op: op.code() }.encode()
}

fn reply_header() -> Vec<u8> {
    ReplyHeader {
        xid: 1,
        zxid: 2,
        err: 0,
    }
    .encode()
}

/// Golden payloads (frame prefix removed), for mutation.
fn golden_payloads() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "bin") {
            let bytes = std::fs::read(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, bytes[4..].to_vec()));
        }
    }
    out.sort();
    out
}

/// Runs every decoder on `bytes`, dropping the results.
fn decode_only(bytes: &[u8]) {
    let _ = decode_request(bytes);
    for op in all_ops() {
        let _ = Request::decode_body(op, bytes);
        let _ = decode_reply(op, bytes);
    }
    let _ = ConnectRequest::decode(bytes);
    let _ = ConnectResponse::decode(bytes);
    let _ = WatcherEvent::decode(bytes);
    let _ = split_frame(bytes, MAX);
}

/// Runs every decoder on `bytes`; on success, the re-encoding of what was
/// decoded must decode to the same value (decoding normalises, e.g. lossy
/// UTF-8, null buffers to empty, any non-zero bool to true, but is stable).
fn decode_everything(bytes: &[u8]) {
    if let Ok((header, req)) = decode_request(bytes) {
        let again = decode_request(&req.encode(header.xid)).expect("re-encoded request decodes");
        assert_eq!(again, (header, req));
    }
    for op in all_ops() {
        if let Ok(req) = Request::decode_body(op, bytes) {
            let mut body = Vec::new();
            req.write_body(&mut body);
            assert_eq!(Request::decode_body(op, &body).as_ref(), Ok(&req));
        }
        if let Ok((header, resp)) = decode_reply(op, bytes) {
            let mut payload = Vec::new();
            zoocore_net::encode_reply(&header, &resp, &mut payload);
            assert_eq!(decode_reply(op, &payload), Ok((header, resp)));
        }
        let _ = Response::decode(op, bytes);
    }
    if let Ok(c) = ConnectRequest::decode(bytes) {
        assert_eq!(ConnectRequest::decode(&c.encode()), Ok(c));
    }
    if let Ok(c) = ConnectResponse::decode(bytes) {
        assert_eq!(ConnectResponse::decode(&c.encode()), Ok(c));
    }
    let _ = WatcherEvent::decode(bytes);
    let _ = SetWatches2::decode(bytes);
    let _ = GetAclResponse::decode(bytes);
    for max in [0, 16, 4096, MAX, usize::MAX] {
        if let Ok(Some((payload, used))) = split_frame(bytes, max) {
            assert_eq!(used, payload.len() + 4);
            assert!(payload.len() <= max);
            assert!(used <= bytes.len());
        }
    }
}

/// Bound on what decoding `n` bytes may allocate at its peak. Vectors are
/// pre-sized to their count, which is bounded by the bytes left divided by
/// the smallest encoding of one element, and multi ops/results grow a
/// `Vec<Request>`/`Vec<MultiResult>` whose elements are much larger than
/// their smallest (9 to 14 byte) encoding, hence the factor. Strings, bytes
/// and vectors with an oversized length prefix allocate nothing.
fn allocation_bound(n: usize) -> usize {
    64 * n + 4096
}

// ---------------------------------------------------------------------------
// Arbitrary bytes never panic
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..4096)) {
        let ((), peak, _) = measure(|| decode_only(&bytes));
        prop_assert!(peak <= allocation_bound(bytes.len()), "peak {} for {} bytes", peak, bytes.len());
        decode_everything(&bytes);
    }

    /// A valid request header for a real opcode followed by garbage gets past
    /// the opcode dispatch into every body decoder.
    #[test]
    fn known_header_then_garbage_never_panics(
        xid in any::<i32>(),
        op in prop::sample::select(OpCode::ALL.to_vec()),
        body in vec(any::<u8>(), 0..2048),
    ) {
        let mut payload = header(xid, op);
        payload.extend_from_slice(&body);
        decode_everything(&payload);
        let mut reply = reply_header();
        reply.extend_from_slice(&body);
        let ((), peak, _) = measure(|| {
            let _ = decode_request(&payload);
            let _ = decode_reply(op.code(), &reply);
        });
        prop_assert!(peak <= allocation_bound(payload.len()), "peak {} for {} bytes", peak, payload.len());
    }

    /// Small integers are where lengths, counts and opcodes live: bytes drawn
    /// from a few interesting values reach deeper than uniform noise.
    #[test]
    fn structured_noise_never_panics(
        words in vec(prop::sample::select(vec![
            0i32, 1, 2, 3, 4, 5, 8, 9, 11, 12, 13, 14, 15, 19, 21, 22, -1, -2, -11,
            0x7fff_ffff, i32::MIN, 0x0100_0000, 0x01,
        ]), 0..64),
        tail in vec(any::<u8>(), 0..8),
    ) {
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        bytes.extend_from_slice(&tail);
        decode_everything(&bytes);
        // Also shifted by one byte (bools and multi headers are 1 and 9 bytes).
        if !bytes.is_empty() {
            decode_everything(&bytes[1..]);
        }
    }

    /// Golden frames with a byte changed, a range removed or bytes inserted.
    #[test]
    fn mutated_golden_frames_never_panic(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
        cut in 0usize..16,
        insert in vec(any::<u8>(), 0..8),
    ) {
        let payloads = golden_payloads();
        let (_, payload) = which.get(&payloads);
        let i = at.index(payload.len() + 1);
        let mut flipped = payload.clone();
        if i < flipped.len() {
            flipped[i] = value;
        }
        decode_everything(&flipped);
        let mut removed = payload.clone();
        removed.drain(i.min(removed.len())..(i + cut).min(removed.len()));
        decode_everything(&removed);
        let mut inserted = payload.clone();
        inserted.splice(i..i, insert.iter().copied());
        decode_everything(&inserted);
        // And the frame itself, length prefix included.
        let mut framed = Vec::new();
        write_frame(&mut framed, |b| b.extend_from_slice(&flipped));
        decode_everything(&framed);
    }

    #[test]
    fn every_length_prefix_is_checked(len in any::<i32>(), body in vec(any::<u8>(), 0..64)) {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let fits = usize::try_from(len).is_ok_and(|n| n <= body.len());
        let ((s, b, v), peak, _) = measure(|| {
            (String::decode(&bytes), Option::<Vec<u8>>::decode(&bytes), Vec::<String>::read(&mut zoocore_net::jute::Reader::new(&bytes)))
        });
        prop_assert!(peak <= allocation_bound(bytes.len()));
        if len == -1 {
            prop_assert_eq!(b.map(|_| ()), if body.is_empty() { Ok(()) } else { Err(DecodeError::TrailingBytes { extra: body.len() }) });
            prop_assert!(v.is_ok());
        } else if !fits {
            prop_assert!(matches!(s, Err(DecodeError::BadLength { offset: 0, .. })), "{:?}", s);
            prop_assert!(matches!(b, Err(DecodeError::BadLength { offset: 0, .. })), "{:?}", b);
        } else if len as usize == body.len() {
            prop_assert!(s.is_ok());
            prop_assert_eq!(b, Ok(Some(body.clone())));
        }
        // A vector count needs at least 4 bytes per string.
        if usize::try_from(len).is_ok_and(|n| n.saturating_mul(4) > body.len()) {
            prop_assert!(matches!(v, Err(DecodeError::BadLength { offset: 0, .. })), "{:?}", v);
        }
    }

    #[test]
    fn split_frame_never_panics(bytes in vec(any::<u8>(), 0..64), max in any::<usize>()) {
        match split_frame(&bytes, max) {
            Ok(None) => {
                if let Some(prefix) = bytes.first_chunk::<4>() {
                    let len = i32::from_be_bytes(*prefix);
                    prop_assert!(len >= 0 && len as usize <= max && bytes.len() < 4 + len as usize);
                }
            }
            Ok(Some((payload, used))) => {
                prop_assert_eq!(used, payload.len() + 4);
                prop_assert_eq!(&bytes[4..used], payload);
            }
            Err(FrameError::BadLength { len, max: m }) => {
                prop_assert_eq!(m, max);
                prop_assert!(len < 0 || len as usize > max);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Oversized lengths: errors, not allocations
// ---------------------------------------------------------------------------

/// Decodes with allocation accounting and checks that a hostile length did
/// not turn into a large allocation.
fn refused<T: std::fmt::Debug>(
    what: &str,
    input_len: usize,
    f: impl FnOnce() -> Result<T, DecodeError>,
) -> DecodeError {
    let (result, peak, largest) = measure(f);
    assert!(
        largest <= 1024 && peak <= 4096,
        "{what}: allocated {largest} bytes at once, peak {peak}, for {input_len} bytes of input"
    );
    result.expect_err(what)
}

/// The densest inputs: many smallest-possible elements. Peak memory is a
/// bounded multiple of the frame (see `allocation_bound`).
#[test]
fn worst_case_allocation_is_a_bounded_multiple_of_the_input() {
    const N: usize = 4096;
    let mut cases: Vec<(&str, i32, Vec<u8>, bool)> = Vec::new();

    // A multi of N getData ops with empty paths: 14 bytes per op.
    let mut payload = header(1, OpCode::MultiRead);
    for _ in 0..N {
        payload.extend_from_slice(&multi_header(OpCode::GetData.code(), false));
        payload.extend_from_slice(&PathWatchRequest::default().encode());
    }
    payload.extend_from_slice(&multi_header(-1, true));
    cases.push(("multiRead of getData", 0, payload, true));

    // A multi reply of N delete results: 9 bytes per result.
    let mut payload = reply_header();
    for _ in 0..N {
        MultiHeader {
            op: OpCode::Delete.code(),
            done: false,
            err: 0,
        }
        .write(&mut payload);
    }
    payload.extend_from_slice(&multi_header(-1, true));
    cases.push((
        "multi reply of deletes",
        OpCode::Multi.code(),
        payload,
        false,
    ));

    // N empty children: 4 bytes per String.
    let mut payload = reply_header();
    payload.put_vec(&vec![String::new(); N]);
    cases.push(("children", OpCode::GetChildren.code(), payload, false));

    // N empty ACLs: 12 bytes per Acl.
    let mut payload = header(1, OpCode::SetAcl);
    payload.put_string("/");
    payload.put_vec(&vec![Acl::default(); N]);
    payload.put_i32(0);
    cases.push(("setACL", 0, payload, true));

    for (what, op, payload, is_request) in cases {
        let (ok, peak, _) = measure(|| {
            if is_request {
                decode_request(&payload).is_ok()
            } else {
                decode_reply(op, &payload).is_ok()
            }
        });
        assert!(ok, "{what} decodes");
        eprintln!(
            "{what}: {} bytes in, peak {} bytes allocated ({:.1}x)",
            payload.len(),
            peak,
            peak as f64 / payload.len() as f64
        );
        assert!(
            peak <= allocation_bound(payload.len()),
            "{what}: peak {peak}"
        );
    }
}

#[test]
fn set_watches_children_vector_count_i32_max_is_an_error() {
    let mut payload = header(-8, OpCode::SetWatches);
    payload.put_i64(7); // relativeZxid
    payload.put_i32(0); // dataWatches
    payload.put_i32(0); // existWatches
    payload.put_i32(i32::MAX); // childWatches count
    payload.put_string("/a");
    let err = refused("setWatches", payload.len(), || decode_request(&payload));
    // (Offsets in request body errors count from the start of the body.)
    assert!(
        matches!(err, DecodeError::BadLength { len: i32::MAX, .. }),
        "{err:?}"
    );
}

#[test]
fn children_reply_count_i32_max_is_an_error() {
    for op in [OpCode::GetChildren, OpCode::GetEphemerals] {
        let mut payload = reply_header();
        payload.put_i32(i32::MAX);
        payload.put_string("child");
        let err = refused("children reply", payload.len(), || {
            decode_reply(op.code(), &payload)
        });
        assert!(
            matches!(err, DecodeError::BadLength { len: i32::MAX, .. }),
            "{err:?}"
        );
    }
    let mut payload = reply_header();
    payload.put_i32(i32::MAX); // children
    payload.extend_from_slice(&Stat::default().encode());
    let err = refused("getChildren2 reply", payload.len(), || {
        decode_reply(OpCode::GetChildren2.code(), &payload)
    });
    assert!(
        matches!(err, DecodeError::BadLength { len: i32::MAX, .. }),
        "{err:?}"
    );
    // A multi(read) getChildren result with a huge count.
    let mut payload = reply_header();
    MultiHeader {
        op: OpCode::GetChildren.code(),
        done: false,
        err: 0,
    }
    .write(&mut payload);
    payload.put_i32(i32::MAX);
    let err = refused("multiRead children", payload.len(), || {
        decode_reply(OpCode::MultiRead.code(), &payload)
    });
    assert!(
        matches!(err, DecodeError::BadLength { len: i32::MAX, .. }),
        "{err:?}"
    );
}

#[test]
fn acl_vector_count_i32_max_is_an_error() {
    let mut payload = header(1, OpCode::Create);
    payload.put_string("/a");
    payload.put_buffer(Some(b"x"));
    payload.put_i32(i32::MAX); // acl count
    Acl::new(31, "world", "anyone").write(&mut payload);
    payload.put_i32(0);
    let err = refused("create acl", payload.len(), || decode_request(&payload));
    assert!(
        matches!(err, DecodeError::BadLength { len: i32::MAX, .. }),
        "{err:?}"
    );

    // A count that would fit in bytes but not in 12-byte ACLs is refused too.
    let mut payload = header(1, OpCode::SetAcl);
    payload.put_string("/a");
    payload.put_i32(10); // 10 ACLs need at least 120 bytes; 40 follow
    payload.extend_from_slice(&[0; 40]);
    let err = refused("setACL acl", payload.len(), || decode_request(&payload));
    assert!(
        matches!(err, DecodeError::BadLength { len: 10, .. }),
        "{err:?}"
    );
}

#[test]
fn string_length_0x7fffffff_is_an_error() {
    let mut payload = header(1, OpCode::GetData);
    payload.put_i32(0x7fff_ffff); // path length
    payload.extend_from_slice(b"/a");
    payload.put_bool(false);
    let err = refused("getData path", payload.len(), || decode_request(&payload));
    assert!(
        matches!(
            err,
            DecodeError::BadLength {
                len: 0x7fff_ffff,
                ..
            }
        ),
        "{err:?}"
    );

    // Data buffer of create and setData.
    let mut payload = header(1, OpCode::SetData);
    payload.put_string("/a");
    payload.put_i32(0x7fff_ffff);
    payload.put_i32(0);
    let err = refused("setData data", payload.len(), || decode_request(&payload));
    assert!(
        matches!(
            err,
            DecodeError::BadLength {
                len: 0x7fff_ffff,
                ..
            }
        ),
        "{err:?}"
    );

    // The connect request's password.
    let mut payload = Vec::new();
    payload.put_i32(0);
    payload.put_i64(0);
    payload.put_i32(10_000);
    payload.put_i64(0);
    payload.put_i32(0x7fff_ffff);
    payload.extend_from_slice(&[0; 16]);
    let err = refused("connect passwd", payload.len(), || {
        ConnectRequest::decode(&payload)
    });
    assert_eq!(
        err,
        DecodeError::BadLength {
            offset: 24,
            len: 0x7fff_ffff
        }
    );

    // A reply's path and a notification's path.
    let mut payload = reply_header();
    payload.put_i32(0x7fff_ffff);
    let err = refused("create reply", payload.len(), || {
        decode_reply(OpCode::Create.code(), &payload)
    });
    assert!(matches!(err, DecodeError::BadLength { .. }), "{err:?}");
    let mut payload = Vec::new();
    payload.put_i32(3);
    payload.put_i32(3);
    payload.put_i32(0x7fff_ffff);
    let err = refused("watcher event", payload.len(), || {
        WatcherEvent::decode(&payload)
    });
    assert!(matches!(err, DecodeError::BadLength { .. }), "{err:?}");
}

#[test]
fn lengths_one_past_the_end_and_negative_are_errors() {
    // Exactly the remaining bytes is fine; one more is not.
    let mut ok = Vec::new();
    ok.put_i32(3);
    ok.extend_from_slice(b"abc");
    assert_eq!(String::decode(&ok), Ok("abc".to_owned()));
    let mut over = Vec::new();
    over.put_i32(4);
    over.extend_from_slice(b"abc");
    assert!(matches!(
        String::decode(&over),
        Err(DecodeError::BadLength { .. })
    ));
    for len in [-2, -100, i32::MIN] {
        let mut neg = Vec::new();
        neg.put_i32(len);
        neg.extend_from_slice(b"abc");
        assert!(
            matches!(String::decode(&neg), Err(DecodeError::BadLength { .. })),
            "{len}"
        );
        assert!(
            matches!(
                Option::<Vec<u8>>::decode(&neg),
                Err(DecodeError::BadLength { .. })
            ),
            "{len}"
        );
        assert!(
            matches!(Vec::<Acl>::decode(&neg), Err(DecodeError::BadLength { .. })),
            "{len}"
        );
    }
}

// ---------------------------------------------------------------------------
// Frame lengths
// ---------------------------------------------------------------------------

#[test]
fn frame_lengths_over_the_max_and_negative_are_errors() {
    const MIB: usize = 1 << 20;
    for (len, max) in [
        (MIB as i32 + 1, MIB),
        (i32::MAX, MIB),
        (i32::MAX, MAX),
        (MAX as i32 + 1, MAX),
        (1, 0),
        (-1, MIB),
        (-2, MIB),
        (i32::MIN, MIB),
        (-1, usize::MAX),
        (i32::MIN, usize::MAX),
    ] {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        // The length alone is enough to refuse: no need to wait for the payload.
        assert_eq!(
            split_frame(&bytes[..4], max),
            Err(FrameError::BadLength { len, max }),
            "len {len} max {max}"
        );
        assert_eq!(
            split_frame(&bytes, max),
            Err(FrameError::BadLength { len, max })
        );
    }
    // At the max: waits for the payload, then yields it.
    let frame_len = i32::try_from(MIB).unwrap();
    assert_eq!(split_frame(&frame_len.to_be_bytes(), MIB), Ok(None));
    let mut whole = Vec::new();
    write_frame(&mut whole, |b| b.resize(b.len() + MIB, 7));
    let (payload, used) = split_frame(&whole, MIB).unwrap().unwrap();
    assert_eq!((payload.len(), used), (MIB, MIB + 4));
    assert!(split_frame(&whole, MIB - 1).is_err());
    // Empty and short buffers wait.
    for n in 0..4 {
        assert_eq!(split_frame(&[0u8; 3][..n], MIB), Ok(None));
    }
    // A zero-length frame is a complete (empty) frame.
    assert_eq!(split_frame(&[0, 0, 0, 0], MIB), Ok(Some((&[][..], 4))));
}

// ---------------------------------------------------------------------------
// Malformed structure
// ---------------------------------------------------------------------------

fn multi_header(op: i32, done: bool) -> Vec<u8> {
    MultiHeader { op, done, err: -1 }.encode()
}

#[test]
fn multi_requests_with_forbidden_ops_are_refused() {
    let forbidden = [
        OpCode::Multi,
        OpCode::MultiRead,
        OpCode::Ping,
        OpCode::CloseSession,
        OpCode::Sync,
        OpCode::Exists,
        OpCode::GetAcl,
        OpCode::SetAcl,
        OpCode::DeleteContainer,
        OpCode::Auth,
        OpCode::SetWatches,
        OpCode::Error,
    ];
    for op in forbidden {
        for outer in [OpCode::Multi, OpCode::MultiRead] {
            let mut payload = header(1, outer);
            payload.extend_from_slice(&multi_header(op.code(), false));
            payload.extend_from_slice(&PathRequest { path: "/a".into() }.encode());
            payload.extend_from_slice(&multi_header(-1, true));
            assert_eq!(
                decode_request(&payload),
                Err(DecodeError::BadValue {
                    what: "multi op type",
                    value: op.code().into()
                }),
                "{op:?} inside {outer:?}"
            );
        }
    }
    // Unknown op type inside a multi.
    let mut payload = header(1, OpCode::Multi);
    payload.extend_from_slice(&multi_header(77, false));
    assert!(matches!(
        decode_request(&payload),
        Err(DecodeError::BadValue { .. })
    ));
}

#[test]
fn multi_without_terminator_is_truncated() {
    let mut payload = header(1, OpCode::Multi);
    payload.extend_from_slice(&multi_header(OpCode::Delete.code(), false));
    payload.extend_from_slice(
        &DeleteRequest {
            path: "/a".into(),
            version: 0,
        }
        .encode(),
    );
    assert!(matches!(
        decode_request(&payload),
        Err(DecodeError::Truncated { .. })
    ));
    // Bytes after the terminator are refused.
    payload.extend_from_slice(&multi_header(-1, true));
    assert!(decode_request(&payload).is_ok());
    payload.push(0);
    assert!(matches!(
        decode_request(&payload),
        Err(DecodeError::TrailingBytes { extra: 1 })
    ));

    // The same for a multi reply.
    let mut reply = reply_header();
    reply.extend_from_slice(
        &MultiHeader {
            op: OpCode::Check.code(),
            done: false,
            err: 0,
        }
        .encode(),
    );
    assert!(matches!(
        decode_reply(OpCode::Multi.code(), &reply),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn too_many_multi_ops_are_refused_without_reading_them_all() {
    // MAX_MULTI_OPS + 1 minimal check ops, no terminator needed to be refused.
    let op = [
        multi_header(OpCode::Check.code(), false),
        CheckVersionRequest {
            path: String::new(),
            version: 0,
        }
        .encode(),
    ]
    .concat();
    let mut payload = header(1, OpCode::Multi);
    for _ in 0..=MAX_MULTI_OPS {
        payload.extend_from_slice(&op);
    }
    assert!(matches!(
        decode_request(&payload),
        Err(DecodeError::BadValue {
            what: "multi op count",
            ..
        })
    ));
}

#[test]
fn unknown_multi_result_types_are_refused() {
    for ty in [
        OpCode::Exists,
        OpCode::Multi,
        OpCode::Ping,
        OpCode::CreateTtl,
        OpCode::Sync,
    ] {
        let mut reply = reply_header();
        reply.extend_from_slice(
            &MultiHeader {
                op: ty.code(),
                done: false,
                err: 0,
            }
            .encode(),
        );
        reply.extend_from_slice(
            &MultiHeader {
                op: -1,
                done: true,
                err: -1,
            }
            .encode(),
        );
        assert!(
            matches!(
                decode_reply(OpCode::Multi.code(), &reply),
                Err(DecodeError::BadValue { .. })
            ),
            "{ty:?}"
        );
    }
}

#[test]
fn bodies_where_none_belong_are_refused() {
    // Requests without a body.
    for op in [OpCode::Ping, OpCode::CloseSession, OpCode::WhoAmI] {
        let mut payload = header(1, op);
        assert!(decode_request(&payload).is_ok());
        payload.push(0);
        assert_eq!(
            decode_request(&payload),
            Err(DecodeError::TrailingBytes { extra: 1 }),
            "{op:?}"
        );
    }
    // Replies to requests whose reply has no body.
    for op in [
        OpCode::Ping,
        OpCode::CloseSession,
        OpCode::Delete,
        OpCode::Check,
        OpCode::SetWatches,
        OpCode::Auth,
        OpCode::CheckWatches,
        OpCode::RemoveWatches,
    ] {
        let mut reply = reply_header();
        assert_eq!(
            decode_reply(op.code(), &reply).map(|r| r.1),
            Ok(Response::Empty)
        );
        reply.extend_from_slice(&[0, 0, 0, 0]);
        assert!(decode_reply(op.code(), &reply).is_err(), "{op:?}");
    }
    // A truncated header is an error, never an empty message.
    for n in 0..8 {
        assert!(matches!(
            decode_request(&[0; 8][..n]),
            Err(DecodeError::Truncated { .. })
        ));
    }
    for n in 0..16 {
        assert!(matches!(
            decode_reply(1, &[0; 16][..n]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}

#[test]
fn invalid_utf8_paths_decode_lossily() {
    let mut payload = header(1, OpCode::GetData);
    payload.put_buffer(Some(&[b'/', 0xff, 0xfe, b'a']));
    payload.put_bool(true);
    let (_, req) = decode_request(&payload).unwrap();
    assert_eq!(req.path(), Some("/\u{fffd}\u{fffd}a"));
}

/// Every golden payload and every one of its prefixes, through every decoder.
#[test]
fn golden_prefixes_never_panic() {
    for (_, payload) in golden_payloads() {
        for cut in 0..=payload.len() {
            decode_everything(&payload[..cut]);
        }
    }
}
