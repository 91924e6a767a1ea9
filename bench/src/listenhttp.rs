//! P3's baseline: NiFi's own `ListenHTTP` processor (standard NAR) → connection → funnel, created
//! and removed through the REST API of the same NiFi the other scenarios use.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nifi_testkit::Nifi;
use serde_json::{Value, json};

const TYPE: &str = "org.apache.nifi.processors.standard.ListenHTTP";

/// A running ListenHTTP processor and its queue.
pub struct ListenHttp {
    api: String,
    http: reqwest::Client,
    processor: String,
    funnel: String,
    connection: String,
    /// `http://127.0.0.1:PORT/contentListener`.
    pub url: String,
}

impl ListenHttp {
    /// Creates ListenHTTP on a free port (named after `name`), its `success` connection to a new
    /// funnel (back pressure off), starts it and waits until it answers.
    pub async fn start(nifi: &Nifi, name: &str) -> anyhow::Result<Self> {
        let api = format!("{}-api", nifi.url());
        let http = reqwest::Client::new();
        let root = nifi.root_id().to_owned();
        // The NAR may still be loading when this runs right after it was dropped into extensions/.
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let types = nifi
                .api_get(&format!("/flow/processor-types?type={TYPE}"))
                .await?;
            if types["processorTypes"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "NiFi {} has no ListenHTTP (nifi-standard-nar is not loaded; `cargo xtask bench` puts it in the NiFi's extensions/)",
                    nifi.version()
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let post = |path: String, body: Value| {
            let http = http.clone();
            let url = format!("{api}{path}");
            async move {
                let r = http.post(&url).json(&body).send().await?;
                let status = r.status();
                let text = r.text().await?;
                if !status.is_success() {
                    bail!("POST {url}: {status}: {text:.400}");
                }
                anyhow::Ok(serde_json::from_str::<Value>(&text)?)
            }
        };
        let proc_ = post(
            format!("/process-groups/{root}/processors"),
            json!({"revision": {"version": 0}, "component": {
                "type": TYPE, "name": name, "position": {"x": 0.0, "y": 900.0},
                "config": {"properties": {"Listening Port": port.to_string(), "Base Path": "contentListener"}}
            }}),
        )
        .await?;
        let processor = id(&proc_)?;
        let funnel = post(
            format!("/process-groups/{root}/funnels"),
            json!({"revision": {"version": 0}, "component": {"position": {"x": 0.0, "y": 1100.0}}}),
        )
        .await
        .and_then(|v| id(&v));
        let mut me = Self {
            api: api.clone(),
            http: http.clone(),
            processor,
            funnel: String::new(),
            connection: String::new(),
            url: format!("http://127.0.0.1:{port}/contentListener"),
        };
        me.funnel = funnel?;
        let conn = post(
            format!("/process-groups/{root}/connections"),
            json!({"revision": {"version": 0}, "component": {
                "source": {"id": me.processor, "groupId": root, "type": "PROCESSOR"},
                "destination": {"id": me.funnel, "groupId": root, "type": "FUNNEL"},
                "selectedRelationships": ["success"],
                "backPressureObjectThreshold": 100_000_000u64,
                "backPressureDataSizeThreshold": "100 GB"
            }}),
        )
        .await?;
        me.connection = id(&conn)?;
        me.run_status("RUNNING").await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let health = format!("http://127.0.0.1:{port}/contentListener/healthcheck");
        while !http
            .get(&health)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if Instant::now() > deadline {
                bail!("ListenHTTP did not answer {health}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(me)
    }

    async fn revision(&self, path: &str) -> anyhow::Result<Value> {
        let v: Value = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(v["revision"].clone())
    }

    async fn run_status(&self, state: &str) -> anyhow::Result<()> {
        let path = format!("/processors/{}", self.processor);
        let revision = self.revision(&path).await?;
        self.http
            .put(format!("{}{path}/run-status", self.api))
            .json(&json!({"revision": revision, "state": state}))
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("setting ListenHTTP {state}"))?;
        Ok(())
    }

    /// FlowFiles in the processor's `success` queue.
    pub async fn queued(&self) -> anyhow::Result<u64> {
        let v: Value = self
            .http
            .get(format!("{}/connections/{}", self.api, self.connection))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        v["status"]["aggregateSnapshot"]["flowFilesQueued"]
            .as_u64()
            .context("connection status without flowFilesQueued")
    }

    /// Empties the queue (NiFi's drop request) and waits until it is done.
    pub async fn drain(&self) -> anyhow::Result<()> {
        let url = format!(
            "{}/flowfile-queues/{}/drop-requests",
            self.api, self.connection
        );
        let v: Value = self
            .http
            .post(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let req = v["dropRequest"]["id"].as_str().context("drop request id")?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v: Value = self
                .http
                .get(format!("{url}/{req}"))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            if v["dropRequest"]["finished"] == true {
                break;
            }
            if Instant::now() > deadline {
                bail!("dropping the ListenHTTP queue did not finish");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.http.delete(format!("{url}/{req}")).send().await.ok();
        Ok(())
    }

    /// Stops the processor, empties the queue and deletes connection, processor and funnel.
    pub async fn delete(self) -> anyhow::Result<()> {
        self.run_status("STOPPED").await?;
        self.drain().await?;
        for path in [
            format!("/connections/{}", self.connection),
            format!("/processors/{}", self.processor),
            format!("/funnels/{}", self.funnel),
        ] {
            let rev = self.revision(&path).await?;
            let version = rev["version"].as_u64().unwrap_or(0);
            self.http
                .delete(format!("{}{path}?version={version}", self.api))
                .send()
                .await?
                .error_for_status()
                .with_context(|| format!("DELETE {path}"))?;
        }
        Ok(())
    }
}

fn id(v: &Value) -> anyhow::Result<String> {
    v["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no id in {v:.300}"))
}
