//! Fast tests of every ingest path and rejection, with the in-memory sink (no NiFi). The proof
//! against a real NiFi is in `e2e_nifi.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use s2s_bridge::config::TokenConfig;
use s2s_bridge::protocol::{AckStatus, BATCH_HEADER_LEN, encode_batch};
use s2s_bridge::{AckMode, Config, MemoryMode, MemorySink, Reason};
use tokio_tungstenite::tungstenite;

fn cfg() -> Config {
    let mut c = Config::default();
    c.forward.linger_ms = 5;
    c.forward.retry_budget_ms = 300;
    c.forward.backoff_initial_ms = 20;
    c
}

fn with_token(mut c: Config) -> Config {
    c.tokens.push(TokenConfig {
        value: Some("tok-1".into()),
        env: None,
        attributes: [("client.name".to_string(), "kiosk-7".to_string())].into(),
    });
    c
}

#[tokio::test]
async fn ws_batch_is_acked_only_after_the_sink_committed() {
    let sink = MemorySink::new();
    sink.set_delay(Duration::from_millis(300));
    let bridge = start(with_token(cfg()), sink.clone());
    let mut ws = connect(&bridge.ws_url("?access_token=tok-1"), None, None)
        .await
        .expect("connect");
    let hello = hello(&mut ws).await;
    assert_eq!((hello.version, hello.ack_mode.as_str()), (1, "nifi"));
    let records = vec![ff("a", "alpha"), ff("b", "")];
    let sent = Instant::now();
    send(&mut ws, encode_batch(42, &records).unwrap()).await;
    let a = ack(&mut ws).await;
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "ack came before the sink's commit"
    );
    assert_eq!(
        (a.status, a.batch_id, a.reason),
        (AckStatus::Committed, 42, 0)
    );
    let got = sink.delivered();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].attribute("id"), Some("a"));
    assert_eq!(&got[0].content[..], b"alpha");
    // The token's fixed attribute is added, and a client cannot override it.
    assert_eq!(got[1].attribute("client.name"), Some("kiosk-7"));
    bridge.shutdown().await;
}

#[tokio::test]
async fn ws_client_cannot_spoof_token_attributes() {
    let sink = MemorySink::new();
    let bridge = start(with_token(cfg()), sink.clone());
    let mut ws = connect(&bridge.ws_url(""), None, Some("tok-1"))
        .await
        .expect("connect");
    hello(&mut ws).await;
    send(
        &mut ws,
        encode_batch(
            1,
            &[ff("x", "y").with_attribute("client.name", "someone-else")],
        )
        .unwrap(),
    )
    .await;
    assert_eq!(ack(&mut ws).await.status, AckStatus::Committed);
    let got = sink.delivered();
    let names: Vec<_> = got[0]
        .attributes
        .iter()
        .filter(|(k, _)| k == "client.name")
        .collect();
    assert_eq!(names, [&("client.name".to_string(), "kiosk-7".to_string())]);
    bridge.shutdown().await;
}

