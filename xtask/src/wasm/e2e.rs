//! The end-to-end run: real NiFi ports (test kit) → `s2s-bridge` serving the demo → the Playwright
//! script `wasm-client/e2e/e2e.mjs` in headless Chromium → every FlowFile checked in NiFi's queue.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use nifi_testkit::{Nifi, Port, QueuedFlowFile};
use serde_json::Value;

use super::{cargo, setup, target_dir};
use crate::test::{run, workspace_root};

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// The NiFi to test against; missing NiFi fails when CI/S2S_E2E demand it, else skips loudly.
pub(super) async fn nifi() -> Result<Option<Nifi>> {
    match Nifi::shared().await {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.is_not_available() => {
            eprintln!(
                "\n*** SKIPPED the wasm end-to-end run: no NiFi ({e}).\n*** Start one with `cargo xtask nifi up`; with CI or S2S_E2E=1 set this is an error.\n"
            );
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!("NiFi required for the wasm e2e run: {e}")),
    }
}

pub(super) fn bridge_binary() -> Result<PathBuf> {
    run(cargo().args(["build", "-p", "nifi-s2s-bridge", "--bin", "s2s-bridge"]))?;
    let bin = target_dir().join("debug/s2s-bridge");
    ensure!(
        bin.exists(),
        "s2s-bridge binary missing at {}",
        bin.display()
    );
    Ok(bin)
}

pub(super) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn run_e2e(www: &Path, bench_records: u32) -> Result<()> {
    let rt = runtime()?;
    let Some(nifi) = rt.block_on(nifi())? else {
        return Ok(());
    };
    let bridge = bridge_binary()?;
    let (main, bulk, bench) = rt.block_on(async {
        let main = nifi.input_port("wasm-e2e").await?;
        let bulk = nifi.input_port("wasm-e2e-bulk").await?;
        let bench = nifi.input_port("wasm-bench").await?;
        anyhow::Ok((main, bulk, bench))
    })?;
    let out = workspace_root().join("target/wasm-e2e");
    std::fs::create_dir_all(&out)?;
    let _ = std::fs::remove_file(out.join("expected.json"));
    // `run` starts commands in the workspace root: give node the script's absolute path (it
    // resolves playwright-core from the script's folder).
    let script = run(Command::new("node")
        .arg(setup::e2e_dir().join("e2e.mjs"))
        .env("BRIDGE_BIN", &bridge)
        .env("BRIDGE_PORT", free_port()?.to_string())
        .env("STATIC_DIR", www)
        .env("NIFI_URL", nifi.url())
        .env("NIFI_PORT_MAIN", main.name())
        .env("NIFI_PORT_BENCH", bench.name())
        .env("NIFI_PORT_BULK", bulk.name())
        .env("OUT_DIR", &out)
        .env("BENCH_RECORDS", bench_records.to_string()));
    if let Err(e) = script {
        bail!(
            "{e:#}\n(bridge log: {}; NiFi ports {}, {} and {} kept for inspection)",
            out.join("bridge.log").display(),
            main.name(),
            bulk.name(),
            bench.name()
        );
    }
    let report: Value = serde_json::from_slice(
        &std::fs::read(out.join("expected.json"))
            .context("the e2e script wrote no expected.json")?,
    )?;
    ensure!(
        report["ok"] == true,
        "the e2e script did not finish: {report}"
    );
    rt.block_on(async {
        verify_main(&main, &report["main"]).await?;
        // The demo's "Add 100" button: one transaction, 100 FlowFiles in their own port.
        verify_main(&bulk, &report["bulk"]).await?;
        let n = report["bench"]["n"].as_u64().context("bench.n")?;
        let got = bench.wait_for_queued(n, Duration::from_secs(120)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let settled = bench.queued_count().await?;
        ensure!(got == n && settled == n, "bench port holds {settled} FlowFiles, expected exactly {n}");
        let b = &report["bench"];
        eprintln!(
            "wasm e2e: {n} records from one tab to NiFi in {:.2}s end to end = {} records/s (writes alone {} records/s; uploading {:.2}s)",
            b["totalSecs"].as_f64().unwrap_or(0.0),
            b["recordsPerSec"],
            b["writesPerSec"],
            b["deliverSecs"].as_f64().unwrap_or(0.0),
        );
        main.delete().await?;
        bulk.delete().await?;
        bench.delete().await?;
        anyhow::Ok(())
    })?;
    eprintln!(
        "wasm e2e passed; screenshot of the demo: {}",
        out.join("demo.png").display()
    );
    Ok(())
}

fn attr<'a>(ff: &'a QueuedFlowFile, k: &str) -> Result<&'a str> {
    ff.attributes
        .get(k)
        .map(String::as_str)
        .with_context(|| format!("FlowFile lacks attribute {k}: {:?}", ff.attributes))
}

