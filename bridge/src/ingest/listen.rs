//! ListenHTTP-compatible ingest (PROTOCOL.md §8.2; NiFi's `ListenHTTPServlet` behaviour).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::{Decode, Fail, Upload};
use crate::auth::{FixedAttributes, presented_token};
use crate::ffv3::{Item, UnpackError, Unpacker};
use crate::limits::{Limits, apply_fixed_attributes};
use crate::record::{Outcome, Reason, Record};
use crate::server::AppState;
use crate::stage::Stager;

const FLOWFILE_V3: &str = "application/flowfile-v3";
const ACCEPT: &str = "application/flowfile-v3,*/*;q=0.8";

/// `HEAD {base}`: what ListenHTTP advertises.
pub(crate) async fn head() -> Response {
    (
        StatusCode::OK,
        [
            (header::ACCEPT, HeaderValue::from_static(ACCEPT)),
            (header::ACCEPT_ENCODING, HeaderValue::from_static("gzip")),
            (
                header::HeaderName::from_static("x-nifi-transfer-protocol-version"),
                HeaderValue::from_static("3"),
            ),
        ],
    )
        .into_response()
}

/// ListenHTTP's attributes for every FlowFile of one request: the `filename` header, headers
/// matching `header_regex`, the request details, then the token's fixed attributes.
struct Enrich {
    filename: Option<String>,
    added: Vec<(String, String)>,
    fixed: FixedAttributes,
}

impl Enrich {
    fn new(
        st: &AppState,
        peer: SocketAddr,
        uri: &Uri,
        headers: &HeaderMap,
        fixed: FixedAttributes,
    ) -> Self {
        let filename = headers
            .get("filename")
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned);
        let mut added: Vec<(String, String)> = Vec::new();
        if let Some(re) = &st.header_regex {
            for (name, value) in headers {
                if re.is_match(name.as_str())
                    && let Ok(v) = value.to_str()
                {
                    added.push((name.as_str().to_owned(), v.to_owned()));
                }
            }
        }
        added.extend([
            (
                "restlistener.remote.source.host".to_owned(),
                peer.ip().to_string(),
            ),
            ("restlistener.request.uri".to_owned(), uri.path().to_owned()),
            ("restlistener.remote.user.dn".to_owned(), "none".to_owned()),
            (
                "restlistener.remote.issuer.dn".to_owned(),
                "none".to_owned(),
            ),
        ]);
        Self {
            filename,
            added,
            fixed,
        }
    }

    fn apply(&self, mut attributes: Vec<(String, String)>) -> Vec<(String, String)> {
        // ListenHTTP: the package's uuid becomes the provenance source id, never the new uuid.
        attributes.retain(|(k, _)| k != "uuid");
        if let Some(f) = &self.filename
            && attributes
                .iter()
                .find(|(k, _)| k == "filename")
                .is_none_or(|(_, v)| v.trim().is_empty())
        {
            attributes.retain(|(k, _)| k != "filename");
            attributes.push(("filename".into(), f.clone()));
        }
        for (k, v) in &self.added {
            attributes.retain(|(ek, _)| ek != k);
            attributes.push((k.clone(), v.clone()));
        }
        apply_fixed_attributes(&mut attributes, &self.fixed);
        attributes
    }
}

/// A plain body: one FlowFile whose content is the body.
struct Plain {
    enrich: Enrich,
    limits: Limits,
    begun: bool,
}

