//! P2 from a file (issue 10): one big file streamed by the `s2s` client, run as a child process
//! (`s2s-bench p2-send-file`: `Source::file` through `Client::send_sources`, what `s2s send FILE`
//! does) whose peak RSS is read from `/proc/<pid>/status` while it runs, into the in-bench sink
//! (vs the loopback TCP pump moving the same bytes) and into NiFi (vs the Java client streaming the
//! same file from a `FileInputStream`, also a watched child).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use nifi_testkit::Nifi;
use nifi_testkit::java_reference::{self, SendSpec, Transport};
use s2s_bench::proc::{Watched, run_watched};
use s2s_bench::sink::{PORT_NAME, Sink};

use super::{Ctx, MIB, order};
use crate::ChildReport;
use crate::report::{Better, RatioTarget, Row};

/// The file's size: 4 GiB (issue 10); 1 GiB with `--quick`. `S2S_BENCH_P2_FILE_MIB` overrides
/// both (e.g. a 4 GiB file in a quick run).
fn file_len(quick: bool) -> anyhow::Result<u64> {
    let mib: u64 = match std::env::var("S2S_BENCH_P2_FILE_MIB") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("S2S_BENCH_P2_FILE_MIB={v}"))?,
        Err(_) if quick => 1024,
        Err(_) => 4096,
    };
    Ok(mib << 20)
}

/// The peak RSS target of the client (issue 10), MiB.
const RSS_TARGET_MIB: f64 = 64.0;

/// A file of deterministic content in a temporary directory, removed (with the directory) on drop.
pub(super) struct BigFile {
    dir: PathBuf,
    path: PathBuf,
    len: u64,
    /// Seconds it took to write and fsync it.
    made_in: f64,
}

impl Drop for BigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl BigFile {
    fn create(len: u64) -> anyhow::Result<Self> {
        use std::io::Write as _;
        let t = std::time::Instant::now();
        let dir = std::env::temp_dir().join(format!("s2s-bench-p2file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("p2-file.bin");
        // From here on, Drop removes the directory whatever happens.
        let mut me = Self {
            dir,
            path,
            len,
            made_in: 0.0,
        };
        let avail = avail_bytes(&me.dir).unwrap_or(u64::MAX);
        if avail < len + (4 << 30) {
            bail!(
                "{} has {} MiB free; the {} MiB file needs that plus 4 GiB to spare",
                me.dir.display(),
                avail >> 20,
                len >> 20
            );
        }
        let mut f = std::fs::File::create(&me.path)?;
        let block: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8).collect();
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n])?;
            left -= n as u64;
        }
        // Written back before measuring, so the kernel's writeback does not compete with the
        // runs; the pages stay cached (the machine has far more RAM than the file).
        f.sync_all()?;
        me.made_in = t.elapsed().as_secs_f64();
        Ok(me)
    }
}

/// Free bytes on the filesystem holding `dir` (`df`), `None` if unknown.
fn avail_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// The bench's big file, created on first use and kept for the following scenarios.
async fn big_file(ctx: &mut Ctx) -> anyhow::Result<(PathBuf, u64)> {
    if ctx.big_file.is_none() {
        let len = file_len(ctx.quick)?;
        eprintln!("[bench] writing a {} MiB file …", len >> 20);
        let f = tokio::task::spawn_blocking(move || BigFile::create(len)).await??;
        eprintln!(
            "[bench] {} ({} MiB) written and synced in {:.1} s",
            f.path.display(),
            f.len >> 20,
            f.made_in
        );
        ctx.big_file = Some(f);
    }
    let f = ctx.big_file.as_ref().expect("just set");
    Ok((f.path.clone(), f.len))
}

fn size_label(len: u64) -> String {
    if len >= 1 << 30 && len.is_multiple_of(1 << 30) {
        format!("{} GiB", len >> 30)
    } else {
        format!("{} MiB", len >> 20)
    }
}

