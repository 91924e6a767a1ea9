//! Input limits, checked on every ingest path before anything is forwarded or spooled.

use serde::{Deserialize, Serialize};

use crate::record::FlowFile;

/// Limits on what clients may send. Every value is documented with its default; they are announced
/// to WebSocket clients in the `hello` message (PROTOCOL.md §3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest WebSocket message / HTTP request body, in bytes. Default 8 MiB.
    pub max_message_bytes: usize,
    /// Most FlowFiles in one batch or request. Default 10 000.
    pub max_records: usize,
    /// Most attributes per FlowFile, counting the token's fixed attributes. Default 256.
    pub max_attributes: usize,
    /// Largest key + value of one attribute, in UTF-8 bytes. Default 65 536.
    pub max_attribute_bytes: usize,
    /// Largest content of one FlowFile, in bytes. Default 8 MiB.
    pub max_content_bytes: usize,
    /// Most unacknowledged batches per WebSocket connection. Default 16.
    pub max_inflight: usize,
    /// Most concurrent WebSocket connections; more are refused with 503. Default 1024.
    pub max_connections: usize,
    /// Most concurrent HTTP ingest requests; more are refused with 503. Default 256.
    pub max_http_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 8 << 20,
            max_records: 10_000,
            max_attributes: 256,
            max_attribute_bytes: 64 << 10,
            max_content_bytes: 8 << 20,
            max_inflight: 16,
            max_connections: 1024,
            max_http_requests: 256,
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

    /// Checks a whole batch: record count and each record.
    pub fn check_batch(&self, records: &[FlowFile]) -> Result<(), String> {
        self.announced()
            .check_batch(records)
            .map_err(|e| e.to_string())
    }
}

/// Adds the token's fixed attributes, which override the client's ones with the same key so a
/// client cannot impersonate another.
pub fn apply_fixed_attributes(ff: &mut FlowFile, fixed: &[(String, String)]) {
    if fixed.is_empty() {
        return;
    }
    ff.attributes
        .retain(|(k, _)| !fixed.iter().any(|(fk, _)| fk == k));
    ff.attributes.extend(fixed.iter().cloned());
}
