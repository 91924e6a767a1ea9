//! The bridge's WebSocket protocol, version 1 (`bridge/PROTOCOL.md`), as plain data: batch framing
//! and ack parsing. No I/O here, so it is unit-tested on the host.

use bytes::{BufMut, Bytes, BytesMut};

use crate::api::codec::{self, FlowFile};
use crate::api::error::Error;

/// The subprotocol name that selects version 1 (`PROTOCOL.md` §1).
pub const SUBPROTOCOL_V1: &str = "nifi-s2s-bridge.v1";

const BATCH: u8 = 0x01;
const ACK: u8 = 0x81;
const HEADER_LEN: usize = 18;
/// Upper bound of an ack's message, from §5; anything longer is a broken peer.
const MAX_ACK_MESSAGE: usize = 1024;

/// Limits the bridge announces in its `hello` message (§3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The defaults shown in `PROTOCOL.md` §3; only used until `hello` arrives.
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

/// Fields of the server's `hello` message that the client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Negotiated version (always 1 here).
    pub version: u32,
    /// `"nifi"` or `"spool"`: what *committed* means.
    pub ack_mode: String,
    /// Announced limits.
    pub limits: Limits,
}

/// Status byte of an ack (§5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// The batch is safe; delete it from the outbox.
    Committed,
    /// Nothing was kept; send again after `retry_after_ms`.
    Retry,
    /// The bridge will never accept this batch as it is.
    Rejected,
}

/// One parsed ack message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Outcome.
    pub status: AckStatus,
    /// Batch id as sent.
    pub batch_id: u64,
    /// Reason code (§5 table); unknown codes are kept as numbers.
    pub reason: u16,
    /// Earliest resend time for `Retry`, in milliseconds.
    pub retry_after_ms: u32,
    /// Human-readable text, for logs only.
    pub message: String,
}

/// Reason code `BAD_CRC`: the stored data may be fine, so one re-encode is worth trying.
pub const REASON_BAD_CRC: u16 = 1;

/// Name of a reason code, for status events and logs.
pub fn reason_name(code: u16) -> &'static str {
    match code {
        0 => "OK",
        1 => "BAD_CRC",
        2 => "MALFORMED",
        3 => "LIMIT",
        4 => "DUPLICATE_ID",
        5 => "TOO_MANY_INFLIGHT",
        6 => "BACKPRESSURE",
        7 => "UNAVAILABLE",
        8 => "SHUTTING_DOWN",
        9 => "DESTINATION_REJECTED",
        10 => "INTERNAL",
        _ => "UNKNOWN",
    }
}

/// Frames `flowfiles` as one binary BATCH message with the shared StandardFlowFileCodec v1.
///
/// Checks the limits of §3 first so that a batch the bridge would reject is caught here, with the
/// record that breaks it named, instead of costing a round trip.
pub fn encode_batch(
    batch_id: u64,
    flowfiles: &[FlowFile],
    limits: &Limits,
) -> Result<Bytes, Error> {
    if flowfiles.len() > limits.max_records {
        return Err(Error::Limit(format!(
            "{} records in one batch, the bridge accepts {}",
            flowfiles.len(),
            limits.max_records
        )));
    }
    let count = u32::try_from(flowfiles.len())
        .map_err(|_| Error::Limit("record count does not fit in u32".into()))?;
    let mut payload = BytesMut::new();
    for ff in flowfiles {
        check_flowfile(ff, limits)?;
        codec::encode(ff, &mut payload);
    }
    if HEADER_LEN + payload.len() > limits.max_message_bytes {
        return Err(Error::Limit(format!(
            "batch of {} bytes exceeds max_message_bytes {}",
            HEADER_LEN + payload.len(),
            limits.max_message_bytes
        )));
    }
    let mut msg = BytesMut::with_capacity(HEADER_LEN + payload.len());
    msg.put_u8(BATCH);
    msg.put_u8(0);
    msg.put_u64(batch_id);
    msg.put_u32(count);
    msg.put_u32(crc32fast::hash(&payload));
    msg.extend_from_slice(&payload);
    Ok(msg.freeze())
}

