//! Bridge configuration: a plain serde value with documented defaults, loaded from TOML, then
//! overridden by environment variables and flags (see `main.rs`), validated once at startup.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::forward::ForwardConfig;
use crate::limits::Limits;
use crate::spool::SpoolConfig;

/// When a batch is acknowledged.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// After NiFi's TRANSACTION_FINISHED; the bridge keeps no state.
    #[default]
    Nifi,
    /// After a durable, fsynced write to the local spool.
    Spool,
}

impl std::str::FromStr for AckMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nifi" => Ok(Self::Nifi),
            "spool" => Ok(Self::Spool),
            other => Err(format!("ack must be \"nifi\" or \"spool\", not {other:?}")),
        }
    }
}

/// How the bridge reaches NiFi.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct NifiConfig {
    /// NiFi URL(s) for Site-to-Site discovery, e.g. `http://127.0.0.1:8080/nifi`. Required.
    pub urls: Vec<String>,
    /// Name of the root-group input port. One of `port_name` / `port_id` is required.
    pub port_name: Option<String>,
    /// Id of the root-group input port (preferred: names may change).
    pub port_id: Option<String>,
    /// `raw` (default) or `http`.
    pub transport: String,
    /// Connect/IO timeout for S2S, in ms. Default 30 000.
    pub timeout_ms: u64,
}

impl Default for NifiConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            port_name: None,
            port_id: None,
            transport: "raw".into(),
            timeout_ms: 30_000,
        }
    }
}

/// TLS for the bridge's own listener (rustls).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle: clients presenting a certificate are verified against it, and its subject
    /// and issuer DN become `restlistener.remote.user.dn` / `issuer.dn`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse clients without a certificate. Default false.
    #[serde(default)]
    pub require_client_cert: bool,
}

/// One bearer token. `Debug` never shows the secret.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// The secret itself (prefer `env`).
    pub value: Option<String>,
    /// Name of an environment variable holding the secret.
    pub env: Option<String>,
    /// Attributes added to (and overriding) every FlowFile sent with this token.
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("env", &self.env)
            .field("attributes", &self.attributes)
            .finish()
    }
}

/// ListenHTTP-compatible endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ListenHttpConfig {
    /// Base path. Default `/contentListener`.
    pub base_path: String,
    /// Request headers whose name, as the sender wrote it, fully matches this regex
    /// (case-sensitive) become attributes, like ListenHTTP's "HTTP Headers to receive as
    /// Attributes (Regex)". Default: none.
    pub header_regex: Option<String>,
    /// Status answered after commit, like ListenHTTP's "Return Code". Default 200.
    pub return_code: u16,
    /// A hold (`x-prefer-acknowledge-uri: true`) not confirmed by `DELETE` within this many ms is
    /// released and never delivered. Default 60 000.
    pub hold_timeout_ms: u64,
    /// Bytes per second received on the ListenHTTP path, all requests together, like
    /// "Max Data to Receive per Second". Default: unlimited.
    pub max_bytes_per_sec: Option<u64>,
    /// Client certificate subject DN must fully match (TLS with `client_ca`), like "Authorized
    /// Subject DN Pattern". Default `.*`.
    pub authorized_dn_pattern: String,
    /// Client certificate issuer DN must fully match, like "Authorized Issuer DN Pattern".
    /// Default `.*`.
    pub authorized_issuer_dn_pattern: String,
}

impl Default for ListenHttpConfig {
    fn default() -> Self {
        Self {
            base_path: "/contentListener".into(),
            header_regex: None,
            return_code: 200,
            hold_timeout_ms: 60_000,
            max_bytes_per_sec: None,
            authorized_dn_pattern: ".*".into(),
            authorized_issuer_dn_pattern: ".*".into(),
        }
    }
}

