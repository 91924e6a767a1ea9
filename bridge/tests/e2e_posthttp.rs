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
use nifi_testkit::{Nifi, Port, nifi_or_skip, provision};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(180);
const BACKLOG: u64 = 200;

/// The kit's REST calls ([`nifi_testkit::rest::Rest`]) on the components this test creates,
/// failing the test on an error, plus the flows' building blocks.
struct Rest(nifi_testkit::rest::Rest);

impl Rest {
    /// The REST client for `nifi`'s root process group.
    fn new(nifi: &Nifi) -> Self {
        Rest(nifi_testkit::rest::Rest::new(nifi))
    }

    async fn create(&self, kind: &str, component: Value) -> String {
        self.0.create(kind, component).await.expect("create")
    }

    async fn processor(&self, kind: &str, name: &str, config: Value) -> String {
        self.0
            .processor(kind, name, config)
            .await
            .unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
    }

    async fn connect(&self, from: (&str, &str), to: (&str, &str), rel: &str) -> String {
        self.0.connect(from, to, rel).await.expect("connect")
    }

    async fn run_status(&self, processor: &str, state: &str) {
        self.0
            .run_status(processor, state)
            .await
            .unwrap_or_else(|e| panic!("{state} {processor}: {e}"));
    }

    async fn queued(&self, connection: &str) -> u64 {
        self.0.queued(connection).await.expect("queued")
    }

    async fn wait_queued(&self, connection: &str, n: u64, what: &str) {
        self.0
            .wait_queued(connection, n, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }

    async fn empty(&self, connection: &str) {
        self.0.empty(connection).await.expect("empty");
    }

    async fn list(&self, connection: &str) -> Vec<(BTreeMap<String, String>, Vec<u8>)> {
        self.0.list(connection).await.expect("list")
    }

    async fn error_bulletins(&self, ids: &[&str]) -> Vec<String> {
        self.0.error_bulletins(ids).await.expect("bulletins")
    }

    async fn delete(&self, path: &str) {
        self.0
            .delete(path)
            .await
            .unwrap_or_else(|e| panic!("delete {path}: {e}"));
    }

    /// A funnel to route relationships into (their FlowFiles stay queued, countable).
    async fn funnel(&self) -> String {
        self.create("funnels", json!({"position": {"x": 400.0, "y": 1400.0}}))
            .await
    }

    /// A `ListenHTTP` on a free local port (`header_regex`: its "HTTP Headers to receive as
    /// Attributes (Regex)"); its id and its `/contentListener` URL.
    async fn listen_http(&self, name: &str, header_regex: Option<&str>) -> (String, String) {
        let listen_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let mut props = json!({"Listening Port": listen_port.to_string()});
        if let Some(r) = header_regex {
            props["HTTP Headers to receive as Attributes (Regex)"] = json!(r);
        }
        let id = self
            .processor("ListenHTTP", name, json!({"properties": props}))
            .await;
        (
            id,
            format!("http://127.0.0.1:{listen_port}/contentListener"),
        )
    }

    /// A `GenerateFlowFile` making `n` binary FlowFiles of `size` per run (once an hour), with
    /// `attributes` as dynamic properties.
    async fn generate(
        &self,
        name: &str,
        size: &str,
        n: u64,
        unique: bool,
        attributes: &[(&str, &str)],
    ) -> String {
        let mut props = json!({"File Size": size, "Batch Size": n.to_string(),
            "Data Format": "Binary", "Unique FlowFiles": unique.to_string()});
        for (k, v) in attributes {
            props[*k] = json!(v);
        }
        self.processor(
            "GenerateFlowFile",
            name,
            json!({"schedulingPeriod": "1 hour", "properties": props}),
        )
        .await
    }

    /// A `PostHTTP` to `url` (Send as FlowFile, `extra` properties), success auto-terminated.
    async fn post_http(&self, name: &str, url: &str, extra: &[(&str, &str)]) -> String {
        let mut props = json!({"URL": url, "Send as FlowFile": "true"});
        for (k, v) in extra {
            props[*k] = json!(v);
        }
        self.processor(
            "PostHTTP",
            name,
            json!({"autoTerminatedRelationships": ["success"], "properties": props}),
        )
        .await
    }

    async fn run_all<'a>(&self, processors: impl IntoIterator<Item = &'a String>, state: &str) {
        for p in processors {
            self.run_status(p, state).await;
        }
    }

