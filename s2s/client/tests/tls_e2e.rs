//! The TLS column of the conformance matrix, against real **secured** NiFi:
//! {1.18.0, 2.3.0} × {RAW over TLS, HTTPS} × {send, receive} × {compression off, on}, with mutual
//! TLS (the client certificate's DN is the NiFi user), plus the failure cells: a certificate NiFi
//! does not authorize (typed unauthorized error naming the DN) and a client that trusts the wrong
//! CA (TLS error naming the cause).
//!
//! The secured instances come from `cargo xtask nifi up --secure [--version 2.3.0]` (state files
//! `target/nifi/<V>-secure/nifi.env`, which also list the generated certificates). Without them the
//! tests skip with a message; `cargo xtask test` sets `NIFI_SECURE_REQUIRED=1`, which turns a
//! missing instance into a failure.

mod common;

use std::time::Duration;

use common::{WAIT, numbered, receive_cell, send_cell};
use nifi_testkit::Nifi;
use nifi_testkit::certs::TlsFiles;
use s2s::{Client, ClientBuilder, FlowFile, Transport};

/// The wrong-DN tests need the second client's DN unknown to NiFi, the port-policy tests register
/// it for a while: they take turns (tests of one binary share this process).
static OTHER_DN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn tls(nifi: &Nifi) -> &TlsFiles {
    nifi.tls().expect("a secured instance records its PKI")
}

/// A client with the authorized identity (PEM files) and the test CA.
fn client(nifi: &Nifi, transport: Transport, compress: bool) -> ClientBuilder {
    let t = tls(nifi);
    Client::builder(nifi.url())
        .transport(transport)
        .compression(compress)
        .io_timeout(Some(Duration::from_secs(30)))
        .tls_pem(&t.ca, Some((&t.client_cert, &t.client_key)))
        .unwrap()
}

fn flowfiles(n: u64, tag: &str) -> Vec<FlowFile> {
    numbered(n, 3011, tag)
}

async fn matrix(version: &str, transport: Transport) {
    let Some(nifi) = Nifi::secured_or_skip(version).await else {
        return;
    };
    let name = match transport {
        Transport::Raw => "raw",
        _ => "http",
    };
    for compress in [false, true] {
        let label = format!("{name}-{}", if compress { "gz" } else { "plain" });
        let c = client(&nifi, transport, compress).build().unwrap();
        send_cell(&nifi, &c, &format!("tls-{label}"), 10).await;
        receive_cell(&nifi, &c, &c, &format!("tls-{label}"), 12).await;
        c.close().await;
    }
}

#[tokio::test]
async fn tls_1_18_raw_send_receive_compression_off_on() {
    matrix("1.18.0", Transport::Raw).await;
}

#[tokio::test]
async fn tls_1_18_https_send_receive_compression_off_on() {
    matrix("1.18.0", Transport::Http).await;
}

#[tokio::test]
async fn tls_2_3_raw_send_receive_compression_off_on() {
    matrix("2.3.0", Transport::Raw).await;
}

#[tokio::test]
async fn tls_2_3_https_send_receive_compression_off_on() {
    matrix("2.3.0", Transport::Http).await;
}

/// A certificate from the trusted CA whose DN NiFi does not know: a typed unauthorized error that
/// names the DN presented, on both transports, and nothing queued.
async fn wrong_dn(version: &str) {
    let Some(nifi) = Nifi::secured_or_skip(version).await else {
        return;
    };
    let t = tls(&nifi);
    let _turn = OTHER_DN.lock().await;
    // Unknown for sure, even after a port-policy test that died before removing its user.
    let leftover = nifi.create_user(&t.other_dn).await.unwrap();
    nifi.delete_user(&leftover).await.unwrap();
    let port = nifi.input_port("tls-wrong-dn").await.unwrap();
    for transport in [Transport::Raw, Transport::Http] {
        let c = Client::builder(nifi.url())
            .transport(transport)
            .io_timeout(Some(Duration::from_secs(30)))
            .tls_pem(&t.ca, Some((&t.other_cert, &t.other_key)))
            .unwrap()
            .build()
            .unwrap();
        let err = c
            .send_batch(port.name(), flowfiles(1, "wrong-dn"))
            .await
            .unwrap_err();
        assert!(err.is_unauthorized(), "{transport:?}: {err}");
        let msg = err.to_string();
        // NiFi prints the DN most specific RDN first (`CN=…, OU=…`); the client prints it in
        // certificate order. Either way both RDNs of the presented certificate must be named.
        assert!(
            msg.contains("CN=s2s-other-client") && msg.contains("OU=nifi-s2s"),
            "{transport:?}: the error must name the presented DN {:?}: {msg}",
            t.other_dn
        );
        c.close().await;
    }
    assert_eq!(port.queued_count().await.unwrap(), 0);
    port.delete().await.unwrap();
}

