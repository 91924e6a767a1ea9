//! The WebSocket bridge protocol, version 1 (`bridge/PROTOCOL.md`).
//!
//! The wire format lives in the `s2s-bridge-protocol` crate, shared with the wasm client and Rust
//! clients, and is re-exported here; this module only maps the bridge's [`Outcome`]s onto acks.

pub use s2s_bridge_protocol::{
    ACK_HEADER_LEN, Ack, AckStatus, Auth, BATCH_HEADER_LEN, BatchHeader, Hello, Limits,
    MAX_ACK_MESSAGE, ProtocolError, SUBPROTOCOL_V1, TYPE_ACK, TYPE_BATCH, close, encode_batch,
    encoded_len, reason,
};

use crate::record::Outcome;

/// The ack telling the client the `outcome` of its batch `id`.
pub fn ack_for(id: u64, outcome: &Outcome) -> Ack {
    match outcome {
        Outcome::Committed => Ack {
            status: AckStatus::Committed,
            batch_id: id,
            reason: reason::OK,
            retry_after_ms: 0,
            message: String::new(),
        },
        Outcome::Retry {
            after,
            reason,
            message,
        } => Ack {
            status: AckStatus::Retry,
            batch_id: id,
            reason: reason.code(),
            retry_after_ms: u32::try_from(after.as_millis()).unwrap_or(u32::MAX),
            message: message.clone(),
        },
        Outcome::Rejected { reason, message } => Ack {
            status: AckStatus::Rejected,
            batch_id: id,
            reason: reason.code(),
            retry_after_ms: 0,
            message: message.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::record::Reason;

    #[test]
    fn outcomes_map_to_the_worked_example_acks() {
        let ok = ack_for(1, &Outcome::Committed).encode();
        assert_eq!(
            &ok[..],
            &[0x81, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let retry = ack_for(
            1,
            &Outcome::retry(
                Duration::from_millis(1000),
                Reason::Backpressure,
                "destination full",
            ),
        );
        let back = Ack::decode(&retry.encode()).expect("decodes");
        assert_eq!(back.status, AckStatus::Retry);
        assert_eq!(Reason::from_code(back.reason), Some(Reason::Backpressure));
        assert_eq!(back.retry_after_ms, 1000);
        let rejected = ack_for(2, &Outcome::rejected(Reason::Limit, "too big"));
        assert_eq!(
            (rejected.status, rejected.reason, rejected.batch_id),
            (AckStatus::Rejected, reason::LIMIT, 2)
        );
    }

    #[test]
    fn reason_codes_round_trip() {
        for code in 0..=10 {
            let r = Reason::from_code(code).expect("known code");
            assert_eq!(r.code(), code);
            assert_eq!(r.name(), reason::name(code));
        }
        assert_eq!(Reason::from_code(11), None);
    }
}