/// Runs a watched child to completion; fails with its stderr if it failed.
async fn watched(mut cmd: Command, what: &'static str) -> anyhow::Result<Watched> {
    let w = tokio::task::spawn_blocking(move || run_watched(&mut cmd))
        .await?
        .with_context(|| format!("running {what}"))?;
    if !w.status.success() {
        bail!(
            "{what} failed ({}): {}",
            w.status,
            w.stderr.chars().take(2000).collect::<String>()
        );
    }
    Ok(w)
}

/// The `s2s` client sending `file` once to `port` at `url`, as a watched child: (seconds as it
/// timed itself, peak RSS MiB).
async fn s2s_child(
    url: &str,
    port: &str,
    file: &Path,
    single_node: bool,
) -> anyhow::Result<(f64, f64)> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["p2-send-file", "--url", url, "--port", port, "--file"])
        .arg(file);
    if single_node {
        cmd.arg("--single-node");
    }
    let w = watched(cmd, "p2-send-file").await?;
    let line = w.stdout.trim();
    let r: ChildReport = serde_json::from_str(line)
        .with_context(|| format!("bad p2-send-file output: {line:.300}"))?;
    Ok((r.seconds, w.peak_rss_kib as f64 / 1024.0))
}

pub(super) async fn p2file_sink(ctx: &mut Ctx) -> anyhow::Result<()> {
    let (file, total) = big_file(ctx).await?;
    let size = size_label(total);
    let sink = Sink::start().await?;
    // Warm-up of the pump's path (the sink's is warmed by each fresh child's discovery).
    s2s_bench::pump::pump(64 << 20).await?;
    let (mut s2s, mut rss, mut pump) = (vec![], vec![], vec![]);
    for rep in 0..ctx.reps {
        for contender in order(rep) {
            let secs = if contender {
                let before = sink
                    .counters
                    .bytes
                    .load(std::sync::atomic::Ordering::Relaxed);
                let (secs, peak) = s2s_child(&sink.url, PORT_NAME, &file, true).await?;
                let got = sink
                    .counters
                    .bytes
                    .load(std::sync::atomic::Ordering::Relaxed)
                    - before;
                if got != total {
                    bail!("P2 file: the sink confirmed {got} bytes of {total}");
                }
                eprintln!("[bench] p2file s2s peak RSS {peak:.1} MiB");
                rss.push(peak);
                secs
            } else {
                s2s_bench::pump::pump(total).await?.as_secs_f64()
            };
            let mbs = total as f64 / MIB / secs;
            eprintln!(
                "[bench] p2file {}: {mbs:.0} MiB/s",
                if contender { "s2s→sink" } else { "pump" }
            );
            if contender { &mut s2s } else { &mut pump }.push(mbs);
        }
    }
    let scenario = format!("P2 {size} file → in-bench S2S sink");
    let quick_note = if ctx.quick && total < 4 << 30 {
        " (--quick: the issue's 4 GiB file in a full run)"
    } else {
        ""
    };
    ctx.rows.push(
        Row::new(
            &scenario,
            "throughput",
            "MiB/s",
            Better::Higher,
            ("s2s client (child) → sink", s2s),
            ("plain TCP byte pump (loopback)", pump),
            RatioTarget::AtLeast(0.8),
        )
        .note(format!(
            "one {size} FlowFile per run{quick_note}, streamed from a file in the page cache (written and fsynced before the runs) by a fresh `s2s-bench p2-send-file` child (Source::file via Client::send_sources, as `s2s send FILE`; timed like the CLI: client built, discovery inside); the sink (in the bench process) decodes with s2s-proto and confirms with the transaction CRC; the pump moves the same byte count between two tasks of the bench process"
        )),
    );
    let max = rss.iter().copied().fold(0.0, f64::max);
    let mut row = Row::new(
        &scenario,
        "client peak RSS",
        "MiB",
        Better::Lower,
        ("s2s client (child)", rss),
        ("— (no baseline)", vec![]),
        RatioTarget::None,
    )
    .note(format!(
        "VmHWM of the child's /proc/<pid>/status, read every 10 ms until it exited; max {max:.1} MiB"
    ));
    row.target = format!("< {RSS_TARGET_MIB:.0} MiB");
    row.met = Some(max < RSS_TARGET_MIB);
    ctx.rows.push(row);
    Ok(())
}

