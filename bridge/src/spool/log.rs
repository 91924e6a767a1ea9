//! The spool handle: appends (through the writer thread), reads, confirms, and opening with
//! recovery (design and invariants: see the module above).

use std::collections::BTreeMap;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

use super::fs::{Filesystem, StdFs};
use super::reader::{self, ENTRY_HEADER, View};
use super::{ledger, recovery, writer};
use crate::codec;
use crate::metrics::Metrics;
use crate::record::{Content, Record, StagedPath};

/// Counter of bad entries found (label `kind`: `corrupt` = skipped, `torn_tail` = cut off).
pub(crate) const CORRUPT_METRIC: &str = "bridge_spool_corrupt_entries_total";
/// Counter of failed spool write groups (a write or fsync failed; nothing of it was acked).
pub(crate) const WRITE_ERRORS_METRIC: &str = "bridge_spool_write_errors_total";

/// What to do when the spool is full.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FullPolicy {
    /// Wait up to `block_timeout_ms` for the drain to free space, then answer retry / 429.
    #[default]
    Block,
    /// Answer retry / 429 at once.
    Reject,
}

/// Spool settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory of the segment files and the ledger. Default `./spool`.
    pub dir: PathBuf,
    /// Most bytes (entries not yet confirmed by NiFi). Default 1 GiB.
    pub max_bytes: u64,
    /// A new segment is started once the current one is this large. Default 16 MiB.
    pub segment_bytes: u64,
    /// What to do when full. Default `block`.
    pub full_policy: FullPolicy,
    /// How long `block` waits for space, in ms. Default 2000.
    pub block_timeout_ms: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("spool"),
            max_bytes: 1 << 30,
            segment_bytes: 16 << 20,
            full_policy: FullPolicy::Block,
            block_timeout_ms: 2000,
        }
    }
}

/// Spool failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// No room (see [`FullPolicy`]).
    #[error("spool full: {pending} of {max} bytes pending")]
    Full {
        /// Bytes waiting for NiFi.
        pending: u64,
        /// Configured maximum.
        max: u64,
    },
    /// One batch is larger than the whole spool.
    #[error("batch of {0} bytes is larger than the spool")]
    TooLarge(u64),
    /// File system error.
    #[error("spool I/O: {0}")]
    Io(#[from] io::Error),
    /// The writer thread is gone (shutdown).
    #[error("spool is closed")]
    Closed,
}

/// A position in the log: segment id and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// Segment id (file `seg-<id>.log`).
    pub seg: u64,
    /// Byte offset inside the segment.
    pub off: u64,
}

#[derive(Debug)]
pub(crate) struct State {
    /// End of what is written and fsynced.
    pub(crate) durable: Pos,
    /// First entry not confirmed by NiFi (what the ledger says).
    confirmed: Pos,
    /// Bytes (including headers) reserved or written and not confirmed.
    pending_bytes: u64,
    /// Entries written and not confirmed.
    pub(crate) pending_entries: u64,
    /// Segments sealed after a failed write: reads stop at this offset.
    pub(crate) sealed: BTreeMap<u64, u64>,
    /// Bad regions (start → end in the same segment) that reads step over.
    skips: BTreeMap<Pos, u64>,
}

/// Entries read from the spool, to be confirmed after NiFi committed them.
#[derive(Debug)]
pub struct ReadBatch {
    /// The FlowFiles of the entries, in order; large content refers to the segment file.
    pub records: Vec<Record>,
    /// Position after the last entry read.
    pub next: Pos,
    /// Number of entries read.
    pub entries: u64,
    /// Bytes read (with entry headers).
    pub bytes: u64,
}

/// A piece of an entry's payload.
pub(crate) enum Part {
    Bytes(Bytes),
    File {
        file: Arc<StagedPath>,
        offset: u64,
        len: u64,
    },
}

pub(crate) struct AppendReq {
    /// The payload, in pieces; the writer adds the entry header (length, CRC).
    pub(crate) parts: Vec<Part>,
    /// Entry length with its header.
    pub(crate) size: u64,
    pub(crate) reply: oneshot::Sender<io::Result<()>>,
}

pub(crate) struct Inner {
    pub(crate) cfg: SpoolConfig,
    pub(crate) fs: Arc<dyn Filesystem>,
    state: Mutex<State>,
    space: Notify,
    pub(crate) data: Notify,
    metrics: Arc<Metrics>,
}

impl Inner {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain numbers; a panic elsewhere cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn publish(&self, st: &State) {
        self.metrics.spool_bytes.set(st.pending_bytes as f64);
        self.metrics.spool_entries.set(st.pending_entries as f64);
    }

    /// Counts `n` bad entries of `kind` (`corrupt` or `torn_tail`).
    fn corrupt(&self, kind: &'static str, n: u64) {
        if n > 0 {
            self.metrics
                .counter(CORRUPT_METRIC, &[("kind", kind)])
                .increment(n);
        }
    }

