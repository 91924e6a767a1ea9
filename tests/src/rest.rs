//! Plain NiFi REST calls on processors, connections and funnels in the root process group, for
//! tests and benchmarks that build a small flow of NiFi's own processors around the thing under
//! test (e.g. `GenerateFlowFile` → `PostHTTP` → the bridge, side by side with `ListenHTTP`).
//!
//! ```no_run
//! use std::time::Duration;
//! use nifi_testkit::{Nifi, rest::Rest};
//! use serde_json::json;
//!
//! # async fn run() -> nifi_testkit::Result<()> {
//! let nifi = Nifi::shared().await?;
//! let rest = Rest::new(&nifi);
//! let generate = rest
//!     .processor("GenerateFlowFile", "my-gen", json!({"schedulingPeriod": "1 hour"}))
//!     .await?;
//! let funnel = rest.create("funnels", json!({"position": {"x": 0.0, "y": 0.0}})).await?;
//! let queue = rest
//!     .connect((&generate, "PROCESSOR"), (&funnel, "FUNNEL"), "success")
//!     .await?;
//! rest.run_status(&generate, "RUN_ONCE").await?;
//! rest.wait_queued(&queue, 1, Duration::from_secs(30)).await?;
//! rest.empty(&queue).await?;
//! rest.delete(&format!("/connections/{queue}")).await?;
//! rest.delete(&format!("/processors/{generate}")).await?;
//! rest.delete(&format!("/funnels/{funnel}")).await?;
//! # Ok(()) }
//! ```
//!
//! Everything it creates is the caller's to delete (as above); nothing here is cleaned up on drop.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Error, Nifi, Result, request};

/// How long [`Rest::empty`] and [`Rest::list`] wait for NiFi's drop and listing requests.
const REQUEST_WAIT: Duration = Duration::from_secs(180);

/// REST calls on components of a NiFi's root process group (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Rest {
    nifi: Nifi,
}

impl Rest {
    /// Calls on `nifi`'s root process group, with its HTTP client (and TLS identity, if any).
    pub fn new(nifi: &Nifi) -> Self {
        Rest { nifi: nifi.clone() }
    }

