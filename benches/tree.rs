//! Engine cost per operation on a 1M-node tree (1000 parents x 1000
//! children, 128-byte values): getData (read), setData and create
//! (validate + apply, as the sequencer does).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use zoocore_engine::txn::Txn;
use zoocore_engine::{prepare, read, DataTree, Identity, PrepContext};
use zoocore_net::consts::perms;
use zoocore_net::records::{CreateRequest, PathWatchRequest, SetDataRequest};
use zoocore_net::{Acl, Request};

const PARENTS: usize = 1000;
const CHILDREN: usize = 1000;
const SESSION: i64 = 0x0100_0000_0000_0001;

struct Bench {
    tree: DataTree,
    zxid: i64,
    who: Identity,
}

impl Bench {
    fn write(&mut self, request: &Request) {
        self.zxid += 1;
        let ctx = PrepContext {
            session_id: SESSION,
            identity: &self.who,
            zxid: self.zxid,
            time: self.zxid,
        };
        let op = prepare(&self.tree, &ctx, request);
        let txn = Txn {
            zxid: self.zxid,
            time: self.zxid,
            session_id: SESSION,
            cxid: 0,
            op,
        };
        black_box(self.tree.apply(&txn));
    }
}

fn create(path: String) -> Request {
    Request::Create(CreateRequest {
        path,
        data: Some(vec![7; 128]),
        acl: vec![Acl::new(perms::ALL, "world", "anyone")],
        flags: 0,
    })
}

fn million_nodes() -> Bench {
    let mut bench = Bench {
        tree: DataTree::new(false),
        zxid: 0,
        who: Identity::from_ip("127.0.0.1"),
    };
    for p in 0..PARENTS {
        bench.write(&create(format!("/p{p}")));
        for c in 0..CHILDREN {
            bench.write(&create(format!("/p{p}/c{c}")));
        }
    }
    assert_eq!(bench.tree.node_count(), 4 + PARENTS * (CHILDREN + 1));
    bench
}

fn tree(c: &mut Criterion) {
    let mut bench = million_nodes();
    let mut group = c.benchmark_group("tree_1m");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("get_data", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let path = format!("/p{}/c{}", i % PARENTS, (i / PARENTS) % CHILDREN);
            let request = Request::GetData(PathWatchRequest { path, watch: false });
            black_box(read(&bench.tree, SESSION, &bench.who, &request))
        })
    });
    group.bench_function("set_data", |b| {
        b.iter_batched(
            || {
                i = i.wrapping_add(7919);
                Request::SetData(SetDataRequest {
                    path: format!("/p{}/c{}", i % PARENTS, (i / PARENTS) % CHILDREN),
                    data: Some(vec![9; 128]),
                    version: -1,
                })
            },
            |request| bench.write(&request),
            BatchSize::SmallInput,
        )
    });
    let mut n = 0usize;
    group.bench_function("create", |b| {
        b.iter_batched(
            || {
                n += 1;
                create(format!("/p{}/new{n}", n % PARENTS))
            },
            |request| bench.write(&request),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = tree
}
criterion_main!(benches);
