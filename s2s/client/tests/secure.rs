//! The client side of secure S2S against the harness's **secured** NiFi 1.18.0 and 2.3.0
//! (`cargo xtask nifi up --secure [--version 2.3.0]`): PKCS#12 identities (with the CA bundled
//! in the keystore, or a PKCS#12 truststore) on RAW and HTTPS, `s2s doctor` with the
//! authorized and an unknown certificate, HTTPS through a CONNECT proxy with basic auth, the
//! CLI's `--pkcs12` with the password from the environment, and a login (bearer token) when
//! the instance records NIFI_USERNAME. Skips without the instance unless
//! `NIFI_SECURE_REQUIRED=1`.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{WAIT, assert_received, numbered, proxy, receive_all};
use nifi_testkit::certs::TlsFiles;
use nifi_testkit::{Nifi, PortPair};
use s2s::doctor::Status;
use s2s::{Client, ClientBuilder, FlowFile, Transport};

fn tls(nifi: &Nifi) -> &TlsFiles {
    nifi.tls().expect("a secured instance carries its PKI")
}

fn p12_client(nifi: &Nifi, transport: Transport) -> ClientBuilder {
    let t = tls(nifi);
    Client::builder(nifi.url())
        .transport(transport)
        .io_timeout(Some(Duration::from_secs(30)))
        .tls_pkcs12(&t.client_p12, &t.client_p12_password)
        .unwrap()
}

fn flowfiles(n: u64, tag: &str) -> Vec<FlowFile> {
    numbered(n, 7919, tag)
}

/// Sends `sent` into the pair's input and receives them back from its output, checking
/// every attribute and byte.
async fn round_trip(c: &Client, pair: &PortPair, sent: &[FlowFile]) {
    let s = c
        .send_batch(pair.input.name(), sent.to_vec())
        .await
        .unwrap();
    assert_eq!(s.flowfiles, sent.len() as u64);
    pair.output
        .wait_for_queued(sent.len() as u64, WAIT)
        .await
        .unwrap();
    let got = receive_all(c, pair.output.name(), sent.len()).await;
    assert_received(got, sent, "round trip");
}

async fn pkcs12_round_trips(version: &str) {
    let Some(nifi) = Nifi::secured_or_skip(version).await else {
        return;
    };
    let t = tls(&nifi);
    let pair = nifi.port_pair("p12").await.unwrap();
    for transport in [Transport::Raw, Transport::Http] {
        // Trusting the CA bundled in client.p12.
        let c = p12_client(&nifi, transport).build().unwrap();
        round_trip(&c, &pair, &flowfiles(3, &format!("{transport:?}-bundled"))).await;
        c.close().await;
        // Trusting NiFi's PKCS#12 truststore instead.
        let c = p12_client(&nifi, transport)
            .tls_truststore_pkcs12(&t.truststore, &t.store_password)
            .unwrap()
            .compression(true)
            .build()
            .unwrap();
        round_trip(
            &c,
            &pair,
            &flowfiles(2, &format!("{transport:?}-truststore")),
        )
        .await;
        c.close().await;
    }
    pair.delete().await.unwrap();
}

#[tokio::test]
async fn secured_1_18_pkcs12_identity_raw_and_https() {
    pkcs12_round_trips("1.18.0").await;
}

#[tokio::test]
async fn secured_2_3_pkcs12_identity_raw_and_https() {
    pkcs12_round_trips("2.3.0").await;
}

