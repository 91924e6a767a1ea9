//! The npm package: `cargo xtask wasm package` packs `target/wasm-www/pkg` (the wasm-bindgen
//! `--target web` output, the facade, the `instrument()` shim, types) with
//! `wasm-client/js/package.json` into `target/wasm-npm/s2s-wasm-<version>.tgz` (`npm pack`).
//! The package test installs that tarball into a fresh app (`wasm-client/e2e/vite-app`, copied to
//! `target/wasm-npm-app`, whose `node_modules` stays there as a cache), builds it with Vite, runs
//! it in headless Chromium against `s2s-bridge` and a real NiFi, and finds every record in NiFi.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::e2e::{bridge_binary, free_port, nifi, runtime};
use super::{setup, target_dir};
use crate::test::{run, workspace_root};

/// Packs the package built in `www/pkg`; returns the tarball.
pub(crate) fn pack(www: &Path) -> Result<PathBuf> {
    let root = workspace_root();
    let staging = target_dir().join("wasm-npm/package");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    for entry in std::fs::read_dir(www.join("pkg"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), staging.join(entry.file_name()))?;
    }
    std::fs::copy(
        root.join("wasm-client/README.md"),
        staging.join("README.md"),
    )?;
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(root.join("wasm-client/js/package.json"))?)?;
    manifest["version"] = env!("CARGO_PKG_VERSION").into();
    std::fs::write(
        staging.join("package.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    let dest = target_dir().join("wasm-npm");
    let tarball = dest.join(format!("s2s-wasm-{}.tgz", env!("CARGO_PKG_VERSION")));
    let _ = std::fs::remove_file(&tarball);
    run(Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(&dest)
        .current_dir(&staging))?;
    ensure!(tarball.exists(), "npm pack wrote no {}", tarball.display());
    eprintln!("npm package: {}", tarball.display());
    Ok(tarball)
}

/// Installs `tarball` into the fresh Vite app and builds it; returns its `dist` folder.
fn build_app(tarball: &Path) -> Result<PathBuf> {
    let template = workspace_root().join("wasm-client/e2e/vite-app");
    let app = target_dir().join("wasm-npm-app");
    std::fs::create_dir_all(&app)?;
    for f in ["package.json", "package-lock.json", "index.html", "main.js"] {
        if template.join(f).exists() {
            std::fs::copy(template.join(f), app.join(f)).with_context(|| format!("copying {f}"))?;
        }
    }
    let _ = std::fs::remove_dir_all(app.join("dist"));
    // Vite stays in target/wasm-npm-app/node_modules between runs; the tarball is installed
    // afresh each time (without touching package.json, which stays the template's).
    let npm = |args: &[&str]| {
        let mut c = Command::new("npm");
        c.args(args)
            .args(["--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&app);
        c
    };
    if !app.join("node_modules/vite/package.json").exists() {
        run(&mut npm(&["ci"]))?;
    }
    run(&mut npm(&[
        "install",
        "--no-save",
        &tarball.display().to_string(),
    ]))?;
    run(Command::new("node")
        .args([
            "node_modules/vite/bin/vite.js",
            "build",
            "--logLevel",
            "warn",
        ])
        .current_dir(&app))?;
    let dist = app.join("dist");
    let wasm = std::fs::read_dir(dist.join("assets"))
        .context("vite wrote no dist/assets")?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".wasm"));
    ensure!(
        wasm,
        "the Vite build did not emit the wasm module as an asset"
    );
    Ok(dist)
}

/// The package test: pack, install into a fresh app, Vite build, run against the bridge and NiFi.
pub(crate) fn run_package_test(www: &Path) -> Result<()> {
    let rt = runtime()?;
    let Some(nifi) = rt.block_on(nifi())? else {
        return Ok(());
    };
    let tarball = pack(www)?;
    let dist = build_app(&tarball)?;
    let bridge = bridge_binary()?;
    let port = rt.block_on(nifi.input_port("wasm-package"))?;
    let out = workspace_root().join("target/wasm-e2e");
    std::fs::create_dir_all(&out)?;
    let _ = std::fs::remove_file(out.join("package.json"));
    if let Err(e) = run(Command::new("node")
        .arg(setup::e2e_dir().join("package.mjs"))
        .env("BRIDGE_BIN", &bridge)
        .env("BRIDGE_PORT", free_port()?.to_string())
        .env("APP_DIST", &dist)
        .env("NIFI_URL", nifi.url())
        .env("NIFI_PORT_PACKAGE", port.name())
        .env("OUT_DIR", &out))
    {
        bail!(
            "{e:#}\n(bridge log: {}; NiFi port {} kept for inspection)",
            out.join("package-bridge.log").display(),
            port.name()
        );
    }
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("package.json"))?)?;
    ensure!(report["ok"] == true, "package.mjs did not finish: {report}");
    let records = report["records"].as_array().context("records")?;
    let n = records.len() as u64;
    rt.block_on(async {
        port.wait_for_queued(n, Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let count = port.queued_count().await?;
        ensure!(count == n, "NiFi queued {count} FlowFiles, the app wrote {n}");
        let got = port.queued_flowfiles().await?;
        for r in records {
            let key = r["id"].to_string();
            let ff = got
                .iter()
                .find(|ff| ff.attributes.get("idb.key") == Some(&key))
                .with_context(|| format!("record {key} not in NiFi"))?;
            ensure!(
                ff.attributes.get("idb.client.id").map(String::as_str) == report["clientId"].as_str()
                    && ff.attributes.get("app.name").map(String::as_str) == Some("vite-app")
                    && ff.attributes.get("idb.op").map(String::as_str) == Some("add"),
                "record {key}: attributes {:?}",
                ff.attributes
            );
            let content: Value = serde_json::from_slice(&ff.content)?;
            ensure!(&content == r, "record {key}: NiFi has {content}, the app wrote {r}");
        }
        port.delete().await?;
        eprintln!("wasm package: the npm tarball, installed into a fresh Vite app, delivered all {n} records to NiFi");
        anyhow::Ok(())
    })
}
