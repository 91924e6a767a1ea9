//! Error classification against real failures: a refused port, and real rustls handshakes
//! against local TLS servers with generated (rcgen) certificates, over HTTPS discovery and
//! RAW TLS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::{Client, FlowFile, TlsFailure, error_chain};

type Identity = (CertificateDer<'static>, PrivateKeyDer<'static>);

/// A CA and leaf certificates it signs.
struct Ca {
    roots: rustls::RootCertStore,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    /// A CA with its own name (an issuer is found by name first).
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, format!("test CA {name}"));
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        Self { roots, cert, key }
    }

    fn leaf(&self, names: &[&str]) -> Identity {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_tls(trust: &Ca, identity: Option<Identity>) -> Arc<rustls::ClientConfig> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(trust.roots.clone());
    Arc::new(match identity {
        Some((c, k)) => b.with_client_auth_cert(vec![c], k).unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// A TLS server with `identity`, requiring a client certificate from `client_ca` if given.
/// After the handshake it answers one HTTP request with `body` (JSON). Counts accepted TCP
/// connections.
async fn tls_server(
    identity: Identity,
    client_ca: Option<&Ca>,
    body: String,
) -> (u16, Arc<AtomicUsize>) {
    let b = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let b = match client_ca {
        Some(ca) => b.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(ca.roots.clone()),
                provider(),
            )
            .build()
            .unwrap(),
        ),
        None => b.with_no_client_auth(),
    };
    let server = b.with_single_cert(vec![identity.0], identity.1).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, accepted)
}

/// Plain-HTTP discovery answering every request with `body`.
async fn http_discovery(body: String) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                loop {
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    got.clear();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn site(raw: u16, secure: bool) -> String {
    format!(
        r#"{{"controller":{{"remoteSiteListeningPort":{raw},"siteToSiteSecure":{secure},
        "inputPorts":[{{"id":"p-1","name":"in","state":"RUNNING"}}],"outputPorts":[]}}}}"#
    )
}

fn client(url: String, tls: Option<Arc<rustls::ClientConfig>>) -> Client {
    let mut b = Client::builder(url)
        .single_node(true)
        .penalization(Duration::from_millis(10))
        .connect_timeout(Some(Duration::from_secs(5)))
        .io_timeout(Some(Duration::from_secs(5)));
    if let Some(t) = tls {
        b = b.tls(t);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn https_discovery_untrusted_certificate_is_fatal_unknown_issuer() {
    let (nifi_ca, other_ca) = (Ca::new("nifi"), Ca::new("other"));
    let (port, _) = tls_server(nifi_ca.leaf(&["localhost"]), None, site(1, true)).await;
    let c = client(
        format!("https://localhost:{port}/nifi"),
        Some(client_tls(&other_ca, None)),
    );
    let e = c.site_info().await.unwrap_err();
    assert_eq!(
        e.tls_failure(),
        Some(TlsFailure::UnknownIssuer),
        "{}",
        error_chain(&e)
    );
    assert!(!e.is_retryable());
    assert_eq!(e.kind_name(), "tls");
    // Display says it once; the chain carries rustls' own words.
    let chain = error_chain(&e);
    assert_eq!(chain.matches("UnknownIssuer").count(), 1, "{chain}");
    assert!(!e.to_string().contains("UnknownIssuer"), "{e}");
}

#[tokio::test]
async fn https_discovery_wrong_host_name_is_fatal_host_name() {
    let ca = Ca::new("nifi");
    let (port, _) = tls_server(ca.leaf(&["nifi.example.com"]), None, site(1, true)).await;
    let c = client(
        format!("https://localhost:{port}/nifi"),
        Some(client_tls(&ca, None)),
    );
    let e = c.site_info().await.unwrap_err();
    assert_eq!(
        e.tls_failure(),
        Some(TlsFailure::HostName),
        "{}",
        error_chain(&e)
    );
    assert!(!e.is_retryable());
    // The right name: the same server works (the failure above was the name, nothing else).
    let good = tls_server(ca.leaf(&["localhost"]), None, site(1, true))
        .await
        .0;
    let c = client(
        format!("https://localhost:{good}/nifi"),
        Some(client_tls(&ca, None)),
    );
    assert_eq!(c.site_info().await.unwrap().raw_port, Some(1));
}

#[tokio::test]
async fn refused_connection_is_retryable_io() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let c = client(format!("http://127.0.0.1:{port}/nifi"), None);
    let e = c.site_info().await.unwrap_err();
    assert!(e.is_retryable(), "{}", error_chain(&e));
    assert_eq!(e.kind_name(), "io", "{}", error_chain(&e));
    assert!(e.tls_failure().is_none());
}

#[tokio::test]
async fn raw_tls_untrusted_certificate_is_fatal_and_not_retried() {
    let (nifi_ca, other_ca) = (Ca::new("nifi"), Ca::new("other"));
    let (raw, accepted) = tls_server(nifi_ca.leaf(&["127.0.0.1"]), None, String::new()).await;
    let http = http_discovery(site(raw, true)).await;
    let c = client(
        format!("http://127.0.0.1:{http}/nifi"),
        Some(client_tls(&other_ca, None)),
    );
    let e = c
        .send_batch("in", vec![FlowFile::new("x")])
        .await
        .unwrap_err();
    assert_eq!(
        e.tls_failure(),
        Some(TlsFailure::UnknownIssuer),
        "{}",
        error_chain(&e)
    );
    assert!(!e.is_retryable());
    // send_batch retries retryable failures three times; a fatal one is tried once.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn raw_tls_client_certificate_refused_is_fatal() {
    let ca = Ca::new("nifi");
    let (raw, _) = tls_server(ca.leaf(&["127.0.0.1"]), Some(&ca), String::new()).await;
    let http = http_discovery(site(raw, true)).await;
    // Trusts NiFi, but presents no certificate: NiFi (like this server) refuses in the handshake.
    let c = client(
        format!("http://127.0.0.1:{http}/nifi"),
        Some(client_tls(&ca, None)),
    );
    let e = c
        .send_batch("in", vec![FlowFile::new("x")])
        .await
        .unwrap_err();
    assert_eq!(
        e.tls_failure(),
        Some(TlsFailure::ClientCertificateRejected),
        "{}",
        error_chain(&e)
    );
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn no_raw_port_advertised_is_a_fatal_configuration_error() {
    let http = http_discovery(
        r#"{"controller":{"siteToSiteSecure":false,"inputPorts":[{"id":"p-1","name":"in","state":"RUNNING"}]}}"#
            .to_owned(),
    )
    .await;
    let c = client(format!("http://127.0.0.1:{http}/nifi"), None);
    let e = c
        .send_batch("in", vec![FlowFile::new("x")])
        .await
        .unwrap_err();
    assert!(e.is_config(), "{}", error_chain(&e));
    assert!(!e.is_retryable());
    assert_eq!(e.kind_name(), "config");
}
