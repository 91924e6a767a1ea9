//! `s2s-bridge`: run the bridge from a TOML file, environment variables and flags.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use s2s_bridge::config::{EXAMPLE, TokenConfig};
use s2s_bridge::{AckMode, Bridge, Config, MemorySink, S2sSink};

/// Local relay: browsers (WebSocket) and HTTP clients (JSON, ListenHTTP-compatible) in, NiFi
/// Site-to-Site out. Precedence: flags > environment > config file > defaults.
///
/// Endpoints: `GET /v1/ws` (WebSocket, bridge/PROTOCOL.md), `POST /v1/flowfiles` (JSON batches),
/// `HEAD`/`POST /contentListener` (ListenHTTP drop-in: plain, flowfile-v3/v2/v1, gzip),
/// `DELETE /contentListener/holds/{id}` (ListenHTTP hold protocol),
/// `GET /contentListener/healthcheck` (ListenHTTP health check), `GET /healthz` (alive),
/// `GET /readyz` (NiFi reachable, spool writable), `GET /metrics` (Prometheus text), and with
/// `--static DIR` the files under `/`.
#[derive(Debug, Parser)]
#[command(name = "s2s-bridge", version, after_long_help = EXAMPLE, after_help = "Use --help for every config-file option with its default.")]
struct Args {
    /// TOML configuration file (every option; see --help for the annotated defaults).
    #[arg(short, long, env = "S2S_BRIDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:8090].
    #[arg(long, env = "S2S_BRIDGE_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Acknowledgement mode: "nifi" (after NiFi commit) or "spool" (after fsynced spool write) [default: nifi].
    #[arg(long, env = "S2S_BRIDGE_ACK")]
    ack: Option<AckMode>,
    /// NiFi URL(s) for Site-to-Site, comma-separated (e.g. http://127.0.0.1:8080/nifi).
    #[arg(long, env = "S2S_BRIDGE_NIFI_URL", value_delimiter = ',')]
    nifi_url: Vec<String>,
    /// Name of NiFi's root input port.
    #[arg(long, env = "S2S_BRIDGE_PORT_NAME")]
    port_name: Option<String>,
    /// Id of NiFi's root input port (preferred over the name).
    #[arg(long, env = "S2S_BRIDGE_PORT_ID")]
    port_id: Option<String>,
    /// S2S transport: "raw" (socket port) or "http" (NiFi's web port, /nifi-api/data-transfer;
    /// through load balancers and proxies, e.g. when only 443 is open) [default: raw].
    #[arg(long, env = "S2S_BRIDGE_TRANSPORT", value_parser = ["raw", "http"])]
    transport: Option<String>,
    /// TLS to an https:// NiFi (both transports): PEM file with the CA certificate(s) that signed
    /// NiFi's certificate.
    #[arg(
        long,
        env = "S2S_BRIDGE_NIFI_CA",
        value_name = "PEM",
        conflicts_with = "nifi_truststore"
    )]
    nifi_ca: Option<PathBuf>,
    /// Mutual TLS to NiFi: PEM client certificate chain (needs --nifi-key and --nifi-ca).
    #[arg(
        long,
        env = "S2S_BRIDGE_NIFI_CERT",
        value_name = "PEM",
        requires = "nifi_key"
    )]
    nifi_cert: Option<PathBuf>,
    /// PEM private key of --nifi-cert.
    #[arg(
        long,
        env = "S2S_BRIDGE_NIFI_KEY",
        value_name = "PEM",
        requires = "nifi_cert"
    )]
    nifi_key: Option<PathBuf>,
    /// Mutual TLS to NiFi: PKCS#12 keystore with the client key and certificate (without
    /// --nifi-ca/--nifi-truststore its bundled CA certificates are trusted).
    #[arg(
        long,
        env = "S2S_BRIDGE_NIFI_PKCS12",
        value_name = "FILE",
        conflicts_with = "nifi_cert"
    )]
    nifi_pkcs12: Option<PathBuf>,
    /// Environment variable holding the --nifi-pkcs12 password [default: S2S_PKCS12_PASSWORD].
    #[arg(long, env = "S2S_BRIDGE_NIFI_PKCS12_PASSWORD_ENV", value_name = "VAR")]
    nifi_pkcs12_password_env: Option<String>,
    /// PKCS#12 truststore with the CA certificate(s) of NiFi (instead of --nifi-ca).
    #[arg(long, env = "S2S_BRIDGE_NIFI_TRUSTSTORE", value_name = "FILE")]
    nifi_truststore: Option<PathBuf>,
    /// Environment variable holding the --nifi-truststore password [default: S2S_TRUSTSTORE_PASSWORD].
    #[arg(
        long,
        env = "S2S_BRIDGE_NIFI_TRUSTSTORE_PASSWORD_ENV",
        value_name = "VAR"
    )]
    nifi_truststore_password_env: Option<String>,
    /// HTTP transport: send the bearer token held by this environment variable to NiFi.
    #[arg(
        long,
        env = "S2S_BRIDGE_NIFI_TOKEN_ENV",
        value_name = "VAR",
        conflicts_with = "nifi_username"
    )]
    nifi_token_env: Option<String>,
    /// HTTP transport: log in to NiFi as this user (token renewed before it expires).
    #[arg(long, env = "S2S_BRIDGE_NIFI_USERNAME", value_name = "USER")]
    nifi_username: Option<String>,
    /// Environment variable holding the --nifi-username password [default: NIFI_PASSWORD].
    #[arg(long, env = "S2S_BRIDGE_NIFI_PASSWORD_ENV", value_name = "VAR")]
    nifi_password_env: Option<String>,
    /// HTTP proxy for every request to NiFi: http://[user:password@]host:port (CONNECT for https).
    #[arg(
        long,
        env = "S2S_BRIDGE_NIFI_PROXY",
        value_name = "URL",
        hide_env_values = true
    )]
    nifi_proxy: Option<String>,
    /// Serve static files from DIR at / (demo page, wasm package).
    #[arg(long = "static", env = "S2S_BRIDGE_STATIC", value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// Allowed browser origins, comma-separated ("*" = any). Same-origin is always allowed.
    #[arg(long, env = "S2S_BRIDGE_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origin: Vec<String>,
    /// Bearer tokens, comma-separated (without fixed attributes; use the config file for those).
    #[arg(
        long,
        env = "S2S_BRIDGE_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    token: Vec<String>,
    /// TLS certificate chain (PEM) for the listener; needs --tls-key.
    #[arg(long, env = "S2S_BRIDGE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the listener.
    #[arg(long, env = "S2S_BRIDGE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Spool directory (ack = "spool") [default: ./spool].
    #[arg(long, env = "S2S_BRIDGE_SPOOL_DIR")]
    spool_dir: Option<PathBuf>,
    /// Spool size limit in bytes [default: 1 GiB].
    #[arg(long, env = "S2S_BRIDGE_SPOOL_MAX_BYTES")]
    spool_max_bytes: Option<u64>,
    /// ListenHTTP-compatible base path [default: /contentListener].
    #[arg(long, env = "S2S_BRIDGE_BASE_PATH")]
    base_path: Option<String>,
    /// Regex of request header names that become attributes on the ListenHTTP path (whole name,
    /// case-sensitive, as the sender wrote it — like ListenHTTP's).
    #[arg(long, env = "S2S_BRIDGE_HEADER_REGEX")]
    header_regex: Option<String>,
    /// Largest WebSocket message in bytes [default: 8 MiB].
    #[arg(long, env = "S2S_BRIDGE_MAX_MESSAGE_BYTES")]
    max_message_bytes: Option<usize>,
    /// Largest HTTP request body in bytes (after gunzip), or "unlimited"; bodies are streamed and
    /// large content staged on disk [default: 268435456 = 256 MiB].
    #[arg(
        long,
        env = "S2S_BRIDGE_MAX_BODY_BYTES",
        value_name = "BYTES|unlimited"
    )]
    max_body_bytes: Option<s2s_bridge::limits::ByteLimit>,
    /// Directory for staging large HTTP bodies [default: <spool dir>/stage with --ack spool, else $TMPDIR].
    #[arg(long, env = "S2S_BRIDGE_STAGE_DIR")]
    stage_dir: Option<PathBuf>,
    /// PEM CA bundle for client certificates on the TLS listener (their DNs become
    /// `restlistener.remote.user.dn` / `issuer.dn`).
    #[arg(long, env = "S2S_BRIDGE_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: refuse clients without a certificate.
    #[arg(long, env = "S2S_BRIDGE_REQUIRE_CLIENT_CERT")]
    require_client_cert: bool,
    /// ListenHTTP path: client certificate subject DN must fully match this regex [default: .*].
    #[arg(long, env = "S2S_BRIDGE_AUTHORIZED_DN_PATTERN")]
    authorized_dn_pattern: Option<String>,
    /// ListenHTTP path: client certificate issuer DN must fully match this regex [default: .*].
    #[arg(long, env = "S2S_BRIDGE_AUTHORIZED_ISSUER_DN_PATTERN")]
    authorized_issuer_dn_pattern: Option<String>,
    /// ListenHTTP path: status answered after commit [default: 200].
    #[arg(long, env = "S2S_BRIDGE_RETURN_CODE")]
    return_code: Option<u16>,
    /// ListenHTTP path: a hold not confirmed by DELETE within this many ms is released [default: 60000].
    #[arg(long, env = "S2S_BRIDGE_HOLD_TIMEOUT_MS")]
    hold_timeout_ms: Option<u64>,
    /// ListenHTTP path: bytes per second, all requests together [default: unlimited].
    #[arg(long, env = "S2S_BRIDGE_MAX_BYTES_PER_SEC")]
    max_bytes_per_sec: Option<u64>,
    /// Most records per WebSocket batch / JSON request [default: 10000].
    #[arg(long, env = "S2S_BRIDGE_MAX_RECORDS")]
    max_records: Option<usize>,
    /// Most FlowFiles (packages) per ListenHTTP request [default: 1000000].
    #[arg(long, env = "S2S_BRIDGE_MAX_PACKAGES")]
    max_packages: Option<usize>,
    /// Most attributes per FlowFile [default: 256].
    #[arg(long, env = "S2S_BRIDGE_MAX_ATTRIBUTES")]
    max_attributes: Option<usize>,
    /// Largest attribute (key + value) in bytes [default: 65536].
    #[arg(long, env = "S2S_BRIDGE_MAX_ATTRIBUTE_BYTES")]
    max_attribute_bytes: Option<usize>,
    /// Largest FlowFile content over WebSocket / in a JSON record, in bytes [default: 8 MiB].
    #[arg(long, env = "S2S_BRIDGE_MAX_CONTENT_BYTES")]
    max_content_bytes: Option<usize>,
    /// Unacknowledged batches per WebSocket [default: 16].
    #[arg(long, env = "S2S_BRIDGE_MAX_INFLIGHT")]
    max_inflight: Option<usize>,
    /// Most WebSocket connections [default: 1024].
    #[arg(long, env = "S2S_BRIDGE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Most concurrent HTTP ingest requests [default: 256].
    #[arg(long, env = "S2S_BRIDGE_MAX_HTTP_REQUESTS")]
    max_http_requests: Option<usize>,
    /// Most open TCP connections of any kind; more are closed at accept [default: 4096].
    #[arg(long, env = "S2S_BRIDGE_MAX_TCP_CONNECTIONS")]
    max_tcp_connections: Option<usize>,
    /// Most time for a request head (and idle keep-alive), in ms [default: 30000].
    #[arg(long, env = "S2S_BRIDGE_HEADER_READ_TIMEOUT_MS")]
    header_read_timeout_ms: Option<u64>,
    /// Most time between two reads of a request body, in ms [default: 30000].
    #[arg(long, env = "S2S_BRIDGE_BODY_TIMEOUT_MS")]
    body_timeout_ms: Option<u64>,
    /// An idle WebSocket (nothing in flight) is closed after this many ms [default: 120000].
    #[arg(long, env = "S2S_BRIDGE_WS_IDLE_TIMEOUT_MS")]
    ws_idle_timeout_ms: Option<u64>,
    /// Use an in-memory sink instead of NiFi (for trying the bridge without NiFi; data is dropped on exit).
    #[arg(long, env = "S2S_BRIDGE_MEMORY_SINK")]
    memory_sink: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn load(args: &Args) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::from_toml(&text)?
        }
        None => Config::default(),
    };
    if let Some(v) = args.listen {
        cfg.listen = v;
    }
    if let Some(v) = args.ack {
        cfg.ack = v;
    }
    if !args.nifi_url.is_empty() {
        cfg.nifi.urls = args.nifi_url.clone();
    }
    if let Some(v) = &args.port_name {
        cfg.nifi.port_name = Some(v.clone());
    }
    if let Some(v) = &args.port_id {
        cfg.nifi.port_id = Some(v.clone());
    }
    if let Some(v) = &args.transport {
        cfg.nifi.transport = v.clone();
    }
    let n = &mut cfg.nifi;
    for (flag, field) in [
        (&args.nifi_ca, &mut n.ca),
        (&args.nifi_cert, &mut n.cert),
        (&args.nifi_key, &mut n.key),
        (&args.nifi_pkcs12, &mut n.pkcs12),
        (&args.nifi_truststore, &mut n.truststore),
    ] {
        if flag.is_some() {
            field.clone_from(flag);
        }
    }
    for (flag, field) in [
        (&args.nifi_token_env, &mut n.token_env),
        (&args.nifi_username, &mut n.username),
        (&args.nifi_proxy, &mut n.proxy),
    ] {
        if flag.is_some() {
            field.clone_from(flag);
        }
    }
    for (flag, field) in [
        (&args.nifi_pkcs12_password_env, &mut n.pkcs12_password_env),
        (
            &args.nifi_truststore_password_env,
            &mut n.truststore_password_env,
        ),
        (&args.nifi_password_env, &mut n.password_env),
    ] {
        if let Some(v) = flag {
            field.clone_from(v);
        }
    }
    if let Some(v) = &args.static_dir {
        cfg.static_dir = Some(v.clone());
    }
    if !args.allowed_origin.is_empty() {
        cfg.allowed_origins = args.allowed_origin.clone();
    }
    cfg.tokens.extend(
        args.token
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| TokenConfig {
                value: Some(t.clone()),
                ..Default::default()
            }),
    );
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let old = cfg.tls.take().unwrap_or_default();
        cfg.tls = Some(s2s_bridge::config::TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
            ..old
        });
    }
    if let Some(tls) = &mut cfg.tls {
        if let Some(ca) = &args.tls_client_ca {
            tls.client_ca = Some(ca.clone());
        }
        if args.require_client_cert {
            tls.require_client_cert = true;
        }
    }
    let lh = &mut cfg.listen_http;
    if let Some(v) = &args.authorized_dn_pattern {
        lh.authorized_dn_pattern = v.clone();
    }
    if let Some(v) = &args.authorized_issuer_dn_pattern {
        lh.authorized_issuer_dn_pattern = v.clone();
    }
    if let Some(v) = args.return_code {
        lh.return_code = v;
    }
    if let Some(v) = args.hold_timeout_ms {
        lh.hold_timeout_ms = v;
    }
    if let Some(v) = args.max_bytes_per_sec {
        lh.max_bytes_per_sec = Some(v);
    }
    let l = &mut cfg.limits;
    for (flag, field) in [
        (args.max_records, &mut l.max_records),
        (args.max_packages, &mut l.max_packages),
        (args.max_attributes, &mut l.max_attributes),
        (args.max_attribute_bytes, &mut l.max_attribute_bytes),
        (args.max_content_bytes, &mut l.max_content_bytes),
        (args.max_inflight, &mut l.max_inflight),
        (args.max_connections, &mut l.max_connections),
        (args.max_http_requests, &mut l.max_http_requests),
        (args.max_tcp_connections, &mut l.max_tcp_connections),
    ] {
        if let Some(v) = flag {
            *field = v;
        }
    }
    for (flag, field) in [
        (args.header_read_timeout_ms, &mut l.header_read_timeout_ms),
        (args.body_timeout_ms, &mut l.body_timeout_ms),
        (args.ws_idle_timeout_ms, &mut l.ws_idle_timeout_ms),
    ] {
        if let Some(v) = flag {
            *field = v;
        }
    }
    if let Some(v) = &args.spool_dir {
        cfg.spool.dir = v.clone();
    }
    if let Some(v) = args.spool_max_bytes {
        cfg.spool.max_bytes = v;
    }
    if let Some(v) = &args.base_path {
        cfg.listen_http.base_path = v.clone();
    }
    if let Some(v) = &args.header_regex {
        cfg.listen_http.header_regex = Some(v.clone());
    }
    if let Some(v) = args.max_message_bytes {
        cfg.limits.max_message_bytes = v;
    }
    if let Some(v) = args.max_body_bytes {
        cfg.limits.max_body_bytes = v;
    }
    if let Some(v) = &args.stage_dir {
        cfg.stage_dir = Some(v.clone());
    }
    cfg.validate()?;
    Ok(cfg)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Colours in the log (written to stdout) only on a terminal, and never with `NO_COLOR` set
