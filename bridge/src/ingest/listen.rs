//! ListenHTTP-compatible ingest (PROTOCOL.md §8.2; NiFi's `ListenHTTPServlet` and
//! `ContentAcknowledgmentServlet` behaviour).
//!
//! * `HEAD {base}` advertises what ListenHTTP does (flowfile-v3, v2, v1, gzip, protocol 3).
//! * `POST {base}`: a plain body is one FlowFile; `application/flowfile-v3` and `-v2` bodies are
//!   sequences of packages, `application/flowfile…` (v1) one tar package; gzip via
//!   `Content-Encoding: gzip` or `flowfile-gzipped: true`; throttled by `max_bytes_per_sec`.
//! * Attributes as ListenHTTP makes them: package attributes (legacy senders' `nf.file.name` /
//!   `nf.file.path` become `filename` / `path`), then a non-blank `filename` header, then request
//!   headers whose name — **as the sender wrote it** — fully matches `header_regex`
//!   (case-sensitive), then `restlistener.remote.source.host`, `restlistener.request.uri`,
//!   `restlistener.remote.user.dn`, `restlistener.remote.issuer.dn` (`none` without a client
//!   certificate); a package's `uuid` never becomes the new FlowFile's.
//! * The hold protocol: with `x-prefer-acknowledge-uri: true` the received FlowFiles are held and
//!   the answer is `303` with `Location: /{base}/holds/{id}` and `x-location-uri-intent:
//!   flowfile-hold`; `DELETE` of that URI forwards them (`200` once NiFi or the spool confirmed);
//!   an unknown id is `404`; a hold not confirmed within `hold_timeout_ms` is released and never
//!   delivered.
//! * With client certificates (TLS listener with `tls.client_ca`), the subject and issuer DN must
//!   fully match `authorized_dn_pattern` / `authorized_issuer_dn_pattern`, else `403`.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::admission::{Admission, Stamp, reason, retry_after_header};
use super::conn::RequestConn;
use super::ffv1::TarUnpacker;
use super::listen_state::Hold;
use super::{Decode, Fail};
use crate::ffv3::{Item, UnpackError, Unpacker};
use crate::record::{Outcome, Reason, Record};
use crate::stage::Stager;
use crate::state::AppState;

const FLOWFILE_V3: &str = "application/flowfile-v3";
const FLOWFILE_V2: &str = "application/flowfile-v2";
/// v1 (tar) is any content type starting with this, as in ListenHTTP.
const FLOWFILE_ANY: &str = "application/flowfile";
const ACCEPT: &str = "application/flowfile-v3,application/flowfile-v2,application/flowfile-v1,application/flowfile,*/*;q=0.8";
const PROTOCOL_VERSION: &str = "x-nifi-transfer-protocol-version";
const HOLD_HEADER: &str = "x-prefer-acknowledge-uri";
const INTENT_HEADER: &str = "x-location-uri-intent";

/// `HEAD {base}`: what ListenHTTP advertises.
pub(crate) async fn head() -> Response {
    (
        StatusCode::OK,
        [
            (header::ACCEPT_ENCODING, HeaderValue::from_static("gzip")),
            (header::ACCEPT, HeaderValue::from_static(ACCEPT)),
            (
                header::HeaderName::from_static(PROTOCOL_VERSION),
                HeaderValue::from_static("3"),
            ),
        ],
    )
        .into_response()
}

/// ListenHTTP's attributes for every FlowFile of one request (see the module docs).
struct Enrich {
    filename: Option<String>,
    legacy: bool,
    added: Vec<(String, String)>,
    /// The token's fixed attributes and the limits (admission steps 3 and 4).
    stamp: Stamp,
}

