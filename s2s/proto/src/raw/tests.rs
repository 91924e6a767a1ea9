//! Golden-vector (docs/site-to-site.md §14 TV1, TV5–TV8) and fake-peer tests of the RAW client session.

use bytes::{Bytes, BytesMut};

use super::{ClientSession, Event, SessionConfig, SessionError};
use crate::codec::checksum::TransactionChecksum;
use crate::codec::flowfile::{self, FlowFile, FlowFileDecoder};
use crate::codec::handshake::{HandshakeProperty, ReceivedHandshake, RequestType};
use crate::codec::negotiation::{
    self, CODEC_NAME, NegotiationReply, ResourceProposal, decode_magic, server_reply,
};
use crate::codec::peers::{Peer, encode_peer_list};
use crate::codec::response_code::{Response, ResponseCode};
use crate::stream::StreamError;

const COMMS: &str = "3e1c8a10-2b5d-4c1e-9f00-0123456789ab";
const PORT: &str = "c56a4180-65aa-42ec-a945-5fd21dec0538";

fn f1() -> FlowFile {
    FlowFile::new(Bytes::from_static(b"hello"))
        .with_attribute("filename", "hello.txt")
        .with_attribute("path", "./")
}

fn f2() -> FlowFile {
    FlowFile::new(Bytes::from_static(b"world!")).with_attribute("filename", "b.txt")
}

fn config(port: Option<&str>) -> SessionConfig {
    let mut c = SessionConfig::new(COMMS, "nifi://nifi1:10443");
    c.port_id = port.map(str::to_owned);
    c
}

fn drain(s: &mut ClientSession) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = s.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

fn events(s: &mut ClientSession) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// The FlowFiles reassembled from the start/content/end events, checking their framing.
fn flowfiles_of(ev: &[Event]) -> Vec<FlowFile> {
    let mut out = Vec::new();
    let mut current: Option<(FlowFile, u64)> = None;
    for e in ev {
        match e {
            Event::FlowFileStart {
                attributes,
                content_len,
            } => {
                assert!(current.is_none(), "start inside a FlowFile: {ev:?}");
                let ff = FlowFile {
                    attributes: attributes.clone(),
                    content: Bytes::new(),
                };
                current = Some((ff, *content_len));
            }
            Event::FlowFileContent(c) => {
                let (ff, _) = current.as_mut().expect("content outside a FlowFile");
                assert!(!c.is_empty());
                ff.content = [&ff.content[..], &c[..]].concat().into();
            }
            Event::FlowFileEnd => {
                let (ff, len) = current.take().expect("end outside a FlowFile");
                assert_eq!(ff.content.len() as u64, len);
                out.push(ff);
            }
            _ => {}
        }
    }
    assert!(current.is_none(), "unfinished FlowFile: {ev:?}");
    out
}

fn feed(s: &mut ClientSession, bytes: &[u8]) -> Result<(), SessionError> {
    let mut b = BytesMut::from(bytes);
    let r = s.handle_input(&mut b);
    if r.is_ok() {
        assert!(b.is_empty(), "session left {} bytes unconsumed", b.len());
    }
    r
}

/// A session that went through negotiation, handshake and codec negotiation.
fn ready(port: Option<&str>) -> ClientSession {
    ready_cfg(config(port))
}

