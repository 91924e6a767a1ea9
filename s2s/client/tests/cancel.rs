//! Cancellation (issue 13, part 5): send and receive futures dropped at every await point, on
//! paused time, against a fake RAW NiFi over in-memory pipes (a custom [`Connector`]) whose
//! pipe holds only a few bytes, so every write and read really suspends.
//!
//! For each await point `k` the operation is polled until it has suspended `k + 1` times, then
//! dropped; the loop ends when the operation completes before that. After each cancellation:
//! * nothing is committed that the client did not confirm: the fake NiFi commits a SEND only on
//!   the client's confirm after all its FlowFiles, and a send transaction whose `send()` was
//!   cancelled can no longer be committed;
//! * a connection in an unknown state is never reused: the client's pool is empty, and a
//!   follow-up transaction on the same client works (the fake records malformed bytes);
//! * no local data is released: NiFi drops the FlowFiles it sent only after the client's confirm,
//!   and then the caller holds every one of them (a cancelled `next()` cannot be followed by a
//!   confirm that drops the FlowFile it lost).
//!
//! Discovery (HTTP) runs on real time before each case; only the cancelled part runs paused.
//! `cargo test -p nifi-s2s --test cancel`

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use s2s::{AsyncStream, Client, ConnectFuture, Connector, FlowFile};
use s2s_proto::codec::DecodeError;
use s2s_proto::codec::checksum::TransactionChecksum;
use s2s_proto::codec::flowfile::{self, FlowFileDecoder};
use s2s_proto::codec::handshake::{ReceivedHandshake, RequestType};
use s2s_proto::codec::negotiation::{NegotiationReply, ResourceProposal, decode_magic};
use s2s_proto::codec::response_code::{Response, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IN: &str = "c56a4180-65aa-42ec-a945-5fd21dec0538";
const OUT: &str = "0f3b4a9c-1d2e-4f50-8a6b-7c8d9e0f1a2b";
/// Bytes the in-memory pipe holds: small, so writing a large FlowFile (past the client's
/// 64 KiB write buffer) and reading one suspend many times.
const PIPE: usize = 4096;
/// Upper bound on await points (a loop that never ends is a failure, not a hang).
const MAX_POINTS: usize = 5_000;

/// What the fake NiFi saw and holds.
#[derive(Debug, Default)]
struct State {
    /// FlowFiles committed by SEND transactions.
    committed: Vec<FlowFile>,
    /// FlowFiles queued on the output port (removed when a RECEIVE is confirmed).
    queue: Vec<FlowFile>,
    /// Connections opened.
    dials: usize,
    /// Malformed bytes or out-of-order messages (a reused connection in an unknown state).
    violations: Vec<String>,
}

type Shared = Arc<Mutex<State>>;

struct Peer {
    io: tokio::io::DuplexStream,
    buf: BytesMut,
    state: Shared,
}

impl Peer {
    /// Reads until `parse` yields a value; `None` on EOF or malformed bytes (recorded).
    async fn read<T>(
        &mut self,
        mut parse: impl FnMut(&mut BytesMut) -> Result<Option<T>, DecodeError>,
    ) -> Option<T> {
        loop {
            match parse(&mut self.buf) {
                Ok(Some(v)) => return Some(v),
                Ok(None) => {}
                Err(e) => {
                    self.violate(format!("malformed bytes: {e}"));
                    return None;
                }
            }
            if self.io.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    fn violate(&self, what: String) {
        self.state.lock().unwrap().violations.push(what);
    }

    async fn write(&mut self, b: &[u8]) -> Option<()> {
        self.io.write_all(b).await.ok()
    }

    async fn rc(&mut self, code: ResponseCode, msg: Option<&str>) -> Option<()> {
        let mut b = BytesMut::new();
        match msg {
            Some(m) => Response::with_message(code, m),
            None => Response::new(code),
        }
        .encode(&mut b)
        .unwrap();
        self.write(&b).await
    }

    async fn negotiate(&mut self, magic: bool) -> Option<i32> {
        if magic {
            self.read(decode_magic).await?;
        }
        let p = self.read(ResourceProposal::decode).await?;
        let mut b = BytesMut::new();
        NegotiationReply::Ok.encode(&mut b);
        self.write(&b).await?;
        Some(p.version)
    }

    async fn accept(&mut self) -> Option<()> {
        let v = self.negotiate(true).await?;
        self.read(|b| ReceivedHandshake::decode(b, v)).await?;
        self.rc(ResponseCode::PROPERTIES_OK, None).await?;
        if self.read(RequestType::decode).await? != RequestType::NegotiateFlowFileCodec {
            self.violate("expected codec negotiation".into());
            return None;
        }
        self.negotiate(false).await?;
        Some(())
    }

    /// One SEND transaction after its request: commits only on the client's confirm.
    async fn receive_send(&mut self) -> Option<()> {
        let mut crc = TransactionChecksum::new();
        let mut ffs = Vec::new();
        loop {
            let mut d = FlowFileDecoder::default();
            let ff = self.read(|b| d.decode(b)).await?;
            ff.add_to_checksum(&mut crc);
            ffs.push(ff);
            match self.read(Response::decode).await?.code {
                ResponseCode::CONTINUE_TRANSACTION => {}
                ResponseCode::FINISH_TRANSACTION => break,
                other => {
                    self.violate(format!("unexpected marker {other}"));
                    return None;
                }
            }
        }
        self.rc(ResponseCode::CONFIRM_TRANSACTION, Some(&crc.to_decimal()))
            .await?;
        let r = self.read(Response::decode).await?;
        if r.code != ResponseCode::CONFIRM_TRANSACTION {
            return None; // BAD_CHECKSUM or CANCEL: rolled back, the client closes
        }
        // NiFi commits here (before its answer, which may then be lost to a cancelled client).
        self.state.lock().unwrap().committed.extend(ffs);
        self.rc(ResponseCode::TRANSACTION_FINISHED, None).await
    }

    /// One RECEIVE transaction after its request: everything queued, released on the client's
    /// final TRANSACTION_FINISHED only.
    async fn serve_receive(&mut self) -> Option<()> {
        let ffs = self.state.lock().unwrap().queue.clone();
        if ffs.is_empty() {
            return self.rc(ResponseCode::NO_MORE_DATA, None).await;
        }
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
        self.write(&b).await?;
        let r = self.read(Response::decode).await?;
        if r.code != ResponseCode::CONFIRM_TRANSACTION
            || r.message.as_deref() != Some(crc.to_decimal().as_str())
        {
            self.violate(format!("bad receive confirm {r:?}"));
            return None;
        }
        self.rc(ResponseCode::CONFIRM_TRANSACTION, Some("")).await?;
        if self.read(Response::decode).await?.code != ResponseCode::TRANSACTION_FINISHED {
            return None;
        }
        self.state.lock().unwrap().queue.drain(..ffs.len());
        Some(())
    }

    async fn run(mut self) {
        if self.accept().await.is_none() {
            return;
        }
        while let Some(req) = self.read(RequestType::decode).await {
            let done = match req {
                RequestType::SendFlowFiles => self.receive_send().await,
                RequestType::ReceiveFlowFiles => self.serve_receive().await,
                other => {
                    self.violate(format!("unexpected request {other:?}"));
                    None
                }
            };
            if done.is_none() {
                return;
            }
        }
    }
}

#[derive(Debug)]
struct MemConnector {
    state: Shared,
}

impl Connector for MemConnector {
    fn connect<'a>(&'a self, _addr: &'a str, _secure: bool) -> ConnectFuture<'a> {
        Box::pin(async move {
            self.state.lock().unwrap().dials += 1;
            let (c, s) = tokio::io::duplex(PIPE);
            let peer = Peer {
                io: s,
                buf: BytesMut::new(),
                state: self.state.clone(),
            };
            tokio::spawn(peer.run());
            Ok(Box::new(c) as Box<dyn AsyncStream>)
        })
    }
}

/// The discovery answer on a loopback HTTP listener (any request).
async fn fake_discovery() -> u16 {
    let body = format!(
        r#"{{"controller":{{"remoteSiteListeningPort":4242,"siteToSiteSecure":false,
        "inputPorts":[{{"id":"{IN}","name":"in","state":"RUNNING"}}],
        "outputPorts":[{{"id":"{OUT}","name":"out","state":"RUNNING"}}]}}}}"#
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
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

/// A fresh client and fake NiFi (discovery done on real time), then time paused.
async fn setup(http: u16, queue: Vec<FlowFile>) -> (Client, Shared) {
    let state = Shared::default();
    state.lock().unwrap().queue = queue;
    let client = Client::builder(format!("http://127.0.0.1:{http}/nifi"))
        .single_node(true)
        .site_info_ttl(Duration::from_secs(24 * 3600))
        .connector(Arc::new(MemConnector {
            state: state.clone(),
        }))
        .build()
        .unwrap();
    client.site_info().await.expect("discovery");
    tokio::time::pause();
    (client, state)
}

/// Polls `fut` until it has suspended `k + 1` times, then drops it (`None`); `Some` if it
/// finished before.
async fn cancel_at<F: Future>(fut: F, k: usize) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut suspended = 0;
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending if suspended == k => Poll::Ready(None),
        Poll::Pending => {
            suspended += 1;
            Poll::Pending
        }
    })
    .await
}

