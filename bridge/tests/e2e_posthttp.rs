//! A real NiFi `PostHTTP` (Send as FlowFile, default Max Batch Size 100 MB) drains a backlog of
//! 200 × 64 KiB FlowFiles through the bridge's ListenHTTP endpoint into a NiFi input port.
//! Before bodies streamed, its one ~14 MB chunked POST was refused with 413 while still being
//! sent: PostHTTP saw a broken pipe, routed all 200 to failure and never drained.
//!
//! `nifi_senders_side_by_side_with_listenhttp`: the same FlowFiles from real `InvokeHTTP`
//! ("Attributes to Send" with camelCase names) and `PostHTTP` (flowfile-v3 plain and gzip, which
//! use the hold protocol) to the bridge and to a real `ListenHTTP` in the same NiFi: equal
//! FlowFiles on both sides.
//!
//! `nifi_posthttp_default_batch_after_backlog_side_by_side_with_listenhttp`: 3,000 FlowFiles
//! queued in front of two stopped `PostHTTP`s (default Max Batch Size), one → the bridge, one →
//! `ListenHTTP`; started, they send big multi-FlowFile batches: exactly the backlog on both sides.
//!
//! `nifi_2_3_invokehttp_side_by_side_with_listenhttp`: the same with `InvokeHTTP` on the NiFi 2.3.0
//! lane (no `PostHTTP` in 2.x) against a 2.3.0 `ListenHTTP`.
//!
//! `PostHTTP` and `GenerateFlowFile` live in `nifi-standard-nar`, which the test kit's minimal
//! NiFi does not carry: the test puts it into the NiFi's `extensions/` (`provision::standard_nar`).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use nifi_testkit::{Nifi, nifi_or_skip, provision};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(180);
const BACKLOG: u64 = 200;

/// Plain NiFi REST calls on the processors this test creates.
struct Rest {
    api: String,
    http: reqwest::Client,
    root: String,
}

