//! P3 (issue 12, "P3 made fair"): the same senders on both sides, bridge vs NiFi's own
//! `ListenHTTP` in the same NiFi, alternating run by run.
//!
//! - **P3a**: one POST per 1 KiB record from the in-bench load generator
//!   ([`s2s_bench::loadgen`], hyper client connections, closed loop) with 16 and 256 keep-alive
//!   connections → the bridge's `/contentListener` (`ack = "spool"`, and `ack = "nifi"` reported)
//!   vs → `ListenHTTP`.
//! - **P3b**: a real NiFi `PostHTTP` (flowfile-v3, default Max Batch Size) draining a backlog of
//!   1 KiB FlowFiles → the bridge (`ack = "nifi"`, hold protocol) vs → `ListenHTTP`.
//! - **P3c**: the bridge's batch endpoints, `POST /v1/flowfiles` (1,000 JSON records) and a
//!   flowfile-v3 body of 1,000 packages to `/contentListener`, 4 posters, `ack = "nifi"`, vs
//!   `ListenHTTP` one record per POST (P3a's 16-connection runs, same reps). Also reported: the
//!   same records sent straight to the port by the s2s client, NiFi's own S2S ingest rate here
//!   (the ceiling any relay in front of it can reach).
//!
//! Every run is checked: what the senders were told was accepted is exactly what NiFi queued.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use nifi_testkit::rest::Rest;
use nifi_testkit::{Nifi, Port};
use s2s_bench::loadgen::{self, Load, LoadResult};
use serde_json::json;

use super::{Ctx, json_records, order, start_bridge, start_bridge_with};
use crate::listenhttp::ListenHttp;
use crate::report::{Better, RatioTarget, Row};
use crate::{P1SendArgs, run_p1_child};

const RECORD: usize = 1024;

