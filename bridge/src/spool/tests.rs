use std::io::Write;
use std::sync::Arc;

use super::*;
use crate::metrics::Metrics;
use crate::record::{FlowFile, Record};

fn cfg(dir: &std::path::Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        block_timeout_ms: 100,
        ..SpoolConfig::default()
    }
}

fn batch(id: usize, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            FlowFile::new(format!("content {id}/{i}"))
                .with_attribute("id", format!("{id}-{i}"))
                .into()
        })
        .collect()
}

fn ids(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.attribute("id").unwrap_or_default().to_owned())
        .collect()
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        })
        .count()
}

#[tokio::test]
async fn append_read_confirm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(cfg(dir.path()), Arc::new(Metrics::new())).expect("open");
    spool.append(&batch(1, 2)).await.expect("append");
    spool.append(&batch(2, 1)).await.expect("append");
    assert_eq!(spool.depth().1, 2);
    let b = spool
        .read(spool.confirmed(), 1000, u64::MAX)
        .await
        .expect("read");
    assert_eq!(ids(&b.records), ["1-0", "1-1", "2-0"]);
    assert_eq!(b.entries, 2);
    spool.confirm(&b).await.expect("confirm");
    assert_eq!(spool.depth(), (0, 0));
    let again = spool
        .read(spool.confirmed(), 1000, u64::MAX)
        .await
        .expect("read");
    assert!(again.records.is_empty());
}

#[tokio::test]
async fn survives_reopen_and_keeps_unconfirmed_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let spool = Spool::open(cfg(dir.path()), Arc::new(Metrics::new())).expect("open");
        for i in 0..3 {
            spool.append(&batch(i, 1)).await.expect("append");
        }
        let first = spool
            .read(spool.confirmed(), 1, u64::MAX)
            .await
            .expect("read");
        assert_eq!(ids(&first.records), ["0-0"]);
        spool.confirm(&first).await.expect("confirm");
    }
    let spool = Spool::open(cfg(dir.path()), Arc::new(Metrics::new())).expect("reopen");
    assert_eq!(spool.depth().1, 2);
    let rest = spool
        .read(spool.confirmed(), 1000, u64::MAX)
        .await
        .expect("read");
    assert_eq!(ids(&rest.records), ["1-0", "2-0"]);
}

#[tokio::test]
async fn torn_tail_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let spool = Spool::open(cfg(dir.path()), Arc::new(Metrics::new())).expect("open");
        spool.append(&batch(1, 1)).await.expect("append");
        spool.append(&batch(2, 1)).await.expect("append");
    }
    // A crash in the middle of a write: a header promising more bytes than exist.
    let seg = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .expect("segment")
        .path();
    let len_before = std::fs::metadata(&seg).expect("meta").len();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open seg");
    f.write_all(&[0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
        .expect("write garbage");
    drop(f);
    let spool = Spool::open(cfg(dir.path()), Arc::new(Metrics::new())).expect("recover");
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), len_before);
    spool
        .append(&batch(3, 1))
        .await
        .expect("append after recovery");
    let all = spool
        .read(spool.confirmed(), 1000, u64::MAX)
        .await
        .expect("read");
    assert_eq!(ids(&all.records), ["1-0", "2-0", "3-0"]);
}

#[tokio::test]
async fn corrupt_entry_crc_is_detected_on_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let spool = Spool::open(cfg(dir.path()), Arc::new(Metrics::new())).expect("open");
        spool.append(&batch(1, 1)).await.expect("append");
        spool.append(&batch(2, 1)).await.expect("append");
    }
    let seg = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .expect("segment")
        .path();
    let mut bytes = std::fs::read(&seg).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // flip a content byte of the second entry
    std::fs::write(&seg, &bytes).expect("write");
    let spool = Spool::open(cfg(dir.path()), Arc::new(Metrics::new())).expect("recover");
    let all = spool
        .read(spool.confirmed(), 1000, u64::MAX)
        .await
        .expect("read");
    assert_eq!(ids(&all.records), ["1-0"]);
}