async fn doctor_secured(version: &str) {
    let Some(nifi) = Nifi::secured_or_skip(version).await else {
        return;
    };
    let t = tls(&nifi);
    // Unknown for sure, even after a run that died before removing its user.
    let leftover = nifi.create_user(&t.other_dn).await.unwrap();
    nifi.delete_user(&leftover).await.unwrap();
    let pair = nifi.port_pair("doctor-tls").await.unwrap();
    for transport in [Transport::Raw, Transport::Http] {
        let c = p12_client(&nifi, transport).build().unwrap();
        for port in [pair.input.name(), pair.output.name()] {
            let r = c.doctor(port).await;
            assert!(r.ok(), "{version} {transport:?} {port}:\n{r}");
            let reach = r.check("reachable").unwrap();
            assert!(
                reach.detail.contains("CN=localhost") && reach.detail.contains("matches"),
                "{r}"
            );
            let id = r.check("identity").unwrap();
            assert!(id.detail.contains("CN=s2s-test-client"), "{r}");
        }
    }
    // A certificate from the same CA that NiFi does not know: refused, and the report names
    // the DN that needs the policy.
    let other = Client::builder(nifi.url())
        .tls_pem(&t.ca, Some((&t.other_cert, &t.other_key)))
        .unwrap()
        .build()
        .unwrap();
    let r = other.doctor(pair.input.name()).await;
    assert!(!r.ok(), "{r}");
    let failed = r.checks.iter().find(|c| c.status == Status::Fail).unwrap();
    let text = format!("{} {}", failed.detail, failed.hint.as_deref().unwrap_or(""));
    assert!(text.contains("s2s-other-client"), "{r}");
    assert!(
        text.to_lowercase().contains("unauthorized") || text.contains("403"),
        "{r}"
    );
    // The same DN once NiFi knows it and lets it read the site-to-site details, but without
    // the port's policy: NiFi hides the port, and the doctor says whom to grant what.
    let other_id = nifi.create_user(&t.other_dn).await.unwrap();
    nifi.grant("read", "/site-to-site", &other_id)
        .await
        .unwrap();
    let r = other.doctor(pair.input.name()).await;
    assert_eq!(r.check("discovery").unwrap().status, Status::Pass, "{r}");
    let p = r.check("port").unwrap();
    assert_eq!(p.status, Status::Fail, "{r}");
    let hint = p.hint.as_deref().unwrap();
    assert!(
        hint.contains(&t.other_dn) && hint.contains("receive data via site-to-site"),
        "{r}"
    );
    // Granted: the same client passes every check, its DN shown.
    nifi.grant(
        "write",
        &format!("/data-transfer/input-ports/{}", pair.input.id()),
        &other_id,
    )
    .await
    .unwrap();
    let r = other.doctor(pair.input.name()).await;
    assert!(r.ok(), "{r}");
    assert!(
        r.check("identity")
            .unwrap()
            .detail
            .contains("s2s-other-client"),
        "{r}"
    );
    nifi.delete_user(&other_id).await.unwrap();

    // A client certificate from a CA NiFi does not trust: NiFi's alert, explained.
    let rogue_client = Client::builder(nifi.url())
        .tls_pem(&t.ca, Some((&t.rogue_client_cert, &t.rogue_client_key)))
        .unwrap()
        .build()
        .unwrap();
    let r = rogue_client.doctor(pair.input.name()).await;
    let d = r.check("discovery").unwrap();
    assert_eq!(d.status, Status::Fail, "{r}");
    assert!(d.detail.contains("alert"), "{r}");
    assert!(d.hint.as_deref().unwrap().contains("truststore"), "{r}");

    // The wrong CA: the TLS check says so and shows who signed NiFi's certificate.
    let rogue = Client::builder(nifi.url())
        .tls_ca_pem(&t.rogue_ca)
        .unwrap()
        .build()
        .unwrap();
    let r = rogue.doctor(pair.input.name()).await;
    let reach = r.check("reachable").unwrap();
    assert_eq!(reach.status, Status::Fail, "{r}");
    assert!(reach.detail.contains("nifi-s2s test CA"), "{r}");
    assert!(reach.hint.as_deref().unwrap().contains("CA"), "{r}");
    pair.delete().await.unwrap();
}

#[tokio::test]
async fn secured_1_18_doctor_passes_with_cert_and_names_the_refused_dn() {
    doctor_secured("1.18.0").await;
}

#[tokio::test]
async fn secured_2_3_doctor_passes_with_cert_and_names_the_refused_dn() {
    doctor_secured("2.3.0").await;
}

async fn https_through_connect_proxy(version: &str) {
    let Some(nifi) = Nifi::secured_or_skip(version).await else {
        return;
    };
    // base64("s2s:proxy-pw")
    let p = proxy::start("czJzOnByb3h5LXB3").await;
    let pair = nifi.port_pair("tls-proxy").await.unwrap();
    let c = p12_client(&nifi, Transport::Http)
        .proxy(format!("http://s2s:proxy-pw@{}", p.addr))
        .build()
        .unwrap();
    round_trip(&c, &pair, &flowfiles(4, "via-proxy")).await;
    let tunnels = p.tunnels.load(Ordering::SeqCst);
    // https can only go through a proxy as CONNECT tunnels (pooled: at least one).
    assert!(tunnels >= 1, "{tunnels}");
    assert_eq!(
        p.forwarded.load(Ordering::SeqCst),
        0,
        "https must not go in the clear"
    );
    assert_eq!(p.refused.load(Ordering::SeqCst), 0);

    let bad = p12_client(&nifi, Transport::Http)
        .proxy(format!("http://s2s:wrong@{}", p.addr))
        .build()
        .unwrap();
    let e = bad.send_transaction(pair.input.name()).await.unwrap_err();
    assert!(p.refused.load(Ordering::SeqCst) >= 1);
    let shown = format!("{e}: {:?}", std::error::Error::source(&e));
    assert!(
        shown.contains("407") || shown.to_lowercase().contains("proxy"),
        "{shown}"
    );
    pair.delete().await.unwrap();
}