/// The whole bridge configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen address. Default `127.0.0.1:8090`.
    pub listen: SocketAddr,
    /// Acknowledgement mode. Default `nifi`.
    pub ack: AckMode,
    /// Serve files from this directory at `/` (demo page, wasm package). Default: off.
    pub static_dir: Option<PathBuf>,
    /// Allowed browser origins (exact `scheme://host[:port]`, or `*`). Same-origin requests are
    /// always allowed. Default: none.
    pub allowed_origins: Vec<String>,
    /// Bearer tokens. Empty: authentication off.
    pub tokens: Vec<TokenConfig>,
    /// TLS for the listener. Default: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// How long shutdown waits for in-flight batches, in ms. Default 10 000.
    pub shutdown_timeout_ms: u64,
    /// Where large HTTP request content is staged (one file per request, removed once delivered
    /// or spooled). Default: `<spool.dir>/stage` with `ack = "spool"` (emptied at startup), else
    /// the system temporary directory.
    pub stage_dir: Option<PathBuf>,
    /// NiFi connection.
    pub nifi: NifiConfig,
    /// Input limits.
    pub limits: Limits,
    /// Aggregation and retries.
    pub forward: ForwardConfig,
    /// Spool (used with `ack = "spool"`).
    pub spool: SpoolConfig,
    /// ListenHTTP-compatible endpoint.
    pub listen_http: ListenHttpConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            ack: AckMode::Nifi,
            static_dir: None,
            allowed_origins: Vec::new(),
            tokens: Vec::new(),
            tls: None,
            shutdown_timeout_ms: 10_000,
            stage_dir: None,
            nifi: NifiConfig::default(),
            limits: Limits::default(),
            forward: ForwardConfig::default(),
            spool: SpoolConfig::default(),
            listen_http: ListenHttpConfig::default(),
        }
    }
}

impl Config {
    /// Parses TOML.
    pub fn from_toml(text: &str) -> Result<Self, crate::Error> {
        toml::from_str(text).map_err(|e| crate::Error::Config(e.to_string()))
    }

    /// The staging directory in effect (see [`Config::stage_dir`]).
    pub fn effective_stage_dir(&self) -> PathBuf {
        match (&self.stage_dir, self.ack) {
            (Some(d), _) => d.clone(),
            (None, AckMode::Spool) => self.spool.dir.join("stage"),
            (None, AckMode::Nifi) => std::env::temp_dir(),
        }
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if !self.listen_http.base_path.starts_with('/') || self.listen_http.base_path.len() < 2 {
            return bad(format!(
                "listen_http.base_path must start with '/': {:?}",
                self.listen_http.base_path
            ));
        }
        if let Some(re) = &self.listen_http.header_regex
            && let Err(e) = regex::Regex::new(re)
        {
            return bad(format!("listen_http.header_regex: {e}"));
        }
        if !(200..300).contains(&self.listen_http.return_code) {
            return bad(format!(
                "listen_http.return_code must be 2xx, not {}",
                self.listen_http.return_code
            ));
        }
        for t in &self.tokens {
            if t.value.is_none() && t.env.is_none() {
                return bad("every token needs `value` or `env`".into());
            }
        }
        if self.limits.max_records == 0 || self.limits.max_message_bytes < 18 {
            return bad("limits.max_records must be > 0 and max_message_bytes >= 18".into());
        }
        Ok(())
    }
}

/// An annotated example of every option with its default (shown by `s2s-bridge --help`).
pub const EXAMPLE: &str = r#"# s2s-bridge configuration (TOML). Every key is optional; shown with its default.
listen = "127.0.0.1:8090"        # address:port to listen on
ack = "nifi"                     # "nifi": ack after NiFi commit | "spool": ack after fsynced spool write
# static_dir = "./demo"          # serve files at / (demo page, wasm package)
allowed_origins = []             # browser origins allowed (exact "https://host:port" or "*"); same-origin always ok
shutdown_timeout_ms = 10000      # graceful shutdown: wait this long for in-flight batches
# stage_dir = "/var/tmp/bridge"  # large HTTP bodies are staged here (default: <spool.dir>/stage with ack=spool, else $TMPDIR)

# [[tokens]]                     # none = authentication off
# env = "BRIDGE_TOKEN_KIOSK"     # or: value = "secret"
# attributes = { "client.name" = "kiosk" }   # added to (and override) every FlowFile of this token

# [tls]                          # rustls listener
# cert = "cert.pem"
# key = "key.pem"
# client_ca = "ca.pem"           # verify client certificates; their DNs become restlistener.remote.user.dn / issuer.dn
# require_client_cert = false

[nifi]
urls = []                        # e.g. ["http://127.0.0.1:8080/nifi"]
# port_name = "bridge-in"        # or port_id = "..."
transport = "raw"                # "raw" or "http"
timeout_ms = 30000

