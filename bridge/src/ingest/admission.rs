//! The one admission path of every ingest handler (WebSocket, JSON, ListenHTTP):
//!
//! 1. **auth**: the bearer token ([`Admission::authenticate`]; ListenHTTP checks the client
//!    certificate's DN first),
//! 2. **connection slot**: `limits.max_connections` (WebSocket) or `max_http_requests` (HTTP),
//!    refused with 503 and `Retry-After` ([`Admission::admit_http`], [`Admission::ws_slot`]),
//! 3. **fixed attributes**: the token's attributes are added to (and override) every FlowFile,
//! 4. **limits**: checked after the fixed attributes were added ([`Stamp`]),
//! 5. **metrics**: `bridge_records_in_total{source}` / `bridge_bytes_in_total{source}`,
//! 6. **pipeline**: the records go to the [`Pipeline`](crate::pipeline::Pipeline) and its
//!    outcome comes back ([`Admission::forward`]).
//!
//! A WebSocket takes its slot before authenticating (the token may come in the first message,
//! after the upgrade); the HTTP paths authenticate first.
//!
//! Every rejection on every path goes through [`Admission::reject`]: it is counted in
//! `bridge_rejections_total{reason}` (every one) and logged with peer, path, reason and size,
//! rate-limited by [`RejectLog`](super::reject_log::RejectLog): the first rejection of a reason
//! is logged in full, further ones of that reason within 30 s only as one summary line at the
//! window's end ("N more REASON rejections in the last 30 s"), so a flood of bad requests cannot
//! flood the log.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::{FixedAttributes, presented_token};
use crate::limits::{Limits, apply_fixed_attributes};
use crate::record::{FlowFile, Outcome, Record};
use crate::state::AppState;

/// Rejection reasons of the HTTP and connection level (the batch-level ones are
/// [`Reason`](crate::record::Reason) names). Each is a `bridge_rejections_total{reason}` label.
pub(crate) mod reason {
    /// 401 / close 4401: missing or wrong bearer token.
    pub(crate) const UNAUTHORIZED: &str = "UNAUTHORIZED";
    /// 403: the client certificate's DN does not match (ListenHTTP).
    pub(crate) const FORBIDDEN: &str = "FORBIDDEN";
    /// 403 / close 4003: the page's `Origin` is not allowed.
    pub(crate) const FOREIGN_ORIGIN: &str = "FOREIGN_ORIGIN";
    /// 503 with `Retry-After`: `max_connections` / `max_http_requests` reached.
    pub(crate) const CONNECTION_LIMIT: &str = "CONNECTION_LIMIT";
    /// 503 with `Retry-After`: the bridge is draining for shutdown.
    pub(crate) const SHUTTING_DOWN: &str = "SHUTTING_DOWN";
    /// 413 / close 1009 / a rejected ack: a configured limit.
    pub(crate) const LIMIT: &str = "LIMIT";
    /// 415: a body the endpoint does not take (JSON: a content coding other than gzip, a
    /// flowfile package).
    pub(crate) const UNSUPPORTED_MEDIA_TYPE: &str = "UNSUPPORTED_MEDIA_TYPE";
    /// 404: `DELETE` of a hold that does not exist (or expired).
    pub(crate) const UNKNOWN_HOLD: &str = "UNKNOWN_HOLD";
}

/// A refusal before any record was read (auth, slot, shutdown, media type), already logged and
/// counted; each transport renders it its own way.
#[derive(Debug)]
pub(crate) struct Denied {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
}

impl Denied {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    fn busy(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, reason, message)
        }
    }

    fn finish(&self, mut r: Response) -> Response {
        if let Some(after) = self.retry_after {
            let (k, v) = retry_after_header(after);
            r.headers_mut().insert(k, v);
        }
        r
    }

    /// A plain-text answer (ListenHTTP, WebSocket handshake).
    pub(crate) fn text(&self) -> Response {
        self.finish((self.status, format!("{}\n", self.message)).into_response())
    }

    /// A JSON answer `{"status":"rejected","reason":…,"message":…}` (`/v1/flowfiles`).
    pub(crate) fn json(&self) -> Response {
        let body = serde_json::json!({
            "status": "rejected", "reason": self.reason, "message": self.message
        });
        self.finish((self.status, Json(body)).into_response())
    }
}

/// `Retry-After` in whole seconds, rounded up (at least 1).
pub(crate) fn retry_after_header(after: Duration) -> (header::HeaderName, HeaderValue) {
    let secs = after.as_millis().div_ceil(1000).max(1);
    (
        header::RETRY_AFTER,
        HeaderValue::from(u64::try_from(secs).unwrap_or(u64::MAX)),
    )
}

/// Steps 3 and 4: the token's fixed attributes, then the limits.
#[derive(Debug, Clone)]
pub(crate) struct Stamp {
    fixed: FixedAttributes,
    limits: Limits,
}

impl Stamp {
    pub(crate) fn new(fixed: FixedAttributes, limits: &Limits) -> Self {
        Self {
            fixed,
            limits: limits.clone(),
        }
    }

    /// The limits in effect.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A FlowFile whose content is streamed (bounded by `max_body_bytes` alone): its attributes.
    pub(crate) fn attributes(&self, attributes: &mut Vec<(String, String)>) -> Result<(), String> {
        apply_fixed_attributes(attributes, &self.fixed);
        self.limits.check_attributes(attributes)
    }

    /// A FlowFile held in memory: attributes and content.
    pub(crate) fn flowfile(&self, ff: &mut FlowFile) -> Result<(), String> {
        apply_fixed_attributes(&mut ff.attributes, &self.fixed);
        self.limits.check(ff)
    }

