//! `cargo xtask mirror`: the browser → NiFi → PostgreSQL mirror, end to end (issue 14).
//!
//! A real PostgreSQL (`nifi_testkit::postgres`, Debian's server) gets the mirror schema
//! (`tests/flows/idb-mirror.sql`); the mirror flow (`tests/flows/idb-mirror.json`) is deployed into
//! the shared test NiFi with its parameters pointing there (JDBC driver from Maven Central, NiFi's
//! DBCP connection pool); `wasm-client/e2e/mirror.mjs` drives two headless Chromium tabs through a
//! random history with an offline period, a reload, SIGKILLed bridges and forced re-sends, and
//! writes the browser's IndexedDB contents; then the flow is waited out and PostgreSQL's mirror
//! must equal them exactly (every store, key and deep-equal value).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nifi_testkit::Nifi;
use nifi_testkit::flow::{DeployedFlow, FlowDefinition};
use nifi_testkit::postgres::{self, Postgres};
use serde_json::Value;

use crate::test::{run, workspace_root};
use crate::wasm::{cargo, target_dir};

/// Options of `cargo xtask mirror`.
#[derive(clap::Args)]
pub(crate) struct MirrorArgs {
    /// Operations the two tabs perform (each a single write or a 2–4-write transaction).
    #[arg(long, default_value_t = 300)]
    ops: u32,
    /// Seed of the random history (printed; replays a run).
    #[arg(long)]
    seed: Option<u64>,
    /// Use an already built package folder (`cargo xtask wasm build` output) instead of building.
    #[arg(long)]
    www: Option<std::path::PathBuf>,
    /// `client`: the tabs write through the explicit API (`open`, `put`, `transaction`, …);
    /// `instrument`: an unmodified plain-IndexedDB app under `instrument()`.
    #[arg(long, default_value = "client", value_parser = ["client", "instrument"])]
    mode: String,
    /// Instead of the test: the demo page through the bridge into the mirror flow, in the
    /// foreground until Ctrl-C (PostgreSQL stops with it); prints how to look at the mirror.
    #[arg(long)]
    demo: bool,
    /// Listen address of the bridge with `--demo`.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Deploys the mirror flow against `pg` into `nifi` (standard NAR, DBCP pool, JDBC driver first).
pub(crate) async fn deploy_mirror(nifi: &Nifi, pg: &Postgres) -> Result<DeployedFlow> {
    nifi.install_nars(&[
        "org.apache.nifi:nifi-standard-services-api-nar",
        "org.apache.nifi:nifi-standard-nar",
    ])
    .await?;
    let source = postgres::install_dbcp(nifi).await?;
    eprintln!("mirror: DBCPConnectionPool {source:?}");
    let driver = postgres::jdbc_driver()?;
    let def = FlowDefinition::from_file(workspace_root().join("tests/flows/idb-mirror.json"))?
        .with_parameter("postgres.jdbc.url", &pg.jdbc_url())?
        .with_parameter("postgres.user", pg.user())?
        .with_parameter("postgres.password", pg.password())?
        .with_parameter("jdbc.driver.location", &driver.display().to_string())?;
    let flow = nifi.deploy_flow(&def, "idb-mirror").await?;
    flow.start().await?;
    Ok(flow)
}

/// FlowFiles queued inside the flow's group plus at its root input port.
async fn in_flight(nifi: &Nifi, flow: &DeployedFlow) -> Result<u64> {
    let status = nifi
        .api_get(&format!("/flow/process-groups/{}/status", flow.id()))
        .await?;
    let inside = status["processGroupStatus"]["aggregateSnapshot"]["flowFilesQueued"]
        .as_u64()
        .context("flowFilesQueued")?;
    Ok(inside + flow.input("in")?.queued_count().await?)
}

async fn wait_drained(nifi: &Nifi, flow: &DeployedFlow, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    let mut zeros = 0;
    loop {
        let n = in_flight(nifi, flow).await?;
        zeros = if n == 0 { zeros + 1 } else { 0 };
        if zeros >= 3 {
            return Ok(());
        }
        ensure!(
            t0.elapsed() < timeout,
            "{n} FlowFiles still in the mirror flow after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// FlowFiles the flow's group received (NiFi's 5-minute status window; the run is shorter).
async fn received(nifi: &Nifi, flow: &DeployedFlow) -> Result<u64> {
    let status = nifi
        .api_get(&format!("/flow/process-groups/{}/status", flow.id()))
        .await?;
    status["processGroupStatus"]["aggregateSnapshot"]["flowFilesIn"]
        .as_u64()
        .context("flowFilesIn")
}

pub(crate) fn mirror(args: MirrorArgs) -> Result<()> {
    let rt = runtime()?;
    let nifi = rt.block_on(Nifi::shared()).map_err(|e| {
        anyhow::anyhow!("the mirror run needs a NiFi ({e}); run `cargo xtask nifi up`")
    })?;
    let pg = Postgres::start("idb-mirror-e2e")?;
    pg.execute_file(&workspace_root().join("tests/flows/idb-mirror.sql"))?;
    let www = match args.www {
        Some(w) => w,
        None => crate::wasm::build_into(true, &target_dir().join("wasm-mirror-www"))?,
    };
    run(cargo().args(["build", "-p", "nifi-s2s-bridge", "--bin", "s2s-bridge"]))?;
    let bridge = target_dir().join("debug/s2s-bridge");
    let flow = rt.block_on(deploy_mirror(&nifi, &pg))?;
    if args.demo {
        eprintln!(
            "\nmirror demo: http://{}/  (FlowFiles → NiFi port {:?} → flow {} → PostgreSQL)\n      \
             the mirror: psql -h {} -p {} -U {} -d {} -c 'SELECT store, key, value, seq FROM idb_mirror WHERE NOT deleted'\n      \
             Ctrl-C stops the bridge and PostgreSQL; remove the flow with `cargo xtask nifi flow delete {}`\n",
            args.listen,
            flow.input("in")?.name(),
            flow.name(),
            pg.dir().display(),
            pg.port(),
            pg.user(),
            pg.database(),
            flow.name()
        );
        // The page's "PostgreSQL mirror" line: a count endpoint on its own loopback port, named
        // in mirror.json next to the page (the bridge only serves files; it knows no database).
        let counter = std::net::TcpListener::bind("127.0.0.1:0").context("count endpoint")?;
        let count_url = format!("http://{}/mirror/count", counter.local_addr()?);
        std::fs::write(
            www.join("mirror.json"),
            serde_json::json!({ "countUrl": count_url }).to_string(),
        )?;
        eprintln!(
            "      the page's mirror row count: {count_url}?db=todo-demo&store=todos&client=ID\n"
        );
        let mut child = Command::new(&bridge)
            .args(["--listen", &args.listen, "--static"])
            .arg(&www)
            .args([
                "--nifi-url",
                nifi.url(),
                "--port-name",
                flow.input("in")?.name(),
            ])
            .spawn()
            .context("starting s2s-bridge")?;
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| serve_count(&counter, &pg, &stop));
            // Ctrl-C reaches the bridge too (same process group); then PostgreSQL is stopped here.
            let r = rt.block_on(tokio::signal::ctrl_c());
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            r
        })?;
        let _ = child.wait();
        eprintln!("mirror demo: stopping PostgreSQL");
        return Ok(());
    }
    let result = drive_and_compare(
        &rt, &nifi, &flow, &pg, &www, &bridge, args.ops, args.seed, &args.mode,
    );
    if result.is_ok() {
        rt.block_on(flow.delete())?;
    } else {
        eprintln!(
            "mirror: flow {} kept for inspection (cargo xtask nifi flow bulletins {})",
            flow.name(),
            flow.name()
        );
    }
    result
}

/// `GET /mirror/count?db=D&store=S&client=C` → `{"rows": N}`: the live rows (not tombstones) of
/// that client's store in `idb_mirror`, for the demo page (any origin may read a count). Values
/// are limited to `[A-Za-z0-9._-]`, at most 128 bytes, so they go into the SQL literally.
fn serve_count(
    listener: &std::net::TcpListener,
    pg: &Postgres,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Ok((stream, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut line = String::new();
        let mut reader = BufReader::new(Read::take(&stream, 8192));
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("");
        let (status, body) = match count_rows(target, pg) {
            Ok(n) => ("200 OK", serde_json::json!({ "rows": n }).to_string()),
            Err(e) => (
                "400 Bad Request",
                serde_json::json!({ "error": format!("{e:#}") }).to_string(),
            ),
        };
        let _ = write!(
            &stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\naccess-control-allow-origin: *\r\n\
             cache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

fn count_rows(target: &str, pg: &Postgres) -> Result<u64> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    ensure!(path == "/mirror/count", "unknown path {path:?}");
    let param = |name: &str| -> Result<&str> {
        let v = query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .with_context(|| format!("missing parameter {name}"))?;
        ensure!(
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "parameter {name}: only [A-Za-z0-9._-], at most 128 bytes"
        );
        Ok(v)
    };
    let (db, store, client) = (param("db")?, param("store")?, param("client")?);
    Ok(pg
        .query_scalar(&format!(
            "SELECT count(*) FROM idb_mirror WHERE NOT deleted AND db_name = '{db}' \
             AND store = '{store}' AND client_id = '{client}'"
        ))?
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

#[allow(clippy::too_many_arguments)]
fn drive_and_compare(
    rt: &tokio::runtime::Runtime,
    nifi: &Nifi,
    flow: &DeployedFlow,
    pg: &Postgres,
    www: &Path,
    bridge: &Path,
    ops: u32,
    seed: Option<u64>,
    mode: &str,
) -> Result<()> {
    let out = target_dir().join("wasm-mirror");
    std::fs::create_dir_all(&out)?;
    let report_file = out.join(format!("mirror-{mode}.json"));
    let _ = std::fs::remove_file(&report_file);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::from(d.subsec_nanos()) % 1_000_000)
    });
    let t0 = Instant::now();
    run(Command::new("node")
        .arg(workspace_root().join("wasm-client/e2e/mirror.mjs"))
        .env("BRIDGE_BIN", bridge)
        .env("BRIDGE_PORT", port.to_string())
        .env("STATIC_DIR", www)
        .env("NIFI_URL", nifi.url())
        .env("NIFI_PORT", flow.input("in")?.name())
        .env("OUT_DIR", &out)
        .env("MIRROR_SEED", seed.to_string())
        .env("MIRROR_OPS", ops.to_string())
        .env("MIRROR_MODE", mode))
    .with_context(|| {
        format!(
            "mirror.mjs (bridge log {})",
            out.join("mirror-bridge.log").display()
        )
    })?;
    let report: Value = serde_json::from_slice(
        &std::fs::read(&report_file).context("mirror.mjs wrote no report")?,
    )?;
    ensure!(report["ok"] == true, "mirror.mjs did not finish: {report}");
    rt.block_on(wait_drained(nifi, flow, Duration::from_secs(180)))?;
    let failed = rt.block_on(flow.output("failed")?.listing())?;
    if failed.total > 0 {
        let bulletins = rt.block_on(flow.bulletins())?;
        bail!(
            "{} FlowFiles went to the flow's 'failed' port (first: {:?}); bulletins: {bulletins:?}",
            failed.total,
            failed.flowfiles.first().map(|f| &f.attributes)
        );
    }
    rt.block_on(flow.check_bulletins())?;
    let client_id = report["clientId"].as_str().context("clientId")?;
    let database = report["database"].as_str().context("database")?;
    let rows = pg.query_json(&format!(
        "SELECT store, key, value FROM idb_mirror WHERE NOT deleted AND client_id = '{}' AND db_name = '{}'",
        client_id.replace('\'', "''"),
        database.replace('\'', "''")
    ))?;
    let mut got: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for r in rows.as_array().context("rows")? {
        got.entry(r["store"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .insert(
                r["key"].as_str().unwrap_or_default().to_owned(),
                r["value"].clone(),
            );
    }
    let mut want: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for (store, recs) in report["stores"].as_object().context("stores")? {
        for (k, v) in recs.as_object().context("store records")? {
            want.entry(store.clone())
                .or_default()
                .insert(k.clone(), v.clone());
        }
    }
    want.retain(|_, m| !m.is_empty());
    let live: usize = want.values().map(BTreeMap::len).sum();
    for (store, recs) in &want {
        for (k, v) in recs {
            let g = got.get(store).and_then(|m| m.get(k));
            ensure!(
                g == Some(v),
                "mirror differs at {store}/{k}: PostgreSQL has {g:?}, the browser {v}"
            );
        }
    }
    for (store, recs) in &got {
        for k in recs.keys() {
            ensure!(
                want.get(store).is_some_and(|m| m.contains_key(k)),
                "PostgreSQL mirrors {store}/{k}, which the browser no longer has"
            );
        }
    }
    let changes: u64 = pg
        .query_scalar(&format!(
            "SELECT coalesce(max(seq), 0) FROM (SELECT seq FROM idb_mirror WHERE client_id = '{0}' \
             UNION ALL SELECT seq FROM idb_mirror_clear WHERE client_id = '{0}') s",
            client_id.replace('\'', "''")
        ))?
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    let into_flow = rt.block_on(received(nifi, flow))?;
    let c = &report["counts"];
    eprintln!(
        "mirror ({mode}, seed {seed}): PostgreSQL = the browser's IndexedDB: {live} records in {} stores, all equal. \
         {} operations ({} writes, {} transactions, {} failed as IndexedDB refused them; by type {}), \
         {} offline, {} reload(s), bridge SIGKILLed {} times, {} rows forced to re-send; \
         highest seq applied {changes}, FlowFiles into the flow {into_flow} → {} duplicates absorbed; {:.0}s",
        want.len(),
        c["ops"],
        c["writes"],
        c["transactions"],
        c["failed"],
        c["byType"],
        c["offlineOps"],
        c["reloads"],
        c["bridgeKills"],
        c["forcedResends"],
        into_flow.saturating_sub(changes),
        t0.elapsed().as_secs_f64()
    );
    ensure!(
        live > 0,
        "the history left no records to compare (try another seed)"
    );
    Ok(())
}
