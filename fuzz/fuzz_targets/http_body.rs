//! What the HTTP Site-to-Site client parses out of NiFi's answers (`s2s_proto::http`): the TTL
//! header, the CRC body of `POST …/flow-files`, and the classification of error answers. Parsed
//! values must stay in their documented bounds; nothing may panic on any text.
//! (The `flow-files` bodies themselves are the FlowFile stream: see `stream_reader`.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use s2s_proto::http::{self, Failure};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(ttl) = http::parse_ttl(&text) {
        assert!((1..=86_400).contains(&ttl));
        let ka = http::keep_alive_interval_millis(ttl);
        assert!((500..=ttl * 1000).contains(&ka));
    }
    if let Some(crc) = http::parse_checksum(&text) {
        assert_eq!(http::parse_checksum(&crc.to_string()), Some(crc));
    }
    if data.len() >= 3 {
        let status = u16::from_be_bytes([data[0], data[1]]);
        let code = (data[2] & 1 == 1).then_some(data[2] >> 1);
        let body = String::from_utf8_lossy(&data[3..]);
        let f = http::classify(status, code, &body);
        // The status alone decides for the fatal request errors.
        match status {
            400 => assert_eq!(f, Failure::BadRequest),
            401 => assert_eq!(f, Failure::Unauthorized),
            415 => assert_eq!(f, Failure::UnsupportedEncoding),
            200..=299 => assert!(f.is_retryable(), "{status} classified as {f:?}"),
            _ => {}
        }
    }
});
