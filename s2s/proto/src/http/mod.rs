//! Sans-IO pieces of the HTTP(S) Site-to-Site transport (docs/site-to-site.md §7).
//!
//! No HTTP client here: this module says *what* to request (paths, headers, query
//! parameters) and classifies NiFi's answers; the bodies are the [`stream`](crate::stream) layer's.
//! The caller moves the bytes with whatever HTTP stack it has.
//!
//! ```text
//!  POST {api}/data-transfer/{dir}/{port}/transactions        → 201 Location + TTL
//!  POST {Location}/flow-files  (FlowFileWriter bytes)         → 202 CRC (decimal)
//!  GET  {Location}/flow-files  (bytes → FlowFileReader)       → 202 data | 200 nothing
//!  PUT  {Location}            every TTL/2 while open          → 200
//!  DELETE {Location}?responseCode=12[&checksum=crc]           → 200 JSON responseCode
//! ```
//!
//! Bodies are the transaction's FlowFile stream without any `RC` markers: FlowFiles back to
//! back, each in its own compression envelope when compression is on, written by
//! [`FlowFileWriter`](crate::stream::FlowFileWriter) and read by
//! [`FlowFileReader`](crate::stream::FlowFileReader) exactly as on RAW (same CRC32).

use crate::codec::response_code::ResponseCode;

/// The transport protocol version this client speaks (and NiFi currently answers).
pub const PROTOCOL_VERSION: u32 = 1;

/// Header names (lower case; HTTP header names are case-insensitive).
pub mod headers {
    /// Transport version; mandatory on every data-transfer and peers request.
    pub const PROTOCOL_VERSION: &str = "x-nifi-site-to-site-protocol-version";
    /// Response: transaction TTL in seconds.
    pub const SERVER_TRANSACTION_TTL: &str = "x-nifi-site-to-site-server-transaction-ttl";
    /// Response to create: `transaction-url`.
    pub const LOCATION_URI_INTENT: &str = "x-location-uri-intent";
    /// `true` = the GZIP handshake property.
    pub const USE_COMPRESSION: &str = "x-nifi-site-to-site-use-compression";
    /// `REQUEST_EXPIRATION_MILLIS`.
    pub const REQUEST_EXPIRATION: &str = "x-nifi-site-to-site-request-expiration";
    /// `BATCH_COUNT`.
    pub const BATCH_COUNT: &str = "x-nifi-site-to-site-batch-count";
    /// `BATCH_SIZE`.
    pub const BATCH_SIZE: &str = "x-nifi-site-to-site-batch-size";
    /// `BATCH_DURATION` (ms).
    pub const BATCH_DURATION: &str = "x-nifi-site-to-site-batch-duration";
}

/// Which way data flows, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Into an input port.
    Send,
    /// Out of an output port.
    Receive,
}

impl Direction {
    /// The `{dir}` path segment.
    pub fn segment(self) -> &'static str {
        match self {
            Self::Send => "input-ports",
            Self::Receive => "output-ports",
        }
    }
}

/// The handshake settings NiFi reads from request headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandshakeHeaders {
    /// GZIP.
    pub compression: bool,
    /// REQUEST_EXPIRATION_MILLIS (0 = not sent).
    pub request_expiration_millis: u64,
    /// BATCH_COUNT (0 = not sent).
    pub batch_count: u32,
    /// BATCH_SIZE (0 = not sent).
    pub batch_size: u64,
    /// BATCH_DURATION ms (0 = not sent).
    pub batch_duration_millis: u64,
}

impl HandshakeHeaders {
    /// `(name, value)` pairs to put on every request of a transaction: NiFi re-validates the
    /// handshake on each request until the transaction holds data.
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![(headers::PROTOCOL_VERSION, PROTOCOL_VERSION.to_string())];
        if self.compression {
            h.push((headers::USE_COMPRESSION, "true".into()));
        }
        let mut opt = |name, v: u64| {
            if v > 0 {
                h.push((name, v.to_string()));
            }
        };
        opt(headers::REQUEST_EXPIRATION, self.request_expiration_millis);
        opt(headers::BATCH_COUNT, u64::from(self.batch_count));
        opt(headers::BATCH_SIZE, self.batch_size);
        opt(headers::BATCH_DURATION, self.batch_duration_millis);
        h
    }
}

/// `{api}/data-transfer/{dir}/{port}/transactions`, where `api` ends in `/nifi-api`.
pub fn create_transaction_url(api_base: &str, direction: Direction, port_id: &str) -> String {
    format!(
        "{}/data-transfer/{}/{}/transactions",
        api_base.trim_end_matches('/'),
        direction.segment(),
        port_id
    )
}

