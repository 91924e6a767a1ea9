//! ListenHTTP-compatible ingest (PROTOCOL.md §8.2; NiFi's `ListenHTTPServlet` behaviour).

use std::io::Read;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::auth::presented_token;
use crate::limits::apply_fixed_attributes;
use crate::record::{FlowFile, Outcome};
use crate::server::AppState;

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

fn reject(
    st: &AppState,
    peer: &SocketAddr,
    status: StatusCode,
    reason: &'static str,
    msg: String,
) -> Response {
    st.metrics.reject(reason);
    tracing::warn!(%peer, reason, %msg, "rejected ListenHTTP request");
    super::text(status, msg)
}

/// `POST {base}`.
pub(crate) async fn post(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(fixed) = st
        .auth
        .check(presented_token(&headers, query.as_deref()).as_deref())
    else {
        return reject(
            &st,
            &peer,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or invalid bearer token".into(),
        );
    };
    let Ok(_slot) = st.http_slots.clone().try_acquire_owned() else {
        st.metrics.reject("CONNECTION_LIMIT");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [super::retry_after_header(std::time::Duration::from_secs(1))],
            "too many concurrent requests\n",
        )
            .into_response();
    };
    let limits = &st.cfg.limits;
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let gzipped = header_str("flowfile-gzipped").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || header_str("content-encoding") == Some("gzip");
    let body = if gzipped {
        let mut out = Vec::new();
        let limit = limits.max_message_bytes as u64;
        let r = flate2::read::GzDecoder::new(&body[..])
            .take(limit + 1)
            .read_to_end(&mut out);
        match r {
            Err(e) => {
                return reject(
                    &st,
                    &peer,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "MALFORMED",
                    format!("invalid gzip body: {e}"),
                );
            }
            Ok(_) if out.len() as u64 > limit => {
                return reject(
                    &st,
                    &peer,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "LIMIT",
                    format!("gunzipped body exceeds max_message_bytes = {limit}"),
                );
            }
            Ok(_) => Bytes::from(out),
        }
    } else {
        body
    };
    let content_type = header_str("content-type").unwrap_or("");
    let mut records = if content_type == FLOWFILE_V3 {
        match crate::ffv3::unpack_all(body, limits) {
            Ok(r) => r,
            // ListenHTTP answers a body it cannot unpack with 500 (IOException path); so do we.
            Err(m) => {
                return reject(
                    &st,
                    &peer,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "MALFORMED",
                    format!("invalid flowfile-v3 body: {m}"),
                );
            }
        }
    } else if content_type.starts_with("application/flowfile") {
        return reject(
            &st,
            &peer,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "MALFORMED",
            format!("{content_type} is not supported; send application/flowfile-v3"),
        );
    } else {
        vec![FlowFile {
            attributes: Vec::new(),
            content: body,
        }]
    };
    let filename = header_str("filename")
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned);
    let mut from_headers: Vec<(String, String)> = Vec::new();
    if let Some(re) = &st.header_regex {
        for (name, value) in &headers {
            if re.is_match(name.as_str())
                && let Ok(v) = value.to_str()
            {
                from_headers.push((name.as_str().to_owned(), v.to_owned()));
            }
        }
    }
    let request_details = [
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
    ];
    for r in &mut records {
        // ListenHTTP: the package's uuid becomes the provenance source id, never the new uuid.
        r.attributes.retain(|(k, _)| k != "uuid");
        if let Some(f) = &filename
            && r.attribute("filename").is_none_or(|v| v.trim().is_empty())
        {
            r.attributes.retain(|(k, _)| k != "filename");
            r.attributes.push(("filename".into(), f.clone()));
        }
        for (k, v) in from_headers.iter().chain(request_details.iter()) {
            r.attributes.retain(|(ek, _)| ek != k);
            r.attributes.push((k.clone(), v.clone()));
        }
        apply_fixed_attributes(r, &fixed);
    }
    if let Err(m) = limits.check_batch(&records) {
        return reject(&st, &peer, StatusCode::PAYLOAD_TOO_LARGE, "LIMIT", m);
    }
    st.metrics.received("listenhttp", &records);
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
            st.metrics.reject(reason.name());
            tracing::info!(%peer, reason = reason.name(), %message, "ListenHTTP request deferred");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [super::retry_after_header(after)],
                format!("{message}\n"),
            )
                .into_response()
        }
        Outcome::Rejected { reason, message } => reject(
            &st,
            &peer,
            StatusCode::INTERNAL_SERVER_ERROR,
            reason.name(),
            message,
        ),
    }
}
