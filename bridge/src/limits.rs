//! Input limits, checked on every ingest path before anything is forwarded or spooled.

use serde::{Deserialize, Serialize};

use crate::record::FlowFile;

/// Limits on what clients may send. Every value is documented with its default; they are announced
/// to WebSocket clients in the `hello` message (PROTOCOL.md §3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest WebSocket message, in bytes (held in memory). Default 8 MiB.
    pub max_message_bytes: usize,
    /// Largest HTTP request body (ListenHTTP, JSON), in bytes after gunzip, or `"unlimited"`.
    /// Bodies are streamed and large content is staged to disk, so this bounds disk use, not
    /// memory. Default 256 MiB: PostHTTP's default batch (100 MB) plus its last FlowFile.
    pub max_body_bytes: ByteLimit,
    /// Most FlowFiles in one WebSocket batch or JSON request. Default 10 000.
    pub max_records: usize,
    /// Most FlowFiles (flowfile-v3/v2/v1 packages) in one ListenHTTP request. ListenHTTP itself
    /// has no such cap, and PostHTTP's default batch (100 MB of content) of small FlowFiles holds
    /// 100 000 and more, so the default is high: the body is bounded by `max_body_bytes`, and
    /// what stays in memory per package until the request is forwarded is its attributes (content
    /// above 64 KiB per FlowFile or 1 MiB per request is staged on disk). Default 1 000 000.
    pub max_packages: usize,
    /// Most attributes per FlowFile, counting the token's fixed attributes. Default 256.
    pub max_attributes: usize,
    /// Largest key + value of one attribute, in UTF-8 bytes. Default 65 536.
    pub max_attribute_bytes: usize,
    /// Largest content of one FlowFile sent over WebSocket or in a JSON record, in bytes (these
    /// are held in memory). ListenHTTP content is bounded by `max_body_bytes` only. Default 8 MiB.
    pub max_content_bytes: usize,
    /// Most unacknowledged batches per WebSocket connection. Default 16.
    pub max_inflight: usize,
    /// Most concurrent WebSocket connections; more are refused with 503. Default 1024.
    pub max_connections: usize,
    /// Most concurrent HTTP ingest requests; more are refused with 503. Default 256.
    pub max_http_requests: usize,
    /// Most open TCP connections of any kind (HTTP keep-alive, WebSocket, idle, TLS handshakes);
    /// more are closed as soon as they are accepted. Keep it below the process's file limit
    /// (`ulimit -n`). Default 4096.
    pub max_tcp_connections: usize,
    /// Most time a client may take to send its first byte and then a whole request head (HTTP
    /// requests and the WebSocket handshake), and most time a keep-alive connection may sit idle
    /// between requests; then the connection is closed. Default 30 000.
    pub header_read_timeout_ms: u64,
    /// Most time between two reads of an HTTP request body; a body stalled longer is cut (400,
    /// connection closed). Default 30 000.
    pub body_timeout_ms: u64,
    /// A WebSocket that sends nothing for this long with no batch in flight is closed (1000,
    /// "idle"). Default 120 000.
    pub ws_idle_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 8 << 20,
            max_body_bytes: ByteLimit::Bytes(256 << 20),
            max_records: 10_000,
            max_packages: 1_000_000,
            max_attributes: 256,
            max_attribute_bytes: 64 << 10,
            max_content_bytes: 8 << 20,
            max_inflight: 16,
            max_connections: 1024,
            max_http_requests: 256,
            max_tcp_connections: 4096,
            header_read_timeout_ms: 30_000,
            body_timeout_ms: 30_000,
            ws_idle_timeout_ms: 120_000,
        }
    }
}

impl Limits {
    /// The part of these limits that is announced to WebSocket clients in `hello`.
    pub fn announced(&self) -> s2s_bridge_protocol::Limits {
        s2s_bridge_protocol::Limits {
            max_message_bytes: self.max_message_bytes,
            max_records: self.max_records,
            max_attributes: self.max_attributes,
            max_attribute_bytes: self.max_attribute_bytes,
            max_content_bytes: self.max_content_bytes,
            max_inflight: self.max_inflight,
        }
    }

    /// Checks one FlowFile (after the token's attributes were added); the error names the limit.
    /// The same check a client runs against the announced limits.
    pub fn check(&self, ff: &FlowFile) -> Result<(), String> {
        self.announced()
            .check_flowfile(ff)
            .map_err(|e| e.to_string())
    }

    /// Checks the attributes of one FlowFile (after the token's attributes were added).
    pub fn check_attributes(&self, attributes: &[(String, String)]) -> Result<(), String> {
        if attributes.len() > self.max_attributes {
            return Err(format!(
                "{} attributes exceed max_attributes = {}",
                attributes.len(),
                self.max_attributes
            ));
        }
        match attributes
            .iter()
            .find(|(k, v)| k.len() + v.len() > self.max_attribute_bytes)
        {
            Some((k, v)) => Err(format!(
                "attribute {k:?} has {} bytes, more than max_attribute_bytes = {}",
                k.len() + v.len(),
                self.max_attribute_bytes
            )),
            None => Ok(()),
        }
    }

    /// Checks a whole batch: record count and each record.
    pub fn check_batch(&self, records: &[FlowFile]) -> Result<(), String> {
        self.announced()
            .check_batch(records)
            .map_err(|e| e.to_string())
    }
}

/// Adds the token's fixed attributes, which override the client's ones with the same key so a
/// client cannot impersonate another.
pub fn apply_fixed_attributes(attributes: &mut Vec<(String, String)>, fixed: &[(String, String)]) {
    if fixed.is_empty() {
        return;
    }
    attributes.retain(|(k, _)| !fixed.iter().any(|(fk, _)| fk == k));
    attributes.extend(fixed.iter().cloned());
}

/// A size limit that may be switched off: a number of bytes, or `"unlimited"` (in TOML and on
/// the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteLimit {
    /// At most this many bytes.
    Bytes(u64),
    /// No limit.
    Unlimited,
}

impl ByteLimit {
    /// Whether `n` bytes are over the limit.
    pub fn exceeded_by(self, n: u64) -> bool {
        matches!(self, Self::Bytes(max) if n > max)
    }
}

impl std::fmt::Display for ByteLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(n) => write!(f, "{n}"),
            Self::Unlimited => f.write_str("unlimited"),
        }
    }
}

impl std::str::FromStr for ByteLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(Self::Unlimited);
        }
        s.parse()
            .map(Self::Bytes)
            .map_err(|_| format!("expected a number of bytes or \"unlimited\", not {s:?}"))
    }
}

impl Serialize for ByteLimit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Bytes(n) => s.serialize_u64(*n),
            Self::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for ByteLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Self::Bytes(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}