#[tokio::test]
async fn secured_1_18_https_s2s_through_connect_proxy_with_basic_auth() {
    https_through_connect_proxy("1.18.0").await;
}

#[tokio::test]
async fn secured_2_3_https_s2s_through_connect_proxy_with_basic_auth() {
    https_through_connect_proxy("2.3.0").await;
}

#[tokio::test]
async fn cli_pkcs12_password_from_env_never_in_output() {
    let Some(nifi) = Nifi::secured_or_skip("2.3.0").await else {
        return;
    };
    let t = tls(&nifi);
    let port = nifi.input_port("cli-p12").await.unwrap();
    let run = |pw_var: &str, pw: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_s2s"));
        cmd.args(["send", "--url", nifi.url(), "--port", port.name()])
            .args(["--transport", "http", "--pkcs12"])
            .arg(&t.client_p12)
            .args(["--pkcs12-password-env", pw_var, "-a", "via=cli-p12"])
            .env(pw_var, pw)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"hello over mTLS")
                .unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let o = run("MY_P12_PW", &t.client_p12_password);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    port.wait_for_queued(1, WAIT).await.unwrap();
    let q = port.queued_flowfiles().await.unwrap();
    assert_eq!(q[0].attributes["via"], "cli-p12");
    assert_eq!(q[0].content, b"hello over mTLS");

    let o = run("MY_P12_PW", "not-the-password-42");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("wrong password") && err.contains("client.p12"),
        "{err}"
    );
    assert!(!err.contains("not-the-password-42"), "{err}");
    port.delete().await.unwrap();
}

/// `NIFI_USERNAME`/`NIFI_PASSWORD` from the secured instance's state file, when it has a
/// login provider (single-user).
fn recorded_login(version: &str) -> Option<(String, String)> {
    let text = std::fs::read_to_string(nifi_testkit::provision::secure_state_file(version)).ok()?;
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_owned())
    };
    Some((get("NIFI_USERNAME")?, get("NIFI_PASSWORD")?))
}

async fn login_round_trip(version: &str) {
    let Some(nifi) = Nifi::secured_or_skip(version).await else {
        return;
    };
    let Some((user, password)) = recorded_login(version) else {
        // Certificate-only instance: nothing issues tokens (a fake NiFi covers the logic in
        // tests/auth.rs).
        eprintln!(
            "SKIPPED: the secured {version} instance records no NIFI_USERNAME (no login provider)"
        );
        return;
    };
    let t = tls(&nifi);
    let pair = nifi.port_pair("login").await.unwrap();
    // No client certificate: the token is the only identity.
    let c = Client::builder(nifi.url())
        .transport(Transport::Http)
        .tls_ca_pem(&t.ca)
        .unwrap()
        .login(user.clone(), password.clone())
        .build()
        .unwrap();
    round_trip(&c, &pair, &flowfiles(3, "token")).await;
    assert_eq!(
        c.logins(),
        1,
        "one token for discovery, peers and every transfer"
    );
    let r = c.doctor(pair.input.name()).await;
    assert!(r.ok(), "{r}");
    assert!(r.check("identity").unwrap().detail.contains(&user), "{r}");

    // The CLI: --username with the password from the environment.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_s2s"))
        .args(["send", "--url", nifi.url(), "--port", pair.input.name()])
        .args(["--transport", "http", "--ca"])
        .arg(&t.ca)
        .args(["--username", &user, "--password-env", "S2S_TEST_LOGIN_PW"])
        .args(["-a", "via=cli-login", "-"])
        .env("S2S_TEST_LOGIN_PW", &password)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    pair.output.wait_for_queued(1, WAIT).await.unwrap();
    pair.output.drain().await.unwrap();

    // A wrong password: unauthorized, naming the user, never the password.
    let bad = Client::builder(nifi.url())
        .transport(Transport::Http)
        .tls_ca_pem(&t.ca)
        .unwrap()
        .login(user.clone(), "definitely-wrong-pw")
        .build()
        .unwrap();
    let e = bad.send_transaction(pair.input.name()).await.unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
    assert!(
        e.to_string().contains(&user) && !e.to_string().contains("definitely-wrong-pw"),
        "{e}"
    );
    pair.delete().await.unwrap();
}

#[tokio::test]
async fn secured_1_18_login_bearer_token_https_round_trip() {
    login_round_trip("1.18.0").await;
}

#[tokio::test]
async fn secured_2_3_login_bearer_token_https_round_trip() {
    login_round_trip("2.3.0").await;
}
