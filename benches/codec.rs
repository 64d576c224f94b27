//! Codec cost per message: decode + encode of a getData request and reply,
//! the hottest pair on a read-heavy server.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zoocore_net::frame::{split_frame, write_frame};
use zoocore_net::records::{GetDataResponse, PathWatchRequest, ReplyHeader};
use zoocore_net::{decode_reply, decode_request, encode_reply, OpCode, Request, Response, Stat};

fn get_data_request() -> Vec<u8> {
    let request = Request::GetData(PathWatchRequest {
        path: "/app/config/service-0042".into(),
        watch: true,
    });
    let mut frame = Vec::new();
    write_frame(&mut frame, |b| b.extend_from_slice(&request.encode(7)));
    frame
}

fn get_data_reply() -> (ReplyHeader, Response) {
    let header = ReplyHeader {
        xid: 7,
        zxid: 0x1_0000_0042,
        err: 0,
    };
    let body = Response::GetData(GetDataResponse {
        data: Some(vec![0xab; 128]),
        stat: Stat {
            czxid: 1,
            mzxid: 2,
            version: 3,
            data_length: 128,
            pzxid: 1,
            ..Default::default()
        },
    });
    (header, body)
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    let request = get_data_request();
    group.bench_function("get_data_request_decode", |b| {
        b.iter(|| {
            let (payload, _) = split_frame(black_box(&request), 1 << 20).unwrap().unwrap();
            black_box(decode_request(payload).unwrap())
        })
    });
    let (header, body) = get_data_reply();
    let mut out = Vec::with_capacity(512);
    group.bench_function("get_data_reply_encode", |b| {
        b.iter(|| {
            out.clear();
            write_frame(&mut out, |buf| {
                encode_reply(black_box(&header), black_box(&body), buf)
            });
            black_box(out.len())
        })
    });
    let mut reply = Vec::new();
    write_frame(&mut reply, |buf| encode_reply(&header, &body, buf));
    group.bench_function("get_data_reply_decode", |b| {
        b.iter(|| {
            let (payload, _) = split_frame(black_box(&reply), 1 << 20).unwrap().unwrap();
            black_box(decode_reply(OpCode::GetData.code(), payload).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