#[tokio::test]
async fn rollover_and_segment_deletion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(
        SpoolConfig {
            segment_bytes: 200,
            ..cfg(dir.path())
        },
        Arc::new(Metrics::new()),
    )
    .expect("open");
    for i in 0..10 {
        spool.append(&batch(i, 2)).await.expect("append");
    }
    assert!(segments(dir.path()) > 3, "expected several segments");
    let mut pos = spool.confirmed();
    let mut seen = Vec::new();
    loop {
        let b = spool.read(pos, 3, u64::MAX).await.expect("read");
        if b.entries == 0 {
            break;
        }
        seen.extend(ids(&b.records));
        spool.confirm(&b).await.expect("confirm");
        pos = b.next;
    }
    assert_eq!(seen.len(), 20);
    assert_eq!(seen[0], "0-0");
    assert_eq!(seen[19], "9-1");
    assert!(
        segments(dir.path()) <= 1,
        "confirmed segments must be deleted"
    );
    assert_eq!(spool.depth(), (0, 0));
}

#[tokio::test]
async fn full_spool_rejects_then_frees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = SpoolConfig {
        max_bytes: 300,
        full_policy: FullPolicy::Reject,
        ..cfg(dir.path())
    };
    let spool = Spool::open(small, Arc::new(Metrics::new())).expect("open");
    let mut ok = 0;
    let err = loop {
        match spool.append(&batch(ok, 1)).await {
            Ok(()) => ok += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, SpoolError::Full { .. }), "got {err:?}");
    assert!(ok >= 2);
    let b = spool
        .read(spool.confirmed(), 1, u64::MAX)
        .await
        .expect("read");
    spool.confirm(&b).await.expect("confirm");
    spool
        .append(&batch(99, 1))
        .await
        .expect("space again after confirm");
    assert!(matches!(
        spool.append(&[FlowFile::new(vec![0u8; 1000]).into()]).await,
        Err(SpoolError::TooLarge(_))
    ));
}

