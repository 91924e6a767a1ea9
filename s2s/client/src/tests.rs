//! Driver tests: the tokio connection and transaction API against a scripted, fault-injecting
//! fake NiFi over an in-memory duplex pipe. One test (or more) per RAW row of the reference's
//! error table (docs/site-to-site.md §0.1); timeouts run on paused time.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use s2s_proto::FlowFile;
use s2s_proto::codec::DecodeError;
use s2s_proto::codec::checksum::TransactionChecksum;
use s2s_proto::codec::flowfile::{self, FlowFileDecoder};
use s2s_proto::codec::handshake::{ReceivedHandshake, RequestType};
use s2s_proto::codec::negotiation::{NegotiationReply, ResourceProposal, decode_magic};
use s2s_proto::codec::response_code::{Response, ResponseCode};
use s2s_proto::raw::SessionConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::connection::Connection;
use crate::transaction::{ReceiveSummary, ReceiveTransaction, SendTransaction};
use crate::{Client, Error};

const PORT: &str = "c56a4180-65aa-42ec-a945-5fd21dec0538";
const TIMEOUT: Duration = Duration::from_secs(30);

/// The server half of the pipe plus a read buffer.
struct FakePeer {
    io: Box<dyn crate::AsyncStream>,
    buf: BytesMut,
}

