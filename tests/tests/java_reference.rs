//! The official Java S2S client sends through a real NiFi; every attribute and byte is checked in
//! NiFi's queue. Proves the harness (provisioning + test kit) independently of our own client.

use std::time::Duration;

use nifi_testkit::java_reference::{self, ReceiveSpec, SendSpec, Transport, expected_content};
use nifi_testkit::{Nifi, Port, nifi_or_skip};

const COUNT: u64 = 7;
const SIZE: usize = 4099;

fn attributes() -> Vec<(String, String)> {
    vec![
        ("filename".into(), "reference.bin".into()),
        ("mime.type".into(), "application/octet-stream".into()),
        ("s2s.test".into(), "héllo wörld ✓ =;,\"quoted\"".into()),
        ("empty".into(), String::new()),
    ]
}

async fn send(
    nifi: &Nifi,
    port: &Port,
    transport: Transport,
    count: u64,
    batch: u32,
) -> java_reference::SendReport {
    let spec = SendSpec {
        url: nifi.url().to_owned(),
        port: port.name().to_owned(),
        transport,
        count,
        size: SIZE,
        batch,
        compress: false,
        attributes: attributes(),
    };
    tokio::task::spawn_blocking(move || java_reference::send(&spec))
        .await
        .expect("java client task")
        .expect("Java reference client sends")
}

async fn check_queue(port: &Port, count: u64) {
    port.wait_for_queued(count, Duration::from_secs(60))
        .await
        .expect("FlowFiles arrive");
    let mut queued = port.queued_flowfiles().await.expect("queue listing");
    // NiFi's queue listing is not always in arrival order (FlowFiles of one transaction can share
    // a timestamp), so order by the index the sender wrote; every index must then be present once.
    queued.sort_by_key(|ff| {
        ff.attributes
            .get("ref.index")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    });
    assert_eq!(
        queued.len() as u64,
        count,
        "exactly {count} FlowFiles queued"
    );
    for (i, ff) in queued.iter().enumerate() {
        let i = i as u64;
        assert_eq!(
            ff.attributes.get("ref.index").map(String::as_str),
            Some(i.to_string().as_str()),
            "every sent index arrives exactly once"
        );
        for (k, v) in attributes() {
            assert_eq!(
                ff.attributes.get(&k),
                Some(&v),
                "attribute {k} of FlowFile {i}"
            );
        }
        // NiFi assigns a fresh uuid and records the sending peer.
        assert!(
            ff.attributes.get("uuid").is_some_and(|u| u.len() == 36),
            "uuid of FlowFile {i}"
        );
        assert!(
            ff.attributes.contains_key("s2s.host"),
            "s2s.host of FlowFile {i}"
        );
        assert_eq!(ff.content.len(), SIZE, "size of FlowFile {i}");
        assert!(
            ff.content == expected_content(i, SIZE),
            "content of FlowFile {i} differs"
        );
    }
}

async fn round_trip(transport: Transport, prefix: &str) {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port(prefix).await.expect("input port");
    // Two transactions (batch 4 of 7) so transaction boundaries are exercised too.
    let report = send(&nifi, &port, transport, COUNT, 4).await;
    assert_eq!(report.count, COUNT);
    assert_eq!(report.transactions, 2);
    assert_eq!(report.bytes, COUNT * SIZE as u64);
    eprintln!("java reference ({transport:?}): {report:?}");
    check_queue(&port, COUNT).await;
    port.drain().await.expect("drain");
    assert_eq!(port.queued_count().await.unwrap(), 0);
    port.delete().await.expect("delete");
    assert!(matches!(
        nifi.port_by_name(port.name()).await,
        Err(nifi_testkit::Error::NoSuchPort(_))
    ));
}

#[tokio::test]
async fn java_client_raw_delivers_every_attribute_and_byte() {
    round_trip(Transport::Raw, "jref-raw").await;
}

#[tokio::test]
async fn java_client_http_delivers_every_attribute_and_byte() {
    round_trip(Transport::Http, "jref-http").await;
}

/// A port pair: what is pushed into the input port is queued in front of the output port.
#[tokio::test]
async fn port_pair_queues_in_front_of_the_output_port() {
    let nifi = nifi_or_skip!();
    let pair = nifi.port_pair("jref-pair").await.expect("port pair");
    send(&nifi, &pair.input, Transport::Raw, 3, 10).await;
    pair.output
        .wait_for_queued(3, Duration::from_secs(60))
        .await
        .expect("queued");
    check_queue(&pair.output, 3).await;
    pair.delete().await.expect("delete pair");
}

/// What the Java client pushed into the pair's input port, the Java client pulls from its output port:
/// the receive path a receive test of our own client relies on.
async fn pull_round_trip(transport: Transport, prefix: &str) {
    let nifi = nifi_or_skip!();
    let pair = nifi.port_pair(prefix).await.expect("port pair");
    send(&nifi, &pair.input, transport, 5, 5).await;
    pair.output
        .wait_for_queued(5, Duration::from_secs(60))
        .await
        .expect("queued");
    let spec = ReceiveSpec {
        url: nifi.url().to_owned(),
        port: pair.output.name().to_owned(),
        transport,
        expect: 5,
        timeout_secs: 60,
        compress: false,
    };
    let (flowfiles, report) = tokio::task::spawn_blocking(move || java_reference::receive(&spec))
        .await
        .expect("java client task")
        .expect("Java reference client receives");
    eprintln!("java reference receive ({transport:?}): {report:?}");
    assert_eq!(report.count, 5);
    assert_eq!(flowfiles.len(), 5);
    let mut indexes: Vec<u64> = flowfiles
        .iter()
        .map(|ff| ff.attributes["ref.index"].parse().unwrap())
        .collect();
    for ff in &flowfiles {
        let i: u64 = ff.attributes["ref.index"].parse().unwrap();
        for (k, v) in attributes() {
            assert_eq!(
                ff.attributes.get(&k),
                Some(&v),
                "attribute {k} of FlowFile {i}"
            );
        }
        assert!(
            ff.content == expected_content(i, SIZE),
            "content of FlowFile {i} differs"
        );
    }
    indexes.sort_unstable();
    assert_eq!(indexes, vec![0, 1, 2, 3, 4]);
    // Received and confirmed: NiFi released them.
    assert_eq!(pair.output.queued_count().await.unwrap(), 0);
    pair.delete().await.expect("delete pair");
}

#[tokio::test]
async fn java_client_pulls_from_an_output_port_raw() {
    pull_round_trip(Transport::Raw, "jref-pull-raw").await;
}

#[tokio::test]
async fn java_client_pulls_from_an_output_port_http() {
    pull_round_trip(Transport::Http, "jref-pull-http").await;
}
