//! The WebSocket bridge protocol, version 1 (`bridge/PROTOCOL.md`): frame encoders and decoders,
//! public so Rust clients and tests speak it without re-implementing it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::record::{FlowFile, Outcome, Reason};

/// The subprotocol name of version 1 (`Sec-WebSocket-Protocol`).
pub const SUBPROTOCOL_V1: &str = "nifi-s2s-bridge.v1";
/// Batch frame type byte.
pub const TYPE_BATCH: u8 = 0x01;
/// Ack frame type byte.
pub const TYPE_ACK: u8 = 0x81;
/// Length of the batch header.
pub const BATCH_HEADER_LEN: usize = 18;
/// Length of the ack header (before the message).
pub const ACK_HEADER_LEN: usize = 18;
/// Longest ack message.
pub const MAX_ACK_MESSAGE: usize = 1024;

/// Close codes (PROTOCOL.md §7).
pub mod close {
    /// Bridge shutting down after draining.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error (short header, batch before hello).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Unsupported data (unexpected text message).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Message larger than `max_message_bytes`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Internal error.
    pub const INTERNAL: u16 = 1011;
    /// Wrong or missing token.
    pub const UNAUTHORIZED: u16 = 4401;
    /// No supported subprotocol offered.
    pub const UNSUPPORTED_VERSION: u16 = 4406;
    /// No `auth` message in time.
    pub const AUTH_TIMEOUT: u16 = 4408;
}

/// The fixed part of a batch message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Frame type (must be [`TYPE_BATCH`]).
    pub kind: u8,
    /// Reserved flags (must be 0).
    pub flags: u8,
    /// Client-chosen batch id.
    pub id: u64,
    /// Number of FlowFiles in the payload.
    pub count: u32,
    /// CRC32 of the payload.
    pub crc: u32,
}

impl BatchHeader {
    /// Splits a message into header and payload; `None` if shorter than the header.
    pub fn parse(msg: &Bytes) -> Option<(Self, Bytes)> {
        if msg.len() < BATCH_HEADER_LEN {
            return None;
        }
        let mut b = msg.slice(..BATCH_HEADER_LEN);
        let h = Self {
            kind: b.get_u8(),
            flags: b.get_u8(),
            id: b.get_u64(),
            count: b.get_u32(),
            crc: b.get_u32(),
        };
        Some((h, msg.slice(BATCH_HEADER_LEN..)))
    }
}

/// Encodes a batch message: header, then the FlowFiles in StandardFlowFileCodec v1.
pub fn encode_batch(id: u64, records: &[FlowFile]) -> Bytes {
    let mut payload = BytesMut::new();
    for r in records {
        codec::encode(r, &mut payload);
    }
    let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + payload.len());
    out.put_u8(TYPE_BATCH);
    out.put_u8(0);
    out.put_u64(id);
    out.put_u32(u32::try_from(records.len()).unwrap_or(u32::MAX));
    out.put_u32(crc32fast::hash(&payload));
    out.put_slice(&payload);
    out.freeze()
}

/// Ack status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// 0: committed.
    Committed,
    /// 1: retry after.
    Retry,
    /// 2: rejected.
    Rejected,
}

/// A decoded ack message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Status.
    pub status: AckStatus,
    /// Batch id.
    pub id: u64,
    /// Reason code (see [`Reason::code`]).
    pub reason: u16,
    /// Retry delay in ms (0 unless retry).
    pub retry_after_ms: u32,
    /// Human-readable message.
    pub message: String,
}

