//! The codecs against a real NiFi over a plain blocking `TcpStream` (RAW transport): every byte
//! on the wire comes from or goes to `s2s-proto`'s encoders and decoders, with no client crate
//! in between. Skips without a NiFi unless `CI`/`S2S_E2E=1` is set (then it fails).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use nifi_testkit::{Nifi, nifi_or_skip};
use s2s_proto::codec::checksum::TransactionChecksum;
use s2s_proto::codec::compression::Compressor;
use s2s_proto::codec::flowfile::{self, FlowFileDecoder, Limits};
use s2s_proto::codec::handshake::{HandshakeRequest, RequestType, encode_codec_negotiation};
use s2s_proto::codec::negotiation::{
    NegotiationReply, RAW_PROTOCOL_NAME, RAW_PROTOCOL_VERSIONS, ResourceProposal, encode_magic,
    step_down,
};
use s2s_proto::codec::peers::{DEFAULT_MAX_PEERS, decode_peer_list};
use s2s_proto::codec::utf::{decode_utf, encode_utf};
use s2s_proto::stream::FlowFileReader;
use s2s_proto::{DecodeError, FlowFile, Response, ResponseCode};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A RAW connection that speaks only through the codecs.
struct Raw {
    sock: TcpStream,
    rx: BytesMut,
    version: i32,
}

impl Raw {
    fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).unwrap();
    }

    /// Reads until `decode` yields a value.
    fn read<T>(
        &mut self,
        mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, DecodeError>,
    ) -> T {
        loop {
            if let Some(v) = decode(&mut self.rx).unwrap() {
                return v;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.sock.read(&mut chunk).unwrap();
            assert!(n > 0, "NiFi closed the connection");
            self.rx.extend_from_slice(&chunk[..n]);
        }
    }

    fn response(&mut self) -> Response {
        self.read(Response::decode)
    }

    /// Magic, protocol negotiation (stepping down if told to) and handshake.
    fn open(nifi: &Nifi, port_id: Option<&str>, gzip: bool) -> (Self, Response) {
        Self::open_at(nifi, port_id, gzip, RAW_PROTOCOL_VERSIONS[0], 0)
    }

    /// Like [`Raw::open`], proposing `first_version` first (stepping down from there) and
    /// asking for `batch_count` (sent only at protocol >= 5).
    fn open_at(
        nifi: &Nifi,
        port_id: Option<&str>,
        gzip: bool,
        first_version: i32,
        batch_count: u32,
    ) -> (Self, Response) {
        let raw_port = nifi.raw_port().expect("NiFi has RAW site-to-site enabled");
        let sock = TcpStream::connect(("127.0.0.1", raw_port)).unwrap();
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut c = Self {
            sock,
            rx: BytesMut::new(),
            version: first_version,
        };
        let mut out = BytesMut::new();
        encode_magic(&mut out);
        loop {
            ResourceProposal::new(RAW_PROTOCOL_NAME, c.version)
                .encode(&mut out)
                .unwrap();
            c.send(&out.split());
            match c.read(NegotiationReply::decode) {
                NegotiationReply::Ok => break,
                NegotiationReply::DifferentVersion(v) => {
                    assert!(v < c.version, "NiFi offers a lower version");
                    c.version = step_down(&RAW_PROTOCOL_VERSIONS, v).expect("a common version");
                }
                NegotiationReply::Abort => panic!("NiFi aborted protocol negotiation"),
            }
        }
        let mut h = HandshakeRequest::new(
            "8a0f7a5e-2b41-4c4f-9a51-5e3c1d2b7f00",
            format!("nifi://127.0.0.1:{raw_port}"),
            port_id.map(str::to_owned),
        );
        h.gzip = gzip;
        h.batch_count = batch_count;
        h.encode(c.version, &mut out).unwrap();
        c.send(&out);
        let reply = c.response();
        (c, reply)
    }

    fn negotiate_codec(&mut self) {
        let mut out = BytesMut::new();
        encode_codec_negotiation(&mut out);
        self.send(&out);
        assert_eq!(self.read(NegotiationReply::decode), NegotiationReply::Ok);
    }

    fn shutdown(mut self) {
        let mut out = BytesMut::new();
        RequestType::Shutdown.encode(&mut out);
        self.send(&out);
    }

    /// One SEND transaction; returns the final response code.
    fn send_transaction(&mut self, flowfiles: &[FlowFile], gzip: bool) -> ResponseCode {
        let mut out = BytesMut::new();
        RequestType::SendFlowFiles.encode(&mut out);
        let mut crc = TransactionChecksum::new();
        for (i, f) in flowfiles.iter().enumerate() {
            if i > 0 {
                ResponseCode::CONTINUE_TRANSACTION.encode(&mut out);
            }
            f.add_to_checksum(&mut crc);
            if gzip {
                let mut header = BytesMut::new();
                flowfile::encode_header(f, &mut header);
                let mut z = Compressor::new();
                z.write(&header, &mut out);
                z.write(&f.content, &mut out);
                z.finish(&mut out);
            } else {
                flowfile::encode_header(f, &mut out);
                out.extend_from_slice(&f.content);
            }
        }
        ResponseCode::FINISH_TRANSACTION.encode(&mut out);
        self.send(&out);
        let confirm = self.response();
        assert_eq!(confirm.code, ResponseCode::CONFIRM_TRANSACTION);
        assert_eq!(confirm.message.as_deref(), Some(crc.to_decimal().as_str()));
        let mut out = BytesMut::new();
        Response::new(ResponseCode::CONFIRM_TRANSACTION)
            .encode(&mut out)
            .unwrap();
        self.send(&out);
        self.response().code
    }
}

