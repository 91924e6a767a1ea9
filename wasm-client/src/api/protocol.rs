//! The bridge's WebSocket protocol, version 1 (`bridge/PROTOCOL.md`). The wire format is the
//! `s2s-bridge-protocol` crate, shared with the bridge itself; this module adds what only a
//! client needs: checking a batch against the bridge's announced limits before sending it, and
//! mapping protocol errors onto this crate's [`Error`].

use bytes::Bytes;

use crate::api::codec::FlowFile;
use crate::api::error::Error;

pub use s2s_bridge_protocol::{
    Ack, AckStatus, BATCH_HEADER_LEN, Hello, Limits, SUBPROTOCOL_V1, encoded_len,
};

/// Reason code `BAD_CRC`: the stored data may be fine, so one re-encode is worth trying.
pub const REASON_BAD_CRC: u16 = s2s_bridge_protocol::reason::BAD_CRC;

/// Name of a reason code, for status events and logs.
pub fn reason_name(code: u16) -> &'static str {
    s2s_bridge_protocol::reason::name(code)
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
    let mut size = BATCH_HEADER_LEN;
    for ff in flowfiles {
        check_flowfile(ff, limits)?;
        size += encoded_len(ff);
    }
    if size > limits.max_message_bytes {
        return Err(Error::Limit(format!(
            "batch of {size} bytes exceeds max_message_bytes {}",
            limits.max_message_bytes
        )));
    }
    s2s_bridge_protocol::encode_batch(batch_id, flowfiles)
        .map_err(|e| Error::Limit(e.detail().to_owned()))
}

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

/// Parses one binary message from the bridge as an ack; a broken or hostile peer yields
/// `Error::Protocol`, never a panic.
pub fn decode_ack(msg: &[u8]) -> Result<Ack, Error> {
    Ack::decode(msg).map_err(|e| Error::Protocol(e.detail().to_owned()))
}

/// Parses the server's text `hello` (§3). Unknown fields are ignored, missing limits keep the
/// documented defaults.
pub fn decode_hello(text: &str) -> Result<Hello, Error> {
    Hello::from_json(text).map_err(|e| Error::Protocol(e.detail().to_owned()))
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
