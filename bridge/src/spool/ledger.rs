//! The ledger: where the first entry NiFi has not confirmed starts.
//!
//! ```text
//! dir/ledger := u64 segment | u64 offset | u32 CRC32 of those 16 bytes
//! ```
//! Written to `ledger.tmp`, fsynced, renamed over `ledger`, then the directory fsynced: a crash
//! leaves the old or the new ledger, never a mix. A missing or damaged ledger means "from the
//! first segment" (at-least-once: resend rather than lose).

use std::io::{self, Write};
use std::path::Path;

use super::fs::Filesystem;
use super::log::Pos;

const LEDGER: &str = "ledger";
const LEDGER_TMP: &str = "ledger.tmp";

/// The ledger's position, `None` if there is none or it does not check out.
pub(crate) fn read(fs: &dyn Filesystem, dir: &Path) -> Option<Pos> {
    let b = fs.read(&dir.join(LEDGER)).ok()?;
    decode(&b)
}

fn decode(b: &[u8]) -> Option<Pos> {
    let (body, crc) = b.split_at_checked(16)?;
    let crc: [u8; 4] = crc.try_into().ok()?;
    if crc32fast::hash(body) != u32::from_be_bytes(crc) {
        return None;
    }
    let (seg, off) = body.split_at(8);
    Some(Pos {
        seg: u64::from_be_bytes(seg.try_into().ok()?),
        off: u64::from_be_bytes(off.try_into().ok()?),
    })
}

fn encode(pos: Pos) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[..8].copy_from_slice(&pos.seg.to_be_bytes());
    b[8..16].copy_from_slice(&pos.off.to_be_bytes());
    let crc = crc32fast::hash(&b[..16]);
    b[16..].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Durably replaces the ledger with `pos`.
pub(crate) fn write(fs: &dyn Filesystem, dir: &Path, pos: Pos) -> io::Result<()> {
    let tmp = dir.join(LEDGER_TMP);
    let mut f = fs.open_write(&tmp, true)?;
    f.set_len(0)?;
    f.write_all(&encode(pos))?;
    f.sync_data()?;
    drop(f);
    fs.rename(&tmp, &dir.join(LEDGER))?;
    fs.sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let p = Pos { seg: 7, off: 1234 };
        let b = encode(p);
        assert_eq!(decode(&b), Some(p));
        for i in 0..b.len() {
            let mut bad = b;
            bad[i] ^= 0x10;
            assert_eq!(decode(&bad), None, "flip at {i}");
        }
        assert_eq!(decode(&b[..19]), None);
        assert_eq!(decode(&[]), None);
    }
}
