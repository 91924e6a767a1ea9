//! `REQUEST_PEER_LIST` reply decoder; a decoded list must survive encode/decode.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use s2s_proto::codec::peers::{decode_peer_list, encode_peer_list};

fuzz_target!(|data: &[u8]| {
    let mut b = BytesMut::from(data);
    if let Ok(Some(peers)) = decode_peer_list(&mut b, 1000) {
        let mut re = BytesMut::new();
        encode_peer_list(&peers, &mut re).expect("decoded peers re-encode");
        assert_eq!(decode_peer_list(&mut re, 1000), Ok(Some(peers)));
    }
});
