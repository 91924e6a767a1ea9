//! `POST /v1/flowfiles`: a JSON array of records, one result per record (PROTOCOL.md §8.1).
//! The array is split into elements as it arrives; each is parsed, checked and staged on its own,
//! so a batch is never held whole (one record's text is).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Decode, Fail, Upload};
use crate::auth::{FixedAttributes, presented_token};
use crate::limits::{Limits, apply_fixed_attributes};
use crate::record::{FlowFile, Outcome, Reason, Record};
use crate::server::AppState;
use crate::stage::Stager;

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

/// Splits a JSON array arriving in pieces into its elements, without parsing them: tracks strings,
/// escapes and nesting depth only.
#[derive(Debug, Default)]
struct ArraySplitter {
    state: Split,
    depth: u32,
    in_string: bool,
    escaped: bool,
    element: Vec<u8>,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum Split {
    /// Before `[`.
    #[default]
    Start,
    /// Between elements (after `[` or `,`).
    Between,
    /// Inside an element.
    Element,
    /// After an element, before `,` or `]`.
    After,
    /// After `]`.
    Done,
}

impl ArraySplitter {
    /// Feeds bytes; calls `element` with every complete element's text. `max` bounds one element.
    fn feed(
        &mut self,
        data: &[u8],
        max: usize,
        mut element: impl FnMut(&[u8]) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        let bad = |m: &str| Fail::Malformed(format!("body must be a JSON array of records: {m}"));
        for &b in data {
            match self.state {
                Split::Start => match b {
                    b'[' => self.state = Split::Between,
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    0xEF | 0xBB | 0xBF => {} // a UTF-8 byte order mark
                    _ => return Err(bad("it does not start with '['")),
                },
                Split::Between | Split::After if b.is_ascii_whitespace() => {}
                Split::Between if b == b']' && self.element.is_empty() => self.state = Split::Done,
                Split::After if b == b']' => self.state = Split::Done,
                Split::After if b == b',' => self.state = Split::Between,
                Split::After => return Err(bad("expected ',' or ']' after an element")),
                Split::Between | Split::Element => {
                    if self.state == Split::Between {
                        if b == b',' || b == b']' {
                            return Err(bad("empty element"));
                        }
                        self.state = Split::Element;
                    }
                    let ends_scalar = !self.in_string
                        && self.depth == 0
                        && (b == b',' || b == b']' || b.is_ascii_whitespace());
                    if ends_scalar {
                        element(&std::mem::take(&mut self.element))?;
                        self.state = match b {
                            b',' => Split::Between,
                            b']' => Split::Done,
                            _ => Split::After,
                        };
                        continue;
                    }
                    self.element.push(b);
                    if self.element.len() > max {
                        return Err(Fail::Limit(format!(
                            "a JSON record of more than {max} bytes (2 × max_content_bytes + 1 MiB)"
                        )));
                    }
                    if self.in_string {
                        if self.escaped {
                            self.escaped = false;
                        } else if b == b'\\' {
                            self.escaped = true;
                        } else if b == b'"' {
                            self.in_string = false;
                        }
                        continue;
                    }
                    match b {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth = self
                                .depth
                                .checked_sub(1)
                                .ok_or_else(|| bad("unbalanced brackets"))?;
                            if self.depth == 0 {
                                element(&std::mem::take(&mut self.element))?;
                                self.state = Split::After;
                            }
                        }
                        _ => {}
                    }
                }
                Split::Done if b.is_ascii_whitespace() => {}
                Split::Done => return Err(bad("data after the closing ']'")),
            }
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), Fail> {
        if self.state == Split::Done {
            Ok(())
        } else {
            Err(Fail::Malformed(
                "body must be a JSON array of records: it ends before the closing ']'".into(),
            ))
        }
    }
}

/// A JSON batch: each element is parsed, checked and staged as soon as it is complete.
struct Batch {
    split: ArraySplitter,
    fixed: FixedAttributes,
    limits: Limits,
    /// Per element: `None` if staged (its result comes from the pipeline), else its rejection.
    results: Vec<Option<RecordResult>>,
    /// Element index of every staged record, in order.
    staged: Vec<usize>,
}

impl Decode for Batch {
    async fn feed(&mut self, piece: Bytes, stager: &mut Stager) -> Result<(), Fail> {
        let max = self.limits.max_content_bytes.saturating_mul(2) + (1 << 20);
        let mut complete = Vec::new();
        self.split.feed(&piece, max, |text| {
            complete.push(text.to_vec());
            Ok(())
        })?;
        for text in complete {
            let index = self.results.len();
            if index >= self.limits.max_records {
                return Err(Fail::Limit(format!(
                    "more than max_records = {} records",
                    self.limits.max_records
                )));
            }
            let checked = serde_json::from_slice(&text)
                .map_err(|e| (Reason::Malformed, format!("invalid record: {e}")))
                .and_then(|v| to_flowfile(v).map_err(|m| (Reason::Malformed, m)))
                .and_then(|mut ff| {
                    apply_fixed_attributes(&mut ff.attributes, &self.fixed);
                    self.limits.check(&ff).map_err(|m| (Reason::Limit, m))?;
                    Ok(ff)
                });
            match checked {
                Ok(ff) => {
                    stager.push(ff.attributes, ff.content).await?;
                    self.staged.push(index);
                    self.results.push(None);
                }
                Err((reason, m)) => self.results.push(Some(rejected(index, reason, m))),
            }
        }
        Ok(())
    }