#[tokio::test]
async fn blocking_policy_waits_for_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = SpoolConfig {
        max_bytes: 200,
        block_timeout_ms: 5000,
        ..cfg(dir.path())
    };
    let spool = Spool::open(small, Arc::new(Metrics::new())).expect("open");
    spool.append(&batch(1, 2)).await.expect("append");
    spool.append(&batch(2, 2)).await.expect("append");
    let waiting = {
        let spool = spool.clone();
        tokio::spawn(async move { spool.append(&batch(3, 2)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "append must block while full");
    let b = spool
        .read(spool.confirmed(), 1, u64::MAX)
        .await
        .expect("read");
    spool.confirm(&b).await.expect("confirm");
    waiting
        .await
        .expect("join")
        .expect("append after space freed");
}

// ---- Faults (through the filesystem seam) ----

use super::faults::FaultFs;
use crate::pipeline::Pipeline;
use crate::record::Outcome;

fn open_faulty(dir: &std::path::Path, fs: &FaultFs, metrics: &Arc<Metrics>) -> Spool {
    Spool::open_with(cfg(dir), metrics.clone(), Arc::new(fs.clone())).expect("open")
}

async fn all_ids(spool: &Spool) -> Vec<String> {
    let b = spool
        .read(spool.confirmed(), 100_000, u64::MAX)
        .await
        .expect("read");
    ids(&b.records)
}

/// The value of a counter line in the bridge's Prometheus text (0 when absent).
fn counter(metrics: &Metrics, line_start: &str) -> u64 {
    metrics
        .render()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn seg_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seg-"))
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn disk_full_answers_retry_and_acks_nothing_that_is_not_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultFs::default();
    let metrics = Arc::new(Metrics::new());
    let spool = open_faulty(dir.path(), &fs, &metrics);
    let pipeline = Pipeline::Spool {
        spool: spool.clone(),
        retry_after: std::time::Duration::from_millis(750),
    };
    assert!(matches!(
        pipeline.accept(batch(1, 2)).await,
        Outcome::Committed
    ));
    // The disk fills up in the middle of the next entry.
    fs.set(|f| f.space_left = Some(20));
    match pipeline.accept(batch(2, 2)).await {
        Outcome::Retry { after, .. } => assert_eq!(after, std::time::Duration::from_millis(750)),
        other => panic!("disk full must answer retry, got {other:?}"),
    }
    assert!(fs.get(|f| f.failed_writes) > 0, "the fault was not hit");
    assert!(matches!(
        spool.append(&batch(3, 1)).await,
        Err(SpoolError::Io(e)) if e.kind() == std::io::ErrorKind::StorageFull
    ));
    assert_eq!(spool.depth().1, 1, "only the acked batch is pending");
    assert_eq!(all_ids(&spool).await, ["1-0", "1-1"]);
    // Space again: appends work (in a new segment) and the failed batches never appear.
    fs.set(|f| f.space_left = None);
    assert!(matches!(
        pipeline.accept(batch(4, 1)).await,
        Outcome::Committed
    ));
    assert_eq!(all_ids(&spool).await, ["1-0", "1-1", "4-0"]);
    assert_eq!(counter(&metrics, "bridge_spool_write_errors_total"), 2);
    drop((pipeline, spool));
    let spool = open_faulty(dir.path(), &fs, &Arc::new(Metrics::new()));
    assert_eq!(
        all_ids(&spool).await,
        ["1-0", "1-1", "4-0"],
        "after a restart"
    );
}

#[tokio::test]
async fn failed_fsync_is_not_acked_and_the_segment_is_not_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultFs::default();
    let metrics = Arc::new(Metrics::new());
    let spool = open_faulty(dir.path(), &fs, &metrics);
    spool.append(&batch(1, 1)).await.expect("append");
    assert_eq!(seg_files(dir.path()).len(), 1);
    // The fsync fails and the kernel drops the dirty pages of the batch.
    fs.set(|f| {
        f.fail_syncs = 1;
        f.drop_dirty = true;
    });
    assert!(spool.append(&batch(2, 1)).await.is_err(), "must not ack");
    assert_eq!(fs.get(|f| f.failed_syncs), 1);
    spool.append(&batch(3, 1)).await.expect("append after");
    assert_eq!(
        seg_files(dir.path()).len(),
        2,
        "the next append goes to a new segment"
    );
    assert_eq!(all_ids(&spool).await, ["1-0", "3-0"]);
    drop(spool);
    let m2 = Arc::new(Metrics::new());
    let spool = open_faulty(dir.path(), &fs, &m2);
    assert_eq!(all_ids(&spool).await, ["1-0", "3-0"], "after a restart");
    assert_eq!(counter(&m2, "bridge_spool_corrupt_entries_total"), 0);
}

#[tokio::test]
async fn failed_fsync_whose_bytes_reached_the_disk_is_at_most_a_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultFs::default();
    let metrics = Arc::new(Metrics::new());
    let spool = open_faulty(dir.path(), &fs, &metrics);
    spool.append(&batch(1, 1)).await.expect("append");
    // The group's fsync fails, and so does the one after truncating: the bytes stay.
    fs.set(|f| f.fail_syncs = 2);
    assert!(spool.append(&batch(2, 1)).await.is_err(), "must not ack");
    spool.append(&batch(3, 1)).await.expect("append after");
    // While running, reads obey the seal.
    assert_eq!(all_ids(&spool).await, ["1-0", "3-0"]);
    drop(spool);
    let spool = open_faulty(dir.path(), &fs, &metrics);
    let after = all_ids(&spool).await;
    // The truncation itself succeeded here (only its fsync failed), so batch 2 is gone; had it
    // survived it would be recovered as a whole entry (a duplicate of the client's resend).
    assert!(
        after == ["1-0", "3-0"] || after == ["1-0", "2-0", "3-0"],
        "{after:?}"
    );
}

/// Offsets of the entries of a segment file (walking the length fields).
fn entry_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        v.push(at);
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
        at += 8 + len;
    }
    v
}

#[tokio::test]
async fn flipped_bytes_keep_every_intact_entry_and_are_counted() {
    for (what, at_entry, byte_in_entry) in [
        ("payload", 1, 20),
        ("length field", 1, 1),
        ("crc field", 1, 5),
        ("first entry's length", 0, 2),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let spool = Spool::open(cfg(dir.path()), Arc::new(Metrics::new())).expect("open");
            for i in 0..4 {
                spool.append(&batch(i, 2)).await.expect("append");
            }
        }
        let seg = seg_files(dir.path()).remove(0);
        let mut bytes = std::fs::read(&seg).expect("read");
        let offs = entry_offsets(&bytes);
        assert_eq!(offs.len(), 4);
        bytes[offs[at_entry] + byte_in_entry] ^= 0x40;
        std::fs::write(&seg, &bytes).expect("write");
        let metrics = Arc::new(Metrics::new());
        let spool = Spool::open(cfg(dir.path()), metrics.clone()).expect("recover");
        let mut want: Vec<String> = Vec::new();
        for i in (0..4).filter(|&i| i != at_entry) {
            want.extend([format!("{i}-0"), format!("{i}-1")]);
        }
        assert_eq!(all_ids(&spool).await, want, "{what}");
        assert_eq!(
            counter(
                &metrics,
                "bridge_spool_corrupt_entries_total{kind=\"corrupt\"}"
            ),
            1,
            "{what}"
        );
        assert_eq!(spool.depth().1, 3, "{what}");
        // Appends continue after the recovered data, and a drain frees everything.
        spool.append(&batch(9, 1)).await.expect("append");
        let b = spool
            .read(spool.confirmed(), 100_000, u64::MAX)
            .await
            .expect("read");
        assert_eq!(ids(&b.records).last().map(String::as_str), Some("9-0"));
        spool.confirm(&b).await.expect("confirm");
        assert_eq!(spool.depth(), (0, 0), "{what}: corrupt bytes are freed too");
    }
}

