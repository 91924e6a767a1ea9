//! The bridge's WebSocket protocol, version 1 (`bridge/PROTOCOL.md`), as plain data: batch
//! framing, acks, the `hello` and `auth` text messages, reason and close codes.
//!
//! No I/O and no tokio, so the bridge (server side), the wasm client and Rust test clients share
//! one definition of every byte. FlowFiles inside a batch use StandardFlowFileCodec v1 from
//! `s2s_proto`. Every decoder checks each length against the message it was given: a broken or
//! hostile peer yields a [`ProtocolError`], never a panic.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use s2s_proto::FlowFile;
use s2s_proto::codec::flowfile;
use serde::{Deserialize, Serialize};

/// The subprotocol name that selects version 1 (`Sec-WebSocket-Protocol`, §1).
pub const SUBPROTOCOL_V1: &str = "nifi-s2s-bridge.v1";
/// Type byte of a batch message (client → bridge).
pub const TYPE_BATCH: u8 = 0x01;
/// Type byte of an ack message (bridge → client).
pub const TYPE_ACK: u8 = 0x81;
/// Length of a batch header: type, flags, id (u64), count (u32), CRC32 (u32).
pub const BATCH_HEADER_LEN: usize = 18;
/// Length of an ack header before its message.
pub const ACK_HEADER_LEN: usize = 18;
/// Longest ack message (§5); anything longer is a broken peer.
pub const MAX_ACK_MESSAGE: usize = 1024;

/// Why a message does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bridge protocol: {0}")]
pub struct ProtocolError(String);

impl ProtocolError {
    /// The description without the "bridge protocol:" prefix.
    pub fn detail(&self) -> &str {
        &self.0
    }
}

/// WebSocket close codes (§7).
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

/// Ack reason codes (§5 table).
pub mod reason {
    /// Committed; no problem.
    pub const OK: u16 = 0;
    /// The batch header's CRC32 does not match the payload.
    pub const BAD_CRC: u16 = 1;
    /// The payload is not `count` well-formed FlowFiles.
    pub const MALFORMED: u16 = 2;
    /// A limit announced in `hello` is exceeded.
    pub const LIMIT: u16 = 3;
    /// A batch with this id is still in flight on the connection.
    pub const DUPLICATE_ID: u16 = 4;
    /// More unacked batches than `max_inflight`.
    pub const TOO_MANY_INFLIGHT: u16 = 5;
    /// NiFi or the spool is full.
    pub const BACKPRESSURE: u16 = 6;
    /// NiFi is unreachable.
    pub const UNAVAILABLE: u16 = 7;
    /// The bridge is shutting down.
    pub const SHUTTING_DOWN: u16 = 8;
    /// NiFi refused the data for good (unknown port, unauthorized).
    pub const DESTINATION_REJECTED: u16 = 9;
    /// A bug or an unexpected local failure.
    pub const INTERNAL: u16 = 10;

    /// Name of a reason code, for logs and status events; `"UNKNOWN"` for codes this version
    /// does not know (a newer bridge may send them).
    pub fn name(code: u16) -> &'static str {
        match code {
            OK => "OK",
            BAD_CRC => "BAD_CRC",
            MALFORMED => "MALFORMED",
            LIMIT => "LIMIT",
            DUPLICATE_ID => "DUPLICATE_ID",
            TOO_MANY_INFLIGHT => "TOO_MANY_INFLIGHT",
            BACKPRESSURE => "BACKPRESSURE",
            UNAVAILABLE => "UNAVAILABLE",
            SHUTTING_DOWN => "SHUTTING_DOWN",
            DESTINATION_REJECTED => "DESTINATION_REJECTED",
            INTERNAL => "INTERNAL",
            _ => "UNKNOWN",
        }
    }
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
    /// Splits a message into header and payload; `None` if shorter than the header. The caller
    /// checks `kind`, `flags` and the CRC, because each has its own reply (§6).
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

