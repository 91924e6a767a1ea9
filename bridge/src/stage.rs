//! Staging: turns content arriving in pieces into [`Record`]s held in bounded memory.
//!
//! Small content stays in memory ([`Content::Inline`]) while the request's inline budget lasts;
//! anything larger is appended to one staging file per request and referenced as
//! [`Content::File`]. The file is removed when the last record referring to it is dropped, so a
//! request that fails half-way leaves nothing behind, and one that was delivered or spooled frees
//! its disk space as soon as its records are dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use crate::record::{Content, Record, StagedPath};

/// Largest content kept in memory for one record.
pub(crate) const INLINE_MAX: u64 = 64 << 10;
/// Most content bytes one request keeps in memory; the rest is staged to disk.
pub(crate) const INLINE_BUDGET: u64 = 1 << 20;
/// Staging-file writes are batched to this size.
const WRITE_CHUNK: usize = 1 << 20;

struct StageFile {
    path: Arc<StagedPath>,
    file: tokio::fs::File,
    /// Bytes handed to `file` so far (its length once `pending` is written).
    written: u64,
    pending: BytesMut,
}

impl StageFile {
    fn end(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.pending.extend_from_slice(data);
        if self.pending.len() >= WRITE_CHUNK {
            self.flush_pending().await?;
        }
        Ok(())
    }

    async fn flush_pending(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let chunk = self.pending.split();
            self.file.write_all(&chunk).await?;
            self.written += chunk.len() as u64;
        }
        Ok(())
    }
}

enum Current {
    Inline(BytesMut),
    File { offset: u64 },
}

type Open = (Vec<(String, String)>, Current, u64);

/// Builds the records of one request.
pub(crate) struct Stager {
    dir: PathBuf,
    file: Option<StageFile>,
    inline_left: u64,
    records: Vec<Record>,
    /// The record being written: attributes, where its content goes, its length so far.
    current: Option<Open>,
    bytes: u64,
}

impl std::fmt::Debug for Stager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stager")
            .field("dir", &self.dir)
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl Stager {
    /// A stager writing large content into a new file in `dir` (created on first use).
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            file: None,
            inline_left: INLINE_BUDGET,
            records: Vec::new(),
            current: None,
            bytes: 0,
        }
    }

    /// Records finished so far.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Content bytes staged so far (finished and current record).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    async fn file(&mut self) -> std::io::Result<&mut StageFile> {
        if self.file.is_none() {
            tokio::fs::create_dir_all(&self.dir).await?;
            let path = self.dir.join(format!(
                "stage-{}-{:016x}.tmp",
                std::process::id(),
                fastrand::u64(..)
            ));
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await?;
            self.file = Some(StageFile {
                path: Arc::new(StagedPath::temporary(path)),
                file,
                written: 0,
                pending: BytesMut::new(),
            });
        }
        Ok(self.file.as_mut().expect("just created"))
    }

    /// Starts a record; `len` is its content length when known up front.
    pub(crate) async fn begin(
        &mut self,
        attributes: Vec<(String, String)>,
        len: Option<u64>,
    ) -> std::io::Result<()> {
        debug_assert!(self.current.is_none(), "begin without end");
        let inline = match len {
            Some(n) => n <= INLINE_MAX && n <= self.inline_left,
            None => true,
        };
        let cur = if inline {
            Current::Inline(BytesMut::new())
        } else {
            Current::File {
                offset: self.file().await?.end(),
            }
        };
        self.current = Some((attributes, cur, 0));
        Ok(())
    }

    /// Appends content to the current record.
    pub(crate) async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        let Some((_, cur, len)) = &mut self.current else {
            return Err(std::io::Error::other("content outside a record"));
        };
        *len += data.len() as u64;
        self.bytes += data.len() as u64;
        if let Current::Inline(buf) = cur {
            let grown = (buf.len() + data.len()) as u64;
            if grown <= INLINE_MAX && grown <= self.inline_left {
                buf.extend_from_slice(data);
                return Ok(());
            }
            // Longer than announced or than fits in memory: move it to the staging file.
            let held = buf.split().freeze();
            let file = self.file().await?;
            let offset = file.end();
            file.write(&held).await?;
            if let Some((_, cur, _)) = &mut self.current {
                *cur = Current::File { offset };
            }
        }
        self.file().await?.write(data).await
    }

    /// Finishes the current record.
    pub(crate) fn end(&mut self) {
        let Some((attributes, cur, len)) = self.current.take() else {
            return;
        };
        let content = match cur {
            Current::Inline(buf) => {
                self.inline_left -= buf.len() as u64;
                Content::Inline(buf.freeze())
            }
            Current::File { offset } => Content::File {
                file: self
                    .file
                    .as_ref()
                    .expect("a file record has a staging file")
                    .path
                    .clone(),
                offset,
                len,
            },
        };
        self.records.push(Record {
            attributes,
            content,
        });
    }

    /// Adds a whole record whose content is already in memory.
    pub(crate) async fn push(
        &mut self,
        attributes: Vec<(String, String)>,
        content: Bytes,
    ) -> std::io::Result<()> {
        let n = content.len() as u64;
        if n <= INLINE_MAX && n <= self.inline_left {
            self.inline_left -= n;
            self.bytes += n;
            self.records.push(Record {
                attributes,
                content: Content::Inline(content),
            });
            return Ok(());
        }
        self.begin(attributes, Some(n)).await?;
        self.write(&content).await?;
        self.end();
        Ok(())
    }

    /// The records, with every staged byte written to the file.
    pub(crate) async fn finish(mut self) -> std::io::Result<Vec<Record>> {
        if self.current.is_some() {
            return Err(std::io::Error::other("a record was not finished"));
        }
        if let Some(f) = &mut self.file {
            f.flush_pending().await?;
            f.file.flush().await?;
        }
        Ok(self.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_inline_large_staged_and_the_file_goes_with_the_records() {
        let dir = std::env::temp_dir().join(format!("s2s-bridge-stage-test-{}", fastrand::u64(..)));
        let mut s = Stager::new(&dir);
        s.push(vec![("a".into(), "1".into())], Bytes::from_static(b"small"))
            .await
            .unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        // Unknown length: starts inline, spills once it outgrows INLINE_MAX.
        s.begin(vec![], None).await.unwrap();
        for c in big.chunks(7000) {
            s.write(c).await.unwrap();
        }
        s.end();
        s.begin(vec![], Some(3)).await.unwrap();
        s.write(b"abc").await.unwrap();
        s.end();
        let recs = s.finish().await.unwrap();
        assert!(matches!(recs[0].content, Content::Inline(_)));
        assert!(matches!(recs[1].content, Content::File { .. }));
        assert!(matches!(recs[2].content, Content::Inline(_)));
        assert_eq!(&recs[1].read_all().await.unwrap()[..], &big[..]);
        assert_eq!(&recs[2].read_all().await.unwrap()[..], b"abc");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        drop(recs);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "staging file removed"
        );
        std::fs::remove_dir(&dir).unwrap();
    }
}