fn record() -> Bytes {
    Bytes::from(
        (0..RECORD)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// A flowfile-v3 body of `n` packages of 1 KiB (attributes `filename`, `ref.index`).
fn ffv3_records(first: u64, n: u64) -> Bytes {
    let content = record();
    let mut out = Vec::with_capacity(n as usize * (RECORD + 64));
    let put = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    for i in first..first + n {
        out.extend_from_slice(b"NiFiFF3");
        out.extend_from_slice(&2u16.to_be_bytes());
        put(&mut out, "filename");
        put(&mut out, &format!("p3c-{i}"));
        put(&mut out, "ref.index");
        put(&mut out, &i.to_string());
        out.extend_from_slice(&(content.len() as u64).to_be_bytes());
        out.extend_from_slice(&content);
    }
    Bytes::from(out)
}

fn addr_of(base: &str) -> anyhow::Result<SocketAddr> {
    base.trim_start_matches("http://")
        .split('/')
        .next()
        .context("no host in url")?
        .parse()
        .with_context(|| format!("no socket address in {base}"))
}

/// One load-generator run; fails on transport errors or non-2xx answers.
async fn load(addr: SocketAddr, path: &str, conns: usize, secs: f64) -> anyhow::Result<LoadResult> {
    let r = loadgen::run(Load {
        addr,
        path: path.to_owned(),
        headers: vec![("content-type".into(), "application/octet-stream".into())],
        body: record(),
        connections: conns,
        duration: Duration::from_secs_f64(secs),
    })
    .await;
    if r.errors > 0 || r.ok() != r.statuses.values().sum::<u64>() {
        bail!(
            "load on {addr}{path} with {conns} connections: statuses {:?}, {} errors (first: {:?})",
            r.statuses,
            r.errors,
            r.first_error
        );
    }
    Ok(r)
}

/// Waits until `port` holds exactly `n` (what the senders were told was accepted), then drains it.
async fn settle_port(port: &Port, n: u64, what: &str) -> anyhow::Result<()> {
    let got = port
        .wait_for_queued(n, Duration::from_secs(120))
        .await
        .with_context(|| format!("{what}: waiting for {n} FlowFiles"))?;
    if got != n {
        bail!("{what}: NiFi queued {got}, the senders were told {n} were accepted");
    }
    port.drain().await?;
    Ok(())
}

async fn settle_listen(listen: &ListenHttp, n: u64, what: &str) -> anyhow::Result<()> {
    let q = listen.queued().await?;
    if q != n {
        bail!("{what}: ListenHTTP queued {q}, it answered 2xx to {n}");
    }
    listen.drain().await
}

pub(super) async fn p3(ctx: &mut Ctx, nifi: &Nifi, bin: &PathBuf) -> anyhow::Result<()> {
    let secs = if ctx.quick { 3.0 } else { 8.0 };
    let port = nifi.input_port("bench-p3").await?;
    nifi.set_back_pressure(&port, 10_000_000).await?;
    let listen = ListenHttp::start(nifi, &format!("bench-p3-listenhttp-{}", std::process::id()))
        .await
        .context("ListenHTTP baseline")?;
    let tmp = std::env::temp_dir().join(format!("s2s-bench-p3-{}", std::process::id()));
    let spool_dir = tmp.join("spool");
    let nifi_dir = tmp.join("nifi");
    let res = async {
        let spool = start_bridge(bin, nifi.url(), port.name(), "spool", &spool_dir).await?;
        let acked = start_bridge(bin, nifi.url(), port.name(), "nifi", &nifi_dir).await?;
        let listen_addr = addr_of(&listen.url)?;
        let (spool_addr, acked_addr) = (addr_of(&spool.base)?, addr_of(&acked.base)?);

        // P3a (+ the baseline of P3c).
        let conns = [16usize, 256];
        let mut a: Vec<[Vec<f64>; 3]> = conns.iter().map(|_| Default::default()).collect();
        // P3c: JSON and flowfile-v3 batches.
        let (mut json_rates, mut ffv3_rates) = (vec![], vec![]);
        // P3c's reference: the same records sent straight to the same port by the s2s client
        // (1,000 per transaction): what NiFi ingests over S2S here, with no bridge in between.
        let mut direct_rates = vec![];
        let batch_count: u64 = if ctx.quick { 20_000 } else { 100_000 };
        for rep in 0..ctx.reps {
            for (ci, &c) in conns.iter().enumerate() {
                for contender in order(rep) {
                    if contender {
                        for (k, addr) in [(0, spool_addr), (2, acked_addr)] {
                            let r = load(addr, "/contentListener", c, secs).await?;
                            settle_port(&port, r.ok(), "P3a bridge").await?;
                            eprintln!(
                                "[bench] p3a bridge ack={} {c} conns: {:.0} records/s",
                                if k == 0 { "spool" } else { "nifi" },
                                r.rate()
                            );
                            a[ci][k].push(r.rate());
                        }
                    } else {
                        let r = load(listen_addr, "/contentListener", c, secs).await?;
                        settle_listen(&listen, r.ok(), "P3a").await?;
                        eprintln!("[bench] p3a ListenHTTP {c} conns: {:.0} records/s", r.rate());
                        a[ci][1].push(r.rate());
                    }
                }
            }
            for ffv3 in [false, true] {
                let rate = batches(&acked.base, batch_count, ffv3).await?;
                settle_port(&port, batch_count, "P3c").await?;
                eprintln!(
                    "[bench] p3c bridge {} batches: {rate:.0} records/s",
                    if ffv3 { "flowfile-v3" } else { "JSON" }
                );
                if ffv3 { &mut ffv3_rates } else { &mut json_rates }.push(rate);
            }
            let a = P1SendArgs {
                url: nifi.url().to_owned(),
                port: port.name().to_owned(),
                count: batch_count,
                size: RECORD,
                batch: 1000,
            };
            let (r, _cpu) = tokio::task::spawn_blocking(move || run_p1_child(&a)).await??;
            settle_port(&port, batch_count, "P3c direct").await?;
            let rate = batch_count as f64 / r.seconds;
            eprintln!("[bench] p3c s2s client straight to NiFi: {rate:.0} records/s");
            direct_rates.push(rate);
        }
        let listen16 = a[0][1].clone();
        for (ci, &c) in conns.iter().enumerate() {
            let [sp, li, ni] = std::mem::take(&mut a[ci]);
            let scenario = format!("P3a one POST per record, {c} connections → NiFi");
            let note = format!(
                "in-bench load generator (hyper HTTP/1.1 client connections, closed loop), {c} keep-alive connections, one 1 KiB record per POST for {secs} s per run, to the bridge's /contentListener and to NiFi's ListenHTTP (nifi-standard-nar) in the same NiFi; every 2xx checked against NiFi's queue"
            );
            ctx.rows.push(
                Row::new(
                    &scenario,
                    "throughput",
                    "records/s",
                    Better::Higher,
                    ("bridge /contentListener (ack=spool)", sp),
                    ("NiFi ListenHTTP", li.clone()),
                    RatioTarget::AtLeast(3.0),
                )
                .note(note),
            );
            ctx.rows.push(
                Row::new(
                    &scenario,
                    "throughput",
                    "records/s",
                    Better::Higher,
                    ("bridge /contentListener (ack=nifi)", ni),
                    ("NiFi ListenHTTP", li),
                    RatioTarget::None,
                )
                .note("ack=nifi: each POST answered after NiFi committed the S2S transaction"),
            );
        }
        let (json_rates_ref, ffv3_rates_ref) = (json_rates.clone(), ffv3_rates.clone());
        for (what, rates) in [
            ("POST /v1/flowfiles, 1,000 JSON records", json_rates),
            ("flowfile-v3 body of 1,000 records to /contentListener", ffv3_rates),
        ] {
            ctx.rows.push(
                Row::new(
                    "P3c bridge batch endpoints → NiFi",
                    "throughput",
                    "records/s",
                    Better::Higher,
                    (&format!("bridge {what} (ack=nifi)"), rates),
                    ("NiFi ListenHTTP, one POST per record, 16 conns", listen16.clone()),
                    RatioTarget::AtLeast(10.0),
                )
                .note(format!(
                    "bridge: {batch_count} × 1 KiB records per run, 4 concurrent keep-alive posters, each POST answered after NiFi committed; baseline: P3a's 16-connection ListenHTTP runs of the same reps"
                )),
            );
        }
        for (what, rates) in [
            ("POST /v1/flowfiles, 1,000 JSON records", json_rates_ref),
            ("flowfile-v3 body of 1,000 records to /contentListener", ffv3_rates_ref),
        ] {
            ctx.rows.push(
                Row::new(
                    "P3c bridge batch endpoints → NiFi",
                    "throughput vs NiFi's own S2S ingest",
                    "records/s",
                    Better::Higher,
                    (&format!("bridge {what} (ack=nifi)"), rates),
                    ("s2s client straight to the port", direct_rates.clone()),
                    RatioTarget::None,
                )
                .note(format!(
                    "reference: the same {batch_count} × 1 KiB records sent by the s2s client itself (1,000 per transaction, one at a time) to the same input port, same reps: the rate NiFi ingests over S2S on this machine with no bridge in between; a ratio near 1 means the bridge adds little and the P3c target is bounded by NiFi"
                )),
            );
        }
        drop(spool);
        drop(acked);
        p3b(ctx, nifi, bin, &port, &listen, &tmp).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    port.delete().await.ok();
    listen.delete().await.ok();
    res
}

/// P3c's contender: `count` records in POSTs of 1,000, 4 posters; records/s.
async fn batches(base: &str, count: u64, ffv3: bool) -> anyhow::Result<f64> {
    let per_post = 1000u64;
    let posters = 4u64;
    let http = reqwest::Client::new();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..posters {
        let http = http.clone();
        let (url, ctype) = if ffv3 {
            (format!("{base}/contentListener"), "application/flowfile-v3")
        } else {
            (format!("{base}/v1/flowfiles"), "application/json")
        };
        tasks.push(tokio::spawn(async move {
            let mut first = p * per_post;
            while first < count {
                let n = per_post.min(count - first);
                let body = if ffv3 {
                    ffv3_records(first, n)
                } else {
                    json_records(first, n)
                };
                let r = http
                    .post(&url)
                    .header("content-type", ctype)
                    .body(body)
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("bridge answered {}: {}", r.status(), r.text().await?);
                }
                first += posters * per_post;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(count as f64 / t.elapsed().as_secs_f64())
}

/// P3b: GenerateFlowFile puts the same backlog of 1 KiB FlowFiles in front of two stopped
/// PostHTTPs (one → bridge, one → ListenHTTP); each is started alone and timed until its backlog
/// is drained and every FlowFile is queued on the far side.
async fn p3b(
    ctx: &mut Ctx,
    nifi: &Nifi,
    bin: &PathBuf,
    port: &Port,
    listen: &ListenHttp,
    tmp: &std::path::Path,
) -> anyhow::Result<()> {
    let n: u64 = if ctx.quick { 20_000 } else { 100_000 };
    // PostHTTP's default batch (100 MB) of 1 KiB FlowFiles holds the whole backlog: the bridge's
    // default `max_packages` (1,000,000 per ListenHTTP request) takes it as ListenHTTP does.
    let bridge =
        start_bridge_with(bin, nifi.url(), port.name(), "nifi", &tmp.join("p3b"), &[]).await?;
    let rest = Rest::new(nifi);
    let name = format!("bench-p3b-{}", std::process::id());
    let mut procs = Vec::new();
    let mut conns = Vec::new();
    let mut funnels = Vec::new();
    let res = async {
        let gen_ = rest
            .processor(
                "GenerateFlowFile",
                &format!("{name}-gen"),
                json!({"schedulingPeriod": "1 hour", "properties": {
                    "File Size": "1 KB", "Batch Size": n.to_string(),
                    "Data Format": "Text", "Unique FlowFiles": "false"}}),
            )
            .await?;
        procs.push(gen_.clone());
        let funnel = rest
            .create("funnels", json!({"position": {"x": 900.0, "y": 900.0}}))
            .await?;
        funnels.push(funnel.clone());
        let mut sides = Vec::new();
        for (side, url) in [
            ("bridge", format!("{}/contentListener", bridge.base)),
            ("listen", listen.url.clone()),
        ] {
            let post = rest
                .processor(
                    "PostHTTP",
                    &format!("{name}-post-{side}"),
                    json!({"autoTerminatedRelationships": ["success"], "properties": {
                        "URL": url, "Send as FlowFile": "true"}}),
                )
                .await?;
            procs.push(post.clone());
            let input = rest.connect((&gen_, "PROCESSOR"), (&post, "PROCESSOR"), "success").await?;
            let failed = rest.connect((&post, "PROCESSOR"), (&funnel, "FUNNEL"), "failure").await?;
            conns.extend([input.clone(), failed.clone()]);
            sides.push((post, input, failed));
        }
        let (mut via_bridge, mut via_listen) = (vec![], vec![]);
        for rep in 0..ctx.reps {
            rest.run_status(&gen_, "RUN_ONCE").await?;
            for (_, input, _) in &sides {
                let deadline = Instant::now() + Duration::from_secs(120);
                while rest.queued(input).await? != n {
                    if Instant::now() > deadline {
                        bail!("P3b: GenerateFlowFile did not queue {n}");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            for contender in order(rep) {
                let (post, input, failed) = &sides[usize::from(!contender)];
                let far = || async {
                    if contender {
                        Ok(port.queued_count().await?)
                    } else {
                        listen.queued().await
                    }
                };
                let t = Instant::now();
                rest.run_status(post, "RUNNING").await?;
                let deadline = t + Duration::from_secs(300);
                loop {
                    if rest.queued(input).await? == 0 && far().await? >= n {
                        break;
                    }
                    if rest.queued(failed).await? > 0 {
                        bail!(
                            "P3b: PostHTTP → {} routed FlowFiles to failure",
                            if contender { "bridge" } else { "ListenHTTP" }
                        );
                    }
                    if Instant::now() > deadline {
                        bail!("P3b: PostHTTP did not drain {n} in time");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let rate = n as f64 / t.elapsed().as_secs_f64();
                rest.run_status(post, "STOPPED").await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let got = far().await?;
                if got != n {
                    bail!("P3b: {got} FlowFiles arrived, {n} were sent");
                }
                if contender {
                    port.drain().await?;
                } else {
                    listen.drain().await?;
                }
                eprintln!(
                    "[bench] p3b PostHTTP → {}: {rate:.0} records/s",
                    if contender { "bridge" } else { "ListenHTTP" }
                );
                if contender { &mut via_bridge } else { &mut via_listen }.push(rate);
            }
        }
        let metrics = reqwest::get(format!("{}/metrics", bridge.base))
            .await?
            .text()
            .await?;
        let holds = metrics
            .lines()
            .filter(|l| l.starts_with("bridge_listenhttp_holds_total"))
            .collect::<Vec<_>>()
            .join("; ");
        ctx.rows.push(
            Row::new(
                "P3b real PostHTTP batches → NiFi",
                "throughput",
                "records/s",
                Better::Higher,
                ("PostHTTP → bridge /contentListener (ack=nifi)", via_bridge),
                ("PostHTTP → NiFi ListenHTTP", via_listen),
                RatioTarget::AtLeast(2.0),
            )
            .note(format!(
                "NiFi's PostHTTP (flowfile-v3, default Max Batch Size 100 MB, hold protocol) drains a backlog of {n} × 1 KiB FlowFiles queued while it was stopped; timed from start to its queue empty and all {n} queued on the far side (polled every 50 ms); the bridge runs with its defaults (max_packages 1,000,000 per request); bridge holds: {holds}"
            )),
        );
        anyhow::Ok(())
    }
    .await;
    for p in &procs {
        rest.run_status(p, "STOPPED").await.ok();
    }
    for c in &conns {
        rest.empty(c).await.ok();
        rest.delete(&format!("/connections/{c}")).await.ok();
    }
    for p in &procs {
        rest.delete(&format!("/processors/{p}")).await.ok();
    }
    for f in &funnels {
        rest.delete(&format!("/funnels/{f}")).await.ok();
    }
    drop(bridge);
    res
}
