//! The one internal record type and the outcome of delivering a batch of them.

use std::time::Duration;

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
    /// The wire value of PROTOCOL.md §5.
    pub fn code(self) -> u16 {
        match self {
            Self::Ok => 0,
            Self::BadCrc => 1,
            Self::Malformed => 2,
            Self::Limit => 3,
            Self::DuplicateId => 4,
            Self::TooManyInflight => 5,
            Self::Backpressure => 6,
            Self::Unavailable => 7,
            Self::ShuttingDown => 8,
            Self::DestinationRejected => 9,
            Self::Internal => 10,
        }
    }

    /// Upper-case name used in JSON answers, logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::BadCrc => "BAD_CRC",
            Self::Malformed => "MALFORMED",
            Self::Limit => "LIMIT",
            Self::DuplicateId => "DUPLICATE_ID",
            Self::TooManyInflight => "TOO_MANY_INFLIGHT",
            Self::Backpressure => "BACKPRESSURE",
            Self::Unavailable => "UNAVAILABLE",
            Self::ShuttingDown => "SHUTTING_DOWN",
            Self::DestinationRejected => "DESTINATION_REJECTED",
            Self::Internal => "INTERNAL",
        }
    }

    /// Inverse of [`Reason::code`], for clients decoding acks.
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            0 => Self::Ok,
            1 => Self::BadCrc,
            2 => Self::Malformed,
            3 => Self::Limit,
            4 => Self::DuplicateId,
            5 => Self::TooManyInflight,
            6 => Self::Backpressure,
            7 => Self::Unavailable,
            8 => Self::ShuttingDown,
            9 => Self::DestinationRejected,
            10 => Self::Internal,
            _ => return None,
        })
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

/// Bytes a FlowFile occupies in StandardFlowFileCodec v1 (what it costs on the wire and in the spool).
pub fn encoded_len(ff: &FlowFile) -> usize {
    s2s_proto::codec::flowfile::encoded_len(ff)
}
