//! `cargo xtask bench [--quick]`: provisions what the benchmarks need (the shared NiFi through the
//! test kit, the Java reference client, release builds of `s2s-bench` and `s2s-bridge`), then runs
//! `s2s-bench run`, which writes `target/bench/report.md` and `report.json`.
//!
//! The criterion micro-benchmarks of the codecs live in `s2s/proto/benches` (`cargo bench -p
//! s2s-proto`); `--criterion` runs them too.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use nifi_testkit::provision::{self, UpOptions};

use crate::test::{run, workspace_root};
use crate::wasm::{cargo, target_dir};

/// `cargo xtask bench` arguments.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Fewer, smaller runs: the whole bench in well under 10 minutes.
    #[arg(long)]
    quick: bool,
    /// Only these scenarios (p1, p2, p2nifi, p3, p5), comma-separated.
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
    nifi_testkit::java_reference::build().context("building the Java reference client")?;
    run(cargo().args(["build", "--release", "-p", "s2s-bench", "-p", "s2s-bridge"]))?;
    let release = target_dir().join("release");
    let bench_bin = release.join("s2s-bench");
    let bridge_bin = release.join("s2s-bridge");
    ensure!(bench_bin.exists(), "missing {}", bench_bin.display());
    let mut cmd = Command::new(&bench_bin);
    cmd.arg("run")
        .arg("--bridge-bin")
        .arg(&bridge_bin)
        .arg("--out")
        .arg(workspace_root().join("target/bench"))
        .env("NIFI_URL", &up.instance.url);
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
        run(cargo().args(["bench", "-p", "s2s-proto", "--bench", "codec"]))?;
    }
    Ok(())
}
