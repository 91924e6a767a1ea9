//! `cargo xtask bench [--quick]`: provisions what the benchmarks need (the shared NiFi through the
//! test kit, the Java reference client, release builds of `s2s-bench` and `s2s-bridge`), then runs
//! `s2s-bench run`, which writes `target/bench/report.md` and `report.json`.
//!
//! P4 (browser) runs first, here: it needs the wasm package, headless Chromium and Playwright
//! (`cargo xtask wasm setup`), and its results are handed to `s2s-bench run --p4-json`.
//!
//! The criterion micro-benchmarks of the codecs live in `s2s/proto/benches` (`cargo bench -p
//! s2s-proto`); `--criterion` runs them too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use nifi_testkit::Nifi;
use nifi_testkit::provision::{self, UpOptions};

use crate::test::{run, workspace_root};
use crate::wasm::{cargo, target_dir};

/// `cargo xtask bench` arguments.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Fewer, smaller runs: the whole bench in well under 10 minutes.
    #[arg(long)]
    quick: bool,
    /// Only these scenarios (p1, p2, p2nifi, p3, p4, p5, p6), comma-separated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also run the criterion codec benchmarks of s2s-proto (slow).
    #[arg(long)]
    criterion: bool,
}

pub(crate) fn bench(args: BenchArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    // Reuses the shared instance when it answers; provisions one otherwise.
    let up = rt.block_on(provision::up(&UpOptions::default()))?;
    eprintln!(
        "[bench] NiFi {} at {} ({})",
        up.instance.version,
        up.instance.url,
        if up.reused { "reused" } else { "started" }
    );
    let wants = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    if wants("p3") || wants("p6") {
        // P3's baseline is NiFi's ListenHTTP, from the standard NAR the test kit's minimal
        // NiFi does not carry. Not fatal: P3 then reports it as not measured.
        if let Err(e) = standard_nar(&up.instance) {
            eprintln!("[bench] no ListenHTTP for P3: {e:#}");
        }
    }
    nifi_testkit::java_reference::build().context("building the Java reference client")?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "s2s-bench",
        "-p",
        "nifi-s2s-bridge",
    ]))?;
    let release = target_dir().join("release");
    let bench_bin = release.join("s2s-bench");
    let bridge_bin = release.join("s2s-bridge");
    ensure!(bench_bin.exists(), "missing {}", bench_bin.display());
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let p4_json = if wants("p4") {
        match p4(&rt, &bridge_bin, &out, args.quick) {
            Ok(p) => Some(p),
            Err(e) => {
                // Reported as not measured (with this reason) instead of failing the other
                // scenarios: the browser toolchain is optional on a fresh clone.
                eprintln!("[bench] p4 (browser) not run: {e:#}");
                let p = out.join("p4.json");
                let failed = serde_json::json!({ "ok": false, "error": format!("{e:#}") });
                std::fs::write(&p, failed.to_string())?;
                Some(p)
            }
        }
    } else {
        None
    };
    let mut cmd = Command::new(&bench_bin);
    cmd.arg("run")
        .arg("--bridge-bin")
        .arg(&bridge_bin)
        .arg("--out")
        .arg(&out)
        .env("NIFI_URL", &up.instance.url);
    if let Some(p) = &p4_json {
        cmd.arg("--p4-json").arg(p);
    }
    if let Some(raw) = up.instance.raw_port {
        cmd.env("NIFI_RAW_PORT", raw.to_string());
    }
    if args.quick {
        cmd.arg("--quick");
    }
    if !args.only.is_empty() {
        cmd.arg("--only").arg(args.only.join(","));
    }
    run(&mut cmd)?;
    if args.criterion {
        run(cargo().args(["bench", "-p", "nifi-s2s-proto", "--bench", "codec"]))?;
    }
    Ok(())
}

/// P4: builds the wasm package and demo (`cargo xtask wasm build`), then runs
/// `wasm-client/e2e/bench.mjs` (one headless Chromium tab → release bridge → a fresh NiFi input
/// port) and checks that NiFi queued exactly every record the page reports delivered.
fn p4(rt: &tokio::runtime::Runtime, bridge_bin: &Path, out: &Path, quick: bool) -> Result<PathBuf> {
    let e2e = workspace_root().join("wasm-client/e2e");
    ensure!(
        e2e.join("node_modules/playwright-core").exists()
            && Path::new("/usr/bin/chromium").exists(),
        "needs Chromium and Playwright: run `cargo xtask wasm setup`"
    );
    // Not the shared `target/wasm-www`, so a concurrent `cargo xtask wasm test` is not disturbed;
    // built in-process (a nested `cargo xtask wasm build` rebuilt xtask itself: over a minute).
    let www = crate::wasm::build_into(true, &out.join("www"))?;
    let nifi = rt.block_on(Nifi::shared())?;
    let port = rt.block_on(async {
        let port = nifi.input_port("bench-p4").await?;
        // Several runs of thousands of records stay queued until the end.
        nifi.set_back_pressure(&port, 10_000_000).await?;
        anyhow::Ok(port)
    })?;
    let file = out.join("p4.json");
    let _ = std::fs::remove_file(&file);
    let bridge_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let (records, reps, windows, lat_secs) = if quick {
        ("8000", "2", "[1,4]", "4")
    } else {
        ("20000", "3", "[1,4,8]", "10")
    };
    // For experiments: S2S_BENCH_P4_WINDOWS='[1,4,16]' overrides the uploader windows compared.
    let windows = std::env::var("S2S_BENCH_P4_WINDOWS").unwrap_or_else(|_| windows.to_owned());
    let res = run(Command::new("node")
        .arg(e2e.join("bench.mjs"))
        .env("BRIDGE_BIN", bridge_bin)
        .env("BRIDGE_PORT", bridge_port.to_string())
        .env("STATIC_DIR", &www)
        .env("NIFI_URL", nifi.url())
        .env("NIFI_PORT", port.name())
        .env("OUT_FILE", &file)
        .env("RECORDS", records)
        .env("REPS", reps)
        .env("WINDOWS", &windows)
        .env("LAT_SECS", lat_secs));
    let check = res.and_then(|()| {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file)?)?;
        let total = v["total"].as_u64().context("p4.json: total")?;
        rt.block_on(async {
            let got = port.wait_for_queued(total, Duration::from_secs(60)).await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let settled = port.queued_count().await?;
            if got != total || settled != total {
                bail!("P4: NiFi queued {settled} FlowFiles, the page delivered {total}");
            }
            anyhow::Ok(())
        })
    });
    rt.block_on(port.delete()).ok();
    check?;
    Ok(file)
}

/// P3's ListenHTTP comes from the standard NAR: the test kit puts it into the NiFi's autoload
/// `extensions/` (no restart).
fn standard_nar(inst: &provision::Instance) -> Result<()> {
    provision::standard_nar(inst).context("loading nifi-standard-nar")
}
