//! Retry decisions against a REAL NiFi (the shared instance of `cargo xtask nifi up`, or
//! `NIFI_URL`; skipped without one unless `S2S_E2E=1`): a stopped input port is noticed in about
//! a second on a pooled connection, not after the 30 s I/O timeout.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nifi_testkit::nifi_or_skip;
use s2s_bridge::{Config, Delivery, Reason, S2sSink, Sink};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn stopped_port_is_noticed_in_about_a_second_on_a_pooled_connection() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("bridge-stopgap").await.expect("port");
    let mut cfg = Config::default();
    cfg.nifi.urls = vec![nifi.url().to_owned()];
    cfg.nifi.port_name = Some(port.name().to_owned());
    cfg.forward.linger_ms = 10;
    // The default I/O timeout (30 s): what a stopped port used to cost.
    assert_eq!(cfg.nifi.timeout_ms, 30_000);

    // 1. The sink itself: the first retryable answer after the stop.
    let sink = S2sSink::new(&cfg.nifi).expect("sink");
    let rec = |id: &str| s2s_bridge::Record::from(ff(id, id));
    assert!(matches!(
        sink.deliver(&[rec("warm")]).await,
        Delivery::Committed { .. }
    ));
    assert_eq!(sink.client().pooled_connections(), 1, "a pooled connection");
    port.stop().await.expect("stop");
    let t = Instant::now();
    let d = sink.deliver(&[rec("while-stopped")]).await;
    let sink_gap = t.elapsed();
    let Delivery::Retryable {
        reason, message, ..
    } = d
    else {
        panic!("expected retryable, got {d:?}")
    };
    assert_eq!(reason, Reason::Unavailable, "{message}");
    assert!(
        message.to_lowercase().contains("not running")
            || message.contains("PORT_NOT_IN_VALID_STATE"),
        "{message}"
    );
    println!("stopped port -> first retryable error from the sink: {sink_gap:.2?} ({message})");
    assert!(
        sink_gap < Duration::from_secs(10),
        "{sink_gap:?}: waited for the I/O timeout"
    );
    port.start().await.expect("start");

    // 2. Through the bridge with ack = "nifi": POST after the stop -> 503.
    let bridge = start(cfg.clone(), S2sSink::new(&cfg.nifi).expect("sink"));
    let http = reqwest::Client::new();
    let post = |id: &'static str| {
        http.post(bridge.url("/contentListener"))
            .header("id", id)
            .body(id)
            .send()
    };
    assert_eq!(post("before").await.expect("post").status(), 200);
    port.stop().await.expect("stop");
    let t = Instant::now();
    let r = post("during").await.expect("post");
    let bridge_gap = t.elapsed();
    assert_eq!(r.status(), 503, "{:?}", r.text().await);
    println!(
        "stopped port -> 503 from the bridge (ack=nifi, retry budget {} ms): {bridge_gap:.2?}",
        cfg.forward.retry_budget_ms
    );
    assert!(
        bridge_gap < Duration::from_secs(15),
        "{bridge_gap:?}: waited for the I/O timeout"
    );
    // Started again: accepted again.
    port.start().await.expect("start");
    let deadline = Instant::now() + WAIT;
    loop {
        let s = post("after").await.expect("post").status();
        if s == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {s} after the port started"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    port.wait_for_queued(3, WAIT).await.expect("queued");
    bridge.shutdown().await;
    port.delete().await.expect("delete");
}