/// Size one FlowFile adds to a batch payload: lets the batcher stop before `max_message_bytes`.
pub fn encoded_len(ff: &FlowFile) -> usize {
    codec::encoded_len(ff)
}

/// Room for the batch header, for the batcher's size budget.
pub const BATCH_HEADER_LEN: usize = HEADER_LEN;

fn check_flowfile(ff: &FlowFile, limits: &Limits) -> Result<(), Error> {
    if ff.attributes.len() > limits.max_attributes {
        return Err(Error::Limit(format!(
            "{} attributes, the bridge accepts {}",
            ff.attributes.len(),
            limits.max_attributes
        )));
    }
    if let Some((k, v)) = ff
        .attributes
        .iter()
        .find(|(k, v)| k.len() + v.len() > limits.max_attribute_bytes)
    {
        return Err(Error::Limit(format!(
            "attribute {k:?} has {} bytes, the bridge accepts {}",
            k.len() + v.len(),
            limits.max_attribute_bytes
        )));
    }
    if ff.content.len() > limits.max_content_bytes {
        return Err(Error::Limit(format!(
            "content of {} bytes, the bridge accepts {}",
            ff.content.len(),
            limits.max_content_bytes
        )));
    }
    Ok(())
}

/// Parses one binary message from the bridge. Every length is checked against the message, so a
/// broken or hostile peer yields `Error::Protocol`, never a panic.
pub fn decode_ack(msg: &[u8]) -> Result<Ack, Error> {
    if msg.len() < HEADER_LEN {
        return Err(Error::Protocol(format!(
            "ack of {} bytes is shorter than its 18-byte header",
            msg.len()
        )));
    }
    if msg[0] != ACK {
        return Err(Error::Protocol(format!(
            "unexpected message type 0x{:02x}",
            msg[0]
        )));
    }
    let status = match msg[1] {
        0 => AckStatus::Committed,
        1 => AckStatus::Retry,
        2 => AckStatus::Rejected,
        other => return Err(Error::Protocol(format!("unknown ack status {other}"))),
    };
    let batch_id = u64::from_be_bytes(msg[2..10].try_into().expect("8-byte slice"));
    let reason = u16::from_be_bytes([msg[10], msg[11]]);
    let retry_after_ms = u32::from_be_bytes(msg[12..16].try_into().expect("4-byte slice"));
    let len = usize::from(u16::from_be_bytes([msg[16], msg[17]]));
    if len > MAX_ACK_MESSAGE || msg.len() != HEADER_LEN + len {
        return Err(Error::Protocol(format!(
            "ack message length {len} does not match the {} bytes received",
            msg.len()
        )));
    }
    let message = String::from_utf8_lossy(&msg[HEADER_LEN..]).into_owned();
    Ok(Ack {
        status,
        batch_id,
        reason,
        retry_after_ms,
        message,
    })
}

