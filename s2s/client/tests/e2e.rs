//! End-to-end tests against a real NiFi (see `nifi-testkit`): every assertion is on what NiFi
//! actually queued or delivered, not just on "no error".

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{WAIT, assert_received, pattern, receive_all};
use nifi_testkit::{Nifi, nifi_or_skip};
use s2s::{Client, FlowFile};

fn client(nifi: &Nifi) -> s2s::ClientBuilder {
    Client::builder(nifi.url()).io_timeout(Some(Duration::from_secs(30)))
}

#[tokio::test]
async fn unicode_attributes_empty_content_and_zero_attributes() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("s2s-unicode").await.unwrap();
    let c = client(&nifi).build().unwrap();
    let unicode = FlowFile::new("héllo wörld 😀")
        .with_attribute("filename", "ünïcödé.txt")
        .with_attribute("clé-😀-𝄞", "välue 𝄞 😀 \u{0}nul and 中文");
    let empty = FlowFile::new(Bytes::new()).with_attribute("filename", "empty");
    let bare = FlowFile::new("no attributes at all");
    let s = c
        .send_batch(port.name(), vec![unicode.clone(), empty, bare])
        .await
        .unwrap();
    assert_eq!((s.flowfiles, s.transactions), (3, 1));
    port.wait_for_queued(3, WAIT).await.unwrap();
    let q = port.queued_flowfiles().await.unwrap();
    assert_eq!(q.len(), 3);
    let by = |f: &dyn Fn(&nifi_testkit::QueuedFlowFile) -> bool| {
        q.iter().filter(|x| f(x)).cloned().collect::<Vec<_>>()
    };
    let u = by(&|x| x.attributes.get("filename").map(String::as_str) == Some("ünïcödé.txt"));
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].content, "héllo wörld 😀".as_bytes());
    assert_eq!(u[0].attributes["clé-😀-𝄞"], "välue 𝄞 😀 \u{0}nul and 中文");
    let e = by(&|x| x.attributes.get("filename").map(String::as_str) == Some("empty"));
    assert_eq!(e.len(), 1);
    assert!(e[0].content.is_empty());
    let b = by(&|x| x.content == b"no attributes at all");
    assert_eq!(b.len(), 1);
    let q = b;
    // NiFi adds its own (uuid, s2s.*); nothing of ours beyond what we sent.
    assert!(!q[0].attributes.contains_key("clé-😀-𝄞"));
    assert!(!q[0].attributes.contains_key("filename") || q[0].attributes["filename"] != "empty");
    c.close().await;
    port.delete().await.unwrap();
}

#[tokio::test]
async fn ten_mib_content_with_and_without_compression() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("s2s-10mib").await.unwrap();
    for (i, compress) in [false, true].into_iter().enumerate() {
        let c = client(&nifi).compression(compress).build().unwrap();
        let data = pattern(42 + i as u64, 10 * 1024 * 1024);
        let ff = FlowFile::new(data.clone()).with_attribute("filename", format!("big-{compress}"));
        let mut tx = c.send_transaction(port.name()).await.unwrap();
        tx.send(ff).await.unwrap();
        let s = tx.commit().await.unwrap();
        assert_eq!(s.bytes, 10 * 1024 * 1024);
        port.wait_for_queued(1, WAIT).await.unwrap();
        let q = port.queued_flowfiles().await.unwrap();
        assert_eq!(q[0].attributes["filename"], format!("big-{compress}"));
        assert!(
            q[0].content == data,
            "10 MiB content differs (compress={compress})"
        );
        port.drain().await.unwrap();
        c.close().await;
    }
    port.delete().await.unwrap();
}