fn ready_cfg(cfg: SessionConfig) -> ClientSession {
    let port = cfg.port_id.clone();
    let mut s = ClientSession::new(cfg).unwrap();
    drain(&mut s);
    feed(&mut s, &[0x14]).unwrap();
    feed(&mut s, b"RC\x01").unwrap();
    if port.is_some() {
        drain(&mut s);
        feed(&mut s, &[0x14]).unwrap();
    }
    drain(&mut s);
    let ev = events(&mut s);
    assert!(
        matches!(
            ev[..],
            [Event::Ready {
                protocol_version: 6
            }]
        ),
        "{ev:?}"
    );
    assert!(s.is_idle());
    s
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

const TV4: &str = "00 00 00 02 00 00 00 08 66 69 6c 65 6e 61 6d 65 00 00 00 09 68 65 6c 6c 6f 2e 74 78 74 00 00 00 \
                   04 70 61 74 68 00 00 00 02 2e 2f 00 00 00 00 00 00 00 05 68 65 6c 6c 6f";
const SEND_FLOWFILES: &str = "00 0e 53 45 4e 44 5f 46 4c 4f 57 46 49 4c 45 53";

#[test]
fn tv1_negotiation_with_step_down() {
    let mut s = ClientSession::new(config(Some(PORT))).unwrap();
    assert_eq!(
        drain(&mut s),
        b"NiFi\x00\x16SocketFlowFileProtocol\x00\x00\x00\x06"
    );
    // NiFi prefers 5: re-propose 5 without the magic.
    feed(&mut s, &hex("15 00 00 00 05")).unwrap();
    assert_eq!(
        drain(&mut s),
        b"\x00\x16SocketFlowFileProtocol\x00\x00\x00\x05"
    );
    feed(&mut s, &[0x14]).unwrap();
    assert_eq!(s.protocol_version(), 5);
    let hs = drain(&mut s);
    let mut b = BytesMut::from(&hs[..]);
    let got = ReceivedHandshake::decode(&mut b, 5).unwrap().unwrap();
    assert_eq!(got.comms_id, COMMS);
    assert_eq!(
        got.transit_uri_prefix.as_deref(),
        Some("nifi://nifi1:10443")
    );
    assert_eq!(got.property(HandshakeProperty::PortIdentifier), Some(PORT));
    assert_eq!(got.property(HandshakeProperty::Gzip), Some("false"));
    feed(&mut s, b"RC\x01").unwrap();
    // TV3: codec negotiation.
    let mut b = BytesMut::from(&drain(&mut s)[..]);
    assert_eq!(
        RequestType::decode(&mut b).unwrap(),
        Some(RequestType::NegotiateFlowFileCodec)
    );
    let p = ResourceProposal::decode(&mut b).unwrap().unwrap();
    assert_eq!((p.name.as_str(), p.version), (CODEC_NAME, 1));
    feed(&mut s, &[0x14]).unwrap();
    assert!(matches!(
        events(&mut s)[..],
        [Event::Ready {
            protocol_version: 5
        }]
    ));
}

#[test]
fn negotiation_step_down_to_a_version_below_ours_only() {
    // A peer answering 0x15 with a version >= ours cannot make us loop.
    let mut s = ClientSession::new(config(Some(PORT))).unwrap();
    drain(&mut s);
    let e = feed(&mut s, &hex("15 00 00 00 07")).unwrap_err();
    assert!(
        matches!(e, SessionError::NoCommonVersion { offered: 7 }),
        "{e}"
    );
    let mut c = config(Some(PORT));
    c.protocol_versions = vec![6, 5];
    let mut s = ClientSession::new(c).unwrap();
    drain(&mut s);
    let e = feed(&mut s, &hex("15 00 00 00 04")).unwrap_err();
    assert!(matches!(e, SessionError::NoCommonVersion { offered: 4 }));
    assert!(s.is_closed());
}

#[test]
fn negotiation_abort_fails_without_waiting_for_a_message() {
    let mut s = ClientSession::new(config(Some(PORT))).unwrap();
    drain(&mut s);
    assert_eq!(feed(&mut s, &[0xFF]), Err(SessionError::NegotiationAborted));
    let mut s = ClientSession::new(config(Some(PORT))).unwrap();
    drain(&mut s);
    assert!(matches!(
        feed(&mut s, &[0x42]),
        Err(SessionError::Decode(_))
    ));
}

#[test]
fn handshake_refusals_are_typed() {
    for (bytes, code, msg) in [
        (&b"RC\xc8"[..], ResponseCode::UNKNOWN_PORT, None),
        (
            &b"RC\xc9\x00\x10Port not running"[..],
            ResponseCode::PORT_NOT_IN_VALID_STATE,
            Some("Port not running"),
        ),
        (&b"RC\xca"[..], ResponseCode::PORTS_DESTINATION_FULL, None),
        (
            &b"RC\xf0\x00\x03bad"[..],
            ResponseCode::UNAUTHORIZED,
            Some("bad"),
        ),
        (
            &b"RC\xe8\x00\x15Missing Property GZIP"[..],
            ResponseCode::MISSING_PROPERTY,
            Some("Missing Property GZIP"),
        ),
    ] {
        let mut s = ClientSession::new(config(Some(PORT))).unwrap();
        drain(&mut s);
        feed(&mut s, &[0x14]).unwrap();
        drain(&mut s);
        let e = feed(&mut s, bytes).unwrap_err();
        assert_eq!(
            e,
            SessionError::Refused {
                code,
                message: msg.map(str::to_owned)
            }
        );
        assert!(s.is_closed());
    }
}

#[test]
fn handshake_reply_without_rc_prefix_is_a_decode_error() {
    let mut s = ClientSession::new(config(Some(PORT))).unwrap();
    drain(&mut s);
    feed(&mut s, &[0x14]).unwrap();
    assert!(matches!(
        feed(&mut s, b"XY\x01"),
        Err(SessionError::Decode(_))
    ));
    let mut s = ClientSession::new(config(Some(PORT))).unwrap();
    drain(&mut s);
    feed(&mut s, &[0x14]).unwrap();
    assert!(matches!(
        feed(&mut s, b"RC\x63"),
        Err(SessionError::Decode(_))
    ));
}

#[test]
fn codec_rejection_is_an_error() {
    let mut s = ClientSession::new(config(Some(PORT))).unwrap();
    drain(&mut s);
    feed(&mut s, &[0x14]).unwrap();
    feed(&mut s, b"RC\x01").unwrap();
    drain(&mut s);
    assert!(matches!(
        feed(&mut s, &[0xFF]),
        Err(SessionError::CodecRejected(_))
    ));
}

#[test]
fn tv5_one_flowfile_send() {
    let mut s = ready(Some(PORT));
    s.send_flowfile(&f1()).unwrap();
    s.finish_send().unwrap();
    let mut want = hex(SEND_FLOWFILES);
    want.extend(hex(TV4));
    want.extend(b"RC\x0b");
    assert_eq!(drain(&mut s), want);
    assert_eq!(want.len(), 75);
    feed(&mut s, &hex("52 43 0c 00 0a 34 30 34 36 31 35 34 35 35 34")).unwrap();
    assert_eq!(drain(&mut s), hex("52 43 0c 00 00"));
    assert!(events(&mut s).is_empty());
    feed(&mut s, b"RC\x0d").unwrap();
    assert!(matches!(
        events(&mut s)[..],
        [Event::SendCommitted {
            flowfiles: 1,
            bytes: 5,
            destination_full: false
        }]
    ));
    assert!(s.is_idle());
}

#[test]
fn tv5_destination_full_is_a_commit_with_backoff() {
    let mut s = ready(Some(PORT));
    s.send_flowfile(&f1()).unwrap();
    s.finish_send().unwrap();
    drain(&mut s);
    feed(&mut s, &hex("52 43 0c 00 0a 34 30 34 36 31 35 34 35 35 34")).unwrap();
    drain(&mut s);
    feed(&mut s, b"RC\x0e").unwrap();
    assert!(matches!(
        events(&mut s)[..],
        [Event::SendCommitted {
            destination_full: true,
            ..
        }]
    ));
    assert!(s.is_idle());
}

#[test]
fn tv5_bad_checksum_sends_rc19_and_fails() {
    let mut s = ready(Some(PORT));
    s.send_flowfile(&f1()).unwrap();
    s.finish_send().unwrap();
    drain(&mut s);
    let e = feed(&mut s, &hex("52 43 0c 00 01 31")).unwrap_err();
    assert!(matches!(e, SessionError::BadChecksum { ref remote, .. } if remote == "1"));
    assert_eq!(drain(&mut s), b"RC\x13");
    assert!(s.is_closed());
}

#[test]
fn send_commit_anything_else_is_an_error() {
    let mut s = ready(Some(PORT));
    s.send_flowfile(&f1()).unwrap();
    s.finish_send().unwrap();
    drain(&mut s);
    feed(&mut s, &hex("52 43 0c 00 0a 34 30 34 36 31 35 34 35 35 34")).unwrap();
    drain(&mut s);
    let e = feed(&mut s, b"RC\x0f\x00\x02no").unwrap_err();
    assert!(matches!(e, SessionError::UnexpectedCode { .. }));
    // And a second s2s code at confirm time.
    let mut s = ready(Some(PORT));
    s.send_flowfile(&f1()).unwrap();
    s.finish_send().unwrap();
    drain(&mut s);
    assert!(matches!(
        feed(&mut s, b"RC\x0d"),
        Err(SessionError::UnexpectedCode { .. })
    ));
}

#[test]
fn tv6_two_flowfile_send_markers_and_crc() {
    let mut s = ready(Some(PORT));
    s.send_flowfile(&f1()).unwrap();
    s.send_flowfile(&f2()).unwrap();
    s.finish_send().unwrap();
    let mut want = hex(SEND_FLOWFILES);
    want.extend(hex(TV4));
    want.extend(b"RC\x0a");
    let mut f2b = BytesMut::new();
    flowfile::encode(&f2(), &mut f2b);
    assert_eq!(f2b.len(), 39);
    want.extend_from_slice(&f2b);
    want.extend(b"RC\x0b");
    assert_eq!(drain(&mut s), want);
    assert_eq!(want.len(), 117);
    feed(&mut s, &hex("52 43 0c 00 09 34 36 34 32 36 31 31 35 34")).unwrap();
    assert_eq!(drain(&mut s), hex("52 43 0c 00 00"));
    feed(&mut s, b"RC\x0d").unwrap();
    assert!(matches!(
        events(&mut s)[..],
        [Event::SendCommitted {
            flowfiles: 2,
            bytes: 11,
            destination_full: false
        }]
    ));
}

#[test]
fn send_content_is_not_copied() {
    // Uncompressed content goes out as the caller's own `Bytes`, piece by piece.
    let content = Bytes::from(vec![7u8; (5 << 20) / 2]);
    let mut s = ready(Some(PORT));
    s.start_flowfile(&[], content.len() as u64).unwrap();
    let mut chunks = Vec::new();
    for piece in [content.slice(..1 << 20), content.slice(1 << 20..)] {
        s.send_content(piece).unwrap();
        chunks.extend(std::iter::from_fn(|| s.poll_transmit()));
    }
    s.end_flowfile().unwrap();
    let at = |c: &Bytes| c.as_ptr() as usize - content.as_ptr() as usize;
    let shared: Vec<(usize, usize)> = chunks
        .iter()
        .filter(|c| {
            let (a, b) = (content.as_ptr() as usize, c.as_ptr() as usize);
            b >= a && b < a + content.len()
        })
        .map(|c| (at(c), c.len()))
        .collect();
    assert_eq!(
        shared,
        vec![(0, 1 << 20), (1 << 20, content.len() - (1 << 20))]
    );
}

/// Content that does not match its declared length closes the session: nothing is committed.
#[test]
fn content_length_mismatch_fails_the_send() {
    let mut s = ready(Some(PORT));
    s.start_flowfile(&[], 3).unwrap();
    s.send_content(Bytes::from_static(b"ab")).unwrap();
    assert!(matches!(
        s.end_flowfile(),
        Err(SessionError::Stream(StreamError::ContentTooShort {
            declared: 3,
            written: 2
        }))
    ));
    assert!(s.is_closed());
    let mut s = ready(Some(PORT));
    s.start_flowfile(&[], 1).unwrap();
    assert!(matches!(
        s.send_content(Bytes::from_static(b"ab")),
        Err(SessionError::Stream(StreamError::ContentTooLong {
            declared: 1
        }))
    ));
    assert!(s.is_closed());
    // finish_send while a FlowFile is open is refused.
    let mut s = ready(Some(PORT));
    s.start_flowfile(&[], 1).unwrap();
    assert!(matches!(
        s.finish_send(),
        Err(SessionError::InvalidState(_))
    ));
}

/// FlowFiles of every size class (empty, small, around 64 KiB, several MiB) mixed in one
/// transaction: the CRC must equal the peer's, whether or not the driver drains
/// `poll_transmit` between FlowFiles.
#[test]
fn fake_peer_mixed_sizes_crc_per_slice() {
    let sizes = [3 << 20, 0, 1000, 64 * 1024 + 1, 64 * 1024, (1 << 20) + 7, 5];
    let ffs: Vec<FlowFile> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            FlowFile::new((0..n).map(|j| (j * 31 + i) as u8).collect::<Vec<u8>>())
                .with_attribute("i", i.to_string())
        })
        .collect();
    for drain_between in [false, true] {
        {
            let mut nifi = FakeNifi::new();
            let mut c = ClientSession::new(config(Some(PORT))).unwrap();
            let mut cbuf = BytesMut::new();
            drive(&mut c, &mut nifi, &mut cbuf).unwrap();
            for round in 0..2 {
                for ff in &ffs {
                    c.send_flowfile(ff).unwrap();
                    if drain_between {
                        while let Some(b) = c.poll_transmit() {
                            nifi.inbuf.extend_from_slice(&b);
                        }
                    }
                }
                c.finish_send().unwrap();
                let ev = drive(&mut c, &mut nifi, &mut cbuf).unwrap();
                assert!(
                    matches!(ev[..], [Event::SendCommitted { flowfiles: 7, .. }]),
                    "drain {drain_between}, round {round}: {ev:?}"
                );
            }
            assert_eq!(nifi.committed.len(), 14);
            assert_eq!(nifi.committed[..7], ffs[..]);
        }
    }
}

