//! A real NiFi `PostHTTP` (Send as FlowFile, default Max Batch Size 100 MB) drains a backlog of
//! 200 × 64 KiB FlowFiles through the bridge's ListenHTTP endpoint into a NiFi input port.
//! Before bodies streamed, its one ~14 MB chunked POST was refused with 413 while still being
//! sent: PostHTTP saw a broken pipe, routed all 200 to failure and never drained.
//!
//! `PostHTTP` and `GenerateFlowFile` live in `nifi-standard-nar`, which the test kit's minimal
//! NiFi does not carry: the test puts it into the NiFi's `extensions/` (`provision::standard_nar`).

mod common;

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
