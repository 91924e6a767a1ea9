//! `s2s-bench`: the scenarios of `cargo xtask bench` (issue 7). `run` executes them and writes
//! `report.md`/`report.json`; `p1-send` is the child process the P1/P3 contenders run in, so its
//! CPU is measured exactly like the Java client's (a waited-for child of this process).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use s2s::{Client, FlowFile};

mod listenhttp;
mod report;
mod scenarios;

#[derive(Parser)]
#[command(
    name = "s2s-bench",
    about = "nifi-s2s benchmarks against same-run baselines"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios and write the report.
    Run(scenarios::RunArgs),
    /// (internal) Send COUNT FlowFiles of SIZE bytes, BATCH per transaction; print one JSON line.
    #[command(hide = true)]
    P1Send(P1SendArgs),
    /// (internal) Send FILE as COUNT FlowFiles, streamed from disk (`Source::file` through
    /// `Client::send_sources`, what `s2s send FILE` does); print one JSON line.
    #[command(hide = true)]
    P2SendFile(P2SendFileArgs),
    /// HTTP load by hand (P3a's load generator): CONNS keep-alive connections POSTing a BYTES-long
    /// body to http://ADDR/PATH back to back for SECS; prints the answers by status and the rate.
    /// For profiling the bridge or ListenHTTP outside the full bench.
    Load(LoadArgs),
}

#[derive(clap::Args, Debug, Clone)]
struct LoadArgs {
    /// `127.0.0.1:PORT`.
    #[arg(long)]
    addr: std::net::SocketAddr,
    #[arg(long, default_value = "/contentListener")]
    path: String,
    #[arg(long, default_value_t = 16)]
    conns: usize,
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Body size in bytes (the P3 record: 1 KiB of letters).
    #[arg(long, default_value_t = 1024)]
    bytes: usize,
}

#[derive(clap::Args, Debug, Clone)]
struct P2SendFileArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    port: String,
    #[arg(long)]
    file: PathBuf,
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// No peer discovery (the bench sink answers only the controller request).
    #[arg(long)]
    single_node: bool,
}

#[derive(clap::Args, Debug, Clone)]
struct P1SendArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    port: String,
    #[arg(long)]
    count: u64,
    #[arg(long)]
    size: usize,
    #[arg(long)]
    batch: u64,
}

/// What `p1-send` prints.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ChildReport {
    count: u64,
    seconds: f64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Run(args) => rt.block_on(scenarios::run(args)),
        Cmd::P1Send(args) => rt.block_on(p1_send(args)),
        Cmd::P2SendFile(args) => rt.block_on(p2_send_file(args)),
        Cmd::Load(args) => rt.block_on(load(args)),
    }
}

async fn load(a: LoadArgs) -> anyhow::Result<()> {
    let body: Vec<u8> = (0..a.bytes).map(|i| b'a' + (i % 26) as u8).collect();
    let r = s2s_bench::loadgen::run(s2s_bench::loadgen::Load {
        addr: a.addr,
        path: a.path,
        headers: vec![("content-type".into(), "application/octet-stream".into())],
        body: body.into(),
        connections: a.conns,
        duration: Duration::from_secs_f64(a.secs),
    })
    .await;
    println!(
        "{} conns, {:.1} s: statuses {:?}, {} errors{}; {:.0} 2xx/s",
        a.conns,
        r.secs,
        r.statuses,
        r.errors,
        r.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        r.rate()
    );
    Ok(())
}

/// Like `s2s send FILE` (client built before the clock starts, discovery inside the timed part,
/// as the CLI and the Java tool time themselves), without the CLI's progress bar.
async fn p2_send_file(a: P2SendFileArgs) -> anyhow::Result<()> {
    let client = Client::builder(&a.url).single_node(a.single_node).build()?;
    let sources: Vec<s2s::Source> = (0..a.count)
        .map(|i| {
            s2s::Source::file(
                vec![
                    ("filename".to_owned(), "p2-file".to_owned()),
                    ("ref.index".to_owned(), i.to_string()),
                ],
                &a.file,
            )
        })
        .collect();
    let start = Instant::now();
    let s = client.send_sources(&a.port, sources, None).await?;
    let seconds = start.elapsed().as_secs_f64();
    client.close().await;
    if s.flowfiles != a.count {
        bail!("committed {} FlowFiles of {}", s.flowfiles, a.count);
    }
    println!(
        "{}",
        serde_json::to_string(&ChildReport {
            count: a.count,
            seconds
        })?
    );
    Ok(())
}

/// Same content and attributes as the Java reference client (`nifi_testkit::java_reference`), and
/// like it: client built before the clock starts, discovery inside the timed part.
async fn p1_send(a: P1SendArgs) -> anyhow::Result<()> {
    let client = Client::builder(&a.url).build()?;
    let start = Instant::now();
    let mut i = 0u64;
    while i < a.count {
        let mut tx = client.send_transaction(&a.port).await?;
        let end = (i + a.batch).min(a.count);
        while i < end {
            let content: Vec<u8> = (0..a.size as u64)
                .map(|j| nifi_testkit::java_reference::content_byte(i, j))
                .collect();
            tx.send(FlowFile::new(content).with_attribute("ref.index", i.to_string()))
                .await?;
            i += 1;
        }
        tx.commit().await?;
    }
    let seconds = start.elapsed().as_secs_f64();
    client.close().await;
    println!(
        "{}",
        serde_json::to_string(&ChildReport {
            count: a.count,
            seconds
        })?
    );
    Ok(())
}

/// Runs this binary's `p1-send` as a child; returns its report and its CPU seconds.
fn run_p1_child(a: &P1SendArgs) -> anyhow::Result<(ChildReport, f64)> {
    let exe = std::env::current_exe()?;
    let cpu0 = s2s_bench::proc::children_cpu_secs()?;
    let out = Command::new(exe)
        .args(["p1-send", "--url", &a.url, "--port", &a.port])
        .args(["--count", &a.count.to_string()])
        .args(["--size", &a.size.to_string()])
        .args(["--batch", &a.batch.to_string()])
        .stdin(Stdio::null())
        .output()
        .context("running p1-send")?;
    let cpu = s2s_bench::proc::children_cpu_secs()? - cpu0;
    if !out.status.success() {
        bail!(
            "p1-send failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let report: ChildReport = serde_json::from_str(line.trim())
        .with_context(|| format!("bad p1-send output: {line:.300}"))?;
    Ok((report, cpu))
}

/// Waits until `check` is true or `timeout` passes.
async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn out_dir_default() -> PathBuf {
    nifi_testkit::provision::workspace_root()
        .join("target")
        .join("bench")
}