/// A driver that feeds NiFi's answer before writing everything (impossible with a real peer,
/// legal for the API) still gets the full CRC, not a partial one.
#[test]
fn crc_is_complete_when_confirm_arrives_before_transmit() {
    let big = FlowFile::new(vec![9u8; 3 << 20]);
    let small = FlowFile::new(vec![1u8; 10]).with_attribute("a", "b");
    let mut expected = TransactionChecksum::new();
    big.add_to_checksum(&mut expected);
    small.add_to_checksum(&mut expected);
    let mut s = ready(Some(PORT));
    s.send_flowfile(&big).unwrap();
    s.send_flowfile(&small).unwrap();
    s.finish_send().unwrap();
    let _ = s.poll_transmit(); // only the request
    let mut b = BytesMut::new();
    Response::with_message(ResponseCode::CONFIRM_TRANSACTION, expected.to_decimal())
        .encode(&mut b)
        .unwrap();
    s.handle_input(&mut b).unwrap();
    // Accepted: the CRC matched; what is left of the content is still queued.
    assert!(std::iter::from_fn(|| s.poll_transmit()).count() > 1);
}

/// With compression the CRC covers the uncompressed bytes of large content too, in order.
#[test]
fn compressed_large_content_crc() {
    let big = FlowFile::new(
        (0..(3u32 << 20))
            .map(|i| (i % 7) as u8)
            .collect::<Vec<u8>>(),
    );
    let small = FlowFile::new(vec![1u8; 10]).with_attribute("a", "b");
    let mut expected = TransactionChecksum::new();
    for ff in [&small, &big, &small] {
        ff.add_to_checksum(&mut expected);
    }
    let mut cfg = config(Some(PORT));
    cfg.compression = true;
    let mut s = ready_cfg(cfg);
    for ff in [&small, &big, &small] {
        s.send_flowfile(ff).unwrap();
    }
    s.finish_send().unwrap();
    while s.poll_transmit().is_some() {}
    let mut b = BytesMut::new();
    Response::with_message(ResponseCode::CONFIRM_TRANSACTION, expected.to_decimal())
        .encode(&mut b)
        .unwrap();
    s.handle_input(&mut b).unwrap();
}

