use super::*;
use crate::FlowFile;
use crate::codec::flowfile::Limits;
use crate::stream::{FlowFileReader, FlowFileWriter};
use bytes::BytesMut;

fn f1() -> FlowFile {
    FlowFile::new(&b"hello"[..])
        .with_attribute("filename", "hello.txt")
        .with_attribute("path", "./")
}

/// An HTTP body as the client writes it: `out`, then the passed-through content.
fn body(writer: &mut FlowFileWriter, ffs: &[FlowFile]) -> Vec<u8> {
    let mut wire = Vec::new();
    for ff in ffs {
        let mut out = BytesMut::new();
        let content = writer.write_flowfile(ff, &mut out).unwrap();
        wire.extend_from_slice(&out);
        wire.extend_from_slice(content.as_deref().unwrap_or_default());
    }
    wire
}

#[test]
fn tv12_send_body_and_checksum() {
    let mut w = FlowFileWriter::new(false);
    let wire = body(&mut w, &[f1()]);
    assert_eq!(wire.len(), 56);
    assert_eq!(w.checksum(), 4_046_154_554);
    assert_eq!(parse_checksum("4046154554\n"), Some(w.checksum()));
    assert_eq!(w.flowfiles(), 1);
}

#[test]
fn tv12_urls() {
    let api = "http://nifi1:8080/nifi-api";
    let port = "c56a4180-65aa-42ec-a945-5fd21dec0538";
    assert_eq!(
        create_transaction_url(api, Direction::Send, port),
        format!("{api}/data-transfer/input-ports/{port}/transactions")
    );
    let loc = format!("{api}/data-transfer/output-ports/{port}/transactions/tx");
    assert_eq!(flow_files_url(&loc), format!("{loc}/flow-files"));
    assert_eq!(commit_send_url(&loc), format!("{loc}?responseCode=12"));
    assert_eq!(
        commit_receive_url(&loc, 4_046_154_554),
        format!("{loc}?responseCode=12&checksum=4046154554")
    );
    assert_eq!(cancel_url(&loc), format!("{loc}?responseCode=15"));
    assert_eq!(bad_checksum_url(&loc), format!("{loc}?responseCode=19"));
}

#[test]
fn receive_body_roundtrip_plain_and_compressed_in_pieces() {
    for compression in [false, true] {
        let mut tx = FlowFileWriter::new(compression);
        let ffs = [
            f1(),
            FlowFile::new(vec![7u8; 100_000]).with_attribute("a", "b"),
        ];
        let wire = body(&mut tx, &ffs);
        let mut rx = FlowFileReader::new(compression, Limits::default());
        let mut got = Vec::new();
        let mut buf = BytesMut::new();
        for b in wire.chunks(997) {
            buf.extend_from_slice(b);
            while let Some(ff) = rx.next_flowfile(&mut buf).unwrap() {
                got.push(ff);
            }
        }
        assert!(rx.is_idle() && buf.is_empty());
        assert_eq!(got, ffs);
        assert_eq!(rx.checksum(), tx.checksum());
    }
}

#[test]
fn receive_body_truncated_is_not_idle() {
    let mut tx = FlowFileWriter::new(false);
    let wire = body(&mut tx, &[f1()]);
    let mut rx = FlowFileReader::new(false, Limits::default());
    let mut buf = BytesMut::from(&wire[..wire.len() - 1]);
    assert_eq!(rx.next_flowfile(&mut buf).unwrap(), None);
    assert!(!rx.is_idle());
}

#[test]
fn handshake_headers_always_carry_the_version() {
    let h = HandshakeHeaders::default().to_headers();
    assert_eq!(h, vec![(headers::PROTOCOL_VERSION, "1".to_string())]);
    let h = HandshakeHeaders {
        compression: true,
        request_expiration_millis: 30_000,
        batch_count: 5,
        ..Default::default()
    }
    .to_headers();
    assert!(h.contains(&(headers::USE_COMPRESSION, "true".into())));
    assert!(h.contains(&(headers::REQUEST_EXPIRATION, "30000".into())));
    assert!(h.contains(&(headers::BATCH_COUNT, "5".into())));
}

#[test]
fn status_mapping_of_spec_7_3() {
    use Failure::*;
    let cases = [
        (
            400,
            Some(250),
            "Protocol version was not specified.",
            BadRequest,
            false,
        ),
        (400, Some(231), "bad value", BadRequest, false),
        (401, None, "Unable to authorize", Unauthorized, false),
        (401, Some(240), "x", Unauthorized, false),
        (
            403,
            None,
            "HTTP(S) Site-to-Site is not enabled on this host.",
            HttpDisabled,
            false,
        ),
        (
            403,
            None,
            "Contact the system administrator.",
            Unauthorized,
            false,
        ),
        (404, Some(200), "", UnknownPort, false),
        (
            404,
            Some(250),
            "Transaction was not found.",
            TransactionNotFound,
            true,
        ),
        (404, Some(250), "Port was not found.", UnknownPort, false),
        (
            404,
            None,
            "Unable to find port with id 'x'.",
            UnknownPort,
            false,
        ),
        (
            500,
            Some(250),
            "Server encountered an exception.",
            ServerError,
            true,
        ),
        (503, Some(201), "not running", PortNotRunning, true),
        (503, Some(202), "full", DestinationFull, true),
        (415, None, "", UnsupportedEncoding, false),
    ];
    for (status, rc, body, want, retry) in cases {
        let got = classify(status, rc, body);
        assert_eq!(got, want, "{status} {rc:?} {body}");
        assert_eq!(got.is_retryable(), retry, "{status} {rc:?}");
    }
}

#[test]
fn ttl_is_bounded() {
    assert_eq!(parse_ttl("30"), Some(30));
    assert_eq!(parse_ttl("0"), None);
    assert_eq!(parse_ttl("999999999"), None);
    assert_eq!(parse_ttl("x"), None);
    assert_eq!(keep_alive_interval_millis(30), 15_000);
}
