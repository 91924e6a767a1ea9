//! Content of any size against a real NiFi (see `nifi-testkit`): a multi-GiB file through the
//! `s2s` CLI into NiFi and back out, over RAW and HTTP, compressed and not, checked by size and
//! SHA-256, with each process's peak RSS read from `/proc`; and the library's streaming edges
//! (a source that ends early or runs long commits nothing; a receive stream dropped half-way
//! leaves the FlowFiles in NiFi).
//!
//! `S2S_LARGE_MIB` sets the file size (default 3072 = 3 GiB); `S2S_LARGE_MAX_RSS_MIB` the RSS
//! bound (default 64). The file lives in a temporary directory removed at the end.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{WAIT, pattern};
use nifi_testkit::{Nifi, nifi_or_skip};
use s2s::{Client, FlowFile, Transport};
use sha2::{Digest, Sha256};

fn mib_env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `mib` MiB of half-compressible data (1 MiB blocks: a random half, a repeated half)
/// to `path`; returns its SHA-256. Blocks are windows of one random buffer (memcpy only: fast
/// even in a debug build), so no two neighbouring blocks are alike.
fn write_big_file(path: &Path, mib: u64) -> [u8; 32] {
    const HALF: usize = 512 * 1024;
    let random = pattern(7, 2 * HALF);
    let mut f = std::fs::File::create(path).unwrap();
    let mut h = Sha256::new();
    let mut block = vec![0u8; 2 * HALF];
    for i in 0..mib {
        let at = (i as usize).wrapping_mul(104_729) % HALF;
        block[..HALF].copy_from_slice(&random[at..at + HALF]);
        block[HALF..].fill((i % 251) as u8);
        h.update(&block);
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
    h.finalize().into()
}

fn sha256_file(path: &Path) -> ([u8; 32], u64) {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).unwrap();
    (h.finalize().into(), n)
}

