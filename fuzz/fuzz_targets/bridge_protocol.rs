//! The bridge's WebSocket protocol (bridge/PROTOCOL.md), both directions: the first input byte
//! picks the message — `hello` and `auth` (JSON text), an ack (binary), or a batch (binary header,
//! then the FlowFiles decoded by the bridge's `codec::decode_all` as its WebSocket ingest does).
//! What decodes must survive encode/decode; a decoded batch payload must re-encode to itself.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use s2s_bridge::Limits;
use s2s_bridge_protocol::{Ack, Auth, BATCH_HEADER_LEN, BatchHeader, Hello, encode_batch};

fuzz_target!(|input: &[u8]| {
    let Some((&which, data)) = input.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(h) = Hello::from_json(&String::from_utf8_lossy(data)) {
                assert_eq!(Hello::from_json(&h.to_json()).ok(), Some(h));
            }
        }
        1 => {
            if let Some(a) = Auth::from_json(&String::from_utf8_lossy(data)) {
                assert_eq!(Auth::from_json(&a.to_json()), Some(a));
            }
        }
        2 => {
            if let Ok(a) = Ack::decode(data) {
                assert_eq!(Ack::decode(&a.encode()).ok(), Some(a));
            }
        }
        _ => {
            let msg = Bytes::copy_from_slice(data);
            let Some((h, payload)) = BatchHeader::parse(&msg) else {
                assert!(data.len() < BATCH_HEADER_LEN);
                return;
            };
            let limits = Limits {
                max_records: 1000,
                max_attributes: 64,
                max_attribute_bytes: 4096,
                max_content_bytes: 1 << 20,
                ..Limits::default()
            };
            if let Ok(ffs) =
                s2s_bridge::codec::decode_all(payload.clone(), h.count as usize, &limits)
            {
                assert_eq!(ffs.len(), h.count as usize);
                let re = encode_batch(h.id, &ffs).expect("a decoded batch re-encodes");
                assert_eq!(&re[BATCH_HEADER_LEN..], &payload[..]);
                let (h2, _) = BatchHeader::parse(&re).expect("header");
                assert_eq!((h2.id, h2.count), (h.id, h.count));
                assert_eq!(h2.crc, crc32fast::hash(&payload));
            }
        }
    }
});