    /// Counts a failed write group.
    pub(crate) fn write_error(&self) {
        self.metrics.counter(WRITE_ERRORS_METRIC, &[]).increment(1);
    }
}

/// Handle to an open spool. Cheap to clone; the writer thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
    writer: mpsc::Sender<AppendReq>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.inner.cfg.dir)
            .finish_non_exhaustive()
    }
}

pub(crate) fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:020}.log"))
}

fn list_segments(fs: &dyn Filesystem, dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids: Vec<u64> = fs
        .list(dir)?
        .iter()
        .filter_map(|name| {
            name.strip_prefix("seg-")
                .and_then(|s| s.strip_suffix(".log"))
                .and_then(|id| id.parse().ok())
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

impl Spool {
    /// Opens (creating or recovering) the spool in `cfg.dir` and starts its writer thread.
    pub fn open(cfg: SpoolConfig, metrics: Arc<Metrics>) -> Result<Self, SpoolError> {
        Self::open_with(cfg, metrics, Arc::new(StdFs))
    }

    /// [`open`](Self::open) over another [`Filesystem`] (tests inject faults with it).
    pub(crate) fn open_with(
        cfg: SpoolConfig,
        metrics: Arc<Metrics>,
        fs: Arc<dyn Filesystem>,
    ) -> Result<Self, SpoolError> {
        let dir = cfg.dir.clone();
        fs.create_dir_all(&dir)?;
        let mut segs = list_segments(&*fs, &dir)?;
        let ledger = ledger::read(&*fs, &dir);
        let mut confirmed = ledger.unwrap_or_else(|| Pos {
            seg: segs.first().copied().unwrap_or(1),
            off: 0,
        });
        for &id in segs.iter().filter(|&&id| id < confirmed.seg) {
            fs.remove(&seg_path(&dir, id))?;
        }
        segs.retain(|&id| id >= confirmed.seg);
        if segs.first().is_some_and(|&s| s > confirmed.seg) {
            // The ledger's segment is gone (deleted after a newer ledger write): start at the next one.
            confirmed = Pos {
                seg: segs[0],
                off: 0,
            };
        }
        let mut pending_bytes = 0;
        let mut pending_entries = 0;
        let mut durable = confirmed;
        let mut skips = BTreeMap::new();
        let (mut corrupt, mut torn) = (0, 0);
        for &id in &segs {
            let from = if id == confirmed.seg {
                confirmed.off
            } else {
                0
            };
            let scan = recovery::scan_segment(&*fs, &seg_path(&dir, id), from)?;
            pending_bytes += scan.end.saturating_sub(from);
            pending_entries += scan.entries;
            corrupt += scan.skips.len() as u64;
            torn += u64::from(scan.torn.is_some());
            for (a, b) in scan.skips {
                skips.insert(Pos { seg: id, off: a }, b);
            }
            durable = Pos {
                seg: id,
                off: scan.end,
            };
        }
        let file = match segs.last() {
            Some(_) => {
                let mut f = fs.open_write(&seg_path(&dir, durable.seg), false)?;
                f.seek(SeekFrom::Start(durable.off))?;
                Some(f)
            }
            // The writer starts the first segment with the first append.
            None => None,
        };
        tracing::info!(dir = %dir.display(), pending_entries, pending_bytes, corrupt, torn, ?confirmed, ?durable, "spool opened");
        let inner = Arc::new(Inner {
            cfg,
            fs,
            state: Mutex::new(State {
                durable,
                confirmed,
                pending_bytes,
                pending_entries,
                sealed: BTreeMap::new(),
                skips,
            }),
            space: Notify::new(),
            data: Notify::new(),
            metrics,
        });
        inner.corrupt("corrupt", corrupt);
        inner.corrupt("torn_tail", torn);
        inner.publish(&inner.lock());
        let (tx, rx) = mpsc::channel(1024);
        let w_inner = inner.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer::run(w_inner, rx, file, durable))?;
        Ok(Self { inner, writer: tx })
    }

    /// Bytes and entries not yet confirmed by NiFi.
    pub fn depth(&self) -> (u64, u64) {
        let st = self.inner.lock();
        (st.pending_bytes, st.pending_entries)
    }

    /// Whether the spool is at or above its size limit.
    pub fn is_full(&self) -> bool {
        self.inner.lock().pending_bytes >= self.inner.cfg.max_bytes
    }

    /// Appends one batch durably (returns after fsync). Content staged in files is copied into
    /// the segment in chunks, never loaded whole.
    ///
    /// # Cancel safety
    /// If dropped after the entry was handed to the writer, the entry may still be written; the
    /// caller never acked it, so the client resends (at-least-once).
    pub async fn append(&self, records: &[Record]) -> Result<(), SpoolError> {
        let mut parts = Vec::new();
        let mut head = BytesMut::new();
        head.put_u32(u32::try_from(records.len()).unwrap_or(u32::MAX));
        let mut payload = 0u64;
        for r in records {
            codec::encode_header(&r.attributes, r.len(), &mut head);
            match &r.content {
                Content::Inline(b) if b.len() <= 64 << 10 => head.put_slice(b),
                Content::Inline(b) => {
                    payload += head.len() as u64 + b.len() as u64;
                    parts.push(Part::Bytes(head.split().freeze()));
                    parts.push(Part::Bytes(b.clone()));
                }
                Content::File { file, offset, len } => {
                    payload += head.len() as u64 + len;
                    parts.push(Part::Bytes(head.split().freeze()));
                    parts.push(Part::File {
                        file: file.clone(),
                        offset: *offset,
                        len: *len,
                    });
                }
            }
        }
        payload += head.len() as u64;
        parts.push(Part::Bytes(head.freeze()));
        if payload > u64::from(u32::MAX) {
            return Err(SpoolError::TooLarge(payload));
        }
        let size = payload + ENTRY_HEADER;
        self.reserve(size).await?;
        let (reply, rx) = oneshot::channel();
        let sent = self.writer.send(AppendReq { parts, size, reply }).await;
        let result = match sent {
            Ok(()) => rx
                .await
                .unwrap_or_else(|_| Err(io::Error::other("spool writer stopped")))
                .map_err(SpoolError::from),
            Err(_) => Err(SpoolError::Closed),
        };
        if result.is_err() {
            let mut st = self.inner.lock();
            st.pending_bytes = st.pending_bytes.saturating_sub(size);
            self.inner.publish(&st);
            drop(st);
            self.inner.space.notify_waiters();
        }
        result
    }

    async fn reserve(&self, size: u64) -> Result<(), SpoolError> {
        let max = self.inner.cfg.max_bytes;
        if size > max {
            return Err(SpoolError::TooLarge(size));
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.inner.cfg.block_timeout_ms);
        loop {
            let notified = self.inner.space.notified();
            {
                let mut st = self.inner.lock();
                if st.pending_bytes + size <= max {
                    st.pending_bytes += size;
                    self.inner.publish(&st);
                    return Ok(());
                }
                if self.inner.cfg.full_policy == FullPolicy::Reject {
                    return Err(SpoolError::Full {
                        pending: st.pending_bytes,
                        max,
                    });
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let pending = self.inner.lock().pending_bytes;
                return Err(SpoolError::Full { pending, max });
            }
        }
    }

    /// The position of the first unconfirmed entry (where the drain starts after a restart).
    pub fn confirmed(&self) -> Pos {
        self.inner.lock().confirmed
    }

    /// Waits until durable data exists after `pos`.
    pub async fn wait_for_data(&self, pos: Pos) {
        loop {
            let notified = self.inner.data.notified();
            if self.inner.lock().durable > pos {
                return;
            }
            notified.await;
        }
    }

    /// Reads whole entries from `from`, up to `max_records` records / `max_bytes` bytes (at least
    /// one entry if there is one).
    pub async fn read(
        &self,
        from: Pos,
        max_records: usize,
        max_bytes: u64,
    ) -> Result<ReadBatch, SpoolError> {
        let dir = self.inner.cfg.dir.clone();
        let view = {
            let st = self.inner.lock();
            View {
                durable: st.durable,
                sealed: st.sealed.clone(),
                skips: st.skips.clone(),
            }
        };
        let fs = self.inner.fs.clone();
        let (batch, found) = tokio::task::spawn_blocking(move || {
            reader::read_blocking(&*fs, &dir, from, &view, max_records, max_bytes)
        })
        .await
        .map_err(|e| SpoolError::Io(io::Error::other(e)))??;
        if !found.is_empty() {
            let mut st = self.inner.lock();
            let mut new = 0;
            for (at, to) in found {
                new += u64::from(st.skips.insert(at, to).is_none());
            }
            drop(st);
            self.inner.corrupt("corrupt", new);
        }
        if batch.entries == 0 && batch.bytes > 0 {
            // Only bad regions: nothing to deliver, release them now.
            self.confirm(&batch).await?;
        }
        Ok(batch)
    }

    /// Records that NiFi confirmed the entries of `batch`: writes the ledger (fsynced), frees
    /// their space and deletes segments wholly before the new position.
    pub async fn confirm(&self, batch: &ReadBatch) -> Result<(), SpoolError> {
        let (to, entries, freed) = (batch.next, batch.entries, batch.bytes);
        let dir = self.inner.cfg.dir.clone();
        let from = self.inner.lock().confirmed;
        let fs = self.inner.fs.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            ledger::write(&*fs, &dir, to)?;
            for id in from.seg..to.seg {
                match fs.remove(&seg_path(&dir, id)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| SpoolError::Io(io::Error::other(e)))??;
        let mut st = self.inner.lock();
        st.confirmed = to;
        st.pending_bytes = st.pending_bytes.saturating_sub(freed);
        st.pending_entries = st.pending_entries.saturating_sub(entries);
        st.sealed.retain(|&seg, _| seg >= to.seg);
        st.skips.retain(|&at, _| at >= to);
        self.inner.publish(&st);
        drop(st);
        self.inner.space.notify_waiters();
        Ok(())
    }
}
