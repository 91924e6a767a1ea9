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
