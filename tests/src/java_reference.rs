//! The official Java Site-to-Site client (`org.apache.nifi:nifi-site-to-site-client:1.28.1`) as a
//! reference peer: a tiny Maven project in `tests/java-reference/` whose CLI sends N FlowFiles of S
//! bytes to a port over RAW or HTTP and prints one JSON line ([`SendReport`]).
//!
//! It proves the harness (and NiFi's side of the protocol) independently of this project's own client,
//! and is the baseline for benchmarks. [`receive`] pulls from an output port the same way. Content is deterministic: byte `j` of FlowFile `i` is
//! [`content_byte`]`(i, j)`, and every FlowFile carries the given attributes plus `ref.index=i`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use serde::Deserialize;

use crate::provision::{self, progress};
use crate::{Error, QueuedFlowFile};

/// Byte `offset` of the content of FlowFile `index`, as the Java reference client generates it.
pub fn content_byte(index: u64, offset: u64) -> u8 {
    ((index * 31 + offset) % 251) as u8
}

/// The whole content of FlowFile `index` of `size` bytes.
pub fn expected_content(index: u64, size: usize) -> Vec<u8> {
    (0..size as u64).map(|j| content_byte(index, j)).collect()
}

/// Which S2S transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// RAW socket protocol (`nifi.remote.input.socket.port`).
    Raw,
    /// HTTP(S) transport over the web port.
    Http,
}

impl Transport {
    fn as_arg(self) -> &'static str {
        match self {
            Self::Raw => "RAW",
            Self::Http => "HTTP",
        }
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct SendSpec {
    /// NiFi base URL (`http://127.0.0.1:PORT/nifi`).
    pub url: String,
    /// Input port name.
    pub port: String,
    /// Transport.
    pub transport: Transport,
    /// Number of FlowFiles.
    pub count: u64,
    /// Content size of each FlowFile in bytes.
    pub size: usize,
    /// FlowFiles per transaction.
    pub batch: u32,
    /// Ask for S2S compression.
    pub compress: bool,
    /// Attributes put on every FlowFile (besides `ref.index`).
    pub attributes: Vec<(String, String)>,
}

/// The JSON line the Java client prints.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SendReport {
    /// `RAW` or `HTTP`.
    pub transport: String,
    /// Port name.
    pub port: String,
    /// FlowFiles sent (and confirmed by NiFi).
    pub count: u64,
    /// Size of each FlowFile.
    pub size: u64,
    /// FlowFiles per transaction.
    pub batch: u64,
    /// Whether compression was requested.
    pub compress: bool,
    /// Content bytes sent.
    pub bytes: u64,
    /// Transactions completed.
    pub transactions: u64,
    /// Wall time of all transactions (client built before the clock starts).
    pub seconds: f64,
    /// Throughput in FlowFiles per second.
    pub flowfiles_per_sec: f64,
    /// Throughput in MiB per second.
    pub mib_per_sec: f64,
}

/// The Maven project directory.
pub fn project_dir() -> PathBuf {
    provision::workspace_root()
        .join("tests")
        .join("java-reference")
}

/// Where the build output goes (`target/java-reference`, outside the source tree).
pub fn build_dir() -> PathBuf {
    provision::workspace_root()
        .join("target")
        .join("java-reference")
}

/// A cheap fingerprint of the sources, so a rebuild happens only when they change.
fn fingerprint(dir: &Path) -> Result<String, Error> {
    fn walk(dir: &Path, out: &mut Vec<(String, u64, u128)>) -> std::io::Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                if e.file_name() != "target" {
                    walk(&p, out)?;
                }
            } else {
                let m = e.metadata()?;
                let mtime = m
                    .modified()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                out.push((p.display().to_string(), m.len(), mtime));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    files.sort();
    Ok(files
        .iter()
        .map(|(p, l, m)| format!("{p} {l} {m}\n"))
        .collect())
}

/// Builds the reference client with `mvn package` (skipped when the sources did not change since the
/// last build) and returns the Java classpath to run it with.
pub fn build() -> Result<String, Error> {
    // Tests of one binary run in parallel; one build at a time (a poisoned lock is still a lock).
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let src = project_dir();
    let out = build_dir();
    let stamp = out.join(".built-from");
    let fp = fingerprint(&src)?;
    let classpath = format!("{}/classes:{}/lib/*", out.display(), out.display());
    if fs::read_to_string(&stamp).is_ok_and(|s| s == fp) {
        return Ok(classpath);
    }
    let t = Instant::now();
    progress("building the Java reference client (mvn package)");
    provision::run_maven(
        &src,
        &[
            "-q",
            &format!("-Ds2s.build.dir={}", out.display()),
            "package",
        ],
    )?;
    fs::write(&stamp, fp).map_err(|e| Error::io("writing the build stamp", e))?;
    progress(format!(
        "built the Java reference client in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    Ok(classpath)
}

/// Builds (if needed) and runs the reference client; returns its report. The Java process uses the
/// `java` on `PATH` (any Java 17+; the 1.28.1 client needs only Java 8).
pub fn send(spec: &SendSpec) -> Result<SendReport, Error> {
    let stdout = run_java("org.nifis2s.reference.SendFlowFiles", &send_args(spec))?;
    parse_summary(&stdout)
}

/// The reference client's sender for `spec` with every FlowFile's content streamed from `file`
/// (a `DataPacket` over a `FileInputStream` of the file's size; `spec.size` is ignored), as a
/// command to spawn: for callers that watch the process (its memory) while it runs. Builds the
/// client if needed. Parse its stdout with [`parse_send_report`].
pub fn send_file_command(spec: &SendSpec, file: &Path) -> Result<Command, Error> {
    let mut args = send_args(spec);
    args.push("--file".into());
    args.push(file.display().to_string());
    java_command("org.nifis2s.reference.SendFlowFiles", &args)
}

/// The report line in the stdout of a [`send_file_command`] run.
pub fn parse_send_report(stdout: &str) -> Result<SendReport, Error> {
    parse_summary(stdout)
}

fn send_args(spec: &SendSpec) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--url".into(),
        spec.url.clone(),
        "--port".into(),
        spec.port.clone(),
        "--transport".into(),
        spec.transport.as_arg().into(),
        "--count".into(),
        spec.count.to_string(),
        "--size".into(),
        spec.size.to_string(),
        "--batch".into(),
        spec.batch.to_string(),
    ];
    if spec.compress {
        args.push("--compress".into());
    }
    for (k, v) in &spec.attributes {
        args.push("--attr".into());
        args.push(format!("{k}={v}"));
    }
    args
}

