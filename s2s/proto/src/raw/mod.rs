//! RAW transport state machines (sans-IO): negotiation, handshake, codec negotiation, peer
//! list, and the SEND and RECEIVE transactions with the CRC32 two-phase confirm (docs/site-to-site.md §2, §5).
//!
//! ```text
//!   app ──start/send_content/end_flowfile, finish_send, receive──▶  ┌───────────────┐
//!   app ◀──────────────────────── poll_event ─────────────────────── │ ClientSession │
//!   socket ◀─────────────────── poll_transmit ────────────────────── │   (no I/O)    │
//!   socket ──────────────── handle_input / handle_eof ─────────────▶ └───────────────┘
//! ```
//!
//! The session never blocks, reads a clock or touches a socket: a driver (the `s2s` crate's
//! tokio client, a test, a fuzzer) moves the bytes. Every length read from the wire is
//! bounded by [`SessionConfig::limits`] and [`SessionConfig::max_peers`].

mod session;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::codec::flowfile::Limits;
use crate::codec::negotiation::{NegotiationReply, RAW_PROTOCOL_VERSIONS};
use crate::codec::peers::{DEFAULT_MAX_PEERS, Peer};
use crate::codec::response_code::ResponseCode;
use crate::codec::{DecodeError, EncodeError};
use crate::stream::StreamError;

pub use session::ClientSession;

/// Everything a [`ClientSession`] sends in its negotiation and handshake.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Communications identifier (any string; Java sends a random UUID).
    pub comms_id: String,
    /// `nifi://host:port` of the peer (sent at protocol ≥ 3).
    pub transit_uri_prefix: String,
    /// Target port id; `None` for a peer-list-only connection.
    pub port_id: Option<String>,
    /// `GZIP` handshake property: SYNC-chunked zlib per FlowFile, both directions.
    pub compression: bool,
    /// `REQUEST_EXPIRATION_MILLIS` (NiFi's read timeout for this connection).
    pub request_expiration_millis: u64,
    /// `BATCH_COUNT` for RECEIVE; 0 = not sent.
    pub batch_count: u32,
    /// `BATCH_SIZE` for RECEIVE; 0 = not sent.
    pub batch_size: u64,
    /// `BATCH_DURATION` (ms) for RECEIVE; 0 = not sent.
    pub batch_duration_millis: u64,
    /// Protocol versions we speak; the highest is proposed first. Default 6..=1.
    pub protocol_versions: Vec<i32>,
    /// Bounds for received FlowFiles.
    pub limits: Limits,
    /// Bound on the number of peers accepted in a peer list.
    pub max_peers: usize,
}

impl SessionConfig {
    /// A config with NiFi Java client defaults: no port, no compression, 30 s expiration, no
    /// batch limits, protocol versions 6 down to 1.
    pub fn new(comms_id: impl Into<String>, transit_uri_prefix: impl Into<String>) -> Self {
        Self {
            comms_id: comms_id.into(),
            transit_uri_prefix: transit_uri_prefix.into(),
            port_id: None,
            compression: false,
            request_expiration_millis: 30_000,
            batch_count: 0,
            batch_size: 0,
            batch_duration_millis: 0,
            protocol_versions: RAW_PROTOCOL_VERSIONS.to_vec(),
            limits: Limits::default(),
            max_peers: DEFAULT_MAX_PEERS,
        }
    }
}

