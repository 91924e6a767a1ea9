//! `s2s-bridge`: run the bridge from a TOML file, environment variables and flags.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use s2s_bridge::config::{EXAMPLE, TokenConfig};
use s2s_bridge::{AckMode, Bridge, Config, MemorySink, S2sSink};

/// Local relay: browsers (WebSocket) and HTTP clients (JSON, ListenHTTP-compatible) in, NiFi
/// Site-to-Site out. Precedence: flags > environment > config file > defaults.
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
    /// S2S transport: "raw" or "http" [default: raw].
    #[arg(long, env = "S2S_BRIDGE_TRANSPORT")]
    transport: Option<String>,
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
    /// Regex of request header names (lower-case) that become attributes on the ListenHTTP path.
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
        cfg.tls = Some(s2s_bridge::config::TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
        });
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
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