/// What to receive.
#[derive(Debug, Clone)]
pub struct ReceiveSpec {
    /// NiFi base URL (`http://127.0.0.1:PORT/nifi`).
    pub url: String,
    /// Output port name.
    pub port: String,
    /// Transport.
    pub transport: Transport,
    /// Stop after this many FlowFiles.
    pub expect: u64,
    /// Give up (and fail) after this many seconds.
    pub timeout_secs: u64,
    /// Ask for S2S compression.
    pub compress: bool,
}

/// The summary line of a receive run.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ReceiveReport {
    /// `RAW` or `HTTP`.
    pub transport: String,
    /// Port name.
    pub port: String,
    /// FlowFiles received (and confirmed to NiFi).
    pub count: u64,
    /// Content bytes received.
    pub bytes: u64,
    /// Non-empty transactions completed.
    pub transactions: u64,
    /// Wall time.
    pub seconds: f64,
    /// Throughput in FlowFiles per second.
    pub flowfiles_per_sec: f64,
    /// Throughput in MiB per second.
    pub mib_per_sec: f64,
}

#[derive(Deserialize)]
struct ReceivedLine {
    attributes: std::collections::BTreeMap<String, String>,
    content: String,
}

/// Pulls `spec.expect` FlowFiles from an output port with the reference client; returns them in the
/// order received, with the summary. Fails if fewer arrive before the deadline.
pub fn receive(spec: &ReceiveSpec) -> Result<(Vec<QueuedFlowFile>, ReceiveReport), Error> {
    use base64::Engine as _;
    let mut args: Vec<String> = vec![
        "--url".into(),
        spec.url.clone(),
        "--port".into(),
        spec.port.clone(),
        "--transport".into(),
        spec.transport.as_arg().into(),
        "--expect".into(),
        spec.expect.to_string(),
        "--timeout".into(),
        spec.timeout_secs.to_string(),
        "--print".into(),
    ];
    if spec.compress {
        args.push("--compress".into());
    }
    let stdout = run_java("org.nifis2s.reference.ReceiveFlowFiles", &args)?;
    let mut flowfiles = Vec::new();
    for line in stdout.lines().filter(|l| l.starts_with("{\"attributes\"")) {
        let parsed: ReceivedLine = serde_json::from_str(line)
            .map_err(|e| Error::Unexpected(format!("bad FlowFile line ({e}): {line:.200}")))?;
        let content = base64::engine::general_purpose::STANDARD
            .decode(parsed.content)
            .map_err(|e| Error::Unexpected(format!("bad base64 from the Java client: {e}")))?;
        flowfiles.push(QueuedFlowFile {
            attributes: parsed.attributes,
            content,
        });
    }
    Ok((flowfiles, parse_summary(&stdout)?))
}

fn java_command(class: &str, args: &[String]) -> Result<Command, Error> {
    let classpath = build()?;
    let mut cmd = Command::new("java");
    cmd.arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .arg("-cp")
        .arg(&classpath)
        .arg(class)
        .args(args)
        .stdin(Stdio::null());
    Ok(cmd)
}

fn run_java(class: &str, args: &[String]) -> Result<String, Error> {
    let out = java_command(class, args)?
        .output()
        .map_err(|e| Error::io("running java", e))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stdout
            .lines()
            .rev()
            .take(3)
            .map(|l| l.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n");
        return Err(Error::Unexpected(format!(
            "Java reference client failed ({}):\n{stderr}\n{tail}",
            out.status
        )));
    }
    Ok(stdout)
}

fn parse_summary<T: serde::de::DeserializeOwned>(stdout: &str) -> Result<T, Error> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"tool\""))
        .ok_or_else(|| {
            Error::Unexpected(format!(
                "no summary line from the Java client: {stdout:.500}"
            ))
        })?;
    serde_json::from_str(line)
        .map_err(|e| Error::Unexpected(format!("bad summary from the Java client ({e}): {line}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_pattern_matches_the_java_formula() {
        // (i * 31 + j) % 251, as in SendFlowFiles.contentByte.
        assert_eq!(content_byte(0, 0), 0);
        assert_eq!(content_byte(1, 0), 31);
        assert_eq!(content_byte(0, 250), 250);
        assert_eq!(content_byte(0, 251), 0);
        assert_eq!(content_byte(9, 7), ((9 * 31 + 7) % 251) as u8);
        assert_eq!(expected_content(2, 3), vec![62, 63, 64]);
    }
}
