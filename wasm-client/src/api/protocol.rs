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
    limits
        .check_batch(flowfiles)
        .map_err(|e| Error::Limit(e.to_string()))?;
    let size = BATCH_HEADER_LEN + flowfiles.iter().map(encoded_len).sum::<usize>();
    if size > limits.max_message_bytes {
        return Err(Error::Limit(format!(
            "batch of {size} bytes exceeds max_message_bytes = {}",
            limits.max_message_bytes
        )));
    }
    s2s_bridge_protocol::encode_batch(batch_id, flowfiles)
        .map_err(|e| Error::Limit(e.detail().to_owned()))
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
    //! The wire format itself is tested in `s2s-bridge-protocol`; these cover what this module
    //! adds: limit checks before sending and the mapping onto this crate's errors.
    use bytes::Bytes;

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
    fn batch_within_limits_is_the_worked_example() {
        let msg = encode_batch(1, &[tv4()], &Limits::default()).unwrap();
        assert_eq!(msg.len(), 74);
        assert_eq!(&msg[..2], &[0x01, 0x00]);
        assert_eq!(&msg[14..18], &[0xf1, 0x2b, 0x6b, 0x3a]);
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
    fn broken_messages_are_protocol_errors() {
        assert!(matches!(decode_ack(&[0x81; 17]), Err(Error::Protocol(_))));
        assert!(matches!(decode_hello("not json"), Err(Error::Protocol(_))));
        let ok = [0x81, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode_ack(&ok).unwrap().status, AckStatus::Committed);
        assert_eq!(reason_name(REASON_BAD_CRC), "BAD_CRC");
    }
}