/// Size one FlowFile adds to a batch payload, so a batcher can stop before `max_message_bytes`.
pub fn encoded_len(ff: &FlowFile) -> usize {
    flowfile::encoded_len(ff)
}

/// Frames `flowfiles` as one batch message: header, then each FlowFile in StandardFlowFileCodec v1.
///
/// No limits are checked here (a client checks the bridge's announced [`Limits`] first; tests
/// send oversized batches on purpose). Fails only if the count does not fit the header's u32.
pub fn encode_batch(id: u64, flowfiles: &[FlowFile]) -> Result<Bytes, ProtocolError> {
    let count = u32::try_from(flowfiles.len()).map_err(|_| {
        ProtocolError(format!(
            "{} FlowFiles do not fit in one batch",
            flowfiles.len()
        ))
    })?;
    let payload_len: usize = flowfiles.iter().map(encoded_len).sum();
    let mut msg = BytesMut::with_capacity(BATCH_HEADER_LEN + payload_len);
    msg.put_u8(TYPE_BATCH);
    msg.put_u8(0);
    msg.put_u64(id);
    msg.put_u32(count);
    msg.put_u32(0); // CRC, filled in below once the payload is written.
    for ff in flowfiles {
        flowfile::encode(ff, &mut msg);
    }
    let crc = crc32fast::hash(&msg[BATCH_HEADER_LEN..]);
    msg[14..18].copy_from_slice(&crc.to_be_bytes());
    Ok(msg.freeze())
}

/// Status byte of an ack (§5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// 0: the batch is safe (in NiFi, or in the spool); the client may delete it.
    Committed,
    /// 1: nothing was kept; send again after `retry_after_ms`.
    Retry,
    /// 2: the bridge will never accept this batch as it is.
    Rejected,
}

/// One ack message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Outcome.
    pub status: AckStatus,
    /// The batch id as the client sent it.
    pub batch_id: u64,
    /// Reason code ([`reason`]); unknown codes are kept as numbers.
    pub reason: u16,
    /// Earliest resend time for [`AckStatus::Retry`], in milliseconds (0 otherwise).
    pub retry_after_ms: u32,
    /// Human-readable text, for logs only.
    pub message: String,
}

impl Ack {
    /// Encodes the ack; a message over [`MAX_ACK_MESSAGE`] bytes is cut at a char boundary.
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
        out.put_u64(self.batch_id);
        out.put_u16(self.reason);
        out.put_u32(self.retry_after_ms);
        // Cannot truncate: msg.len() <= MAX_ACK_MESSAGE < u16::MAX.
        out.put_u16(msg.len() as u16);
        out.put_slice(msg.as_bytes());
        out.freeze()
    }

    /// Decodes one binary message from the bridge as an ack.
    pub fn decode(msg: &[u8]) -> Result<Self, ProtocolError> {
        if msg.len() < ACK_HEADER_LEN {
            return Err(ProtocolError(format!(
                "ack of {} bytes is shorter than its {ACK_HEADER_LEN}-byte header",
                msg.len()
            )));
        }
        let mut b = msg;
        let kind = b.get_u8();
        if kind != TYPE_ACK {
            return Err(ProtocolError(format!(
                "unexpected message type 0x{kind:02x}"
            )));
        }
        let status = match b.get_u8() {
            0 => AckStatus::Committed,
            1 => AckStatus::Retry,
            2 => AckStatus::Rejected,
            other => return Err(ProtocolError(format!("unknown ack status {other}"))),
        };
        let batch_id = b.get_u64();
        let reason = b.get_u16();
        let retry_after_ms = b.get_u32();
        let len = usize::from(b.get_u16());
        if len > MAX_ACK_MESSAGE || b.len() != len {
            return Err(ProtocolError(format!(
                "ack message length {len} does not match the {} bytes received",
                msg.len()
            )));
        }
        Ok(Self {
            status,
            batch_id,
            reason,
            retry_after_ms,
            // Lossy: the message is for logs, and a bad byte there must not lose the ack.
            message: String::from_utf8_lossy(b).into_owned(),
        })
    }
}

