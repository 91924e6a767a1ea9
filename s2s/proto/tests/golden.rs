//! Golden vectors of docs/site-to-site.md §14 (`testdata/*.bin`) and their invalid variants.

use bytes::{BufMut, BytesMut};
use s2s_proto::codec::checksum::TransactionChecksum;
use s2s_proto::codec::compression::{DecompressStatus, Decompressor, compress};
use s2s_proto::codec::flowfile::{self, FlowFileDecoder, Limits};
use s2s_proto::codec::handshake::{
    HandshakeProperty, HandshakeRequest, ReceivedHandshake, RequestType, encode_codec_negotiation,
};
use s2s_proto::codec::negotiation::{
    NegotiationReply, RAW_PROTOCOL_NAME, ResourceProposal, decode_magic, encode_magic,
};
use s2s_proto::codec::package_v3::{self, PackageV3Decoder};
use s2s_proto::codec::peers::{DEFAULT_MAX_PEERS, Peer, decode_peer_list, encode_peer_list};
use s2s_proto::codec::utf::{decode_utf, encode_utf};
use s2s_proto::stream::FlowFileReader;
use s2s_proto::{DecodeError, FlowFile, Response, ResponseCode};

macro_rules! vector {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/", $name)).as_slice()
    };
}

const COMMS: &str = "3e1c8a10-2b5d-4c1e-9f00-0123456789ab";
const PORT: &str = "c56a4180-65aa-42ec-a945-5fd21dec0538";

fn f1() -> FlowFile {
    FlowFile::new(&b"hello"[..])
        .with_attribute("filename", "hello.txt")
        .with_attribute("path", "./")
}

fn f2() -> FlowFile {
    FlowFile::new(&b"world!"[..]).with_attribute("filename", "b.txt")
}

fn buf(b: &[u8]) -> BytesMut {
    BytesMut::from(b)
}

#[test]
fn tv1_magic_and_proposal() {
    let mut out = BytesMut::new();
    encode_magic(&mut out);
    ResourceProposal::new(RAW_PROTOCOL_NAME, 6)
        .encode(&mut out)
        .unwrap();
    assert_eq!(&out[..], vector!("tv1-magic-proposal-v6.bin"));

    let mut b = buf(vector!("tv1-magic-proposal-v6.bin"));
    decode_magic(&mut b).unwrap().unwrap();
    let p = ResourceProposal::decode(&mut b).unwrap().unwrap();
    assert_eq!((p.name.as_str(), p.version), (RAW_PROTOCOL_NAME, 6));
    assert!(b.is_empty());
}

#[test]
fn tv2_handshake() {
    let mut h = HandshakeRequest::new(COMMS, "nifi://nifi1:10443", Some(PORT.into()));
    h.batch_count = 5;
    let mut out = BytesMut::new();
    h.encode(6, &mut out).unwrap();
    assert_eq!(&out[..], vector!("tv2-handshake-v6.bin"));

    let got = ReceivedHandshake::decode(&mut buf(vector!("tv2-handshake-v6.bin")), 6)
        .unwrap()
        .unwrap();
    assert_eq!(got.comms_id, COMMS);
    assert_eq!(got.property(HandshakeProperty::Gzip), Some("false"));
    assert_eq!(
        got.property(HandshakeProperty::RequestExpirationMillis),
        Some("30000")
    );
    // Reply: PROPERTIES_OK.
    assert_eq!(
        Response::decode(&mut buf(b"RC\x01")).unwrap().unwrap().code,
        ResponseCode::PROPERTIES_OK
    );
}

#[test]
fn tv3_codec_negotiation() {
    let mut out = BytesMut::new();
    encode_codec_negotiation(&mut out);
    assert_eq!(&out[..], vector!("tv3-codec-negotiation.bin"));
    let mut b = buf(vector!("tv3-codec-negotiation.bin"));
    assert_eq!(
        RequestType::decode(&mut b).unwrap(),
        Some(RequestType::NegotiateFlowFileCodec)
    );
    assert_eq!(
        ResourceProposal::decode(&mut b).unwrap(),
        Some(ResourceProposal::new("StandardFlowFileCodec", 1))
    );
    assert_eq!(
        NegotiationReply::decode(&mut buf(&[0x14])).unwrap(),
        Some(NegotiationReply::Ok)
    );
}