#[tokio::test]
async fn torn_tail_is_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let spool = Spool::open(cfg(dir.path()), Arc::new(Metrics::new())).expect("open");
        spool.append(&batch(1, 1)).await.expect("append");
        spool.append(&batch(2, 1)).await.expect("append");
    }
    let seg = seg_files(dir.path()).remove(0);
    let bytes = std::fs::read(&seg).expect("read");
    // Cut the last entry in half: a crash in the middle of its write.
    std::fs::write(&seg, &bytes[..bytes.len() - 5]).expect("write");
    let metrics = Arc::new(Metrics::new());
    let spool = Spool::open(cfg(dir.path()), metrics.clone()).expect("recover");
    assert_eq!(all_ids(&spool).await, ["1-0"]);
    assert_eq!(
        counter(
            &metrics,
            "bridge_spool_corrupt_entries_total{kind=\"torn_tail\"}"
        ),
        1
    );
    assert_eq!(
        counter(
            &metrics,
            "bridge_spool_corrupt_entries_total{kind=\"corrupt\"}"
        ),
        0
    );
}

#[tokio::test]
async fn corruption_found_while_draining_is_skipped_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Arc::new(Metrics::new());
    let spool = Spool::open(cfg(dir.path()), metrics.clone()).expect("open");
    for i in 0..3 {
        spool.append(&batch(i, 1)).await.expect("append");
    }
    // Bit rot after the write (the spool is open).
    let seg = seg_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&seg).expect("read");
    let offs = entry_offsets(&bytes);
    bytes[offs[1] + 30] ^= 1;
    std::fs::write(&seg, &bytes).expect("write");
    assert_eq!(all_ids(&spool).await, ["0-0", "2-0"]);
    assert_eq!(all_ids(&spool).await, ["0-0", "2-0"]);
    assert_eq!(
        counter(
            &metrics,
            "bridge_spool_corrupt_entries_total{kind=\"corrupt\"}"
        ),
        1
    );
}

#[tokio::test]
async fn restart_in_the_middle_of_a_drain_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = SpoolConfig {
        segment_bytes: 300,
        ..cfg(dir.path())
    };
    let mut delivered: Vec<String> = Vec::new();
    let unconfirmed;
    {
        let spool = Spool::open(small.clone(), Arc::new(Metrics::new())).expect("open");
        for i in 0..20 {
            spool.append(&batch(i, 3)).await.expect("append");
        }
        let mut pos = spool.confirmed();
        for _ in 0..4 {
            let b = spool.read(pos, 5, u64::MAX).await.expect("read");
            delivered.extend(ids(&b.records));
            spool.confirm(&b).await.expect("confirm");
            pos = b.next;
        }
        // Delivered to NiFi, but the bridge dies before confirming.
        let b = spool.read(pos, 5, u64::MAX).await.expect("read");
        unconfirmed = ids(&b.records);
        delivered.extend(unconfirmed.clone());
    }
    let spool = Spool::open(small, Arc::new(Metrics::new())).expect("reopen");
    let mut pos = spool.confirmed();
    loop {
        let b = spool.read(pos, 7, u64::MAX).await.expect("read");
        if b.entries == 0 {
            break;
        }
        delivered.extend(ids(&b.records));
        spool.confirm(&b).await.expect("confirm");
        pos = b.next;
    }
    let mut want: Vec<String> = (0..20)
        .flat_map(|i| (0..3).map(move |j| format!("{i}-{j}")))
        .collect();
    want.sort();
    let mut seen = delivered.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, want, "nothing lost");
    let dups = delivered.len() - want.len();
    assert_eq!(
        dups,
        unconfirmed.len(),
        "duplicates are the unconfirmed batch only"
    );
    assert_eq!(spool.depth(), (0, 0));
}

