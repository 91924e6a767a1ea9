//! Ingest adapters: WebSocket (`/v1/ws`), JSON (`/v1/flowfiles`), ListenHTTP-compatible.

pub(crate) mod json;
pub(crate) mod listen;
pub(crate) mod ws;

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `Retry-After` in whole seconds, rounded up (at least 1).
pub(crate) fn retry_after_header(after: Duration) -> (header::HeaderName, HeaderValue) {
    let secs = after.as_millis().div_ceil(1000).max(1);
    (
        header::RETRY_AFTER,
        HeaderValue::from(u64::try_from(secs).unwrap_or(u64::MAX)),
    )
}

/// A plain-text error answer.
pub(crate) fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    m.push('\n');
    (status, m).into_response()
}