/// `{api}/site-to-site/peers`.
pub fn peers_url(api_base: &str) -> String {
    format!("{}/site-to-site/peers", api_base.trim_end_matches('/'))
}

/// `{Location}/flow-files`.
pub fn flow_files_url(location: &str) -> String {
    format!("{}/flow-files", location.trim_end_matches('/'))
}

/// `DELETE` URL committing a SEND: `?responseCode=12` only (no checksum on input ports).
pub fn commit_send_url(location: &str) -> String {
    format!(
        "{location}?responseCode={}",
        ResponseCode::CONFIRM_TRANSACTION.0
    )
}

/// `DELETE` URL telling NiFi the CRC it returned for a SEND did not match ours.
pub fn bad_checksum_url(location: &str) -> String {
    format!("{location}?responseCode={}", ResponseCode::BAD_CHECKSUM.0)
}

/// `DELETE` URL committing a RECEIVE with the client-side CRC32.
pub fn commit_receive_url(location: &str, checksum: u32) -> String {
    format!(
        "{location}?responseCode={}&checksum={checksum}",
        ResponseCode::CONFIRM_TRANSACTION.0
    )
}

/// `DELETE` URL cancelling a transaction.
pub fn cancel_url(location: &str) -> String {
    format!(
        "{location}?responseCode={}",
        ResponseCode::CANCEL_TRANSACTION.0
    )
}

/// Parses the TTL header (seconds). Bounded: absurd values are refused.
pub fn parse_ttl(value: &str) -> Option<u64> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&s| s > 0 && s <= 86_400)
}

/// The server's CRC in the body of `202` to `POST …/flow-files`.
pub fn parse_checksum(body: &str) -> Option<u32> {
    body.trim().parse::<u32>().ok()
}

/// The interval at which a client refreshes an open transaction: half the TTL, as NiFi's
/// own maintenance runs every TTL/2 and expires transactions idle for more than TTL.
pub fn keep_alive_interval_millis(ttl_secs: u64) -> u64 {
    (ttl_secs * 1000 / 2).max(500)
}

/// What an error answer from NiFi means for the client (docs/site-to-site.md §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Our request was malformed or carried bad handshake values (400): fatal.
    BadRequest,
    /// Not authenticated or not authorized (401, 403 policy): fatal.
    Unauthorized,
    /// HTTP S2S is disabled on this host (403 text): fatal.
    HttpDisabled,
    /// No such port (404 JSON 200, or 404 text before the handshake): fatal.
    UnknownPort,
    /// The transaction is unknown: it expired (TTL) and NiFi rolled it back: retryable.
    TransactionNotFound,
    /// The port exists but is not running (503 JSON 201): retryable after a backoff.
    PortNotRunning,
    /// The port's destination is full (503 JSON 202): retryable after a backoff.
    DestinationFull,
    /// NiFi failed internally (500) or another unexpected status: retryable.
    ServerError,
    /// NiFi rejected a request body encoding (415, NiFi ≥ 2.11): fatal.
    UnsupportedEncoding,
}

impl Failure {
    /// Whether trying again (later, maybe against another peer) may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::TransactionNotFound
                | Self::PortNotRunning
                | Self::DestinationFull
                | Self::ServerError
        )
    }
}

/// Classifies an error answer: `status` and, when the body was a JSON object with one, its
/// `responseCode`. The message is for humans and does not take part.
pub fn classify(status: u16, response_code: Option<u8>, body_text: &str) -> Failure {
    match (status, response_code) {
        (400, _) => Failure::BadRequest,
        (401, _) => Failure::Unauthorized,
        (403, _) if body_text.contains("not enabled") => Failure::HttpDisabled,
        (403, _) => Failure::Unauthorized,
        (404, Some(200)) => Failure::UnknownPort,
        (404, Some(_)) if body_text.contains("Transaction") => Failure::TransactionNotFound,
        (404, Some(_)) => Failure::UnknownPort,
        (404, None) if body_text.contains("ransaction") => Failure::TransactionNotFound,
        (404, None) => Failure::UnknownPort,
        (503, Some(201)) => Failure::PortNotRunning,
        (503, Some(202)) => Failure::DestinationFull,
        (415, _) => Failure::UnsupportedEncoding,
        _ => Failure::ServerError,
    }
}

#[cfg(test)]
mod tests;