[limits]
max_message_bytes = 8388608      # WebSocket message (in memory)
max_body_bytes = 268435456       # HTTP body (ListenHTTP, JSON; after gunzip; streamed, staged on disk) or "unlimited"
max_records = 10000              # per batch / request
max_attributes = 256             # per FlowFile
max_attribute_bytes = 65536      # key + value
max_content_bytes = 8388608      # per FlowFile over WebSocket / in a JSON record
max_inflight = 16                # unacked batches per WebSocket
max_connections = 1024           # WebSocket connections
max_http_requests = 256          # concurrent HTTP ingest requests

[forward]
max_records = 1000               # per S2S transaction
max_bytes = 4194304              # per S2S transaction
linger_ms = 20                   # wait for more batches before sending
max_transactions = 2             # concurrent S2S transactions
queue = 1024                     # batches queued before ingest waits
backoff_initial_ms = 100         # exponential backoff, full jitter
backoff_max_ms = 10000
retry_budget_ms = 3000           # ack=nifi: retry this long, then answer "retry after"
retry_after_ms = 1000            # retry-after sent to clients without a better hint

[spool]
dir = "spool"
max_bytes = 1073741824           # unconfirmed bytes; then full_policy applies
segment_bytes = 16777216
full_policy = "block"            # "block" (wait block_timeout_ms, then 429) | "reject" (429 at once)
block_timeout_ms = 2000

[listen_http]
base_path = "/contentListener"
# header_regex = "tenantId|X-.*" # request headers (name as sent, whole name, case-sensitive) that become attributes
return_code = 200
hold_timeout_ms = 60000          # x-prefer-acknowledge-uri holds not DELETEd in time are released, never delivered
# max_bytes_per_sec = 10485760   # all ListenHTTP requests together ("Max Data to Receive per Second")
authorized_dn_pattern = ".*"     # client certificate subject DN (TLS with client_ca)
authorized_issuer_dn_pattern = ".*"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_to_the_defaults() {
        let parsed = Config::from_toml(EXAMPLE).expect("example parses");
        assert_eq!(parsed, Config::default());
    }

    /// `--help` prints [`EXAMPLE`]: it must mention every option.
    #[test]
    fn example_documents_every_key() {
        fn keys(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    out.push(k.clone());
                    keys(&format!("{prefix}{k}."), v, out);
                }
            }
        }
        let mut all = Vec::new();
        let mut full = Config::default();
        full.tokens.push(TokenConfig {
            value: Some("x".into()),
            env: Some("E".into()),
            ..Default::default()
        });
        full.tls = Some(TlsConfig::default());
        full.static_dir = Some("d".into());
        full.stage_dir = Some("s".into());
        full.nifi.port_name = Some("p".into());
        full.nifi.port_id = Some("i".into());
        full.listen_http.header_regex = Some("x".into());
        full.listen_http.max_bytes_per_sec = Some(1);
        full.tls = Some(TlsConfig {
            client_ca: Some("ca".into()),
            ..TlsConfig::default()
        });
        keys(
            "",
            &toml::Value::try_from(&full).expect("serializes"),
            &mut all,
        );
        for k in all {
            assert!(
                EXAMPLE.contains(&format!("{k} ="))
                    || EXAMPLE.contains(&format!("[{k}]"))
                    || EXAMPLE.contains(&format!("[[{k}]]")),
                "EXAMPLE lacks {k}"
            );
        }
    }

    #[test]
    fn body_limit_is_a_number_or_unlimited() {
        let c = Config::from_toml("[limits]\nmax_body_bytes = \"unlimited\"").expect("parses");
        assert_eq!(c.limits.max_body_bytes, crate::limits::ByteLimit::Unlimited);
        let c = Config::from_toml("[limits]\nmax_body_bytes = 5").expect("parses");
        assert_eq!(c.limits.max_body_bytes, crate::limits::ByteLimit::Bytes(5));
        assert!(Config::from_toml("[limits]\nmax_body_bytes = \"lots\"").is_err());
        let text = toml::to_string(&Config {
            limits: Limits {
                max_body_bytes: crate::limits::ByteLimit::Unlimited,
                ..Limits::default()
            },
            ..Config::default()
        })
        .expect("serializes");
        assert!(text.contains("max_body_bytes = \"unlimited\""), "{text}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(Config::from_toml("listen = \"127.0.0.1:1\"\nbogus = 1").is_err());
    }

    #[test]
    fn token_debug_redacts() {
        let t = TokenConfig {
            value: Some("hunter2".into()),
            ..Default::default()
        };
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
