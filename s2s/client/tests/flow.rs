//! A user's flow under test: the committed NiFi export `tests/flows/route-by-priority.json`
//! (ExtractText reads `priority=<word>` from the content, RouteOnAttribute sends urgent FlowFiles to
//! `urgent`, other FlowFiles above `#{large.threshold}` bytes to `large`, the rest to `other`) is
//! deployed with the test kit, its threshold overridden, fed over Site-to-Site with this client and
//! drained from each of its output ports over Site-to-Site.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::{WAIT, receive_all};
use nifi_testkit::flow::{DeployedFlow, FlowDefinition};
use nifi_testkit::{Nifi, nifi_or_skip};
use s2s::{Client, FlowFile};

fn definition() -> FlowDefinition {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/flows/route-by-priority.json");
    FlowDefinition::from_file(path).unwrap()
}

fn names(ffs: &[FlowFile]) -> BTreeSet<String> {
    ffs.iter()
        .map(|f| f.attribute("filename").unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test]
async fn route_by_priority_routes_each_flowfile() {
    let nifi = nifi_or_skip!();
    run(&nifi, Transport::Raw).await;
}

#[tokio::test]
async fn route_by_priority_over_http() {
    let nifi = nifi_or_skip!();
    run(&nifi, Transport::Http).await;
}

#[derive(Clone, Copy)]
enum Transport {
    Raw,
    Http,
}

/// The example flow needs only the standard NARs (ExtractText, RouteOnAttribute): installed by Maven
/// coordinates into the kit's NiFi; a no-op when NiFi has them loaded already.
async fn standard_nars(nifi: &Nifi) {
    nifi.install_nars(&[
        "org.apache.nifi:nifi-standard-services-api-nar",
        "org.apache.nifi:nifi-standard-nar",
    ])
    .await
    .unwrap();
}

async fn run(nifi: &Nifi, transport: Transport) {
    standard_nars(nifi).await;
    // Default threshold is 100 bytes; 20 makes the 60-byte "low" FlowFile large.
    let def = definition()
        .with_parameter("large.threshold", "20")
        .unwrap();
    assert_eq!(def.input_ports(), ["in"]);
    assert_eq!(def.output_ports(), ["large", "other", "urgent"]);
    let flow = nifi.deploy_flow(&def, "route-by-priority").await.unwrap();
    // The body runs as its own task so the flow is deleted even when an assertion fails.
    let body = tokio::spawn(feed_and_check(nifi.clone(), flow.clone(), transport)).await;
    flow.delete().await.unwrap();
    if let Err(e) = body {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn feed_and_check(nifi: Nifi, flow: DeployedFlow, transport: Transport) {
    flow.start().await.unwrap();
    let builder = Client::builder(nifi.url()).io_timeout(Some(Duration::from_secs(30)));
    let c = match transport {
        Transport::Raw => builder,
        Transport::Http => builder.transport(s2s::Transport::Http),
    }
    .build()
    .unwrap();
    let ff = |name: &str, content: String| FlowFile::new(content).with_attribute("filename", name);
    let batch = vec![
        ff("urgent-small", "priority=urgent".into()),
        ff("urgent-big", format!("priority=urgent {}", "x".repeat(200))),
        ff("low-big", format!("priority=low {}", "y".repeat(47))),
        ff("low-small", "priority=low".into()),
        ff("none", "no priority".into()),
    ];
    let sent = c
        .send_batch(flow.input("in").unwrap().name(), batch)
        .await
        .unwrap();
    assert_eq!(sent.flowfiles, 5);

    let expect = [
        ("urgent", vec!["urgent-big", "urgent-small"]),
        ("large", vec!["low-big"]),
        ("other", vec!["low-small", "none"]),
    ];
    for (port, want) in &expect {
        let p = flow.output(port).unwrap();
        p.wait_for_queued(want.len() as u64, WAIT).await.unwrap();
        let listing = p.listing().await.unwrap();
        assert!(listing.is_complete());
        assert_eq!(listing.total, want.len() as u64, "{port}");
        let got = receive_all(&c, p.name(), want.len()).await;
        let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(names(&got), want, "output port {port}");
        for f in &got {
            // ExtractText's attribute: the capture group (absent when nothing matched).
            let content = String::from_utf8_lossy(&f.content);
            match content.strip_prefix("priority=") {
                Some(rest) => {
                    assert_eq!(f.attribute("priority"), rest.split(' ').next(), "{content}")
                }
                None => assert_eq!(f.attribute("priority"), None),
            }
        }
        p.wait_for_empty(WAIT).await.unwrap();
    }

    // Provenance of one routed FlowFile: received from the root port, routed by RouteOnAttribute to
    // `urgent`, sent out over S2S.
    let again = c
        .send_batch(
            flow.input("in").unwrap().name(),
            vec![ff("trace", "priority=urgent".into())],
        )
        .await
        .unwrap();
    assert_eq!(again.flowfiles, 1);
    let out = flow.output("urgent").unwrap();
    out.wait_for_queued(1, WAIT).await.unwrap();
    let got = receive_all(&c, out.name(), 1).await;
    let uuid = got[0].attribute("uuid").unwrap().to_owned();
    let events = flow
        .wait_for_provenance(&uuid, "SEND", Duration::from_secs(60))
        .await
        .unwrap();
    let route = events
        .iter()
        .find(|e| e.event_type == "ROUTE")
        .unwrap_or_else(|| panic!("no ROUTE event in {events:?}"));
    assert_eq!(route.component_name, "Route by priority and size");
    assert_eq!(route.relationship, "urgent");

    flow.check_bulletins().await.unwrap();
    c.close().await;
}

/// A flow whose processor fails leaves an ERROR bulletin, and `check_bulletins` fails the test
/// with its text.
#[tokio::test]
async fn a_flow_error_fails_with_the_bulletin_text() {
    let nifi = nifi_or_skip!();
    standard_nars(&nifi).await;
    // An expression that is valid but throws at runtime (division by zero) for every FlowFile.
    let mut def = definition();
    let mut json = def.json().clone();
    for p in json["flowContents"]["processors"].as_array_mut().unwrap() {
        if p["name"] == "Route by priority and size" {
            p["properties"]["urgent"] = "${priority:toNumber():divide(0):gt(1)}".into();
        }
    }
    def = FlowDefinition::from_json(&json.to_string()).unwrap();
    let flow = nifi.deploy_flow(&def, "route-error").await.unwrap();
    let body = tokio::spawn(expect_bulletin(nifi.clone(), flow.clone())).await;
    flow.delete().await.unwrap();
    if let Err(e) = body {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn expect_bulletin(nifi: Nifi, flow: DeployedFlow) {
    flow.start().await.unwrap();
    let c = Client::builder(nifi.url())
        .io_timeout(Some(Duration::from_secs(30)))
        .build()
        .unwrap();
    c.send_batch(
        flow.input("in").unwrap().name(),
        vec![FlowFile::new("priority=12").with_attribute("filename", "boom")],
    )
    .await
    .unwrap();
    let mut last = None;
    for _ in 0..300 {
        match flow.check_bulletins().await {
            Err(e) => {
                last = Some(e);
                break;
            }
            Ok(()) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let e = last.expect("an ERROR bulletin within 60 s");
    let text = e.to_string();
    assert!(matches!(e, nifi_testkit::Error::FlowError(_)), "{text}");
    assert!(text.contains("Route by priority and size"), "{text}");
    c.close().await;
}
