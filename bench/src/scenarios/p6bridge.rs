//! P6: one 1 GiB flowfile-v3 body (4 packages of 256 MiB, as PostHTTP / MiniFi send them) through
//! the bridge's ListenHTTP endpoint into NiFi (`ack = "nifi"`: answered after NiFi committed the
//! S2S transaction), vs NiFi's own ListenHTTP taking the same body; with the bridge's peak RSS.
//! The body is generated while it is sent (1 MiB at a time), never held whole.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nifi_testkit::Nifi;
use s2s_bench::proc::peak_rss_kib;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BridgeProc, Ctx, MIB, free_port, order};
use crate::listenhttp::ListenHttp;
use crate::report::{Better, RatioTarget, Row};

const PACKAGES: u64 = 4;
const PACKAGE_LEN: u64 = 256 << 20;

fn package_header(i: u64) -> Vec<u8> {
    let mut h = b"NiFiFF3".to_vec();
    let attrs = [
        ("filename", format!("p6-{i}.bin")),
        ("id", format!("p6-{i}")),
    ];
    h.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    for (k, v) in &attrs {
        h.extend_from_slice(&(k.len() as u16).to_be_bytes());
        h.extend_from_slice(k.as_bytes());
        h.extend_from_slice(&(v.len() as u16).to_be_bytes());
        h.extend_from_slice(v.as_bytes());
    }
    h.extend_from_slice(&PACKAGE_LEN.to_be_bytes());
    h
}

/// POSTs the 1 GiB body to `url` (`http://127.0.0.1:PORT/path`) with a Content-Length, 1 MiB
/// writes from one reused random buffer; returns the status and the seconds to the answer.
async fn post_body(url: &str) -> anyhow::Result<(u16, f64)> {
    let rest = url.strip_prefix("http://").context("http URL")?;
    let (host, path) = rest.split_at(rest.find('/').context("path")?);
    let headers: Vec<Vec<u8>> = (0..PACKAGES).map(package_header).collect();
    let total: u64 = headers.iter().map(|h| h.len() as u64).sum::<u64>() + PACKAGES * PACKAGE_LEN;
    // Incompressible bytes (xorshift), so nothing along the way gains from compression.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(host).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/flowfile-v3\r\nContent-Length: {total}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    for h in &headers {
        s.write_all(h).await?;
        for _ in 0..PACKAGE_LEN / chunk.len() as u64 {
            s.write_all(&chunk).await?;
        }
    }
    let mut answer = Vec::new();
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        if s.read_buf(&mut answer).await? == 0 {
            bail!("connection closed without an answer");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    Ok((status, secs))
}

pub(super) async fn p6(ctx: &mut Ctx, nifi: &Nifi, bin: &PathBuf) -> anyhow::Result<()> {
    let reps = if ctx.quick { 1 } else { 3 };
    let port = nifi.input_port("bench-p6").await?;
    let listen = ListenHttp::start(nifi, &format!("bench-p6-listenhttp-{}", std::process::id()))
        .await
        .context("NiFi's ListenHTTP (nifi-standard-nar)")?;
    let stage = std::env::temp_dir().join(format!("s2s-bench-p6-{}", std::process::id()));
    let addr = format!("127.0.0.1:{}", free_port()?);
    let child = Command::new(bin)
        .args([
            "--listen",
            &addr,
            "--ack",
            "nifi",
            "--max-body-bytes",
            "unlimited",
        ])
        .args(["--nifi-url", nifi.url(), "--port-name", port.name()])
        .arg("--stage-dir")
        .arg(&stage)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let bridge = BridgeProc {
        child,
        base: format!("http://{addr}"),
    };
    let health = format!("{}/healthz", bridge.base);
    if !crate::wait_until(Duration::from_secs(20), || async {
        reqwest::get(&health)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await
    {
        bail!("the bridge did not answer {health}");
    }
    let pid = bridge.child.id();
    let (mut via_bridge, mut via_listen) = (Vec::new(), Vec::new());
    let mib = (PACKAGES * PACKAGE_LEN) as f64 / MIB;
    for rep in 0..reps {
        for contender in order(rep) {
            let url = if contender {
                format!("{}/contentListener", bridge.base)
            } else {
                listen.url.clone()
            };
            let (status, secs) = post_body(&url).await?;
            if status != 200 {
                bail!("{url} answered {status}");
            }
            let queued = if contender {
                port.queued_count().await?
            } else {
                listen.queued().await?
            };
            if queued != PACKAGES {
                bail!("{url}: NiFi holds {queued} FlowFiles after the answer, not {PACKAGES}");
            }
            let rate = mib / secs;
            eprintln!(
                "[bench] p6 {}: {rate:.0} MiB/s",
                if contender { "bridge" } else { "ListenHTTP" }
            );
            if contender {
                via_bridge.push(rate);
                port.drain().await?;
            } else {
                via_listen.push(rate);
                listen.drain().await?;
            }
        }
    }
    let peak_mib = peak_rss_kib(pid).context("bridge peak RSS")? as f64 / MIB * 1024.0;
    drop(bridge);
    let _ = std::fs::remove_dir_all(&stage);
    listen.delete().await.ok();
    port.delete().await.ok();
    ctx.rows.push(
        Row::new(
            "P6 1 GiB flowfile-v3 body → NiFi",
            "throughput",
            "MiB/s",
            Better::Higher,
            ("bridge /contentListener → S2S (ack=nifi)", via_bridge),
            ("NiFi ListenHTTP", via_listen),
            RatioTarget::None,
        )
        .note(format!(
            "one POST of {PACKAGES} × 256 MiB packages with Content-Length, timed to the answer (the bridge answers after NiFi committed the S2S transaction; content staged on disk, then streamed); bridge peak RSS (VmHWM) over all runs: {peak_mib:.0} MiB"
        )),
    );
    Ok(())
}
