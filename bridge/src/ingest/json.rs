//! `POST /v1/flowfiles`: a JSON array of records, one result per record (PROTOCOL.md §8.1).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::auth::presented_token;
use crate::limits::apply_fixed_attributes;
use crate::record::{FlowFile, Outcome, Reason};
use crate::server::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecord {
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    content: Option<String>,
    content_base64: Option<String>,
}

/// One element's result.
#[derive(Debug, Serialize)]
struct RecordResult {
    index: usize,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Answer {
    status: &'static str,
    results: Vec<RecordResult>,
}

fn error(status: StatusCode, reason: &'static str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "status": "rejected", "reason": reason, "message": message })),
    )
        .into_response()
}

pub(crate) async fn post_flowfiles(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(fixed) = st
        .auth
        .check(presented_token(&headers, query.as_deref()).as_deref())
    else {
        st.metrics.reject("UNAUTHORIZED");
        tracing::warn!(%peer, "rejected /v1/flowfiles: bad or missing token");
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or invalid bearer token".into(),
        );
    };
    let Ok(_slot) = st.http_slots.clone().try_acquire_owned() else {
        st.metrics.reject("CONNECTION_LIMIT");
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "too many concurrent requests".into(),
        );
        let (k, v) = super::retry_after_header(std::time::Duration::from_secs(1));
        r.headers_mut().insert(k, v);
        return r;
    };
    let items: Vec<serde_json::Value> = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            st.metrics.reject("MALFORMED");
            tracing::warn!(%peer, error = %e, "rejected /v1/flowfiles: invalid JSON");
            return error(
                StatusCode::BAD_REQUEST,
                "MALFORMED",
                format!("body must be a JSON array of records: {e}"),
            );
        }
    };
    let limits = &st.cfg.limits;
    if items.len() > limits.max_records {
        st.metrics.reject("LIMIT");
        return error(
            StatusCode::BAD_REQUEST,
            "LIMIT",
            format!(
                "{} records exceed max_records = {}",
                items.len(),
                limits.max_records
            ),
        );
    }
    let mut results: Vec<Option<RecordResult>> = Vec::with_capacity(items.len());
    let mut accepted: Vec<(usize, FlowFile)> = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match to_flowfile(item) {
            Ok(mut ff) => {
                apply_fixed_attributes(&mut ff, &fixed);
                match limits.check(&ff) {
                    Ok(()) => {
                        accepted.push((index, ff));
                        results.push(None);
                    }
                    Err(m) => results.push(Some(rejected(index, Reason::Limit, m))),
                }
            }
            Err(m) => results.push(Some(rejected(index, Reason::Malformed, m))),
        }
    }
    let rejected_count = results.iter().filter(|r| r.is_some()).count();
    if rejected_count > 0 {
        st.metrics.reject("MALFORMED");
        tracing::warn!(%peer, rejected = rejected_count, "rejected records in /v1/flowfiles");
    }
    if accepted.is_empty() {
        let results: Vec<_> = results.into_iter().flatten().collect();
        let status = if results.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        let word = if results.is_empty() {
            "committed"
        } else {
            "rejected"
        };
        return (
            status,
            Json(Answer {
                status: word,
                results,
            }),
        )
            .into_response();
    }
    let (indices, records): (Vec<usize>, Vec<FlowFile>) = accepted.into_iter().unzip();
    st.metrics.received("json", &records);
    let outcome = st.pipeline.accept(records).await;
    for i in indices {
        results[i] = Some(match &outcome {
            Outcome::Committed => RecordResult {
                index: i,
                status: "committed",
                reason: None,
                message: None,
                retry_after_ms: None,
            },
            Outcome::Retry {
                after,
                reason,
                message,
            } => RecordResult {
                index: i,
                status: "retry",
                reason: Some(reason.name()),
                message: Some(message.clone()),
                retry_after_ms: Some(u64::try_from(after.as_millis()).unwrap_or(u64::MAX)),
            },
            Outcome::Rejected { reason, message } => rejected(i, *reason, message.clone()),
        });
    }
    let results: Vec<RecordResult> = results.into_iter().flatten().collect();
    match outcome {
        Outcome::Committed => {
            let status = if rejected_count == 0 {
                StatusCode::OK
            } else {
                StatusCode::MULTI_STATUS
            };
            (
                status,
                Json(Answer {
                    status: "committed",
                    results,
                }),
            )
                .into_response()
        }
        Outcome::Retry { after, reason, .. } => {
            st.metrics.reject(reason.name());
            let status = match reason {
                Reason::Backpressure | Reason::TooManyInflight => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (
                status,
                [super::retry_after_header(after)],
                Json(Answer {
                    status: "retry",
                    results,
                }),
            )
                .into_response()
        }
        Outcome::Rejected { reason, .. } => {
            st.metrics.reject(reason.name());
            (
                StatusCode::BAD_GATEWAY,
                Json(Answer {
                    status: "rejected",
                    results,
                }),
            )
                .into_response()
        }
    }
}

fn rejected(index: usize, reason: Reason, message: String) -> RecordResult {
    RecordResult {
        index,
        status: "rejected",
        reason: Some(reason.name()),
        message: Some(message),
        retry_after_ms: None,
    }
}

fn to_flowfile(item: serde_json::Value) -> Result<FlowFile, String> {
    let rec: JsonRecord =
        serde_json::from_value(item).map_err(|e| format!("invalid record: {e}"))?;
    let content = match (rec.content, rec.content_base64) {
        (Some(_), Some(_)) => return Err("give either content or content_base64, not both".into()),
        (Some(text), None) => Bytes::from(text),
        (None, Some(b64)) => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| format!("content_base64 is not valid base64: {e}"))?,
        ),
        (None, None) => Bytes::new(),
    };
    Ok(FlowFile {
        attributes: rec.attributes.into_iter().collect(),
        content,
    })
}