// ---- Recovery over random corruption (property) ----

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// What happens to the segment file before it is reopened.
    #[derive(Debug, Clone)]
    enum Damage {
        /// XOR a byte at (fraction of the file) with a nonzero mask.
        Flip(f64, u8),
        /// Overwrite a run of bytes with zeros.
        Zero(f64, u16),
        /// Cut the file at a fraction of its length.
        Truncate(f64),
        /// Append garbage (a torn write of something).
        Garbage(Vec<u8>),
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            (0.0..1.0f64, 1..=255u8).prop_map(|(a, m)| Damage::Flip(a, m)),
            (0.0..1.0f64, 1..64u16).prop_map(|(a, n)| Damage::Zero(a, n)),
            (0.0..1.0f64).prop_map(Damage::Truncate),
            proptest::collection::vec(any::<u8>(), 1..40).prop_map(Damage::Garbage),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// Recovery never panics or fails, returns only records that were written, in order, and
        /// keeps every entry whose bytes were not touched.
        #[test]
        fn recovery_keeps_every_intact_entry(
            sizes in proptest::collection::vec((1usize..4, 0usize..300), 1..12),
            damages in proptest::collection::vec(damage(), 1..4),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            rt.block_on(async {
                let dir = tempfile::tempdir().expect("tempdir");
                {
                    let spool = Spool::open(cfg(dir.path()), Arc::new(Metrics::new())).expect("open");
                    for (i, &(n, pad)) in sizes.iter().enumerate() {
                        let recs: Vec<Record> = (0..n)
                            .map(|j| {
                                FlowFile::new(vec![b'x'; pad + j])
                                    .with_attribute("id", format!("{i}-{j}"))
                                    .into()
                            })
                            .collect();
                        spool.append(&recs).await.expect("append");
                    }
                }
                let seg = seg_files(dir.path()).remove(0);
                let mut bytes = std::fs::read(&seg).expect("read");
                let offs = entry_offsets(&bytes);
                let spans: Vec<(usize, usize)> = offs
                    .iter()
                    .enumerate()
                    .map(|(k, &a)| (a, offs.get(k + 1).copied().unwrap_or(bytes.len())))
                    .collect();
                // Which entries were touched.
                let mut touched = vec![false; spans.len()];
                let touch = |a: usize, b: usize, touched: &mut Vec<bool>| {
                    for (k, &(s, e)) in spans.iter().enumerate() {
                        if a < e && b > s {
                            touched[k] = true;
                        }
                    }
                };
                for d in &damages {
                    let len = bytes.len();
                    if len == 0 {
                        break;
                    }
                    let at = |f: f64| ((f * len as f64) as usize).min(len - 1);
                    match d {
                        Damage::Flip(f, m) => {
                            let i = at(*f);
                            bytes[i] ^= m;
                            touch(i, i + 1, &mut touched);
                        }
                        Damage::Zero(f, n) => {
                            let i = at(*f);
                            let j = (i + usize::from(*n)).min(len);
                            bytes[i..j].fill(0);
                            touch(i, j, &mut touched);
                        }
                        Damage::Truncate(f) => {
                            let i = at(*f);
                            bytes.truncate(i);
                            touch(i, usize::MAX, &mut touched);
                        }
                        // Garbage after the last entry touches none.
                        Damage::Garbage(g) => bytes.extend_from_slice(g),
                    }
                }
                std::fs::write(&seg, &bytes).expect("write");
                let spool = Spool::open(cfg(dir.path()), Arc::new(Metrics::new())).expect("recovery must not fail");
                let got = all_ids(&spool).await;
                let written: Vec<String> = sizes
                    .iter()
                    .enumerate()
                    .flat_map(|(i, &(n, _))| (0..n).map(move |j| format!("{i}-{j}")))
                    .collect();
                // Only written records, in order, whole entries at a time.
                let mut it = written.iter();
                for id in &got {
                    prop_assert!(it.any(|w| w == id), "{id} not written or out of order: {got:?}");
                }
                for (k, &t) in touched.iter().enumerate() {
                    if !t {
                        for j in 0..sizes[k].0 {
                            let id = format!("{k}-{j}");
                            prop_assert!(got.contains(&id), "intact {id} lost: {got:?} damages {damages:?}");
                        }
                    }
                }
                // And the spool still works.
                spool.append(&batch(99, 1)).await.expect("append after recovery");
                let again = all_ids(&spool).await;
                prop_assert_eq!(again.last().map(String::as_str), Some("99-0"));
                Ok(())
            })?;
        }
    }
}