/// FlowFile `i`: 700 B, 80 KB (with a 70 KB attribute, so even its header overflows the
/// client's write buffer and suspends), 20 KB, 700 B, …
fn ff(i: usize) -> FlowFile {
    let len = [700, 80_000, 20_000][i % 3];
    let content: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
    let f = FlowFile::new(content).with_attribute("i", i.to_string());
    if i % 3 == 1 {
        f.with_attribute("big", "b".repeat(70_000))
    } else {
        f
    }
}

fn batch() -> Vec<FlowFile> {
    (0..3).map(ff).collect()
}

/// Lets the fake NiFi see the dropped connection (EOF) and finish what it was doing.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// After a cancellation: no pooled connection, and the same client still sends (on a fresh,
/// clean connection) with nothing malformed seen by NiFi.
async fn check_follow_up(client: &Client, state: &Shared, what: &str) {
    settle().await;
    assert_eq!(
        client.pooled_connections(),
        0,
        "{what}: a connection in an unknown state went back to the pool"
    );
    let before = state.lock().unwrap().committed.len();
    let marker = FlowFile::new("after").with_attribute("marker", "1");
    client
        .send_batch("in", vec![marker.clone()])
        .await
        .unwrap_or_else(|e| panic!("{what}: follow-up send failed: {e}"));
    let st = state.lock().unwrap();
    assert_eq!(st.committed[before..], [marker], "{what}");
    assert!(st.violations.is_empty(), "{what}: {:?}", st.violations);
}

