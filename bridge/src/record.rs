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

/// Bytes a FlowFile occupies in StandardFlowFileCodec v1 (what it costs on the wire and in the spool).
pub fn encoded_len(ff: &FlowFile) -> usize {
    s2s_proto::codec::flowfile::encoded_len(ff)
}
