//! `s2s`: send FlowFiles to, receive FlowFiles from, and list peers of an Apache NiFi over
//! Site-to-Site (RAW or HTTP transport).

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Parser, Subcommand};
use s2s::{Client, ClientBuilder, FlowFile, Source};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "s2s",
    version,
    about = "Apache NiFi Site-to-Site (RAW/HTTP) client",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send files, stdin or JSON lines as FlowFiles to an input port.
    Send(SendArgs),
    /// Receive FlowFiles from an output port as JSON lines or files.
    Recv(RecvArgs),
    /// Print every node NiFi advertises as a peer: its address (and what --peer-override maps
    /// it to), queued FlowFiles, send weight and penalty state.
    Peers(PeersArgs),
    /// Check everything between here and a NiFi port, in order, and say what to fix:
    /// reachability (TLS certificate, host name), discovery, client identity, the port and its
    /// state, the advertised peers (after --peer-override), authorization (a handshake that
    /// transfers nothing). Exit code 0 only if every check passes.
    Doctor(DoctorArgs),
}

#[derive(Args)]
struct PeersArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Print the peers as JSON (one array) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DoctorArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Port name (or id), input or output.
    #[arg(long)]
    port: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CommonArgs {
    /// NiFi's web URL, e.g. http://localhost:8080/nifi. Repeat it (or separate with commas)
    /// for the nodes of a cluster: they are tried in order until one answers discovery.
    #[arg(long, required = true)]
    url: Vec<String>,
    /// Connect and read timeout in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Map an advertised peer to a reachable address: ADVERTISED_HOST:PORT=REACHABLE_HOST:PORT
    #[arg(long = "peer-override", value_name = "HOST:PORT=HOST:PORT")]
    peer_override: Vec<String>,
    /// Ignore the peer list; talk only to the URL's host on the RAW port.
    #[arg(long)]
    single_node: bool,
    /// Persist the peer list to this file (JSON, rewritten atomically after every fetch) and
    /// use it when no --url answers.
    #[arg(long, value_name = "PATH")]
    peer_file: Option<PathBuf>,
    /// Transport: raw (socket port) or http (NiFi's web port, /nifi-api/data-transfer).
    #[arg(long, value_enum, default_value_t = TransportArg::Raw)]
    transport: TransportArg,
    /// HTTP proxy for every HTTP request: http://[user:password@]host:port
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// PEM file with the CA certificate(s) that signed NiFi's certificate (enables TLS).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// PEM file with the client certificate chain (mutual TLS; needs --key and --ca).
    #[arg(long, value_name = "PEM", requires = "key", requires = "ca")]
    cert: Option<PathBuf>,
    /// PEM file with the client private key.
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// PKCS#12 keystore (.p12/.pfx) with the client key and certificate (mutual TLS). Without
    /// --ca/--truststore, the CA certificates inside it are trusted.
    #[arg(long, value_name = "FILE", conflicts_with = "cert")]
    pkcs12: Option<PathBuf>,
    /// Environment variable holding the --pkcs12 password (never pass it on the command line).
    #[arg(long, value_name = "VAR", default_value = "S2S_PKCS12_PASSWORD")]
    pkcs12_password_env: String,
    /// PKCS#12 truststore with the CA certificate(s) to trust (instead of --ca).
    #[arg(long, value_name = "FILE", conflicts_with = "ca")]
    truststore: Option<PathBuf>,
    /// Environment variable holding the --truststore password.
    #[arg(long, value_name = "VAR", default_value = "S2S_TRUSTSTORE_PASSWORD")]
    truststore_password_env: String,
    /// HTTP: send the bearer token held by this environment variable on every request.
    #[arg(long, value_name = "VAR", conflicts_with = "username")]
    token_env: Option<String>,
    /// HTTP: log in as this user (POST /nifi-api/access/token) and use the JWT NiFi returns,
    /// renewed before it expires.
    #[arg(long, value_name = "USER")]
    username: Option<String>,
    /// Environment variable holding the --username password.
    #[arg(long, value_name = "VAR", default_value = "NIFI_PASSWORD")]
    password_env: String,
}

