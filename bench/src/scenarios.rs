//! The scenarios P1–P5 of issue 7. Contender and baseline alternate run by run (A B, B A, …) so a
//! drift of the shared machine hits both alike.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use nifi_testkit::Nifi;
use nifi_testkit::java_reference::{self, SendSpec, Transport};
use s2s::{Client, FlowFile};
use s2s_bench::proc::{children_cpu_secs, rss_kib};
use s2s_bench::sink::{PORT_NAME, Sink};

use crate::report::{Better, Machine, RatioTarget, Report, Row};
use crate::{P1SendArgs, run_p1_child, wait_until};

mod p2file;
mod p3;
mod p6bridge;

/// `s2s-bench run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Fewer, smaller runs (whole bench in a few minutes).
    #[arg(long)]
    quick: bool,
    /// Output directory [default: <workspace>/target/bench].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The `s2s-bridge` binary (for P3 and P5); those scenarios are skipped without it.
    #[arg(long)]
    bridge_bin: Option<PathBuf>,
    /// Only these scenarios (p1, p2, p2nifi, p2file, p2filenifi, p3, p5, p6); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The command line to record in the report.
    #[arg(long, default_value = "cargo xtask bench")]
    command: String,
    /// Results of the browser scenario P4 (`wasm-client/e2e/bench.mjs`, run by `cargo xtask
    /// bench` before this command), merged into the report.
    #[arg(long)]
    p4_json: Option<PathBuf>,
}

const MIB: f64 = 1024.0 * 1024.0;

struct Ctx {
    quick: bool,
    reps: usize,
    rows: Vec<Row>,
    not_measured: Vec<(String, String)>,
    /// The big file of P2 from a file, shared by its scenarios; removed when the run ends.
    big_file: Option<p2file::BigFile>,
}

