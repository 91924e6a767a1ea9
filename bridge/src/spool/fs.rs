//! The spool's filesystem seam: every file operation of the spool goes through [`Filesystem`], so
//! tests can inject the faults a disk produces (full disk, failed fsync, torn writes).
//! [`StdFs`] is the real implementation over `std::fs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

/// An open spool file (segment, ledger or a staged input file).
pub(crate) trait SpoolFile: Read + Write + Seek + Send {
    /// `fdatasync`: the file's data (and length) are on disk once this returns `Ok`.
    fn sync_data(&mut self) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates (or extends) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// The file operations the spool uses.
pub(crate) trait Filesystem: Send + Sync + std::fmt::Debug {
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Opens an existing file for reading.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn SpoolFile>>;
    /// Opens a file for reading and writing at offset 0, creating it (empty) if `create`; never
    /// truncates.
    fn open_write(&self, path: &Path, create: bool) -> io::Result<Box<dyn SpoolFile>>;
    /// Reads a whole (small) file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Atomically replaces `to` by `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of `dir` (names that are not UTF-8 are skipped).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// fsyncs the directory itself (makes creations, renames and removals durable).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// [`Filesystem`] over `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StdFs;

impl SpoolFile for File {
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

impl Filesystem for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn SpoolFile>> {
        Ok(Box::new(File::open(path)?))
    }

    fn open_write(&self, path: &Path, create: bool) -> io::Result<Box<dyn SpoolFile>> {
        // Not O_APPEND: the writer goes back to fill in an entry's header after its payload.
        Ok(Box::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(path)?,
        ))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in fs::read_dir(dir)? {
            if let Ok(name) = e?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
