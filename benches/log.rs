//! The log's cost per group commit by batch size: encoding a batch of
//! setData txns (records, checksums, header, padding to a block), and appending it as
//! the sequencer does: one O_DIRECT write into a zero-filled file, then
//! fdatasync. Throughput is in txns, so larger batches show what group
//! commit saves per txn.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zoocore_engine::log::{append_record, begin_batch, seal_batch, BLOCK};
use zoocore_engine::txn::{Txn, TxnOp};

const BATCHES: [usize; 5] = [1, 8, 64, 256, 1024];
const FILE_BYTES: u64 = 64 << 20;

fn batch(txns: usize) -> Vec<u8> {
    let mut out = Vec::new();
    begin_batch(&mut out);
    for i in 0..txns {
        let txn = Txn {
            zxid: i as i64 + 1,
            time: 1_700_000_000_000,
            session_id: 0x0100_0000_0000_0001,
            cxid: i as i32,
            op: TxnOp::SetData {
                path: format!("/loadgen/n{i:07}"),
                data: Some(vec![b'v'; 128]),
                version: 1,
            },
        };
        append_record(&mut out, 0, &txn);
    }
    seal_batch(&mut out);
    // The log writer writes whole blocks (O_DIRECT).
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    out
}

/// A block-aligned buffer, as O_DIRECT wants.
struct Aligned {
    ptr: *mut u8,
    layout: Layout,
}

impl Aligned {
    fn new(bytes: usize) -> Aligned {
        let layout = Layout::from_size_align(bytes, BLOCK).expect("layout");
        // SAFETY: a non-zero size with a valid alignment.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "allocation failed");
        Aligned { ptr, layout }
    }

    fn slice(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.layout.size());
        // SAFETY: within the allocation, which this value owns.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// A zero-filled, synced file under target/, opened for O_DIRECT writes.
fn log_file() -> File {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-log");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join("log");
    let mut file = File::create(&path).expect("create the log file");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..FILE_BYTES >> 20 {
        file.write_all(&zeros).expect("zero-fill");
    }
    file.sync_all().expect("sync");
    OpenOptions::new()
        .write(true)
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .expect("open with O_DIRECT")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_encode");
    for n in BATCHES {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{n}_txns"), |b| b.iter(|| black_box(batch(n))));
    }
    group.finish();

    let file = log_file();
    let mut buffer = Aligned::new(batch(*BATCHES.last().expect("sizes")).len());
    let mut group = c.benchmark_group("log_append_fdatasync");
    group.sample_size(20);
    for n in BATCHES {
        let image = batch(n);
        buffer.slice(image.len()).copy_from_slice(&image);
        let mut offset = 0u64;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{n}_txns"), |b| {
            b.iter(|| {
                if offset + image.len() as u64 > FILE_BYTES {
                    offset = 0;
                }
                file.write_all_at(buffer.slice(image.len()), offset)
                    .expect("O_DIRECT write");
                file.sync_data().expect("fdatasync");
                offset += image.len() as u64;
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
