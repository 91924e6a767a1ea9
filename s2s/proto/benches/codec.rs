//! Codec throughput: `cargo bench -p nifi-s2s-proto --bench codec`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use s2s_proto::FlowFile;
use s2s_proto::codec::checksum::TransactionChecksum;
use s2s_proto::codec::compression::{DecompressStatus, Decompressor, compress};
use s2s_proto::codec::flowfile::{self, FlowFileDecoder};
use s2s_proto::codec::package_v3::{self, PackageV3Decoder};

/// Text-like content: compresses roughly like log lines, unlike zeros or random bytes.
fn content(len: usize) -> Vec<u8> {
    let line = b"2026-11-26T04:00:00Z INFO s2s: sent flowfile uuid=5f1c2e3a batch=17 bytes=1024\n";
    line.iter().copied().cycle().take(len).collect()
}

fn flowfile_of(len: usize) -> FlowFile {
    FlowFile::new(content(len))
        .with_attribute("filename", "data.log")
        .with_attribute("path", "./")
        .with_attribute("uuid", "5f1c2e3a-0000-4000-8000-000000000000")
}

fn codec(c: &mut Criterion) {
    for (name, len) in [("1KiB", 1024), ("1MiB", 1024 * 1024)] {
        let ff = flowfile_of(len);
        let mut wire = BytesMut::new();
        flowfile::encode(&ff, &mut wire);
        let wire = wire.freeze();

        let mut g = c.benchmark_group(format!("flowfile_v1/{name}"));
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function("encode", |b| {
            let mut out = BytesMut::with_capacity(wire.len());
            b.iter(|| {
                out.clear();
                flowfile::encode(black_box(&ff), &mut out);
            })
        });
        g.bench_function("decode", |b| {
            let mut d = FlowFileDecoder::default();
            b.iter(|| {
                let mut buf = BytesMut::from(&wire[..]);
                black_box(d.decode(&mut buf).unwrap().unwrap());
            })
        });
        g.bench_function("package_v3_encode", |b| {
            let mut out = BytesMut::with_capacity(wire.len() + 64);
            b.iter(|| {
                out.clear();
                package_v3::encode(black_box(&ff), &mut out);
            })
        });
        let mut v3 = BytesMut::new();
        package_v3::encode(&ff, &mut v3);
        g.bench_function("package_v3_decode", |b| {
            let mut d = PackageV3Decoder::default();
            b.iter(|| {
                let mut buf = BytesMut::from(&v3[..]);
                black_box(d.decode(&mut buf).unwrap().unwrap());
            })
        });
        g.finish();
    }

    let mut g = c.benchmark_group("crc32");
    let big = content(64 * 1024 * 1024);
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.sample_size(10);
    g.bench_function("64MiB", |b| {
        b.iter(|| {
            let mut crc = TransactionChecksum::new();
            crc.update(black_box(&big));
            black_box(crc.value())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("compression/1MiB");
    let plain = content(1024 * 1024);
    g.throughput(Throughput::Bytes(plain.len() as u64));
    g.sample_size(20);
    g.bench_function("compress", |b| {
        let mut out = BytesMut::new();
        b.iter(|| {
            out.clear();
            compress(black_box(&plain), &mut out);
        })
    });
    let mut env = BytesMut::new();
    compress(&plain, &mut env);
    let env = env.freeze();
    g.bench_function("decompress", |b| {
        let mut d = Decompressor::default();
        let mut out = BytesMut::with_capacity(plain.len());
        b.iter(|| {
            out.clear();
            let mut src = BytesMut::from(&env[..]);
            assert_eq!(
                d.decode(&mut src, &mut out).unwrap(),
                DecompressStatus::Finished
            );
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