    /// FlowFiles queued in all of `connections`.
    async fn queued_total(&self, connections: &[String]) -> u64 {
        let mut n = 0;
        for c in connections {
            n += self.queued(c).await;
        }
        n
    }

    /// Empties and deletes `connections`, then deletes `processors` and `funnel`.
    async fn remove<'a>(
        &self,
        connections: impl IntoIterator<Item = &'a String>,
        processors: impl IntoIterator<Item = &'a String>,
        funnel: &str,
    ) {
        for c in connections {
            self.empty(c).await;
            self.delete(&format!("/connections/{c}")).await;
        }
        for p in processors {
            self.delete(&format!("/processors/{p}")).await;
        }
        self.delete(&format!("/funnels/{funnel}")).await;
    }
}

/// Makes sure `processor` (a `nifi-standard-nar` type) is available, loading the standard NAR
/// into `inst`'s extensions/ (the kit's state file's NiFi when `None`) if needed.
async fn ensure_standard_processors(
    nifi: &Nifi,
    inst: Option<&provision::Instance>,
    processor: &str,
) {
    let has = || async {
        nifi.api_get(&format!(
            "/flow/processor-types?type=org.apache.nifi.processors.standard.{processor}"
        ))
        .await
        .expect("processor types")["processorTypes"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    };
    if has().await {
        return;
    }
    let from_state;
    let inst = match inst {
        Some(i) => i,
        None => {
            from_state = provision::read_state(&provision::state_file())
                .expect("state file")
                .unwrap_or_else(|| {
                    panic!(
                        "{processor} is missing and no NiFi state file says where the NiFi home is"
                    )
                });
            &from_state
        }
    };
    provision::standard_nar(inst).expect("nifi-standard-nar into extensions/");
    let deadline = Instant::now() + WAIT;
    while !has().await {
        assert!(
            Instant::now() < deadline,
            "NiFi did not load nifi-standard-nar within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The bridge binary, healthy, forwarding to `port` with its default limits (the point is that
/// they accept what NiFi's senders send) and an optional `--header-regex`.
async fn spawn_bridge(
    nifi: &Nifi,
    port: &Port,
    stage: &std::path::Path,
    header_regex: Option<&str>,
    log: Option<&std::path::Path>,
) -> BridgeProc {
    let mut args = vec![
        "--nifi-url",
        nifi.url(),
        "--port-name",
        port.name(),
        "--stage-dir",
        stage.to_str().expect("utf-8 path"),
    ];
    if let Some(r) = header_regex {
        args.extend(["--header-regex", r]);
    }
    let bridge = BridgeProc::spawn(args, log);
    bridge.wait_healthy().await;
    bridge
}

/// `HEAD url` once `ListenHTTP`'s server listens (it needs a moment after starting).
async fn wait_listening(url: &str) -> reqwest::Response {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    loop {
        match http.head(url).send().await {
            Ok(r) => return r,
            Err(e) => {
                assert!(Instant::now() < deadline, "ListenHTTP did not listen: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// `bridge_listenhttp_holds_total{event}` from the bridge's metrics text.
fn holds(metrics: &str, event: &str) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("bridge_listenhttp_holds_total")
                && l.contains(&format!("event=\"{event}\""))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Listed FlowFiles with the attributes in [`DIFFER`] removed and a `filename` that is the
/// FlowFile's own uuid (a body without a filename: each side's NiFi names the new FlowFile after
/// its own uuid) as `<own uuid>`, sorted.
fn normalized(
    v: Vec<(BTreeMap<String, String>, Vec<u8>)>,
) -> Vec<(BTreeMap<String, String>, Vec<u8>)> {
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
}

/// Listed FlowFiles: attributes and content.
type Listed = [(BTreeMap<String, String>, Vec<u8>)];

/// Equal attributes and content, pairwise, on the bridge's side and ListenHTTP's.
fn assert_sides_equal(bridge_side: &Listed, listen_side: &Listed) {
    for (i, (b, l)) in bridge_side.iter().zip(listen_side).enumerate() {
        assert_eq!(
            b.0, l.0,
            "attributes of FlowFile {i} (bridge vs ListenHTTP)"
        );
        assert!(b.1 == l.1, "content of FlowFile {i} differs");
    }
}

/// The FlowFiles' attributes of the side-by-side tests: `tenantId` and `camelCaseName` match the
/// header regex, `lowercase` does not.
const SBS_ATTRIBUTES: [(&str, &str); 3] = [
    ("tenantId", "t-42"),
    ("camelCaseName", "Mixed Case value"),
    ("lowercase", "not sent"),
];
const SBS_REGEX: &str = "tenantId|camelCaseName";

/// A side-by-side flow: `GenerateFlowFile` → senders (some → the bridge, some → `ListenHTTP`),
/// the senders' failure relationships and `ListenHTTP`'s success → a funnel, where they stay
/// queued.
struct SideBySide {
    listen: String,
    listen_url: String,
    gen_: String,
    funnel: String,
    /// `ListenHTTP` → funnel: what arrived on ListenHTTP's side.
    listened: String,
    senders: Vec<String>,
    /// `GenerateFlowFile` → each sender.
    inputs: Vec<String>,
    /// Each sender's failure relationships → funnel.
    failures: Vec<String>,
}

impl SideBySide {
    /// `ListenHTTP` (`header_regex`), a `GenerateFlowFile` of `n` × `size` with `attributes`,
    /// the funnel; no senders yet.
    async fn new(
        rest: &Rest,
        name: &str,
        header_regex: Option<&str>,
        (size, n, unique): (&str, u64, bool),
        attributes: &[(&str, &str)],
    ) -> Self {
        let (listen, listen_url) = rest
            .listen_http(&format!("{name}-listen"), header_regex)
            .await;
        let gen_ = rest
            .generate(&format!("{name}-gen"), size, n, unique, attributes)
            .await;
        let funnel = rest.funnel().await;
        let listened = rest
            .connect((&listen, "PROCESSOR"), (&funnel, "FUNNEL"), "success")
            .await;
        SideBySide {
            listen,
            listen_url,
            gen_,
            funnel,
            listened,
            senders: Vec::new(),
            inputs: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Feeds `sender` from the generator, its `failure_rels` into the funnel.
    async fn add_sender(&mut self, rest: &Rest, sender: String, failure_rels: &[&str]) {
        self.inputs.push(
            rest.connect((&self.gen_, "PROCESSOR"), (&sender, "PROCESSOR"), "success")
                .await,
        );
        for rel in failure_rels {
            self.failures.push(
                rest.connect((&sender, "PROCESSOR"), (&self.funnel, "FUNNEL"), rel)
                    .await,
            );
        }
        self.senders.push(sender);
    }

    /// Waits for `n` on each side (`port`: the bridge's) and every sender's input drained, gives
    /// late duplicates 3 s to show up, then stops every processor.
    async fn arrive_and_stop(&self, rest: &Rest, port: &Port, n: u64) {
        port.wait_for_queued(n, WAIT).await.expect("bridge side");
        rest.wait_queued(&self.listened, n, "ListenHTTP side").await;
        for c in &self.inputs {
            rest.wait_queued(c, 0, "senders drained").await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        rest.run_all(&self.senders, "STOPPED").await;
        rest.run_status(&self.gen_, "STOPPED").await;
        rest.run_status(&self.listen, "STOPPED").await;
    }

    /// FlowFiles in the senders' failure relationships, and the ERROR bulletins of every
    /// processor.
    async fn failed_and_bulletins(&self, rest: &Rest) -> (u64, Vec<String>) {
        let failed = rest.queued_total(&self.failures).await;
        let mut ids: Vec<&str> = self.senders.iter().map(String::as_str).collect();
        ids.extend([self.listen.as_str(), self.gen_.as_str()]);
        (failed, rest.error_bulletins(&ids).await)
    }

    async fn remove(&self, rest: &Rest) {
        rest.remove(
            self.inputs
                .iter()
                .chain(&self.failures)
                .chain([&self.listened]),
            self.senders.iter().chain([&self.gen_, &self.listen]),
            &self.funnel,
        )
        .await;
    }
}

#[tokio::test]
async fn nifi_posthttp_with_its_default_batch_drains_a_backlog_through_the_bridge() {
    let nifi = nifi_or_skip!();
    ensure_standard_processors(&nifi, None, "PostHTTP").await;
    let port = nifi.input_port("bridge-posthttp").await.expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let bridge = spawn_bridge(&nifi, &port, dir.path(), None, None).await;
    let rest = Rest::new(&nifi);
    let name = format!("bridge-posthttp-{}", std::process::id());
    let gen_ = rest
        .generate(&format!("{name}-gen"), "64 KB", BACKLOG, false, &[])
        .await;
    let post = rest
        .post_http(
            &format!("{name}-post"),
            &bridge.url("/contentListener"),
            &[],
        )
        .await;
    let funnel = rest.funnel().await;
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

    rest.remove([&backlog, &failed], [&gen_, &post], &funnel)
        .await;

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
    let nifi = nifi_or_skip!();
    ensure_standard_processors(&nifi, None, "PostHTTP").await;
    let port = nifi.input_port("bridge-sbs").await.expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("bridge.log");
    let bridge = spawn_bridge(&nifi, &port, dir.path(), Some(SBS_REGEX), Some(&log)).await;
    let rest = Rest::new(&nifi);
    let name = format!("bridge-sbs-{}", std::process::id());
    let mut flow = SideBySide::new(
        &rest,
        &name,
        Some(SBS_REGEX),
        ("3 KB", N, true),
        &SBS_ATTRIBUTES,
    )
    .await;
    for (side, url) in [
        ("bridge", bridge.url("/contentListener")),
        ("listen", flow.listen_url.clone()),
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
        flow.add_sender(&rest, invoke, &["Retry", "No Retry", "Failure"])
            .await;
        let post = rest
            .post_http(&format!("{name}-post-{side}"), &url, &[])
            .await;
        flow.add_sender(&rest, post, &["failure"]).await;
        let postgz = rest
            .post_http(
                &format!("{name}-postgz-{side}"),
                &url,
                &[("Compression Level", "6")],
            )
            .await;
        flow.add_sender(&rest, postgz, &["failure"]).await;
    }

    rest.run_status(&flow.listen, "RUNNING").await;
    rest.run_all(&flow.senders, "RUNNING").await;
    // HEAD: what ListenHTTP advertises.
    let theirs = wait_listening(&flow.listen_url).await;
    let ours = reqwest::Client::new()
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

    rest.run_status(&flow.gen_, "RUNNING").await;
    flow.arrive_and_stop(&rest, &port, 3 * N).await;
    let (failed, bulletins) = flow.failed_and_bulletins(&rest).await;
    let bridge_side = normalized(rest.list(port.connection_id()).await);
    let listen_side = normalized(rest.list(&flow.listened).await);
    let metrics = bridge.metrics().await;

    flow.remove(&rest).await;
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
    assert_sides_equal(&bridge_side, &listen_side);
    // PostHTTP asks for a hold (x-prefer-acknowledge-uri) and confirms it with DELETE.
    assert!(
        holds(&metrics, "placed") > 0,
        "PostHTTP used no hold: {metrics}"
    );
    assert_eq!(
        holds(&metrics, "placed"),
        holds(&metrics, "confirmed"),
        "{metrics}"
    );
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
    ensure_standard_processors(&nifi, None, "PostHTTP").await;
    let port = nifi.input_port("bridge-backlog").await.expect("port");
    nifi.set_back_pressure(&port, 1_000_000)
        .await
        .expect("back pressure");
    let dir = tempfile::tempdir().expect("tempdir");
    let bridge = spawn_bridge(&nifi, &port, dir.path(), None, None).await;
    let rest = Rest::new(&nifi);
    let name = format!("bridge-backlog-{}", std::process::id());
    let mut flow = SideBySide::new(
        &rest,
        &name,
        None,
        ("1 KB", N, false),
        &[("tenantId", "t-7")],
    )
    .await;
    for (side, url) in [
        ("bridge", bridge.url("/contentListener")),
        ("listen", flow.listen_url.clone()),
    ] {
        // Default properties but the URL: Max Batch Size 100 MB, Send as FlowFile.
        let post = rest
            .post_http(&format!("{name}-post-{side}"), &url, &[])
            .await;
        flow.add_sender(&rest, post, &["failure"]).await;
    }
    rest.run_status(&flow.listen, "RUNNING").await;

    // The backlog: one GenerateFlowFile run of N, cloned in front of both stopped PostHTTPs.
    rest.run_status(&flow.gen_, "RUNNING").await;
    for c in &flow.inputs {
        rest.wait_queued(c, N, "GenerateFlowFile backlog").await;
    }
    rest.run_status(&flow.gen_, "STOPPED").await;
    wait_listening(&flow.listen_url).await;
    rest.run_all(&flow.senders, "RUNNING").await;
    let arrived = async {
        for c in &flow.inputs {
            rest.wait_queued(c, 0, "PostHTTP backlog").await;
        }
        port.wait_for_queued(N, WAIT).await.expect("bridge side");
        rest.wait_queued(&flow.listened, N, "ListenHTTP side").await;
    };
    arrived.await;
    // Late duplicates would show up here.
    tokio::time::sleep(Duration::from_secs(3)).await;
    rest.run_all(&flow.senders, "STOPPED").await;
    rest.run_status(&flow.listen, "STOPPED").await;
    let bridge_count = port.queued_count().await.expect("count");
    let listen_count = rest.queued(&flow.listened).await;
    let (failed, bulletins) = flow.failed_and_bulletins(&rest).await;
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
    let listen_side = by_name(rest.list(&flow.listened).await);
    let metrics = bridge.metrics().await;

    flow.remove(&rest).await;
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
    let placed = holds(&metrics, "placed");
    eprintln!(
        "backlog of {N}: {placed} PostHTTP POSTs (holds) to the bridge, {} FlowFiles compared in full",
        common_len
    );
    assert!(placed > 0, "PostHTTP used no hold: {metrics}");
    assert_eq!(placed, holds(&metrics, "confirmed"), "{metrics}");
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
    let Some((nifi, inst)) = nifi_2x().await else {
        return;
    };
    // nifi-standard-nar 2.3.0 (the kit builds it from its published parts when Maven Central
    // does not serve it) with its NAR parents, into the lane's extensions/.
    ensure_standard_processors(&nifi, Some(&inst), "InvokeHTTP").await;
    let port = nifi.input_port("bridge-sbs2").await.expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let bridge = spawn_bridge(&nifi, &port, dir.path(), Some(SBS_REGEX), None).await;
    let rest = Rest::new(&nifi);
    let name = format!("bridge-sbs2-{}", std::process::id());
    let mut flow = SideBySide::new(
        &rest,
        &name,
        Some(SBS_REGEX),
        ("3 KB", N, true),
        &SBS_ATTRIBUTES,
    )
    .await;
    for (side, url) in [
        ("bridge", bridge.url("/contentListener")),
        ("listen", flow.listen_url.clone()),
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
        flow.add_sender(&rest, invoke, &["Retry", "No Retry", "Failure"])
            .await;
    }
    rest.run_status(&flow.listen, "RUNNING").await;
    wait_listening(&flow.listen_url).await;
    rest.run_all(&flow.senders, "RUNNING").await;
    rest.run_status(&flow.gen_, "RUNNING").await;
    flow.arrive_and_stop(&rest, &port, N).await;
    let (failed, bulletins) = flow.failed_and_bulletins(&rest).await;
    let bridge_side = normalized(rest.list(port.connection_id()).await);
    let listen_side = normalized(rest.list(&flow.listened).await);

    flow.remove(&rest).await;
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
    assert_sides_equal(&bridge_side, &listen_side);
}