impl Decode for Plain {
    async fn feed(&mut self, piece: Bytes, stager: &mut Stager) -> Result<(), Fail> {
        if !self.begun {
            let attributes = self.enrich.apply(Vec::new());
            self.limits
                .check_attributes(&attributes)
                .map_err(Fail::Limit)?;
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

/// A flowfile-v3 body: one FlowFile per package, unpacked as it arrives.
struct Packages {
    enrich: Enrich,
    limits: Limits,
    unpacker: Unpacker,
}

impl Decode for Packages {
    async fn feed(&mut self, piece: Bytes, stager: &mut Stager) -> Result<(), Fail> {
        self.unpacker.push(&piece);
        loop {
            let item = self.unpacker.next().map_err(|e| match e {
                UnpackError::Limit(m) => Fail::Limit(m),
                UnpackError::Malformed(m) => {
                    Fail::Malformed(format!("invalid flowfile-v3 body: {m}"))
                }
            })?;
            match item {
                None => return Ok(()),
                Some(Item::Begin { attributes, len }) => {
                    if stager.len() >= self.limits.max_records {
                        return Err(Fail::Limit(format!(
                            "more than max_records = {} packages",
                            self.limits.max_records
                        )));
                    }
                    let attributes = self.enrich.apply(attributes);
                    self.limits
                        .check_attributes(&attributes)
                        .map_err(Fail::Limit)?;
                    stager.begin(attributes, Some(len)).await?;
                }
                Some(Item::Data(d)) => stager.write(&d).await?,
                Some(Item::End) => stager.end(),
            }
        }
    }

    async fn finish(&mut self, _stager: &mut Stager) -> Result<(), Fail> {
        self.unpacker.finish().map_err(|e| match e {
            UnpackError::Limit(m) => Fail::Limit(m),
            UnpackError::Malformed(m) => Fail::Malformed(format!("invalid flowfile-v3 body: {m}")),
        })
    }
}

/// `POST {base}`.
pub(crate) async fn post(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let up = Upload {
        st: &st,
        peer,
        path: "listenhttp",
    };
    let Some(fixed) = st
        .auth
        .check(presented_token(&headers, query.as_deref()).as_deref())
    else {
        up.reject("UNAUTHORIZED", None, "missing or invalid bearer token");
        return super::text(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
    };
    let Ok(_slot) = st.http_slots.clone().try_acquire_owned() else {
        up.reject("CONNECTION_LIMIT", None, "too many concurrent requests");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [super::retry_after_header(std::time::Duration::from_secs(1))],
            "too many concurrent requests\n",
        )
            .into_response();
    };
    let limits = st.cfg.limits.clone();
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let gzipped = header_str("flowfile-gzipped").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || header_str("content-encoding") == Some("gzip");
    let content_type = header_str("content-type").unwrap_or("").to_owned();
    let enrich = Enrich::new(&st, peer, &uri, &headers, fixed);
    let received = if content_type == FLOWFILE_V3 {
        let mut dec = Packages {
            enrich,
            unpacker: Unpacker::new(&limits),
            limits,
        };
        up.receive(&headers, body, gzipped, &mut dec).await
    } else if content_type.starts_with("application/flowfile") {
        up.reject(
            "MALFORMED",
            None,
            &format!("unsupported content type {content_type}"),
        );
        return super::text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{content_type} is not supported; send application/flowfile-v3"),
        );
    } else {
        let mut dec = Plain {
            enrich,
            limits,
            begun: false,
        };
        up.receive(&headers, body, gzipped, &mut dec).await
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
    st.metrics.received("listenhttp", &records);
    let total: u64 = records.iter().map(Record::len).sum();
    match st.pipeline.accept(records).await {
        Outcome::Committed => StatusCode::from_u16(st.cfg.listen_http.return_code)
            .unwrap_or(StatusCode::OK)
            .into_response(),
        // ListenHTTP answers 503 when its downstream has no space; we add Retry-After.
        Outcome::Retry {
            after,
            reason,
            message,
        } => {
            up.reject(reason.name(), Some(total), &message);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [super::retry_after_header(after)],
                format!("{message}\n"),
            )
                .into_response()
        }
        Outcome::Rejected { reason, message } => {
            up.reject(reason.name(), Some(total), &message);
            let status = if reason == Reason::Limit {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            super::text(status, message)
        }
    }
}