#[test]
fn empty_send_and_misuse_are_rejected() {
    let mut s = ready(Some(PORT));
    assert!(matches!(
        s.finish_send(),
        Err(SessionError::InvalidState(_))
    ));
    assert!(matches!(
        s.confirm_receive(),
        Err(SessionError::InvalidState(_))
    ));
    let mut s = ready(None);
    assert!(matches!(
        s.send_flowfile(&f1()),
        Err(SessionError::InvalidState(_))
    ));
    assert!(matches!(
        s.begin_receive(),
        Err(SessionError::InvalidState(_))
    ));
}

#[test]
fn cancel_writes_rc15_only_where_nifi_reads_a_marker() {
    let mut s = ready(Some(PORT));
    s.send_flowfile(&f1()).unwrap();
    drain(&mut s);
    s.cancel_send("stop").unwrap();
    assert_eq!(drain(&mut s), b"RC\x0f\x00\x04stop");
    assert!(s.is_closed());
    // Before any FlowFile nothing was written, so nothing needs cancelling.
    let mut s = ready(Some(PORT));
    s.cancel_send("stop").unwrap();
    assert!(drain(&mut s).is_empty());
    assert!(s.is_closed());
}

const TV7_SERVER: &str = "52 43 14 00 00 00 02 00 00 00 08 66 69 6c 65 6e 61 6d 65 00 00 00 09 68 65 6c 6c 6f 2e 74 78 74 \
                          00 00 00 04 70 61 74 68 00 00 00 02 2e 2f 00 00 00 00 00 00 00 05 68 65 6c 6c 6f 52 43 0b";

#[test]
fn tv7_receive_one_flowfile() {
    let mut s = ready(Some(PORT));
    s.begin_receive().unwrap();
    assert_eq!(
        drain(&mut s),
        hex("00 11 52 45 43 45 49 56 45 5f 46 4c 4f 57 46 49 4c 45 53")
    );
    let server = hex(TV7_SERVER);
    assert_eq!(server.len(), 62);
    feed(&mut s, &server).unwrap();
    let ev = events(&mut s);
    assert!(
        matches!(
            ev[..],
            [
                Event::MoreData,
                Event::FlowFileStart { content_len: 5, .. },
                Event::FlowFileContent(_),
                Event::FlowFileEnd
            ]
        ),
        "{ev:?}"
    );
    assert_eq!(flowfiles_of(&ev), vec![f1()]);
    assert_eq!(
        drain(&mut s),
        hex("52 43 0c 00 0a 34 30 34 36 31 35 34 35 35 34")
    );
    feed(&mut s, &hex("52 43 0c 00 00")).unwrap();
    assert!(matches!(
        events(&mut s)[..],
        [Event::ReceiveVerified {
            flowfiles: 1,
            bytes: 5
        }]
    ));
    assert!(
        drain(&mut s).is_empty(),
        "nothing is confirmed before the app says so"
    );
    s.confirm_receive().unwrap();
    assert_eq!(drain(&mut s), b"RC\x0d");
    assert!(s.is_idle());
}