    async fn finish(&mut self, _stager: &mut Stager) -> Result<(), Fail> {
        self.split.finish()
    }
}

pub(crate) async fn post_flowfiles(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let up = Upload {
        st: &st,
        peer,
        path: "/v1/flowfiles",
    };
    let Some(fixed) = st
        .auth
        .check(presented_token(&headers, query.as_deref()).as_deref())
    else {
        up.reject("UNAUTHORIZED", None, "missing or invalid bearer token");
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or invalid bearer token".into(),
        );
    };
    let Ok(_slot) = st.http_slots.clone().try_acquire_owned() else {
        up.reject("CONNECTION_LIMIT", None, "too many concurrent requests");
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "too many concurrent requests".into(),
        );
        let (k, v) = super::retry_after_header(std::time::Duration::from_secs(1));
        r.headers_mut().insert(k, v);
        return r;
    };
    let gzipped = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let mut batch = Batch {
        split: ArraySplitter::default(),
        fixed,
        limits: st.cfg.limits.clone(),
        results: Vec::new(),
        staged: Vec::new(),
    };
    let records = match up.receive(&headers, body, gzipped, &mut batch).await {
        Ok(r) => r,
        Err(refusal) => {
            let (status, reason) = match refusal.fail {
                Fail::Limit(_) => (StatusCode::PAYLOAD_TOO_LARGE, "LIMIT"),
                Fail::Malformed(_) | Fail::Cut(_) => (StatusCode::BAD_REQUEST, "MALFORMED"),
                Fail::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
            };
            let body = Json(serde_json::json!({
                "status": "rejected", "reason": reason, "message": refusal.fail.message()
            }));
            return refusal.respond(status, body);
        }
    };
    let Batch {
        mut results,
        staged: indices,
        ..
    } = batch;
    let rejected_count = results.iter().filter(|r| r.is_some()).count();
    if rejected_count > 0 {
        up.reject(
            "MALFORMED",
            None,
            &format!("{rejected_count} of {} records rejected", results.len()),
        );
    }
    if records.is_empty() {
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
    st.metrics.received("json", &records);
    let total: u64 = records.iter().map(Record::len).sum();
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
        Outcome::Retry {
            after,
            reason,
            ref message,
        } => {
            up.reject(reason.name(), Some(total), message);
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
        Outcome::Rejected {
            reason,
            ref message,
        } => {
            up.reject(reason.name(), Some(total), message);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn split(body: &[u8], step: usize, max: usize) -> Result<Vec<String>, Fail> {
        let mut s = ArraySplitter::default();
        let mut out = Vec::new();
        for piece in body.chunks(step) {
            s.feed(piece, max, |e| {
                out.push(String::from_utf8(e.to_vec()).expect("utf-8"));
                Ok(())
            })?;
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn array_elements_at_any_split() {
        let body = br#" [ {"a":"x]},\"{["} , {"b":[1,{"c":2}]},"s\"",7 ,{} ]  "#;
        for step in 1..body.len() {
            let got = split(body, step, 1000).unwrap_or_else(|e| panic!("step {step}: {e:?}"));
            assert_eq!(
                got,
                [
                    r#"{"a":"x]},\"{["}"#,
                    r#"{"b":[1,{"c":2}]}"#,
                    r#""s\"""#,
                    "7",
                    "{}"
                ],
                "step {step}"
            );
        }
        assert_eq!(split(b"[]", 1, 10).map(|v| v.len()).ok(), Some(0));
        for bad in [
            &b"{\"a\":1}"[..],
            b"[{\"a\":1}",
            b"[{\"a\":1}] x",
            b"[,]",
            b"[1,,2]",
            b"[{}}]",
        ] {
            assert!(
                matches!(split(bad, 2, 100), Err(Fail::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            split(br#"[{"a":"0123456789"}]"#, 3, 10),
            Err(Fail::Limit(_))
        ));
    }
}