/// The whole SEND (open, three FlowFiles, commit) dropped at every await point.
#[tokio::test]
async fn send_dropped_at_every_await_point() {
    let http = fake_discovery().await;
    let mut points = 0;
    for k in 0..MAX_POINTS {
        let (client, state) = setup(http, Vec::new()).await;
        let op = async {
            let mut tx = client.send_transaction("in").await?;
            for f in batch() {
                tx.send(f).await?;
            }
            tx.commit().await
        };
        let done = cancel_at(op, k).await;
        settle().await;
        let committed = state.lock().unwrap().committed.clone();
        if let Some(r) = done {
            r.expect("uncancelled send");
            assert_eq!(committed, batch());
            assert_eq!(
                client.pooled_connections(),
                1,
                "a committed connection is reused"
            );
            tokio::time::resume();
            points = k;
            break;
        }
        // All or nothing, and all only once the client confirmed (the fake commits on confirm
        // after every FlowFile; the client may be cancelled before it reads NiFi's answer).
        assert!(
            committed.is_empty() || committed == batch(),
            "k={k}: partial commit {committed:?}"
        );
        check_follow_up(&client, &state, &format!("send k={k}")).await;
        tokio::time::resume();
    }
    assert!(
        points > 20,
        "only {points} await points: the pipe did not suspend"
    );
}