/// Every FlowFile in `port` is one expected record, exactly once, with the documented
/// attributes and content; seq increases in commit order.
async fn verify_main(port: &Port, main: &Value) -> Result<()> {
    let records = main["records"].as_array().context("main.records")?;
    let n = records.len() as u64;
    ensure!(
        n <= 100,
        "NiFi lists at most 100 FlowFiles; the e2e main phase must stay below"
    );
    port.wait_for_queued(n, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = port.queued_count().await?;
    ensure!(
        count == n,
        "NiFi queued {count} FlowFiles, expected exactly {n} (duplicates or losses)"
    );
    let flowfiles = port.queued_flowfiles().await?;
    ensure!(
        flowfiles.len() as u64 == n,
        "listed {} of {n} FlowFiles",
        flowfiles.len()
    );

    let mut by_identity: BTreeMap<(String, String, String, String), &QueuedFlowFile> =
        BTreeMap::new();
    let mut seqs: BTreeMap<(String, u64), ()> = BTreeMap::new();
    for ff in &flowfiles {
        let id = (
            attr(ff, "idb.database")?.to_owned(),
            attr(ff, "idb.store")?.to_owned(),
            // `clear` has no key.
            ff.attributes.get("idb.key").cloned().unwrap_or_default(),
            attr(ff, "idb.op")?.to_owned(),
        );
        let seq: u64 = attr(ff, "idb.seq")?
            .parse()
            .context("idb.seq is not a number")?;
        ensure!(
            seqs.insert((id.0.clone(), seq), ()).is_none(),
            "seq {seq} of {} delivered twice",
            id.0
        );
        ensure!(
            by_identity.insert(id.clone(), ff).is_none(),
            "{id:?} delivered twice"
        );
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut add_order: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for r in records {
        let s = |k: &str| {
            r[k].as_str()
                .map(str::to_owned)
                .with_context(|| format!("record field {k}: {r}"))
        };
        let (db, store, key, op) = (s("database")?, s("store")?, s("key")?, s("op")?);
        let ff = by_identity
            .get(&(db.clone(), store.clone(), key.clone(), op.clone()))
            .with_context(|| format!("no FlowFile in NiFi for {db}/{store} key {key} op {op}"))?;
        let seq: u64 = attr(ff, "idb.seq")?.parse()?;
        ensure!(
            attr(ff, "idb.client.id")? == main["clientIds"][&db].as_str().unwrap_or("?"),
            "idb.client.id of {db}"
        );
        ensure!(
            attr(ff, "mime.type")? == s("mime")?,
            "mime.type of {db}/{key}"
        );
        ensure!(
            attr(ff, "app.name")? == "todo-demo",
            "static attribute app.name"
        );
        let ext = if s("mime")? == "application/json" {
            "json"
        } else {
            "bin"
        };
        ensure!(
            attr(ff, "filename")? == format!("{db}.{store}.{seq}.{ext}"),
            "filename of {db}/{key}"
        );
        let ts: u64 = attr(ff, "idb.timestamp")?
            .parse()
            .context("idb.timestamp")?;
        ensure!(
            ts > 1_600_000_000_000,
            "idb.timestamp {ts} is not epoch millis"
        );
        if let Some(b) = r["base64"].as_str() {
            ensure!(
                ff.content == b64.decode(b)?,
                "binary content of {db}/{key} differs"
            );
        } else {
            let got: Value = serde_json::from_slice(&ff.content)
                .with_context(|| format!("content of {db}/{key} is not JSON"))?;
            ensure!(
                got == r["json"],
                "content of {db}/{key} op {op}: NiFi has {got}, the page wrote {}",
                r["json"]
            );
        }
        if op == "add" {
            add_order
                .entry(db)
                .or_default()
                .push((seq, key.parse().unwrap_or(0)));
        }
    }
    // Both the key generator of the data store and the outbox's seq follow commit order, across
    // tabs: sorted by seq, the generated ids must increase too.
    for (db, mut v) in add_order {
        v.sort();
        ensure!(
            v.windows(2).all(|w| w[0].1 < w[1].1),
            "{db}: seq order disagrees with commit order: {v:?}"
        );
    }
    eprintln!(
        "wasm e2e: all {n} FlowFiles found in NiFi port {} with the expected attributes and content",
        port.name()
    );
    Ok(())
}

/// `cargo xtask wasm demo`: the bridge serving the demo, forwarding to a real NiFi.
pub(crate) fn demo(www: &Path, port_name: Option<String>, listen: &str) -> Result<()> {
    let rt = runtime()?;
    let nifi = rt
        .block_on(Nifi::shared())
        .map_err(|e| anyhow::anyhow!("the demo needs a NiFi ({e}); run `cargo xtask nifi up`"))?;
    let port_name = match port_name {
        Some(p) => p,
        None => rt.block_on(nifi.input_port("wasm-demo"))?.name().to_owned(),
    };
    let bridge = bridge_binary()?;
    eprintln!(
        "\ndemo: http://{listen}/  (FlowFiles go to NiFi input port {port_name:?} at {})\n      see them: cargo xtask nifi queue {port_name}\n",
        nifi.url()
    );
    run(Command::new(bridge)
        .args(["--listen", listen, "--static"])
        .arg(www)
        .args(["--nifi-url", nifi.url(), "--port-name", &port_name]))
}
