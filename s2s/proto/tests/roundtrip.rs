//! proptest round-trips of every codec type, fed to the decoders in random slices, plus
//! "arbitrary bytes never panic" checks.

use bytes::{BufMut, BytesMut};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use s2s_proto::codec::compression::{Compressor, DecompressStatus, Decompressor};
use s2s_proto::codec::flowfile::{self, FlowFileDecoder, Limits};
use s2s_proto::codec::handshake::{HandshakeRequest, ReceivedHandshake, RequestType};
use s2s_proto::codec::negotiation::{NegotiationReply, ResourceProposal};
use s2s_proto::codec::package_v3::{self, PackageV3Decoder};
use s2s_proto::codec::peers::{Peer, decode_peer_list, encode_peer_list};
use s2s_proto::codec::utf::{MAX_UTF_LEN, decode_utf, encode_utf, modified_utf8_len};
use s2s_proto::stream::FlowFileReader;
use s2s_proto::{FlowFile, Response, ResponseCode};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/roundtrip.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Feeds `wire` to `decode` in slices of the given sizes; returns every decoded item and
/// what was left in the buffer.
fn feed<T>(
    wire: &[u8],
    cuts: &[usize],
    mut decode: impl FnMut(&mut BytesMut) -> Option<T>,
) -> (Vec<T>, BytesMut) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    loop {
        while let Some(v) = decode(&mut buf) {
            out.push(v);
        }
        if rest.is_empty() {
            break;
        }
        let n = cuts
            .get(i)
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        buf.put_slice(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    (out, buf)
}

fn flowfile_strategy() -> impl Strategy<Value = FlowFile> {
    (
        prop::collection::vec((any::<String>(), any::<String>()), 0..8),
        prop::collection::vec(any::<u8>(), 0..3000),
    )
        .prop_map(|(attributes, content)| FlowFile {
            attributes,
            content: content.into(),
        })
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..200, 0..40)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn utf(s in any::<String>(), cuts in cuts()) {
        let mut wire = BytesMut::new();
        encode_utf(&s, &mut wire).unwrap();
        prop_assert_eq!(wire.len(), 2 + modified_utf8_len(&s));
        // Modified UTF-8 never contains a NUL byte or a 4-byte lead.
        prop_assert!(!wire[2..].iter().any(|b| *b == 0 || *b >= 0xF0));
        let (got, rest) = feed(&wire, &cuts, |b| decode_utf(b).unwrap());
        prop_assert_eq!(got, vec![s]);
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn utf_long_strings(n in 60_000usize..70_000, c in prop::sample::select(vec!['a', 'é', '€', '😀', '\0'])) {
        let s: String = std::iter::repeat_n(c, n / c.len_utf8().max(1)).collect();
        let mut wire = BytesMut::new();
        match encode_utf(&s, &mut wire) {
            Ok(()) => prop_assert_eq!(decode_utf(&mut wire).unwrap(), Some(s)),
            Err(_) => {
                prop_assert!(modified_utf8_len(&s) > MAX_UTF_LEN);
                prop_assert!(wire.is_empty());
            }
        }
    }

    #[test]
    fn response(code in prop::sample::select(ResponseCode::all().collect::<Vec<_>>()),
                msg in any::<String>(), cuts in cuts()) {
        let r = if code.carries_message() {
            Response::with_message(code, msg)
        } else {
            Response::new(code)
        };
        let mut wire = BytesMut::new();
        r.encode(&mut wire).unwrap();
        let (got, rest) = feed(&wire, &cuts, |b| Response::decode(b).unwrap());
        prop_assert_eq!(got, vec![r]);
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn negotiation(name in any::<String>(), version in any::<i32>(), kind in 0u8..3) {
        let p = ResourceProposal::new(name, version);
        let mut wire = BytesMut::new();
        p.encode(&mut wire).unwrap();
        prop_assert_eq!(ResourceProposal::decode(&mut wire).unwrap(), Some(p));
        let reply = match kind {
            0 => NegotiationReply::Ok,
            1 => NegotiationReply::DifferentVersion(version),
            _ => NegotiationReply::Abort,
        };
        reply.encode(&mut wire);
        prop_assert_eq!(NegotiationReply::decode(&mut wire).unwrap(), Some(reply));
        prop_assert!(wire.is_empty());
    }

    #[test]
    fn handshake(comms in any::<String>(), uri in any::<String>(), port in prop::option::of(any::<String>()),
                 gzip in any::<bool>(), exp in 0u64..=i64::MAX as u64, count in 0u32..=i32::MAX as u32,
                 size in 0u64..1_000_000, dur in 0u64..1_000_000, version in 1i32..=6, cuts in cuts()) {
        let h = HandshakeRequest {
            comms_id: comms, transit_uri_prefix: uri, gzip, port_id: port,
            request_expiration_millis: exp, batch_count: count, batch_size: size,
            batch_duration_millis: dur,
        };
        let mut wire = BytesMut::new();
        h.encode(version, &mut wire).unwrap();
        let (got, rest) = feed(&wire, &cuts, |b| ReceivedHandshake::decode(b, version).unwrap());
        prop_assert!(rest.is_empty());
        let got = &got[0];
        prop_assert_eq!(&got.comms_id, &h.comms_id);
        prop_assert_eq!(got.transit_uri_prefix.as_ref(), (version >= 3).then_some(&h.transit_uri_prefix));
        let want: Vec<(String, String)> = h.properties(version).into_iter()
            .map(|(p, v)| (p.as_str().to_owned(), v)).collect();
        prop_assert_eq!(&got.properties, &want);
    }

    #[test]
    fn request_types(t in prop::sample::select(vec![
        RequestType::NegotiateFlowFileCodec, RequestType::RequestPeerList,
        RequestType::SendFlowFiles, RequestType::ReceiveFlowFiles, RequestType::Shutdown])) {
        let mut wire = BytesMut::new();
        t.encode(&mut wire);
        prop_assert_eq!(RequestType::decode(&mut wire).unwrap(), Some(t));
    }

    #[test]
    fn peers(peers in prop::collection::vec(
                (any::<String>(), any::<u16>(), any::<bool>(), 0u32..=i32::MAX as u32)
                    .prop_map(|(hostname, port, secure, flow_file_count)| Peer { hostname, port, secure, flow_file_count }),
                0..6),
             cuts in cuts()) {
        let mut wire = BytesMut::new();
        encode_peer_list(&peers, &mut wire).unwrap();
        let (got, rest) = feed(&wire, &cuts, |b| decode_peer_list(b, 100).unwrap());
        prop_assert_eq!(got, vec![peers]);
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn flowfiles(ffs in prop::collection::vec(flowfile_strategy(), 1..4), cuts in cuts()) {
        let mut wire = BytesMut::new();
        for f in &ffs {
            let before = wire.len();
            flowfile::encode(f, &mut wire);
            prop_assert_eq!(wire.len() - before, flowfile::encoded_len(f));
        }
        let mut d = FlowFileDecoder::default();
        let (got, rest) = feed(&wire, &cuts, |b| d.decode(b).unwrap());
        prop_assert_eq!(got, ffs);
        prop_assert!(rest.is_empty() && d.is_idle());
    }

    #[test]
    fn compression(data in prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, b'a', 255]), 1..200_000),
                   writes in prop::collection::vec(1usize..70_000, 1..8), cuts in prop::collection::vec(1usize..20_000, 0..40)) {
        let mut wire = BytesMut::new();
        let mut c = Compressor::new();
        let mut rest = &data[..];
        for w in writes.iter().cycle() {
            if rest.is_empty() { break; }
            let n = (*w).min(rest.len());
            c.write(&rest[..n], &mut wire);
            rest = &rest[n..];
        }
        c.finish(&mut wire);
        let mut d = Decompressor::default();
        let mut plain = BytesMut::new();
        let mut finished = false;
        let (_, left) = feed(&wire, &cuts, |b| {
            if !finished && d.decode(b, &mut plain).unwrap() == DecompressStatus::Finished {
                finished = true;
            }
            None::<()>
        });
        prop_assert!(finished);
        prop_assert!(left.is_empty());
        prop_assert_eq!(&plain[..], &data[..]);
    }

    #[test]
    fn compressed_flowfiles(ffs in prop::collection::vec(flowfile_strategy(), 1..4), cuts in cuts()) {
        let mut wire = BytesMut::new();
        for f in &ffs {
            let mut plain = BytesMut::new();
            flowfile::encode(f, &mut plain);
            s2s_proto::codec::compression::compress(&plain, &mut wire);
            // In a transaction, a marker follows each envelope.
            ResponseCode::CONTINUE_TRANSACTION.encode(&mut wire);
        }
        let mut d = FlowFileReader::new(true, Limits::default());
        // Alternate like a transaction reader: envelope, then its marker.
        let mut pending: Option<FlowFile> = None;
        let (got, rest) = feed(&wire, &cuts, |b| {
            if pending.is_none() {
                pending = Some(d.next_flowfile(b).unwrap()?);
            }
            let marker = Response::decode(b).unwrap()?;
            assert_eq!(marker.code, ResponseCode::CONTINUE_TRANSACTION);
            pending.take()
        });
        prop_assert!(rest.is_empty());
        prop_assert_eq!(got, ffs);
    }

    #[test]
    fn package_v3(ffs in prop::collection::vec(flowfile_strategy(), 1..4), long in prop::option::of(65_530usize..65_540), cuts in cuts()) {
        let mut ffs = ffs;
        if let Some(n) = long {
            ffs[0].attributes.push(("long".into(), "x".repeat(n)));
        }
        let mut wire = BytesMut::new();
        for f in &ffs {
            package_v3::encode(f, &mut wire);
        }
        let mut d = PackageV3Decoder::default();
        let (got, mut rest) = feed(&wire, &cuts, |b| d.decode(b).unwrap());
        prop_assert_eq!(d.decode_eof(&mut rest).unwrap(), None);
        prop_assert_eq!(got, ffs);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let b = || BytesMut::from(&bytes[..]);
        let _ = decode_utf(&mut b());
        let _ = Response::decode(&mut b());
        let _ = NegotiationReply::decode(&mut b());
        let _ = ResourceProposal::decode(&mut b());
        let _ = RequestType::decode(&mut b());
        let _ = ReceivedHandshake::decode(&mut b(), 6);
        let _ = decode_peer_list(&mut b(), 100);
        let _ = FlowFileDecoder::default().decode_eof(&mut b());
        let _ = PackageV3Decoder::default().decode_eof(&mut b());
        let _ = FlowFileReader::new(true, Limits::default()).next_flowfile(&mut b());
        let _ = FlowFileReader::new(false, Limits::default()).next_part(&mut b());
        let _ = Decompressor::default().decode(&mut b(), &mut BytesMut::new());
    }
}
