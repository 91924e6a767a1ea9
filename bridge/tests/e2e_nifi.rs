//! End-to-end tests against a REAL NiFi (the shared instance of `cargo xtask nifi up`, or
//! `NIFI_URL`). Skipped with a notice when no NiFi is available, failing instead when `CI` or
//! `S2S_E2E=1` is set (`nifi_or_skip!`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use nifi_testkit::{Nifi, Port, QueuedFlowFile, nifi_or_skip};
use s2s_bridge::protocol::{AckStatus, encode_batch};
use s2s_bridge::{AckMode, Config, FlowFile, Reason, S2sSink};

const WAIT: Duration = Duration::from_secs(60);

fn bridge_cfg(nifi: &Nifi, port: &Port) -> Config {
    let mut c = Config::default();
    c.nifi.urls = vec![nifi.url().to_owned()];
    c.nifi.port_name = Some(port.name().to_owned());
    c.forward.linger_ms = 10;
    c
}

fn by_id(flowfiles: Vec<QueuedFlowFile>) -> BTreeMap<String, QueuedFlowFile> {
    flowfiles
        .into_iter()
        .filter_map(|f| Some((f.attributes.get("id")?.clone(), f)))
        .collect()
}

#[tokio::test]
async fn websocket_batches_land_in_nifi_with_exact_attributes_and_acks_follow_commit() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("bridge-ws").await.expect("port");
    let cfg = bridge_cfg(&nifi, &port);
    let bridge = start(cfg.clone(), S2sSink::new(&cfg.nifi).expect("sink"));
    let mut ws = connect(&bridge.ws_url(""), None, None)
        .await
        .expect("connect");
    assert_eq!(hello(&mut ws).await.ack_mode, "nifi");

    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let batch1 = vec![
        ff("ws-1", "hello NiFi").with_attribute("unicode", "grüße ✓ 😀"),
        FlowFile::new(binary.clone())
            .with_attribute("id", "ws-2")
            .with_attribute("empty.value", ""),
    ];
    let batch2 = vec![ff("ws-3", "")];
    send(&mut ws, encode_batch(1, &batch1).unwrap()).await;
    send(&mut ws, encode_batch(2, &batch2).unwrap()).await;
    let mut acked = BTreeSet::new();
    for _ in 0..2 {
        let a = ack(&mut ws).await;
        assert_eq!(a.status, AckStatus::Committed, "{a:?}");
        acked.insert(a.batch_id);
        // Acked only after NiFi's commit: what was acked is already queued in NiFi.
        let expected =
            if acked.contains(&1) { 2 } else { 0 } + if acked.contains(&2) { 1 } else { 0 };
        let queued = port.queued_count().await.expect("count");
        assert!(
            queued >= expected,
            "ack for batch {} arrived before NiFi had it ({queued} queued)",
            a.batch_id
        );
    }
    assert_eq!(acked, BTreeSet::from([1, 2]));
    port.wait_for_queued(3, WAIT).await.expect("3 queued");
    let got = by_id(port.queued_flowfiles().await.expect("list"));
    assert_eq!(got.len(), 3);
    assert_eq!(got["ws-1"].content, b"hello NiFi");
    assert_eq!(got["ws-1"].attributes["unicode"], "grüße ✓ 😀");
    assert_eq!(got["ws-1"].attributes["filename"], "ws-1.txt");
    assert_eq!(got["ws-2"].content, binary);
    assert_eq!(got["ws-2"].attributes["empty.value"], "");
    assert!(got["ws-3"].content.is_empty());
    bridge.shutdown().await;
    port.delete().await.expect("delete");
}