#[test]
fn tv4_flowfile_and_crc() {
    let mut out = BytesMut::new();
    flowfile::encode(&f1(), &mut out);
    assert_eq!(&out[..], vector!("tv4-flowfile-f1.bin"));
    assert_eq!(crc32fast_of(vector!("tv4-flowfile-f1.bin")), 4_046_154_554);
    let got = FlowFileDecoder::default()
        .decode(&mut buf(vector!("tv4-flowfile-f1.bin")))
        .unwrap();
    assert_eq!(got, Some(f1()));
}

fn crc32fast_of(b: &[u8]) -> u32 {
    let mut c = TransactionChecksum::new();
    c.update(b);
    c.value()
}

/// TV5: the client half of a one-FlowFile SEND, from the building blocks.
#[test]
fn tv5_send_building_blocks() {
    let mut out = BytesMut::new();
    RequestType::SendFlowFiles.encode(&mut out);
    flowfile::encode(&f1(), &mut out);
    ResponseCode::FINISH_TRANSACTION.encode(&mut out);
    assert_eq!(&out[..], vector!("tv5-send-client.bin"));

    let mut crc = TransactionChecksum::new();
    f1().add_to_checksum(&mut crc);
    let confirm = Response::with_message(ResponseCode::CONFIRM_TRANSACTION, crc.to_decimal());
    let mut server = BytesMut::new();
    confirm.encode(&mut server).unwrap();
    assert_eq!(&server[..], b"RC\x0c\x00\x0a4046154554");
    let mut echo = BytesMut::new();
    Response::new(ResponseCode::CONFIRM_TRANSACTION)
        .encode(&mut echo)
        .unwrap();
    assert_eq!(&echo[..], b"RC\x0c\x00\x00");
}

/// TV6: two FlowFiles, CONTINUE between them, CRC over both without markers.
#[test]
fn tv6_two_flowfiles() {
    let mut out = BytesMut::new();
    flowfile::encode(&f2(), &mut out);
    assert_eq!(&out[..], vector!("tv6-flowfile-f2.bin"));

    let mut stream = BytesMut::new();
    RequestType::SendFlowFiles.encode(&mut stream);
    flowfile::encode(&f1(), &mut stream);
    ResponseCode::CONTINUE_TRANSACTION.encode(&mut stream);
    flowfile::encode(&f2(), &mut stream);
    ResponseCode::FINISH_TRANSACTION.encode(&mut stream);
    assert_eq!(stream.len(), 117);

    let mut crc = TransactionChecksum::new();
    f1().add_to_checksum(&mut crc);
    f2().add_to_checksum(&mut crc);
    assert_eq!(crc.to_decimal(), "464261154");
}

/// TV7: parse the server half of a RECEIVE with the building blocks.
#[test]
fn tv7_receive_parse() {
    let mut b = buf(vector!("tv7-receive-server.bin"));
    assert_eq!(
        Response::decode(&mut b).unwrap().unwrap().code,
        ResponseCode::MORE_DATA
    );
    let ff = FlowFileDecoder::default().decode(&mut b).unwrap().unwrap();
    assert_eq!(ff, f1());
    assert_eq!(
        Response::decode(&mut b).unwrap().unwrap().code,
        ResponseCode::FINISH_TRANSACTION
    );
    assert!(b.is_empty());
    let mut crc = TransactionChecksum::new();
    ff.add_to_checksum(&mut crc);
    assert_eq!(crc.to_decimal(), "4046154554");
    assert_eq!(
        Response::decode(&mut buf(b"RC\x15")).unwrap().unwrap().code,
        ResponseCode::NO_MORE_DATA
    );
}