    /// A WebSocket batch: the record count and every FlowFile.
    pub(crate) fn batch(&self, records: &mut [FlowFile]) -> Result<(), String> {
        for r in records.iter_mut() {
            apply_fixed_attributes(&mut r.attributes, &self.fixed);
        }
        self.limits.check_batch(records)
    }
}

/// An admitted client: its slot (held until dropped) and its [`Stamp`].
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) stamp: Stamp,
    _slot: OwnedSemaphorePermit,
}

impl Admitted {
    pub(crate) fn new(stamp: Stamp, slot: OwnedSemaphorePermit) -> Self {
        Self { stamp, _slot: slot }
    }
}

/// One client of one ingest path: who (peer), where (path, metrics source).
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    pub(crate) st: AppState,
    pub(crate) peer: SocketAddr,
    /// For logs: `/v1/ws`, `/v1/flowfiles`, `listenhttp`, `listenhttp-hold`.
    pub(crate) path: &'static str,
    /// For `bridge_records_in_total{source}`: `ws`, `json`, `listenhttp`.
    source: &'static str,
}

impl Admission {
    pub(crate) fn new(
        st: AppState,
        peer: SocketAddr,
        path: &'static str,
        source: &'static str,
    ) -> Self {
        Self {
            st,
            peer,
            path,
            source,
        }
    }

    /// Counts one rejection and logs it (rate-limited): the single place every path reports one.
    pub(crate) fn reject(&self, reason: &'static str, size: Option<u64>, detail: &str) {
        self.reject_n(reason, 1, size, detail);
    }

    /// [`Admission::reject`] for `n` rejections of the same reason at once (records of one
    /// request).
    pub(crate) fn reject_n(&self, reason: &'static str, n: u64, size: Option<u64>, detail: &str) {
        record_rejection(&self.st, self.peer, self.path, reason, n, size, detail);
    }

    /// Logs and counts `d`, and hands it back to be answered.
    pub(crate) fn deny(&self, d: Denied) -> Denied {
        self.reject(d.reason, None, &d.message);
        d
    }

    fn open(&self) -> Result<(), Denied> {
        if self.st.closing.is_cancelled() {
            return Err(self.deny(Denied::busy(
                reason::SHUTTING_DOWN,
                "bridge is shutting down",
            )));
        }
        Ok(())
    }

    fn slot(
        &self,
        slots: &std::sync::Arc<Semaphore>,
        what: &str,
    ) -> Result<OwnedSemaphorePermit, Denied> {
        slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.deny(Denied::busy(reason::CONNECTION_LIMIT, what)))
    }

    /// Step 1: the presented token; its fixed attributes, or 401.
    pub(crate) fn authenticate(&self, token: Option<&str>) -> Result<FixedAttributes, Denied> {
        self.st.auth.check(token).ok_or_else(|| {
            self.deny(Denied::new(
                StatusCode::UNAUTHORIZED,
                reason::UNAUTHORIZED,
                "missing or invalid bearer token",
            ))
        })
    }

    /// Steps 1 and 2 for an HTTP request: token (header or `access_token` query), then a
    /// request slot.
    pub(crate) fn admit_http(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Admitted, Denied> {
        self.open()?;
        let fixed = self.authenticate(presented_token(headers, query).as_deref())?;
        let slot = self.slot(
            &self.st.http_slots,
            "too many concurrent requests (max_http_requests)",
        )?;
        Ok(Admitted::new(Stamp::new(fixed, &self.st.cfg.limits), slot))
    }

    /// Step 2 for a WebSocket handshake (before the upgrade; authentication follows on the
    /// socket).
    pub(crate) fn ws_slot(&self) -> Result<OwnedSemaphorePermit, Denied> {
        self.open()?;
        self.slot(
            &self.st.ws_slots,
            "connection limit reached (max_connections)",
        )
    }

    /// A refusal of a body this endpoint does not take (415).
    pub(crate) fn unsupported(&self, message: impl Into<String>) -> Denied {
        self.deny(Denied::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            reason::UNSUPPORTED_MEDIA_TYPE,
            message,
        ))
    }

    /// A refusal with another status (403 DN, 404 unknown hold), logged and counted.
    pub(crate) fn denied(
        &self,
        status: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Denied {
        self.deny(Denied::new(status, reason, message))
    }

    /// Counts records as received (step 5).
    pub(crate) fn received(&self, records: &[Record]) {
        self.st.metrics.received(self.source, records);
    }

    /// Step 6: hands stamped `records` to the pipeline; a retry or rejection is logged and
    /// counted under its reason. Records were counted with [`Admission::received`] before.
    pub(crate) async fn forward(&self, records: Vec<Record>, what: &str) -> Outcome {
        let size: u64 = records.iter().map(Record::len).sum();
        let outcome = self.st.pipeline.accept(records).await;
        if let Outcome::Retry {
            reason, message, ..
        }
        | Outcome::Rejected { reason, message } = &outcome
        {
            let detail = if what.is_empty() {
                message.clone()
            } else {
                format!("{what}: {message}")
            };
            self.reject(reason.name(), Some(size), &detail);
        }
        outcome
    }
}

/// Counts `n` rejections of `reason` and logs them (rate-limited). Used by [`Admission`] and by
/// the origin check, which runs before any handler.
pub(crate) fn record_rejection(
    st: &AppState,
    peer: SocketAddr,
    path: &str,
    reason: &'static str,
    n: u64,
    size: Option<u64>,
    detail: &str,
) {
    st.metrics
        .counter("bridge_rejections_total", &[("reason", reason)])
        .increment(n);
    if st.rejections.note(reason, Instant::now()) {
        tracing::warn!(%peer, path, reason, size, detail, "rejected");
    }
}