impl Rest {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.api);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = r.status();
        let text = r.text().await.expect("body");
        assert!(status.is_success(), "{method} {url}: {status}: {text:.600}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn create(&self, kind: &str, component: Value) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/process-groups/{}/{kind}", self.root),
                Some(json!({"revision": {"version": 0}, "component": component})),
            )
            .await;
        v["id"].as_str().expect("id").to_owned()
    }

    async fn processor(&self, kind: &str, name: &str, config: Value) -> String {
        self.create(
            "processors",
            json!({"type": format!("org.apache.nifi.processors.standard.{kind}"), "name": name,
                   "position": {"x": 0.0, "y": 1400.0}, "config": config}),
        )
        .await
    }

    async fn connect(&self, from: (&str, &str), to: (&str, &str), rel: &str) -> String {
        self.create(
            "connections",
            json!({
                "source": {"id": from.0, "groupId": self.root, "type": from.1},
                "destination": {"id": to.0, "groupId": self.root, "type": to.1},
                "selectedRelationships": [rel],
                "backPressureObjectThreshold": 100_000,
                "backPressureDataSizeThreshold": "10 GB"
            }),
        )
        .await
    }

    async fn run_status(&self, processor: &str, state: &str) {
        let path = format!("/processors/{processor}");
        let rev = self.call(reqwest::Method::GET, &path, None).await["revision"].clone();
        self.call(
            reqwest::Method::PUT,
            &format!("{path}/run-status"),
            Some(json!({"revision": rev, "state": state})),
        )
        .await;
    }

    async fn queued(&self, connection: &str) -> u64 {
        self.call(
            reqwest::Method::GET,
            &format!("/connections/{connection}"),
            None,
        )
        .await["status"]["aggregateSnapshot"]["flowFilesQueued"]
            .as_u64()
            .expect("flowFilesQueued")
    }

    async fn wait_queued(&self, connection: &str, n: u64, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let have = self.queued(connection).await;
            if have == n {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {have} queued, want {n}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn empty(&self, connection: &str) {
        let base = format!("/flowfile-queues/{connection}/drop-requests");
        let v = self.call(reqwest::Method::POST, &base, None).await;
        let id = v["dropRequest"]["id"].as_str().expect("drop id").to_owned();
        let deadline = Instant::now() + WAIT;
        while self
            .call(reqwest::Method::GET, &format!("{base}/{id}"), None)
            .await["dropRequest"]["finished"]
            != true
        {
            assert!(Instant::now() < deadline, "drop request did not finish");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.call(reqwest::Method::DELETE, &format!("{base}/{id}"), None)
            .await;
    }

    /// Every FlowFile queued in `connection` (at most 100: NiFi's listing limit), with
    /// attributes and content.
    async fn list(&self, connection: &str) -> Vec<(BTreeMap<String, String>, Vec<u8>)> {
        let base = format!("/flowfile-queues/{connection}");
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("{base}/listing-requests"),
                None,
            )
            .await;
        let id = v["listingRequest"]["id"]
            .as_str()
            .expect("listing id")
            .to_owned();
        let path = format!("{base}/listing-requests/{id}");
        let deadline = Instant::now() + WAIT;
        let listing = loop {
            let l = self.call(reqwest::Method::GET, &path, None).await;
            if l["listingRequest"]["finished"] == true {
                break l;
            }
            assert!(Instant::now() < deadline, "listing did not finish");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        self.call(reqwest::Method::DELETE, &path, None).await;
        let mut out = Vec::new();
        for s in listing["listingRequest"]["flowFileSummaries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let uuid = s["uuid"].as_str().expect("uuid");
            let ff = self
                .call(
                    reqwest::Method::GET,
                    &format!("{base}/flowfiles/{uuid}"),
                    None,
                )
                .await;
            let attributes: BTreeMap<String, String> = ff["flowFile"]["attributes"]
                .as_object()
                .expect("attributes")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            let resp = self
                .http
                .get(format!("{}{base}/flowfiles/{uuid}/content", self.api))
                .send()
                .await
                .expect("content");
            assert!(
                resp.status().is_success(),
                "content of {uuid}: {}",
                resp.status()
            );
            let content = resp.bytes().await.expect("content body").to_vec();
            out.push((attributes, content));
        }
        out
    }

    /// ERROR bulletins of these components.
    async fn error_bulletins(&self, ids: &[&str]) -> Vec<String> {
        let b = self
            .call(
                reqwest::Method::GET,
                "/flow/bulletin-board?limit=1000",
                None,
            )
            .await;
        b["bulletinBoard"]["bulletins"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|x| {
                x["bulletin"]["level"] == "ERROR"
                    && ids.contains(&x["sourceId"].as_str().unwrap_or_default())
            })
            .map(|x| x["bulletin"]["message"].to_string())
            .collect()
    }

    async fn delete(&self, path: &str) {
        let rev = self.call(reqwest::Method::GET, path, None).await["revision"]["version"]
            .as_u64()
            .unwrap_or(0);
        self.call(
            reqwest::Method::DELETE,
            &format!("{path}?version={rev}"),
            None,
        )
        .await;
    }
}

/// Makes sure PostHTTP is available, loading the standard NAR into the kit's NiFi if needed.
async fn ensure_standard_processors(nifi: &Nifi) {
    let has = || async {
        nifi.api_get("/flow/processor-types?type=org.apache.nifi.processors.standard.PostHTTP")
            .await
            .expect("processor types")["processorTypes"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    };
    if has().await {
        return;
    }
    let inst = provision::read_state(&provision::state_file())
        .expect("state file")
        .expect("PostHTTP is missing and no NiFi state file says where the NiFi home is");
    provision::standard_nar(&inst).expect("nifi-standard-nar into extensions/");
    let deadline = Instant::now() + WAIT;
    while !has().await {
        assert!(
            Instant::now() < deadline,
            "NiFi did not load nifi-standard-nar within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn nifi_posthttp_with_its_default_batch_drains_a_backlog_through_the_bridge() {
    let nifi = nifi_or_skip!();
    ensure_standard_processors(&nifi).await;
    let port = nifi.input_port("bridge-posthttp").await.expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    // Default limits: the point is that they accept PostHTTP's default batch.
    let bridge = BridgeProc::spawn(
        [
            "--nifi-url",
            nifi.url(),
            "--port-name",
            port.name(),
            "--stage-dir",
            dir.path().to_str().expect("utf-8 path"),
        ],
        None,
    );
    bridge.wait_healthy().await;
    let rest = Rest {
        api: format!("{}-api", nifi.url()),
        http: reqwest::Client::new(),
        root: nifi.root_id().to_owned(),
    };
    let name = format!("bridge-posthttp-{}", std::process::id());
    let gen_ = rest
        .processor(
            "GenerateFlowFile",
            &format!("{name}-gen"),
            json!({"schedulingPeriod": "1 hour", "properties": {
                "File Size": "64 KB", "Batch Size": BACKLOG.to_string(),
                "Data Format": "Binary", "Unique FlowFiles": "false"}}),
        )
        .await;
    let post = rest
        .processor(
            "PostHTTP",
            &format!("{name}-post"),
            json!({"autoTerminatedRelationships": ["success"], "properties": {
                "URL": bridge.url("/contentListener"), "Send as FlowFile": "true"}}),
        )
        .await;
    let funnel = rest
        .create("funnels", json!({"position": {"x": 400.0, "y": 1400.0}}))
        .await;
    let backlog = rest
        .connect((&gen_, "PROCESSOR"), (&post, "PROCESSOR"), "success")
        .await;
    let failed = rest
        .connect((&post, "PROCESSOR"), (&funnel, "FUNNEL"), "failure")
        .await;

    // The backlog: one GenerateFlowFile run of 200 × 64 KiB.
    rest.run_status(&gen_, "RUNNING").await;
    rest.wait_queued(&backlog, BACKLOG, "GenerateFlowFile backlog")
        .await;
    rest.run_status(&gen_, "STOPPED").await;

    rest.run_status(&post, "RUNNING").await;
    let drained = async {
        rest.wait_queued(&backlog, 0, "PostHTTP backlog").await;
        port.wait_for_queued(BACKLOG, WAIT).await
    };
    let result = drained.await;
    rest.run_status(&post, "STOPPED").await;
    let failures = rest.queued(&failed).await;
    let queued = port.queued_count().await.expect("count");
    let metrics = bridge.metrics().await;

    for c in [&backlog, &failed] {
        rest.empty(c).await;
        rest.delete(&format!("/connections/{c}")).await;
    }
    for p in [&gen_, &post] {
        rest.delete(&format!("/processors/{p}")).await;
    }
    rest.delete(&format!("/funnels/{funnel}")).await;

    result.expect("PostHTTP's backlog reached NiFi through the bridge");
    assert_eq!(failures, 0, "PostHTTP routed FlowFiles to failure");
    assert_eq!(queued, BACKLOG);
    assert!(!metrics.contains("reason=\"LIMIT\""), "{metrics}");
    let sample = port.queued_flowfiles().await.expect("list");
    assert!(
        sample.iter().all(|f| f.content.len() == 64 << 10),
        "every FlowFile has its 64 KiB"
    );
    port.delete().await.expect("delete");
}

/// Attributes that legitimately differ between the two sides, with why:
/// - `uuid`: each side's NiFi assigns a new one (ListenHTTP and the S2S input port alike);
/// - `s2s.host`, `s2s.address`: added by NiFi's Site-to-Site input port on receipt (the bridge's
///   hop), not by the sender or the listener;
/// - and `filename` where it is the FlowFile's own uuid (NiFi's default name for a plain body
///   without a `filename` header): compared as "own uuid".
const DIFFER: [&str; 3] = ["uuid", "s2s.host", "s2s.address"];

/// Real `InvokeHTTP` (camelCase attributes sent as headers) and `PostHTTP` (flowfile-v3, plain
/// and gzip, hold protocol) send the same FlowFiles to the bridge and to a real `ListenHTTP` with
/// the same header regex: the FlowFiles are equal (every attribute but [`DIFFER`], every content
/// byte), none in failure/retry, no ERROR bulletins, no duplicates; HEAD answers alike.
#[tokio::test]
async fn nifi_senders_side_by_side_with_listenhttp() {
    const N: u64 = 20; // × 3 lanes per side, within NiFi's listing limit of 100
    const REGEX: &str = "tenantId|camelCaseName";
    let nifi = nifi_or_skip!();
    ensure_standard_processors(&nifi).await;
    let port = nifi.input_port("bridge-sbs").await.expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("bridge.log");
    let bridge = BridgeProc::spawn(
        [
            "--nifi-url",
            nifi.url(),
            "--port-name",
            port.name(),
            "--stage-dir",
            dir.path().to_str().expect("utf-8 path"),
            "--header-regex",
            REGEX,
        ],
        Some(&log),
    );
    bridge.wait_healthy().await;
    let listen_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let listen_url = format!("http://127.0.0.1:{listen_port}/contentListener");
    let rest = Rest {
        api: format!("{}-api", nifi.url()),
        http: reqwest::Client::new(),
        root: nifi.root_id().to_owned(),
    };
    let name = format!("bridge-sbs-{}", std::process::id());
    let listen = rest
        .processor(
            "ListenHTTP",
            &format!("{name}-listen"),
            json!({"properties": {"Listening Port": listen_port.to_string(),
                "HTTP Headers to receive as Attributes (Regex)": REGEX}}),
        )
        .await;
    let gen_ = rest
        .processor(
            "GenerateFlowFile",
            &format!("{name}-gen"),
            json!({"schedulingPeriod": "1 hour", "properties": {
                "File Size": "3 KB", "Batch Size": N.to_string(),
                "Data Format": "Binary", "Unique FlowFiles": "true",
                "tenantId": "t-42", "camelCaseName": "Mixed Case value", "lowercase": "not sent"}}),
        )
        .await;
    let mut senders = Vec::new();
    for (side, url) in [
        ("bridge", bridge.url("/contentListener")),
        ("listen", listen_url.clone()),
    ] {
        let invoke = rest
            .processor(
                "InvokeHTTP",
                &format!("{name}-invoke-{side}"),
                json!({"autoTerminatedRelationships": ["Original", "Response"], "properties": {
                    "HTTP Method": "POST", "Remote URL": url,
                    "Attributes to Send": "tenantId|camelCaseName|lowercase|filename"}}),
            )
            .await;
        let post = rest
            .processor(
                "PostHTTP",
                &format!("{name}-post-{side}"),
                json!({"autoTerminatedRelationships": ["success"], "properties": {
                    "URL": url, "Send as FlowFile": "true"}}),
            )
            .await;
        let postgz = rest
            .processor(
                "PostHTTP",
                &format!("{name}-postgz-{side}"),
                json!({"autoTerminatedRelationships": ["success"], "properties": {
                    "URL": url, "Send as FlowFile": "true", "Compression Level": "6"}}),
            )
            .await;
        senders.push((invoke, vec!["Retry", "No Retry", "Failure"]));
        senders.push((post, vec!["failure"]));
        senders.push((postgz, vec!["failure"]));
    }
    let funnel = rest
        .create("funnels", json!({"position": {"x": 400.0, "y": 1400.0}}))
        .await;
    let mut inputs = Vec::new();
    let mut failures = Vec::new();
    for (p, rels) in &senders {
        inputs.push(
            rest.connect((&gen_, "PROCESSOR"), (p, "PROCESSOR"), "success")
                .await,
        );
        for rel in rels {
            failures.push(
                rest.connect((p, "PROCESSOR"), (&funnel, "FUNNEL"), rel)
                    .await,
            );
        }
    }
    let listened = rest
        .connect((&listen, "PROCESSOR"), (&funnel, "FUNNEL"), "success")
        .await;

    rest.run_status(&listen, "RUNNING").await;
    for (p, _) in &senders {
        rest.run_status(p, "RUNNING").await;
    }
    // HEAD: what ListenHTTP advertises (its server needs a moment to listen).
    let http = reqwest::Client::new();
    let head_deadline = Instant::now() + WAIT;
    let theirs = loop {
        match http.head(&listen_url).send().await {
            Ok(r) => break r,
            Err(e) => {
                assert!(
                    Instant::now() < head_deadline,
                    "ListenHTTP did not listen: {e}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let ours = http
        .head(bridge.url("/contentListener"))
        .send()
        .await
        .expect("HEAD bridge");
    for h in [
        "accept",
        "accept-encoding",
        "x-nifi-transfer-protocol-version",
    ] {
        assert_eq!(ours.headers().get(h), theirs.headers().get(h), "HEAD {h}");
    }

    rest.run_status(&gen_, "RUNNING").await;
    let arrived = async {
        port.wait_for_queued(3 * N, WAIT)
            .await
            .expect("bridge side");
        rest.wait_queued(&listened, 3 * N, "ListenHTTP side").await;
        for c in &inputs {
            rest.wait_queued(c, 0, "senders drained").await;
        }
    };
    arrived.await;
    // Late duplicates would show up here.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (p, _) in &senders {
        rest.run_status(p, "STOPPED").await;
    }
    rest.run_status(&gen_, "STOPPED").await;
    rest.run_status(&listen, "STOPPED").await;
    let mut failed = 0;
    for c in &failures {
        failed += rest.queued(c).await;
    }
    let mut ids: Vec<&str> = senders.iter().map(|(p, _)| p.as_str()).collect();
    ids.extend([listen.as_str(), gen_.as_str()]);
    let bulletins = rest.error_bulletins(&ids).await;
    let strip = |v: Vec<(BTreeMap<String, String>, Vec<u8>)>| {
        let mut v: Vec<_> = v
            .into_iter()
            .map(|(mut a, c)| {
                // A body without a filename (InvokeHTTP never sends `filename` as a header): each
                // side's NiFi names the new FlowFile after its own uuid.
                if a.get("filename") == a.get("uuid") {
                    a.insert("filename".into(), "<own uuid>".into());
                }
                for k in DIFFER {
                    a.remove(k);
                }
                (a, c)
            })
            .collect();
        v.sort();
        v
    };
    let bridge_side = strip(rest.list(port.connection_id()).await);
    let listen_side = strip(rest.list(&listened).await);
    let metrics = bridge.metrics().await;

    for c in inputs.iter().chain(&failures).chain([&listened]) {
        rest.empty(c).await;
        rest.delete(&format!("/connections/{c}")).await;
    }
    for p in senders.iter().map(|(p, _)| p).chain([&gen_, &listen]) {
        rest.delete(&format!("/processors/{p}")).await;
    }
    rest.delete(&format!("/funnels/{funnel}")).await;
    port.delete().await.expect("delete port");

    assert_eq!(failed, 0, "FlowFiles in failure/retry");
    assert!(bulletins.is_empty(), "ERROR bulletins: {bulletins:?}");
    assert_eq!(bridge_side.len() as u64, 3 * N);
    assert_eq!(listen_side.len() as u64, 3 * N);
    // No duplicates, nothing lost: with every sender's queue drained, nothing in failure and
    // 3 s for late arrivals, each side holds exactly N per lane — N by InvokeHTTP (no `lowercase`
    // attribute: the regex does not match it) and 2N by PostHTTP (plain and gzip; the package
    // carries `lowercase`).
    for (side, v) in [("bridge", &bridge_side), ("ListenHTTP", &listen_side)] {
        let posted = v
            .iter()
            .filter(|(a, _)| a.contains_key("lowercase"))
            .count() as u64;
        assert_eq!(
            (v.len() as u64 - posted, posted),
            (N, 2 * N),
            "{side}: per lane"
        );
    }
    // The camelCase header arrived under its own name on both sides.
    assert!(
        listen_side
            .iter()
            .any(
                |(a, _)| a.get("camelCaseName").map(String::as_str) == Some("Mixed Case value")
                    && !a.contains_key("lowercase")
            ),
        "ListenHTTP side lacks camelCaseName: {:?}",
        listen_side.first()
    );
    for (i, (b, l)) in bridge_side.iter().zip(&listen_side).enumerate() {
        assert_eq!(
            b.0, l.0,
            "attributes of FlowFile {i} (bridge vs ListenHTTP)"
        );
        assert!(b.1 == l.1, "content of FlowFile {i} differs");
    }
    // PostHTTP asks for a hold (x-prefer-acknowledge-uri) and confirms it with DELETE.
    let holds = |event: &str| -> u64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("bridge_listenhttp_holds_total")
                    && l.contains(&format!("event=\"{event}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert!(holds("placed") > 0, "PostHTTP used no hold: {metrics}");
    assert_eq!(holds("placed"), holds("confirmed"), "{metrics}");
}

/// `PostHTTP` with its default batch size (Max Batch Size 100 MB) after a backlog: a few
/// thousand FlowFiles are queued in front of two stopped PostHTTPs (one → the bridge, one → a
/// real `ListenHTTP` in the same NiFi), then both start and send big multi-FlowFile batches. Both
/// sides hold exactly the backlog (nothing in failure, no ERROR bulletins, no duplicates after a
/// settle time), the listed FlowFiles are equal (every attribute but [`DIFFER`], every content
/// byte), and every hold the bridge placed was confirmed, with many FlowFiles per POST.
#[tokio::test]
async fn nifi_posthttp_default_batch_after_backlog_side_by_side_with_listenhttp() {
    const N: u64 = 3000;
    let nifi = nifi_or_skip!();
    ensure_standard_processors(&nifi).await;
    let port = nifi.input_port("bridge-backlog").await.expect("port");
    nifi.set_back_pressure(&port, 1_000_000)
        .await
        .expect("back pressure");
    let dir = tempfile::tempdir().expect("tempdir");
    let bridge = BridgeProc::spawn(
        [
            "--nifi-url",
            nifi.url(),
            "--port-name",
            port.name(),
            "--stage-dir",
            dir.path().to_str().expect("utf-8 path"),
        ],
        None,
    );
    bridge.wait_healthy().await;
    let listen_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let listen_url = format!("http://127.0.0.1:{listen_port}/contentListener");
    let rest = Rest {
        api: format!("{}-api", nifi.url()),
        http: reqwest::Client::new(),
        root: nifi.root_id().to_owned(),
    };
    let name = format!("bridge-backlog-{}", std::process::id());
    let listen = rest
        .processor(
            "ListenHTTP",
            &format!("{name}-listen"),
            json!({"properties": {"Listening Port": listen_port.to_string()}}),
        )
        .await;
    let gen_ = rest
        .processor(
            "GenerateFlowFile",
            &format!("{name}-gen"),
            json!({"schedulingPeriod": "1 hour", "properties": {
                "File Size": "1 KB", "Batch Size": N.to_string(),
                "Data Format": "Binary", "Unique FlowFiles": "false",
                "tenantId": "t-7"}}),
        )
        .await;
    let funnel = rest
        .create("funnels", json!({"position": {"x": 400.0, "y": 1400.0}}))
        .await;
    let mut posts = Vec::new();
    let mut inputs = Vec::new();
    let mut failures = Vec::new();
    for (side, url) in [
        ("bridge", bridge.url("/contentListener")),
        ("listen", listen_url.clone()),
    ] {
        // Default properties but the URL: Max Batch Size 100 MB, Send as FlowFile.
        let post = rest
            .processor(
                "PostHTTP",
                &format!("{name}-post-{side}"),
                json!({"autoTerminatedRelationships": ["success"], "properties": {
                    "URL": url, "Send as FlowFile": "true"}}),
            )
            .await;
        inputs.push(
            rest.connect((&gen_, "PROCESSOR"), (&post, "PROCESSOR"), "success")
                .await,
        );
        failures.push(
            rest.connect((&post, "PROCESSOR"), (&funnel, "FUNNEL"), "failure")
                .await,
        );
        posts.push(post);
    }
    let listened = rest
        .connect((&listen, "PROCESSOR"), (&funnel, "FUNNEL"), "success")
        .await;
    rest.run_status(&listen, "RUNNING").await;

    // The backlog: one GenerateFlowFile run of N, cloned in front of both stopped PostHTTPs.
    rest.run_status(&gen_, "RUNNING").await;
    for c in &inputs {
        rest.wait_queued(c, N, "GenerateFlowFile backlog").await;
    }
    rest.run_status(&gen_, "STOPPED").await;
    // ListenHTTP's server needs a moment to listen.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    while http.head(&listen_url).send().await.is_err() {
        assert!(Instant::now() < deadline, "ListenHTTP did not listen");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for p in &posts {
        rest.run_status(p, "RUNNING").await;
    }
    let arrived = async {
        for c in &inputs {
            rest.wait_queued(c, 0, "PostHTTP backlog").await;
        }
        port.wait_for_queued(N, WAIT).await.expect("bridge side");
        rest.wait_queued(&listened, N, "ListenHTTP side").await;
    };
    arrived.await;
    // Late duplicates would show up here.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for p in &posts {
        rest.run_status(p, "STOPPED").await;
    }
    rest.run_status(&listen, "STOPPED").await;
    let bridge_count = port.queued_count().await.expect("count");
    let listen_count = rest.queued(&listened).await;
    let mut failed = 0;
    for c in &failures {
        failed += rest.queued(c).await;
    }
    let mut ids: Vec<&str> = posts.iter().map(String::as_str).collect();
    ids.extend([listen.as_str(), gen_.as_str()]);
    let bulletins = rest.error_bulletins(&ids).await;
    let by_name = |v: Vec<(BTreeMap<String, String>, Vec<u8>)>| {
        v.into_iter()
            .map(|(mut a, c)| {
                for k in DIFFER {
                    a.remove(k);
                }
                (a.get("filename").cloned().unwrap_or_default(), (a, c))
            })
            .collect::<BTreeMap<_, _>>()
    };
    let bridge_side = by_name(rest.list(port.connection_id()).await);
    let listen_side = by_name(rest.list(&listened).await);
    let metrics = bridge.metrics().await;

    for c in inputs.iter().chain(&failures).chain([&listened]) {
        rest.empty(c).await;
        rest.delete(&format!("/connections/{c}")).await;
    }
    for p in posts.iter().chain([&gen_, &listen]) {
        rest.delete(&format!("/processors/{p}")).await;
    }
    rest.delete(&format!("/funnels/{funnel}")).await;
    port.delete().await.expect("delete port");

    assert_eq!(failed, 0, "FlowFiles in PostHTTP's failure");
    assert!(bulletins.is_empty(), "ERROR bulletins: {bulletins:?}");
    // Exactly the backlog on each side: nothing lost, no duplicate.
    assert_eq!((bridge_count, listen_count), (N, N), "(bridge, ListenHTTP)");
    // The listings (first 100 of each queue) name the same FlowFiles by their sender's filename
    // (the backlog's clones share it); those carry equal attributes and content.
    let common: Vec<&String> = bridge_side
        .keys()
        .filter(|k| listen_side.contains_key(*k))
        .collect();
    assert!(
        common.len() >= 50,
        "only {} of the listed FlowFiles on both sides",
        common.len()
    );
    let common_len = common.len();
    for k in common {
        let (b, l) = (&bridge_side[k], &listen_side[k]);
        assert_eq!(b.0, l.0, "attributes of {k} (bridge vs ListenHTTP)");
        assert!(b.1 == l.1, "content of {k} differs");
        assert_eq!(b.0.get("tenantId").map(String::as_str), Some("t-7"));
    }
    // PostHTTP asked for a hold per POST and confirmed every one; the batches were big.
    let holds = |event: &str| -> u64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("bridge_listenhttp_holds_total")
                    && l.contains(&format!("event=\"{event}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let placed = holds("placed");
    eprintln!(
        "backlog of {N}: {placed} PostHTTP POSTs (holds) to the bridge, {} FlowFiles compared in full",
        common_len
    );
    assert!(placed > 0, "PostHTTP used no hold: {metrics}");
    assert_eq!(placed, holds("confirmed"), "{metrics}");
    assert!(
        placed * 10 <= N,
        "{placed} POSTs for {N} FlowFiles: PostHTTP did not batch"
    );
}

/// The NiFi 2.x lane (`cargo xtask nifi up --version 2.3.0 --no-shared`, state in
/// `target/nifi/2.3.0/nifi.env`) and its kit instance; skips without it, fails when
/// `NIFI_2X_REQUIRED=1` (set by `cargo xtask test`, which starts the lane) or in CI without a
/// `NIFI_URL` of the user's.
async fn nifi_2x() -> Option<(Nifi, provision::Instance)> {
    let required = std::env::var("NIFI_2X_REQUIRED").is_ok_and(|v| v == "1")
        || (nifi_testkit::nifi_required() && std::env::var_os("NIFI_URL").is_none());
    let path = provision::version_state_file("2.3.0");
    let inst = match provision::read_state(&path) {
        Ok(Some(i)) => i,
        other => {
            let why = format!("no NiFi 2.3.0 lane ({}: {other:?})", path.display());
            assert!(!required, "{why}");
            eprintln!("SKIPPED: {why}");
            return None;
        }
    };
    match Nifi::connect(&inst.url, inst.raw_port).await {
        Ok(n) => Some((n, inst)),
        Err(e) => {
            let why = format!("NiFi 2.3.0 at {} does not answer: {e}", inst.url);
            assert!(!required, "{why}");
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// `InvokeHTTP` on NiFi 2.3.0 (no `PostHTTP` in 2.x): the same FlowFiles, with camelCase
/// attributes sent as headers ("Request Header Attributes Pattern"), to the bridge and to a real
/// 2.3.0 `ListenHTTP` with the same header regex: equal FlowFiles (every attribute but [`DIFFER`]
/// and the own-uuid filename, every content byte), nothing in Retry/No Retry/Failure, no ERROR
/// bulletins, exactly N on each side after a settle time.
#[tokio::test]
async fn nifi_2_3_invokehttp_side_by_side_with_listenhttp() {
    const N: u64 = 20;
    const REGEX: &str = "tenantId|camelCaseName";
    let Some((nifi, inst)) = nifi_2x().await else {
        return;
    };
    // nifi-standard-nar 2.3.0 (the kit builds it from its published parts when Maven Central
    // does not serve it) with its NAR parents, into the lane's extensions/.
    let has = || async {
        nifi.api_get("/flow/processor-types?type=org.apache.nifi.processors.standard.InvokeHTTP")
            .await
            .expect("processor types")["processorTypes"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    };
    if !has().await {
        provision::standard_nar(&inst).expect("nifi-standard-nar 2.3.0 into extensions/");
        let deadline = Instant::now() + WAIT;
        while !has().await {
            assert!(
                Instant::now() < deadline,
                "NiFi 2.3.0 did not load nifi-standard-nar"
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let port = nifi.input_port("bridge-sbs2").await.expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let bridge = BridgeProc::spawn(
        [
            "--nifi-url",
            nifi.url(),
            "--port-name",
            port.name(),
            "--stage-dir",
            dir.path().to_str().expect("utf-8 path"),
            "--header-regex",
            REGEX,
        ],
        None,
    );
    bridge.wait_healthy().await;
    let listen_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let listen_url = format!("http://127.0.0.1:{listen_port}/contentListener");
    let rest = Rest {
        api: format!("{}-api", nifi.url()),
        http: reqwest::Client::new(),
        root: nifi.root_id().to_owned(),
    };
    let name = format!("bridge-sbs2-{}", std::process::id());
    let listen = rest
        .processor(
            "ListenHTTP",
            &format!("{name}-listen"),
            json!({"properties": {"Listening Port": listen_port.to_string(),
                "HTTP Headers to receive as Attributes (Regex)": REGEX}}),
        )
        .await;
    let gen_ = rest
        .processor(
            "GenerateFlowFile",
            &format!("{name}-gen"),
            json!({"schedulingPeriod": "1 hour", "properties": {
                "File Size": "3 KB", "Batch Size": N.to_string(),
                "Data Format": "Binary", "Unique FlowFiles": "true",
                "tenantId": "t-42", "camelCaseName": "Mixed Case value", "lowercase": "not sent"}}),
        )
        .await;
    let funnel = rest
        .create("funnels", json!({"position": {"x": 400.0, "y": 1400.0}}))
        .await;
    let mut invokes = Vec::new();
    let mut inputs = Vec::new();
    let mut failures = Vec::new();
    for (side, url) in [
        ("bridge", bridge.url("/contentListener")),
        ("listen", listen_url.clone()),
    ] {
        let invoke = rest
            .processor(
                "InvokeHTTP",
                &format!("{name}-invoke-{side}"),
                json!({"autoTerminatedRelationships": ["Original", "Response"], "properties": {
                    "HTTP Method": "POST", "HTTP URL": url,
                    "Request Header Attributes Pattern": "tenantId|camelCaseName|filename"}}),
            )
            .await;
        inputs.push(
            rest.connect((&gen_, "PROCESSOR"), (&invoke, "PROCESSOR"), "success")
                .await,
        );
        for rel in ["Retry", "No Retry", "Failure"] {
            failures.push(
                rest.connect((&invoke, "PROCESSOR"), (&funnel, "FUNNEL"), rel)
                    .await,
            );
        }
        invokes.push(invoke);
    }
    let listened = rest
        .connect((&listen, "PROCESSOR"), (&funnel, "FUNNEL"), "success")
        .await;
    rest.run_status(&listen, "RUNNING").await;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    while http.head(&listen_url).send().await.is_err() {
        assert!(Instant::now() < deadline, "ListenHTTP did not listen");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for p in &invokes {
        rest.run_status(p, "RUNNING").await;
    }
    rest.run_status(&gen_, "RUNNING").await;
    let arrived = async {
        port.wait_for_queued(N, WAIT).await.expect("bridge side");
        rest.wait_queued(&listened, N, "ListenHTTP side").await;
        for c in &inputs {
            rest.wait_queued(c, 0, "senders drained").await;
        }
    };
    arrived.await;
    // Late duplicates would show up here.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for p in &invokes {
        rest.run_status(p, "STOPPED").await;
    }
    rest.run_status(&gen_, "STOPPED").await;
    rest.run_status(&listen, "STOPPED").await;
    let mut failed = 0;
    for c in &failures {
        failed += rest.queued(c).await;
    }
    let mut ids: Vec<&str> = invokes.iter().map(String::as_str).collect();
    ids.extend([listen.as_str(), gen_.as_str()]);
    let bulletins = rest.error_bulletins(&ids).await;
    let strip = |v: Vec<(BTreeMap<String, String>, Vec<u8>)>| {
        let mut v: Vec<_> = v
            .into_iter()
            .map(|(mut a, c)| {
                if a.get("filename") == a.get("uuid") {
                    a.insert("filename".into(), "<own uuid>".into());
                }
                for k in DIFFER {
                    a.remove(k);
                }
                (a, c)
            })
            .collect();
        v.sort();
        v
    };
    let bridge_side = strip(rest.list(port.connection_id()).await);
    let listen_side = strip(rest.list(&listened).await);

    for c in inputs.iter().chain(&failures).chain([&listened]) {
        rest.empty(c).await;
        rest.delete(&format!("/connections/{c}")).await;
    }
    for p in invokes.iter().chain([&gen_, &listen]) {
        rest.delete(&format!("/processors/{p}")).await;
    }
    rest.delete(&format!("/funnels/{funnel}")).await;
    port.delete().await.expect("delete port");

    assert_eq!(failed, 0, "FlowFiles in Retry/No Retry/Failure");
    assert!(bulletins.is_empty(), "ERROR bulletins: {bulletins:?}");
    assert_eq!(
        (bridge_side.len() as u64, listen_side.len() as u64),
        (N, N),
        "(bridge, ListenHTTP)"
    );
    assert!(
        listen_side.iter().all(|(a, _)| {
            a.get("camelCaseName").map(String::as_str) == Some("Mixed Case value")
                && a.get("tenantId").map(String::as_str) == Some("t-42")
                && !a.contains_key("lowercase")
        }),
        "ListenHTTP side: {:?}",
        listen_side.first()
    );
    for (i, (b, l)) in bridge_side.iter().zip(&listen_side).enumerate() {
        assert_eq!(
            b.0, l.0,
            "attributes of FlowFile {i} (bridge vs ListenHTTP)"
        );
        assert!(b.1 == l.1, "content of FlowFile {i} differs");
    }
}
