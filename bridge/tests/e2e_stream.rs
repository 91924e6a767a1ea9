//! Bodies of any size stream through the real `s2s-bridge` binary in bounded memory, against a
//! REAL NiFi (the shared instance of `cargo xtask nifi up`, or `NIFI_URL`; `nifi_or_skip!`):
//! a 200 MB chunked flowfile-v3 POST (several packages, gzip and not) arrives exact in both ack
//! modes with the bridge's peak RSS (`VmHWM`) below 128 MiB; a body cut off mid-way commits
//! nothing; limit rejections are answered after the body, logged once and counted.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use nifi_testkit::{Nifi, Port, nifi_or_skip};

const WAIT: Duration = Duration::from_secs(120);
/// The bridge's peak RSS must stay below this while a 200 MB body goes through.
const RSS_LIMIT_KIB: u64 = 128 << 10;

/// Content sizes of the packages of the big body: 200 000 000 bytes in all, large and tiny ones.
const SIZES: [u64; 5] = [80_000_000, 1_000, 60_000_000, 0, 59_999_000];

/// Content byte stream of package `i` (incompressible, reproducible).
fn content_rng(i: usize) -> fastrand::Rng {
    fastrand::Rng::with_seed(0x5EED + i as u64)
}

fn header(attrs: &[(String, String)], len: u64) -> Vec<u8> {
    let mut out = b"NiFiFF3".to_vec();
    out.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    for (k, v) in attrs {
        out.extend_from_slice(&(k.len() as u16).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(&len.to_be_bytes());
    out
}

/// A flowfile-v3 body of `sizes` packages generated 1 MiB at a time (never whole, here either),
/// gzipped on the fly if asked; `expected` gets each package's id → (length, CRC32).
fn body_source(
    tag: &str,
    sizes: &'static [u64],
    gzip: bool,
    expected: &mut BTreeMap<String, (u64, u32)>,
) -> impl FnMut() -> Option<Vec<u8>> + use<> {
    let mut crcs = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let mut rng = content_rng(i);
        let mut crc = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = n;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            rng.fill(&mut buf[..k]);
            crc.update(&buf[..k]);
            left -= k as u64;
        }
        let id = format!("{tag}-{i}");
        expected.insert(id.clone(), (n, crc.finalize()));
        crcs.push(id);
    }
    let mut pkg = 0usize;
    let mut left: Option<u64> = None;
    let mut rng = content_rng(0);
    let mut gz =
        gzip.then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut done = false;
    move || {
        loop {
            if done {
                return None;
            }
            let plain = match left {
                None if pkg == sizes.len() => {
                    done = true;
                    match gz.take() {
                        Some(g) => return Some(g.finish().expect("gzip")),
                        None => return None,
                    }
                }
                None => {
                    let attrs = vec![
                        ("id".to_owned(), crcs[pkg].clone()),
                        ("filename".to_owned(), format!("{}.bin", crcs[pkg])),
                    ];
                    left = Some(sizes[pkg]);
                    rng = content_rng(pkg);
                    header(&attrs, sizes[pkg])
                }
                Some(0) => {
                    left = None;
                    pkg += 1;
                    continue;
                }
                Some(n) => {
                    let k = n.min(1 << 20) as usize;
                    let mut b = vec![0u8; k];
                    rng.fill(&mut b);
                    left = Some(n - k as u64);
                    b
                }
            };
            match &mut gz {
                Some(g) => {
                    g.write_all(&plain).expect("gzip");
                    let out = std::mem::take(g.get_mut());
                    if !out.is_empty() {
                        return Some(out);
                    }
                }
                None => return Some(plain),
            }
        }
    }
}