/// What a [`ClientSession`] reports to the application.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// Negotiation, handshake and (with a port) codec negotiation succeeded; the session is idle.
    Ready {
        /// The negotiated `SocketFlowFileProtocol` version.
        protocol_version: i32,
    },
    /// Answer to [`ClientSession::request_peer_list`].
    PeerList(Vec<Peer>),
    /// NiFi committed a SEND. Only now may the sender release its data. With
    /// `destination_full` NiFi committed but asks the client to back off.
    SendCommitted {
        /// FlowFiles in the transaction.
        flowfiles: u64,
        /// Content bytes in the transaction.
        bytes: u64,
        /// `TRANSACTION_FINISHED_BUT_DESTINATION_FULL` instead of `TRANSACTION_FINISHED`.
        destination_full: bool,
    },
    /// RECEIVE: NiFi has data; FlowFiles follow.
    MoreData,
    /// RECEIVE: NiFi has nothing; the transaction is over and the session idle.
    NoData,
    /// RECEIVE: a FlowFile begins; its content follows as [`Event::FlowFileContent`] chunks,
    /// then [`Event::FlowFileEnd`]. Nothing is confirmed yet: keep what you store until
    /// [`Event::ReceiveVerified`].
    FlowFileStart {
        /// Attributes in wire order.
        attributes: Vec<(String, String)>,
        /// Content bytes that follow.
        content_len: u64,
    },
    /// RECEIVE: the next piece of the current FlowFile's content (never empty), as it arrived.
    FlowFileContent(Bytes),
    /// RECEIVE: the current FlowFile is complete.
    FlowFileEnd,
    /// RECEIVE: NiFi finished and confirmed our CRC. Persist what was received, then call
    /// [`ClientSession::confirm_receive`].
    ReceiveVerified {
        /// FlowFiles received.
        flowfiles: u64,
        /// Content bytes received.
        bytes: u64,
    },
}

/// Why a session failed. After any of these the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The bytes from the peer are corrupt.
    #[error("malformed data from peer: {0}")]
    Decode(#[from] DecodeError),
    /// A value of ours cannot be encoded (nothing was queued).
    #[error("cannot encode request: {0}")]
    Encode(#[from] EncodeError),
    /// NiFi aborted the protocol negotiation (no common version).
    #[error("NiFi aborted the protocol negotiation")]
    NegotiationAborted,
    /// NiFi offered only a version we do not speak.
    #[error("no common protocol version (NiFi offered {offered})")]
    NoCommonVersion {
        /// The version NiFi offered.
        offered: i32,
    },
    /// NiFi did not accept `StandardFlowFileCodec` v1.
    #[error("NiFi rejected the FlowFile codec: {0:?}")]
    CodecRejected(NegotiationReply),
    /// NiFi refused the handshake (unknown port, port not running, destination full,
    /// unauthorized, bad property).
    #[error("NiFi refused the handshake: {code} {}", message.as_deref().unwrap_or(""))]
    Refused {
        /// The response code.
        code: ResponseCode,
        /// NiFi's explanation, for codes that carry one.
        message: Option<String>,
    },
    /// A response code that is valid but not allowed at this point.
    #[error("unexpected response code {code} (expected {expected})")]
    UnexpectedCode {
        /// What NiFi sent.
        code: ResponseCode,
        /// What the protocol allows here.
        expected: &'static str,
    },
    /// Bytes arrived when NiFi should be silent.
    #[error("{len} unexpected bytes from NiFi during {phase}")]
    UnexpectedData {
        /// Where.
        phase: &'static str,
        /// How many bytes.
        len: usize,
    },
    /// The transaction CRC32 did not match.
    #[error("transaction checksum mismatch (local {local}, remote {remote:?})")]
    BadChecksum {
        /// Our CRC (decimal).
        local: String,
        /// NiFi's CRC (decimal), when it sent one.
        remote: String,
    },
    /// The peer closed the connection mid-exchange.
    #[error("connection closed by NiFi during {phase} ({buffered} bytes unconsumed)")]
    UnexpectedEof {
        /// Where.
        phase: &'static str,
        /// Unconsumed bytes.
        buffered: usize,
    },
    /// The application's FlowFile does not match what it declared (content longer or shorter
    /// than its length) or cannot be encoded.
    #[error("{0}")]
    Stream(#[from] StreamError),
    /// The application called a method that is not valid now.
    #[error("invalid call: {0}")]
    InvalidState(&'static str),
}
