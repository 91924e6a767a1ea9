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
///
/// TLS (for an `https://` NiFi, used by both transports), authentication and the proxy mirror
/// the `s2s` CLI's flags of the same names. Secrets never appear here: passwords and tokens are
/// read from the environment variables named by the `*_env` keys, and `Debug` hides the
/// credentials of a proxy URL.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct NifiConfig {
    /// NiFi URL(s) for Site-to-Site discovery, e.g. `http://127.0.0.1:8080/nifi`. Required.
    pub urls: Vec<String>,
    /// Name of the root-group input port. One of `port_name` / `port_id` is required.
    pub port_name: Option<String>,
    /// Id of the root-group input port (preferred: names may change).
    pub port_id: Option<String>,
    /// `raw` (default: the socket port, `nifi.remote.input.socket.port`) or `http` (NiFi's web
    /// port, `/nifi-api/data-transfer`: through load balancers, reverse proxies and HTTP
    /// proxies, e.g. when only 443 is open).
    pub transport: String,
    /// Connect/IO timeout for S2S, in ms. Default 30 000.
    pub timeout_ms: u64,
    /// PEM file with the CA certificate(s) that signed NiFi's certificate (enables TLS).
    /// Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS); needs `key` and `ca` (or `truststore`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// PKCS#12 keystore (`.p12`/`.pfx`) with the client key and certificate (mutual TLS).
    /// Without `ca`/`truststore`, the CA certificates inside it are trusted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkcs12: Option<PathBuf>,
    /// Environment variable holding the `pkcs12` password. Default `S2S_PKCS12_PASSWORD`.
    pub pkcs12_password_env: String,
    /// PKCS#12 truststore with the CA certificate(s) to trust (instead of `ca`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truststore: Option<PathBuf>,
    /// Environment variable holding the `truststore` password. Default `S2S_TRUSTSTORE_PASSWORD`.
    pub truststore_password_env: String,
    /// HTTP transport: send the bearer token held by this environment variable on every request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// HTTP transport: log in as this user (`POST /nifi-api/access/token`, password from
    /// `password_env`) and use the token NiFi returns, renewed before it expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Environment variable holding the `username`'s password. Default `NIFI_PASSWORD`.
    pub password_env: String,
    /// HTTP proxy for every HTTP request to NiFi (discovery, and the HTTP transport):
    /// `http://[user:password@]host:port`; `CONNECT` for `https://` NiFi. Default: none
    /// (`HTTPS_PROXY`/`HTTP_PROXY` from the environment are still honoured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}

impl Default for NifiConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            port_name: None,
            port_id: None,
            transport: "raw".into(),
            timeout_ms: 30_000,
            ca: None,
            cert: None,
            key: None,
            pkcs12: None,
            pkcs12_password_env: "S2S_PKCS12_PASSWORD".into(),
            truststore: None,
            truststore_password_env: "S2S_TRUSTSTORE_PASSWORD".into(),
            token_env: None,
            username: None,
            password_env: "NIFI_PASSWORD".into(),
            proxy: None,
        }
    }
}

impl std::fmt::Debug for NifiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NifiConfig")
            .field("urls", &self.urls)
            .field("port_name", &self.port_name)
            .field("port_id", &self.port_id)
            .field("transport", &self.transport)
            .field("timeout_ms", &self.timeout_ms)
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("pkcs12", &self.pkcs12)
            .field("pkcs12_password_env", &self.pkcs12_password_env)
            .field("truststore", &self.truststore)
            .field("truststore_password_env", &self.truststore_password_env)
            .field("token_env", &self.token_env)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .field("proxy", &self.proxy.as_deref().map(redact_url))
            .finish()
    }
}