/// Peak resident set size (VmHWM, KiB) of `pid`, or `None` once it is gone.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs the `s2s` binary and samples its VmHWM every 20 ms until it exits: returns its output
/// and its peak RSS in MiB (the high-water mark as last seen alive).
fn s2s_measured(args: &[&str]) -> (Output, f64, Duration) {
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_s2s"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run s2s");
    let pid = child.id();
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                match vm_hwm_kib(pid) {
                    Some(kib) => {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let took = start.elapsed();
    (out, peak.load(Ordering::Relaxed) as f64 / 1024.0, took)
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The big-file round trip for every transport × compression cell: `s2s send FILE` into the
/// pair's input port, `s2s recv --out-dir` from its output port, same size and SHA-256, both
/// processes below the RSS bound.
#[tokio::test]
async fn multi_gib_file_round_trip_in_bounded_memory() {
    let nifi = nifi_or_skip!();
    let mib = mib_env("S2S_LARGE_MIB", 3072);
    let max_rss = mib_env("S2S_LARGE_MAX_RSS_MIB", 64) as f64;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    let t = Instant::now();
    let sent_hash = write_big_file(&file, mib);
    eprintln!("wrote {mib} MiB in {:.1}s", t.elapsed().as_secs_f64());
    let pair = nifi.port_pair("s2s-large").await.unwrap();
    let file_arg = file.to_str().unwrap();
    let mut report = Vec::new();
    for transport in ["raw", "http"] {
        for compress in [false, true] {
            let label = format!("{transport}{}", if compress { "+zlib" } else { "" });
            let mut args = vec![
                "send",
                "--url",
                nifi.url(),
                "--port",
                pair.input.name(),
                "--transport",
                transport,
                "--timeout",
                "120",
            ];
            if compress {
                args.push("--compress");
            }
            args.push(file_arg);
            let (out, send_rss, send_took) = s2s_measured(&args);
            ok(&out, &format!("{label}: s2s send"));
            pair.input.wait_for_queued(1, WAIT).await.unwrap();

            let out_dir = dir.path().join(format!("out-{label}"));
            let recv_args = [
                "recv",
                "--url",
                nifi.url(),
                "--port",
                pair.output.name(),
                "--transport",
                transport,
                "--timeout",
                "120",
                "--max",
                "1",
                "--out-dir",
                out_dir.to_str().unwrap(),
            ];
            let (out, recv_rss, recv_took) = s2s_measured(&recv_args);
            ok(&out, &format!("{label}: s2s recv"));
            let got: Vec<PathBuf> = std::fs::read_dir(&out_dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert_eq!(
                got,
                vec![out_dir.join("big.bin")],
                "{label}: exactly the one file, under its filename, no temporary left"
            );
            let (hash, len) = sha256_file(&got[0]);
            std::fs::remove_dir_all(&out_dir).unwrap();
            assert_eq!(len, mib << 20, "{label}: size");
            assert!(hash == sent_hash, "{label}: SHA-256 differs");
            let rate = |d: Duration| mib as f64 / d.as_secs_f64();
            let line = format!(
                "{label:9} send {:6.1} MiB/s peak RSS {send_rss:5.1} MiB | recv {:6.1} MiB/s peak RSS {recv_rss:5.1} MiB",
                rate(send_took),
                rate(recv_took)
            );
            eprintln!("{mib} MiB {line}");
            report.push(line);
            assert!(
                send_rss < max_rss && recv_rss < max_rss,
                "{label}: peak RSS send {send_rss:.1} MiB / recv {recv_rss:.1} MiB, bound {max_rss} MiB"
            );
            assert_eq!(pair.input.queued_count().await.unwrap(), 0);
        }
    }
    pair.delete().await.unwrap();
    eprintln!("content of {mib} MiB:\n  {}", report.join("\n  "));
}

fn client(nifi: &Nifi, transport: Transport) -> Client {
    Client::builder(nifi.url())
        .transport(transport)
        .io_timeout(Some(Duration::from_secs(30)))
        .build()
        .unwrap()
}

/// A reader that yields `have` bytes of `fill`, then ends.
fn reader(have: usize) -> impl tokio::io::AsyncRead + Send + Unpin {
    std::io::Cursor::new(pattern(9, have))
}

/// A source shorter or longer than declared fails the transaction with a content error and
/// NiFi queues nothing of it; the same client then sends normally.
#[tokio::test]
async fn reader_of_the_wrong_length_commits_nothing() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("s2s-badlen").await.unwrap();
    for transport in [Transport::Raw, Transport::Http] {
        let c = client(&nifi, transport);
        // (declared, available): ends early across a 1 MiB piece; runs long by one byte.
        for (declared, have) in [(3 << 20, (2 << 20) + 5), (1 << 20, (1 << 20) + 1)] {
            let mut tx = c.send_transaction(port.name()).await.unwrap();
            tx.send(FlowFile::new("before")).await.unwrap();
            let e = tx
                .send_reader(vec![], declared, reader(have))
                .await
                .unwrap_err();
            assert!(e.is_content_error(), "{transport:?}: {e}");
            assert!(!e.is_retryable(), "{transport:?}: {e}");
            let text = e.to_string();
            assert!(
                text.contains(&declared.to_string()),
                "the error names the declared length: {text}"
            );
            assert!(
                tx.commit().await.is_err(),
                "a failed transaction cannot commit"
            );
        }
        // The port works, and nothing of the failed transactions arrived.
        let mut tx = c.send_transaction(port.name()).await.unwrap();
        tx.send_reader(vec![("k".into(), "v".into())], 5, &b"exact"[..])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        port.wait_for_queued(1, WAIT).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let q = port.queued_flowfiles().await.unwrap();
        assert_eq!(
            q.len(),
            1,
            "{transport:?}: only the good FlowFile is queued"
        );
        assert_eq!(q[0].content, b"exact");
        port.drain().await.unwrap();
        c.close().await;
    }
    port.delete().await.unwrap();
}

/// A receive stream dropped half-way through a FlowFile's content is not confirmed: NiFi keeps
/// every FlowFile and delivers them again, whole.
#[tokio::test]
async fn receive_stream_dropped_half_way_leaves_the_flowfiles_in_nifi() {
    let nifi = nifi_or_skip!();
    let pair = nifi.port_pair("s2s-halfway").await.unwrap();
    let sent: Vec<FlowFile> = (0..3u64)
        .map(|i| FlowFile::new(Bytes::from(pattern(i, 3 << 20))).with_attribute("i", i.to_string()))
        .collect();
    for transport in [Transport::Raw, Transport::Http] {
        let c = client(&nifi, transport);
        c.send_batch(pair.input.name(), sent.clone()).await.unwrap();
        pair.input.wait_for_queued(3, WAIT).await.unwrap();
        {
            let mut rx = c.receive(pair.output.name()).await.unwrap();
            let mut incoming = rx.next_stream().await.unwrap().expect("a FlowFile");
            assert_eq!(incoming.content_len(), 3 << 20);
            let first = incoming.chunk().await.unwrap().expect("some content");
            assert!(!first.is_empty() && first.len() < 3 << 20);
            // Dropped here: neither read to the end nor confirmed.
        }
        // NiFi rolls the transaction back; all three are delivered again, whole.
        let mut got = Vec::new();
        let deadline = Instant::now() + WAIT;
        while got.len() < 3 && Instant::now() < deadline {
            let mut rx = c.receive(pair.output.name()).await.unwrap();
            let mut batch = Vec::new();
            while let Some(mut incoming) = rx.next_stream().await.unwrap() {
                let attributes = incoming.take_attributes();
                let mut content = Vec::new();
                incoming.copy_to(&mut content).await.unwrap();
                batch.push(FlowFile {
                    attributes,
                    content: content.into(),
                });
            }
            rx.confirm().await.unwrap();
            if batch.is_empty() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            got.extend(batch);
        }
        got.sort_by(|a, b| a.attribute("i").cmp(&b.attribute("i")));
        assert_eq!(got.len(), 3, "{transport:?}");
        for (g, s) in got.iter().zip(&sent) {
            assert_eq!(g.attribute("i"), s.attribute("i"));
            assert!(g.content == s.content, "{transport:?}: content differs");
        }
        c.close().await;
    }
    pair.delete().await.unwrap();
}