pub(super) async fn p2file_nifi(ctx: &mut Ctx, nifi: &Nifi) -> anyhow::Result<()> {
    let (file, total) = big_file(ctx).await?;
    let size = size_label(total);
    let reps = if ctx.quick { 2 } else { 3 };
    tokio::task::spawn_blocking(java_reference::build)
        .await?
        .context("building the Java reference client")?;
    let port = nifi.input_port("bench-p2file").await?;
    let (mut s2s, mut java, mut s2s_rss, mut java_rss) = (vec![], vec![], vec![], vec![]);
    let res: anyhow::Result<()> = async {
        for rep in 0..reps {
            for contender in order(rep) {
                let (secs, peak) = if contender {
                    s2s_child(nifi.url(), port.name(), &file, false).await?
                } else {
                    let spec = SendSpec {
                        url: nifi.url().to_owned(),
                        port: port.name().to_owned(),
                        transport: Transport::Raw,
                        count: 1,
                        size: 0,
                        batch: 1,
                        compress: false,
                        attributes: vec![],
                    };
                    let cmd = java_reference::send_file_command(&spec, &file)?;
                    let w = watched(cmd, "the Java reference client").await?;
                    let r = java_reference::parse_send_report(&w.stdout)?;
                    if r.bytes != total {
                        bail!("the Java client reports {} bytes of {total}", r.bytes);
                    }
                    (r.seconds, w.peak_rss_kib as f64 / 1024.0)
                };
                let queued = port.queued_count().await?;
                if queued != 1 {
                    bail!("P2 file/NiFi: {queued} FlowFiles queued after sending 1");
                }
                port.drain().await?;
                let mbs = total as f64 / MIB / secs;
                let who = if contender { "s2s" } else { "java" };
                eprintln!("[bench] p2filenifi {who}: {mbs:.0} MiB/s, peak RSS {peak:.1} MiB");
                if contender {
                    s2s.push(mbs);
                    s2s_rss.push(peak);
                } else {
                    java.push(mbs);
                    java_rss.push(peak);
                }
            }
        }
        Ok(())
    }
    .await;
    port.drain().await.ok();
    port.delete().await.ok();
    res?;
    let scenario = format!("P2 {size} file → NiFi");
    ctx.rows.push(
        Row::new(
            &scenario,
            "throughput",
            "MiB/s",
            Better::Higher,
            ("s2s client (child)", s2s),
            ("Java S2S client 1.28.1 (child)", java),
            RatioTarget::None,
        )
        .note(format!(
            "one {size} FlowFile per run and transaction, RAW, no compression, same port, drained between runs; s2s: `s2s-bench p2-send-file` (Source::file, 1 MiB read-ahead pieces); Java: a StandardDataPacket over a FileInputStream of the file's size (SendFlowFiles --file); each as it times itself (client built, discovery inside; the JVM's start-up outside)"
        )),
    );
    let max = s2s_rss.iter().copied().fold(0.0, f64::max);
    let mut row = Row::new(
        &scenario,
        "client peak RSS",
        "MiB",
        Better::Lower,
        ("s2s client (child)", s2s_rss),
        ("Java S2S client 1.28.1 (child)", java_rss),
        RatioTarget::None,
    )
    .note(format!(
        "VmHWM of each child's /proc/<pid>/status, read every 10 ms until it exited; s2s max {max:.1} MiB; the JVM runs with its default heap settings"
    ));
    row.target = format!("s2s < {RSS_TARGET_MIB:.0} MiB");
    row.met = Some(max < RSS_TARGET_MIB);
    ctx.rows.push(row);
    Ok(())
}
