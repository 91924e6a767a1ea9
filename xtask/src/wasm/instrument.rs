//! The `instrument()` run: `wasm-client/e2e/instrument.mjs` drives unmodified apps (plain
//! IndexedDB, `idb`, Dexie) under `instrument()` in headless Chromium, through `s2s-bridge`, into a
//! NiFi input port of its own; then every FlowFile in that port's queue is checked against the
//! FlowFiles the page's outbox rows mapped to (attributes and content, each exactly once).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use serde_json::Value;

use super::e2e::{bridge_binary, free_port, nifi, runtime};
use super::setup;
use crate::test::{run, workspace_root};

pub(crate) fn run_instrument(www: &Path) -> Result<()> {
    let rt = runtime()?;
    let Some(nifi) = rt.block_on(nifi())? else {
        return Ok(());
    };
    let bridge = bridge_binary()?;
    let port = rt.block_on(nifi.input_port("wasm-instrument"))?;
    let out = workspace_root().join("target/wasm-e2e");
    std::fs::create_dir_all(&out)?;
    let _ = std::fs::remove_file(out.join("instrument.json"));
    let script = run(Command::new("node")
        .arg(setup::e2e_dir().join("instrument.mjs"))
        .env("BRIDGE_BIN", &bridge)
        .env("BRIDGE_PORT", free_port()?.to_string())
        .env("STATIC_DIR", www)
        .env("NIFI_URL", nifi.url())
        .env("NIFI_PORT_INSTRUMENT", port.name())
        .env("OUT_DIR", &out));
    if let Err(e) = script {
        bail!(
            "{e:#}\n(bridge log: {}; NiFi port {} kept for inspection)",
            out.join("instrument-bridge.log").display(),
            port.name()
        );
    }
    let report: Value = serde_json::from_slice(
        &std::fs::read(out.join("instrument.json")).context("instrument.mjs wrote no report")?,
    )?;
    ensure!(
        report["ok"] == true,
        "instrument.mjs did not finish: {report}"
    );
    let expected = report["flowfiles"].as_array().context("flowfiles")?;
    let n = expected.len() as u64;
    ensure!(
        (1..=100).contains(&n),
        "{n} FlowFiles: NiFi lists at most 100"
    );
    rt.block_on(async {
        port.wait_for_queued(n, Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let count = port.queued_count().await?;
        ensure!(
            count == n,
            "NiFi queued {count} FlowFiles, the outboxes held {n} rows (duplicates or losses)"
        );
        let got = port.queued_flowfiles().await?;
        let mut by_seq = BTreeMap::new();
        for ff in &got {
            let k = (
                ff.attributes.get("idb.database").cloned().unwrap_or_default(),
                ff.attributes.get("idb.seq").cloned().unwrap_or_default(),
            );
            ensure!(by_seq.insert(k.clone(), ff).is_none(), "{k:?} delivered twice");
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        for e in expected {
            let attrs = e["attributes"].as_object().context("attributes")?;
            let k = (
                attrs["idb.database"].as_str().unwrap_or_default().to_owned(),
                attrs["idb.seq"].as_str().unwrap_or_default().to_owned(),
            );
            let ff = by_seq
                .get(&k)
                .with_context(|| format!("no FlowFile in NiFi for {k:?}"))?;
            for (name, v) in attrs {
                ensure!(
                    ff.attributes.get(name).map(String::as_str) == v.as_str(),
                    "{k:?}: attribute {name} is {:?} in NiFi, {v} in the page",
                    ff.attributes.get(name)
                );
            }
            ensure!(
                ff.attributes.get("app.name").map(String::as_str) == Some("instrument-test"),
                "{k:?}: static attribute app.name"
            );
            let content = b64.decode(e["content"].as_str().context("content")?)?;
            ensure!(ff.content == content, "{k:?}: content differs");
        }
        port.delete().await?;
        eprintln!("wasm instrument: all {n} FlowFiles of the instrumented apps found in NiFi, exactly once");
        anyhow::Ok(())
    })
}