/// Reads a secret from the environment; the error names the variable, never a value.
fn secret_env(var: &str, for_what: &str) -> Result<String> {
    std::env::var(var).map_err(|_| {
        anyhow!("{for_what}: set the environment variable {var} (or name another with the matching --…-env flag)")
    })
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TransportArg {
    Raw,
    Http,
}

#[derive(Args)]
struct SendArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Input port name.
    #[arg(long, required_unless_present = "port_id")]
    port: Option<String>,
    /// Input port id (instead of the name).
    #[arg(long)]
    port_id: Option<String>,
    /// Compress FlowFiles on the wire.
    #[arg(long)]
    compress: bool,
    /// Attribute added to every FlowFile (repeatable).
    #[arg(short = 'a', long = "attribute", value_name = "KEY=VALUE")]
    attributes: Vec<String>,
    /// FlowFiles per transaction.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Transactions running at once, on different nodes of a cluster (0 = one per usable node).
    #[arg(long, default_value_t = 0)]
    parallelism: usize,
    /// Read FlowFiles as JSON lines from FILE (`-` = stdin):
    /// {"attributes":{..},"content":"text"} or {"attributes":{..},"content_base64":".."}
    #[arg(long, value_name = "FILE")]
    jsonl: Option<String>,
    /// Files to send, one FlowFile each (`-` = stdin). Default: stdin, unless --jsonl.
    /// Files stream from disk in 1 MiB pieces and are never read whole; stdin is staged to a
    /// temporary file first (in memory only up to 1 MiB) to learn its length.
    files: Vec<String>,
}

#[derive(Args)]
struct RecvArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Output port name (or id).
    #[arg(long)]
    port: String,
    /// Write FlowFiles as JSON lines to FILE (`-` = stdout; the default without --out-dir).
    #[arg(long, value_name = "FILE")]
    jsonl: Option<String>,
    /// Write each FlowFile's content to a file in DIR (named by its `filename` attribute).
    /// Content streams into a hidden temporary file in DIR, fsynced before NiFi is told to
    /// drop its copy, and renamed to its name once the checksum matched and the transaction
    /// was confirmed.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Stop after this many FlowFiles (NiFi is asked for no more than that).
    #[arg(long)]
    max: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct JsonFlowFile {
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_base64: Option<String>,
}

/// The exit codes (sysexits.h), shown by `s2s --help`.
const EXIT_CODES: &str = "\
Exit codes (sysexits.h; a supervisor retries 75 only):
  0   success
  75  EX_TEMPFAIL     retryable: I/O, connection refused/closed, timeout, NiFi unavailable
                      (discovery failed, 5xx), port not running, destination full, bad
                      checksum, no peer available, HTTP transaction expired
  64  EX_USAGE        bad command line
  65  EX_DATAERR      a FlowFile's content did not match its length (a file changed size)
  69  EX_UNAVAILABLE  the port does not exist on NiFi (unknown port)
  70  EX_SOFTWARE     NiFi spoke something this client does not understand (protocol)
  76  EX_PROTOCOL     TLS: NiFi's certificate untrusted, expired or for another host name,
                      or NiFi refused the client certificate
  77  EX_NOPERM       unauthorized: NiFi refused the identity (policies, token)
  78  EX_CONFIG       configuration: Site-to-Site disabled on the transport, no RAW port
                      advertised, TLS required but not configured, bad URL or certificate file
  1   anything else (a local file error, `doctor` found problems)";