#[tokio::test]
async fn thousand_flowfiles_in_one_transaction_compressed_and_not() {
    let nifi = nifi_or_skip!();
    for compress in [false, true] {
        let port = nifi.input_port("s2s-1000").await.unwrap();
        let c = client(&nifi).compression(compress).build().unwrap();
        let mut tx = c.send_transaction(port.name()).await.unwrap();
        for i in 0..1000u32 {
            let ff = FlowFile::new(format!("content #{i}"))
                .with_attribute("index", i.to_string())
                .with_attribute("compressed", compress.to_string());
            tx.send(ff).await.unwrap();
        }
        assert_eq!(tx.len(), 1000);
        let s = tx.commit().await.unwrap();
        assert_eq!((s.flowfiles, s.transactions), (1000, 1));
        assert_eq!(port.wait_for_queued(1000, WAIT).await.unwrap(), 1000);
        let q = port.queued_flowfiles().await.unwrap();
        // NiFi lists at most 100, and not necessarily in send order (FlowFiles of one transaction
        // share a commit), so check each listed one against its own index, each index once.
        assert_eq!(q.len(), 100);
        let mut seen = std::collections::HashSet::new();
        for f in &q {
            let i: usize = f.attributes["index"].parse().unwrap();
            assert!(
                i < 1000 && seen.insert(i),
                "index {i} listed twice or out of range"
            );
            assert_eq!(f.attributes["compressed"], compress.to_string());
            assert_eq!(f.content, format!("content #{i}").into_bytes());
        }
        c.close().await;
        port.delete().await.unwrap();
    }
}

#[tokio::test]
async fn many_transactions_share_one_pooled_connection() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("s2s-pool").await.unwrap();
    let c = client(&nifi).build().unwrap();
    for i in 0..25u32 {
        let s = c
            .send_batch(
                port.name(),
                vec![FlowFile::new(format!("tx {i}")).with_attribute("tx", i.to_string())],
            )
            .await
            .unwrap();
        assert_eq!(s.flowfiles, 1);
    }
    assert_eq!(
        c.transfer_connections_opened(),
        1,
        "every transaction reused the pooled connection"
    );
    assert_eq!(c.pooled_connections(), 1);
    port.wait_for_queued(25, WAIT).await.unwrap();
    let mut q = port.queued_flowfiles().await.unwrap();
    // Listing order is not guaranteed to be commit order; every transaction must be there once.
    q.sort_by_key(|f| f.attributes["tx"].parse::<usize>().unwrap());
    assert_eq!(q.len(), 25);
    for (i, f) in q.iter().enumerate() {
        assert_eq!(f.attributes["tx"], i.to_string());
    }
    c.close().await;
    assert_eq!(c.pooled_connections(), 0);
    port.delete().await.unwrap();
}