#[tokio::test]
async fn tls_1_18_wrong_dn_is_unauthorized_naming_the_dn() {
    wrong_dn("1.18.0").await;
}

#[tokio::test]
async fn tls_2_3_wrong_dn_is_unauthorized_naming_the_dn() {
    wrong_dn("2.3.0").await;
}

/// The client trusts a rogue CA (same name as the real one, different key): NiFi's certificate
/// fails verification, and the error says why. Also the reverse: a client certificate signed by
/// the rogue CA is refused by NiFi.
async fn wrong_ca(version: &str) {
    let Some(nifi) = Nifi::secured_or_skip(version).await else {
        return;
    };
    let t = tls(&nifi);
    let port = nifi.input_port("tls-wrong-ca").await.unwrap();
    for transport in [Transport::Raw, Transport::Http] {
        let c = Client::builder(nifi.url())
            .transport(transport)
            .io_timeout(Some(Duration::from_secs(30)))
            .tls_pem(&t.rogue_ca, Some((&t.client_cert, &t.client_key)))
            .unwrap()
            .build()
            .unwrap();
        let err = c
            .send_batch(port.name(), flowfiles(1, "wrong-ca"))
            .await
            .unwrap_err();
        let msg = s2s::error_chain(&err);
        assert!(!err.is_unauthorized(), "{transport:?}: {msg}");
        assert!(
            msg.contains("invalid peer certificate")
                && (msg.contains("BadSignature") || msg.contains("UnknownIssuer")),
            "{transport:?}: the error must name the TLS cause: {msg}"
        );
        c.close().await;

        // NiFi refuses a client certificate it cannot chain to its truststore.
        let c = Client::builder(nifi.url())
            .transport(transport)
            .io_timeout(Some(Duration::from_secs(30)))
            .tls_pem(&t.ca, Some((&t.rogue_client_cert, &t.rogue_client_key)))
            .unwrap()
            .build()
            .unwrap();
        let err = c
            .send_batch(port.name(), flowfiles(1, "rogue-client"))
            .await
            .unwrap_err();
        let msg = s2s::error_chain(&err);
        assert!(!err.is_unauthorized(), "{transport:?}: {msg}");
        // Java answers the handshake with a fatal alert (certificate_unknown on 1.18 and 2.3).
        assert!(
            msg.contains("fatal alert"),
            "{transport:?}: NiFi's refusal must surface as a TLS alert: {msg}"
        );
        c.close().await;
    }
    assert_eq!(port.queued_count().await.unwrap(), 0);
    port.delete().await.unwrap();
}

#[tokio::test]
async fn tls_1_18_wrong_ca_names_the_cause() {
    wrong_ca("1.18.0").await;
}

#[tokio::test]
async fn tls_2_3_wrong_ca_names_the_cause() {
    wrong_ca("2.3.0").await;
}