/// (<https://no-color.org>): a redirected log carries no escape codes.
fn log_colours() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stdout().is_terminal()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,s2s=error".into()),
        )
        .with_ansi(log_colours())
        .init();
    let args = Args::parse();
    let cfg = load(&args)?;
    if args.print_config {
        let mut printable = cfg.clone();
        for t in &mut printable.tokens {
            if t.value.is_some() {
                t.value = Some("<redacted>".into());
            }
        }
        printable.nifi.proxy = printable
            .nifi
            .proxy
            .as_deref()
            .map(s2s_bridge::config::redact_url);
        print!("{}", toml::to_string_pretty(&printable)?);
        return Ok(());
    }
    let listener = std::net::TcpListener::bind(cfg.listen)
        .with_context(|| format!("binding {}", cfg.listen))?;
    tracing::info!(listen = %listener.local_addr()?, ack = ?cfg.ack, tls = cfg.tls.is_some(), "s2s-bridge listening");
    let bridge = if args.memory_sink {
        Bridge::new(cfg, MemorySink::new())?
    } else {
        Bridge::new(cfg.clone(), S2sSink::new(&cfg.nifi)?)?
    };
    bridge.serve(listener, shutdown_signal()).await?;
    tracing::info!("s2s-bridge stopped");
    Ok(())
}