/// Checks that NiFi holds exactly the `expected` packages (length and CRC32 of each).
async fn assert_arrived(port: &Port, expected: &BTreeMap<String, (u64, u32)>) {
    port.wait_for_queued(expected.len() as u64, WAIT)
        .await
        .expect("every package queued in NiFi");
    let got: BTreeMap<String, (u64, u32)> = port
        .queued_flowfiles()
        .await
        .expect("list")
        .into_iter()
        .map(|f| {
            let id = f.attributes.get("id").cloned().unwrap_or_default();
            (id, (f.content.len() as u64, crc32fast::hash(&f.content)))
        })
        .collect();
    assert_eq!(&got, expected, "NiFi's FlowFiles (id → length, CRC32)");
}

fn stage_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn bridge_args(nifi: &Nifi, port: &Port, ack: &str, dir: &Path) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec![
        "--ack".into(),
        ack.into(),
        "--nifi-url".into(),
        nifi.url().into(),
        "--port-name".into(),
        port.name().into(),
        "--stage-dir".into(),
        dir.join("stage").into(),
    ];
    if ack == "spool" {
        a.push("--spool-dir".into());
        a.push(dir.join("spool").into());
    }
    a
}

async fn big_body_in_bounded_memory(ack: &str) {
    let nifi = nifi_or_skip!();
    let port = nifi
        .input_port(&format!("bridge-big-{ack}"))
        .await
        .expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let bridge = BridgeProc::spawn(bridge_args(&nifi, &port, ack, dir.path()), None);
    bridge.wait_healthy().await;
    for gzip in [false, true] {
        let tag = format!("{ack}-{}", if gzip { "gz" } else { "plain" });
        let mut expected = BTreeMap::new();
        let source = body_source(&tag, &SIZES, gzip, &mut expected);
        let mut headers = vec![("Content-Type", "application/flowfile-v3")];
        if gzip {
            headers.push(("flowfile-gzipped", "true"));
        }
        let started = Instant::now();
        let answer = chunked_post(bridge.addr, "/contentListener", &headers, source, None)
            .await
            .expect("POST");
        let secs = started.elapsed().as_secs_f64();
        let (status, text) = answer.expect("not cut");
        assert_eq!(status, 200, "{text}");
        if ack == "nifi" {
            // Answered after NiFi committed: already queued.
            assert_eq!(
                port.queued_count().await.expect("count"),
                SIZES.len() as u64
            );
        }
        assert_arrived(&port, &expected).await;
        let peak = bridge.peak_rss_kib();
        eprintln!(
            "[e2e_stream] ack={ack} gzip={gzip}: 200 MB flowfile-v3 POST answered in {secs:.1} s ({:.0} MB/s), bridge peak RSS {} MiB",
            200.0 / secs,
            peak / 1024
        );
        assert!(
            peak < RSS_LIMIT_KIB,
            "bridge peak RSS {peak} KiB ≥ {RSS_LIMIT_KIB} KiB"
        );
        port.drain().await.expect("drain");
    }
    assert!(
        stage_files(&dir.path().join("stage")).is_empty(),
        "staging files left behind: {:?}",
        stage_files(&dir.path().join("stage"))
    );
    drop(bridge);
    port.delete().await.expect("delete");
}

#[tokio::test]
async fn a_200_mb_flowfile_v3_post_streams_into_nifi_in_bounded_memory_ack_nifi() {
    big_body_in_bounded_memory("nifi").await;
}

#[tokio::test]
async fn a_200_mb_flowfile_v3_post_streams_into_nifi_in_bounded_memory_ack_spool() {
    big_body_in_bounded_memory("spool").await;
}

