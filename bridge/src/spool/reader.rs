//! Reading entries: the entry format's decoder and the drain's batched reads.
//!
//! ```text
//! entry   := u32 payload_len | u32 CRC32(payload) | payload
//! payload := u32 record_count | record_count × FlowFile (StandardFlowFileCodec v1)
//! ```
//! An entry is valid when its whole payload is there, parses as exactly `record_count` FlowFiles
//! with every length inside the payload, and its CRC matches. Anything else is *bad* and is never
//! forwarded: [`super::recovery`] finds the next valid entry after it.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::fs::{Filesystem, SpoolFile};
use super::log::{Pos, ReadBatch, SpoolError, seg_path};
use super::recovery;
use crate::record::{Content, Record, StagedPath};
use crate::stage::INLINE_MAX;

/// Bytes of an entry's header.
pub(crate) const ENTRY_HEADER: u64 = 8;

/// Reads with a running CRC32 and byte count.
pub(crate) struct Hashing<R> {
    pub(crate) inner: R,
    pub(crate) crc: crc32fast::Hasher,
    pub(crate) n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

fn corrupt(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.to_owned())
}

/// The entry header at the reader's position if a whole entry fits in `remaining` bytes.
fn entry_header(r: &mut impl Read, remaining: u64) -> io::Result<Option<(u64, u32)>> {
    if remaining < ENTRY_HEADER {
        return Ok(None);
    }
    let mut h = [0u8; 8];
    match r.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
    let crc = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    if len > remaining - ENTRY_HEADER {
        return Ok(None);
    }
    Ok(Some((len, crc)))
}

/// Reads the entry at `entry_off` of the segment `seg` (reader positioned there, `remaining`
/// bytes readable): its payload length and records if valid, `Ok(None)` if bad. Content up to
/// [`INLINE_MAX`] is read into memory; larger content is referenced in the segment file.
pub(crate) fn read_entry(
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
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    Ok((h.n == len && h.crc.finalize() == crc).then_some((len, records)))
}

/// `u32 count | count × FlowFile (v1: i32 attribute count, (i32 len, key, i32 len, value)…, i64
/// content length, content)`, every length checked against what is left of the payload before
/// anything is allocated.
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
    // Each FlowFile takes at least 12 bytes (attribute count, content length).
    if u64::from(count) * 12 > len - h.n {
        return Err(corrupt("more FlowFiles than the entry can hold"));
    }
    let mut out = Vec::with_capacity((count as usize).min(1024));
    for _ in 0..count {
        let n = i32::from_be_bytes(be(h)?);
        let n = u64::try_from(n).map_err(|_| corrupt("negative attribute count"))?;
        // Each attribute takes at least 8 bytes (two lengths).
        if n * 8 > len - h.n {
            return Err(corrupt("more attributes than the entry can hold"));
        }
        let mut attributes = Vec::with_capacity((n as usize).min(64));
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

/// What the drain may read: the durable end, where sealed segments end, and the bad regions
/// already known (start → end of the region, same segment).
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    pub(crate) durable: Pos,
    pub(crate) sealed: BTreeMap<u64, u64>,
    pub(crate) skips: BTreeMap<Pos, u64>,
}

/// Reads whole valid entries from `pos` up to `max_records` / `max_bytes` (at least one entry if
/// there is one). Bad regions are stepped over and their bytes counted in the batch (so that
/// confirming it frees them); bad regions not in `view.skips` are returned to be recorded.
pub(crate) fn read_blocking(
    fs: &dyn Filesystem,
    dir: &Path,
    mut pos: Pos,
    view: &View,
    max_records: usize,
    max_bytes: u64,
) -> Result<(ReadBatch, Vec<(Pos, u64)>), SpoolError> {
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut entries = 0u64;
    let mut found = Vec::new();
    let durable = view.durable;
    let done = |out: Vec<Record>, next, entries, bytes, found| {
        Ok((
            ReadBatch {
                records: out,
                next,
                entries,
                bytes,
            },
            found,
        ))
    };
    while pos < durable {
        let path = seg_path(dir, pos.seg);
        let f = match fs.open_read(&path) {
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
            match view.sealed.get(&pos.seg) {
                Some(&end) => end,
                None => f.len()?,
            }
        };
        let mut r: BufReader<Box<dyn SpoolFile>> = BufReader::with_capacity(256 << 10, f);
        r.seek(SeekFrom::Start(pos.off))?;
        let seg = Arc::new(StagedPath::borrowed(path.clone()));
        while pos.off < end {
            let skip_to = match view.skips.get(&pos) {
                Some(&to) => Some(to),
                None => match read_entry(&mut r, &seg, pos.off, end - pos.off)? {
                    Some((len, records)) => {
                        pos.off += ENTRY_HEADER + len;
                        bytes += ENTRY_HEADER + len;
                        entries += 1;
                        out.extend(records);
                        None
                    }
                    None => {
                        let to = recovery::find_next_entry(r.get_mut(), &seg, pos.off, end)?
                            .unwrap_or(end);
                        tracing::error!(path = %path.display(), at = pos.off, to, "spool: corrupt entry found while reading; skipped");
                        found.push((pos, to));
                        Some(to)
                    }
                },
            };
            if let Some(to) = skip_to {
                // A region always ends after its start; anything else means "to the end".
                let to = if to > pos.off { to.min(end) } else { end };
                bytes += to - pos.off;
                pos.off = to;
                r.seek(SeekFrom::Start(pos.off))?;
            }
            if entries > 0 && (out.len() >= max_records || bytes >= max_bytes) {
                return done(out, pos, entries, bytes, found);
            }
        }
        if pos.seg < durable.seg {
            pos = Pos {
                seg: pos.seg + 1,
                off: 0,
            };
        } else {
            break;
        }
    }
    done(out, pos, entries, bytes, found)
}