#[test]
fn tv7_receive_byte_by_byte() {
    let mut s = ready(Some(PORT));
    s.begin_receive().unwrap();
    drain(&mut s);
    let mut buf = BytesMut::new();
    for b in hex(TV7_SERVER) {
        buf.extend_from_slice(&[b]);
        s.handle_input(&mut buf).unwrap();
    }
    assert!(buf.is_empty());
    let ev = events(&mut s);
    assert!(matches!(ev[0], Event::MoreData));
    assert_eq!(flowfiles_of(&ev), vec![f1()]);
}

#[test]
fn receive_empty_port_and_bad_checksum() {
    let mut s = ready(Some(PORT));
    s.begin_receive().unwrap();
    drain(&mut s);
    feed(&mut s, b"RC\x15").unwrap();
    assert!(matches!(events(&mut s)[..], [Event::NoData]));
    assert!(s.is_idle());

    s.begin_receive().unwrap();
    drain(&mut s);
    feed(&mut s, &hex(TV7_SERVER)).unwrap();
    drain(&mut s);
    let e = feed(&mut s, b"RC\x13").unwrap_err();
    assert!(matches!(e, SessionError::BadChecksum { .. }));
    assert!(s.is_closed());
}

#[test]
fn receive_start_must_be_more_or_no_more_data() {
    let mut s = ready(Some(PORT));
    s.begin_receive().unwrap();
    drain(&mut s);
    assert!(matches!(
        feed(&mut s, b"RC\x0d"),
        Err(SessionError::UnexpectedCode { .. })
    ));
}

#[test]
fn receive_content_longer_than_limit_is_refused() {
    let mut c = config(Some(PORT));
    c.limits.max_content_len = 4;
    let mut s = ClientSession::new(c).unwrap();
    drain(&mut s);
    feed(&mut s, &[0x14]).unwrap();
    feed(&mut s, b"RC\x01").unwrap();
    feed(&mut s, &[0x14]).unwrap();
    events(&mut s);
    s.begin_receive().unwrap();
    drain(&mut s);
    assert!(matches!(
        feed(&mut s, &hex(TV7_SERVER)),
        Err(SessionError::Decode(_))
    ));
}

#[test]
fn unsolicited_bytes_and_eof_are_errors() {
    let mut s = ready(Some(PORT));
    assert!(matches!(
        feed(&mut s, b"RC\x0d"),
        Err(SessionError::UnexpectedData { .. })
    ));
    let mut s = ready(Some(PORT));
    s.send_flowfile(&f1()).unwrap();
    s.finish_send().unwrap();
    assert!(matches!(
        s.handle_eof(&[]),
        Err(SessionError::UnexpectedEof {
            phase: "SEND transaction",
            ..
        })
    ));
}