/// The identity as NiFi users have it: `client.p12` (key + certificate + CA), alone (its bundled CA
/// is trusted) and with NiFi's own `truststore.p12`, on both transports, send + receive.
async fn pkcs12(version: &str) {
    let Some(nifi) = Nifi::secured_or_skip(version).await else {
        return;
    };
    let t = tls(&nifi);
    for transport in [Transport::Raw, Transport::Http] {
        let name = format!("{transport:?}").to_lowercase();
        let bundled = Client::builder(nifi.url())
            .transport(transport)
            .compression(true)
            .io_timeout(Some(Duration::from_secs(30)))
            .tls_pkcs12(&t.client_p12, &t.client_p12_password)
            .unwrap()
            .build()
            .unwrap();
        send_cell(&nifi, &bundled, &format!("p12-{name}"), 10).await;
        bundled.close().await;
        let with_truststore = Client::builder(nifi.url())
            .transport(transport)
            .io_timeout(Some(Duration::from_secs(30)))
            .tls_pkcs12(&t.client_p12, &t.client_p12_password)
            .unwrap()
            .tls_truststore_pkcs12(&t.truststore, &t.store_password)
            .unwrap()
            .build()
            .unwrap();
        receive_cell(
            &nifi,
            &with_truststore,
            &with_truststore,
            &format!("p12ts-{name}"),
            12,
        )
        .await;
        with_truststore.close().await;
    }
}

#[tokio::test]
async fn tls_1_18_pkcs12_identity_send_receive() {
    pkcs12("1.18.0").await;
}

#[tokio::test]
async fn tls_2_3_pkcs12_identity_send_receive() {
    pkcs12("2.3.0").await;
}

/// A user NiFi knows and lets "retrieve site-to-site details", but without "receive data via
/// site-to-site" on the port: NiFi leaves the port out of that user's `/site-to-site` listing, so
/// the client cannot resolve it (by name or id) and nothing is queued. Once the policy is granted,
/// the same client delivers: the port policy is what gated it.
async fn port_policy_gates_s2s(version: &str) {
    let Some(nifi) = Nifi::secured_or_skip(version).await else {
        return;
    };
    let t = tls(&nifi);
    let _turn = OTHER_DN.lock().await;
    let port = nifi.input_port("tls-port-authz").await.unwrap();
    let user = nifi.create_user(&t.other_dn).await.unwrap();
    nifi.grant("read", "/site-to-site", &user).await.unwrap();
    let clients: Vec<(Transport, Client)> = [Transport::Raw, Transport::Http]
        .into_iter()
        .map(|transport| {
            let c = Client::builder(nifi.url())
                .transport(transport)
                .io_timeout(Some(Duration::from_secs(30)))
                .site_info_ttl(Duration::ZERO)
                .tls_pem(&t.ca, Some((&t.other_cert, &t.other_key)))
                .unwrap()
                .build()
                .unwrap();
            (transport, c)
        })
        .collect();
    for (transport, c) in &clients {
        for target in [port.name(), port.id()] {
            let err = c
                .send_batch(target, flowfiles(1, "port-authz"))
                .await
                .unwrap_err();
            assert!(
                err.is_unknown_port() || err.is_unauthorized(),
                "{transport:?} {target}: {}",
                s2s::error_chain(&err)
            );
        }
    }
    assert_eq!(port.queued_count().await.unwrap(), 0);
    nifi.grant(
        "write",
        &format!("/data-transfer/input-ports/{}", port.id()),
        &user,
    )
    .await
    .unwrap();
    for (transport, c) in &clients {
        c.send_batch(port.name(), flowfiles(2, "port-authz"))
            .await
            .unwrap_or_else(|e| panic!("{transport:?} after the grant: {}", s2s::error_chain(&e)));
        c.close().await;
    }
    port.wait_for_queued(4, WAIT).await.unwrap();
    let q = port.queued_flowfiles().await.unwrap();
    assert_eq!(q.len(), 4);
    assert!(q.iter().all(|f| f.attributes["tag"] == "port-authz"));
    nifi.delete_user(&user).await.unwrap();
    port.delete().await.unwrap();
}

#[tokio::test]
async fn tls_1_18_port_policy_gates_s2s() {
    port_policy_gates_s2s("1.18.0").await;
}

#[tokio::test]
async fn tls_2_3_port_policy_gates_s2s() {
    port_policy_gates_s2s("2.3.0").await;
}