impl Ack {
    /// The ack for `outcome` of batch `id`.
    pub fn from_outcome(id: u64, outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Committed => Self {
                status: AckStatus::Committed,
                id,
                reason: 0,
                retry_after_ms: 0,
                message: String::new(),
            },
            Outcome::Retry {
                after,
                reason,
                message,
            } => Self {
                status: AckStatus::Retry,
                id,
                reason: reason.code(),
                retry_after_ms: u32::try_from(after.as_millis()).unwrap_or(u32::MAX),
                message: message.clone(),
            },
            Outcome::Rejected { reason, message } => Self {
                status: AckStatus::Rejected,
                id,
                reason: reason.code(),
                retry_after_ms: 0,
                message: message.clone(),
            },
        }
    }

    /// Encodes the ack (the message is cut to [`MAX_ACK_MESSAGE`] bytes at a char boundary).
    pub fn encode(&self) -> Bytes {
        let mut msg = self.message.as_str();
        if msg.len() > MAX_ACK_MESSAGE {
            let mut end = MAX_ACK_MESSAGE;
            while !msg.is_char_boundary(end) {
                end -= 1;
            }
            msg = &msg[..end];
        }
        let mut out = BytesMut::with_capacity(ACK_HEADER_LEN + msg.len());
        out.put_u8(TYPE_ACK);
        out.put_u8(match self.status {
            AckStatus::Committed => 0,
            AckStatus::Retry => 1,
            AckStatus::Rejected => 2,
        });
        out.put_u64(self.id);
        out.put_u16(self.reason);
        out.put_u32(self.retry_after_ms);
        out.put_u16(msg.len() as u16);
        out.put_slice(msg.as_bytes());
        out.freeze()
    }

    /// Decodes an ack message; `None` if it is not a well-formed ack.
    pub fn decode(mut b: &[u8]) -> Option<Self> {
        if b.len() < ACK_HEADER_LEN || b.get_u8() != TYPE_ACK {
            return None;
        }
        let status = match b.get_u8() {
            0 => AckStatus::Committed,
            1 => AckStatus::Retry,
            2 => AckStatus::Rejected,
            _ => return None,
        };
        let id = b.get_u64();
        let reason = b.get_u16();
        let retry_after_ms = b.get_u32();
        let len = b.get_u16() as usize;
        if b.len() != len {
            return None;
        }
        let message = String::from_utf8(b.to_vec()).ok()?;
        Some(Self {
            status,
            id,
            reason,
            retry_after_ms,
            message,
        })
    }

    /// The reason, if known.
    pub fn reason(&self) -> Option<Reason> {
        Reason::from_code(self.reason)
    }
}

/// The server's `hello` text message (PROTOCOL.md §3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    /// Always `"hello"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Negotiated version.
    pub version: u32,
    /// `"nifi"` or `"spool"`.
    pub ack_mode: String,
    /// See [`crate::Limits`].
    pub max_message_bytes: usize,
    /// See [`crate::Limits`].
    pub max_records: usize,
    /// See [`crate::Limits`].
    pub max_attributes: usize,
    /// See [`crate::Limits`].
    pub max_attribute_bytes: usize,
    /// See [`crate::Limits`].
    pub max_content_bytes: usize,
    /// See [`crate::Limits`].
    pub max_inflight: usize,
}

/// The client's optional first-message authentication (PROTOCOL.md §2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthMessage {
    /// Always `"auth"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The bearer token.
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f1() -> FlowFile {
        FlowFile {
            attributes: vec![
                ("filename".into(), "hello.txt".into()),
                ("path".into(), "./".into()),
            ],
            content: Bytes::from_static(b"hello"),
        }
    }

    /// The worked example of PROTOCOL.md §7.1, byte for byte.
    #[test]
    fn worked_example_batch() {
        let frame = encode_batch(1, &[f1()]);
        let expected = "01000000000000000001000000 01f12b6b3a 00000002 00000008 66696c656e616d65 \
                        00000009 68656c6c6f2e747874 00000004 70617468 00000002 2e2f \
                        0000000000000005 68656c6c6f";
        let expected: String = expected.chars().filter(|c| !c.is_whitespace()).collect();
        assert_eq!(hex(&frame), expected);
        assert_eq!(frame.len(), 74);
    }

    #[test]
    fn worked_example_acks() {
        let ok = Ack::from_outcome(1, &Outcome::Committed).encode();
        assert_eq!(hex(&ok), "810000000000000000010000000000000000");
        let retry = Ack::from_outcome(
            1,
            &Outcome::retry(
                std::time::Duration::from_millis(1000),
                Reason::Backpressure,
                "destination full",
            ),
        )
        .encode();
        assert_eq!(
            hex(&retry),
            "81010000000000000001000600 0003e8 0010 64657374696e6174696f6e2066756c6c"
                .replace(' ', "")
        );
        let back = Ack::decode(&retry).expect("decodes");
        assert_eq!(back.status, AckStatus::Retry);
        assert_eq!(back.reason(), Some(Reason::Backpressure));
        assert_eq!(back.retry_after_ms, 1000);
        assert_eq!(back.message, "destination full");
    }

    #[test]
    fn header_roundtrip_and_short() {
        let frame = encode_batch(7, &[f1(), f1()]);
        let (h, payload) = BatchHeader::parse(&frame).expect("header");
        assert_eq!((h.kind, h.flags, h.id, h.count), (TYPE_BATCH, 0, 7, 2));
        assert_eq!(h.crc, crc32fast::hash(&payload));
        assert!(BatchHeader::parse(&frame.slice(..17)).is_none());
    }

    #[test]
    fn long_ack_message_is_cut_at_char_boundary() {
        let msg = "é".repeat(600); // 1200 bytes
        let a = Ack::from_outcome(3, &Outcome::rejected(Reason::Limit, msg)).encode();
        let back = Ack::decode(&a).expect("decodes");
        assert!(back.message.len() <= MAX_ACK_MESSAGE);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