/// Parses the server's text `hello` (§3). Unknown fields are ignored, missing limits keep the
/// documented defaults.
pub fn decode_hello(text: &str) -> Result<Hello, Error> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::Protocol(format!("hello is not JSON: {e}")))?;
    if v.get("type").and_then(|t| t.as_str()) != Some("hello") {
        return Err(Error::Protocol(format!("expected hello, got {text:.200}")));
    }
    // Clamped to i32::MAX: the codec's lengths are Java ints, whatever a bridge announces.
    let num = |name: &str, default: usize| -> usize {
        v.get(name)
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(default)
            .min(i32::MAX as usize)
    };
    let d = Limits::default();
    let version = num("version", 1);
    if version != 1 {
        return Err(Error::Protocol(format!(
            "bridge negotiated version {version}, this client speaks 1"
        )));
    }
    Ok(Hello {
        version: 1,
        ack_mode: v
            .get("ack_mode")
            .and_then(|m| m.as_str())
            .unwrap_or("nifi")
            .to_owned(),
        limits: Limits {
            max_message_bytes: num("max_message_bytes", d.max_message_bytes),
            max_records: num("max_records", d.max_records).max(1),
            max_attributes: num("max_attributes", d.max_attributes),
            max_attribute_bytes: num("max_attribute_bytes", d.max_attribute_bytes),
            max_content_bytes: num("max_content_bytes", d.max_content_bytes),
            max_inflight: num("max_inflight", d.max_inflight).max(1),
        },
    })
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

    #[test]
    fn batch_matches_protocol_worked_example() {
        let msg = encode_batch(1, &[tv4()], &Limits::default()).unwrap();
        let expected: &[u8] = &[
            0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0xf1, 0x2b, 0x6b, 0x3a, 0, 0, 0, 2, 0,
            0, 0, 8, b'f', b'i', b'l', b'e', b'n', b'a', b'm', b'e', 0, 0, 0, 9, b'h', b'e', b'l',
            b'l', b'o', b'.', b't', b'x', b't', 0, 0, 0, 4, b'p', b'a', b't', b'h', 0, 0, 0, 2,
            b'.', b'/', 0, 0, 0, 0, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o',
        ];
        assert_eq!(&msg[..], expected);
        assert_eq!(encoded_len(&tv4()) + BATCH_HEADER_LEN, msg.len());
    }

    #[test]
    fn acks_from_worked_example() {
        let ok = [0x81, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let ack = decode_ack(&ok).unwrap();
        assert_eq!(ack.status, AckStatus::Committed);
        assert_eq!(ack.batch_id, 1);
        let mut retry = vec![0x81, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 6, 0, 0, 3, 0xe8, 0, 16];
        retry.extend_from_slice(b"destination full");
        let ack = decode_ack(&retry).unwrap();
        assert_eq!(ack.status, AckStatus::Retry);
        assert_eq!((ack.reason, ack.retry_after_ms), (6, 1000));
        assert_eq!(ack.message, "destination full");
        assert_eq!(reason_name(ack.reason), "BACKPRESSURE");
    }

    #[test]
    fn broken_acks_are_errors_not_panics() {
        assert!(decode_ack(&[]).is_err());
        assert!(decode_ack(&[0x81; 17]).is_err());
        // Wrong type, unknown status, length mismatch both ways, length over the cap.
        let mut m = vec![0x01, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(decode_ack(&m).is_err());
        m[0] = 0x81;
        m[1] = 9;
        assert!(decode_ack(&m).is_err());
        m[1] = 0;
        m[17] = 3;
        assert!(decode_ack(&m).is_err());
        m.extend_from_slice(b"abcd");
        assert!(decode_ack(&m).is_err());
        let mut big = vec![
            0x81, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x08, 0x00,
        ];
        big.resize(18 + 2048, b'x');
        assert!(decode_ack(&big).is_err());
    }

    #[test]
    fn limits_are_enforced_before_sending() {
        let tight = Limits {
            max_records: 1,
            max_content_bytes: 4,
            ..Limits::default()
        };
        assert!(matches!(
            encode_batch(1, &[tv4(), tv4()], &tight),
            Err(Error::Limit(_))
        ));
        assert!(matches!(
            encode_batch(1, &[tv4()], &tight),
            Err(Error::Limit(_))
        ));
        let small = Limits {
            max_message_bytes: 40,
            ..Limits::default()
        };
        assert!(matches!(
            encode_batch(1, &[tv4()], &small),
            Err(Error::Limit(_))
        ));
    }

    #[test]
    fn hello_parsing() {
        let h = decode_hello(r#"{"type":"hello","version":1,"ack_mode":"spool","max_message_bytes":1000,"max_records":5,"max_attributes":9,"max_attribute_bytes":100,"max_content_bytes":500,"max_inflight":2,"future":true}"#).unwrap();
        assert_eq!(h.ack_mode, "spool");
        assert_eq!(h.limits.max_records, 5);
        assert_eq!(h.limits.max_inflight, 2);
        assert!(decode_hello(r#"{"type":"auth"}"#).is_err());
        assert!(decode_hello("not json").is_err());
        assert!(decode_hello(r#"{"type":"hello","version":2}"#).is_err());
    }
}