#[test]
fn tv8_peer_list() {
    let mut s = ready(None);
    s.request_peer_list().unwrap();
    assert_eq!(
        drain(&mut s),
        hex("00 11 52 45 51 55 45 53 54 5f 50 45 45 52 5f 4c 49 53 54")
    );
    let tv8 = hex(
        "00 00 00 02 00 05 6e 69 66 69 31 00 00 28 cb 01 00 00 00 78 00 05 6e 69 66 69 32 00 00 28 cb 01 00 00 00 00",
    );
    let mut buf = BytesMut::from(&tv8[..10]);
    s.handle_input(&mut buf).unwrap();
    assert!(events(&mut s).is_empty());
    assert_eq!(
        buf.len(),
        10,
        "an incomplete peer list is left in the buffer"
    );
    buf.extend_from_slice(&tv8[10..]);
    s.handle_input(&mut buf).unwrap();
    assert!(buf.is_empty());
    let ev = events(&mut s);
    let [Event::PeerList(peers)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(peers.len(), 2);
    assert_eq!(
        (
            peers[0].hostname.as_str(),
            peers[0].port,
            peers[0].flow_file_count
        ),
        ("nifi1", 10443, 120)
    );
    s.shutdown().unwrap();
    assert_eq!(drain(&mut s), hex("00 08 53 48 55 54 44 4f 57 4e"));
    assert!(s.handle_eof(&[]).is_ok());
}

// ---------------------------------------------------------------------------------------------
// A small in-memory NiFi: enough of the server side of §2 and §5 to hold a whole conversation.

#[derive(Debug, Default)]
struct FakeNifi {
    inbuf: BytesMut,
    out: BytesMut,
    state: FakeState,
    version: i32,
    supported: Vec<i32>,
    /// Committed by SEND transactions.
    committed: Vec<FlowFile>,
    staged: Vec<FlowFile>,
    crc: TransactionChecksum,
    /// Queue served to RECEIVE.
    queue: Vec<FlowFile>,
    served: usize,
    dest_full: bool,
    lie_about_crc: bool,
    peers: Vec<Peer>,
    shut_down: bool,
}

#[derive(Debug, Default)]
enum FakeState {
    #[default]
    Magic,
    Proposal,
    Handshake,
    Request,
    Codec,
    SendFlowFile(FlowFileDecoder),
    SendMarker,
    SendConfirm,
    RecvConfirm,
    RecvFinal,
    Closed,
}

impl FakeNifi {
    fn new() -> Self {
        Self {
            supported: vec![6, 5, 4, 3, 2, 1],
            ..Self::default()
        }
    }

    fn process(&mut self) {
        loop {
            let progressed = match &mut self.state {
                FakeState::Magic => decode_magic(&mut self.inbuf).unwrap().map(|()| {
                    self.state = FakeState::Proposal;
                }),
                FakeState::Proposal => {
                    ResourceProposal::decode(&mut self.inbuf).unwrap().map(|p| {
                        let r = server_reply(&self.supported, p.version);
                        r.encode(&mut self.out);
                        if r == NegotiationReply::Ok {
                            self.version = p.version;
                            self.state = FakeState::Handshake;
                        }
                    })
                }
                FakeState::Handshake => ReceivedHandshake::decode(&mut self.inbuf, self.version)
                    .unwrap()
                    .map(|_| {
                        Response::new(ResponseCode::PROPERTIES_OK)
                            .encode(&mut self.out)
                            .unwrap();
                        self.state = FakeState::Request;
                    }),
                FakeState::Request => {
                    RequestType::decode(&mut self.inbuf)
                        .unwrap()
                        .map(|r| match r {
                            RequestType::NegotiateFlowFileCodec => self.state = FakeState::Codec,
                            RequestType::RequestPeerList => {
                                encode_peer_list(&self.peers, &mut self.out).unwrap()
                            }
                            RequestType::SendFlowFiles => {
                                self.crc = TransactionChecksum::new();
                                self.state = FakeState::SendFlowFile(FlowFileDecoder::default());
                            }
                            RequestType::ReceiveFlowFiles => self.serve(),
                            RequestType::Shutdown => {
                                self.shut_down = true;
                                self.state = FakeState::Closed;
                            }
                        })
                }
                FakeState::Codec => ResourceProposal::decode(&mut self.inbuf).unwrap().map(|p| {
                    assert_eq!((p.name.as_str(), p.version), (CODEC_NAME, 1));
                    NegotiationReply::Ok.encode(&mut self.out);
                    self.state = FakeState::Request;
                }),
                FakeState::SendFlowFile(d) => d.decode(&mut self.inbuf).unwrap().map(|ff| {
                    ff.add_to_checksum(&mut self.crc);
                    self.staged.push(ff);
                    self.state = FakeState::SendMarker;
                }),
                FakeState::SendMarker => {
                    Response::decode(&mut self.inbuf)
                        .unwrap()
                        .map(|r| match r.code {
                            ResponseCode::CONTINUE_TRANSACTION => {
                                self.state = FakeState::SendFlowFile(FlowFileDecoder::default());
                            }
                            ResponseCode::FINISH_TRANSACTION => {
                                let crc = if self.lie_about_crc {
                                    "0".into()
                                } else {
                                    self.crc.to_decimal()
                                };
                                Response::with_message(ResponseCode::CONFIRM_TRANSACTION, crc)
                                    .encode(&mut self.out)
                                    .unwrap();
                                self.state = FakeState::SendConfirm;
                            }
                            ResponseCode::CANCEL_TRANSACTION => {
                                self.staged.clear();
                                self.state = FakeState::Request;
                            }
                            other => panic!("fake NiFi: unexpected marker {other}"),
                        })
                }
                FakeState::SendConfirm => Response::decode(&mut self.inbuf).unwrap().map(|r| {
                    if r.code == ResponseCode::CONFIRM_TRANSACTION {
                        self.committed.append(&mut self.staged);
                        let code = if self.dest_full {
                            ResponseCode::TRANSACTION_FINISHED_BUT_DESTINATION_FULL
                        } else {
                            ResponseCode::TRANSACTION_FINISHED
                        };
                        Response::new(code).encode(&mut self.out).unwrap();
                        self.state = FakeState::Request;
                    } else {
                        self.staged.clear();
                        self.state = FakeState::Closed;
                    }
                }),
                FakeState::RecvConfirm => Response::decode(&mut self.inbuf).unwrap().map(|r| {
                    assert_eq!(r.code, ResponseCode::CONFIRM_TRANSACTION);
                    if r.message.as_deref() == Some(self.crc.to_decimal().as_str()) {
                        Response::with_message(ResponseCode::CONFIRM_TRANSACTION, "")
                            .encode(&mut self.out)
                            .unwrap();
                        self.state = FakeState::RecvFinal;
                    } else {
                        Response::new(ResponseCode::BAD_CHECKSUM)
                            .encode(&mut self.out)
                            .unwrap();
                        self.state = FakeState::Closed;
                    }
                }),
                FakeState::RecvFinal => Response::decode(&mut self.inbuf).unwrap().map(|r| {
                    assert_eq!(r.code, ResponseCode::TRANSACTION_FINISHED);
                    self.queue.drain(..self.served);
                    self.state = FakeState::Request;
                }),
                FakeState::Closed => None,
            };
            if progressed.is_none() {
                return;
            }
        }
    }

    fn serve(&mut self) {
        if self.queue.is_empty() {
            Response::new(ResponseCode::NO_MORE_DATA)
                .encode(&mut self.out)
                .unwrap();
            return;
        }
        self.crc = TransactionChecksum::new();
        Response::new(ResponseCode::MORE_DATA)
            .encode(&mut self.out)
            .unwrap();
        for (i, ff) in self.queue.iter().enumerate() {
            if i > 0 {
                Response::new(ResponseCode::CONTINUE_TRANSACTION)
                    .encode(&mut self.out)
                    .unwrap();
            }
            flowfile::encode(ff, &mut self.out);
            ff.add_to_checksum(&mut self.crc);
        }
        self.served = self.queue.len();
        Response::new(ResponseCode::FINISH_TRANSACTION)
            .encode(&mut self.out)
            .unwrap();
        self.state = FakeState::RecvConfirm;
    }
}

/// Moves bytes both ways until neither side has anything to say; returns the client's events.
fn drive(
    c: &mut ClientSession,
    n: &mut FakeNifi,
    cbuf: &mut BytesMut,
) -> Result<Vec<Event>, SessionError> {
    let mut evs = Vec::new();
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(b) = c.poll_transmit() {
            n.inbuf.extend_from_slice(&b);
            moved = true;
        }
        n.process();
        if !n.out.is_empty() {
            cbuf.extend_from_slice(&n.out.split());
            c.handle_input(cbuf)?;
            moved = true;
        }
        evs.extend(std::iter::from_fn(|| c.poll_event()));
        if !moved {
            return Ok(evs);
        }
    }
    panic!("conversation did not settle")
}