impl Enrich {
    fn new(
        st: &AppState,
        peer: SocketAddr,
        uri: &Uri,
        headers: &HeaderMap,
        conn: &RequestConn,
        stamp: Stamp,
    ) -> Self {
        let filename = headers
            .get("filename")
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned);
        // ListenHTTP: a sender without a (numeric) protocol version header is a legacy NiFi.
        let legacy = headers
            .get(PROTOCOL_VERSION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .is_none();
        let mut added: Vec<(String, String)> = Vec::new();
        if let Some(re) = &st.listen.header_regex {
            let lower: Vec<String>;
            let names: &[String] = match &conn.names {
                Some(n) => n,
                None => {
                    lower = headers.keys().map(|k| k.as_str().to_owned()).collect();
                    &lower
                }
            };
            for name in names {
                if re.is_match(name)
                    && let Some(v) = headers.get(name.as_str())
                {
                    added.retain(|(k, _)| k != name);
                    added.push((
                        name.clone(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    ));
                }
            }
        }
        let (subject, issuer) = match &conn.client {
            Some(c) => (c.subject.clone(), c.issuer.clone()),
            None => ("none".to_owned(), "none".to_owned()),
        };
        for (k, v) in [
            ("restlistener.remote.source.host", peer.ip().to_string()),
            ("restlistener.request.uri", uri.path().to_owned()),
            ("restlistener.remote.user.dn", subject),
            ("restlistener.remote.issuer.dn", issuer),
        ] {
            added.retain(|(ek, _)| ek != k);
            added.push((k.to_owned(), v));
        }
        Self {
            filename,
            legacy,
            added,
            stamp,
        }
    }

    /// `packaged`: the attributes came from a package (legacy mapping applies). Then the token's
    /// fixed attributes and the limits.
    fn apply(
        &self,
        mut attributes: Vec<(String, String)>,
        packaged: bool,
    ) -> Result<Vec<(String, String)>, Fail> {
        let set = |attributes: &mut Vec<(String, String)>, k: &str, v: String| {
            attributes.retain(|(ek, _)| ek != k);
            attributes.push((k.to_owned(), v));
        };
        if packaged && self.legacy {
            for (old, new) in [("nf.file.name", "filename"), ("nf.file.path", "path")] {
                if let Some(i) = attributes.iter().position(|(k, _)| k == old) {
                    let (_, v) = attributes.remove(i);
                    set(&mut attributes, new, v);
                }
            }
        }
        if let Some(f) = &self.filename {
            set(&mut attributes, "filename", f.clone());
        }
        for (k, v) in &self.added {
            set(&mut attributes, k, v.clone());
        }
        // The package's (or a header's) uuid is never the new FlowFile's: NiFi assigns one.
        attributes.retain(|(k, _)| k != "uuid");
        self.stamp
            .attributes(&mut attributes)
            .map_err(Fail::Limit)?;
        Ok(attributes)
    }
}

/// A plain body: one FlowFile whose content is the body.
struct Plain {
    enrich: Enrich,
    begun: bool,
}

impl Decode for Plain {
    async fn feed(&mut self, piece: Bytes, stager: &mut Stager) -> Result<(), Fail> {
        if !self.begun {
            let attributes = self.enrich.apply(Vec::new(), false)?;
            stager.begin(attributes, None).await?;
            self.begun = true;
        }
        Ok(stager.write(&piece).await?)
    }

    async fn finish(&mut self, stager: &mut Stager) -> Result<(), Fail> {
        if !self.begun {
            self.feed(Bytes::new(), stager).await?;
        }
        stager.end();
        Ok(())
    }
}

/// The package formats ListenHTTP unpacks.
enum Format {
    /// flowfile-v3 or v2: a sequence of packages.
    Stream(Unpacker),
    /// flowfile-v1: one tar package.
    Tar(TarUnpacker),
}

impl Format {
    fn name(&self) -> &'static str {
        match self {
            Self::Stream(u) => u.format(),
            Self::Tar(_) => "flowfile-v1",
        }
    }

    fn fail(&self, e: UnpackError) -> Fail {
        match e {
            UnpackError::Limit(m) => Fail::Limit(m),
            UnpackError::Malformed(m) => {
                Fail::Malformed(format!("invalid {} body: {m}", self.name()))
            }
        }
    }
}

/// A packaged body: one FlowFile per package, unpacked as it arrives.
struct Packages {
    enrich: Enrich,
    unpacker: Format,
}

impl Decode for Packages {
    async fn feed(&mut self, piece: Bytes, stager: &mut Stager) -> Result<(), Fail> {
        match &mut self.unpacker {
            Format::Stream(u) => u.push(&piece),
            Format::Tar(u) => u.push(&piece),
        }
        loop {
            let item = match &mut self.unpacker {
                Format::Stream(u) => u.next(),
                Format::Tar(u) => u.next(),
            }
            .map_err(|e| self.unpacker.fail(e))?;
            match item {
                None => return Ok(()),
                Some(Item::Begin { attributes, len }) => {
                    let max = self.enrich.stamp.limits().max_packages;
                    if stager.len() >= max {
                        return Err(Fail::Limit(format!(
                            "more than max_packages = {max} packages"
                        )));
                    }
                    let attributes = self.enrich.apply(attributes, true)?;
                    stager.begin(attributes, Some(len)).await?;
                }
                Some(Item::Data(d)) => stager.write(&d).await?,
                Some(Item::End) => stager.end(),
            }
        }
    }

    async fn finish(&mut self, _stager: &mut Stager) -> Result<(), Fail> {
        match &self.unpacker {
            Format::Stream(u) => u.finish(),
            Format::Tar(u) => u.finish(),
        }
        .map_err(|e| self.unpacker.fail(e))
    }
}

