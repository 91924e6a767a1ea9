//! `cargo xtask wasm …`: the wasm client's toolchain, package, demo and browser tests.
//!
//! * `setup`: installs what is missing (wasm32 target, wasm-bindgen-cli at the version pinned in
//!   Cargo.lock, Debian chromium + chromium-driver, the e2e node packages); idempotent.
//! * `build`: `wasm-bindgen --target web` package + JS facade + demo in `target/wasm-www/`, the
//!   folder `s2s-bridge --static` serves.
//! * `test`: wasm-bindgen-test in headless Chromium, then the Playwright end-to-end run (page →
//!   bridge → real NiFi, every FlowFile checked in NiFi's queue).

mod e2e;
mod instrument;
mod package;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::test::{run as exec, workspace_root};

/// Wasm subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum WasmCmd {
    /// Install what the wasm build and browser tests need (idempotent; prints what it did).
    Setup,
    /// Build the JS package (wasm-bindgen --target web) and the demo into target/wasm-www.
    Build {
        /// Debug build (faster to compile, slower to run).
        #[arg(long)]
        debug: bool,
    },
    /// Run every browser test: wasm-bindgen-test in headless Chromium, then the e2e run against
    /// the bridge and a real NiFi.
    Test {
        /// Only the wasm-bindgen-test suite (no bridge, no NiFi).
        #[arg(long)]
        unit_only: bool,
        /// Records written by the throughput phase of the e2e run (at most 9000: NiFi's default
        /// back pressure stops a connection at 10 000 queued FlowFiles, and nothing drains it).
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=9000))]
        bench_records: u32,
        /// Run only this part (all of them by default).
        #[arg(long, value_enum)]
        only: Option<Part>,
    },
    /// Build (release) and pack the npm package into target/wasm-npm/s2s-wasm-VERSION.tgz.
    Package,
    /// Build, then serve the demo through the bridge forwarding to NiFi's input port PORT_NAME.
    Demo {
        /// Name of NiFi's root input port (created by the test kit when omitted).
        #[arg(long)]
        port_name: Option<String>,
        /// Listen address of the bridge.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
    },
}

/// A part of `cargo xtask wasm test`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Part {
    /// wasm-bindgen-test in headless Chromium.
    Unit,
    /// The demo page → bridge → NiFi run (e2e.mjs).
    E2e,
    /// Unmodified apps (plain IndexedDB, idb, Dexie) under `instrument()` → bridge → NiFi.
    Instrument,
    /// The npm tarball installed into a fresh app, built with Vite, run → bridge → NiFi.
    Package,
}

pub(crate) fn run(cmd: WasmCmd) -> Result<()> {
    match cmd {
        WasmCmd::Setup => setup::setup(),
        WasmCmd::Build { debug } => build(!debug).map(|_| ()),
        WasmCmd::Package => package::pack(&build(true)?).map(|_| ()),
        WasmCmd::Test {
            unit_only,
            bench_records,
            only,
        } => {
            setup::check()?;
            let only = if unit_only { Some(Part::Unit) } else { only };
            let part = |p: Part| only.is_none_or(|o| o == p);
            if part(Part::Unit) {
                unit_tests()?;
            }
            if only == Some(Part::Unit) {
                return Ok(());
            }
            let www = build(true)?;
            if part(Part::E2e) {
                e2e::run_e2e(&www, bench_records)?;
            }
            if part(Part::Instrument) {
                instrument::run_instrument(&www)?;
            }
            if part(Part::Package) {
                package::run_package_test(&www)?;
            }
            Ok(())
        }
        WasmCmd::Demo { port_name, listen } => {
            setup::check()?;
            let www = build(true)?;
            e2e::demo(&www, port_name, &listen)
        }
    }
}

/// Cargo's target dir (honours CARGO_TARGET_DIR, like cargo itself).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn unit_tests() -> Result<()> {
    exec(
        cargo()
            .args([
                "test",
                "-p",
                "s2s-wasm",
                "--target",
                "wasm32-unknown-unknown",
            ])
            // The runner's default 20 s is tight for the first start of Chromium on 2 busy cores.
            .env("WASM_BINDGEN_TEST_TIMEOUT", "120")
            .env("CHROMEDRIVER", "/usr/bin/chromedriver"),
    )
}

/// Builds the package and demo into `target/wasm-www`; returns the folder to serve.
fn build(release: bool) -> Result<PathBuf> {
    build_into(release, &workspace_root().join("target/wasm-www"))
}

/// Builds the package and demo into `www` (replacing what is there); returns `www`.
pub(crate) fn build_into(release: bool, www: &Path) -> Result<PathBuf> {
    let root = workspace_root();
    let mut args = vec![
        "build",
        "-p",
        "s2s-wasm",
        "--lib",
        "--target",
        "wasm32-unknown-unknown",
    ];
    if release {
        args.push("--release");
    }
    exec(cargo().args(&args))?;
    let wasm = target_dir()
        .join("wasm32-unknown-unknown")
        .join(if release { "release" } else { "debug" })
        .join("s2s_wasm.wasm");
    let www = www.to_path_buf();
    let pkg = www.join("pkg");
    if www.exists() {
        std::fs::remove_dir_all(&www).with_context(|| format!("cleaning {}", www.display()))?;
    }
    std::fs::create_dir_all(&pkg)?;
    exec(
        Command::new(setup::wasm_bindgen_bin("wasm-bindgen"))
            .args(["--target", "web", "--out-dir"])
            .arg(&pkg)
            .arg(&wasm),
    )?;
    for (from, to) in [
        ("wasm-client/js/index.js", "pkg/index.js"),
        ("wasm-client/js/index.d.ts", "pkg/index.d.ts"),
        ("wasm-client/js/instrument.js", "pkg/instrument.js"),
        ("wasm-client/demo/index.html", "index.html"),
        ("wasm-client/demo/app.js", "app.js"),
        ("wasm-client/demo/style.css", "style.css"),
    ] {
        std::fs::copy(root.join(from), www.join(to)).with_context(|| format!("copying {from}"))?;
    }
    let size = std::fs::metadata(pkg.join("s2s_wasm_bg.wasm"))?.len();
    if size == 0 {
        bail!("wasm-bindgen produced an empty module");
    }
    eprintln!(
        "wasm package + demo in {} (module {} KiB)",
        www.display(),
        size / 1024
    );
    Ok(www)
}