#[test]
fn tv8_peer_list() {
    let peers = vec![
        Peer {
            hostname: "nifi1".into(),
            port: 10443,
            secure: true,
            flow_file_count: 120,
        },
        Peer {
            hostname: "nifi2".into(),
            port: 10443,
            secure: true,
            flow_file_count: 0,
        },
    ];
    assert_eq!(
        decode_peer_list(&mut buf(vector!("tv8-peer-list.bin")), DEFAULT_MAX_PEERS).unwrap(),
        Some(peers.clone())
    );
    let mut out = BytesMut::new();
    encode_peer_list(&peers, &mut out).unwrap();
    assert_eq!(&out[..], vector!("tv8-peer-list.bin"));
}

#[test]
fn tv9_gzip_envelope() {
    let mut dst = BytesMut::new();
    let mut src = buf(vector!("tv9-flowfile-f1-gzip.bin"));
    assert_eq!(
        Decompressor::default().decode(&mut src, &mut dst).unwrap(),
        DecompressStatus::Finished
    );
    assert_eq!(&dst[..], vector!("tv4-flowfile-f1.bin"));
    assert_eq!(crc32fast_of(&dst), 4_046_154_554);
    assert_eq!(
        FlowFileReader::new(true, Limits::default())
            .next_flowfile(&mut buf(vector!("tv9-flowfile-f1-gzip.bin")))
            .unwrap(),
        Some(f1())
    );
    // Our compressed bytes may differ from Java's; they must decompress to TV4.
    let mut ours = BytesMut::new();
    compress(vector!("tv4-flowfile-f1.bin"), &mut ours);
    assert_eq!(
        FlowFileReader::new(true, Limits::default())
            .next_flowfile(&mut ours)
            .unwrap(),
        Some(f1())
    );
}

#[test]
fn tv10_package_v3() {
    let mut out = BytesMut::new();
    package_v3::encode(&f1(), &mut out);
    assert_eq!(&out[..], vector!("tv10-package-v3-f1.bin"));
    let mut body = buf(vector!("tv10-package-v3-f1.bin"));
    body.put_slice(vector!("tv10-package-v3-f1.bin"));
    let mut d = PackageV3Decoder::default();
    assert_eq!(d.decode(&mut body).unwrap(), Some(f1()));
    assert_eq!(d.decode(&mut body).unwrap(), Some(f1()));
    assert_eq!(d.decode_eof(&mut body).unwrap(), None);
}

#[test]
fn tv11_modified_utf8() {
    let s = "a\u{0}\u{1F600}é";
    let mut out = BytesMut::new();
    encode_utf(s, &mut out).unwrap();
    assert_eq!(&out[..], vector!("tv11-modified-utf8.bin"));
    assert_eq!(
        decode_utf(&mut buf(vector!("tv11-modified-utf8.bin"))).unwrap(),
        Some(s.to_owned())
    );
}

#[test]
fn invalid_response_codes() {
    assert_eq!(
        Response::decode(&mut buf(vector!("invalid-rc-prefix.bin"))),
        Err(DecodeError::MissingResponsePrefix { found: *b"RX" })
    );
    assert_eq!(
        Response::decode(&mut buf(vector!("invalid-rc-unknown-code.bin"))),
        Err(DecodeError::UnknownResponseCode(ResponseCode(0x42)))
    );
    assert_eq!(
        Response::decode(&mut buf(vector!("invalid-rc-bad-utf.bin"))),
        Err(DecodeError::InvalidModifiedUtf8 { offset: 0 })
    );
    assert_eq!(
        NegotiationReply::decode(&mut buf(vector!("invalid-negotiation-status.bin"))),
        Err(DecodeError::UnknownNegotiationStatus(0x16))
    );
    assert_eq!(
        decode_magic(&mut buf(b"NIFI")).unwrap_err(),
        DecodeError::BadMagic {
            expected: b"NiFi",
            found: b"NIFI".to_vec()
        }
    );
}

#[test]
fn invalid_utf() {
    assert_eq!(
        decode_utf(&mut buf(vector!("invalid-utf-four-byte.bin"))),
        Err(DecodeError::InvalidModifiedUtf8 { offset: 0 })
    );
    assert_eq!(
        decode_utf(&mut buf(vector!("invalid-utf-bad-continuation.bin"))),
        Err(DecodeError::InvalidModifiedUtf8 { offset: 1 })
    );
}

