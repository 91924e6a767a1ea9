//! `POST /v1/flowfiles`: a JSON array of records, one result per record (PROTOCOL.md §8.1).
//! The array is split into elements as it arrives; each is parsed, checked and staged on its own,
//! so a batch is never held whole (one record's text is).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::admission::{Admission, Stamp, retry_after_header};
use super::{Decode, Fail};
use crate::record::{FlowFile, Outcome, Reason};
use crate::stage::Stager;
use crate::state::AppState;

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
    stamp: Stamp,
    /// Per element: `None` if staged (its result comes from the pipeline), else its rejection.
    results: Vec<Option<RecordResult>>,
    /// Element index of every staged record, in order.
    staged: Vec<usize>,
}

impl Decode for Batch {
    async fn feed(&mut self, piece: Bytes, stager: &mut Stager) -> Result<(), Fail> {
        let limits = self.stamp.limits();
        let max = limits.max_content_bytes.saturating_mul(2) + (1 << 20);
        let mut complete = Vec::new();
        self.split.feed(&piece, max, |text| {
            complete.push(text.to_vec());
            Ok(())
        })?;
        for text in complete {
            let index = self.results.len();
            if index >= limits.max_records {
                return Err(Fail::Limit(format!(
                    "more than max_records = {} records",
                    limits.max_records
                )));
            }
            let checked = serde_json::from_slice(&text)
                .map_err(|e| (Reason::Malformed, format!("invalid record: {e}")))
                .and_then(|v| to_flowfile(v).map_err(|m| (Reason::Malformed, m)))
                .and_then(|mut ff| {
                    self.stamp
                        .flowfile(&mut ff)
                        .map_err(|m| (Reason::Limit, m))?;
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

/// Content codings this endpoint reads (anything else is 415).
fn coding(headers: &HeaderMap) -> Result<bool, String> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    let v = v.to_str().unwrap_or("?").trim();
    if v.eq_ignore_ascii_case("gzip") {
        Ok(true)
    } else if v.is_empty() || v.eq_ignore_ascii_case("identity") {
        Ok(false)
    } else {
        Err(format!(
            "Content-Encoding {v:?} is not supported (gzip or none)"
        ))
    }
}

/// A flowfile package sent here instead of to the ListenHTTP path (415).
fn packaged(headers: &HeaderMap, base: &str) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    ct.trim()
        .to_ascii_lowercase()
        .starts_with("application/flowfile")
        .then(|| {
            format!("Content-Type {ct:?}: this endpoint takes a JSON array; flowfile packages go to {base}")
        })
}

pub(crate) async fn post_flowfiles(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let adm = Admission::new(st, peer, "/v1/flowfiles", "json");
    let st = &adm.st;
    let admitted = match adm.admit_http(&headers, query.as_deref()) {
        Ok(a) => a,
        Err(d) => return d.json(),
    };
    let gzipped = match coding(&headers) {
        Ok(g) => g,
        Err(m) => return adm.unsupported(m).json(),
    };
    if let Some(m) = packaged(&headers, &st.cfg.listen_http.base_path) {
        return adm.unsupported(m).json();
    }
    let mut batch = Batch {
        split: ArraySplitter::default(),
        stamp: admitted.stamp.clone(),
        results: Vec::new(),
        staged: Vec::new(),
    };
    let records = match adm.receive(&headers, body, gzipped, &mut batch).await {
        Ok(r) => r,
        Err(refusal) => {
            let status = match refusal.fail {
                Fail::Limit(_) => StatusCode::PAYLOAD_TOO_LARGE,
                Fail::Malformed(_) | Fail::Cut(_) => StatusCode::BAD_REQUEST,
                Fail::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let body = Json(serde_json::json!({
                "status": "rejected", "reason": refusal.fail.reason(),
                "message": refusal.fail.message()
            }));
            return refusal.respond(status, body);
        }
    };
    let Batch {
        mut results,
        staged: indices,
        ..
    } = batch;
    // Rejected elements, counted each under its own reason (MALFORMED, LIMIT).
    let rejected_count = results.iter().filter(|r| r.is_some()).count();
    let mut by_reason: Vec<(&'static str, u64)> = Vec::new();
    for reason in results.iter().flatten().filter_map(|r| r.reason) {
        match by_reason.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => by_reason.push((reason, 1)),
        }
    }
    for (reason, n) in by_reason {
        adm.reject_n(
            reason,
            n,
            None,
            &format!("{n} of {} records rejected", results.len()),
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
    adm.received(&records);
    let outcome = adm.forward(records, "").await;
    drop(admitted);
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
            let status = match reason {
                Reason::Backpressure | Reason::TooManyInflight => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (
                status,
                [retry_after_header(after)],
                Json(Answer {
                    status: "retry",
                    results,
                }),
            )
                .into_response()
        }
        Outcome::Rejected { .. } => (
            StatusCode::BAD_GATEWAY,
            Json(Answer {
                status: "rejected",
                results,
            }),
        )
            .into_response(),
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