/// Limits the bridge announces in `hello` (§3). A client checks them before sending, so a batch
/// the bridge would reject is caught locally with the offending record named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest WebSocket message, header included.
    pub max_message_bytes: usize,
    /// Most FlowFiles in one batch.
    pub max_records: usize,
    /// Most attributes per FlowFile.
    pub max_attributes: usize,
    /// Largest key + value of one attribute.
    pub max_attribute_bytes: usize,
    /// Largest content of one FlowFile.
    pub max_content_bytes: usize,
    /// Most unacked batches per connection.
    pub max_inflight: usize,
}

impl Default for Limits {
    /// The defaults of §3 (also what a client assumes for fields a `hello` leaves out).
    fn default() -> Self {
        Self {
            max_message_bytes: 8 * 1024 * 1024,
            max_records: 10_000,
            max_attributes: 256,
            max_attribute_bytes: 65_536,
            max_content_bytes: 8 * 1024 * 1024,
            max_inflight: 16,
        }
    }
}

/// A FlowFile or batch over one of the announced [`Limits`]; the text names the limit and, for a
/// batch, the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LimitExceeded(String);

impl Limits {
    /// Checks one FlowFile: attribute count, each attribute's key + value size, content size.
    pub fn check_flowfile(&self, ff: &FlowFile) -> Result<(), LimitExceeded> {
        if ff.attributes.len() > self.max_attributes {
            return Err(LimitExceeded(format!(
                "{} attributes exceed max_attributes = {}",
                ff.attributes.len(),
                self.max_attributes
            )));
        }
        if let Some((k, v)) = ff
            .attributes
            .iter()
            .find(|(k, v)| k.len() + v.len() > self.max_attribute_bytes)
        {
            return Err(LimitExceeded(format!(
                "attribute {:?} has {} bytes, over max_attribute_bytes = {}",
                truncate(k, 64),
                k.len() + v.len(),
                self.max_attribute_bytes
            )));
        }
        if ff.content.len() > self.max_content_bytes {
            return Err(LimitExceeded(format!(
                "content of {} bytes exceeds max_content_bytes = {}",
                ff.content.len(),
                self.max_content_bytes
            )));
        }
        Ok(())
    }

    /// Checks a batch: the record count, then each record (the error names its index).
    pub fn check_batch(&self, flowfiles: &[FlowFile]) -> Result<(), LimitExceeded> {
        if flowfiles.len() > self.max_records {
            return Err(LimitExceeded(format!(
                "{} records exceed max_records = {}",
                flowfiles.len(),
                self.max_records
            )));
        }
        flowfiles.iter().enumerate().try_for_each(|(i, ff)| {
            self.check_flowfile(ff)
                .map_err(|e| LimitExceeded(format!("record {i}: {}", e.0)))
        })
    }
}

/// At most `max` chars of `s`: attribute keys are client input and go into error messages.
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The bridge's `hello` text message (§3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Negotiated version (1).
    pub version: u32,
    /// `"nifi"` or `"spool"`: what *committed* means.
    pub ack_mode: String,
    /// Announced limits.
    pub limits: Limits,
}

#[derive(Serialize, Deserialize)]
struct HelloWire {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "one")]
    version: u32,
    #[serde(default = "nifi")]
    ack_mode: String,
    #[serde(flatten)]
    limits: Limits,
}

fn one() -> u32 {
    1
}

fn nifi() -> String {
    "nifi".into()
}