#[tokio::test]
async fn ws_wrong_or_missing_token_is_closed_4401_and_first_message_auth_works() {
    let bridge = start(with_token(cfg()), MemorySink::new());
    let mut bad = connect(&bridge.ws_url("?access_token=nope"), None, None)
        .await
        .expect("connect");
    assert_eq!(close_code(&mut bad).await, 4401);
    let mut wrong_msg = connect(&bridge.ws_url(""), None, None)
        .await
        .expect("connect");
    send_text(&mut wrong_msg, r#"{"type":"auth","token":"nope"}"#).await;
    assert_eq!(close_code(&mut wrong_msg).await, 4401);
    let mut good = connect(&bridge.ws_url(""), None, None)
        .await
        .expect("connect");
    send_text(&mut good, r#"{"type":"auth","token":"tok-1"}"#).await;
    hello(&mut good).await;
    send(&mut good, encode_batch(1, &[ff("a", "b")]).unwrap()).await;
    assert_eq!(ack(&mut good).await.status, AckStatus::Committed);
    bridge.shutdown().await;
}

async fn send_text(ws: &mut Ws, t: &str) {
    use futures_util::SinkExt;
    ws.send(tungstenite::Message::Text(t.into()))
        .await
        .expect("send text");
}

#[tokio::test]
async fn ws_without_subprotocol_is_closed_4406() {
    let bridge = start(cfg(), MemorySink::new());
    let (mut ws, _) = tokio_tungstenite::connect_async(bridge.ws_url(""))
        .await
        .expect("connect");
    assert_eq!(close_code(&mut ws).await, 4406);
    bridge.shutdown().await;
}

#[tokio::test]
async fn foreign_origin_is_refused_and_allowed_origin_works() {
    let mut c = cfg();
    c.allowed_origins = vec!["https://app.example".into()];
    let bridge = start(c, MemorySink::new());
    // Refused so that a browser can tell why: the upgrade is accepted, then closed at once with
    // the application close code 4003 (a plain 403 reaches a page only as 1006).
    let mut refused = connect(&bridge.ws_url(""), Some("https://evil.example"), None)
        .await
        .expect("the upgrade is accepted, then closed");
    assert_eq!(close_code(&mut refused).await, 4003);
    let mut ws = connect(&bridge.ws_url(""), Some("https://app.example"), None)
        .await
        .expect("allowed");
    hello(&mut ws).await;
    // Same-origin pages (served by the bridge itself) are allowed without configuration.
    let same = format!("http://{}", bridge.addr);
    let mut ws2 = connect(&bridge.ws_url(""), Some(&same), None)
        .await
        .expect("same origin");
    hello(&mut ws2).await;
    bridge.shutdown().await;
}

#[tokio::test]
async fn bad_crc_truncated_payload_and_limits_are_rejected_and_the_connection_keeps_working() {
    let mut c = cfg();
    c.limits.max_attributes = 4;
    let sink = MemorySink::new();
    let bridge = start(c, sink.clone());
    let mut ws = connect(&bridge.ws_url(""), None, None)
        .await
        .expect("connect");
    hello(&mut ws).await;

    let mut bad_crc = encode_batch(1, &[ff("a", "b")]).unwrap().to_vec();
    bad_crc[14] ^= 0xff;
    send(&mut ws, bad_crc).await;
    let a = ack(&mut ws).await;
    assert_eq!(
        (a.status, a.batch_id, Reason::from_code(a.reason)),
        (AckStatus::Rejected, 1, Some(Reason::BadCrc))
    );

    // Header claims 2 FlowFiles, payload holds 1 (CRC fixed up so the decode is what fails).
    let mut short = encode_batch(2, &[ff("a", "b")]).unwrap().to_vec();
    short[13] = 2;
    send(&mut ws, short).await;
    let a = ack(&mut ws).await;
    assert_eq!(
        (a.status, a.batch_id, Reason::from_code(a.reason)),
        (AckStatus::Rejected, 2, Some(Reason::Malformed))
    );

    // Payload cut in the middle of a FlowFile, CRC recomputed over what is left.
    let full = encode_batch(3, &[ff("a", "bbbbbbbb")]).unwrap();
    let mut cut = full[..full.len() - 3].to_vec();
    let crc = crc32fast::hash(&cut[BATCH_HEADER_LEN..]);
    cut[14..18].copy_from_slice(&crc.to_be_bytes());
    send(&mut ws, cut).await;
    let a = ack(&mut ws).await;
    assert_eq!(
        (a.status, Reason::from_code(a.reason)),
        (AckStatus::Rejected, Some(Reason::Malformed))
    );

    let many = (0..6).fold(ff("m", "x"), |f, i| f.with_attribute(format!("k{i}"), "v"));
    send(&mut ws, encode_batch(4, &[many]).unwrap()).await;
    let a = ack(&mut ws).await;
    assert_eq!(
        (a.status, Reason::from_code(a.reason)),
        (AckStatus::Rejected, Some(Reason::Limit))
    );
    assert!(a.message.contains("max_attributes"), "{}", a.message);

    send(&mut ws, encode_batch(5, &[ff("ok", "fine")]).unwrap()).await;
    let a = ack(&mut ws).await;
    assert_eq!((a.status, a.batch_id), (AckStatus::Committed, 5));
    assert_eq!(
        sink.delivered().len(),
        1,
        "nothing from rejected batches may be forwarded"
    );
    bridge.shutdown().await;
}

#[tokio::test]
async fn truncated_header_closes_1002_and_oversize_closes_1009_others_keep_working() {
    let mut c = cfg();
    c.limits.max_message_bytes = 4096;
    let bridge = start(c, MemorySink::new());

    let mut a = connect(&bridge.ws_url(""), None, None)
        .await
        .expect("connect");
    hello(&mut a).await;
    send(&mut a, vec![1u8, 0, 0, 0, 0]).await;
    assert_eq!(close_code(&mut a).await, 1002);

    let mut b = connect(&bridge.ws_url(""), None, None)
        .await
        .expect("connect");
    hello(&mut b).await;
    send(
        &mut b,
        encode_batch(1, &[ff("big", &"x".repeat(10_000))]).unwrap(),
    )
    .await;
    assert_eq!(close_code(&mut b).await, 1009);

    let mut c = connect(&bridge.ws_url(""), None, None)
        .await
        .expect("connect");
    hello(&mut c).await;
    send(&mut c, encode_batch(7, &[ff("ok", "small")]).unwrap()).await;
    assert_eq!(ack(&mut c).await.status, AckStatus::Committed);
    bridge.shutdown().await;
}

#[tokio::test]
async fn backpressure_becomes_retry_after_ack_429_and_503() {
    let sink = MemorySink::new();
    sink.set_mode(MemoryMode::Full);
    let bridge = start(cfg(), sink.clone());
    let mut ws = connect(&bridge.ws_url(""), None, None)
        .await
        .expect("connect");
    hello(&mut ws).await;
    send(&mut ws, encode_batch(9, &[ff("a", "b")]).unwrap()).await;
    let a = ack(&mut ws).await;
    assert_eq!(
        (a.status, Reason::from_code(a.reason)),
        (AckStatus::Retry, Some(Reason::Backpressure))
    );
    assert!(a.retry_after_ms > 0);

    let http = reqwest::Client::new();
    let r = http
        .post(bridge.url("/v1/flowfiles"))
        .body(r#"[{"attributes":{"id":"j"},"content":"x"}]"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["results"][0]["status"], "retry");

    let r = http
        .post(bridge.url("/contentListener"))
        .body("data")
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        503,
        "ListenHTTP answers 503 when its destination is full"
    );
    assert!(r.headers().get("retry-after").is_some());

    // Once NiFi has room again, the same batch goes through.
    sink.set_mode(MemoryMode::Accept);
    send(&mut ws, encode_batch(9, &[ff("a", "b")]).unwrap()).await;
    assert_eq!(ack(&mut ws).await.status, AckStatus::Committed);
    assert_eq!(sink.delivered().len(), 1);
    bridge.shutdown().await;
}

#[tokio::test]
async fn json_endpoint_results_and_errors() {
    let sink = MemorySink::new();
    let bridge = start(with_token(cfg()), sink.clone());
    let http = reqwest::Client::new();
    let url = bridge.url("/v1/flowfiles");

    let r = http.post(&url).body("[]").send().await.expect("post");
    assert_eq!(r.status(), 401);

    let r = http
        .post(&url)
        .bearer_auth("tok-1")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["reason"], "MALFORMED");

    let r = http
        .post(&url)
        .bearer_auth("tok-1")
        .body(
            r#"[{"attributes":{"id":"t1"},"content":"hello"},
                {"attributes":{"id":"t2"},"content_base64":"AAEC/w=="},
                {"attributes":{"id":"t3"},"content":"a","content_base64":"YQ=="}]"#,
        )
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 207);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["results"][0]["status"], "committed");
    assert_eq!(body["results"][1]["status"], "committed");
    assert_eq!(body["results"][2]["status"], "rejected");
    let got = sink.delivered();
    assert_eq!(got.len(), 2);
    assert_eq!(&got[1].content[..], &[0u8, 1, 2, 255]);
    assert_eq!(got[0].attribute("client.name"), Some("kiosk-7"));

    let r = http
        .post(format!("{url}?access_token=tok-1"))
        .body(r#"[{"attributes":{"id":"t4"},"content":"q"}]"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    bridge.shutdown().await;
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
async fn listenhttp_headers_flowfile_v3_and_broken_bodies() {
    let mut c = cfg();
    c.listen_http.header_regex = Some("x-.*".into());
    let sink = MemorySink::new();
    let bridge = start(c, sink.clone());
    let http = reqwest::Client::new();
    let url = bridge.url("/contentListener");

    let r = http
        .post(&url)
        .header("x-source", "sensor-1")
        .header("filename", "reading.txt")
        .header("other", "not copied")
        .body("21.5")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let got = sink.delivered();
    assert_eq!(got[0].attribute("x-source"), Some("sensor-1"));
    assert_eq!(got[0].attribute("filename"), Some("reading.txt"));
    assert_eq!(got[0].attribute("other"), None);
    assert_eq!(
        got[0].attribute("restlistener.request.uri"),
        Some("/contentListener")
    );
    assert_eq!(&got[0].content[..], b"21.5");

    let mut body = ffv3(&[("filename", "one.txt"), ("uuid", "u-1")], b"first");
    body.extend(ffv3(&[("filename", "two.txt")], b"second"));
    let r = http
        .post(&url)
        .header("content-type", "application/flowfile-v3")
        .header("x-batch", "b7")
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let got = sink.delivered();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].attribute("filename"), Some("one.txt"));
    assert_eq!(
        got[1].attribute("uuid"),
        None,
        "ListenHTTP drops the package uuid"
    );
    assert_eq!(got[2].attribute("x-batch"), Some("b7"));
    assert_eq!(&got[2].content[..], b"second");

    let r = http
        .post(&url)
        .header("content-type", "application/flowfile-v3")
        .body(body[..body.len() - 2].to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        500,
        "ListenHTTP answers an unreadable package with 500"
    );
    assert!(r.text().await.expect("text").contains("flowfile-v3"));
    assert_eq!(
        sink.delivered().len(),
        3,
        "nothing of a broken body is forwarded"
    );

    let r = http.head(&url).send().await.expect("head");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nifi-transfer-protocol-version"], "3");
    let r = http.get(&url).send().await.expect("get");
    assert_eq!(r.status(), 405);
    let r = http
        .get(format!("{url}/healthcheck"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    bridge.shutdown().await;
}

#[tokio::test]
async fn cors_preflight_and_oversize_body() {
    let mut c = cfg();
    c.allowed_origins = vec!["https://app.example".into()];
    c.limits.max_body_bytes = s2s_bridge::ByteLimit::Bytes(1024);
    let bridge = start(c, MemorySink::new());
    let http = reqwest::Client::new();
    let url = bridge.url("/v1/flowfiles");
    let pre = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert_eq!(pre.status(), 204);
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        pre.headers()["access-control-allow-methods"]
            .to_str()
            .expect("str")
            .contains("POST")
    );
    assert!(
        pre.headers()["access-control-allow-headers"]
            .to_str()
            .expect("str")
            .contains("authorization")
    );
    let foreign = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(foreign.status(), 403);
    let r = http
        .post(&url)
        .header("origin", "https://app.example")
        .body(r#"[{"content":"ok"}]"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let r = http
        .post(&url)
        .body(vec![b' '; 4096])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    bridge.shutdown().await;
}

#[tokio::test]
async fn ops_endpoints() {
    let sink = MemorySink::new();
    let bridge = start(cfg(), sink.clone());
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(bridge.url("/healthz"))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    assert_eq!(
        http.get(bridge.url("/readyz"))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    sink.set_mode(MemoryMode::Down);
    assert_eq!(
        http.get(bridge.url("/readyz"))
            .send()
            .await
            .expect("get")
            .status(),
        503
    );
    sink.set_mode(MemoryMode::Accept);
    let r = http
        .post(bridge.url("/contentListener"))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let text = http
        .get(bridge.url("/metrics"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("bridge_records_in_total{source=\"listenhttp\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("bridge_s2s_transactions_total{peer=\"memory\",outcome=\"committed\"} 1"),
        "{text}"
    );
    bridge.shutdown().await;
}

#[tokio::test]
async fn spool_mode_acks_while_nifi_is_down_and_drains_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg();
    c.ack = AckMode::Spool;
    c.spool.dir = dir.path().to_path_buf();
    c.forward.backoff_max_ms = 100;
    let sink = MemorySink::new();
    sink.set_mode(MemoryMode::Down);
    let bridge = start(c, sink.clone());
    let mut ws = connect(&bridge.ws_url(""), None, None)
        .await
        .expect("connect");
    assert_eq!(hello(&mut ws).await.ack_mode, "spool");
    for i in 0..5u64 {
        send(
            &mut ws,
            encode_batch(i, &[ff(&format!("s{i}"), "data")]).unwrap(),
        )
        .await;
    }
    for _ in 0..5 {
        assert_eq!(ack(&mut ws).await.status, AckStatus::Committed);
    }
    assert_eq!(sink.delivered().len(), 0);
    sink.set_mode(MemoryMode::Accept);
    assert_eq!(sink.wait_for(5, Duration::from_secs(10)).await, 5);
    let mut ids: Vec<_> = sink
        .delivered()
        .iter()
        .map(|f| f.attribute("id").unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["s0", "s1", "s2", "s3", "s4"]);
    bridge.shutdown().await;
}

#[tokio::test]
async fn spool_full_gives_429_with_reject_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg();
    c.ack = AckMode::Spool;
    c.spool.dir = dir.path().to_path_buf();
    c.spool.max_bytes = 400;
    c.spool.full_policy = s2s_bridge::spool::FullPolicy::Reject;
    let sink = MemorySink::new();
    sink.set_mode(MemoryMode::Down);
    let bridge = start(c, sink.clone());
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..10 {
        let r = http
            .post(bridge.url("/v1/flowfiles"))
            .body(format!(r#"[{{"attributes":{{"id":"f{i}"}},"content":"0123456789012345678901234567890123456789"}}]"#))
            .send()
            .await
            .expect("post");
        statuses.push(r.status().as_u16());
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    assert_eq!(
        http.get(bridge.url("/readyz"))
            .send()
            .await
            .expect("get")
            .status(),
        503
    );
    bridge.shutdown().await;
}

#[tokio::test]
async fn shutdown_answers_in_flight_batches_then_closes_1001() {
    let sink = MemorySink::new();
    sink.set_delay(Duration::from_millis(500));
    let bridge = start(cfg(), sink.clone());
    let mut ws = connect(&bridge.ws_url(""), None, None)
        .await
        .expect("connect");
    hello(&mut ws).await;
    send(&mut ws, encode_batch(11, &[ff("late", "x")]).unwrap()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(bridge.shutdown());
    let a = ack(&mut ws).await;
    assert_eq!((a.status, a.batch_id), (AckStatus::Committed, 11));
    assert_eq!(close_code(&mut ws).await, 1001);
    stopping.await.expect("shutdown");
    assert_eq!(sink.delivered().len(), 1);
}

/// `n` WebSocket clients of `bridge`, past the hello.
async fn ws_clients(bridge: &Running, n: usize) -> Vec<Ws> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let mut ws = connect(&bridge.ws_url(""), None, None)
            .await
            .expect("connect");
        hello(&mut ws).await;
        clients.push(ws);
    }
    clients
}

#[tokio::test]
async fn aggregates_batches_from_many_clients_into_few_transactions() {
    let sink = MemorySink::new();
    let mut c = cfg();
    c.forward.linger_ms = 200;
    c.forward.max_transactions = 1;
    let bridge = start(c, sink.clone());
    let mut clients = ws_clients(&bridge, 5).await;
    for (i, ws) in clients.iter_mut().enumerate() {
        send(
            ws,
            encode_batch(i as u64, &[ff(&format!("c{i}"), "x")]).unwrap(),
        )
        .await;
    }
    for ws in &mut clients {
        assert_eq!(ack(ws).await.status, AckStatus::Committed);
    }
    assert_eq!(sink.delivered().len(), 5);
    assert!(
        sink.transactions() < 5,
        "expected aggregation, got {} transactions",
        sink.transactions()
    );
    bridge.shutdown().await;
}

/// The default `linger_ms = 0` is group commit: a lone batch goes at once, and batches that arrive
/// while every transaction slot is busy go together when one frees.
#[tokio::test]
async fn default_forwarding_groups_batches_that_wait_for_a_busy_slot() {
    let sink = MemorySink::new();
    sink.set_delay(Duration::from_millis(300));
    let mut c = cfg();
    c.forward.linger_ms = s2s_bridge::forward::ForwardConfig::default().linger_ms;
    assert_eq!(c.forward.linger_ms, 0, "the default is group commit");
    c.forward.max_transactions = 1;
    let bridge = start(c, sink.clone());
    let mut clients = ws_clients(&bridge, 5).await;
    send(
        &mut clients[0],
        encode_batch(0, &[ff("first", "x")]).unwrap(),
    )
    .await;
    // The first transaction is under way (300 ms): the next four queue behind it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (i, ws) in clients.iter_mut().enumerate().skip(1) {
        send(
            ws,
            encode_batch(i as u64, &[ff(&format!("c{i}"), "x")]).unwrap(),
        )
        .await;
    }
    for ws in &mut clients {
        assert_eq!(ack(ws).await.status, AckStatus::Committed);
    }
    assert_eq!(sink.delivered().len(), 5);
    assert_eq!(
        sink.transactions(),
        2,
        "the first batch alone, then the four that waited for the slot together"
    );
    bridge.shutdown().await;
}

// ---- Issue 12 parts 4–5: one admission path, every rejection counted under its reason. ----

/// `bridge_rejections_total{reason}` from `/metrics`.
async fn rejections(addr: std::net::SocketAddr) -> std::collections::BTreeMap<String, u64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter_map(|l| l.strip_prefix("bridge_rejections_total{reason=\""))
        .filter_map(|l| {
            let (reason, rest) = l.split_once("\"}")?;
            Some((reason.to_owned(), rest.trim().parse().ok()?))
        })
        .collect()
}

/// Waits until `reason` was counted `n` times (rejections noticed by the server asynchronously,
/// such as a body cut off by a client that went away).
async fn wait_rejections(addr: std::net::SocketAddr, reason: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = rejections(addr).await.get(reason).copied().unwrap_or(0);
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{reason}: {got} of {n} rejections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn expected(pairs: &[(&str, u64)]) -> std::collections::BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// Starts a chunked POST to `path` and leaves its body unfinished: the request holds its HTTP
/// request slot until the stream is dropped (then the bridge counts it TRUNCATED).
async fn hold_request_open(
    addr: std::net::SocketAddr,
    path: &str,
    token: &str,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Transfer-Encoding: chunked\r\n\r\n1\r\n[\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s
}

/// Posts `body` until the answer is 503 (the held request has taken the only slot); returns it.
async fn until_busy(http: &reqwest::Client, url: &str, body: &'static str) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = http
            .post(url)
            .bearer_auth("tok-1")
            .body(body)
            .send()
            .await
            .expect("post");
        if r.status() == 503 {
            return r;
        }
        assert!(Instant::now() < deadline, "never 503: {}", r.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ws_rejections_are_counted_under_their_reason_and_a_valid_batch_still_commits() {
    let mut c = with_token(cfg());
    c.allowed_origins = vec!["https://app.example".into()];
    c.limits.max_connections = 3;
    c.limits.max_message_bytes = 4096;
    c.limits.max_attributes = 4;
    c.limits.max_inflight = 1;
    let sink = MemorySink::new();
    let bridge = start(c, sink.clone());
    let ws_url = bridge.ws_url("");
    let good = || connect(&ws_url, None, Some("tok-1"));

    // CONNECTION_LIMIT: a handshake over max_connections is answered 503.
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut ws = good().await.expect("connect");
        hello(&mut ws).await;
        open.push(ws);
    }
    match good().await {
        Err(tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 503);
            assert!(r.headers().get("retry-after").is_some());
        }
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    let mut ws = open.pop().expect("one");
    drop(open);
    // Wait until the two closed connections gave their slots back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reqwest::get(bridge.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
        .contains("bridge_ws_connections 1\n")
    {
        assert!(Instant::now() < deadline, "connections not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // UNAUTHORIZED (4401), UNSUPPORTED_VERSION (4406), FOREIGN_ORIGIN (4003).
    let mut bad = connect(&bridge.ws_url("?access_token=nope"), None, None)
        .await
        .expect("connect");
    assert_eq!(close_code(&mut bad).await, 4401);
    let (mut plain, _) = tokio_tungstenite::connect_async(bridge.ws_url("?access_token=tok-1"))
        .await
        .expect("connect");
    assert_eq!(close_code(&mut plain).await, 4406);
    let mut foreign = connect(
        &bridge.ws_url(""),
        Some("https://evil.example"),
        Some("tok-1"),
    )
    .await
    .expect("connect");
    assert_eq!(close_code(&mut foreign).await, 4003);

    // Batch-level: BAD_CRC, MALFORMED, LIMIT, TOO_MANY_INFLIGHT, BACKPRESSURE (acks).
    let mut bad_crc = encode_batch(1, &[ff("a", "b")]).unwrap().to_vec();
    bad_crc[14] ^= 0xff;
    send(&mut ws, bad_crc).await;
    assert_eq!(ack(&mut ws).await.reason, Reason::BadCrc.code());
    let mut short = encode_batch(2, &[ff("a", "b")]).unwrap().to_vec();
    short[13] = 2;
    send(&mut ws, short).await;
    assert_eq!(ack(&mut ws).await.reason, Reason::Malformed.code());
    let many = (0..6).fold(ff("m", "x"), |f, i| f.with_attribute(format!("k{i}"), "v"));
    send(&mut ws, encode_batch(3, &[many]).unwrap()).await;
    assert_eq!(ack(&mut ws).await.reason, Reason::Limit.code());
    sink.set_delay(Duration::from_millis(500));
    send(&mut ws, encode_batch(4, &[ff("slow", "x")]).unwrap()).await;
    send(&mut ws, encode_batch(5, &[ff("extra", "x")]).unwrap()).await;
    let a = ack(&mut ws).await;
    assert_eq!(
        (a.batch_id, a.status, a.reason),
        (5, AckStatus::Retry, Reason::TooManyInflight.code())
    );
    assert_eq!(ack(&mut ws).await.status, AckStatus::Committed);
    sink.set_delay(Duration::ZERO);
    sink.set_mode(MemoryMode::Full);
    send(&mut ws, encode_batch(6, &[ff("full", "x")]).unwrap()).await;
    assert_eq!(ack(&mut ws).await.reason, Reason::Backpressure.code());
    sink.set_mode(MemoryMode::Accept);

    // LIMIT (1009): a message over max_message_bytes closes that connection.
    let mut big = good().await.expect("connect");
    hello(&mut big).await;
    send(
        &mut big,
        encode_batch(1, &[ff("big", &"x".repeat(10_000))]).unwrap(),
    )
    .await;
    assert_eq!(close_code(&mut big).await, 1009);

    // The first connection still works.
    send(&mut ws, encode_batch(7, &[ff("ok", "fine")]).unwrap()).await;
    assert_eq!(ack(&mut ws).await.status, AckStatus::Committed);
    wait_rejections(bridge.addr, "LIMIT", 2).await;
    assert_eq!(
        rejections(bridge.addr).await,
        expected(&[
            ("BACKPRESSURE", 1),
            ("BAD_CRC", 1),
            ("CONNECTION_LIMIT", 1),
            ("FOREIGN_ORIGIN", 1),
            ("LIMIT", 2),
            ("MALFORMED", 1),
            ("TOO_MANY_INFLIGHT", 1),
            ("UNAUTHORIZED", 1),
            ("UNSUPPORTED_VERSION", 1),
        ])
    );
    let ids: Vec<_> = sink
        .delivered()
        .iter()
        .filter_map(|f| f.attribute("id").map(str::to_owned))
        .collect();
    assert_eq!(ids, ["slow", "ok"]);
    bridge.shutdown().await;
}

#[tokio::test]
async fn json_rejections_are_counted_under_their_reason_and_a_valid_post_still_commits() {
    let mut c = with_token(cfg());
    c.allowed_origins = vec!["https://app.example".into()];
    c.limits.max_body_bytes = s2s_bridge::ByteLimit::Bytes(1024);
    c.limits.max_attributes = 4;
    c.limits.max_http_requests = 1;
    let sink = MemorySink::new();
    let bridge = start(c, sink.clone());
    let http = reqwest::Client::new();
    let url = bridge.url("/v1/flowfiles");
    let valid = r#"[{"attributes":{"id":"v"},"content":"x"}]"#;
    let post = || http.post(&url).bearer_auth("tok-1");
    let reason = |r: reqwest::Response| async move {
        let body: serde_json::Value = r.json().await.expect("json");
        body["reason"].as_str().unwrap_or_default().to_owned()
    };

    let r = http.post(&url).body(valid).send().await.expect("post");
    assert_eq!(r.status(), 401);
    assert_eq!(reason(r).await, "UNAUTHORIZED");
    let r = post()
        .header("content-encoding", "br")
        .body(valid)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 415);
    assert_eq!(reason(r).await, "UNSUPPORTED_MEDIA_TYPE");
    let r = post()
        .header("content-type", "application/flowfile-v3")
        .body(valid)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 415);
    let r = post().body(vec![b' '; 4096]).send().await.expect("post");
    assert_eq!(r.status(), 413);
    assert_eq!(reason(r).await, "LIMIT");
    let r = post().body("{not json").send().await.expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(reason(r).await, "MALFORMED");
    let r = http
        .post(&url)
        .header("origin", "https://evil.example")
        .bearer_auth("tok-1")
        .body(valid)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);

    // One malformed element, one over max_attributes, one fine: each counted under its reason.
    let r = post()
        .body(
            r#"[{"bogus":1},
                {"attributes":{"a":"1","b":"2","c":"3","d":"4","e":"5"},"content":"x"},
                {"attributes":{"id":"mixed"},"content":"x"}]"#,
        )
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 207);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["results"][0]["reason"], "MALFORMED");
    assert_eq!(body["results"][1]["reason"], "LIMIT");

    // CONNECTION_LIMIT: max_http_requests = 1 is taken by a request whose body never ends.
    let held = hold_request_open(bridge.addr, "/v1/flowfiles", "tok-1").await;
    let r = until_busy(&http, &url, valid).await;
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(reason(r).await, "CONNECTION_LIMIT");
    drop(held);
    wait_rejections(bridge.addr, "TRUNCATED", 1).await;

    // BACKPRESSURE (429) and UNAVAILABLE (503) from the pipeline.
    sink.set_mode(MemoryMode::Full);
    let r = post().body(valid).send().await.expect("post");
    assert_eq!(r.status(), 429);
    sink.set_mode(MemoryMode::Down);
    let r = post().body(valid).send().await.expect("post");
    assert_eq!(r.status(), 503);
    sink.set_mode(MemoryMode::Accept);

    let r = post().body(valid).send().await.expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(
        rejections(bridge.addr).await,
        expected(&[
            ("BACKPRESSURE", 1),
            ("CONNECTION_LIMIT", 1),
            ("FOREIGN_ORIGIN", 1),
            ("LIMIT", 2),
            ("MALFORMED", 2),
            ("TRUNCATED", 1),
            ("UNAUTHORIZED", 1),
            ("UNAVAILABLE", 1),
            ("UNSUPPORTED_MEDIA_TYPE", 2),
        ])
    );
    assert!(
        sink.delivered()
            .iter()
            .any(|f| f.attribute("id") == Some("mixed"))
    );
    bridge.shutdown().await;
}

#[tokio::test]
async fn listenhttp_rejections_are_counted_under_their_reason_and_a_valid_post_still_commits() {
    let mut c = with_token(cfg());
    c.allowed_origins = vec!["https://app.example".into()];
    c.limits.max_body_bytes = s2s_bridge::ByteLimit::Bytes(1024);
    c.limits.max_http_requests = 1;
    let sink = MemorySink::new();
    let bridge = start(c, sink.clone());
    let http = reqwest::Client::new();
    let url = bridge.url("/contentListener");
    let post = || http.post(&url).bearer_auth("tok-1");

    let r = http.post(&url).body("x").send().await.expect("post");
    assert_eq!(r.status(), 401);
    let r = post()
        .header("origin", "https://evil.example")
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let r = post().body(vec![b'x'; 4096]).send().await.expect("post");
    assert_eq!(r.status(), 413);
    let r = post()
        .header("content-type", "application/flowfile-v3")
        .body(b"NiFiFF3\x00\x01".to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        500,
        "ListenHTTP answers an unreadable package with 500"
    );
    let r = http
        .delete(format!("{url}/holds/no-such-hold"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 404);

    let held = hold_request_open(bridge.addr, "/contentListener", "tok-1").await;
    let r = until_busy(&http, &url, "x").await;
    assert!(r.headers().get("retry-after").is_some());
    drop(held);
    wait_rejections(bridge.addr, "TRUNCATED", 1).await;

    sink.set_mode(MemoryMode::Full);
    let r = post().body("x").send().await.expect("post");
    assert_eq!(
        r.status(),
        503,
        "ListenHTTP answers 503 when its destination is full"
    );
    sink.set_mode(MemoryMode::Down);
    let r = post().body("x").send().await.expect("post");
    assert_eq!(r.status(), 503);
    sink.set_mode(MemoryMode::Refuse);
    let r = post().body("x").send().await.expect("post");
    assert_eq!(r.status(), 500);
    sink.set_mode(MemoryMode::Accept);

    let r = post().body("fine").send().await.expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(
        rejections(bridge.addr).await,
        expected(&[
            ("BACKPRESSURE", 1),
            ("CONNECTION_LIMIT", 1),
            ("DESTINATION_REJECTED", 1),
            ("FOREIGN_ORIGIN", 1),
            ("LIMIT", 1),
            ("MALFORMED", 1),
            ("TRUNCATED", 1),
            ("UNAUTHORIZED", 1),
            ("UNAVAILABLE", 1),
            ("UNKNOWN_HOLD", 1),
        ])
    );
    assert_eq!(sink.delivered().len(), 1);
    assert_eq!(&sink.delivered()[0].content[..], b"fine");
    bridge.shutdown().await;
}

/// The `s2s-bridge` binary with the in-memory sink, its stdout and stderr in files, the
/// environment of a service (`RUST_LOG=info`, no `NO_COLOR`).
struct Binary {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Binary {
    async fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_s2s-bridge"))
            .args(["--memory-sink", "--listen", &addr.to_string()])
            .args(args)
            .env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawn s2s-bridge");
        wait_healthy(addr).await;
        Self {
            child,
            addr,
            out,
            err,
            _dir: dir,
        }
    }

    /// Stops the process; its stdout and stderr.
    fn stop(mut self) -> (String, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let read = |p: &std::path::Path| std::fs::read_to_string(p).expect("log file");
        (read(&self.out), read(&self.err))
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_flood_of_bad_requests_logs_a_bounded_number_of_lines_and_counts_every_one() {
    let bin = Binary::start(&["--token", "secret"]).await;
    let http = reqwest::Client::new();
    for i in 0..200 {
        let path = if i % 2 == 0 {
            "/contentListener"
        } else {
            "/v1/flowfiles"
        };
        let r = http
            .post(format!("http://{}{path}", bin.addr))
            .bearer_auth("wrong")
            .body("[]")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 401);
    }
    assert_eq!(rejections(bin.addr).await.get("UNAUTHORIZED"), Some(&200));
    let (out, err) = bin.stop();
    let log = format!("{out}{err}");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("UNAUTHORIZED")).collect();
    assert_eq!(
        lines.len(),
        1,
        "200 identical rejections within 30 s: one line (the summary follows at the window's end)\n{log}"
    );
    assert!(lines[0].contains("peer"), "{}", lines[0]);
    assert!(log.lines().count() <= 5, "{log}");
}

#[tokio::test]
async fn logs_carry_no_ansi_escapes_when_redirected() {
    let bin = Binary::start(&["--token", "secret"]).await;
    let r = reqwest::Client::new()
        .post(format!("http://{}/contentListener", bin.addr))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    let (out, err) = bin.stop();
    let log = format!("{out}{err}");
    assert!(log.contains("s2s-bridge listening"), "{log}");
    assert!(log.contains("UNAUTHORIZED"), "{log}");
    assert!(
        !log.contains("\x1b["),
        "ANSI escape codes in a redirected log:\n{log:?}"
    );
}

#[test]
fn help_names_every_endpoint_and_a_flag_for_every_limit() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_s2s-bridge"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("utf-8");
    for endpoint in [
        "/v1/ws",
        "/v1/flowfiles",
        "/contentListener",
        "/contentListener/holds/{id}",
        "/contentListener/healthcheck",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(help.contains(endpoint), "--help lacks {endpoint}");
    }
    let limits = toml::Value::try_from(s2s_bridge::Limits::default()).expect("serializes");
    let mut keys: Vec<String> = limits.as_table().expect("table").keys().cloned().collect();
    keys.extend(["spool_max_bytes", "max_bytes_per_sec", "hold_timeout_ms"].map(String::from));
    for key in keys {
        let flag = format!("--{}", key.replace('_', "-"));
        assert!(help.contains(&flag), "no flag {flag} for the limit {key}");
    }
}
