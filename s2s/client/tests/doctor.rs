//! `s2s doctor` against the real shared NiFi (plain; the secured cases are in `secure.rs`):
//! a healthy port passes every check on both transports; an unknown port name fails with the
//! available ports; a stopped port is reported STOPPED; an unreachable advertised peer (faked
//! with an override to a closed port) gets the override hint; a wrong URL says connection
//! refused. Plus the CLI's exit codes and `--json`.

use std::process::Command;

use nifi_testkit::nifi_or_skip;
use s2s::doctor::Status;
use s2s::{Client, Transport};

async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn healthy_input_and_output_ports_pass_on_raw_and_http() {
    let nifi = nifi_or_skip!();
    let pair = nifi.port_pair("doctor-ok").await.unwrap();
    for transport in [Transport::Raw, Transport::Http] {
        let client = Client::builder(nifi.url())
            .transport(transport)
            .build()
            .unwrap();
        for (name, kind) in [
            (pair.input.name(), "input port"),
            (pair.output.name(), "output port"),
        ] {
            let r = client.doctor(name).await;
            assert!(r.ok(), "{transport:?} {name}:\n{r}");
            let names: Vec<_> = r.checks.iter().map(|c| c.name).collect();
            assert_eq!(
                names,
                [
                    "reachable",
                    "discovery",
                    "identity",
                    "port",
                    "peers",
                    "authorization"
                ]
            );
            let port = r.check("port").unwrap();
            assert!(
                port.detail.contains(kind) && port.detail.contains("RUNNING"),
                "{r}"
            );
            let auth = r.check("authorization").unwrap();
            let want = match transport {
                Transport::Raw => "PROPERTIES_OK",
                _ => "created and cancelled",
            };
            assert!(auth.detail.contains(want), "{r}");
        }
    }
    // Nothing was transferred.
    assert_eq!(pair.input.queued_count().await.unwrap(), 0);
    pair.delete().await.unwrap();
}

#[tokio::test]
async fn unknown_port_lists_the_available_ones() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("doctor-known").await.unwrap();
    let client = Client::builder(nifi.url()).build().unwrap();
    let r = client.doctor("doctor-no-such-port").await;
    assert!(!r.ok());
    let c = r.check("port").unwrap();
    assert_eq!(c.status, Status::Fail, "{r}");
    let hint = c.hint.as_deref().unwrap();
    assert!(hint.contains(&format!("{:?}", port.name())), "{hint}");
    assert_eq!(r.check("authorization").unwrap().status, Status::Skip);
    port.delete().await.unwrap();
}

#[tokio::test]
async fn stopped_port_is_reported_stopped() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("doctor-stopped").await.unwrap();
    port.stop().await.unwrap();
    let client = Client::builder(nifi.url()).build().unwrap();
    let r = client.doctor(port.name()).await;
    let c = r.check("port").unwrap();
    assert_eq!(c.status, Status::Fail, "{r}");
    assert!(c.detail.contains("STOPPED"), "{r}");
    assert!(c.hint.as_deref().unwrap().contains("start it"), "{r}");
    // NiFi agrees when asked for a transaction.
    let a = r.check("authorization").unwrap();
    assert_eq!(a.status, Status::Fail, "{r}");
    assert!(
        a.detail.contains("not running") || a.detail.contains("PORT_NOT_IN_VALID_STATE"),
        "{r}"
    );
    port.delete().await.unwrap();
}

#[tokio::test]
async fn unreachable_advertised_peer_is_reported_with_the_override_hint() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("doctor-peer").await.unwrap();
    let probe = Client::builder(nifi.url()).build().unwrap();
    let peer = probe.peers().await.unwrap()[0].clone();
    let advertised = peer.advertised();
    // Reach NiFi under another name than the one it advertises, so the bootstrap connection
    // (URL host + RAW port) stays reachable while the advertised address is overridden.
    let url = match peer.host.as_str() {
        "localhost" => nifi.url().replace("localhost", "127.0.0.1"),
        _ => nifi.url().replace(&peer.host, "localhost"),
    };
    assert_ne!(url, nifi.url(), "NiFi advertises {advertised}");
    let closed = closed_port().await;
    // What a NiFi in Docker does: advertise an address that is closed from here.
    let client = Client::builder(&url)
        .peer_override(&advertised, format!("127.0.0.1:{closed}"))
        .build()
        .unwrap();
    let r = client.doctor(port.name()).await;
    let c = r.check("peers").unwrap();
    assert_eq!(c.status, Status::Fail, "{r}");
    assert!(
        c.detail.contains(&advertised) && c.detail.contains("connection refused"),
        "{r}"
    );
    let hint = c.hint.as_deref().unwrap();
    assert!(
        hint.contains(&format!("--peer-override {advertised}=")),
        "{hint}"
    );
    assert!(hint.contains("--single-node"), "{hint}");
    assert!(!r.ok());
    port.delete().await.unwrap();
}

#[tokio::test]
async fn wrong_url_says_connection_refused() {
    let closed = closed_port().await;
    let client = Client::builder(format!("http://127.0.0.1:{closed}/nifi"))
        .build()
        .unwrap();
    let r = client.doctor("any").await;
    let c = r.check("reachable").unwrap();
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("connection refused"), "{r}");
    assert!(c.hint.as_deref().unwrap().contains("web port"), "{r}");
    for later in ["discovery", "port", "peers", "authorization"] {
        assert_eq!(r.check(later).unwrap().status, Status::Skip, "{r}");
    }
}

#[tokio::test]
async fn cli_exit_code_and_json() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("doctor-cli").await.unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_s2s"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["doctor", "--url", nifi.url(), "--port", port.name()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with('✓')).count(),
        6,
        "{text}"
    );
    let o = run(&[
        "doctor",
        "--url",
        nifi.url(),
        "--port",
        "doctor-cli-missing",
        "--transport",
        "http",
        "--json",
    ]);
    assert!(!o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let checks = j["checks"].as_array().unwrap();
    let p = checks.iter().find(|c| c["name"] == "port").unwrap();
    assert_eq!(p["status"], "fail");
    assert!(p["hint"].as_str().unwrap().contains(port.name()), "{j}");
    port.delete().await.unwrap();
}