impl Hello {
    /// The JSON text the bridge sends.
    pub fn to_json(&self) -> String {
        let wire = HelloWire {
            kind: "hello".into(),
            version: self.version,
            ack_mode: self.ack_mode.clone(),
            limits: self.limits,
        };
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Parses a `hello`. Unknown fields are ignored and missing limits keep the defaults of §3;
    /// limits are clamped to `i32::MAX` (the codec's lengths are Java ints, whatever a bridge
    /// says) and counts to at least 1.
    pub fn from_json(text: &str) -> Result<Self, ProtocolError> {
        let wire: HelloWire = serde_json::from_str(text)
            .map_err(|e| ProtocolError(format!("hello is not valid JSON ({e}): {text:.200}")))?;
        if wire.kind != "hello" {
            return Err(ProtocolError(format!(
                "expected a hello message, got type {:?}",
                wire.kind
            )));
        }
        if wire.version != 1 {
            return Err(ProtocolError(format!(
                "bridge negotiated version {}, this code speaks 1",
                wire.version
            )));
        }
        let cap = |n: usize| n.min(i32::MAX as usize);
        let l = wire.limits;
        Ok(Self {
            version: 1,
            ack_mode: wire.ack_mode,
            limits: Limits {
                max_message_bytes: cap(l.max_message_bytes),
                max_records: cap(l.max_records).max(1),
                max_attributes: cap(l.max_attributes),
                max_attribute_bytes: cap(l.max_attribute_bytes),
                max_content_bytes: cap(l.max_content_bytes),
                max_inflight: cap(l.max_inflight).max(1),
            },
        })
    }
}

/// The client's optional first message carrying its bearer token (§2), for clients that cannot
/// set an `Authorization` header on the upgrade request (browsers).
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// The bearer token.
    pub token: String,
}