#[test]
fn fake_peer_full_conversation() {
    let mut nifi = FakeNifi::new();
    nifi.supported = vec![5, 4, 3, 2, 1];
    nifi.queue = vec![f2(), FlowFile::new(Bytes::new()), f1()];
    let mut c = ClientSession::new(config(Some(PORT))).unwrap();
    let mut cbuf = BytesMut::new();
    let ev = drive(&mut c, &mut nifi, &mut cbuf).unwrap();
    assert!(matches!(
        ev[..],
        [Event::Ready {
            protocol_version: 5
        }]
    ));

    // Three SEND transactions over the same session.
    for round in 0..3 {
        for _ in 0..=round {
            c.send_flowfile(&f1()).unwrap();
        }
        c.send_flowfile(&f2()).unwrap();
        c.finish_send().unwrap();
        let ev = drive(&mut c, &mut nifi, &mut cbuf).unwrap();
        assert!(
            matches!(
                ev[..],
                [Event::SendCommitted {
                    destination_full: false,
                    ..
                }]
            ),
            "{ev:?}"
        );
    }
    assert_eq!(nifi.committed.len(), 2 + 3 + 4);
    assert_eq!(nifi.committed[0], f1());
    assert_eq!(nifi.committed[1], f2());

    // RECEIVE including an empty FlowFile (valid on NiFi).
    c.begin_receive().unwrap();
    let ev = drive(&mut c, &mut nifi, &mut cbuf).unwrap();
    assert_eq!(
        flowfiles_of(&ev),
        vec![f2(), FlowFile::new(Bytes::new()), f1()]
    );
    assert!(matches!(
        ev.last(),
        Some(Event::ReceiveVerified {
            flowfiles: 3,
            bytes: 11
        })
    ));
    assert_eq!(
        nifi.queue.len(),
        3,
        "nothing removed before the client confirms"
    );
    c.confirm_receive().unwrap();
    drive(&mut c, &mut nifi, &mut cbuf).unwrap();
    assert!(nifi.queue.is_empty());

    c.begin_receive().unwrap();
    let ev = drive(&mut c, &mut nifi, &mut cbuf).unwrap();
    assert!(matches!(ev[..], [Event::NoData]));

    c.shutdown().unwrap();
    drive(&mut c, &mut nifi, &mut cbuf).unwrap();
    assert!(nifi.shut_down);
}

#[test]
fn fake_peer_lying_crc_keeps_data_uncommitted() {
    let mut nifi = FakeNifi::new();
    nifi.lie_about_crc = true;
    let mut c = ClientSession::new(config(Some(PORT))).unwrap();
    let mut cbuf = BytesMut::new();
    drive(&mut c, &mut nifi, &mut cbuf).unwrap();
    c.send_flowfile(&f1()).unwrap();
    c.finish_send().unwrap();
    let e = drive(&mut c, &mut nifi, &mut cbuf).unwrap_err();
    assert!(matches!(e, SessionError::BadChecksum { .. }));
    // The session queued BAD_CHECKSUM; the server then rolls back.
    drive(&mut c, &mut nifi, &mut cbuf).ok();
    assert!(nifi.committed.is_empty());
}

#[test]
fn fake_peer_destination_full_and_peer_list() {
    let mut nifi = FakeNifi::new();
    nifi.dest_full = true;
    nifi.peers = vec![Peer {
        hostname: "nifi1".into(),
        port: 10443,
        secure: false,
        flow_file_count: 3,
    }];
    let mut c = ClientSession::new(config(Some(PORT))).unwrap();
    let mut cbuf = BytesMut::new();
    drive(&mut c, &mut nifi, &mut cbuf).unwrap();
    c.request_peer_list().unwrap();
    let ev = drive(&mut c, &mut nifi, &mut cbuf).unwrap();
    assert!(matches!(&ev[..], [Event::PeerList(p)] if p == &nifi.peers));
    c.send_flowfile(&f1()).unwrap();
    c.finish_send().unwrap();
    let ev = drive(&mut c, &mut nifi, &mut cbuf).unwrap();
    assert!(matches!(
        ev[..],
        [Event::SendCommitted {
            destination_full: true,
            ..
        }]
    ));
    assert_eq!(nifi.committed.len(), 1);
}

