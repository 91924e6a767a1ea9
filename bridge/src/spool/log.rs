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
use crate::metrics::Metrics;
use crate::record::{Content, Record, StagedPath};
use crate::stage::INLINE_MAX;

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
enum Part {
    Bytes(Bytes),
    File {
        file: Arc<StagedPath>,
        offset: u64,
        len: u64,
    },
}

struct AppendReq {
    /// The payload, in pieces; the writer adds the entry header (length, CRC).
    parts: Vec<Part>,
    /// Entry length with its header.
    size: u64,
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

/// Reads with a running CRC32 and byte count.
struct Hashing<R> {
    inner: R,
    crc: crc32fast::Hasher,
    n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// The entry header at the reader's position if a whole entry fits in `remaining` bytes.
fn entry_header(r: &mut impl Read, remaining: u64) -> io::Result<Option<(u64, u32)>> {
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
    Ok(Some((len, crc)))
}

/// Checks one entry at the reader's position without holding it: its payload length if whole and
/// its CRC matches; `Ok(None)` at a clean end or a torn/corrupt entry (the caller tells those apart
/// by comparing with the file length).
fn check_entry(r: &mut impl Read, remaining: u64) -> io::Result<Option<u64>> {
    let Some((len, crc)) = entry_header(r, remaining)? else {
        return Ok(None);
    };
    let mut h = Hashing {
        inner: r.take(len),
        crc: crc32fast::Hasher::new(),
        n: 0,
    };
    io::copy(&mut h, &mut io::sink())?;
    Ok((h.n == len && h.crc.finalize() == crc).then_some(len))
}

fn corrupt(m: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.into())
}

/// Reads the records of the entry at `entry_off` of segment `seg` (reader positioned there).
/// Content up to [`INLINE_MAX`] is read into memory; larger content is referenced in the segment.
/// `Ok(None)` for a torn or corrupt entry.
fn read_entry_records(
    r: &mut impl Read,
    seg: &Arc<StagedPath>,
    entry_off: u64,
    remaining: u64,
) -> io::Result<Option<(u64, Vec<Record>)>> {
    let Some((len, crc)) = entry_header(r, remaining)? else {
        return Ok(None);
    };
    let payload_off = entry_off + ENTRY_HEADER;
    let mut h = Hashing {
        inner: r.take(len),
        crc: crc32fast::Hasher::new(),
        n: 0,
    };
    let records = match read_payload(&mut h, seg, payload_off, len) {
        Ok(recs) => recs,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok((h.n == len && h.crc.finalize() == crc).then_some((len, records)))
}

/// `u32 count | count × FlowFile (v1: i32 attribute count, (i32 len, key, i32 len, value)…, i64
/// content length, content)`, every length checked against what is left of the payload.
fn read_payload(
    h: &mut Hashing<impl Read>,
    seg: &Arc<StagedPath>,
    payload_off: u64,
    len: u64,
) -> io::Result<Vec<Record>> {
    fn be<const N: usize>(h: &mut impl Read) -> io::Result<[u8; N]> {
        let mut b = [0u8; N];
        h.read_exact(&mut b)?;
        Ok(b)
    }
    let count = u32::from_be_bytes(be(h)?);
    let mut out = Vec::with_capacity((count as usize).min(1024));
    for _ in 0..count {
        let n = i32::from_be_bytes(be(h)?);
        let n = usize::try_from(n).map_err(|_| corrupt("negative attribute count"))?;
        let mut attributes = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let mut pair = [String::new(), String::new()];
            for s in &mut pair {
                let l = i32::from_be_bytes(be(h)?);
                let l = u64::try_from(l).map_err(|_| corrupt("negative length"))?;
                if l > len - h.n {
                    return Err(corrupt("attribute longer than its entry"));
                }
                let mut b = vec![0u8; l as usize];
                h.read_exact(&mut b)?;
                *s = String::from_utf8(b).map_err(|_| corrupt("attribute is not UTF-8"))?;
            }
            let [k, v] = pair;
            attributes.push((k, v));
        }
        let clen = i64::from_be_bytes(be(h)?);
        let clen = u64::try_from(clen).map_err(|_| corrupt("negative content length"))?;
        if clen > len - h.n {
            return Err(corrupt("content longer than its entry"));
        }
        let content = if clen <= INLINE_MAX {
            let mut b = vec![0u8; clen as usize];
            h.read_exact(&mut b)?;
            Content::Inline(Bytes::from(b))
        } else {
            let offset = payload_off + h.n;
            let copied = io::copy(&mut (&mut *h).take(clen), &mut io::sink())?;
            if copied != clen {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Content::File {
                file: seg.clone(),
                offset,
                len: clen,
            }
        };
        out.push(Record {
            attributes,
            content,
        });
    }
    Ok(out)
}

/// Scans a segment from `off`, returns (valid end, entries, bytes) and truncates anything after it.
fn recover_segment(path: &Path, from: u64) -> io::Result<(u64, u64)> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let mut pos = from.min(len);
    f.seek(SeekFrom::Start(pos))?;
    let mut reader = io::BufReader::new(&mut f);
    let mut entries = 0;
    while let Some(p) = check_entry(&mut reader, len - pos)? {
        pos += ENTRY_HEADER + p;
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
        // Not O_APPEND: the writer goes back to fill in an entry's header once its payload is written.
        let mut file = OpenOptions::new()
            .write(true)
            .open(seg_path(&dir, durable.seg))?;
        file.seek(SeekFrom::Start(durable.off))?;
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
        let mut r = io::BufReader::with_capacity(256 << 10, f);
        let seg = Arc::new(StagedPath::borrowed(path.clone()));
        while pos.off < end {
            let Some((len, records)) = read_entry_records(&mut r, &seg, pos.off, end - pos.off)?
            else {
                return Err(SpoolError::Io(corrupt(format!(
                    "corrupt spool entry in {} at {}",
                    path.display(),
                    pos.off
                ))));
            };
            pos.off += ENTRY_HEADER + len;
            bytes += ENTRY_HEADER + len;
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

/// Writes one entry at the file's position: a placeholder header (its CRC can never match, so
/// a crash before the real header is written leaves a torn entry), the payload with a running
/// CRC, then the real header. Returns the entry length.
fn write_entry(file: &mut File, start: u64, parts: &[Part]) -> io::Result<u64> {
    file.write_all(&[0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])?;
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    let mut buf = Vec::new();
    for part in parts {
        match part {
            Part::Bytes(b) => {
                crc.update(b);
                file.write_all(b)?;
                len += b.len() as u64;
            }
            Part::File {
                file: src,
                offset,
                len: n,
            } => {
                buf.resize(1 << 20, 0);
                let mut f = File::open(src.path())?;
                f.seek(SeekFrom::Start(*offset))?;
                let mut left = *n;
                while left > 0 {
                    let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    f.read_exact(&mut buf[..want])?;
                    crc.update(&buf[..want]);
                    file.write_all(&buf[..want])?;
                    left -= want as u64;
                }
                len += n;
            }
        }
    }
    let len32 = u32::try_from(len).map_err(|_| io::Error::other("entry over 4 GiB"))?;
    file.seek(SeekFrom::Start(start))?;
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&len32.to_be_bytes());
    h[4..].copy_from_slice(&crc.finalize().to_be_bytes());
    file.write_all(&h)?;
    file.seek(SeekFrom::Start(start + ENTRY_HEADER + len))?;
    Ok(ENTRY_HEADER + len)
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
                if at.off > 0 && at.off + req.size > inner.cfg.segment_bytes {
                    file.sync_data()?;
                    let next = Pos {
                        seg: at.seg + 1,
                        off: 0,
                    };
                    file = OpenOptions::new()
                        .create(true)
                        .write(true)
                        .truncate(false)
                        .open(seg_path(&dir, next.seg))?;
                    file.seek(SeekFrom::End(0))?;
                    sync_dir(&dir)?;
                    at = next;
                }
                at.off += write_entry(&mut file, at.off, &req.parts)?;
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
                if let Err(e) = file.seek(SeekFrom::Start(at.off)) {
                    tracing::error!(error = %e, "spool: cannot position the segment after a failed write");
                }
                for req in group {
                    let _ = req.reply.send(Err(io::Error::new(e.kind(), e.to_string())));
                }
            }
        }
    }
}
