//! Segment log implementation (design and invariants: see the module above).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::codec;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::record::FlowFile;

const ENTRY_HEADER: u64 = 8;
const LEDGER: &str = "ledger";

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
struct State {
    /// End of what is written and fsynced.
    durable: Pos,
    /// First entry not confirmed by NiFi (what the ledger says).
    confirmed: Pos,
    /// Bytes (including headers) reserved or written and not confirmed.
    pending_bytes: u64,
    /// Entries written and not confirmed.
    pending_entries: u64,
}

/// Entries read from the spool, to be confirmed after NiFi committed them.
#[derive(Debug)]
pub struct ReadBatch {
    /// The FlowFiles of the entries, in order.
    pub records: Vec<FlowFile>,
    /// Position after the last entry read.
    pub next: Pos,
    /// Number of entries read.
    pub entries: u64,
    /// Bytes read (with entry headers).
    pub bytes: u64,
}

struct AppendReq {
    entry: Bytes,
    reply: oneshot::Sender<io::Result<()>>,
}

struct Inner {
    cfg: SpoolConfig,
    state: Mutex<State>,
    space: Notify,
    data: Notify,
    metrics: Arc<Metrics>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain numbers; a panic elsewhere cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, st: &State) {
        self.metrics
            .spool_bytes
            .set(i64::try_from(st.pending_bytes).unwrap_or(i64::MAX));
        self.metrics
            .spool_entries
            .set(i64::try_from(st.pending_entries).unwrap_or(i64::MAX));
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

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:020}.log"))
}

fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name
            .strip_prefix("seg-")
            .and_then(|s| s.strip_suffix(".log"))
            && let Ok(id) = id.parse()
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_ledger(dir: &Path) -> Option<Pos> {
    let b = fs::read(dir.join(LEDGER)).ok()?;
    if b.len() != 20 {
        return None;
    }
    let mut buf = &b[..];
    let seg = buf.get_u64();
    let off = buf.get_u64();
    (crc32fast::hash(&b[..16]) == buf.get_u32()).then_some(Pos { seg, off })
}