#[test]
fn fake_peer_cancel_rolls_back() {
    let mut nifi = FakeNifi::new();
    let mut c = ClientSession::new(config(Some(PORT))).unwrap();
    let mut cbuf = BytesMut::new();
    drive(&mut c, &mut nifi, &mut cbuf).unwrap();
    c.send_flowfile(&f1()).unwrap();
    c.cancel_send("changed my mind").unwrap();
    drive(&mut c, &mut nifi, &mut cbuf).unwrap();
    assert!(nifi.committed.is_empty() && nifi.staged.is_empty());
    let _ = negotiation::MAGIC;
}

#[test]
fn compressed_send_and_receive_round_trip() {
    // SEND with GZIP=true: each FlowFile in its own envelope; CRC over uncompressed bytes (TV9).
    let mut c = config(Some(PORT));
    c.compression = true;
    let mut s = ClientSession::new(c).unwrap();
    drain(&mut s);
    feed(&mut s, &[0x14]).unwrap();
    let mut hs = BytesMut::from(&drain(&mut s)[..]);
    let got = ReceivedHandshake::decode(&mut hs, 6).unwrap().unwrap();
    assert_eq!(got.property(HandshakeProperty::Gzip), Some("true"));
    feed(&mut s, b"RC\x01").unwrap();
    drain(&mut s);
    feed(&mut s, &[0x14]).unwrap();
    events(&mut s);
    s.send_flowfile(&f1()).unwrap();
    s.send_flowfile(&f2()).unwrap();
    s.finish_send().unwrap();
    let wire = drain(&mut s);
    let mut b = BytesMut::from(&wire[..]);
    assert_eq!(
        RequestType::decode(&mut b).unwrap(),
        Some(RequestType::SendFlowFiles)
    );
    let mut d = crate::stream::FlowFileReader::new(true, Default::default());
    assert_eq!(d.next_flowfile(&mut b).unwrap(), Some(f1()));
    assert_eq!(&b[..3], b"RC\x0a");
    let _ = b.split_to(3);
    assert_eq!(d.next_flowfile(&mut b).unwrap(), Some(f2()));
    assert_eq!(&b[..], b"RC\x0b");
    // TV6's CRC: compression does not change it.
    feed(&mut s, &hex("52 43 0c 00 09 34 36 34 32 36 31 31 35 34")).unwrap();
    assert_eq!(drain(&mut s), hex("52 43 0c 00 00"));

    // RECEIVE with GZIP=true: the server's envelopes are inflated before the CRC.
    let mut c = config(Some(PORT));
    c.compression = true;
    let mut r = ClientSession::new(c).unwrap();
    drain(&mut r);
    feed(&mut r, &[0x14]).unwrap();
    feed(&mut r, b"RC\x01").unwrap();
    feed(&mut r, &[0x14]).unwrap();
    events(&mut r);
    r.begin_receive().unwrap();
    drain(&mut r);
    let mut server = BytesMut::from(&b"RC\x14"[..]);
    let mut plain = BytesMut::new();
    flowfile::encode(&f1(), &mut plain);
    crate::codec::compression::compress(&plain, &mut server);
    server.extend_from_slice(b"RC\x0b");
    feed(&mut r, &server).unwrap();
    let ev = events(&mut r);
    assert!(matches!(ev.first(), Some(Event::MoreData)));
    assert_eq!(flowfiles_of(&ev), vec![f1()]);
    assert_eq!(
        drain(&mut r),
        hex("52 43 0c 00 0a 34 30 34 36 31 35 34 35 35 34")
    );
}

mod prop {
    use proptest::prelude::*;

    use super::*;

    /// A session in each phase that reads from NiFi.
    fn session_in_phase(phase: u8) -> ClientSession {
        let mut s = ClientSession::new(config(Some(PORT))).unwrap();
        drain(&mut s);
        let steps: &[&[u8]] = &[&[0x14], b"RC\x01", &[0x14]];
        for st in steps.iter().take(usize::from(phase.min(3))) {
            feed(&mut s, st).unwrap();
        }
        drain(&mut s);
        events(&mut s);
        match phase {
            4 => s.begin_receive().unwrap(),
            5 => {
                s.send_flowfile(&f1()).unwrap();
                s.finish_send().unwrap();
            }
            6 => s.request_peer_list().unwrap(),
            _ => {}
        }
        drain(&mut s);
        s
    }

    proptest! {
        #[test]
        fn arbitrary_peer_bytes_never_panic(
            phase in 0u8..7,
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        ) {
            let mut s = session_in_phase(phase);
            let mut buf = BytesMut::new();
            for c in chunks {
                buf.extend_from_slice(&c);
                if s.handle_input(&mut buf).is_err() {
                    prop_assert!(s.is_closed());
                    break;
                }
                while s.poll_transmit().is_some() {}
                while s.poll_event().is_some() {}
            }
            let _ = s.handle_eof(&buf);
        }

        #[test]
        fn tv7_any_split_gives_the_same_result(cuts in proptest::collection::vec(0usize..62, 0..6)) {
            let server = hex(TV7_SERVER);
            let mut cuts = cuts;
            cuts.push(server.len());
            cuts.sort_unstable();
            let mut s = session_in_phase(4);
            let mut buf = BytesMut::new();
            let mut at = 0;
            for c in cuts {
                buf.extend_from_slice(&server[at..c.max(at)]);
                at = c.max(at);
                s.handle_input(&mut buf).unwrap();
            }
            prop_assert!(buf.is_empty());
            let ev = events(&mut s);
            prop_assert!(matches!(ev.first(), Some(Event::MoreData)));
            prop_assert_eq!(flowfiles_of(&ev), vec![f1()]);
            prop_assert_eq!(drain(&mut s), hex("52 43 0c 00 0a 34 30 34 36 31 35 34 35 35 34"));
        }
    }
}
