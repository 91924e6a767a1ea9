//! Spool write cost: the bridge's segment log vs an embedded store (redb), both made durable
//! before the ack (fsync / `Durability::Immediate`). Run: `cargo bench -p nifi-s2s-bridge --bench spool`.
//! The numbers and the choice they support are in `bridge/README.md`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use s2s_bridge::metrics::Metrics;
use s2s_bridge::spool::{Spool, SpoolConfig};
use s2s_bridge::{FlowFile, Record};

const TABLE: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("spool");

fn batch(bytes: usize) -> Vec<FlowFile> {
    vec![
        FlowFile::new(vec![7u8; bytes])
            .with_attribute("id", "bench")
            .with_attribute("filename", "b.bin"),
    ]
}

fn encoded(records: &[FlowFile]) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    records
        .iter()
        .for_each(|r| s2s_bridge::codec::encode(r, &mut b));
    b.to_vec()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("durable_append");
    g.measurement_time(Duration::from_secs(5)).sample_size(20);
    for size in [1024usize, 64 * 1024] {
        let records = batch(size);
        let payload = encoded(&records);
        let records: Vec<Record> = records.into_iter().map(Record::from).collect();
        for writers in [1usize, 16] {
            g.throughput(Throughput::Bytes((size * writers) as u64));
            let dir = tempfile::tempdir().expect("tempdir");
            let spool = rt.block_on(async {
                Spool::open(
                    SpoolConfig {
                        dir: dir.path().to_path_buf(),
                        max_bytes: u64::MAX,
                        ..SpoolConfig::default()
                    },
                    Arc::new(Metrics::new()),
                )
                .expect("open")
            });
            g.bench_with_input(
                BenchmarkId::new(format!("segment_log/{writers}_writers"), size),
                &records,
                |b, r| {
                    b.iter(|| {
                        rt.block_on(async {
                            let tasks: Vec<_> = (0..writers)
                                .map(|_| {
                                    let (s, r) = (spool.clone(), r.clone());
                                    tokio::spawn(async move { s.append(&r).await.expect("append") })
                                })
                                .collect();
                            for t in tasks {
                                t.await.expect("join");
                            }
                        });
                    });
                },
            );
            // redb: each ack is one committed write transaction with Durability::Immediate.
            let rdir = tempfile::tempdir().expect("tempdir");
            let db =
                Arc::new(redb::Database::create(rdir.path().join("spool.redb")).expect("redb"));
            let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
            g.bench_with_input(
                BenchmarkId::new(format!("redb/{writers}_writers"), size),
                &payload,
                |b, p| {
                    b.iter(|| {
                        std::thread::scope(|s| {
                            for _ in 0..writers {
                                let (db, seq) = (db.clone(), seq.clone());
                                s.spawn(move || {
                                    let tx = db.begin_write().expect("tx");
                                    {
                                        let mut t = tx.open_table(TABLE).expect("table");
                                        let k =
                                            seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                        t.insert(k, p.as_slice()).expect("insert");
                                    }
                                    tx.commit().expect("commit");
                                });
                            }
                        });
                    });
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