#[tokio::test]
async fn port_by_id_and_dropped_transaction_rolls_back() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("s2s-byid").await.unwrap();
    let c = client(&nifi).build().unwrap();
    // Dropped before commit: NiFi must not keep anything.
    {
        let mut tx = c.send_transaction(port.id()).await.unwrap();
        tx.send(FlowFile::new("never committed")).await.unwrap();
        drop(tx);
    }
    let mut tx = c.send_transaction(port.id()).await.unwrap();
    tx.send(FlowFile::new("by id").with_attribute("how", "id"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    port.wait_for_queued(1, WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let q = port.queued_flowfiles().await.unwrap();
    assert_eq!(q.len(), 1, "the dropped transaction must not be committed");
    assert_eq!(q[0].content, b"by id");
    assert_eq!(q[0].attributes["how"], "id");
    c.close().await;
    port.delete().await.unwrap();
}

#[tokio::test]
async fn unknown_and_stopped_ports_give_typed_errors() {
    let nifi = nifi_or_skip!();
    let c = client(&nifi).build().unwrap();
    let e = c
        .send_transaction("no-such-port-s2s-e2e")
        .await
        .unwrap_err();
    assert!(e.is_unknown_port(), "{e}");
    assert!(!e.is_retryable());
    let e = c
        .send_batch("no-such-port-s2s-e2e", vec![FlowFile::new("x")])
        .await
        .unwrap_err();
    assert!(e.is_unknown_port(), "{e}");
    let e = c
        .receive("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert!(e.is_unknown_port(), "{e}");

    // A port deleted after discovery (the cached name → id map is stale): NiFi itself answers
    // UNKNOWN_PORT in the handshake.
    let gone = nifi.input_port("s2s-gone").await.unwrap();
    let info = c
        .resolve_port(s2s::Direction::Send, gone.name())
        .await
        .unwrap();
    assert_eq!(info.id, gone.id());
    gone.delete().await.unwrap();
    let e = c.send_transaction(gone.name()).await.unwrap_err();
    assert!(e.is_unknown_port(), "{e}");
    assert_eq!(e.response_code(), Some(s2s::ResponseCode::UNKNOWN_PORT));
    assert!(e.to_string().contains("NiFi answered UNKNOWN_PORT"), "{e}");
    assert!(!e.is_retryable());
    // The stale map was dropped: the next attempt re-discovers and fails locally the same way.
    let e = c.send_transaction(gone.name()).await.unwrap_err();
    assert!(e.is_unknown_port(), "{e}");
    assert!(e.to_string().contains("no input port named"), "{e}");

    let port = nifi.input_port("s2s-stopped").await.unwrap();
    port.stop().await.unwrap();
    // Let discovery see the port (cached lists are refreshed on a miss).
    let e = c
        .send_batch(port.name(), vec![FlowFile::new("x")])
        .await
        .unwrap_err();
    assert!(e.is_port_not_running(), "{e}");
    assert!(e.is_retryable());
    assert_eq!(
        e.response_code(),
        Some(s2s::ResponseCode::PORT_NOT_IN_VALID_STATE)
    );
    assert_eq!(port.queued_count().await.unwrap(), 0);
    port.delete().await.unwrap();
}

#[tokio::test]
async fn backpressure_is_success_then_destination_full() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("s2s-full").await.unwrap();
    nifi.set_back_pressure(&port, 1).await.unwrap();
    let c = client(&nifi)
        .penalization(Duration::from_millis(10))
        .build()
        .unwrap();
    let mut tx = c.send_transaction(port.name()).await.unwrap();
    tx.send(FlowFile::new("fills the queue")).await.unwrap();
    let s = tx.commit().await.unwrap();
    assert_eq!(s.flowfiles, 1);
    assert!(
        s.destination_full,
        "NiFi committed with TRANSACTION_FINISHED_BUT_DESTINATION_FULL"
    );
    port.wait_for_queued(1, WAIT).await.unwrap();
    // The queue is full now: a new handshake is refused with PORTS_DESTINATION_FULL.
    c.close().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = c.send_transaction(port.name()).await.unwrap_err();
    assert!(e.is_destination_full(), "{e}");
    assert!(e.is_retryable());
    assert_eq!(
        port.queued_count().await.unwrap(),
        1,
        "nothing duplicated or lost"
    );
    // Once NiFi has room again, the penalty is waited out and sending resumes.
    port.drain().await.unwrap();
    let s = c
        .send_batch(port.name(), vec![FlowFile::new("after backoff")])
        .await
        .unwrap();
    assert_eq!(s.flowfiles, 1);
    port.wait_for_queued(1, WAIT).await.unwrap();
    assert_eq!(
        port.queued_flowfiles().await.unwrap()[0].content,
        b"after backoff"
    );
    c.close().await;
    port.delete().await.unwrap();
}

#[tokio::test]
async fn receive_from_output_port_checks_every_byte() {
    let nifi = nifi_or_skip!();
    for compress in [false, true] {
        let pair = nifi.port_pair("s2s-recv").await.unwrap();
        let c = client(&nifi).compression(compress).build().unwrap();
        let sent: Vec<FlowFile> = (0..20u64)
            .map(|i| {
                FlowFile::new(pattern(i + 7, (i as usize) * 7919))
                    .with_attribute("i", i.to_string())
                    .with_attribute("ключ-😀", format!("значение {i}"))
            })
            .collect();
        c.send_batch(pair.input.name(), sent.clone()).await.unwrap();
        pair.output.wait_for_queued(20, WAIT).await.unwrap();

        // Empty receive first on an unrelated, empty pair is covered by the CLI test; here:
        // drain in as many transactions as NiFi wants, then check each FlowFile byte by byte.
        let got = receive_all(&c, pair.output.name(), sent.len()).await;
        assert_received(got, &sent, &format!("compress={compress}"));
        // Confirmed: NiFi removed them.
        pair.output.wait_for_empty(WAIT).await.unwrap();
        // Nothing left: the next receive is empty and the connection stays usable.
        let mut rx = c.receive(pair.output.id()).await.unwrap();
        assert!(rx.next().await.unwrap().is_none());
        rx.confirm().await.unwrap();
        c.close().await;
        pair.delete().await.unwrap();
    }
}

#[tokio::test]
async fn unconfirmed_receive_is_redelivered() {
    let nifi = nifi_or_skip!();
    let pair = nifi.port_pair("s2s-redeliver").await.unwrap();
    let c = client(&nifi).build().unwrap();
    c.send_batch(
        pair.input.name(),
        vec![FlowFile::new("again").with_attribute("k", "v")],
    )
    .await
    .unwrap();
    pair.output.wait_for_queued(1, WAIT).await.unwrap();
    {
        let mut rx = c.receive(pair.output.name()).await.unwrap();
        assert!(rx.next().await.unwrap().is_some());
        drop(rx); // no confirm: NiFi rolls back
    }
    pair.output.wait_for_queued(1, WAIT).await.unwrap();
    let mut got = None;
    for _ in 0..50 {
        let mut rx = c.receive(pair.output.name()).await.unwrap();
        if let Some(ff) = rx.next().await.unwrap() {
            assert!(rx.next().await.unwrap().is_none());
            rx.confirm().await.unwrap();
            got = Some(ff);
            break;
        }
        rx.confirm().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ff = got.expect("redelivered");
    assert_eq!(&ff.content[..], b"again");
    assert_eq!(ff.attribute("k"), Some("v"));
    c.close().await;
    pair.delete().await.unwrap();
}

#[tokio::test]
async fn peers_lists_the_raw_listener() {
    let nifi = nifi_or_skip!();
    let c = client(&nifi)
        .peer_override("unused:1", "127.0.0.1:1")
        .build()
        .unwrap();
    let peers = c.peers().await.unwrap();
    assert!(!peers.is_empty());
    assert!(
        peers.iter().any(|p| Some(p.port) == nifi.raw_port()),
        "{peers:?}"
    );
    // Single-node mode works without the peer list.
    let port = nifi.input_port("s2s-single").await.unwrap();
    let c = client(&nifi).single_node(true).build().unwrap();
    c.send_batch(port.name(), vec![FlowFile::new("single")])
        .await
        .unwrap();
    port.wait_for_queued(1, WAIT).await.unwrap();
    assert_eq!(port.queued_flowfiles().await.unwrap()[0].content, b"single");
    c.close().await;
    port.delete().await.unwrap();
}

/// The client's metrics (the `metrics` facade, here a local debugging recorder) count what NiFi
/// really committed and confirmed, and a failure by its kind.
#[tokio::test(flavor = "current_thread")]
async fn metrics_count_what_nifi_committed() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let nifi = nifi_or_skip!();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Current-thread runtime: every await of this test runs on this thread, under the recorder.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let pair = nifi.port_pair("s2s-metrics").await.unwrap();
    let c = client(&nifi).build().unwrap();
    let sent: Vec<FlowFile> = (0..25)
        .map(|i| FlowFile::new(vec![b'x'; 100]).with_attribute("i", i.to_string()))
        .collect();
    c.send_batch(pair.input.name(), sent).await.unwrap();
    pair.input.wait_for_queued(25, WAIT).await.unwrap();
    let got = receive_all(&c, pair.output.name(), 25).await;
    assert_eq!(got.len(), 25);
    assert!(
        c.send_batch("s2s-no-such-port", vec![FlowFile::new("x")])
            .await
            .is_err()
    );

    // One snapshot: taking one resets the debugging recorder's counters.
    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |name: &str, want: &[(&str, &str)]| -> u64 {
        snapshot
            .iter()
            .filter(|(k, _, _, _)| k.key().name() == name)
            .filter(|(k, _, _, _)| {
                want.iter()
                    .all(|(l, v)| k.key().labels().any(|x| x.key() == *l && x.value() == *v))
            })
            .map(|(_, _, _, v)| match v {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .sum()
    };
    let send = [("direction", "send"), ("port", pair.input.name())];
    let recv = [("direction", "receive"), ("port", pair.output.name())];
    assert_eq!(counter("s2s_client_flowfiles_total", &send), 25);
    assert_eq!(counter("s2s_client_bytes_total", &send), 2500);
    assert_eq!(counter("s2s_client_transactions_total", &send), 1);
    assert_eq!(counter("s2s_client_flowfiles_total", &recv), 25);
    assert_eq!(counter("s2s_client_bytes_total", &recv), 2500);
    assert_eq!(
        counter(
            "s2s_client_errors_total",
            &[("port", "s2s-no-such-port"), ("kind", "unknown_port")]
        ),
        1
    );
    c.close().await;
    pair.delete().await.unwrap();
}
