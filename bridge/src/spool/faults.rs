//! A fault-injecting [`Filesystem`] for the spool's tests: real files (in a temp dir) whose writes
//! can run out of space and whose fsyncs can fail, optionally dropping the dirty pages as Linux
//! does after a failed writeback.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::fs::{Filesystem, SpoolFile, StdFs};

/// What goes wrong next; shared by the filesystem and its open files.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Bytes that may still be written before writes fail with `ENOSPC` (`None`: unlimited).
    pub(crate) space_left: Option<u64>,
    /// This many next `sync_data` calls fail with `EIO`.
    pub(crate) fail_syncs: u32,
    /// A failed fsync loses what was written since the last good one (the range reads back as
    /// zeros), as dropped dirty pages would.
    pub(crate) drop_dirty: bool,
    /// Counters, for assertions.
    pub(crate) failed_writes: u32,
    pub(crate) failed_syncs: u32,
}

/// [`Filesystem`] over `std::fs` with the faults of a shared [`Faults`].
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultFs {
    pub(crate) faults: Arc<Mutex<Faults>>,
}

impl FaultFs {
    pub(crate) fn set(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.faults.lock().expect("faults"));
    }

    pub(crate) fn get<T>(&self, f: impl FnOnce(&Faults) -> T) -> T {
        f(&self.faults.lock().expect("faults"))
    }
}

struct FaultFile {
    file: File,
    faults: Arc<Mutex<Faults>>,
    /// Byte range written since the last successful sync.
    dirty: Option<(u64, u64)>,
}

impl Read for FaultFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Seek for FaultFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

impl Write for FaultFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let allowed = {
            let mut f = self.faults.lock().expect("faults");
            match f.space_left {
                None => buf.len(),
                Some(0) => {
                    f.failed_writes += 1;
                    return Err(io::Error::from_raw_os_error(28)); // ENOSPC
                }
                Some(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    f.space_left = Some(left - n as u64);
                    n
                }
            }
        };
        let at = self.file.stream_position()?;
        let n = self.file.write(&buf[..allowed])?;
        let (a, b) = self.dirty.unwrap_or((at, at));
        self.dirty = Some((a.min(at), b.max(at + n as u64)));
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl SpoolFile for FaultFile {
    fn sync_data(&mut self) -> io::Result<()> {
        let (fail, drop_dirty) = {
            let mut f = self.faults.lock().expect("faults");
            let fail = f.fail_syncs > 0;
            if fail {
                f.fail_syncs -= 1;
                f.failed_syncs += 1;
            }
            (fail, f.drop_dirty)
        };
        if !fail {
            self.file.sync_data()?;
            self.dirty = None;
            return Ok(());
        }
        if drop_dirty && let Some((a, b)) = self.dirty.take() {
            let len = self.file.metadata()?.len();
            let b = b.min(len);
            if b > a {
                self.file
                    .write_all_at(&vec![0u8; usize::try_from(b - a).expect("small")], a)?;
            }
        }
        Err(io::Error::from_raw_os_error(5)) // EIO
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

fn open(file: File, fs: &FaultFs) -> Box<dyn SpoolFile> {
    Box::new(FaultFile {
        file,
        faults: fs.faults.clone(),
        dirty: None,
    })
}

impl Filesystem for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn SpoolFile>> {
        Ok(open(File::open(path)?, self))
    }

    fn open_write(&self, path: &Path, create: bool) -> io::Result<Box<dyn SpoolFile>> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(open(f, self))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        StdFs.read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        StdFs.remove(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
}
