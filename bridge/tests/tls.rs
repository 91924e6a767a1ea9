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

/// The value of attribute `k` ("" when absent).
fn attr_of(ff: &s2s_bridge::FlowFile, k: &str) -> String {
    ff.attributes
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// A test PKI: a CA (or two) and leaf certificates signed by them, as PEM.
mod pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };

    pub struct Ca {
        pub pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    pub struct Leaf {
        pub cert_pem: String,
        pub key_pem: String,
    }

    fn dn(rdns: &[(DnType, &str)]) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        for (t, v) in rdns {
            dn.push(t.clone(), *v);
        }
        dn
    }

    /// A CA whose subject has `rdns` in encoding order (most significant first).
    pub fn ca(rdns: &[(DnType, &str)]) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name = dn(rdns);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("CA");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf signed by `ca` with subject `rdns` (encoding order), for `localhost` when `server`.
    pub fn leaf(ca: &Ca, rdns: &[(DnType, &str)], server: bool) -> Leaf {
        let sans = if server {
            vec!["localhost".to_owned()]
        } else {
            Vec::new()
        };
        let mut p = CertificateParams::new(sans).expect("params");
        p.distinguished_name = dn(rdns);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &ca.issuer).expect("leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Client certificates on the TLS listener with real X.509 certificates and real mutual-TLS
/// handshakes (reqwest/rustls): the subject and issuer DN become `restlistener.remote.user.dn` /
/// `restlistener.remote.issuer.dn` as ListenHTTP writes them (Java's `getSubjectDN().getName()`:
/// most specific RDN first, `, ` between RDNs), `authorized_dn_pattern` and
/// `authorized_issuer_dn_pattern` must match the whole DN or the request gets 403, counted in
/// `bridge_rejections_total{reason="FORBIDDEN"}`; no client certificate means DN `none` (not
/// required) or no handshake at all (`require_client_cert`).
#[tokio::test]
async fn client_certificate_dns_become_attributes_and_patterns_restrict_them() {
    use rcgen::DnType::OrganizationalUnitName as OU;
    use rcgen::DnType::{CommonName as CN, CountryName as C, OrganizationName as O};
    use s2s_bridge::config::ListenHttpConfig;

    let ca_one = pki::ca(&[(C, "US"), (O, "Acme"), (CN, "Acme Client CA")]);
    let ca_two = pki::ca(&[(O, "Other Org"), (CN, "Other CA")]);
    let server = pki::leaf(&ca_one, &[(CN, "localhost")], true);
    let alice = pki::leaf(
        &ca_one,
        &[(C, "US"), (O, "Acme"), (OU, "sensors"), (CN, "alice")],
        false,
    );
    let mallory = pki::leaf(
        &ca_one,
        &[(O, "Acme"), (OU, "guests"), (CN, "mallory")],
        false,
    );
    // Same subject pattern as alice, but from the other CA: only the issuer pattern stops it.
    let carol = pki::leaf(
        &ca_two,
        &[(C, "US"), (O, "Acme"), (OU, "sensors"), (CN, "carol")],
        false,
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let cert = write("server.pem", &server.cert_pem);
    let key = write("server.key", &server.key_pem);
    let client_ca = write("client-ca.pem", &format!("{}{}", ca_one.pem, ca_two.pem));
    let tls = |require: bool| TlsConfig {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: Some(client_ca.clone()),
        require_client_cert: require,
    };
    let client = |id: Option<&pki::Leaf>| {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_one.pem.as_bytes()).unwrap())
            .tls_built_in_root_certs(false)
            // No idle keep-alive connection left for the bridge's graceful shutdown to wait for.
            .pool_max_idle_per_host(0);
        if let Some(l) = id {
            let pem = format!("{}{}", l.cert_pem, l.key_pem);
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
        }
        b.build().expect("client")
    };
    const ALICE_DN: &str = "CN=alice, OU=sensors, O=Acme, C=US";
    const CA_ONE_DN: &str = "CN=Acme Client CA, O=Acme, C=US";

    // 1. Subject and issuer patterns; client certificates optional.
    let cfg = Config {
        tls: Some(tls(false)),
        // The TLS listener's graceful shutdown waits out the whole drain time; nothing is in
        // flight at the end of this test.
        shutdown_timeout_ms: 500,
        listen_http: ListenHttpConfig {
            authorized_dn_pattern: "CN=[a-z]+, OU=sensors, O=Acme, C=US".into(),
            authorized_issuer_dn_pattern: "CN=Acme Client CA, .*".into(),
            ..ListenHttpConfig::default()
        },
        ..Config::default()
    };
    let sink = MemorySink::new();
    let bridge = start(cfg, sink.clone());
    let url = |path: &str| format!("https://localhost:{}{path}", bridge.addr.port());
    let post = |c: &reqwest::Client, id: &str| {
        c.post(url("/contentListener"))
            .header("filename", id)
            .body(format!("from {id}"))
            .send()
    };

    let r = post(&client(Some(&alice)), "alice").await.expect("alice");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let r = post(&client(Some(&mallory)), "mallory")
        .await
        .expect("mallory");
    assert_eq!(r.status(), 403, "subject DN outside the pattern");
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("CN=mallory, OU=guests, O=Acme"), "{body}");
    let r = post(&client(Some(&carol)), "carol").await.expect("carol");
    assert_eq!(r.status(), 403, "issuer DN outside the issuer pattern");
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("CN=Other CA, O=Other Org"), "{body}");
    // Without a certificate ListenHTTP has no DN to check: accepted, DN "none".
    let r = post(&client(None), "anonymous").await.expect("anonymous");
    assert_eq!(r.status(), 200);

    let got = sink.delivered();
    assert_eq!(
        got.len(),
        2,
        "only alice and the anonymous client got through"
    );
    let attr = |i: usize, k: &str| attr_of(&got[i], k);
    let (a, n) = if attr(0, "filename") == "alice" {
        (0, 1)
    } else {
        (1, 0)
    };
    assert_eq!(attr(a, "filename"), "alice");
    assert_eq!(&got[a].content[..], b"from alice");
    assert_eq!(attr(a, "restlistener.remote.user.dn"), ALICE_DN);
    assert_eq!(attr(a, "restlistener.remote.issuer.dn"), CA_ONE_DN);
    assert_eq!(attr(n, "filename"), "anonymous");
    assert_eq!(attr(n, "restlistener.remote.user.dn"), "none");
    assert_eq!(attr(n, "restlistener.remote.issuer.dn"), "none");

    let metrics = client(None)
        .get(url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let forbidden = metrics
        .lines()
        .find(|l| l.starts_with("bridge_rejections_total") && l.contains("reason=\"FORBIDDEN\""))
        .unwrap_or_else(|| panic!("no FORBIDDEN rejections in {metrics}"));
    assert!(forbidden.ends_with(" 2"), "{forbidden}");
    bridge.shutdown().await;

    // 2. Default patterns (".*"), certificates required: every CA-signed client gets in with its
    //    own DNs; a client without a certificate does not complete the handshake.
    let cfg = Config {
        tls: Some(tls(true)),
        shutdown_timeout_ms: 500,
        ..Config::default()
    };
    let sink = MemorySink::new();
    let bridge = start(cfg, sink.clone());
    let url = |path: &str| format!("https://localhost:{}{path}", bridge.addr.port());
    let r = client(Some(&carol))
        .post(url("/contentListener"))
        .body("carol")
        .send()
        .await
        .expect("carol");
    assert_eq!(r.status(), 200);
    let got = sink.delivered();
    assert_eq!(
        attr_of(&got[0], "restlistener.remote.user.dn"),
        "CN=carol, OU=sensors, O=Acme, C=US"
    );
    assert_eq!(
        attr_of(&got[0], "restlistener.remote.issuer.dn"),
        "CN=Other CA, O=Other Org"
    );
    let r = client(None)
        .post(url("/contentListener"))
        .body("nobody")
        .send()
        .await;
    assert!(r.is_err(), "no client certificate: {r:?}");
    assert_eq!(sink.delivered().len(), 1);
    bridge.shutdown().await;
}