#[test]
fn invalid_flowfiles() {
    let dec = || FlowFileDecoder::default();
    let mut b = buf(vector!("invalid-flowfile-truncated.bin"));
    let mut d = dec();
    assert_eq!(d.decode(&mut b), Ok(None));
    assert!(matches!(
        d.decode_eof(&mut b),
        Err(DecodeError::Truncated { .. })
    ));
    assert_eq!(
        dec().decode(&mut buf(vector!("invalid-flowfile-attribute-count.bin"))),
        Err(DecodeError::LimitExceeded {
            field: "attribute count",
            len: 25_001,
            max: 25_000
        })
    );
    assert_eq!(
        dec().decode(&mut buf(vector!(
            "invalid-flowfile-negative-content-length.bin"
        ))),
        Err(DecodeError::Negative {
            field: "content length",
            value: -1
        })
    );
    assert!(matches!(
        dec().decode(&mut buf(vector!("invalid-flowfile-oversize-key.bin"))),
        Err(DecodeError::LimitExceeded {
            field: "attribute key",
            ..
        })
    ));
    assert_eq!(
        dec().decode(&mut buf(vector!("invalid-flowfile-bad-utf8.bin"))),
        Err(DecodeError::InvalidUtf8 {
            field: "attribute key"
        })
    );
}

#[test]
fn invalid_gzip() {
    let dec = || FlowFileReader::new(true, Limits::default());
    assert!(matches!(
        dec().next_flowfile(&mut buf(vector!("invalid-gzip-bad-sync.bin"))),
        Err(DecodeError::BadMagic { .. })
    ));
    assert!(matches!(
        dec().next_flowfile(&mut buf(vector!("invalid-gzip-oversize-chunk.bin"))),
        Err(DecodeError::LimitExceeded { .. })
    ));
    assert!(matches!(
        dec().next_flowfile(&mut buf(vector!("invalid-gzip-length-mismatch.bin"))),
        Err(DecodeError::ChunkLengthMismatch { .. })
    ));
    assert_eq!(
        dec().next_flowfile(&mut buf(vector!("invalid-gzip-bad-continuation.bin"))),
        Err(DecodeError::BadChunkContinuation(2))
    );
    assert_eq!(
        dec().next_flowfile(&mut buf(vector!("invalid-gzip-truncated.bin"))),
        Ok(None)
    );
}

#[test]
fn invalid_package_v3() {
    let dec = || PackageV3Decoder::default();
    assert!(matches!(
        dec().decode(&mut buf(vector!("invalid-package-v3-magic.bin"))),
        Err(DecodeError::BadMagic { .. })
    ));
    let mut d = dec();
    let mut b = buf(vector!("invalid-package-v3-truncated.bin"));
    assert_eq!(d.decode(&mut b), Ok(None));
    assert!(matches!(
        d.decode_eof(&mut b),
        Err(DecodeError::Truncated { .. })
    ));
    assert!(matches!(
        dec().decode(&mut buf(vector!("invalid-package-v3-negative-length.bin"))),
        Err(DecodeError::Negative { .. })
    ));
}

#[test]
fn invalid_peer_lists() {
    assert!(matches!(
        decode_peer_list(
            &mut buf(vector!("invalid-peer-list-negative-count.bin")),
            DEFAULT_MAX_PEERS
        ),
        Err(DecodeError::Negative { .. })
    ));
    assert!(matches!(
        decode_peer_list(
            &mut buf(vector!("invalid-peer-list-port.bin")),
            DEFAULT_MAX_PEERS
        ),
        Err(DecodeError::OutOfRange { .. })
    ));
    assert_eq!(
        decode_peer_list(
            &mut buf(vector!("invalid-peer-list-truncated.bin")),
            DEFAULT_MAX_PEERS
        ),
        Ok(None)
    );
}

// Vectors written by NiFi 1.28.1's own classes (testdata/java/GenVectors.java).

