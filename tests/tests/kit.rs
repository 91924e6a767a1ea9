//! The test kit's own behaviour against a real NiFi: stop/start, back pressure, drain, lookups.

use std::time::Duration;

use nifi_testkit::java_reference::{self, SendReport, SendSpec, Transport};
use nifi_testkit::{Error, Nifi, Port, PortKind, nifi_or_skip};

async fn try_send(nifi: &Nifi, port: &Port, count: u64) -> Result<SendReport, Error> {
    let spec = SendSpec {
        url: nifi.url().to_owned(),
        port: port.name().to_owned(),
        transport: Transport::Raw,
        count,
        size: 10,
        batch: 100,
        compress: false,
        attributes: vec![],
    };
    tokio::task::spawn_blocking(move || java_reference::send(&spec))
        .await
        .expect("java client task")
}

#[tokio::test]
async fn stopped_port_refuses_and_restarted_port_accepts() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("kit-stop").await.unwrap();
    port.stop().await.unwrap();
    let refused = try_send(&nifi, &port, 1).await;
    assert!(refused.is_err(), "a stopped port must refuse: {refused:?}");
    assert_eq!(port.queued_count().await.unwrap(), 0);
    port.start().await.unwrap();
    try_send(&nifi, &port, 2)
        .await
        .expect("running port accepts");
    assert_eq!(
        port.wait_for_queued(2, Duration::from_secs(30))
            .await
            .unwrap(),
        2
    );
    port.delete().await.unwrap();
}

#[tokio::test]
async fn full_queue_refuses_more_until_drained() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("kit-bp").await.unwrap();
    nifi.set_back_pressure(&port, 1).await.unwrap();
    try_send(&nifi, &port, 1)
        .await
        .expect("first FlowFile fits");
    port.wait_for_queued(1, Duration::from_secs(30))
        .await
        .unwrap();
    let refused = try_send(&nifi, &port, 1).await;
    assert!(refused.is_err(), "a full queue must refuse: {refused:?}");
    assert_eq!(port.queued_count().await.unwrap(), 1);
    port.drain().await.unwrap();
    assert_eq!(port.queued_count().await.unwrap(), 0);
    try_send(&nifi, &port, 1)
        .await
        .expect("drained queue accepts again");
    port.delete().await.unwrap();
}

#[tokio::test]
async fn wait_for_queued_times_out_with_the_last_count() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("kit-timeout").await.unwrap();
    let err = port
        .wait_for_queued(1, Duration::from_millis(300))
        .await
        .unwrap_err();
    match &err {
        Error::Timeout { what, .. } => assert!(what.contains("0 queued"), "{err}"),
        other => panic!("expected a timeout, got {other}"),
    }
    port.delete().await.unwrap();
}

#[tokio::test]
async fn ports_are_found_by_name_and_gone_after_delete() {
    let nifi = nifi_or_skip!();
    let pair = nifi.port_pair("kit-lookup").await.unwrap();
    let found = nifi.port_by_name(pair.output.name()).await.unwrap();
    assert_eq!(found.id(), pair.output.id());
    assert_eq!(found.kind(), PortKind::Output);
    assert_eq!(found.connection_id(), pair.input.connection_id());
    let names = (pair.input.name().to_owned(), pair.output.name().to_owned());
    pair.delete().await.unwrap();
    for name in [names.0, names.1] {
        assert!(matches!(
            nifi.port_by_name(&name).await,
            Err(Error::NoSuchPort(_))
        ));
    }
    let s2s = nifi.api_get("/site-to-site").await.unwrap();
    assert!(
        !s2s.to_string().contains("kit-lookup"),
        "deleted ports are not offered for S2S"
    );
}

#[tokio::test]
async fn unique_names_differ() {
    let a = nifi_testkit::unique_name("x");
    let b = nifi_testkit::unique_name("x");
    assert!(a.starts_with("x-") && a.len() == 10);
    assert_ne!(a, b);
}

#[tokio::test]
async fn a_dead_url_is_an_error_not_a_skip() {
    // Port 9 (discard) is never a NiFi; connect() must fail with a typed HTTP error.
    let err = Nifi::connect("http://127.0.0.1:9/nifi", None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err}");
    assert!(!err.is_not_available());
}

#[tokio::test]
async fn each_side_of_a_pair_can_be_deleted_alone() {
    let nifi = nifi_or_skip!();
    let pair = nifi.port_pair("kit-halves").await.unwrap();
    // Deleting the input port must stop the running output port first (NiFi answers 409 otherwise).
    pair.input.delete().await.unwrap();
    let orphan = nifi.port_by_name(pair.output.name()).await.unwrap();
    assert_eq!(orphan.connection_id(), "");
    assert!(
        orphan.queued_count().await.is_err(),
        "no queue behind an orphan port"
    );
    orphan.delete().await.unwrap();
    assert!(matches!(
        nifi.port_by_name(pair.output.name()).await,
        Err(Error::NoSuchPort(_))
    ));
}