fn ffv3(attrs: &[(&str, &str)], content: &[u8]) -> Vec<u8> {
    let mut out = b"NiFiFF3".to_vec();
    let len = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as u16).to_be_bytes());
    len(&mut out, attrs.len());
    for (k, v) in attrs {
        len(&mut out, k.len());
        out.extend_from_slice(k.as_bytes());
        len(&mut out, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(&(content.len() as u64).to_be_bytes());
    out.extend_from_slice(content);
    out
}

#[tokio::test]
async fn listenhttp_post_and_flowfile_v3_body_reach_nifi() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("bridge-listen").await.expect("port");
    let mut cfg = bridge_cfg(&nifi, &port);
    cfg.listen_http.header_regex = Some("x-.*".into());
    let bridge = start(cfg.clone(), S2sSink::new(&cfg.nifi).expect("sink"));
    let http = reqwest::Client::new();
    let url = bridge.url("/contentListener");
    let r = http
        .post(&url)
        .header("x-device", "thermo-3")
        .header("id", "plain")
        .body("21.5 C")
        .send()
        .await;
    assert_eq!(r.expect("post").status(), 200);
    let mut body = ffv3(
        &[("id", "pkg-1"), ("filename", "one.bin")],
        b"\x00\x01package one",
    );
    body.extend(ffv3(
        &[("id", "pkg-2"), ("mime.type", "text/plain")],
        b"package two",
    ));
    let r = http
        .post(&url)
        .header("content-type", "application/flowfile-v3")
        .header("x-batch", "v3-batch")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    port.wait_for_queued(3, WAIT).await.expect("3 queued");
    let all = port.queued_flowfiles().await.expect("list");
    let plain = all
        .iter()
        .find(|f| f.content == b"21.5 C")
        .expect("plain body in NiFi");
    assert_eq!(plain.attributes["x-device"], "thermo-3");
    assert_eq!(
        plain.attributes["restlistener.request.uri"],
        "/contentListener"
    );
    let got = by_id(all);
    assert_eq!(got["pkg-1"].content, b"\x00\x01package one");
    assert_eq!(got["pkg-1"].attributes["filename"], "one.bin");
    assert_eq!(got["pkg-1"].attributes["x-batch"], "v3-batch");
    assert_eq!(got["pkg-2"].attributes["mime.type"], "text/plain");
    assert_eq!(got["pkg-2"].content, b"package two");
    bridge.shutdown().await;
    port.delete().await.expect("delete");
}

#[tokio::test]
async fn full_nifi_queue_turns_into_retry_after_and_429_then_recovers() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("bridge-bp").await.expect("port");
    nifi.set_back_pressure(&port, 1)
        .await
        .expect("back pressure");
    let mut cfg = bridge_cfg(&nifi, &port);
    cfg.forward.retry_budget_ms = 1500;
    cfg.nifi.timeout_ms = 4000;
    let bridge = start(cfg.clone(), S2sSink::new(&cfg.nifi).expect("sink"));
    let mut ws = connect(&bridge.ws_url(""), None, None)
        .await
        .expect("connect");
    hello(&mut ws).await;
    send(&mut ws, encode_batch(1, &[ff("bp-1", "first")]).unwrap()).await;
    assert_eq!(ack(&mut ws).await.status, AckStatus::Committed);
    port.wait_for_queued(1, WAIT).await.expect("queued");
    // The connection is now at its threshold: NiFi refuses more with PORTS_DESTINATION_FULL.
    send(&mut ws, encode_batch(2, &[ff("bp-2", "second")]).unwrap()).await;
    let a = ack(&mut ws).await;
    assert_eq!(
        (a.status, Reason::from_code(a.reason)),
        (AckStatus::Retry, Some(Reason::Backpressure)),
        "{a:?}"
    );
    assert!(a.retry_after_ms > 0);
    let r = reqwest::Client::new()
        .post(bridge.url("/v1/flowfiles"))
        .body(r#"[{"attributes":{"id":"bp-json"},"content":"x"}]"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    // Room again: the retried batch goes through.
    port.drain().await.expect("drain");
    let deadline = Instant::now() + WAIT;
    loop {
        send(&mut ws, encode_batch(2, &[ff("bp-2", "second")]).unwrap()).await;
        let a = ack(&mut ws).await;
        if a.status == AckStatus::Committed {
            break;
        }
        assert!(Instant::now() < deadline, "still not committed: {a:?}");
        tokio::time::sleep(Duration::from_millis(u64::from(a.retry_after_ms))).await;
    }
    port.wait_for_queued(1, WAIT).await.expect("queued");
    let got = by_id(port.queued_flowfiles().await.expect("list"));
    assert_eq!(got["bp-2"].content, b"second");
    bridge.shutdown().await;
    port.delete().await.expect("delete");
}

