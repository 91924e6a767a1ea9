//! Error types shared by all codecs.

use super::response_code::ResponseCode;

/// The bytes received can never form a valid message.
///
/// After a `DecodeError` the byte stream is out of sync: the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A response code frame did not start with `52 43` ("RC").
    #[error("expected response code prefix 'RC' (52 43), found {:02x} {:02x}", found[0], found[1])]
    MissingResponsePrefix {
        /// The two bytes found instead.
        found: [u8; 2],
    },
    /// A response code byte that NiFi does not define; its framing (message or not) is unknown.
    #[error("unknown response code {0}")]
    UnknownResponseCode(ResponseCode),
    /// A `writeUTF` string whose bytes are not valid Java modified UTF-8.
    #[error("malformed modified UTF-8 at byte {offset} of a protocol string")]
    InvalidModifiedUtf8 {
        /// Offset of the offending byte inside the string's bytes.
        offset: usize,
    },
    /// A FlowFile attribute key or value that is not valid UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which field (for example `attribute key`).
        field: &'static str,
    },
    /// A length, count or size read from the wire exceeds the configured bound.
    #[error("{field} of {len} exceeds the limit of {max}")]
    LimitExceeded {
        /// Which field.
        field: &'static str,
        /// The value read from the wire.
        len: u64,
        /// The configured maximum.
        max: u64,
    },
    /// A signed length or count read from the wire is negative.
    #[error("negative {field}: {value}")]
    Negative {
        /// Which field.
        field: &'static str,
        /// The value read from the wire.
        value: i64,
    },
    /// A value read from the wire is outside the range its field allows.
    #[error("{field} out of range: {value}")]
    OutOfRange {
        /// Which field.
        field: &'static str,
        /// The value read from the wire.
        value: i64,
    },
    /// A bare negotiation status byte other than `0x14`, `0x15` or `0xFF`.
    #[error("unexpected negotiation status byte {0:#04x}")]
    UnknownNegotiationStatus(u8),
    /// A request type name NiFi does not define.
    #[error("unknown request type {0:?}")]
    UnknownRequestType(String),
    /// A fixed magic sequence (`NiFi`, `NiFiFF3`, `SYNC`) did not match.
    #[error("bad magic: expected {expected:02x?}, found {found:02x?}")]
    BadMagic {
        /// The expected bytes.
        expected: &'static [u8],
        /// The bytes found.
        found: Vec<u8>,
    },
    /// The byte after a compressed chunk was neither `0x00` (end) nor `0x01` (more).
    #[error("bad compressed-chunk continuation byte {0:#04x} (expected 00 or 01)")]
    BadChunkContinuation(u8),
    /// A compressed chunk is not a valid zlib stream.
    #[error("corrupt zlib data in compressed chunk: {0}")]
    Zlib(String),
    /// A compressed chunk inflated to a different size than its header announced.
    #[error("compressed chunk inflated to {actual} bytes, its header announced {expected}")]
    ChunkLengthMismatch {
        /// Length announced by the chunk header.
        expected: u64,
        /// Length actually produced (capped at `expected + 1`).
        actual: u64,
    },
    /// Bytes were left over where a message must end exactly (for example inside a
    /// compressed envelope after its FlowFile).
    #[error("{0} unexpected trailing bytes")]
    TrailingBytes(usize),
    /// The input ended in the middle of a message.
    #[error("input ended in the middle of a message ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes buffered at end of input.
        buffered: usize,
    },
}

/// A value cannot be represented on the wire. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A protocol (`writeUTF`) string whose modified UTF-8 encoding exceeds 65535 bytes.
    #[error("protocol string encodes to {len} bytes of modified UTF-8; the limit is 65535")]
    StringTooLong {
        /// Encoded length in bytes.
        len: usize,
    },
    /// A message was given for a response code that carries none.
    #[error("response code {0} does not carry a message")]
    UnexpectedMessage(ResponseCode),
    /// A numeric value exceeds what its wire field (a Java `int`/`long`) can carry.
    #[error("{field} value {value} does not fit its wire field")]
    OutOfRange {
        /// Which field.
        field: &'static str,
        /// The value.
        value: u64,
    },
}