/// `url` with the password of its user info (`scheme://user:password@host`) replaced by
/// `<redacted>`, for logs, `Debug` and `--print-config`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user = rest[..at].split_once(':').map_or(&rest[..at], |(u, _)| u);
    let sep = if scheme.is_empty() { "" } else { "://" };
    format!("{scheme}{sep}{user}:<redacted>{}", &rest[at..])
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
        if !matches!(self.nifi.transport.as_str(), "raw" | "http") {
            return bad(format!(
                "nifi.transport must be \"raw\" or \"http\", not {:?}",
                self.nifi.transport
            ));
        }
        if self.nifi.cert.is_some() != self.nifi.key.is_some()
            || (self.nifi.cert.is_some() && self.nifi.ca.is_none())
        {
            return bad(
                "nifi.cert and nifi.key go together and need nifi.ca (PEM), like the s2s CLI's --cert/--key/--ca"
                    .into(),
            );
        }
        if self.nifi.cert.is_some() && self.nifi.pkcs12.is_some() {
            return bad(
                "nifi.cert/key and nifi.pkcs12 are two ways to give the client identity: use one"
                    .into(),
            );
        }
        if self.nifi.ca.is_some() && self.nifi.truststore.is_some() {
            return bad("nifi.ca and nifi.truststore are two ways to give the CA: use one".into());
        }
        if self.nifi.token_env.is_some() && self.nifi.username.is_some() {
            return bad(
                "nifi.token_env and nifi.username are two ways to authenticate: use one".into(),
            );
        }
        for t in &self.tokens {
            if t.value.is_none() && t.env.is_none() {
                return bad("every token needs `value` or `env`".into());
            }
        }
        let l = &self.limits;
        if l.max_tcp_connections == 0
            || l.header_read_timeout_ms == 0
            || l.body_timeout_ms == 0
            || l.ws_idle_timeout_ms == 0
        {
            return bad(
                "limits.max_tcp_connections and the limits.*_timeout_ms must be > 0".into(),
            );
        }
        if self.limits.max_records == 0
            || self.limits.max_packages == 0
            || self.limits.max_message_bytes < 18
        {
            return bad(
                "limits.max_records and max_packages must be > 0 and max_message_bytes >= 18"
                    .into(),
            );
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
transport = "raw"                # "raw" (socket port) or "http" (NiFi's web port, e.g. only 443 open)
timeout_ms = 30000
# ca = "ca.pem"                  # TLS to an https:// NiFi (both transports): CA certificate(s), PEM
# cert = "client.pem"            # mutual TLS: client certificate chain (PEM) ...
# key = "client.key"             # ... and its key (PEM)
# pkcs12 = "client.p12"          # or: client identity as PKCS#12 (its bundled CA is trusted without ca/truststore)
pkcs12_password_env = "S2S_PKCS12_PASSWORD"          # env var holding the pkcs12 password
# truststore = "truststore.p12"  # or: CA certificate(s) as a PKCS#12 truststore
truststore_password_env = "S2S_TRUSTSTORE_PASSWORD"  # env var holding the truststore password
# token_env = "NIFI_TOKEN"       # http: bearer token from this env var
# username = "bridge"            # http: log in (POST /nifi-api/access/token), token renewed before expiry
password_env = "NIFI_PASSWORD"   # env var holding the username's password
# proxy = "http://proxy:3128"    # HTTP proxy for every request to NiFi (CONNECT for https); user:password@ allowed

[limits]
max_message_bytes = 8388608      # WebSocket message (in memory)
max_body_bytes = 268435456       # HTTP body (ListenHTTP, JSON; after gunzip; streamed, staged on disk) or "unlimited"
max_records = 10000              # per WebSocket batch / JSON request
max_packages = 1000000           # FlowFiles per ListenHTTP request (PostHTTP batches; bounded by max_body_bytes)
max_attributes = 256             # per FlowFile
max_attribute_bytes = 65536      # key + value
max_content_bytes = 8388608      # per FlowFile over WebSocket / in a JSON record
max_inflight = 16                # unacked batches per WebSocket
max_connections = 1024           # WebSocket connections
max_http_requests = 256          # concurrent HTTP ingest requests
max_tcp_connections = 4096       # open TCP connections of any kind; more are closed at accept (keep below ulimit -n)
header_read_timeout_ms = 30000   # first byte + whole request head (HTTP, WebSocket handshake); idle keep-alive
body_timeout_ms = 30000          # most time between two reads of a request body; then 400 + close
ws_idle_timeout_ms = 120000      # WebSocket with nothing received and nothing in flight is closed

[forward]
max_records = 1000               # per S2S transaction
max_bytes = 4194304              # per S2S transaction
linger_ms = 0                    # extra wait for more batches (0: take what is queued when a slot frees)
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
        full.nifi.ca = Some("ca".into());
        full.nifi.cert = Some("c".into());
        full.nifi.key = Some("k".into());
        full.nifi.pkcs12 = Some("p".into());
        full.nifi.truststore = Some("t".into());
        full.nifi.token_env = Some("T".into());
        full.nifi.username = Some("u".into());
        full.nifi.proxy = Some("http://p".into());
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

    #[test]
    fn nifi_transport_and_tls_options_are_validated() {
        let c = Config::from_toml(
            "[nifi]\ntransport = \"http\"\nca = \"ca.pem\"\nusername = \"u\"\nproxy = \"http://p:3128\"",
        )
        .expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.nifi.transport, "http");
        assert_eq!(c.nifi.password_env, "NIFI_PASSWORD");
        for bad in [
            "[nifi]\ntransport = \"https\"",
            "[nifi]\ncert = \"c.pem\"",
            "[nifi]\ncert = \"c.pem\"\nkey = \"k.pem\"",
            "[nifi]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\npkcs12 = \"c.p12\"",
            "[nifi]\nca = \"ca.pem\"\ntruststore = \"t.p12\"",
            "[nifi]\ntoken_env = \"T\"\nusername = \"u\"",
        ] {
            let c = Config::from_toml(bad).expect("parses");
            assert!(c.validate().is_err(), "{bad} must not validate");
        }
    }

    #[test]
    fn proxy_credentials_are_redacted() {
        assert_eq!(
            redact_url("http://bob:hunter2@proxy:3128"),
            "http://bob:<redacted>@proxy:3128"
        );
        assert_eq!(
            redact_url("http://bob@proxy:3128/x@y"),
            "http://bob:<redacted>@proxy:3128/x@y"
        );
        assert_eq!(redact_url("http://proxy:3128/a@b"), "http://proxy:3128/a@b");
        let c = NifiConfig {
            proxy: Some("http://bob:hunter2@proxy:3128".into()),
            ..NifiConfig::default()
        };
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2") && d.contains("proxy:3128"), "{d}");
    }
}