/// `POST {base}`.
pub(crate) async fn post(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    conn: Option<axum::Extension<RequestConn>>,
    RawQuery(query): RawQuery,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let conn = conn.map(|c| c.0).unwrap_or_default();
    let adm = Admission::new(st, peer, "listenhttp", "listenhttp");
    let st = &adm.st;
    if let Err(why) = st.listen.check_dn(conn.client.as_ref(), true) {
        return adm
            .denied(StatusCode::FORBIDDEN, reason::FORBIDDEN, why)
            .text();
    }
    let admitted = match adm.admit_http(&headers, query.as_deref()) {
        Ok(a) => a,
        Err(d) => return d.text(),
    };
    let limits = &st.cfg.limits;
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // As ListenHTTP: Boolean.parseBoolean for flowfile-gzipped, exact "gzip" for Content-Encoding.
    let gzipped = header_str("flowfile-gzipped").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || header_str("content-encoding") == Some("gzip");
    let hold = header_str(HOLD_HEADER).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let content_type = header_str("content-type").unwrap_or("").to_owned();
    let enrich = Enrich::new(st, peer, &uri, &headers, &conn, admitted.stamp.clone());
    let throttle = st.listen.throttle.as_ref();
    let format = if content_type == FLOWFILE_V3 {
        Some(Format::Stream(Unpacker::new(limits)))
    } else if content_type == FLOWFILE_V2 {
        Some(Format::Stream(Unpacker::v2(limits)))
    } else if content_type.starts_with(FLOWFILE_ANY) {
        Some(Format::Tar(TarUnpacker::new(limits)))
    } else {
        None
    };
    let received = match format {
        Some(unpacker) => {
            let mut dec = Packages { enrich, unpacker };
            adm.receive_with(&headers, body, gzipped, &mut dec, throttle)
                .await
        }
        None => {
            let mut dec = Plain {
                enrich,
                begun: false,
            };
            adm.receive_with(&headers, body, gzipped, &mut dec, throttle)
                .await
        }
    };
    let records = match received {
        Ok(r) => r,
        Err(refusal) => {
            // ListenHTTP answers a body it cannot unpack with 500 (IOException path); so do we.
            let status = match refusal.fail {
                Fail::Limit(_) => StatusCode::PAYLOAD_TOO_LARGE,
                Fail::Cut(_) => StatusCode::BAD_REQUEST,
                Fail::Malformed(_) | Fail::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return refusal.respond(status, format!("{}\n", refusal.fail.message()));
        }
    };
    adm.received(&records);
    if hold {
        let id = hold_id();
        let location = format!("/{}/holds/{id}", st.listen.base);
        tracing::info!(%peer, hold = %id, flowfiles = records.len(), "placed a hold");
        hold_event(st, "placed");
        st.listen.holds().insert(
            id,
            Hold {
                records,
                created: Instant::now(),
                peer,
            },
        );
        let mut r = (StatusCode::SEE_OTHER, location.clone()).into_response();
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&location) {
            h.insert(header::LOCATION, v);
        }
        h.insert(INTENT_HEADER, HeaderValue::from_static("flowfile-hold"));
        return r;
    }
    let r = forward(&adm, records, st.cfg.listen_http.return_code).await;
    drop(admitted);
    r
}

/// Counts a hold event in `bridge_listenhttp_holds_total{event}` (placed, confirmed, expired).
fn hold_event(st: &AppState, event: &'static str) {
    st.metrics
        .counter("bridge_listenhttp_holds_total", &[("event", event)])
        .increment(1);
}

/// A fresh random hold id (UUID v4 format, like ListenHTTP's).
fn hold_id() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// Hands `records` to the pipeline and answers `ok` (or why not).
async fn forward(adm: &Admission, records: Vec<Record>, ok: u16) -> Response {
    match adm.forward(records, "").await {
        Outcome::Committed => StatusCode::from_u16(ok)
            .unwrap_or(StatusCode::OK)
            .into_response(),
        // ListenHTTP answers 503 when its downstream has no space; we add Retry-After.
        Outcome::Retry { after, message, .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            [retry_after_header(after)],
            format!("{message}\n"),
        )
            .into_response(),
        Outcome::Rejected { reason, message } => {
            let status = if reason == Reason::Limit {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            super::text(status, message)
        }
    }
}

/// `DELETE {base}/holds/{id}`: the sender confirms a hold; its FlowFiles are forwarded.
pub(crate) async fn delete_hold(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    conn: Option<axum::Extension<RequestConn>>,
    Path(id): Path<String>,
) -> Response {
    let conn = conn.map(|c| c.0).unwrap_or_default();
    let adm = Admission::new(st, peer, "listenhttp-hold", "listenhttp");
    let st = &adm.st;
    if let Err(why) = st.listen.check_dn(conn.client.as_ref(), false) {
        return adm
            .denied(StatusCode::FORBIDDEN, reason::FORBIDDEN, why)
            .text();
    }
    let unknown = |detail: String| {
        adm.reject(reason::UNKNOWN_HOLD, None, &detail);
        super::text(StatusCode::NOT_FOUND, format!("no hold with id {id}"))
    };
    let Some(hold) = st.listen.holds().remove(&id) else {
        return unknown(format!("no hold with id {id}"));
    };
    if hold.created.elapsed() >= st.listen.hold_timeout {
        // Expired but not swept yet: released, as if the sweep had run.
        return unknown(format!("hold {id} expired"));
    }
    // A failure releases the hold: the sender re-sends everything, nothing is delivered twice.
    let n = hold.records.len();
    let r = forward(&adm, hold.records, 200).await;
    if r.status() == StatusCode::OK {
        tracing::info!(%peer, hold = %id, flowfiles = n, "hold confirmed: forwarded");
        hold_event(st, "confirmed");
    }
    r
}
