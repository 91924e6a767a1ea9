//! The writer thread: appends entries, group commit, rolls segments, and what a failed write or
//! fsync does.
//!
//! Appends arrive on a channel; everything queued is written as one group and made durable with
//! one `fdatasync`, then every append of the group is answered. If any write or fsync of the group
//! fails, *no* append of the group is acknowledged (they get the error: the client is told to
//! retry) and the segment is not trusted afterwards: after a failed fsync the kernel may have
//! dropped the dirty pages and a later fsync can succeed without them. So the segment is *sealed*
//! at the end of the last group that was durable (reads never go past it; the rest is truncated
//! if the disk lets us) and the next group starts a new segment. Segments that held nothing but
//! the failed group are removed.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::fs::SpoolFile;
use super::log::{AppendReq, Inner, Part, Pos, seg_path};
use super::reader::ENTRY_HEADER;

/// The placeholder header written before an entry's payload: length 0 cannot hold a record
/// count, so an entry whose real header never made it to disk is bad, never valid.
const PLACEHOLDER: [u8; 8] = [0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];

/// Writes one entry at `start` (the file's position): a placeholder header, the payload with a
/// running CRC, then the real header. Returns the entry length.
fn write_entry(
    inner: &Inner,
    file: &mut Box<dyn SpoolFile>,
    start: u64,
    parts: &[Part],
) -> io::Result<u64> {
    file.write_all(&PLACEHOLDER)?;
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
                let mut f = inner.fs.open_read(src.path())?;
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

/// Opens segment `seg` as a new, empty segment (it holds nothing acknowledged) and makes its
/// creation durable.
fn start_segment(inner: &Inner, seg: u64) -> io::Result<Box<dyn SpoolFile>> {
    let mut f = inner.fs.open_write(&seg_path(&inner.cfg.dir, seg), true)?;
    f.set_len(0)?;
    inner.fs.sync_dir(&inner.cfg.dir)?;
    Ok(f)
}

/// The writer's loop. `file` is the segment `at.seg`, positioned at `at.off` (the durable end);
/// `None` makes the first group start segment `at.seg`.
pub(crate) fn run(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<AppendReq>,
    mut file: Option<Box<dyn SpoolFile>>,
    mut at: Pos,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let durable = at;
        let result = (|| -> io::Result<()> {
            for req in &group {
                if at.off > 0 && at.off + req.size > inner.cfg.segment_bytes {
                    if let Some(f) = file.as_mut() {
                        f.sync_data()?;
                    }
                    file = None;
                    at = Pos {
                        seg: at.seg + 1,
                        off: 0,
                    };
                }
                let f = match file.as_mut() {
                    Some(f) => f,
                    None => file.insert(start_segment(&inner, at.seg)?),
                };
                at.off += write_entry(&inner, f, at.off, &req.parts)?;
            }
            match file.as_mut() {
                Some(f) => f.sync_data(),
                None => Ok(()),
            }
        })();
        match result {
            Ok(()) => {
                let mut st = inner.lock();
                st.durable = at;
                st.pending_entries += group.len() as u64;
                inner.publish(&st);
                drop(st);
                inner.data.notify_waiters();
                for req in group {
                    let _ = req.reply.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, segment = durable.seg, "spool write failed; the batches are not acknowledged and the segment is sealed");
                inner.write_error();
                file = None;
                seal(&inner, durable, at.seg);
                at = Pos {
                    seg: at.seg + 1,
                    off: 0,
                };
                {
                    let mut st = inner.lock();
                    st.durable = at;
                    drop(st);
                }
                inner.data.notify_waiters();
                for req in group {
                    let copy = match e.raw_os_error() {
                        Some(code) => io::Error::from_raw_os_error(code),
                        None => io::Error::new(e.kind(), e.to_string()),
                    };
                    let _ = req.reply.send(Err(copy));
                }
            }
        }
    }
}

/// After a failed group: segment `durable.seg` ends at `durable.off` (reads stop there), later
/// segments up to `last` held only the failed group and go. Truncation and removal are best
/// effort (the disk is failing): the seal in memory is what reads obey, and recovery re-checks
/// every entry after a restart.
fn seal(inner: &Inner, durable: Pos, last: u64) {
    inner.lock().sealed.insert(durable.seg, durable.off);
    let dir = &inner.cfg.dir;
    let path = seg_path(dir, durable.seg);
    let cut = inner.fs.open_write(&path, false).and_then(|mut f| {
        f.set_len(durable.off)?;
        f.sync_data()
    });
    if let Some(e) = cut
        .as_ref()
        .err()
        .filter(|e| e.kind() != io::ErrorKind::NotFound)
    {
        tracing::warn!(error = %e, path = %path.display(), "spool: cannot truncate a sealed segment (reads stop at its seal)");
    }
    for seg in durable.seg + 1..=last {
        inner.lock().sealed.insert(seg, 0);
        let _ = inner.fs.remove(&seg_path(dir, seg));
    }
    let _ = inner.fs.sync_dir(dir);
}