/// A command-line mistake the parser could not catch (exit code 64).
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The exit code for a failure: see [`EXIT_CODES`].
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<Usage>()) {
        return 64;
    }
    let Some(s) = e.chain().find_map(|c| c.downcast_ref::<s2s::Error>()) else {
        return 1;
    };
    if s.is_retryable() {
        75
    } else if s.tls_failure().is_some() {
        76
    } else if s.is_unauthorized() {
        77
    } else if s.is_unknown_port() {
        69
    } else if s.is_config() {
        78
    } else if s.is_content_error() {
        65
    } else if s.is_protocol() {
        70
    } else {
        1
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("s2s: error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and every cause below it (each says only its own part).
            let line = s2s::error_chain(e.as_ref()).replace('\n', " ");
            eprintln!("s2s: error: {line}");
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Send(a) => send(a).await,
        Cmd::Recv(a) => recv(a).await,
        Cmd::Peers(a) => peers(a).await,
        Cmd::Doctor(a) => doctor(a).await,
    }
}

async fn doctor(a: DoctorArgs) -> Result<()> {
    // No penalty wait: the authorization probe must not sleep after the peer probe failed.
    let client = builder(&a.common)?.penalization(Duration::ZERO).build()?;
    let report = client.doctor(&a.port).await;
    client.close().await;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    if report.ok() {
        Ok(())
    } else {
        Err(DoctorFailed.into())
    }
}

/// The report already said what failed; only the exit code is left to set.
#[derive(Debug)]
struct DoctorFailed;

impl std::fmt::Display for DoctorFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("some checks failed")
    }
}

impl std::error::Error for DoctorFailed {}

fn builder(c: &CommonArgs) -> Result<ClientBuilder> {
    let t = Some(Duration::from_secs(c.timeout.max(1)));
    let mut b = Client::builder(c.url.join(","))
        .connect_timeout(t)
        .io_timeout(t)
        .single_node(c.single_node)
        .transport(match c.transport {
            TransportArg::Raw => s2s::Transport::Raw,
            TransportArg::Http => s2s::Transport::Http,
        });
    if let Some(p) = &c.proxy {
        b = b.proxy(p.clone());
    }
    if let Some(f) = &c.peer_file {
        b = b.peer_persistence(f.clone());
    }
    if let Some(p12) = &c.pkcs12 {
        let pw = secret_env(&c.pkcs12_password_env, "--pkcs12 password")?;
        b = b.tls_pkcs12(p12, &pw)?;
    }
    if let Some(ca) = &c.ca {
        b = match c.cert.as_deref().zip(c.key.as_deref()) {
            Some(client) => b.tls_pem(ca, Some(client))?,
            None => b.tls_ca_pem(ca)?,
        };
    }
    if let Some(ts) = &c.truststore {
        let pw = secret_env(&c.truststore_password_env, "--truststore password")?;
        b = b.tls_truststore_pkcs12(ts, &pw)?;
    }
    if let Some(var) = &c.token_env {
        b = b.bearer_token(secret_env(var, "--token-env")?);
    }
    if let Some(user) = &c.username {
        b = b.login(
            user.clone(),
            secret_env(&c.password_env, "--username password")?,
        );
    }
    for o in &c.peer_override {
        let (from, to) = o.split_once('=').ok_or_else(|| {
            Usage(format!(
                "--peer-override {o:?}: expected HOST:PORT=HOST:PORT"
            ))
        })?;
        b = b.peer_override(from.trim(), to.trim());
    }
    Ok(b)
}

fn parse_attr(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| Usage(format!("-a {s:?}: expected KEY=VALUE")))?;
    if k.is_empty() {
        return Err(Usage(format!("-a {s:?}: empty attribute key")).into());
    }
    Ok((k.to_owned(), v.to_owned()))
}

fn with_attrs(mut ff: FlowFile, attrs: &[(String, String)]) -> FlowFile {
    for (k, v) in attrs {
        if ff.attribute(k).is_none() {
            ff = ff.with_attribute(k.clone(), v.clone());
        }
    }
    ff
}

fn read_input(path: &str) -> Result<Vec<u8>> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {path}"))
    }
}

/// Stdin up to this size is sent from memory; more is staged in a temporary file.
const STDIN_IN_MEMORY: usize = 1024 * 1024;

