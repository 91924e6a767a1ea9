//! Response-code frames, modified UTF-8 strings, negotiation replies, request types and
//! handshakes. Decoded values must re-encode to the consumed bytes where the encoding is
//! canonical.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use s2s_proto::Response;
use s2s_proto::codec::handshake::{ReceivedHandshake, RequestType};
use s2s_proto::codec::negotiation::{NegotiationReply, ResourceProposal};
use s2s_proto::codec::utf::{decode_utf, encode_utf};

fuzz_target!(|data: &[u8]| {
    let mut b = BytesMut::from(data);
    if let Ok(Some(r)) = Response::decode(&mut b) {
        let mut re = BytesMut::new();
        r.encode(&mut re).expect("a decoded frame re-encodes");
        assert_eq!(&re[..3], &data[..3]);
    }

    let mut b = BytesMut::from(data);
    if let Ok(Some(s)) = decode_utf(&mut b) {
        // Decoding is lenient (raw NUL, lone surrogates), so only decode(encode(s)) == s holds.
        let mut re = BytesMut::new();
        if encode_utf(&s, &mut re).is_ok() {
            assert_eq!(decode_utf(&mut re), Ok(Some(s)));
        }
    }

    let _ = NegotiationReply::decode(&mut BytesMut::from(data));
    let _ = ResourceProposal::decode(&mut BytesMut::from(data));
    let _ = RequestType::decode(&mut BytesMut::from(data));
    for v in [2, 6] {
        let _ = ReceivedHandshake::decode(&mut BytesMut::from(data), v);
    }
});