#[tokio::test]
async fn spool_fills_while_port_is_stopped_and_drains_when_it_starts() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("bridge-spool").await.expect("port");
    port.stop().await.expect("stop port");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = bridge_cfg(&nifi, &port);
    cfg.ack = AckMode::Spool;
    cfg.spool.dir = dir.path().to_path_buf();
    cfg.forward.backoff_max_ms = 500;
    let bridge = start(cfg.clone(), S2sSink::new(&cfg.nifi).expect("sink"));
    let mut ws = connect(&bridge.ws_url(""), None, None)
        .await
        .expect("connect");
    hello(&mut ws).await;
    for b in 0..5u64 {
        let recs: Vec<_> = (0..4)
            .map(|i| ff(&format!("sp-{b}-{i}"), "spooled"))
            .collect();
        send(&mut ws, encode_batch(b, &recs).unwrap()).await;
    }
    for _ in 0..5 {
        assert_eq!(ack(&mut ws).await.status, AckStatus::Committed);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        port.queued_count().await.expect("count"),
        0,
        "port is stopped: nothing can have arrived"
    );
    let metrics = reqwest::get(bridge.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("bridge_spool_entries 5"), "{metrics}");
    port.start().await.expect("start port");
    port.wait_for_queued(20, WAIT)
        .await
        .expect("drained into NiFi");
    let got = by_id(port.queued_flowfiles().await.expect("list"));
    assert_eq!(got.len(), 20);
    // The s2s client's own metrics (process-wide recorder) come with the bridge's on /metrics.
    let port_label = format!("port=\"{}\"", port.name());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = reqwest::get(bridge.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let sum = |name: &str| -> f64 {
            metrics
                .lines()
                .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&port_label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        if sum("s2s_client_flowfiles_total") == 20.0
            && sum("s2s_client_transactions_total") >= 1.0
            && metrics.contains("bridge_records_out_total 20\n")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{port_label}:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bridge.shutdown().await;
    port.delete().await.expect("delete");
}

fn spawn_bridge(
    nifi: &Nifi,
    port: &Port,
    spool: &std::path::Path,
    listen: std::net::SocketAddr,
) -> BridgeProc {
    let args: [&std::ffi::OsStr; 7] = [
        "--ack".as_ref(),
        "spool".as_ref(),
        "--nifi-url".as_ref(),
        nifi.url().as_ref(),
        "--port-name".as_ref(),
        port.name().as_ref(),
        "--spool-dir".as_ref(),
    ];
    BridgeProc::spawn_at(listen, args.into_iter().chain([spool.as_os_str()]), None)
}

#[tokio::test]
async fn spool_survives_kill_9_and_every_acked_record_arrives() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("bridge-kill").await.expect("port");
    // Stopped port: acked records can only be in the spool when the process dies.
    port.stop().await.expect("stop");
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut proc = spawn_bridge(&nifi, &port, dir.path(), addr);
    wait_healthy(addr).await;
    let mut ws = connect(&format!("ws://{addr}/v1/ws"), None, None)
        .await
        .expect("connect");
    hello(&mut ws).await;
    let mut acked_ids = BTreeSet::new();
    let mut sent = BTreeMap::new();
    for b in 0..12u64 {
        let ids: Vec<String> = (0..8).map(|i| format!("k-{b}-{i}")).collect();
        let recs: Vec<_> = ids.iter().map(|id| ff(id, "kill -9 me")).collect();
        send(&mut ws, encode_batch(b, &recs).unwrap()).await;
        sent.insert(b, ids);
        if b < 10 {
            let a = ack(&mut ws).await;
            assert_eq!(a.status, AckStatus::Committed);
            acked_ids.extend(sent[&a.batch_id].iter().cloned());
        }
    }
    // SIGKILL with the last batches possibly unacked: no shutdown, no flush.
    proc.child.kill().expect("kill -9");
    proc.child.wait().expect("reap");
    drop(ws);
    port.start().await.expect("start port");
    let _proc2 = spawn_bridge(&nifi, &port, dir.path(), addr);
    wait_healthy(addr).await;
    let n = acked_ids.len() as u64;
    port.wait_for_queued(n, WAIT)
        .await
        .expect("every acked record arrives after restart");
    let got = by_id(port.queued_flowfiles().await.expect("list"));
    let missing: Vec<_> = acked_ids
        .iter()
        .filter(|id| !got.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "acked but lost: {missing:?}");
    port.delete().await.expect("delete");
}