#[tokio::test]
async fn a_body_cut_off_midway_commits_nothing() {
    let nifi = nifi_or_skip!();
    for ack in ["nifi", "spool"] {
        let port = nifi
            .input_port(&format!("bridge-cut-{ack}"))
            .await
            .expect("port");
        let dir = tempfile::tempdir().expect("tempdir");
        let bridge = BridgeProc::spawn(bridge_args(&nifi, &port, ack, dir.path()), None);
        bridge.wait_healthy().await;
        static CUT_SIZES: [u64; 4] = [10, 2_000_000, 20, 8_000_000];
        let mut expected = BTreeMap::new();
        let source = body_source("cut", &CUT_SIZES, false, &mut expected);
        // Three whole packages and half of the fourth, then the connection drops.
        let cut = chunked_post(
            bridge.addr,
            "/contentListener",
            &[("Content-Type", "application/flowfile-v3")],
            source,
            Some(6_000_000),
        )
        .await
        .expect("send");
        assert!(cut.is_none());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let m = bridge.metrics().await;
            if m.contains("bridge_rejections_total{reason=\"TRUNCATED\"} 1") {
                break;
            }
            assert!(Instant::now() < deadline, "cut body not reported:\n{m}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            port.queued_count().await.expect("count"),
            0,
            "ack={ack}: a cut body must commit nothing"
        );
        let m = bridge.metrics().await;
        assert!(m.contains("bridge_records_out_total 0"), "{m}");
        if ack == "spool" {
            assert!(m.contains("bridge_spool_entries 0"), "{m}");
        }
        assert!(
            stage_files(&dir.path().join("stage")).is_empty(),
            "staging files left behind"
        );
        // The same bridge still takes a whole body.
        let mut expected = BTreeMap::new();
        let source = body_source("after-cut", &CUT_SIZES, false, &mut expected);
        let (status, _) = chunked_post(
            bridge.addr,
            "/contentListener",
            &[("Content-Type", "application/flowfile-v3")],
            source,
            None,
        )
        .await
        .expect("POST")
        .expect("answered");
        assert_eq!(status, 200);
        assert_arrived(&port, &expected).await;
        drop(bridge);
        port.delete().await.expect("delete");
    }
}

/// No NiFi needed: the in-memory sink. A body over `--max-body-bytes` is answered 413 after it
/// was read (chunked or with a Content-Length), at once when the client waits for
/// `100-continue`; each rejection is one count, and the first of a reason one log line (peer,
/// reason, size) — the rest of the 30 s window becomes one summary line at its end.
#[tokio::test]
async fn limit_rejections_are_answered_after_the_body_logged_once_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("bridge.log");
    let bridge = BridgeProc::spawn(["--memory-sink", "--max-body-bytes", "1000000"], Some(&log));
    bridge.wait_healthy().await;
    // 1. Chunked, 3 MB: the whole body is sent without a write error, then 413.
    let mut chunks = 3;
    let (status, text) = chunked_post(
        bridge.addr,
        "/contentListener",
        &[],
        || {
            chunks -= 1;
            (chunks >= 0).then(|| vec![b'x'; 1_000_000])
        },
        None,
    )
    .await
    .expect("the whole body is sent, no broken pipe")
    .expect("answered");
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("max_body_bytes"), "{text}");
    // 2. Content-Length over the limit (reqwest sends the whole body first).
    let r = reqwest::Client::new()
        .post(bridge.url("/v1/flowfiles"))
        .body(vec![b' '; 2_000_000])
        .send()
        .await
        .expect("the whole body is sent, no broken pipe");
    assert_eq!(r.status(), 413);
    // 3. Expect: 100-continue: answered at once, the body is never sent.
    let mut s = tokio::net::TcpStream::connect(bridge.addr)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(
        &mut s,
        b"POST /contentListener HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .expect("write");
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), read_response(&mut s))
        .await
        .expect("answered without the body")
        .expect("response");
    assert_eq!(status, 413);
    let m = bridge.metrics().await;
    assert!(
        m.contains("bridge_rejections_total{reason=\"LIMIT\"} 3"),
        "{m}"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("rejected") && l.contains("reason=\"LIMIT\""))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "the first rejection of a reason is logged:\n{text}"
    );
    assert!(lines[0].contains("peer=127.0.0.1:"), "{}", lines[0]);
    assert!(lines[0].contains("size="), "{}", lines[0]);
}
