//! The client's error type. The `#[wasm_bindgen]` layer turns it into a JS `Error` whose `name` is
//! the variant's kind, so application code can branch on `err.name`.

use wasm_bindgen::JsValue;

/// Everything that can go wrong in the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// IndexedDB refused a request or a transaction (the DOMException's name and message).
    #[error("IndexedDB: {0}")]
    Idb(String),
    /// The transaction was aborted (by the app, by an error, or by the browser); nothing of it was
    /// written, neither data nor outbox rows.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// The arguments do not fit the database (unknown store, bad schema, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A record is larger than the bridge accepts; it stays in the outbox until the bridge's limits
    /// change or the app removes it.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The bridge broke `PROTOCOL.md` (a bad ack, a missing hello).
    #[error("bridge protocol: {0}")]
    Protocol(String),
    /// The connection to the bridge failed or closed; retried with backoff.
    #[error("bridge connection: {0}")]
    Connection(String),
    /// The bridge rejected a batch for good (reason code and its message).
    #[error("rejected by the bridge ({reason}): {message}")]
    Rejected {
        /// Reason name from `PROTOCOL.md` §5.
        reason: &'static str,
        /// The bridge's text.
        message: String,
    },
    /// `flush()` did not finish in the time given.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The client was closed.
    #[error("client closed")]
    Closed,
    /// A browser API failed in an unexpected way.
    #[error("browser: {0}")]
    Js(String),
}

impl Error {
    /// Short stable name, used as the JS error's `name`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Idb(_) => "IdbError",
            Self::Aborted(_) => "AbortError",
            Self::Invalid(_) => "InvalidArgumentError",
            Self::Limit(_) => "LimitError",
            Self::Protocol(_) => "ProtocolError",
            Self::Connection(_) => "ConnectionError",
            Self::Rejected { .. } => "RejectedError",
            Self::Timeout(_) => "TimeoutError",
            Self::Closed => "ClosedError",
            Self::Js(_) => "BrowserError",
        }
    }

    /// Whether retrying later can succeed (the architecture's one retry classification).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connection(_) | Self::Timeout(_) | Self::Protocol(_)
        )
    }

    /// Wraps a thrown JS value (usually a `DOMException`) as `Idb`.
    pub(crate) fn idb(value: &JsValue) -> Self {
        Self::Idb(describe(value))
    }

    /// Wraps a thrown JS value as `Js`.
    pub(crate) fn js(value: &JsValue) -> Self {
        Self::Js(describe(value))
    }
}

/// `name: message` of a thrown JS value, without panicking on odd values.
pub(crate) fn describe(value: &JsValue) -> String {
    use wasm_bindgen::JsCast;
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        return format!("{}: {}", String::from(e.name()), String::from(e.message()));
    }
    if let Some(e) = value.dyn_ref::<web_sys::DomException>() {
        return format!("{}: {}", e.name(), e.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}