#[derive(Serialize, Deserialize)]
struct AuthWire {
    #[serde(rename = "type")]
    kind: String,
    token: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Auth {
    /// The JSON text a client sends.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&AuthWire {
            kind: "auth".into(),
            token: self.token.clone(),
        })
        .unwrap_or_default()
    }

    /// Parses an `auth` message; `None` for anything else (including other JSON messages).
    pub fn from_json(text: &str) -> Option<Self> {
        let wire: AuthWire = serde_json::from_str(text).ok()?;
        (wire.kind == "auth").then_some(Self { token: wire.token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv4() -> FlowFile {
        FlowFile {
            attributes: vec![
                ("filename".into(), "hello.txt".into()),
                ("path".into(), "./".into()),
            ],
            content: Bytes::from_static(b"hello"),
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The worked example of PROTOCOL.md §7.1, byte for byte.
    #[test]
    fn worked_example_batch() {
        let frame = encode_batch(1, &[tv4()]).unwrap();
        let expected = "01000000000000000001000000 01f12b6b3a 00000002 00000008 66696c656e616d65 \
                        00000009 68656c6c6f2e747874 00000004 70617468 00000002 2e2f \
                        0000000000000005 68656c6c6f";
        let expected: String = expected.chars().filter(|c| !c.is_whitespace()).collect();
        assert_eq!(hex(&frame), expected);
        assert_eq!(encoded_len(&tv4()) + BATCH_HEADER_LEN, frame.len());
        let (h, payload) = BatchHeader::parse(&frame).expect("header");
        assert_eq!((h.kind, h.flags, h.id, h.count), (TYPE_BATCH, 0, 1, 1));
        assert_eq!(h.crc, crc32fast::hash(&payload));
        assert!(BatchHeader::parse(&frame.slice(..17)).is_none());
    }

    #[test]
    fn worked_example_acks() {
        let ok = Ack {
            status: AckStatus::Committed,
            batch_id: 1,
            reason: reason::OK,
            retry_after_ms: 0,
            message: String::new(),
        };
        assert_eq!(hex(&ok.encode()), "810000000000000000010000000000000000");
        assert_eq!(Ack::decode(&ok.encode()).unwrap(), ok);
        let retry = Ack {
            status: AckStatus::Retry,
            batch_id: 1,
            reason: reason::BACKPRESSURE,
            retry_after_ms: 1000,
            message: "destination full".into(),
        };
        assert_eq!(
            hex(&retry.encode()),
            "810100000000000000010006000003e8001064657374696e6174696f6e2066756c6c"
        );
        assert_eq!(Ack::decode(&retry.encode()).unwrap(), retry);
        assert_eq!(reason::name(retry.reason), "BACKPRESSURE");
        assert_eq!(reason::name(999), "UNKNOWN");
    }

    #[test]
    fn broken_acks_are_errors_not_panics() {
        assert!(Ack::decode(&[]).is_err());
        assert!(Ack::decode(&[0x81; 17]).is_err());
        // Wrong type, unknown status, length mismatch both ways, length over the cap.
        let mut m = vec![0x01, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(Ack::decode(&m).is_err());
        m[0] = 0x81;
        m[1] = 9;
        assert!(Ack::decode(&m).is_err());
        m[1] = 0;
        m[17] = 3;
        assert!(Ack::decode(&m).is_err());
        m.extend_from_slice(b"abcd");
        assert!(Ack::decode(&m).is_err());
        let mut big = vec![
            0x81, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x08, 0x00,
        ];
        big.resize(18 + 2048, b'x');
        assert!(Ack::decode(&big).is_err());
    }

    #[test]
    fn long_ack_message_is_cut_at_char_boundary() {
        let a = Ack {
            status: AckStatus::Rejected,
            batch_id: 3,
            reason: reason::LIMIT,
            retry_after_ms: 0,
            message: "é".repeat(600), // 1200 bytes
        };
        let back = Ack::decode(&a.encode()).expect("decodes");
        assert!(back.message.len() <= MAX_ACK_MESSAGE);
        assert!(back.message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn hello_roundtrip_defaults_and_errors() {
        let h = Hello::from_json(r#"{"type":"hello","version":1,"ack_mode":"spool","max_message_bytes":1000,"max_records":5,"max_attributes":9,"max_attribute_bytes":100,"max_content_bytes":500,"max_inflight":2,"future":true}"#).unwrap();
        assert_eq!(h.ack_mode, "spool");
        assert_eq!((h.limits.max_records, h.limits.max_inflight), (5, 2));
        assert_eq!(Hello::from_json(&h.to_json()).unwrap(), h);
        let sparse = Hello::from_json(r#"{"type":"hello","max_records":0}"#).unwrap();
        assert_eq!(sparse.ack_mode, "nifi");
        assert_eq!(sparse.limits.max_records, 1);
        assert_eq!(
            sparse.limits.max_content_bytes,
            Limits::default().max_content_bytes
        );
        assert!(Hello::from_json(r#"{"type":"auth","token":"x"}"#).is_err());
        assert!(Hello::from_json("not json").is_err());
        assert!(Hello::from_json(r#"{"type":"hello","version":2}"#).is_err());
    }

    #[test]
    fn limits_name_what_is_exceeded() {
        let tight = Limits {
            max_records: 1,
            max_content_bytes: 4,
            max_attributes: 2,
            max_attribute_bytes: 18,
            ..Limits::default()
        };
        let e = tight.check_batch(&[tv4(), tv4()]).unwrap_err().to_string();
        assert!(e.contains("max_records = 1"), "{e}");
        let e = tight.check_batch(&[tv4()]).unwrap_err().to_string();
        assert!(e.starts_with("record 0: content of 5 bytes"), "{e}");
        let mut ff = tv4();
        ff.content = Bytes::from_static(b"ok");
        assert_eq!(tight.check_flowfile(&ff), Ok(()));
        ff.attributes.push(("k".repeat(100), "v".into()));
        let e = tight.check_flowfile(&ff).unwrap_err().to_string();
        assert!(e.contains("max_attributes = 2"), "{e}");
        ff.attributes.truncate(1);
        ff.attributes[0].1 = "x".repeat(20); // 8 + 20 bytes
        let e = tight.check_flowfile(&ff).unwrap_err().to_string();
        assert!(e.contains("max_attribute_bytes = 18"), "{e}");
    }

    #[test]
    fn auth_roundtrip_and_redacted_debug() {
        let a = Auth {
            token: "s3cret".into(),
        };
        assert_eq!(Auth::from_json(&a.to_json()), Some(a.clone()));
        assert!(!format!("{a:?}").contains("s3cret"));
        assert_eq!(Auth::from_json(r#"{"type":"hello","token":"x"}"#), None);
        assert_eq!(Auth::from_json("{"), None);
    }
}