/// Stdin's content as a source: in memory when small, else copied to a temporary file (a
/// FlowFile needs its length up front). The returned guard deletes the file when dropped.
fn stage_stdin(attributes: Vec<(String, String)>) -> Result<(Source, Option<tempfile::TempPath>)> {
    let mut stdin = std::io::stdin().lock();
    let mut head = Vec::new();
    (&mut stdin)
        .take(STDIN_IN_MEMORY as u64 + 1)
        .read_to_end(&mut head)
        .context("reading stdin")?;
    if head.len() <= STDIN_IN_MEMORY {
        let mut ff = FlowFile::new(head);
        ff.attributes = attributes;
        return Ok((Source::FlowFile(ff), None));
    }
    let mut tmp = tempfile::NamedTempFile::new().context("creating a temporary file for stdin")?;
    tmp.write_all(&head)
        .and_then(|()| std::io::copy(&mut stdin, &mut tmp).map(drop))
        .and_then(|()| tmp.flush())
        .context("staging stdin in a temporary file")?;
    let path = tmp.into_temp_path();
    Ok((Source::file(attributes, path.to_path_buf()), Some(path)))
}

/// A byte-progress bar on stderr, drawn only on a terminal (indicatif hides it otherwise).
fn progress_bar(total: Option<u64>) -> indicatif::ProgressBar {
    let (bar, template) = match total {
        Some(t) => (
            indicatif::ProgressBar::new(t),
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        ),
        None => (
            indicatif::ProgressBar::no_length(),
            "{spinner} [{elapsed_precise}] {bytes} received ({bytes_per_sec})",
        ),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn parse_jsonl(text: &[u8], source: &str) -> Result<Vec<FlowFile>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.with_context(|| format!("{source}: line {}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let j: JsonFlowFile = serde_json::from_str(&line)
            .with_context(|| format!("{source}: line {}: not a FlowFile JSON object", i + 1))?;
        let content = match (j.content, j.content_base64) {
            (Some(_), Some(_)) => bail!(
                "{source}: line {}: give either content or content_base64, not both",
                i + 1
            ),
            (Some(t), None) => t.into_bytes(),
            (None, Some(b)) => B64
                .decode(b.trim())
                .with_context(|| format!("{source}: line {}: bad content_base64", i + 1))?,
            (None, None) => Vec::new(),
        };
        let mut ff = FlowFile::new(content);
        for (k, v) in j.attributes {
            ff = ff.with_attribute(k, v);
        }
        out.push(ff);
    }
    Ok(out)
}

async fn send(a: SendArgs) -> Result<()> {
    let attrs = a
        .attributes
        .iter()
        .map(|s| parse_attr(s))
        .collect::<Result<Vec<_>>>()?;
    let mut sources: Vec<Source> = Vec::new();
    if let Some(j) = &a.jsonl {
        let text = read_input(j)?;
        for ff in parse_jsonl(&text, j)? {
            sources.push(Source::FlowFile(with_attrs(ff, &attrs)));
        }
    }
    let files = if a.files.is_empty() && a.jsonl.is_none() {
        vec!["-".to_owned()]
    } else {
        a.files.clone()
    };
    // Temporary files holding stdin, deleted when this function returns.
    let mut _staged = Vec::new();
    for f in &files {
        let name = if f == "-" {
            "stdin".to_owned()
        } else {
            Path::new(f)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| f.clone())
        };
        let attributes =
            with_attrs(FlowFile::default().with_attribute("filename", name), &attrs).attributes;
        if f == "-" {
            let (source, tmp) = stage_stdin(attributes)?;
            sources.push(source);
            _staged.extend(tmp);
        } else {
            let meta = std::fs::metadata(f).with_context(|| format!("reading {f}"))?;
            if !meta.is_file() {
                bail!("{f} is not a regular file");
            }
            sources.push(Source::file(attributes, f));
        }
    }
    if sources.is_empty() {
        bail!("nothing to send");
    }
    let client = builder(&a.common)?
        .compression(a.compress)
        .send_batch_count(a.batch)
        .send_parallelism(a.parallelism)
        .build()?;
    let port = a
        .port_id
        .clone()
        .or_else(|| a.port.clone())
        .ok_or_else(|| Usage("--port or --port-id is required".into()))?;
    let total_bytes: u64 = sources.iter().map(Source::content_len).sum();
    let bar = if total_bytes > 8 * 1024 * 1024 || sources.len() > 1000 {
        progress_bar(Some(total_bytes))
    } else {
        indicatif::ProgressBar::hidden()
    };
    let start = Instant::now();
    let pb = bar.clone();
    let s = client
        .send_sources(&port, sources, Some(Arc::new(move |n| pb.set_position(n))))
        .await;
    bar.finish_and_clear();
    client.close().await;
    let s = s?;
    println!(
        "committed {} FlowFiles / {} bytes in {} transactions ({:.2}s)",
        s.flowfiles,
        s.bytes,
        s.transactions,
        start.elapsed().as_secs_f64()
    );
    if s.destination_full {
        eprintln!("s2s: note: NiFi reported its destination queue full (back off)");
    }
    Ok(())
}

/// Picks a file name inside `dir` from the FlowFile's `filename`, never escaping `dir` and
/// never overwriting.
fn out_path(dir: &Path, filename: Option<&str>, index: u64) -> PathBuf {
    let base = filename
        .and_then(|f| Path::new(f).file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .filter(|f| !f.is_empty() && f != "." && f != "..")
        .unwrap_or_else(|| format!("flowfile-{index}"));
    let mut p = dir.join(&base);
    let mut i = 1;
    while p.exists() {
        p = dir.join(format!("{base}.{i}"));
        i += 1;
    }
    p
}

async fn recv(a: RecvArgs) -> Result<()> {
    let mut b = builder(&a.common)?;
    if let Some(max) = a.max {
        b = b.receive_batch_count(u32::try_from(max.min(u64::from(u32::MAX))).unwrap_or(u32::MAX));
    }
    let client = b.build()?;
    if let Some(d) = &a.out_dir {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // A JSON-lines file is fsynced before each confirm; stdout can only be flushed.
    let mut sync_file: Option<std::fs::File> = None;
    let mut jsonl: Option<Box<dyn Write>> = match (&a.jsonl, &a.out_dir) {
        (Some(p), _) if p == "-" => Some(Box::new(std::io::stdout())),
        (Some(p), _) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {p}"))?;
            sync_file = Some(f.try_clone()?);
            Some(Box::new(f))
        }
        (None, None) => Some(Box::new(std::io::stdout())),
        (None, Some(_)) => None,
    };
    let (mut n, mut bytes, mut txs) = (0u64, 0u64, 0u64);
    let bar = match &a.out_dir {
        Some(_) => progress_bar(None),
        None => indicatif::ProgressBar::hidden(),
    };
    loop {
        if a.max.is_some_and(|m| n >= m) {
            break;
        }
        let mut rx = client.receive(&a.port).await?;
        // (temporary file, final name) of each FlowFile written to --out-dir so far.
        let mut staged: Vec<(tempfile::TempPath, Option<String>)> = Vec::new();
        let mut got = 0u64;
        while let Some(mut incoming) = rx.next_stream().await? {
            let filename = incoming.attribute("filename").map(str::to_owned);
            if let Some(w) = jsonl.as_mut() {
                // JSON lines carry the content inline: this output holds it in memory.
                let len = incoming.content_len();
                if len > client.max_content_length() {
                    bail!(
                        "a FlowFile of {len} bytes is too large for JSON lines output; use --out-dir"
                    );
                }
                let mut content = Vec::with_capacity(len as usize);
                while let Some(c) = incoming.chunk().await? {
                    content.extend_from_slice(&c);
                    bar.inc(c.len() as u64);
                }
                let j = JsonFlowFile {
                    attributes: incoming.attributes().iter().cloned().collect(),
                    content: None,
                    content_base64: Some(B64.encode(&content)),
                };
                serde_json::to_writer(&mut *w, &j)?;
                w.write_all(b"\n")?;
            }
            if let Some(d) = &a.out_dir {
                let tmp = tempfile::Builder::new()
                    .prefix(".s2s-recv-")
                    .suffix(".part")
                    .tempfile_in(d)
                    .with_context(|| format!("creating a file in {}", d.display()))?;
                let (file, path) = tmp.into_parts();
                let mut file = tokio::fs::File::from_std(file);
                let mut counted = CountingWriter {
                    inner: &mut file,
                    bar: &bar,
                };
                incoming.copy_to(&mut counted).await?;
                file.sync_all()
                    .await
                    .with_context(|| format!("writing {}", path.display()))?;
                staged.push((path, filename));
            }
            got += 1;
            bytes += incoming.content_len();
        }
        if got == 0 {
            rx.confirm().await?;
            break;
        }
        // Persist everything before confirming: NiFi deletes its copies on confirm.
        if let Some(w) = jsonl.as_mut() {
            w.flush()?;
        }
        if let Some(f) = &sync_file {
            f.sync_data()?;
        }
        rx.confirm().await?;
        txs += 1;
        // Checksum matched and NiFi confirmed: the files take their names now.
        if let Some(d) = &a.out_dir {
            for (tmp, filename) in staged {
                let p = out_path(d, filename.as_deref(), n);
                tmp.persist_noclobber(&p)
                    .map_err(|e| e.error)
                    .with_context(|| format!("renaming to {}", p.display()))?;
                n += 1;
            }
            std::fs::File::open(d).and_then(|dir| dir.sync_all()).ok();
        } else {
            n += got;
        }
    }
    bar.finish_and_clear();
    client.close().await;
    eprintln!("received {n} FlowFiles / {bytes} bytes in {txs} transactions");
    Ok(())
}

async fn peers(a: PeersArgs) -> Result<()> {
    let client = builder(&a.common)?.build()?;
    // Each transport has its own peer list: RAW ports from REQUEST_PEER_LIST, web ports from
    // /site-to-site/peers. With --peer-file, a failed fetch falls back to the file.
    client.refresh_peers().await?;
    let status = client.peer_status();
    if a.json {
        let rows: Vec<serde_json::Value> = status
            .iter()
            .map(|s| {
                serde_json::json!({
                    "peer": s.peer.advertised(),
                    "connectsTo": client.map_peer(&s.peer),
                    "secure": s.peer.secure,
                    "flowFileCount": s.peer.flowfile_count,
                    "weight": s.weight,
                    "penalizedForMillis": s.penalized_for.map(|d| d.as_millis() as u64),
                    "lastError": s.last_error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if status.is_empty() {
        println!("(NiFi advertised no peers)");
        return Ok(());
    }
    let addr = |s: &s2s::PeerStatus| {
        let mapped = client.map_peer(&s.peer);
        if mapped == s.peer.advertised() {
            mapped
        } else {
            format!("{} -> {mapped}", s.peer.advertised())
        }
    };
    let w = status
        .iter()
        .map(|s| addr(s).len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<w$}  {:>6}  {:>9}  {:>7}  PENALTY",
        "PEER", "SECURE", "FLOWFILES", "WEIGHT"
    );
    for s in &status {
        let penalty = match (&s.penalized_for, &s.last_error) {
            (Some(d), Some(e)) => format!("{:.1} s left (last error: {e})", d.as_secs_f64()),
            (Some(d), None) => format!("{:.1} s left", d.as_secs_f64()),
            (None, _) => "-".into(),
        };
        println!(
            "{:<w$}  {:>6}  {:>9}  {:>6.2}%  {penalty}",
            addr(s),
            s.peer.secure,
            s.peer.flowfile_count,
            s.weight
        );
    }
    Ok(())
}

/// An `AsyncWrite` that moves a progress bar by the bytes written through it.
struct CountingWriter<'a, W> {
    inner: &'a mut W,
    bar: &'a indicatif::ProgressBar,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CountingWriter<'_, W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut *self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            self.bar.inc(*n as u64);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}
