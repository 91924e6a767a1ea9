//! Recovery: what [`super::Spool::open`] does with the files it finds, and how a bad entry is
//! stepped over.
//!
//! Every segment from the ledger's position on is scanned entry by entry. A bad entry (see
//! [`super::reader`]) is handled by finding the next valid one after it:
//!
//! every offset after the bad entry's start is tried, cheaply first (does the header's length fit,
//! does the record count fit that length), then fully (structure and CRC), and the first offset
//! holding a valid entry ends the bad region. The bad entry's own length field is not trusted: a
//! damaged one could point past intact entries.
//!
//! The bad region is kept on disk, remembered and skipped by reads, and counted in
//! `bridge_spool_corrupt_entries_total{kind="corrupt"}`: every valid entry before and after it is
//! kept. A bad region with no valid entry after it is a torn tail (a crash in the middle of a
//! write that was never acknowledged, or damage at the end of a segment): it is cut off
//! (truncated and fsynced) and counted with `kind="torn_tail"`. Nothing here panics on any file
//! content: every length is checked against the bytes that are there.

use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use super::fs::{Filesystem, SpoolFile};
use super::reader::{ENTRY_HEADER, read_entry};
use crate::record::StagedPath;

/// What a segment holds from a position on.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SegmentScan {
    /// End of the segment's data after recovery (torn tail cut off).
    pub(crate) end: u64,
    /// Valid entries.
    pub(crate) entries: u64,
    /// Bad regions (start, end) that were kept and must be skipped.
    pub(crate) skips: Vec<(u64, u64)>,
    /// Bytes of torn tail cut off, if any.
    pub(crate) torn: Option<u64>,
}

/// Whether a valid entry starts at `at` (`end` = where the readable data ends).
fn valid_at(
    f: &mut Box<dyn SpoolFile>,
    seg: &Arc<StagedPath>,
    at: u64,
    end: u64,
) -> io::Result<bool> {
    f.seek(SeekFrom::Start(at))?;
    let mut r = BufReader::with_capacity(64 << 10, &mut *f);
    Ok(read_entry(&mut r, seg, at, end - at)?.is_some())
}

/// Where the next valid entry after the bad entry at `bad` starts (before `end`), `None` if there
/// is none. The file position is unspecified afterwards.
pub(crate) fn find_next_entry(
    f: &mut Box<dyn SpoolFile>,
    seg: &Arc<StagedPath>,
    bad: u64,
    end: u64,
) -> io::Result<Option<u64>> {
    // Not the bad entry's own length field: if that is what was damaged it may point past
    // intact entries. Search every offset after the bad entry's start instead: windows of the
    // file, a cheap plausibility check at each offset (header length fits, record count fits),
    // then the full check (structure, CRC) for the few candidates that pass it.
    const WINDOW: usize = 64 << 10;
    const MIN: u64 = ENTRY_HEADER + 4;
    let mut buf = vec![0u8; WINDOW];
    let mut base = bad + 1;
    while base + MIN <= end {
        let n = usize::try_from((end - base).min(WINDOW as u64)).unwrap_or(WINDOW);
        f.seek(SeekFrom::Start(base))?;
        f.read_exact(&mut buf[..n])?;
        let candidates = n + 1 - MIN as usize;
        for i in 0..candidates {
            let at = base + i as u64;
            let w = &buf[i..];
            let len = u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
            let count = u64::from(u32::from_be_bytes([w[8], w[9], w[10], w[11]]));
            if len >= 4
                && len <= end - at - ENTRY_HEADER
                && count * 12 <= len - 4
                && valid_at(f, seg, at, end)?
            {
                return Ok(Some(at));
            }
        }
        base += candidates as u64;
    }
    Ok(None)
}

/// Scans the segment at `path` from `from`: counts its valid entries, finds its bad regions and
/// cuts off a torn tail.
pub(crate) fn scan_segment(fs: &dyn Filesystem, path: &Path, from: u64) -> io::Result<SegmentScan> {
    let mut f = fs.open_write(path, false)?;
    let len = f.len()?;
    let seg = Arc::new(StagedPath::borrowed(path.to_path_buf()));
    let mut scan = SegmentScan::default();
    let mut pos = from.min(len);
    'runs: while pos < len {
        f.seek(SeekFrom::Start(pos))?;
        let mut r = BufReader::with_capacity(256 << 10, &mut f);
        while pos < len {
            match read_entry(&mut r, &seg, pos, len - pos)? {
                Some((l, _)) => {
                    pos += ENTRY_HEADER + l;
                    scan.entries += 1;
                }
                None => {
                    drop(r);
                    match find_next_entry(&mut f, &seg, pos, len)? {
                        Some(next) => {
                            tracing::error!(path = %path.display(), at = pos, next, "spool: corrupt entry skipped");
                            scan.skips.push((pos, next));
                            pos = next;
                            continue 'runs;
                        }
                        None => break 'runs,
                    }
                }
            }
        }
    }
    if pos < len {
        tracing::warn!(path = %path.display(), valid = pos, len, "spool: cutting off a torn or corrupt tail");
        f.set_len(pos)?;
        f.sync_data()?;
        scan.torn = Some(len - pos);
    }
    scan.end = pos;
    Ok(scan)
}