/// `GenVectors.multichunkPlain()`.
fn multichunk_plain() -> Vec<u8> {
    let mut out = vec![0u8; 90_000];
    let mut x: u32 = 1;
    for b in out.iter_mut().take(70_000) {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        *b = (x >> 16) as u8;
    }
    let text = b"NiFi site-to-site compressed chunk test line\n";
    for (i, b) in out.iter_mut().enumerate().skip(70_000) {
        *b = text[(i - 70_000) % text.len()];
    }
    out
}

#[test]
fn java_flowfile_codec_matches_byte_for_byte() {
    let f = FlowFile::new("content ✓".as_bytes().to_vec())
        .with_attribute("filename", "ünï.txt")
        .with_attribute("clé 😀", "valeur \0 𝄞 €")
        .with_attribute("empty", "");
    let mut out = BytesMut::new();
    flowfile::encode(&f, &mut out);
    assert_eq!(&out[..], vector!("java-flowfile-unicode.bin"));
    assert_eq!(
        FlowFileDecoder::default()
            .decode(&mut buf(vector!("java-flowfile-unicode.bin")))
            .unwrap(),
        Some(f)
    );
}

#[test]
fn java_multichunk_envelope_decodes() {
    let java = vector!("java-gzip-multichunk.bin");
    // NiFi's first chunk: 65536 incompressible bytes compress to more than 65536.
    let compressed_len = i32::from_be_bytes(java[8..12].try_into().unwrap());
    assert!(compressed_len > 65_536, "{compressed_len}");
    let mut src = buf(java);
    let mut dst = BytesMut::new();
    assert_eq!(
        Decompressor::default().decode(&mut src, &mut dst).unwrap(),
        DecompressStatus::Finished
    );
    assert!(src.is_empty());
    assert_eq!(&dst[..], &multichunk_plain()[..]);
    // Byte-by-byte feeding gives the same result.
    let mut d = Decompressor::default();
    let (mut src, mut dst) = (BytesMut::new(), BytesMut::new());
    let mut finished = false;
    for b in java {
        src.put_u8(*b);
        finished = d.decode(&mut src, &mut dst).unwrap() == DecompressStatus::Finished;
    }
    assert!(finished);
    assert_eq!(&dst[..], &multichunk_plain()[..]);
}

#[test]
fn java_package_v3_boundaries_match_byte_for_byte() {
    let a = FlowFile::new(&b"abc"[..])
        .with_attribute("filename", "a.txt")
        .with_attribute("long", "x".repeat(65_535));
    let b = FlowFile::new(&b""[..])
        .with_attribute("filename", "b 😀.txt")
        .with_attribute("k", "v".repeat(65_534));
    let mut out = BytesMut::new();
    package_v3::encode(&a, &mut out);
    package_v3::encode(&b, &mut out);
    assert_eq!(&out[..], vector!("java-package-v3-boundaries.bin"));
    let mut d = PackageV3Decoder::default();
    let mut body = buf(vector!("java-package-v3-boundaries.bin"));
    assert_eq!(d.decode(&mut body).unwrap(), Some(a));
    assert_eq!(d.decode(&mut body).unwrap(), Some(b));
    assert_eq!(d.decode_eof(&mut body).unwrap(), None);
}

#[test]
fn java_write_utf_matches() {
    let mut out = BytesMut::new();
    for s in ["a\0😀é", "\u{7F}\u{80}\u{7FF}\u{800}\u{FFFF}", ""] {
        encode_utf(s, &mut out).unwrap();
    }
    let java = vector!("java-writeutf.bin");
    assert_eq!(&java[..out.len()], &out[..]);
    let mut b = buf(java);
    for want in [
        "a\0😀é",
        "\u{7F}\u{80}\u{7FF}\u{800}\u{FFFF}",
        "",
        // Java can write a lone surrogate; it decodes to U+FFFD.
        "lone \u{FFFD} surrogate",
    ] {
        assert_eq!(decode_utf(&mut b).unwrap().as_deref(), Some(want));
    }
    assert!(b.is_empty());
}
