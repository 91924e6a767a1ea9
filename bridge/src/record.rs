//! The one internal record type and the outcome of delivering a batch of them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use s2s_proto::FlowFile;

/// Why a batch was not committed. The numeric values are the reason codes of PROTOCOL.md §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Committed; no problem.
    Ok,
    /// CRC32 in a WebSocket batch header does not match its payload.
    BadCrc,
    /// The input does not decode (frame, FlowFile codec, flowfile-v3, JSON, UTF-8, gzip).
    Malformed,
    /// A configured limit is exceeded.
    Limit,
    /// A batch with the same id is still in flight on the connection.
    DuplicateId,
    /// The client has too many unacknowledged batches.
    TooManyInflight,
    /// NiFi (or the spool) is full; try again later.
    Backpressure,
    /// NiFi is unreachable or its port is not running.
    Unavailable,
    /// The bridge is shutting down.
    ShuttingDown,
    /// NiFi refused the data for good (unknown port, unauthorized).
    DestinationRejected,
    /// Unexpected bridge error.
    Internal,
}

impl Reason {
    const ALL: [Self; 11] = [
        Self::Ok,
        Self::BadCrc,
        Self::Malformed,
        Self::Limit,
        Self::DuplicateId,
        Self::TooManyInflight,
        Self::Backpressure,
        Self::Unavailable,
        Self::ShuttingDown,
        Self::DestinationRejected,
        Self::Internal,
    ];

    /// The wire value of PROTOCOL.md §5.
    pub fn code(self) -> u16 {
        use s2s_bridge_protocol::reason;
        match self {
            Self::Ok => reason::OK,
            Self::BadCrc => reason::BAD_CRC,
            Self::Malformed => reason::MALFORMED,
            Self::Limit => reason::LIMIT,
            Self::DuplicateId => reason::DUPLICATE_ID,
            Self::TooManyInflight => reason::TOO_MANY_INFLIGHT,
            Self::Backpressure => reason::BACKPRESSURE,
            Self::Unavailable => reason::UNAVAILABLE,
            Self::ShuttingDown => reason::SHUTTING_DOWN,
            Self::DestinationRejected => reason::DESTINATION_REJECTED,
            Self::Internal => reason::INTERNAL,
        }
    }

    /// Upper-case name used in JSON answers, logs and metric labels.
    pub fn name(self) -> &'static str {
        s2s_bridge_protocol::reason::name(self.code())
    }

    /// Inverse of [`Reason::code`], for clients decoding acks.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// What the bridge answers for one submitted batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The batch is safe: NiFi committed it (`ack = "nifi"`) or it is fsynced in the spool.
    Committed,
    /// Nothing was kept; send the batch again after `after`.
    Retry {
        /// Earliest time to resend.
        after: Duration,
        /// Why.
        reason: Reason,
        /// Human-readable detail.
        message: String,
    },
    /// The batch will never be accepted as it is.
    Rejected {
        /// Why.
        reason: Reason,
        /// Human-readable detail.
        message: String,
    },
}

impl Outcome {
    /// A rejection with a reason and message.
    pub fn rejected(reason: Reason, message: impl Into<String>) -> Self {
        Self::Rejected {
            reason,
            message: message.into(),
        }
    }

    /// A retry-after answer.
    pub fn retry(after: Duration, reason: Reason, message: impl Into<String>) -> Self {
        Self::Retry {
            after,
            reason,
            message: message.into(),
        }
    }

    /// The reason carried by this outcome ([`Reason::Ok`] when committed).
    pub fn reason(&self) -> Reason {
        match self {
            Self::Committed => Reason::Ok,
            Self::Retry { reason, .. } | Self::Rejected { reason, .. } => *reason,
        }
    }
}

/// Content that lives in a file: a staged request body (deleted when the last [`Record`] using
/// it is dropped) or a region of a spool segment (kept; the spool deletes it after NiFi confirmed).
#[derive(Debug)]
pub struct StagedPath {
    path: std::path::PathBuf,
    delete_on_drop: bool,
}

impl StagedPath {
    /// A staging file, removed when dropped.
    pub(crate) fn temporary(path: std::path::PathBuf) -> Self {
        Self {
            path,
            delete_on_drop: true,
        }
    }

    /// A file owned by someone else (a spool segment), never removed here.
    pub(crate) fn borrowed(path: std::path::PathBuf) -> Self {
        Self {
            path,
            delete_on_drop: false,
        }
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for StagedPath {
    fn drop(&mut self) {
        if self.delete_on_drop {
            // Already gone is fine; anything else leaves a file in the staging directory.
            if let Err(e) = std::fs::remove_file(&self.path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove staging file");
            }
        }
    }
}

/// Where a [`Record`]'s content is: in memory (small) or a region of a file (large).
#[derive(Debug, Clone)]
pub enum Content {
    /// Held in memory.
    Inline(Bytes),
    /// `len` bytes at `offset` of a file.
    File {
        /// The file (shared by the records of one request or one spool segment).
        file: Arc<StagedPath>,
        /// Where the content starts.
        offset: u64,
        /// Content length.
        len: u64,
    },
}

/// A FlowFile on its way through the bridge: attributes in memory, content inline or in a file,
/// so a request of any size is held in bounded memory.
#[derive(Debug, Clone)]
pub struct Record {
    /// Attributes, in order.
    pub attributes: Vec<(String, String)>,
    /// The content.
    pub content: Content,
}

impl From<FlowFile> for Record {
    fn from(ff: FlowFile) -> Self {
        Self {
            attributes: ff.attributes,
            content: Content::Inline(ff.content),
        }
    }
}

impl Record {
    /// Content length in bytes.
    pub fn len(&self) -> u64 {
        match &self.content {
            Content::Inline(b) => b.len() as u64,
            Content::File { len, .. } => *len,
        }
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of attribute `key`, if present.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Bytes this record occupies in StandardFlowFileCodec v1.
    pub fn encoded_len(&self) -> u64 {
        crate::codec::header_len(&self.attributes) as u64 + self.len()
    }

    /// The content as a reader of exactly [`len`](Self::len) bytes.
    pub async fn reader(
        &self,
    ) -> std::io::Result<Box<dyn tokio::io::AsyncRead + Send + Unpin + 'static>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        match &self.content {
            Content::Inline(b) => Ok(Box::new(std::io::Cursor::new(b.clone()))),
            Content::File { file, offset, len } => {
                let mut f = tokio::fs::File::open(file.path()).await?;
                f.seek(std::io::SeekFrom::Start(*offset)).await?;
                Ok(Box::new(f.take(*len)))
            }
        }
    }

    /// The whole content in memory (tests, the in-memory sink).
    pub async fn read_all(&self) -> std::io::Result<Bytes> {
        match &self.content {
            Content::Inline(b) => Ok(b.clone()),
            Content::File { len, .. } => {
                use tokio::io::AsyncReadExt;
                let mut out = Vec::with_capacity(usize::try_from(*len).unwrap_or(0));
                self.reader().await?.read_to_end(&mut out).await?;
                if out.len() as u64 != *len {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("staged content has {} of {len} bytes", out.len()),
                    ));
                }
                Ok(Bytes::from(out))
            }
        }
    }

    /// Converts to a whole FlowFile (reads file content into memory).
    pub async fn into_flowfile(self) -> std::io::Result<FlowFile> {
        let content = self.read_all().await?;
        Ok(FlowFile {
            attributes: self.attributes,
            content,
        })
    }
}