impl FakePeer {
    /// Reads until `parse` yields a value; `None` on EOF.
    async fn read<T>(
        &mut self,
        mut parse: impl FnMut(&mut BytesMut) -> Result<Option<T>, DecodeError>,
    ) -> Option<T> {
        loop {
            if let Some(v) = parse(&mut self.buf).expect("client sent malformed bytes") {
                return Some(v);
            }
            if self.io.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    async fn write(&mut self, b: &[u8]) {
        self.io.write_all(b).await.unwrap();
    }

    async fn rc(&mut self, code: ResponseCode, msg: Option<&str>) {
        let mut b = BytesMut::new();
        match msg {
            Some(m) => Response::with_message(code, m),
            None => Response::new(code),
        }
        .encode(&mut b)
        .unwrap();
        self.write(&b).await;
    }

    async fn read_rc(&mut self) -> Option<Response> {
        self.read(Response::decode).await
    }

    /// Magic + proposal; answers with `reply` and returns the proposed version.
    async fn negotiate(&mut self, reply: NegotiationReply, magic: bool) -> i32 {
        if magic {
            self.read(decode_magic).await.unwrap();
        }
        let p = self.read(ResourceProposal::decode).await.unwrap();
        let mut b = BytesMut::new();
        reply.encode(&mut b);
        self.write(&b).await;
        p.version
    }

    async fn handshake(&mut self, version: i32) -> ReceivedHandshake {
        self.read(|b| ReceivedHandshake::decode(b, version))
            .await
            .unwrap()
    }

    /// Negotiation (v6), handshake OK, codec OK.
    async fn accept(&mut self) -> ReceivedHandshake {
        let v = self.negotiate(NegotiationReply::Ok, true).await;
        let hs = self.handshake(v).await;
        self.rc(ResponseCode::PROPERTIES_OK, None).await;
        assert_eq!(
            self.read(RequestType::decode).await,
            Some(RequestType::NegotiateFlowFileCodec)
        );
        self.negotiate(NegotiationReply::Ok, false).await;
        hs
    }

    /// Reads a whole SEND transaction (request, FlowFiles, markers up to FINISH).
    async fn read_send(&mut self) -> Option<(Vec<FlowFile>, TransactionChecksum)> {
        assert_eq!(
            self.read(RequestType::decode).await?,
            RequestType::SendFlowFiles
        );
        let mut crc = TransactionChecksum::new();
        let mut ffs = Vec::new();
        loop {
            let mut d = FlowFileDecoder::default();
            let ff = self.read(|b| d.decode(b)).await?;
            ff.add_to_checksum(&mut crc);
            ffs.push(ff);
            match self.read_rc().await?.code {
                ResponseCode::CONTINUE_TRANSACTION => {}
                ResponseCode::FINISH_TRANSACTION => return Some((ffs, crc)),
                other => panic!("unexpected marker {other}"),
            }
        }
    }

    /// Serves `ffs` to a RECEIVE request up to FINISH; returns the CRC.
    async fn serve(&mut self, ffs: &[FlowFile]) -> TransactionChecksum {
        assert_eq!(
            self.read(RequestType::decode).await,
            Some(RequestType::ReceiveFlowFiles)
        );
        let mut b = BytesMut::new();
        let mut crc = TransactionChecksum::new();
        Response::new(ResponseCode::MORE_DATA)
            .encode(&mut b)
            .unwrap();
        for (i, f) in ffs.iter().enumerate() {
            if i > 0 {
                Response::new(ResponseCode::CONTINUE_TRANSACTION)
                    .encode(&mut b)
                    .unwrap();
            }
            flowfile::encode(f, &mut b);
            f.add_to_checksum(&mut crc);
        }
        Response::new(ResponseCode::FINISH_TRANSACTION)
            .encode(&mut b)
            .unwrap();
        self.write(&b).await;
        crc
    }

    async fn expect_eof(&mut self) {
        let mut scratch = [0u8; 64];
        loop {
            match self.io.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

fn pipe() -> (DuplexStream, FakePeer) {
    let (c, s) = tokio::io::duplex(1 << 20);
    (
        c,
        FakePeer {
            io: Box::new(s),
            buf: BytesMut::new(),
        },
    )
}

fn cfg(port: Option<&str>) -> SessionConfig {
    let mut c = SessionConfig::new("comms", "nifi://fake:1");
    c.port_id = port.map(str::to_owned);
    c
}

async fn establish(io: DuplexStream) -> Result<Connection, Error> {
    Connection::establish(
        Box::new(io),
        cfg(Some(PORT)),
        Some(TIMEOUT),
        "fake:1".into(),
    )
    .await
}

fn test_client() -> Client {
    Client::builder("http://127.0.0.1:9/nifi").build().unwrap()
}

fn send_tx(conn: Connection) -> SendTransaction {
    SendTransaction::for_test(test_client(), conn, PORT)
}

fn f(i: u32) -> FlowFile {
    FlowFile::new(format!("content {i}")).with_attribute("i", i.to_string())
}

// ---- Protocol negotiation ------------------------------------------------------------------

#[tokio::test]
async fn negotiation_steps_down_to_the_servers_version() {
    let (c, mut p) = pipe();
    let peer = tokio::spawn(async move {
        assert_eq!(
            p.negotiate(NegotiationReply::DifferentVersion(4), true)
                .await,
            6
        );
        assert_eq!(p.negotiate(NegotiationReply::Ok, false).await, 4);
        p.handshake(4).await;
        p.rc(ResponseCode::PROPERTIES_OK, None).await;
        p.read(RequestType::decode).await.unwrap();
        p.negotiate(NegotiationReply::Ok, false).await;
        p
    });
    let conn = establish(c).await.unwrap();
    assert_eq!(conn.session.protocol_version(), 4);
    peer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn negotiation_abort_fails_at_once_without_waiting_for_a_message() {
    let (c, mut p) = pipe();
    let peer = tokio::spawn(async move {
        p.negotiate(NegotiationReply::Abort, true).await;
        // NiFi leaves the socket open and says nothing more.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(p);
    });
    let start = tokio::time::Instant::now();
    let e = establish(c).await.unwrap_err();
    assert!(!e.is_timeout(), "{e}");
    assert!(!e.is_retryable(), "{e}");
    assert!(
        start.elapsed() < TIMEOUT,
        "must not wait for the read timeout"
    );
    peer.abort();
}

#[tokio::test(start_paused = true)]
async fn no_reply_at_all_hits_the_read_timeout() {
    let (c, mut p) = pipe();
    let peer = tokio::spawn(async move {
        p.read(decode_magic).await;
        // Bad magic / unknown resource: NiFi writes nothing and keeps the socket.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(p);
    });
    let start = tokio::time::Instant::now();
    let e = establish(c).await.unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(e.is_retryable());
    assert!(start.elapsed() >= TIMEOUT);
    peer.abort();
}

// ---- Handshake ----------------------------------------------------------------------------

async fn refused(code: ResponseCode, msg: Option<&str>, close: bool) -> Error {
    let (c, mut p) = pipe();
    let msg = msg.map(str::to_owned);
    let peer = tokio::spawn(async move {
        let v = p.negotiate(NegotiationReply::Ok, true).await;
        p.handshake(v).await;
        p.rc(code, msg.as_deref()).await;
        if !close {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
    let e = establish(c).await.unwrap_err();
    peer.abort();
    e
}

#[tokio::test(start_paused = true)]
async fn handshake_unknown_port() {
    let e = refused(ResponseCode::UNKNOWN_PORT, None, true).await;
    assert!(e.is_unknown_port(), "{e}");
    assert!(!e.is_retryable());
    assert_eq!(e.response_code(), Some(ResponseCode::UNKNOWN_PORT));
}

#[tokio::test(start_paused = true)]
async fn handshake_port_not_running() {
    let e = refused(
        ResponseCode::PORT_NOT_IN_VALID_STATE,
        Some("Port not running"),
        false,
    )
    .await;
    assert!(e.is_port_not_running(), "{e}");
    assert!(e.is_retryable());
    assert!(e.to_string().contains("Port not running"));
}

#[tokio::test(start_paused = true)]
async fn handshake_destination_full() {
    let e = refused(ResponseCode::PORTS_DESTINATION_FULL, None, false).await;
    assert!(e.is_destination_full(), "{e}");
    assert!(e.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn handshake_unauthorized() {
    let e = refused(
        ResponseCode::UNAUTHORIZED,
        Some("User DN is not known"),
        false,
    )
    .await;
    assert!(e.is_unauthorized(), "{e}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("User DN is not known"));
}

#[tokio::test(start_paused = true)]
async fn handshake_property_errors_are_fatal() {
    for code in [
        ResponseCode::UNKNOWN_PROPERTY_NAME,
        ResponseCode::ILLEGAL_PROPERTY_VALUE,
        ResponseCode::MISSING_PROPERTY,
    ] {
        let e = refused(code, Some("Missing Property GZIP"), true).await;
        assert!(!e.is_retryable(), "{code}: {e}");
        assert!(e.to_string().contains("Missing Property GZIP"), "{e}");
    }
}

#[tokio::test(start_paused = true)]
async fn handshake_closed_without_code() {
    let (c, mut p) = pipe();
    tokio::spawn(async move {
        let v = p.negotiate(NegotiationReply::Ok, true).await;
        p.handshake(v).await;
        drop(p);
    });
    let e = establish(c).await.unwrap_err();
    assert!(e.is_closed(), "{e}");
    assert!(e.is_retryable());
}

// ---- Codec negotiation ----------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn codec_negotiation_abort_with_message_and_eof() {
    for eof in [false, true] {
        let (c, mut p) = pipe();
        let peer = tokio::spawn(async move {
            let v = p.negotiate(NegotiationReply::Ok, true).await;
            p.handshake(v).await;
            p.rc(ResponseCode::PROPERTIES_OK, None).await;
            p.read(RequestType::decode).await.unwrap();
            p.read(ResourceProposal::decode).await.unwrap();
            if eof {
                return;
            }
            // 0xFF + utf message, then NiFi (buggily) keeps reading.
            p.write(b"\xff\x00\x05no port").await;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        let e = establish(c).await.unwrap_err();
        assert!(!e.is_timeout(), "{e}");
        if eof {
            assert!(e.is_closed(), "{e}");
        } else {
            assert!(!e.is_retryable(), "{e}");
        }
        peer.abort();
    }
}

// ---- SEND ---------------------------------------------------------------------------------

#[tokio::test]
async fn send_commit_happy_path_and_pool_return() {
    let (c, mut p) = pipe();
    let peer = tokio::spawn(async move {
        p.accept().await;
        let (ffs, crc) = p.read_send().await.unwrap();
        p.rc(ResponseCode::CONFIRM_TRANSACTION, Some(&crc.to_decimal()))
            .await;
        assert_eq!(
            p.read_rc().await.unwrap(),
            Response::with_message(ResponseCode::CONFIRM_TRANSACTION, "")
        );
        p.rc(ResponseCode::TRANSACTION_FINISHED, None).await;
        ffs
    });
    let conn = establish(c).await.unwrap();
    let mut tx = send_tx(conn);
    let client = tx.client_for_test();
    for i in 0..3 {
        tx.send(f(i)).await.unwrap();
    }
    let s = tx.commit().await.unwrap();
    assert_eq!(
        (s.flowfiles, s.transactions, s.destination_full),
        (3, 1, false)
    );
    assert_eq!(peer.await.unwrap(), vec![f(0), f(1), f(2)]);
    assert_eq!(client.pooled_connections(), 1);
}

#[tokio::test]
async fn send_crc_mismatch_sends_bad_checksum_and_keeps_data() {
    let (c, mut p) = pipe();
    let peer = tokio::spawn(async move {
        p.accept().await;
        p.read_send().await.unwrap();
        p.rc(ResponseCode::CONFIRM_TRANSACTION, Some("12345")).await;
        let r = p.read_rc().await.unwrap();
        p.expect_eof().await;
        r
    });
    let mut tx = send_tx(establish(c).await.unwrap());
    let client = tx.client_for_test();
    tx.send(f(1)).await.unwrap();
    let e = tx.commit().await.unwrap_err();
    assert_eq!(e.response_code(), Some(ResponseCode::BAD_CHECKSUM));
    assert!(
        e.is_retryable(),
        "the caller still has the data and may resend"
    );
    assert_eq!(peer.await.unwrap().code, ResponseCode::BAD_CHECKSUM);
    assert_eq!(
        client.pooled_connections(),
        0,
        "connection closed, not pooled"
    );
}

#[tokio::test]
async fn send_destination_full_on_commit_is_success_with_backoff() {
    let (c, mut p) = pipe();
    tokio::spawn(async move {
        p.accept().await;
        let (_, crc) = p.read_send().await.unwrap();
        p.rc(ResponseCode::CONFIRM_TRANSACTION, Some(&crc.to_decimal()))
            .await;
        p.read_rc().await.unwrap();
        p.rc(
            ResponseCode::TRANSACTION_FINISHED_BUT_DESTINATION_FULL,
            None,
        )
        .await;
        p.expect_eof().await;
    });
    let mut tx = send_tx(establish(c).await.unwrap());
    let client = tx.client_for_test();
    tx.send(f(1)).await.unwrap();
    let s = tx.commit().await.unwrap();
    assert!(s.destination_full);
    assert_eq!(s.flowfiles, 1);
    // The peer is penalized for this port: it is skipped until the penalty expires.
    let mut pen = client.inner.penalties.lock().unwrap();
    assert!(pen.is_penalized("fake:1", PORT, std::time::Instant::now()));
    assert!(!pen.is_penalized("fake:1", "other-port", std::time::Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn send_complete_unknown_outcome_keeps_data() {
    // Anything but 13/14 after the confirm, EOF, or silence: outcome unknown → retryable
    // error (the caller keeps its data), or protocol error for a wrong code.
    for mode in ["wrong-code", "eof", "silence", "no-prefix", "unknown-code"] {
        let (c, mut p) = pipe();
        let peer = tokio::spawn(async move {
            p.accept().await;
            let (_, crc) = p.read_send().await.unwrap();
            p.rc(ResponseCode::CONFIRM_TRANSACTION, Some(&crc.to_decimal()))
                .await;
            p.read_rc().await.unwrap();
            match mode {
                "wrong-code" => p.rc(ResponseCode::CANCEL_TRANSACTION, Some("x")).await,
                "eof" => return,
                "no-prefix" => p.write(b"XY\x0d").await,
                "unknown-code" => p.write(b"RC\x63").await,
                _ => {}
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        let mut tx = send_tx(establish(c).await.unwrap());
        let client = tx.client_for_test();
        tx.send(f(1)).await.unwrap();
        let e = tx.commit().await.unwrap_err();
        match mode {
            "eof" => assert!(e.is_closed(), "{mode}: {e}"),
            "silence" => assert!(e.is_timeout(), "{mode}: {e}"),
            _ => assert!(!e.is_timeout() && !e.is_closed(), "{mode}: {e}"),
        }
        assert_eq!(
            client.pooled_connections(),
            0,
            "{mode}: poisoned, not pooled"
        );
        peer.abort();
    }
}

#[tokio::test]
async fn dropping_an_uncommitted_send_closes_the_connection() {
    let (c, mut p) = pipe();
    let peer = tokio::spawn(async move {
        p.accept().await;
        assert_eq!(
            p.read(RequestType::decode).await,
            Some(RequestType::SendFlowFiles)
        );
        let mut d = FlowFileDecoder::default();
        p.read(|b| d.decode(b)).await.unwrap();
        // No FINISH ever comes: the client went away, so NiFi rolls back.
        p.expect_eof().await;
    });
    let mut tx = send_tx(establish(c).await.unwrap());
    let client = tx.client_for_test();
    tx.send(f(1)).await.unwrap();
    tx.flush_for_test().await;
    drop(tx);
    tokio::time::timeout(Duration::from_secs(5), peer)
        .await
        .expect("peer saw EOF")
        .unwrap();
    assert_eq!(client.pooled_connections(), 0);
}

#[tokio::test]
async fn cancel_writes_cancel_transaction_then_closes() {
    let (c, mut p) = pipe();
    let peer = tokio::spawn(async move {
        p.accept().await;
        p.read(RequestType::decode).await.unwrap();
        let mut d = FlowFileDecoder::default();
        p.read(|b| d.decode(b)).await.unwrap();
        let r = p.read_rc().await.unwrap();
        p.expect_eof().await;
        r
    });
    let mut tx = send_tx(establish(c).await.unwrap());
    tx.send(f(1)).await.unwrap();
    tx.cancel().await;
    let r = peer.await.unwrap();
    assert_eq!(r.code, ResponseCode::CANCEL_TRANSACTION);
    assert_eq!(r.message.as_deref(), Some("cancelled by client"));
}

// ---- RECEIVE ------------------------------------------------------------------------------

async fn receive_tx(conn: Connection) -> Result<ReceiveTransaction, Error> {
    ReceiveTransaction::begin_for_test(test_client(), conn, PORT).await
}

#[tokio::test]
async fn receive_happy_path_confirms_after_persisting() {
    let (c, mut p) = pipe();
    let peer = tokio::spawn(async move {
        p.accept().await;
        let crc = p.serve(&[f(1), FlowFile::new(Bytes::new()), f(2)]).await;
        let r = p.read_rc().await.unwrap();
        assert_eq!(r.message.as_deref(), Some(crc.to_decimal().as_str()));
        p.rc(ResponseCode::CONFIRM_TRANSACTION, Some("")).await;
        assert_eq!(
            p.read_rc().await.unwrap().code,
            ResponseCode::TRANSACTION_FINISHED
        );
        // Next exchange: empty port.
        assert_eq!(
            p.read(RequestType::decode).await,
            Some(RequestType::ReceiveFlowFiles)
        );
        p.rc(ResponseCode::NO_MORE_DATA, None).await;
    });
    let mut rx = receive_tx(establish(c).await.unwrap()).await.unwrap();
    let got: Vec<FlowFile> = {
        use futures_util::StreamExt;
        rx.stream().map(Result::unwrap).collect().await
    };
    assert_eq!(got, vec![f(1), FlowFile::new(Bytes::new()), f(2)]);
    let client = rx.client_for_test();
    let s = rx.confirm().await.unwrap();
    assert_eq!(
        s,
        ReceiveSummary {
            flowfiles: 3,
            bytes: 18
        }
    );
    // The connection went back to the pool and serves the next (empty) receive.
    let mut rx = client.receive_pooled_for_test(PORT).await.unwrap();
    assert!(rx.next().await.unwrap().is_none());
    rx.confirm().await.unwrap();
    peer.await.unwrap();
}

#[tokio::test]
async fn receive_start_other_than_more_or_no_data_is_a_protocol_error() {
    let (c, mut p) = pipe();
    tokio::spawn(async move {
        p.accept().await;
        p.read(RequestType::decode).await.unwrap();
        p.rc(ResponseCode::TRANSACTION_FINISHED, None).await;
        p.expect_eof().await;
    });
    let e = receive_tx(establish(c).await.unwrap()).await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
}

#[tokio::test]
async fn receive_bad_checksum_from_nifi_discards_the_batch() {
    let (c, mut p) = pipe();
    tokio::spawn(async move {
        p.accept().await;
        p.serve(&[f(1)]).await;
        p.read_rc().await.unwrap();
        p.rc(ResponseCode::BAD_CHECKSUM, None).await;
        p.expect_eof().await;
    });
    let mut rx = receive_tx(establish(c).await.unwrap()).await.unwrap();
    assert_eq!(rx.next().await.unwrap(), Some(f(1)));
    let e = rx.next().await.unwrap_err();
    assert_eq!(e.response_code(), Some(ResponseCode::BAD_CHECKSUM));
    // The transaction is dead: no confirm possible, NiFi will redeliver.
    assert!(rx.confirm().await.is_err());
}

#[tokio::test(start_paused = true)]
async fn receive_mid_transaction_faults() {
    for mode in ["eof", "silence", "no-prefix", "truncated-content"] {
        let (c, mut p) = pipe();
        let peer = tokio::spawn(async move {
            p.accept().await;
            p.read(RequestType::decode).await.unwrap();
            let mut b = BytesMut::new();
            Response::new(ResponseCode::MORE_DATA)
                .encode(&mut b)
                .unwrap();
            flowfile::encode(&f(1), &mut b);
            match mode {
                "no-prefix" => b.extend_from_slice(b"XX\x0b"),
                "truncated-content" => {
                    let n = b.len() - 3;
                    b.truncate(n);
                }
                _ => {}
            }
            p.write(&b).await;
            if mode == "eof" || mode == "truncated-content" {
                return;
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        // The fault may surface on the first read (together with MORE_DATA) or later.
        let mut err = None;
        let mut rx = None;
        match receive_tx(establish(c).await.unwrap()).await {
            Ok(r) => rx = Some(r),
            Err(e) => err = Some(e),
        }
        if let Some(rx) = rx.as_mut() {
            for _ in 0..3 {
                match rx.next().await {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("{mode}: must not finish"),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
        }
        let e = err.expect("an error");
        match mode {
            "silence" => assert!(e.is_timeout(), "{mode}: {e}"),
            "eof" | "truncated-content" => assert!(e.is_closed(), "{mode}: {e}"),
            _ => assert!(!e.is_retryable(), "{mode}: {e}"),
        }
        if let Some(rx) = rx {
            assert!(rx.confirm().await.is_err(), "{mode}: unconfirmable");
        }
        peer.abort();
    }
}

// ---- Pool ---------------------------------------------------------------------------------

#[tokio::test]
async fn pooled_connection_closed_by_nifi_is_detected_before_reuse() {
    let (c, p) = pipe();
    let client = test_client();
    let mut conn = {
        let peer = tokio::spawn(async move {
            let mut p = p;
            p.accept().await;
            p
        });
        let conn = establish(c).await.unwrap();
        let p = peer.await.unwrap();
        drop(p); // NiFi closed the idle connection (its 2 × expiration idle timeout)
        conn
    };
    assert!(!conn.is_alive().await, "EOF must be seen by the probe");
    client.checkin(PORT, conn);
    assert_eq!(client.pooled_connections(), 1);
    // checkout probes and discards the dead connection instead of handing it out.
    assert!(client.checkout_for_test("fake:1", PORT).await.is_none());
    assert_eq!(client.pooled_connections(), 0);

    let (c, mut p) = pipe();
    tokio::spawn(async move {
        p.accept().await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(p);
    });
    let mut live = establish(c).await.unwrap();
    assert!(live.is_alive().await);
}

#[tokio::test(start_paused = true)]
async fn idle_expired_pooled_connections_are_shut_down() {
    let (c, mut p) = pipe();
    let peer = tokio::spawn(async move {
        p.accept().await;
        let r = p.read(RequestType::decode).await;
        p.expect_eof().await;
        r
    });
    let client = Client::builder("http://127.0.0.1:9/nifi")
        .idle_expiration(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut conn = establish(c).await.unwrap();
    conn.last_used = std::time::Instant::now() - Duration::from_secs(31);
    client.checkin(PORT, conn);
    assert!(client.checkout_for_test("fake:1", PORT).await.is_none());
    let got = tokio::time::timeout(Duration::from_secs(5), peer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, Some(RequestType::Shutdown));
}

// ---- Client over TCP: discovery, peer list, overrides, penalization, failover -----------------

/// Serves `body` as the JSON answer to every HTTP request (discovery).
async fn fake_discovery(body: String) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut b = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).to_lowercase();
                assert!(text.contains("x-nifi-site-to-site-protocol-version: 1"));
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

/// A RAW listener whose connections are handled by `f`; returns its port and a connection
/// counter.
async fn fake_raw<F, Fut>(f: F) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>)
where
    F: Fn(FakePeer) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = count.clone();
    let f = std::sync::Arc::new(f);
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let f = f.clone();
            tokio::spawn(async move {
                f(FakePeer {
                    io: Box::new(s),
                    buf: BytesMut::new(),
                })
                .await;
            });
        }
    });
    (port, count)
}

fn discovery_json(raw: u16) -> String {
    format!(
        r#"{{"controller":{{"remoteSiteListeningPort":{raw},"siteToSiteSecure":false,
        "inputPorts":[{{"id":"{PORT}","name":"in","state":"RUNNING"}}],"outputPorts":[]}}}}"#
    )
}

/// Accepts any number of SEND transactions on one connection, recording the FlowFiles.
async fn good_nifi(mut p: FakePeer, got: std::sync::Arc<std::sync::Mutex<Vec<FlowFile>>>) {
    p.accept().await;
    while let Some((ffs, crc)) = p.read_send().await {
        p.rc(ResponseCode::CONFIRM_TRANSACTION, Some(&crc.to_decimal()))
            .await;
        if p.read_rc().await.is_none() {
            return;
        }
        got.lock().unwrap().extend(ffs);
        p.rc(ResponseCode::TRANSACTION_FINISHED, None).await;
    }
}

#[tokio::test]
async fn peer_list_overrides_penalization_and_failover() {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let (good, good_conns) = fake_raw(move |p| good_nifi(p, g.clone())).await;
    // A peer that accepts TCP and slams the door: every attempt fails.
    let (bad, bad_conns) = fake_raw(|p| async move { drop(p) }).await;
    // The bootstrap peer answers the peer list with two advertised (unreachable) names.
    let (boot, _) = fake_raw(|mut p| async move {
        let v = p.negotiate(NegotiationReply::Ok, true).await;
        let hs = p.handshake(v).await;
        assert!(
            hs.property(s2s_proto::codec::handshake::HandshakeProperty::PortIdentifier)
                .is_none()
        );
        p.rc(ResponseCode::PROPERTIES_OK, None).await;
        assert_eq!(
            p.read(RequestType::decode).await,
            Some(RequestType::RequestPeerList)
        );
        let peers = [("nifi-bad", 1111, 0), ("nifi-good", 2222, 0)].map(|(h, port, c)| {
            s2s_proto::codec::peers::Peer {
                hostname: h.into(),
                port,
                secure: false,
                flow_file_count: c,
            }
        });
        let mut b = BytesMut::new();
        s2s_proto::codec::peers::encode_peer_list(&peers, &mut b).unwrap();
        p.write(&b).await;
        assert_eq!(
            p.read(RequestType::decode).await,
            Some(RequestType::Shutdown)
        );
    })
    .await;
    let http = fake_discovery(discovery_json(boot)).await;
    let client = Client::builder(format!("http://127.0.0.1:{http}/nifi"))
        .peer_override("nifi-bad:1111", format!("127.0.0.1:{bad}"))
        .peer_override("nifi-good:2222", format!("127.0.0.1:{good}"))
        .penalization(Duration::from_secs(60))
        .build()
        .unwrap();
    let peers = client.peers().await.unwrap();
    assert_eq!(client.map_peer(&peers[1]), format!("127.0.0.1:{good}"));
    for i in 0..10 {
        let s = client.send_batch("in", vec![f(i)]).await.unwrap();
        assert_eq!(s.flowfiles, 1);
    }
    assert_eq!(got.lock().unwrap().len(), 10);
    // The failing peer was tried at most once, then penalized; the good one's connection pooled.
    assert!(bad_conns.load(std::sync::atomic::Ordering::SeqCst) <= 1);
    assert_eq!(good_conns.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn single_node_mode_ignores_the_peer_list_and_unknown_port_is_typed() {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let (good, _) = fake_raw(move |p| good_nifi(p, g.clone())).await;
    let http = fake_discovery(discovery_json(good)).await;
    let client = Client::builder(format!("http://127.0.0.1:{http}/nifi"))
        .single_node(true)
        .build()
        .unwrap();
    // By id as well as by name.
    client.send_batch("in", vec![f(1)]).await.unwrap();
    client.send_batch(PORT, vec![f(2)]).await.unwrap();
    assert_eq!(*got.lock().unwrap(), vec![f(1), f(2)]);
    let e = client.send_batch("out", vec![f(3)]).await.unwrap_err();
    assert!(e.is_unknown_port(), "{e}");
    // A receive looks only at output ports.
    let e = client.receive("in").await.unwrap_err();
    assert!(e.is_unknown_port(), "{e}");
}

#[tokio::test]
async fn send_batch_retries_a_transaction_that_failed_mid_way() {
    // First connection dies right after the FlowFiles (outcome unknown); the retry succeeds.
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (raw, conns) = fake_raw(move |mut p| {
        let g = g.clone();
        let first = first.clone();
        async move {
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                p.accept().await;
                p.read_send().await;
                return; // EOF instead of CONFIRM
            }
            good_nifi(p, g).await;
        }
    })
    .await;
    let http = fake_discovery(discovery_json(raw)).await;
    let client = Client::builder(format!("http://127.0.0.1:{http}/nifi"))
        .single_node(true)
        .penalization(Duration::from_millis(1))
        .build()
        .unwrap();
    let s = client.send_batch("in", vec![f(1), f(2)]).await.unwrap();
    assert_eq!(s.flowfiles, 2);
    assert_eq!(*got.lock().unwrap(), vec![f(1), f(2)]);
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn reaper_shuts_down_idle_connections_in_the_background() {
    let (c, mut p) = pipe();
    let peer = tokio::spawn(async move {
        p.accept().await;
        let r = p.read(RequestType::decode).await;
        p.expect_eof().await;
        r
    });
    let client = Client::builder("http://127.0.0.1:9/nifi")
        .idle_expiration(Duration::from_secs(30))
        .build()
        .unwrap();
    let conn = establish(c).await.unwrap();
    client.checkin(PORT, conn);
    assert_eq!(client.pooled_connections(), 1);
    // Paused time: the runtime auto-advances; the connection's last use is a std Instant, so
    // age it explicitly, then let the reaper tick.
    {
        let mut pool = client.inner.pool.lock().unwrap();
        for v in pool.values_mut() {
            for c in v {
                c.last_used = std::time::Instant::now() - Duration::from_secs(31);
            }
        }
    }
    let got = tokio::time::timeout(Duration::from_secs(60), peer)
        .await
        .expect("reaper closed the connection")
        .unwrap();
    assert_eq!(got, Some(RequestType::Shutdown));
    assert_eq!(client.pooled_connections(), 0);
}

// ---- TLS ------------------------------------------------------------------------------------

struct Pki {
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
    roots: rustls::RootCertStore,
    server: (
        rustls_pki_types::CertificateDer<'static>,
        rustls_pki_types::PrivateKeyDer<'static>,
    ),
    client: (
        rustls_pki_types::CertificateDer<'static>,
        rustls_pki_types::PrivateKeyDer<'static>,
    ),
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (
            cert.der().clone(),
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    Pki {
        provider: std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        roots,
        server: leaf(vec!["localhost".into(), "127.0.0.1".into()]),
        client: leaf(vec!["s2s-client".into()]),
    }
}

#[tokio::test]
async fn tls_with_client_certificate() {
    let pki = pki();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(pki.roots.clone()),
        pki.provider.clone(),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(pki.provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raw = l.local_addr().unwrap().port();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let acceptor = acceptor.clone();
            let g = g.clone();
            tokio::spawn(async move {
                // Like NiFi: a client without a certificate fails in the TLS handshake.
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                assert!(tls.get_ref().1.peer_certificates().is_some());
                good_nifi(
                    FakePeer {
                        io: Box::new(tls),
                        buf: BytesMut::new(),
                    },
                    g,
                )
                .await;
            });
        }
    });
    let body =
        discovery_json(raw).replace("\"siteToSiteSecure\":false", "\"siteToSiteSecure\":true");
    let http = fake_discovery(body).await;
    let url = format!("http://127.0.0.1:{http}/nifi");

    // Secure NiFi without TLS configured: a clear, fatal configuration error.
    let plain = Client::builder(url.clone())
        .single_node(true)
        .build()
        .unwrap();
    let e = plain.send_batch("in", vec![f(0)]).await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");

    // No client certificate: NiFi (and this fake) refuse in the TLS handshake.
    let anon = rustls::ClientConfig::builder_with_provider(pki.provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(pki.roots.clone())
        .with_no_client_auth();
    let c = Client::builder(url.clone())
        .single_node(true)
        .penalization(Duration::from_millis(10))
        .tls(std::sync::Arc::new(anon))
        .build()
        .unwrap();
    assert!(c.send_batch("in", vec![f(0)]).await.is_err());

    let tls = rustls::ClientConfig::builder_with_provider(pki.provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(pki.roots.clone())
        .with_client_auth_cert(vec![pki.client.0.clone()], pki.client.1.clone_key())
        .unwrap();
    let client = Client::builder(url)
        .single_node(true)
        .tls(std::sync::Arc::new(tls))
        .build()
        .unwrap();
    let s = client.send_batch("in", vec![f(1), f(2)]).await.unwrap();
    assert_eq!(s.flowfiles, 2);
    assert_eq!(*got.lock().unwrap(), vec![f(1), f(2)]);
    assert!(
        format!("{client:?}").contains("tls: true"),
        "Debug shows that TLS is on, never the key material"
    );
}

// ---- Byte-exact script (tokio-test mock): TV1, handshake, TV3, TV5 through the real driver ----

#[tokio::test]
async fn scripted_tv5_send_through_the_driver() {
    let f1 = FlowFile::new("hello")
        .with_attribute("filename", "hello.txt")
        .with_attribute("path", "./");
    let mut handshake = BytesMut::new();
    let mut hs = s2s_proto::codec::handshake::HandshakeRequest::new(
        "comms",
        "nifi://fake:1",
        Some(PORT.to_owned()),
    );
    hs.request_expiration_millis = 30_000;
    hs.encode(6, &mut handshake).unwrap();
    let mut tv3 = BytesMut::new();
    s2s_proto::codec::handshake::encode_codec_negotiation(&mut tv3);
    let mut tv5 = BytesMut::new();
    RequestType::SendFlowFiles.encode(&mut tv5);
    flowfile::encode(&f1, &mut tv5);
    tv5.extend_from_slice(b"RC\x0b");
    assert_eq!(tv5.len(), 75);
    let io = tokio_test::io::Builder::new()
        .write(b"NiFi\x00\x16SocketFlowFileProtocol\x00\x00\x00\x06")
        .read(&[0x14])
        .write(&handshake)
        .read(b"RC\x01")
        .write(&tv3)
        .read(&[0x14])
        .write(&tv5)
        .read(b"RC\x0c\x00\x0a4046154554")
        .write(b"RC\x0c\x00\x00")
        .read(b"RC\x0d")
        .build();
    let conn = Connection::establish(
        Box::new(io),
        cfg(Some(PORT)),
        Some(TIMEOUT),
        "fake:1".into(),
    )
    .await
    .unwrap();
    let mut tx = send_tx(conn);
    tx.send(f1).await.unwrap();
    let s = tx.commit().await.unwrap();
    assert_eq!((s.flowfiles, s.bytes, s.destination_full), (1, 5, false));
}

// ---- Custom connector: the whole client over in-memory pipes ---------------------------------

struct MemConnector {
    got: std::sync::Arc<std::sync::Mutex<Vec<FlowFile>>>,
    dialed: std::sync::Mutex<Vec<(String, bool)>>,
}

impl crate::Connector for MemConnector {
    fn connect<'a>(&'a self, addr: &'a str, secure: bool) -> crate::ConnectFuture<'a> {
        Box::pin(async move {
            self.dialed.lock().unwrap().push((addr.to_owned(), secure));
            let (c, p) = pipe();
            tokio::spawn(good_nifi(p, self.got.clone()));
            Ok(Box::new(c) as Box<dyn crate::AsyncStream>)
        })
    }
}

#[tokio::test]
async fn custom_connector_carries_the_raw_protocol() {
    let http = fake_discovery(discovery_json(4242)).await;
    let mem = std::sync::Arc::new(MemConnector {
        got: Default::default(),
        dialed: Default::default(),
    });
    let client = Client::builder(format!("http://127.0.0.1:{http}/nifi"))
        .single_node(true)
        .peer_override("127.0.0.1:4242", "tunnel:1")
        .connector(mem.clone())
        .build()
        .unwrap();
    client.send_batch("in", vec![f(1), f(2)]).await.unwrap();
    assert_eq!(*mem.got.lock().unwrap(), vec![f(1), f(2)]);
    assert_eq!(
        *mem.dialed.lock().unwrap(),
        vec![("tunnel:1".to_owned(), false)]
    );
}

// Issue 11: peer list off the hot path, persistence, penalties, parallel batches.
mod peer_tests;