fn sample_flowfiles(tag: &str) -> Vec<FlowFile> {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    vec![
        FlowFile::new(&b"hello"[..])
            .with_attribute("filename", "hello.txt")
            .with_attribute("test.tag", tag)
            .with_attribute("clé 😀", "valeur \u{0} 𝄞 €"),
        FlowFile::new(&b""[..]).with_attribute("test.tag", tag),
        FlowFile::new(big).with_attribute("test.tag", tag),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_list_and_codec_refusal_without_port() {
    let nifi = nifi_or_skip!();
    let nifi2 = nifi.clone();
    tokio::task::spawn_blocking(move || {
        let (mut c, reply) = Raw::open(&nifi2, None, false);
        assert_eq!(reply, Response::new(ResponseCode::PROPERTIES_OK));
        assert_eq!(c.version, 6, "NiFi 1.x/2.x speak protocol 6");

        let mut out = BytesMut::new();
        RequestType::RequestPeerList.encode(&mut out);
        c.send(&out.split());
        let peers = c.read(|b| decode_peer_list(b, DEFAULT_MAX_PEERS));
        assert_eq!(peers.len(), 1, "standalone NiFi: {peers:?}");
        assert_eq!(Some(peers[0].port), nifi2.raw_port());
        assert!(!peers[0].secure);

        // docs/site-to-site.md §2.7: without a port NiFi refuses the codec with ABORT + a writeUTF message.
        encode_codec_negotiation(&mut out);
        c.send(&out);
        assert_eq!(c.read(NegotiationReply::decode), NegotiationReply::Abort);
        let msg = c.read(decode_utf);
        assert!(msg.contains("no port"), "{msg}");
        c.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn send_plain_and_gzip_then_check_queue() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("proto-send").await.unwrap();
    let id = port.id().to_owned();
    let nifi2 = nifi.clone();
    let sent = tokio::task::spawn_blocking(move || {
        let mut all = Vec::new();
        for gzip in [false, true] {
            let tag = if gzip { "gzip" } else { "plain" };
            let (mut c, reply) = Raw::open(&nifi2, Some(&id), gzip);
            assert_eq!(reply.code, ResponseCode::PROPERTIES_OK, "{reply:?}");
            c.negotiate_codec();
            let ffs = sample_flowfiles(tag);
            // Two transactions over one connection.
            for chunk in [&ffs[..1], &ffs[1..]] {
                let done = c.send_transaction(chunk, gzip);
                assert!(
                    done == ResponseCode::TRANSACTION_FINISHED
                        || done == ResponseCode::TRANSACTION_FINISHED_BUT_DESTINATION_FULL,
                    "{done:?}"
                );
            }
            c.shutdown();
            all.extend(ffs);
        }
        all
    })
    .await
    .unwrap();

    port.wait_for_queued(sent.len() as u64, Duration::from_secs(60))
        .await
        .unwrap();
    let queued = port.queued_flowfiles().await.unwrap();
    assert_eq!(queued.len(), sent.len());
    for want in &sent {
        let found = queued.iter().any(|q| {
            q.content == want.content[..]
                && want
                    .attributes
                    .iter()
                    .all(|(k, v)| q.attributes.get(k) == Some(v))
        });
        assert!(found, "not in NiFi's queue: {want:?}");
    }
    port.delete().await.unwrap();
}

/// One RECEIVE transaction, committed; returns the FlowFiles.
fn receive_all(nifi: &Nifi, out_id: &str, gzip: bool) -> Vec<FlowFile> {
    let (mut c, reply) = Raw::open(nifi, Some(out_id), gzip);
    assert_eq!(reply.code, ResponseCode::PROPERTIES_OK);
    c.negotiate_codec();
    let mut out = BytesMut::new();
    RequestType::ReceiveFlowFiles.encode(&mut out);
    c.send(&out.split());
    assert_eq!(c.response().code, ResponseCode::MORE_DATA);
    let mut got = Vec::new();
    let mut crc = TransactionChecksum::new();
    let mut plain = FlowFileDecoder::default();
    let mut zipped = FlowFileReader::new(true, Limits::default());
    loop {
        let f = if gzip {
            c.read(|b| zipped.next_flowfile(b))
        } else {
            c.read(|b| plain.decode(b))
        };
        f.add_to_checksum(&mut crc);
        got.push(f);
        match c.response().code {
            ResponseCode::CONTINUE_TRANSACTION => {}
            ResponseCode::FINISH_TRANSACTION => break,
            other => panic!("unexpected {other}"),
        }
    }
    Response::with_message(ResponseCode::CONFIRM_TRANSACTION, crc.to_decimal())
        .encode(&mut out)
        .unwrap();
    c.send(&out.split());
    assert_eq!(
        c.response(),
        Response::new(ResponseCode::CONFIRM_TRANSACTION),
        "NiFi accepted our CRC"
    );
    Response::new(ResponseCode::TRANSACTION_FINISHED)
        .encode(&mut out)
        .unwrap();
    c.send(&out);
    c.shutdown();
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn receive_plain_and_gzip_from_output_port() {
    let nifi = nifi_or_skip!();
    let pair = nifi.port_pair("proto-recv").await.unwrap();
    let (in_id, out_id) = (pair.input.id().to_owned(), pair.output.id().to_owned());
    for gzip in [false, true] {
        let want = sample_flowfiles(if gzip { "recv-gzip" } else { "recv-plain" });
        let (nifi2, in_id2, ffs) = (nifi.clone(), in_id.clone(), want.clone());
        tokio::task::spawn_blocking(move || {
            let (mut c, reply) = Raw::open(&nifi2, Some(&in_id2), false);
            assert_eq!(reply.code, ResponseCode::PROPERTIES_OK);
            c.negotiate_codec();
            assert_eq!(
                c.send_transaction(&ffs, false),
                ResponseCode::TRANSACTION_FINISHED
            );
            c.shutdown();
        })
        .await
        .unwrap();
        pair.input
            .wait_for_queued(want.len() as u64, Duration::from_secs(60))
            .await
            .unwrap();

        let (nifi2, out_id2) = (nifi.clone(), out_id.clone());
        let got = tokio::task::spawn_blocking(move || receive_all(&nifi2, &out_id2, gzip))
            .await
            .unwrap();
        assert_eq!(got.len(), want.len(), "gzip={gzip}");
        // NiFi may hand them out in another order than they arrived.
        for w in &want {
            let found = got.iter().any(|g| {
                g.content == w.content
                    && w.attributes
                        .iter()
                        .all(|(k, v)| g.attribute(k) == Some(v.as_str()))
            });
            assert!(found, "gzip={gzip}: not received: {w:?}; got {got:?}");
        }
        // Committed: nothing left in NiFi's queue.
        let mut left = u64::MAX;
        for _ in 0..300 {
            left = pair.input.queued_count().await.unwrap();
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(left, 0, "NiFi still queues FlowFiles after our commit");
    }
    pair.delete().await.unwrap();
}

/// The version-dependent handshake (transit URI from v3, BATCH_* from v5) against the real
/// server at every protocol version, plus the step-down from an unknown version 7.
#[tokio::test(flavor = "multi_thread")]
async fn every_protocol_version_sends() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("proto-versions").await.unwrap();
    let id = port.id().to_owned();
    let nifi2 = nifi.clone();
    tokio::task::spawn_blocking(move || {
        // 7 is stepped down to 6 by NiFi.
        let (c, reply) = Raw::open_at(&nifi2, Some(&id), false, 7, 0);
        assert_eq!(reply.code, ResponseCode::PROPERTIES_OK);
        assert_eq!(c.version, 6);
        c.shutdown();
        for v in 1..=6 {
            let (mut c, reply) = Raw::open_at(&nifi2, Some(&id), v % 2 == 0, v, 5);
            assert_eq!(c.version, v, "NiFi accepts version {v} as proposed");
            assert_eq!(reply.code, ResponseCode::PROPERTIES_OK, "v{v}: {reply:?}");
            c.negotiate_codec();
            let f = FlowFile::new(format!("v{v}").into_bytes())
                .with_attribute("protocol.version", v.to_string());
            assert_eq!(
                c.send_transaction(&[f], v % 2 == 0),
                ResponseCode::TRANSACTION_FINISHED,
                "v{v}"
            );
            c.shutdown();
        }
    })
    .await
    .unwrap();
    port.wait_for_queued(6, Duration::from_secs(60))
        .await
        .unwrap();
    let queued = port.queued_flowfiles().await.unwrap();
    let mut versions: Vec<&str> = queued
        .iter()
        .map(|q| q.attributes["protocol.version"].as_str())
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, ["1", "2", "3", "4", "5", "6"]);
    for q in &queued {
        assert_eq!(
            q.content,
            format!("v{}", q.attributes["protocol.version"]).into_bytes()
        );
    }
    port.delete().await.unwrap();
}

/// A v6 handshake with exactly these properties (bypassing `HandshakeRequest`'s rules), and
/// NiFi's reply to it.
fn raw_handshake(nifi: &Nifi, props: &[(&str, &str)]) -> (Raw, Response) {
    let raw_port = nifi.raw_port().unwrap();
    let sock = TcpStream::connect(("127.0.0.1", raw_port)).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut c = Raw {
        sock,
        rx: BytesMut::new(),
        version: 6,
    };
    let mut out = BytesMut::new();
    encode_magic(&mut out);
    ResourceProposal::new(RAW_PROTOCOL_NAME, 6)
        .encode(&mut out)
        .unwrap();
    c.send(&out.split());
    assert_eq!(c.read(NegotiationReply::decode), NegotiationReply::Ok);
    encode_utf("0b0c4f43-8f0e-4e8e-a8a0-1d2c3b4a5f60", &mut out).unwrap();
    encode_utf(&format!("nifi://127.0.0.1:{raw_port}"), &mut out).unwrap();
    out.extend_from_slice(&(props.len() as i32).to_be_bytes());
    for (k, v) in props {
        encode_utf(k, &mut out).unwrap();
        encode_utf(v, &mut out).unwrap();
    }
    c.send(&out);
    let reply = c.response();
    (c, reply)
}

/// Handshake refusals decode with the message framing of the response-code table.
#[tokio::test(flavor = "multi_thread")]
async fn handshake_refusals_are_framed_as_the_table_says() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("proto-refusals").await.unwrap();
    port.stop().await.unwrap();
    let id = port.id().to_owned();
    let nifi2 = nifi.clone();
    tokio::task::spawn_blocking(move || {
        let unknown = "00000000-0000-4000-8000-000000000000";
        let cases: [(&[(&str, &str)], ResponseCode); 5] = [
            (
                &[("GZIP", "false"), ("PORT_IDENTIFIER", unknown)],
                ResponseCode::UNKNOWN_PORT,
            ),
            (
                &[("GZIP", "false"), ("PORT_IDENTIFIER", &id)],
                ResponseCode::PORT_NOT_IN_VALID_STATE,
            ),
            (
                &[("GZIP", "false"), ("NO_SUCH_PROPERTY", "1")],
                ResponseCode::UNKNOWN_PROPERTY_NAME,
            ),
            (
                &[("GZIP", "false"), ("REQUEST_EXPIRATION_MILLIS", "soon")],
                ResponseCode::ILLEGAL_PROPERTY_VALUE,
            ),
            (
                &[("REQUEST_EXPIRATION_MILLIS", "30000")],
                ResponseCode::MISSING_PROPERTY,
            ),
        ];
        for (props, want) in cases {
            let (mut c, reply) = raw_handshake(&nifi2, props);
            assert_eq!(reply.code, want, "{props:?}: {reply:?}");
            assert_eq!(reply.message.is_some(), want.carries_message());
            if let Some(m) = &reply.message {
                assert!(!m.is_empty(), "{want}: NiFi explains");
                eprintln!("{want}: {m:?}");
            }
            if want == ResponseCode::MISSING_PROPERTY {
                // The exact bytes of the TV2 error example of docs/site-to-site.md §14.
                assert_eq!(reply.message.as_deref(), Some("Missing Property GZIP"));
            }
            // Nothing follows the frame: the buffer holds no stray bytes.
            assert!(c.rx.is_empty(), "{want}: {:?}", c.rx);
            let mut probe = [0u8; 1];
            if want != ResponseCode::PORT_NOT_IN_VALID_STATE {
                // NiFi closes after these refusals (docs/site-to-site.md §2.3).
                let n = c.sock.read(&mut probe).unwrap_or(0);
                assert_eq!(n, 0, "{want}: connection closed");
            }
        }
    })
    .await
    .unwrap();
    port.delete().await.unwrap();
}

/// The CRC two-phase confirm's failure paths on the real server: our BAD_CHECKSUM on SEND
/// rolls NiFi back; a wrong CRC on RECEIVE gets NiFi's BAD_CHECKSUM and a rollback.
#[tokio::test(flavor = "multi_thread")]
async fn bad_checksum_paths_roll_back() {
    let nifi = nifi_or_skip!();
    let pair = nifi.port_pair("proto-badcrc").await.unwrap();
    let (in_id, out_id) = (pair.input.id().to_owned(), pair.output.id().to_owned());
    let nifi2 = nifi.clone();
    let in2 = in_id.clone();
    tokio::task::spawn_blocking(move || {
        let (mut c, reply) = Raw::open(&nifi2, Some(&in2), false);
        assert_eq!(reply.code, ResponseCode::PROPERTIES_OK);
        c.negotiate_codec();
        let mut out = BytesMut::new();
        RequestType::SendFlowFiles.encode(&mut out);
        flowfile::encode(&FlowFile::new(&b"rolled back"[..]), &mut out);
        ResponseCode::FINISH_TRANSACTION.encode(&mut out);
        c.send(&out.split());
        assert_eq!(c.response().code, ResponseCode::CONFIRM_TRANSACTION);
        ResponseCode::BAD_CHECKSUM.encode(&mut out);
        c.send(&out);
        let mut probe = [0u8; 1];
        assert_eq!(c.sock.read(&mut probe).unwrap_or(0), 0, "NiFi closes");
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        pair.input.queued_count().await.unwrap(),
        0,
        "nothing committed"
    );

    // One real FlowFile, then a RECEIVE answered with a wrong CRC.
    let nifi2 = nifi.clone();
    tokio::task::spawn_blocking(move || {
        let (mut c, _) = Raw::open(&nifi2, Some(&in_id), false);
        c.negotiate_codec();
        let f = FlowFile::new(&b"kept"[..]).with_attribute("filename", "kept.txt");
        assert_eq!(
            c.send_transaction(&[f], false),
            ResponseCode::TRANSACTION_FINISHED
        );
        c.shutdown();
    })
    .await
    .unwrap();
    pair.input
        .wait_for_queued(1, Duration::from_secs(60))
        .await
        .unwrap();
    let nifi2 = nifi.clone();
    tokio::task::spawn_blocking(move || {
        let (mut c, _) = Raw::open(&nifi2, Some(&out_id), false);
        c.negotiate_codec();
        let mut out = BytesMut::new();
        RequestType::ReceiveFlowFiles.encode(&mut out);
        c.send(&out.split());
        assert_eq!(c.response().code, ResponseCode::MORE_DATA);
        let mut d = FlowFileDecoder::default();
        let f = c.read(|b| d.decode(b));
        assert_eq!(&f.content[..], b"kept");
        assert_eq!(c.response().code, ResponseCode::FINISH_TRANSACTION);
        Response::with_message(ResponseCode::CONFIRM_TRANSACTION, "12345")
            .encode(&mut out)
            .unwrap();
        c.send(&out);
        assert_eq!(c.response(), Response::new(ResponseCode::BAD_CHECKSUM));
    })
    .await
    .unwrap();
    // Rolled back: the same FlowFile is offered again.
    let nifi2 = nifi.clone();
    let out_id = pair.output.id().to_owned();
    let again = tokio::task::spawn_blocking(move || receive_all(&nifi2, &out_id, false))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(&again[0].content[..], b"kept");
    assert_eq!(again[0].attribute("filename"), Some("kept.txt"));
    pair.delete().await.unwrap();
}

/// docs/site-to-site.md §0.1/§2.2: ABORT in protocol negotiation carries no message; an unknown resource
/// gets no reply at all; SHUTDOWN gets no reply and NiFi closes.
#[tokio::test(flavor = "multi_thread")]
async fn negotiation_refusals_and_shutdown() {
    let nifi = nifi_or_skip!();
    let raw_port = nifi.raw_port().expect("RAW site-to-site enabled");
    let nifi2 = nifi.clone();
    tokio::task::spawn_blocking(move || {
        let short = Some(Duration::from_secs(3));
        let connect = |name: &str, version: i32| {
            let mut sock = TcpStream::connect(("127.0.0.1", raw_port)).unwrap();
            sock.set_read_timeout(short).unwrap();
            let mut out = BytesMut::new();
            encode_magic(&mut out);
            ResourceProposal::new(name, version)
                .encode(&mut out)
                .unwrap();
            sock.write_all(&out).unwrap();
            sock
        };
        let read_all = |sock: &mut TcpStream| {
            let mut got = Vec::new();
            let mut chunk = [0u8; 256];
            // Until EOF, reset or the short timeout.
            while let Ok(n) = sock.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            got
        };

        // No version <= 0 exists: a bare ABORT byte, no message after it.
        let mut sock = connect(RAW_PROTOCOL_NAME, 0);
        assert_eq!(read_all(&mut sock), [0xFF]);

        // Unknown resource: nothing at all.
        let mut sock = connect("NoSuchProtocol", 1);
        assert_eq!(read_all(&mut sock), Vec::<u8>::new());

        // SHUTDOWN: no reply, connection closed.
        let (mut c, reply) = Raw::open(&nifi2, None, false);
        assert_eq!(reply.code, ResponseCode::PROPERTIES_OK);
        let mut out = BytesMut::new();
        RequestType::Shutdown.encode(&mut out);
        c.send(&out);
        c.sock.set_read_timeout(short).unwrap();
        let mut probe = [0u8; 16];
        assert_eq!(
            c.sock.read(&mut probe).unwrap(),
            0,
            "EOF right after SHUTDOWN"
        );
    })
    .await
    .unwrap();
}
