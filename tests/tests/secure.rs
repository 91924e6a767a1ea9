//! The test kit against a **secured** NiFi (`cargo xtask nifi up --secure [--version V]`): mutual
//! TLS to the REST API, the kit's policies granted through the REST API, ports listed for S2S,
//! queue listing and drop allowed. Skips without the secured instance unless
//! `NIFI_SECURE_REQUIRED=1` (set by `cargo xtask test`).

use nifi_testkit::{Error, Nifi};

async fn kit_works(version: &str) {
    let Some(nifi) = Nifi::secured_or_skip(version).await else {
        return;
    };
    assert!(
        nifi.url().starts_with("https://127.0.0.1:"),
        "{}",
        nifi.url()
    );
    assert_eq!(nifi.version(), version);
    assert!(nifi.raw_port().is_some(), "RAW S2S (over TLS) is enabled");
    let tls = nifi.tls().expect("secured instance carries its PKI");
    // Who NiFi thinks we are: the client certificate's DN, exactly as recorded in the state file.
    let me = nifi.api_get("/flow/current-user").await.unwrap();
    assert_eq!(me["identity"], tls.client_dn.as_str());
    let s2s = nifi.api_get("/site-to-site").await.unwrap();
    assert_eq!(s2s["controller"]["siteToSiteSecure"], true, "{s2s}");

    let pair = nifi.port_pair("kit-secure").await.unwrap();
    // Listed RUNNING for this user only because the kit granted the data-transfer policies.
    let s2s = nifi.api_get("/site-to-site").await.unwrap();
    for (key, name) in [
        ("inputPorts", pair.input.name()),
        ("outputPorts", pair.output.name()),
    ] {
        assert!(
            s2s["controller"][key]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == name)),
            "{name} listed in {s2s}"
        );
    }
    for (kind, port) in [("input-ports", &pair.input), ("output-ports", &pair.output)] {
        let p = nifi
            .api_get(&format!(
                "/policies/write/data-transfer/{kind}/{}",
                port.id()
            ))
            .await
            .unwrap();
        assert!(
            p["component"]["users"].as_array().is_some_and(|us| us
                .iter()
                .any(|u| u["component"]["identity"] == tls.client_dn.as_str())),
            "{p}"
        );
    }
    // Listing and dropping need the root group's data policies.
    assert!(pair.output.queued_flowfiles().await.unwrap().is_empty());
    pair.output.drain().await.unwrap();
    pair.delete().await.unwrap();

    let port = nifi.input_port("kit-secure-in").await.unwrap();
    assert_eq!(port.queued_count().await.unwrap(), 0);
    port.delete().await.unwrap();
}

#[tokio::test]
async fn secured_1_18_kit_creates_ports_lists_and_drains_over_mtls() {
    kit_works("1.18.0").await;
}

#[tokio::test]
async fn secured_2_3_kit_creates_ports_lists_and_drains_over_mtls() {
    kit_works("2.3.0").await;
}

#[tokio::test]
async fn missing_secured_instance_is_not_available() {
    match Nifi::secured("0.0.0-none").await {
        Err(Error::NotAvailable(why)) => assert!(why.contains("0.0.0-none-secure"), "{why}"),
        other => panic!("{other:?}"),
    }
}