fn write_ledger(dir: &Path, pos: Pos) -> io::Result<()> {
    let mut b = BytesMut::with_capacity(20);
    b.put_u64(pos.seg);
    b.put_u64(pos.off);
    let crc = crc32fast::hash(&b);
    b.put_u32(crc);
    let tmp = dir.join("ledger.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&b)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(LEDGER))?;
    sync_dir(dir)
}

/// Reads one entry at the reader's position; `Ok(None)` at a clean end or a torn/corrupt entry
/// (the caller tells those apart by comparing with the file length).
fn read_entry(r: &mut impl Read, remaining: u64) -> io::Result<Option<Bytes>> {
    if remaining < ENTRY_HEADER {
        return Ok(None);
    }
    let mut h = [0u8; 8];
    r.read_exact(&mut h)?;
    let len = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
    let crc = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    if len > remaining - ENTRY_HEADER {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    if crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    Ok(Some(Bytes::from(payload)))
}

/// Scans a segment from `off`, returns (valid end, entries, bytes) and truncates anything after it.
fn recover_segment(path: &Path, from: u64) -> io::Result<(u64, u64)> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let mut pos = from.min(len);
    f.seek(SeekFrom::Start(pos))?;
    let mut reader = io::BufReader::new(&mut f);
    let mut entries = 0;
    while let Some(p) = read_entry(&mut reader, len - pos)? {
        pos += ENTRY_HEADER + p.len() as u64;
        entries += 1;
    }
    drop(reader);
    if pos < len {
        tracing::warn!(path = %path.display(), valid = pos, len, "spool: truncating torn or corrupt tail");
        f.set_len(pos)?;
        f.sync_all()?;
    }
    Ok((pos, entries))
}

impl Spool {
    /// Opens (creating or recovering) the spool in `cfg.dir` and starts its writer thread.
    pub fn open(cfg: SpoolConfig, metrics: Arc<Metrics>) -> Result<Self, SpoolError> {
        let dir = cfg.dir.clone();
        fs::create_dir_all(&dir)?;
        let mut segs = list_segments(&dir)?;
        let ledger = read_ledger(&dir);
        let mut confirmed = ledger.unwrap_or_else(|| Pos {
            seg: segs.first().copied().unwrap_or(1),
            off: 0,
        });
        for &id in segs.iter().filter(|&&id| id < confirmed.seg) {
            fs::remove_file(seg_path(&dir, id))?;
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
        for &id in &segs {
            let from = if id == confirmed.seg {
                confirmed.off
            } else {
                0
            };
            let (end, entries) = recover_segment(&seg_path(&dir, id), from)?;
            pending_bytes += end.saturating_sub(from);
            pending_entries += entries;
            durable = Pos { seg: id, off: end };
        }
        if segs.is_empty() {
            File::create(seg_path(&dir, durable.seg))?;
            sync_dir(&dir)?;
        }
        tracing::info!(dir = %dir.display(), pending_entries, pending_bytes, ?confirmed, ?durable, "spool opened");
        let inner = Arc::new(Inner {
            cfg,
            state: Mutex::new(State {
                durable,
                confirmed,
                pending_bytes,
                pending_entries,
            }),
            space: Notify::new(),
            data: Notify::new(),
            metrics,
        });
        inner.publish(&inner.lock());
        let (tx, rx) = mpsc::channel(1024);
        let file = OpenOptions::new()
            .append(true)
            .open(seg_path(&dir, durable.seg))?;
        let w_inner = inner.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer_thread(w_inner, rx, file, durable))?;
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

    /// Appends one batch durably (returns after fsync).
    ///
    /// # Cancel safety
    /// If dropped after the entry was handed to the writer, the entry may still be written; the
    /// caller never acked it, so the client resends (at-least-once).
    pub async fn append(&self, records: &[FlowFile]) -> Result<(), SpoolError> {
        let mut payload = BytesMut::with_capacity(
            4 + records
                .iter()
                .map(crate::record::encoded_len)
                .sum::<usize>(),
        );
        payload.put_u32(u32::try_from(records.len()).unwrap_or(u32::MAX));
        for r in records {
            codec::encode(r, &mut payload);
        }
        let mut entry = BytesMut::with_capacity(payload.len() + 8);
        entry.put_u32(
            u32::try_from(payload.len()).map_err(|_| SpoolError::TooLarge(payload.len() as u64))?,
        );
        entry.put_u32(crc32fast::hash(&payload));
        entry.put_slice(&payload);
        let size = entry.len() as u64;
        self.reserve(size).await?;
        let (reply, rx) = oneshot::channel();
        let sent = self
            .writer
            .send(AppendReq {
                entry: entry.freeze(),
                reply,
            })
            .await;
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
        let durable = self.inner.lock().durable;
        tokio::task::spawn_blocking(move || {
            read_blocking(&dir, from, durable, max_records, max_bytes)
        })
        .await
        .map_err(|e| SpoolError::Io(io::Error::other(e)))?
    }

    /// Records that NiFi confirmed the entries of `batch`: writes the ledger (fsynced), frees
    /// their space and deletes segments wholly before the new position.
    pub async fn confirm(&self, batch: &ReadBatch) -> Result<(), SpoolError> {
        let (to, entries, freed) = (batch.next, batch.entries, batch.bytes);
        let dir = self.inner.cfg.dir.clone();
        let from = self.inner.lock().confirmed;
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            write_ledger(&dir, to)?;
            for id in from.seg..to.seg {
                match fs::remove_file(seg_path(&dir, id)) {
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
        self.inner.publish(&st);
        drop(st);
        self.inner.space.notify_waiters();
        Ok(())
    }
}

fn read_blocking(
    dir: &Path,
    mut pos: Pos,
    durable: Pos,
    max_records: usize,
    max_bytes: u64,
) -> Result<ReadBatch, SpoolError> {
    let unbounded = Limits {
        max_message_bytes: usize::MAX,
        max_records: usize::MAX,
        max_attributes: usize::MAX,
        max_attribute_bytes: usize::MAX,
        max_content_bytes: usize::MAX,
        ..Limits::default()
    };
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut entries = 0u64;
    while pos < durable {
        let path = seg_path(dir, pos.seg);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && pos.seg < durable.seg => {
                pos = Pos {
                    seg: pos.seg + 1,
                    off: 0,
                };
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let end = if pos.seg == durable.seg {
            durable.off
        } else {
            f.metadata()?.len()
        };
        f.seek(SeekFrom::Start(pos.off))?;
        let mut r = io::BufReader::new(f);
        while pos.off < end {
            let Some(payload) = read_entry(&mut r, end - pos.off)? else {
                return Err(SpoolError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("corrupt spool entry in {} at {}", path.display(), pos.off),
                )));
            };
            let mut p = payload.clone();
            let count = p.get_u32() as usize;
            let records = codec::decode_all(p, count, &unbounded).map_err(|e| {
                SpoolError::Io(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
            })?;
            pos.off += ENTRY_HEADER + payload.len() as u64;
            bytes += ENTRY_HEADER + payload.len() as u64;
            entries += 1;
            out.extend(records);
            if out.len() >= max_records || bytes >= max_bytes {
                return Ok(ReadBatch {
                    records: out,
                    next: pos,
                    entries,
                    bytes,
                });
            }
        }
        if pos.seg < durable.seg {
            pos = Pos {
                seg: pos.seg + 1,
                off: 0,
            };
        }
    }
    Ok(ReadBatch {
        records: out,
        next: pos,
        entries,
        bytes,
    })
}

fn writer_thread(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<AppendReq>,
    mut file: File,
    mut at: Pos,
) {
    let dir = inner.cfg.dir.clone();
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let result = (|| -> io::Result<Pos> {
            for req in &group {
                let len = req.entry.len() as u64;
                if at.off > 0 && at.off + len > inner.cfg.segment_bytes {
                    file.sync_data()?;
                    let next = Pos {
                        seg: at.seg + 1,
                        off: 0,
                    };
                    file = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(seg_path(&dir, next.seg))?;
                    sync_dir(&dir)?;
                    at = next;
                }
                file.write_all(&req.entry)?;
                at.off += len;
            }
            file.sync_data()?;
            Ok(at)
        })();
        match result {
            Ok(end) => {
                let mut st = inner.lock();
                st.durable = end;
                st.pending_entries += group.len() as u64;
                inner.publish(&st);
                drop(st);
                inner.data.notify_waiters();
                for req in group {
                    let _ = req.reply.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "spool write failed");
                // The file may now end in a partial entry: recover it so the next append starts clean.
                if let Ok((end, _)) = recover_segment(&seg_path(&dir, at.seg), 0) {
                    at.off = end;
                }
                for req in group {
                    let _ = req.reply.send(Err(io::Error::new(e.kind(), e.to_string())));
                }
            }
        }
    }
}