    /// `method {url}-api{path}` with an optional JSON body; the answer as JSON (`Null` when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let api = &self.nifi.inner.api;
        request(
            &self.nifi.inner.http,
            method,
            &format!("{api}{path}"),
            body.as_ref(),
        )
        .await
    }

    /// Creates a component of `kind` (`processors`, `connections`, `funnels`, ...) in the root
    /// group; its id.
    pub async fn create(&self, kind: &str, component: Value) -> Result<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/process-groups/{}/{kind}", self.nifi.root_id()),
                Some(json!({"revision": {"version": 0}, "component": component})),
            )
            .await?;
        Ok(v["id"]
            .as_str()
            .ok_or_else(|| Error::Unexpected(format!("created {kind} without id: {v}")))?
            .to_owned())
    }

    /// Creates a stopped `org.apache.nifi.processors.standard.{kind}` named `name` with `config`
    /// (NiFi's `ProcessorConfigDTO`: `properties`, `schedulingPeriod`,
    /// `autoTerminatedRelationships`, ...); its id.
    pub async fn processor(&self, kind: &str, name: &str, config: Value) -> Result<String> {
        self.create(
            "processors",
            json!({"type": format!("org.apache.nifi.processors.standard.{kind}"), "name": name,
                   "position": {"x": 0.0, "y": 1400.0}, "config": config}),
        )
        .await
    }

    /// Connects relationship `rel` of `from` to `to`, each given as `(id, type)` with type
    /// `PROCESSOR`, `FUNNEL`, `INPUT_PORT`, ...; back pressure at 10,000,000 FlowFiles / 100 GB
    /// (out of the way of any backlog a test builds); its id.
    pub async fn connect(&self, from: (&str, &str), to: (&str, &str), rel: &str) -> Result<String> {
        let root = self.nifi.root_id();
        self.create(
            "connections",
            json!({
                "source": {"id": from.0, "groupId": root, "type": from.1},
                "destination": {"id": to.0, "groupId": root, "type": to.1},
                "selectedRelationships": [rel],
                "backPressureObjectThreshold": 10_000_000,
                "backPressureDataSizeThreshold": "100 GB"
            }),
        )
        .await
    }

    /// Sets processor `processor`'s run status: `RUNNING`, `STOPPED` or `RUN_ONCE`.
    pub async fn run_status(&self, processor: &str, state: &str) -> Result<()> {
        let path = format!("/processors/{processor}");
        let rev = self.call(reqwest::Method::GET, &path, None).await?["revision"].clone();
        self.call(
            reqwest::Method::PUT,
            &format!("{path}/run-status"),
            Some(json!({"revision": rev, "state": state})),
        )
        .await?;
        Ok(())
    }

    /// How many FlowFiles are queued in `connection`.
    pub async fn queued(&self, connection: &str) -> Result<u64> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/connections/{connection}"),
                None,
            )
            .await?;
        v["status"]["aggregateSnapshot"]["flowFilesQueued"]
            .as_u64()
            .ok_or_else(|| Error::Unexpected(format!("no flowFilesQueued for {connection}")))
    }

    /// Waits until exactly `n` FlowFiles are queued in `connection` (polled every 500 ms);
    /// [`Error::Timeout`] with the last count after `timeout`.
    pub async fn wait_queued(&self, connection: &str, n: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let have = self.queued(connection).await?;
            if have == n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("{n} queued in {connection} ({have} queued)"),
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Drops every FlowFile queued in `connection` (a drop request, waited for; fails when NiFi
    /// reports a failure reason).
    pub async fn empty(&self, connection: &str) -> Result<()> {
        self.nifi.drop_queue(connection, REQUEST_WAIT).await
    }

    /// Every FlowFile queued in `connection` (at most 100: NiFi's listing limit), with its
    /// attributes and content.
    pub async fn list(&self, connection: &str) -> Result<Vec<(BTreeMap<String, String>, Vec<u8>)>> {
        let base = format!("/flowfile-queues/{connection}");
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("{base}/listing-requests"),
                None,
            )
            .await?;
        let id = v["listingRequest"]["id"]
            .as_str()
            .ok_or_else(|| Error::Unexpected(format!("listing request without id: {v}")))?
            .to_owned();
        let path = format!("{base}/listing-requests/{id}");
        let deadline = Instant::now() + REQUEST_WAIT;
        let listing = loop {
            let l = self.call(reqwest::Method::GET, &path, None).await?;
            if l["listingRequest"]["finished"] == true {
                break l;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("listing of {connection}"),
                    waited: REQUEST_WAIT,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        self.call(reqwest::Method::DELETE, &path, None).await?;
        let mut out = Vec::new();
        for s in listing["listingRequest"]["flowFileSummaries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let uuid = s["uuid"]
                .as_str()
                .ok_or_else(|| Error::Unexpected(format!("listed FlowFile without uuid: {s}")))?;
            let ff = self
                .call(
                    reqwest::Method::GET,
                    &format!("{base}/flowfiles/{uuid}"),
                    None,
                )
                .await?;
            let attributes: BTreeMap<String, String> = ff["flowFile"]["attributes"]
                .as_object()
                .ok_or_else(|| Error::Unexpected(format!("FlowFile {uuid} without attributes")))?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            let content = self
                .nifi
                .api_bytes(&format!("{base}/flowfiles/{uuid}/content"))
                .await?;
            out.push((attributes, content));
        }
        Ok(out)
    }

    /// The messages of the ERROR bulletins whose source is one of `ids`.
    pub async fn error_bulletins(&self, ids: &[&str]) -> Result<Vec<String>> {
        let b = self
            .call(
                reqwest::Method::GET,
                "/flow/bulletin-board?limit=1000",
                None,
            )
            .await?;
        Ok(b["bulletinBoard"]["bulletins"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|x| {
                x["bulletin"]["level"] == "ERROR"
                    && ids.contains(&x["sourceId"].as_str().unwrap_or_default())
            })
            .map(|x| x["bulletin"]["message"].to_string())
            .collect())
    }

    /// Deletes the component at `path` (`/processors/{id}`, `/connections/{id}`,
    /// `/funnels/{id}`) at its current revision.
    pub async fn delete(&self, path: &str) -> Result<()> {
        let rev = self.call(reqwest::Method::GET, path, None).await?["revision"]["version"]
            .as_u64()
            .unwrap_or(0);
        self.call(
            reqwest::Method::DELETE,
            &format!("{path}?version={rev}"),
            None,
        )
        .await?;
        Ok(())
    }
}