/// `send()` dropped at every await point, then `commit()`: must fail (the transaction is
/// unusable), commit nothing, pool nothing.
#[tokio::test]
async fn commit_after_a_cancelled_send_fails_and_commits_nothing() {
    let http = fake_discovery().await;
    let mut points = 0;
    for second in [false, true] {
        for k in 0..MAX_POINTS {
            let (client, state) = setup(http, Vec::new()).await;
            let mut tx = client.send_transaction("in").await.unwrap();
            if second {
                tx.send(ff(0)).await.unwrap();
            }
            let done = cancel_at(tx.send(ff(1)), k).await;
            let res = tx.commit().await;
            settle().await;
            let committed = state.lock().unwrap().committed.clone();
            if let Some(r) = done {
                r.unwrap();
                res.expect("commit after a whole send");
                assert_eq!(committed.len(), 1 + usize::from(second));
                tokio::time::resume();
                eprintln!("second={second}: {k} await points");
                points += k;
                break;
            }
            let what = format!("second={second} k={k}");
            assert!(
                res.is_err(),
                "{what}: commit after a cancelled send() succeeded"
            );
            assert!(committed.is_empty(), "{what}: committed {committed:?}");
            check_follow_up(&client, &state, &what).await;
            tokio::time::resume();
        }
    }
    assert!(points > 10, "only {points} await points");
}

/// RECEIVE (open, read every FlowFile, confirm) dropped at every await point; and a single
/// `next()` dropped mid-way, after which the caller goes on reading and confirms.
#[tokio::test]
async fn receive_dropped_at_every_await_point_releases_nothing_unread() {
    let http = fake_discovery().await;
    let mut points = 0;
    for k in 0..MAX_POINTS {
        let (client, state) = setup(http, batch()).await;
        let mut got = Vec::new();
        let op = async {
            let mut rx = client.receive("out").await?;
            while let Some(f) = rx.next().await? {
                got.push(f);
            }
            rx.confirm().await
        };
        let done = cancel_at(op, k).await;
        settle().await;
        let queue = state.lock().unwrap().queue.clone();
        if let Some(r) = done {
            r.expect("uncancelled receive");
            assert_eq!(got, batch());
            assert!(queue.is_empty(), "confirmed: NiFi released them");
            tokio::time::resume();
            points = k;
            break;
        }
        if queue.is_empty() {
            assert_eq!(
                got,
                batch(),
                "k={k}: NiFi released FlowFiles the caller lacks"
            );
        } else {
            assert_eq!(queue, batch(), "k={k}: partial release");
        }
        check_follow_up(&client, &state, &format!("receive k={k}")).await;
        tokio::time::resume();
    }
    assert!(points > 20, "only {points} await points");

    // One next() cancelled, then the caller carries on as if nothing happened.
    for k in 0..MAX_POINTS {
        let (client, state) = setup(http, batch()).await;
        let mut rx = client.receive("out").await.unwrap();
        let mut got = Vec::new();
        let first = cancel_at(rx.next(), k).await;
        let finished = first.is_some();
        if let Some(r) = first {
            got.extend(r.unwrap());
        }
        let rest = async {
            while let Some(f) = rx.next().await? {
                got.push(f);
            }
            rx.confirm().await
        }
        .await;
        settle().await;
        let queue = state.lock().unwrap().queue.clone();
        if finished {
            rest.expect("no cancellation");
            assert_eq!(got, batch());
            assert!(queue.is_empty());
            tokio::time::resume();
            break;
        }
        let what = format!("next() k={k}");
        assert!(
            rest.is_err(),
            "{what}: the transaction went on after a cancelled next() (got {} of 3)",
            got.len()
        );
        assert_eq!(queue, batch(), "{what}: NiFi released FlowFiles");
        check_follow_up(&client, &state, &what).await;
        tokio::time::resume();
    }
}
