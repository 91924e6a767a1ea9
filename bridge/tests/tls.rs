//! The listener with TLS (rustls): HTTPS ingest works, plain HTTP on the TLS port does not.

mod common;

use common::*;
use s2s_bridge::config::TlsConfig;
use s2s_bridge::{Config, MemorySink};

#[tokio::test]
async fn https_listener_serves_ingest() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let cfg = Config {
        tls: Some(TlsConfig {
            cert,
            key,
            ..TlsConfig::default()
        }),
        ..Config::default()
    };
    let sink = MemorySink::new();
    let bridge = start(cfg, sink.clone());
    let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).expect("root");
    let http = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/v1/flowfiles", bridge.addr.port());
    let r = http
        .post(&url)
        .body(r#"[{"attributes":{"id":"tls"},"content":"secret"}]"#)
        .send()
        .await
        .expect("https post");
    assert_eq!(r.status(), 200);
    assert_eq!(&sink.delivered()[0].content[..], b"secret");
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", bridge.addr.port()))
        .send()
        .await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP must not be served on the TLS port"
    );
    bridge.shutdown().await;
}
