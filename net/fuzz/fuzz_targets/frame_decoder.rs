//! Feeds the input to the codec the way a server's connection reader does:
//! the first frame is the ConnectRequest, every later frame a request; each
//! payload is also decoded as the reply to a few opcodes (as a client would)
//! and as a notification. Nothing may panic, and whatever decodes must
//! re-encode to bytes that decode to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zoocore_net::frame::{four_letter_word, split_frame};
use zoocore_net::jute::Reader;
use zoocore_net::{
    decode_reply, decode_request, encode_reply, ConnectRequest, Jute, OpCode, ReplyHeader,
    WatcherEvent,
};

/// The frame limit a server would use (jute.maxbuffer-sized).
const MAX_FRAME: usize = 1 << 20;

/// Reply opcodes covering every reply body shape, plus one with no body.
const REPLY_OPS: [OpCode; 9] = [
    OpCode::Create,
    OpCode::Create2,
    OpCode::GetData,
    OpCode::GetAcl,
    OpCode::GetChildren2,
    OpCode::Multi,
    OpCode::WhoAmI,
    OpCode::AddWatch,
    OpCode::Ping,
];

fn check_request(payload: &[u8]) {
    if let Ok((header, req)) = decode_request(payload) {
        let again = decode_request(&req.encode(header.xid)).expect("re-encoded request decodes");
        assert_eq!(again, (header, req), "request decode is not stable");
    }
}

fn check_replies(payload: &[u8]) {
    for op in REPLY_OPS {
        if let Ok((header, body)) = decode_reply(op.code(), payload) {
            let mut out = Vec::new();
            encode_reply(&header, &body, &mut out);
            let again = decode_reply(op.code(), &out).expect("re-encoded reply decodes");
            assert_eq!(again, (header, body), "reply decode is not stable");
        }
    }
    let mut r = Reader::new(payload);
    if let (Ok(header), Ok(event)) = (ReplyHeader::read(&mut r), WatcherEvent::read(&mut r)) {
        if r.finish().is_ok() {
            let mut out = header.encode();
            event.write(&mut out);
            let mut r = Reader::new(&out);
            assert_eq!(ReplyHeader::read(&mut r).as_ref(), Ok(&header));
            assert_eq!(WatcherEvent::read(&mut r).as_ref(), Ok(&event));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(first) = data.first_chunk::<4>() {
        if four_letter_word(first).is_some() {
            return; // an admin command, not a session
        }
    }
    let mut buf = data;

    // The first frame: the session handshake. A server would close the
    // connection on a bad one; we keep reading so that request decoding is
    // reached even from inputs whose connect frame is mangled.
    match split_frame(buf, MAX_FRAME) {
        Ok(Some((payload, used))) => {
            if let Ok(connect) = ConnectRequest::decode(payload) {
                let again = ConnectRequest::decode(&connect.encode()).expect("re-encoded connect");
                assert_eq!(again, connect, "connect decode is not stable");
            }
            buf = &buf[used..];
        }
        Ok(None) | Err(_) => return,
    }

    // Then requests, frame after frame, until the input runs out or a frame
    // length is refused (the server would drop the connection).
    while let Ok(Some((payload, used))) = split_frame(buf, MAX_FRAME) {
        assert!(used == payload.len() + 4 && used <= buf.len());
        check_request(payload);
        check_replies(payload);
        buf = &buf[used..];
    }
});
