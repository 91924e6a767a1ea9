//! Ingest adapters: WebSocket (`/v1/ws`), JSON (`/v1/flowfiles`), ListenHTTP-compatible.
//!
//! Every handler admits its clients through [`admission`] (auth → connection slot → fixed
//! attributes → limits → metrics → pipeline, and every rejection logged and counted there). The
//! handlers share that and this module's streaming receive, never each other: `ws`, `json` and
//! `listen` use `crate::state::AppState`, [`admission`] and the leaf modules (`body`, `conn`,
//! `ffv1`, [`listen_state`]) only.
//!
//! The two HTTP paths share one streaming receive ([`Admission::receive`]): the body is read piece
//! by piece ([`body::BodyReader`]: `max_body_bytes`, gunzip), handed to a path-specific
//! [`Decode`]r that turns it into records through a [`Stager`] (small content in memory, large
//! content in a staging file), and only a body that ended cleanly yields records.

pub(crate) mod admission;
mod body;
pub(crate) mod conn;
pub(crate) mod ffv1;
pub(crate) mod json;
pub(crate) mod listen;
pub(crate) mod listen_state;
pub(crate) mod reject_log;
pub(crate) mod ws;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::record::Record;
use crate::stage::Stager;
pub(crate) use admission::Admission;
use body::{BodyError, BodyReader};
pub(crate) use conn::{ClientDn, ConnAcceptor, ConnGuard};
use listen_state::Throttle;

/// After a refusal, the rest of a body is read and dropped up to this many bytes (so the client
/// reads the answer, not a broken pipe); a longer body gets the answer and a closed connection.
const DISCARD_MAX: u64 = 1 << 30;
/// ... and for at most this long.
const DISCARD_TIME: Duration = Duration::from_secs(60);
/// After a refusal for size (`max_body_bytes`), at most this many more bytes are read and dropped.
const LIMIT_DISCARD_MAX: u64 = 16 << 20;

/// A plain-text error answer.
pub(crate) fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    m.push('\n');
    (status, m).into_response()
}

/// Why an upload failed.
#[derive(Debug)]
pub(crate) enum Fail {
    /// A configured limit (reason LIMIT).
    Limit(String),
    /// The body does not decode (reason MALFORMED).
    Malformed(String),
    /// The connection ended before the body did (reason TRUNCATED); nothing is kept.
    Cut(String),
    /// Staging failed (reason INTERNAL).
    Io(std::io::Error),
}

impl Fail {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Limit(_) => "LIMIT",
            Self::Malformed(_) => "MALFORMED",
            Self::Cut(_) => "TRUNCATED",
            Self::Io(_) => "INTERNAL",
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            Self::Limit(m) | Self::Malformed(m) | Self::Cut(m) => m.clone(),
            Self::Io(e) => format!("staging the body failed: {e}"),
        }
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// A refused upload, already logged and counted.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) fail: Fail,
    /// The body was not read to its end: answer with `Connection: close`.
    pub(crate) close: bool,
}

impl Refusal {
    /// The answer with `status` and a plain-text message.
    pub(crate) fn respond(&self, status: StatusCode, body: impl IntoResponse) -> Response {
        let mut r = (status, body).into_response();
        if self.close {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

/// Turns body pieces into records (one implementation per body format).
pub(crate) trait Decode {
    /// The next piece of the body.
    async fn feed(&mut self, piece: Bytes, stager: &mut Stager) -> Result<(), Fail>;
    /// The body ended cleanly: finish (and check) the last record.
    async fn finish(&mut self, stager: &mut Stager) -> Result<(), Fail>;
}

impl Admission {
    /// Streams `body` through `dec` into staged records. On failure the rejection is logged and
    /// counted, the staged content is removed, and the rest of the body was read and dropped
    /// (unless it is too long: then [`Refusal::close`]).
    pub(crate) async fn receive(
        &self,
        headers: &HeaderMap,
        body: Body,
        gzip: bool,
        dec: &mut impl Decode,
    ) -> Result<Vec<Record>, Refusal> {
        self.receive_with(headers, body, gzip, dec, None).await
    }

    /// [`Admission::receive`], each (decompressed) piece first waiting for `throttle`.
    pub(crate) async fn receive_with(
        &self,
        headers: &HeaderMap,
        body: Body,
        gzip: bool,
        dec: &mut impl Decode,
        throttle: Option<&Throttle>,
    ) -> Result<Vec<Record>, Refusal> {
        let limit = self.st.cfg.limits.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let mut reader = BodyReader::new(body, limit, gzip)
            .idle_timeout(Duration::from_millis(self.st.cfg.limits.body_timeout_ms));
        if let Some(n) = declared
            && limit.exceeded_by(n)
        {
            let fail = Fail::Limit(format!(
                "body of {n} bytes exceeds max_body_bytes = {limit}"
            ));
            return Err(self.refuse(fail, Some(n), &mut reader, headers).await);
        }
        let mut stager = Stager::new(&self.st.stage_dir);
        let result = async {
            while let Some(piece) = reader.next().await.map_err(|e| match e {
                BodyError::TooLarge(n) => Fail::Limit(format!(
                    "body exceeds max_body_bytes = {limit} ({n} bytes read)"
                )),
                BodyError::Cut(m) => Fail::Cut(format!("body cut off: {m}")),
                BodyError::Gzip(m) => Fail::Malformed(format!("invalid gzip body: {m}")),
            })? {
                if let Some(t) = throttle {
                    t.take(piece.len()).await;
                }
                dec.feed(piece, &mut stager).await?;
            }
            dec.finish(&mut stager).await
        }
        .await;
        let size = Some(reader.received().max(stager.bytes()));
        match result {
            Ok(()) => stager.finish().await.map_err(|e| Refusal {
                fail: self.logged(Fail::Io(e), size),
                close: false,
            }),
            Err(fail) => {
                drop(stager);
                Err(self.refuse(fail, size, &mut reader, headers).await)
            }
        }
    }

    fn logged(&self, fail: Fail, size: Option<u64>) -> Fail {
        self.reject(fail.reason(), size, &fail.message());
        fail
    }

    async fn refuse(
        &self,
        fail: Fail,
        size: Option<u64>,
        reader: &mut BodyReader,
        headers: &HeaderMap,
    ) -> Refusal {
        let fail = self.logged(fail, size);
        if matches!(fail, Fail::Cut(_)) {
            return Refusal { fail, close: true };
        }
        // A client waiting for 100-continue has not sent the body: answer at once (hyper sends
        // no 100 Continue since the body is never polled).
        let expects = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        // An oversized body is not read on: past LIMIT_DISCARD_MAX more bytes the answer goes
        // out with the connection closed (a declared length says so before reading anything).
        let max = if matches!(fail, Fail::Limit(_)) {
            LIMIT_DISCARD_MAX
        } else {
            DISCARD_MAX
        };
        let left = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .map(|n| n.saturating_sub(reader.received()));
        let close = if (expects && reader.received() == 0) || left.is_some_and(|n| n > max) {
            true
        } else {
            !reader.discard(max, DISCARD_TIME).await
        };
        Refusal { fail, close }
    }
}