impl Ctx {
    fn wants(args: &RunArgs, s: &str) -> bool {
        args.only.is_empty() || args.only.iter().any(|o| o.eq_ignore_ascii_case(s))
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_utc = utc_now();
    let out = args.out.clone().unwrap_or_else(crate::out_dir_default);
    let mut ctx = Ctx {
        quick: args.quick,
        reps: if args.quick { 3 } else { 5 },
        rows: Vec::new(),
        not_measured: Vec::new(),
        big_file: None,
    };
    let nifi = Nifi::shared()
        .await
        .context("no NiFi: run `cargo xtask nifi up` (cargo xtask bench does)")?;
    let steps: &[(&str, bool)] = &[
        ("p2", true),
        ("p2file", true),
        ("p1", true),
        ("p2nifi", true),
        ("p2filenifi", true),
        ("p3", args.bridge_bin.is_some()),
        ("p5", args.bridge_bin.is_some()),
        ("p6", args.bridge_bin.is_some()),
    ];
    for &(name, possible) in steps {
        if !Ctx::wants(&args, name) {
            continue;
        }
        if !possible {
            ctx.not_measured
                .push((name.to_uppercase(), "no --bridge-bin given".into()));
            continue;
        }
        eprintln!("[bench] {name} …");
        let t = Instant::now();
        let res = match name {
            "p1" => p1(&mut ctx, &nifi).await,
            "p2" => p2_sink(&mut ctx).await,
            "p2nifi" => p2_nifi(&mut ctx, &nifi).await,
            "p2file" => p2file::p2file_sink(&mut ctx).await,
            "p2filenifi" => p2file::p2file_nifi(&mut ctx, &nifi).await,
            "p3" => p3::p3(&mut ctx, &nifi, args.bridge_bin.as_ref().expect("checked")).await,
            "p5" => p5(&mut ctx, args.bridge_bin.as_ref().expect("checked"), &out).await,
            "p6" => p6bridge::p6(&mut ctx, &nifi, args.bridge_bin.as_ref().expect("checked")).await,
            _ => unreachable!("fixed list"),
        };
        if let Err(e) = res {
            eprintln!("[bench] {name} failed: {e:#}");
            ctx.not_measured
                .push((name.to_uppercase(), format!("failed: {e:#}")));
        }
        eprintln!("[bench] {name} took {:.0} s", t.elapsed().as_secs_f64());
    }
    // Removes P2's big file (and its temporary directory).
    ctx.big_file = None;
    if Ctx::wants(&args, "p4") {
        match &args.p4_json {
            Some(path) => {
                if let Err(e) = p4(&mut ctx, path) {
                    ctx.not_measured
                        .push(("P4".into(), format!("failed: {e:#}")));
                }
            }
            None => ctx.not_measured.push((
                "P4 (browser: wasm → bridge → NiFi)".into(),
                "run by `cargo xtask bench` (headless Chromium, wasm-client/e2e/bench.mjs); no --p4-json given"
                    .into(),
            )),
        }
    }
    let report = Report {
        command: args.command.clone() + if args.quick { " --quick" } else { "" },
        quick: args.quick,
        started_utc,
        seconds: started.elapsed().as_secs_f64(),
        machine: Machine::probe(),
        nifi_version: nifi.version().to_owned(),
        rows: ctx.rows,
        not_measured: ctx.not_measured,
    };
    report.write(&out)?;
    println!("{}", report.to_markdown());
    eprintln!("[bench] wrote {}/report.md and report.json", out.display());
    Ok(())
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Contender first on even runs, baseline first on odd ones.
fn order(rep: usize) -> [bool; 2] {
    if rep.is_multiple_of(2) {
        [true, false]
    } else {
        [false, true]
    }
}

// ---- P1: small FlowFiles into NiFi, s2s vs the Java client ---------------------------------------

async fn p1(ctx: &mut Ctx, nifi: &Nifi) -> anyhow::Result<()> {
    let count: u64 = if ctx.quick { 20_000 } else { 100_000 };
    let (size, batch) = (1024usize, 1000u64);
    let port = nifi.input_port("bench-p1").await?;
    nifi.set_back_pressure(&port, 10_000_000).await?;
    let classpath_ready = tokio::task::spawn_blocking(java_reference::build).await?;
    classpath_ready.context("building the Java reference client")?;
    let (mut s_rate, mut s_cpu, mut j_rate, mut j_cpu) = (vec![], vec![], vec![], vec![]);
    for rep in 0..ctx.reps {
        for contender in order(rep) {
            let (secs, cpu) = if contender {
                let a = P1SendArgs {
                    url: nifi.url().to_owned(),
                    port: port.name().to_owned(),
                    count,
                    size,
                    batch,
                };
                let (r, cpu) = tokio::task::spawn_blocking(move || run_p1_child(&a)).await??;
                (r.seconds, cpu)
            } else {
                let spec = SendSpec {
                    url: nifi.url().to_owned(),
                    port: port.name().to_owned(),
                    transport: Transport::Raw,
                    count,
                    size,
                    batch: batch as u32,
                    compress: false,
                    attributes: vec![],
                };
                let (r, cpu) = tokio::task::spawn_blocking(move || {
                    let c0 = children_cpu_secs()?;
                    let r = java_reference::send(&spec)?;
                    anyhow::Ok((r, children_cpu_secs()? - c0))
                })
                .await??;
                (r.seconds, cpu)
            };
            // Every FlowFile must be in NiFi's queue, or the run does not count.
            let queued = port.queued_count().await?;
            if queued != count {
                bail!("P1: {queued} FlowFiles queued after sending {count}");
            }
            port.drain().await?;
            let who = if contender { "s2s" } else { "java" };
            eprintln!(
                "[bench] p1 {who}: {:.0} FlowFiles/s, {:.2} CPU-s",
                count as f64 / secs,
                cpu
            );
            let per100k = cpu * 100_000.0 / count as f64;
            if contender {
                s_rate.push(count as f64 / secs);
                s_cpu.push(per100k);
            } else {
                j_rate.push(count as f64 / secs);
                j_cpu.push(per100k);
            }
        }
    }
    port.delete().await.ok();
    let what = format!("{count} × 1 KiB FlowFiles, {batch}/transaction, RAW, same port");
    ctx.rows.push(
        Row::new(
            "P1 small FlowFiles → NiFi",
            "throughput",
            "FlowFiles/s",
            Better::Higher,
            ("s2s client", s_rate),
            ("Java S2S client 1.28.1", j_rate),
            RatioTarget::AtLeast(2.0),
        )
        .note(format!(
            "{what}; timed from the first transaction (client built, discovery inside) to the last commit, as the Java tool times itself"
        )),
    );
    ctx.rows.push(
        Row::new(
            "P1 small FlowFiles → NiFi",
            "client CPU per 100k FlowFiles",
            "CPU-s",
            Better::Lower,
            ("s2s client", s_cpu),
            ("Java S2S client 1.28.1", j_cpu),
            RatioTarget::AtMost(1.0 / 3.0),
        )
        .note(
            "user+system CPU of the whole child process (from /proc/self/stat cutime+cstime), process start included: the JVM's start-up and JIT are part of what a Java sender costs",
        ),
    );
    Ok(())
}

// ---- P2: 64 MiB FlowFiles into the in-bench sink vs a TCP byte pump ------------------------------

fn big_content(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

async fn p2_sink(ctx: &mut Ctx) -> anyhow::Result<()> {
    let size = 64usize << 20;
    let count = if ctx.quick { 4u64 } else { 8 };
    let total = size as u64 * count;
    let content = big_content(size);
    let sink = Sink::start().await?;
    let client = Client::builder(&sink.url).single_node(true).build()?;
    // Warm-up: discovery, the pooled connection and first-touch page faults of the sink's
    // buffer, so runs measure transfer only.
    client
        .send_batch(PORT_NAME, vec![FlowFile::new(content.clone())])
        .await?;
    s2s_bench::pump::pump(size as u64).await?;
    let (mut s2s, mut pump) = (vec![], vec![]);
    for rep in 0..ctx.reps {
        for contender in order(rep) {
            let secs = if contender {
                let before = sink
                    .counters
                    .bytes
                    .load(std::sync::atomic::Ordering::Relaxed);
                let ffs: Vec<FlowFile> = (0..count)
                    .map(|i| FlowFile::new(content.clone()).with_attribute("i", i.to_string()))
                    .collect();
                let t = Instant::now();
                client.send_batch(PORT_NAME, ffs).await?;
                let secs = t.elapsed().as_secs_f64();
                let got = sink
                    .counters
                    .bytes
                    .load(std::sync::atomic::Ordering::Relaxed)
                    - before;
                if got != total {
                    bail!("P2: the sink confirmed {got} bytes of {total}");
                }
                secs
            } else {
                s2s_bench::pump::pump(total).await?.as_secs_f64()
            };
            let mbs = total as f64 / MIB / secs;
            eprintln!(
                "[bench] p2 {}: {mbs:.0} MiB/s",
                if contender { "s2s→sink" } else { "pump" }
            );
            if contender { &mut s2s } else { &mut pump }.push(mbs);
        }
    }
    client.close().await;
    ctx.rows.push(
        Row::new(
            "P2 64 MiB FlowFiles → in-bench S2S sink",
            "throughput",
            "MiB/s",
            Better::Higher,
            ("s2s client → sink", s2s),
            ("plain TCP byte pump (loopback)", pump),
            RatioTarget::AtLeast(0.8),
        )
        .note(format!(
            "{count} × 64 MiB per run on one pooled connection; the sink decodes every FlowFile with s2s-proto's FlowFileDecoder and confirms with the transaction CRC; client and sink share the bench process (2 tokio workers), as pump writer and reader do"
        )),
    );
    Ok(())
}

async fn p2_nifi(ctx: &mut Ctx, nifi: &Nifi) -> anyhow::Result<()> {
    let size = 64usize << 20;
    let count = if ctx.quick { 2u64 } else { 4 };
    let reps = if ctx.quick { 2 } else { 3 };
    let total = size as u64 * count;
    let port = nifi.input_port("bench-p2").await?;
    let client = Client::builder(nifi.url()).build()?;
    let content = big_content(size);
    let (mut s2s, mut java) = (vec![], vec![]);
    for rep in 0..reps {
        for contender in order(rep) {
            let secs = if contender {
                let ffs: Vec<FlowFile> = (0..count)
                    .map(|i| FlowFile::new(content.clone()).with_attribute("i", i.to_string()))
                    .collect();
                let t = Instant::now();
                client.send_batch(port.name(), ffs).await?;
                t.elapsed().as_secs_f64()
            } else {
                let spec = SendSpec {
                    url: nifi.url().to_owned(),
                    port: port.name().to_owned(),
                    transport: Transport::Raw,
                    count,
                    size,
                    batch: 1,
                    compress: false,
                    attributes: vec![],
                };
                tokio::task::spawn_blocking(move || java_reference::send(&spec))
                    .await??
                    .seconds
            };
            let queued = port.queued_count().await?;
            if queued != count {
                bail!("P2/NiFi: {queued} FlowFiles queued after sending {count}");
            }
            port.drain().await?;
            let mbs = total as f64 / MIB / secs;
            eprintln!(
                "[bench] p2nifi {}: {mbs:.0} MiB/s",
                if contender { "s2s" } else { "java" }
            );
            if contender { &mut s2s } else { &mut java }.push(mbs);
        }
    }
    client.close().await;
    port.delete().await.ok();
    ctx.rows.push(
        Row::new(
            "P2 64 MiB FlowFiles → NiFi",
            "throughput",
            "MiB/s",
            Better::Higher,
            ("s2s client", s2s),
            ("Java S2S client 1.28.1", java),
            RatioTarget::None,
        )
        .note(format!(
            "{count} × 64 MiB per run, one FlowFile per transaction for Java, send_batch defaults for s2s; bound by NiFi's content repository on this disk"
        )),
    );
    Ok(())
}

// ---- bridge helpers --------------------------------------------------------------------------------

struct BridgeProc {
    child: Child,
    base: String,
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_bridge(
    bin: &PathBuf,
    nifi_url: &str,
    port_name: &str,
    ack: &str,
    spool: &std::path::Path,
) -> anyhow::Result<BridgeProc> {
    start_bridge_with(bin, nifi_url, port_name, ack, spool, &[]).await
}

/// [`start_bridge`] with more command-line arguments.
async fn start_bridge_with(
    bin: &PathBuf,
    nifi_url: &str,
    port_name: &str,
    ack: &str,
    spool: &std::path::Path,
    extra: &[&str],
) -> anyhow::Result<BridgeProc> {
    let listen = free_port()?;
    std::fs::create_dir_all(spool)?;
    let child = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args([
            "--nifi-url",
            nifi_url,
            "--port-name",
            port_name,
            "--ack",
            ack,
        ])
        .arg("--spool-dir")
        .arg(spool)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let b = BridgeProc {
        child,
        base: format!("http://127.0.0.1:{listen}"),
    };
    let http = reqwest::Client::new();
    let url = format!("{}/healthz", b.base);
    let up = wait_until(Duration::from_secs(20), || {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    if !up {
        bail!("the bridge did not answer {url}");
    }
    Ok(b)
}

/// A JSON body of `n` records of 1 KiB text content, indices from `first`.
fn json_records(first: u64, n: u64) -> Bytes {
    let content: String = (0..1024).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let items: Vec<serde_json::Value> = (first..first + n)
        .map(|i| {
            serde_json::json!({ "attributes": { "ref.index": i.to_string() }, "content": content })
        })
        .collect();
    Bytes::from(serde_json::to_vec(&items).expect("plain JSON"))
}

// ---- P4: browser → bridge → NiFi, from wasm-client/e2e/bench.mjs -------------------------------

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct P4Run {
    window: u32,
    upload_per_sec: f64,
    write_per_sec: f64,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct P4Latency {
    window: u32,
    records: u64,
    offered_per_sec: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct P4Instrument {
    plain_per_sec: f64,
    instrumented_per_sec: f64,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct P4Out {
    ok: Option<bool>,
    /// Why the browser run did not happen (written by `cargo xtask bench`).
    error: Option<String>,
    records: u64,
    windows: Vec<u32>,
    runs: Vec<P4Run>,
    latency: Vec<P4Latency>,
    /// Writes/s of one plain-IndexedDB app without and with `instrument()`, per rep.
    instrument: Vec<P4Instrument>,
}

fn p4(ctx: &mut Ctx, path: &std::path::Path) -> anyhow::Result<()> {
    let out: P4Out = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    if out.ok != Some(true) {
        match out.error {
            Some(e) => bail!("{e}"),
            None => bail!(
                "the browser run did not finish (see {}.bridge.log and its stderr)",
                path.display()
            ),
        }
    }
    // The pipelined uploader (largest window) against the one-batch-at-a-time one (window 1).
    let best = *out.windows.iter().max().context("no windows")?;
    let rates = |w: u32| -> Vec<f64> {
        out.runs
            .iter()
            .filter(|r| r.window == w)
            .map(|r| r.upload_per_sec)
            .collect()
    };
    let writes: Vec<f64> = out.runs.iter().map(|r| r.write_per_sec).collect();
    let writes = s2s_bench::stats::Summary::of(&writes);
    let mut row = Row::new(
        "P4 browser tab → bridge → NiFi",
        "upload throughput (outbox → NiFi queue)",
        "records/s",
        Better::Higher,
        (&format!("s2s-wasm, {best} batches in flight"), rates(best)),
        ("same, 1 batch in flight (previous uploader)", rates(1)),
        RatioTarget::None,
    )
    .note(format!(
        "{} records (≈150-byte JSON) per run, already in the outbox, uploaded by one headless Chromium tab through a release s2s-bridge (ack after NiFi's commit) to one NiFi input port; timed from opening the client to the last delivered event; batches of up to 1000",
        out.records
    ));
    if let Some(w) = writes {
        row = row.note(format!(
            "IndexedDB writes alone (transactions of 500, no upload): {:.0} records/s median ({:.0}–{:.0}): a tab that writes and uploads at once is bound by this",
            w.median, w.min, w.max
        ));
    }
    ctx.rows.push(row);
    // The tab's own limit (issue 14): an absolute records/s says more about the machine than about
    // the uploader, so the upload rate is compared with IndexedDB writes alone in the same tab.
    let uploads = rates(best);
    let writes_alone: Vec<f64> = out.runs.iter().map(|r| r.write_per_sec).collect();
    ctx.rows.push(
        Row::new(
            "P4 browser tab → bridge → NiFi",
            "upload rate / IndexedDB writes alone",
            "records/s",
            Better::Higher,
            (&format!("upload, {best} batches in flight"), uploads),
            ("IndexedDB writes alone, same tab", writes_alone),
            RatioTarget::AtLeast(1.0),
        )
        .note("≥ 1.0: the uploader empties the outbox at least as fast as the tab can fill it"),
    );
    if !out.instrument.is_empty() {
        let plain: Vec<f64> = out.instrument.iter().map(|r| r.plain_per_sec).collect();
        let inst: Vec<f64> = out
            .instrument
            .iter()
            .map(|r| r.instrumented_per_sec)
            .collect();
        ctx.rows.push(
            Row::new(
                "P4 browser tab → bridge → NiFi",
                "cost of instrument(): app writes",
                "writes/s",
                Better::Higher,
                ("the app under instrument()", inst),
                ("the same app uninstrumented", plain),
                RatioTarget::AtLeast(0.85),
            )
            .note(format!(
                "an unmodified plain-IndexedDB app: {} puts (≈150-byte JSON) in transactions of 500, capture only (no bridge), each run in a fresh document, order alternating; target ≤ 15 % slower",
                out.records
            )),
        );
    }

    let lat = |w: u32| out.latency.iter().find(|l| l.window == w);
    if let (Some(c), Some(b)) = (lat(best), lat(1)) {
        let mut row = Row::new(
            "P4 browser tab → bridge → NiFi",
            "latency commit → NiFi queue, p50",
            "ms",
            Better::Lower,
            (&format!("{best} batches in flight"), vec![c.p50]),
            ("1 batch in flight", vec![b.p50]),
            RatioTarget::None,
        )
        .note(format!(
            "paced writes: {} records at {:.0} records/s while uploading; per record, from its IndexedDB commit to the uploader's delivered event (the bridge acks after NiFi committed the S2S transaction); p99 {:.1} ms (1 in flight: {:.1} ms), max {:.1} ms",
            c.records, c.offered_per_sec, c.p99, b.p99, c.max
        ));
        row.target = "p50 < 100 ms".into();
        row.met = Some(c.p50 < 100.0);
        ctx.rows.push(row);
    }
    Ok(())
}

// ---- P5: bridge RSS in spool mode while NiFi is unreachable ----------------------------------------

async fn p5(ctx: &mut Ctx, bin: &PathBuf, out: &std::path::Path) -> anyhow::Result<()> {
    let secs = if ctx.quick { 20u64 } else { 60 };
    let rate = 10_000u64;
    let tick = Duration::from_millis(100);
    let per_tick = rate / 10;
    let spool = out.join(format!("p5-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    // Port 1 on loopback refuses connections: a NiFi that is down.
    let bridge = start_bridge(bin, "http://127.0.0.1:1/nifi", "bench-p5", "spool", &spool).await?;
    let pid = bridge.child.id();
    let idle_kib = rss_kib(pid).context("bridge RSS")?;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/flowfiles", bridge.base);
    let mut samples: Vec<f64> = Vec::new();
    let mut sent = 0u64;
    let mut failed = 0u64;
    let start = Instant::now();
    let mut next = start;
    let mut next_sample = start;
    // One body reused: the load generator must not be the bottleneck on 2 cores.
    let body = json_records(0, per_tick);
    while start.elapsed() < Duration::from_secs(secs) {
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        if r.status().is_success() {
            sent += per_tick;
        } else {
            failed += per_tick;
        }
        if Instant::now() >= next_sample {
            samples.push(rss_kib(pid).context("bridge exited")? as f64 / 1024.0);
            next_sample += Duration::from_secs(1);
        }
        next += tick;
        let now = Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    samples.push(rss_kib(pid).context("bridge exited")? as f64 / 1024.0);
    drop(bridge);
    let _ = std::fs::remove_dir_all(&spool);
    let achieved = sent as f64 / elapsed;
    let max = samples.iter().copied().fold(0.0, f64::max);
    let quarter = samples[samples.len() / 4];
    let last = *samples.last().expect("pushed above");
    let growth = last - quarter;
    let flat = growth <= 8.0;
    let mut row = Row::new(
        "P5 bridge RSS, spool mode, NiFi down",
        "RSS",
        "MiB",
        Better::Lower,
        ("bridge under load", samples.clone()),
        ("same bridge idle, before load", vec![idle_kib as f64 / 1024.0]),
        RatioTarget::None,
    )
    .note(format!(
        "{secs} s at a target of {rate} records/s (1 KiB JSON records, {per_tick} per POST every 100 ms): accepted {achieved:.0} records/s, {failed} records refused; RSS max {max:.1} MiB, at 25% {quarter:.1} MiB, at end {last:.1} MiB (growth {growth:+.1} MiB)"
    ));
    row.target = "max < 64 MiB and flat (growth after the first quarter ≤ 8 MiB)".into();
    row.met = Some(max < 64.0 && flat && achieved >= 0.95 * rate as f64);
    if achieved < 0.95 * rate as f64 {
        row = row.note("the offered rate was not reached, so the target counts as missed");
    }
    ctx.rows.push(row);
    Ok(())
}
