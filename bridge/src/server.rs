//! The HTTP server: routes, CORS / origin checks, operations endpoints, TLS and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Auth, Origins};
use crate::config::{AckMode, Config};
use crate::forward::Forwarder;
use crate::ingest;
use crate::metrics::Metrics;
use crate::pipeline::{self, Pipeline};
use crate::sink::Sink;
use crate::spool::Spool;
use crate::state::AppState;

/// A configured bridge, ready to serve.
#[derive(Debug)]
pub struct Bridge {
    state: AppState,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Bridge {
    /// Validates `cfg`, opens the spool if `ack = "spool"`, and starts the forwarder on `sink`.
    pub fn new<S: Sink + std::fmt::Debug>(cfg: Config, sink: S) -> Result<Self, crate::Error> {
        cfg.validate()?;
        let metrics = Arc::new(Metrics::new());
        let sink: Arc<S> = Arc::new(sink);
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        let pipeline = match cfg.ack {
            AckMode::Nifi => Pipeline::Nifi(Forwarder::start(
                sink.clone(),
                cfg.forward.clone(),
                metrics.clone(),
                &tracker,
                stop.clone(),
            )),
            AckMode::Spool => {
                let spool = Spool::open(cfg.spool.clone(), metrics.clone())
                    .map_err(|e| crate::Error::Spool(e.to_string()))?;
                pipeline::start_drain(
                    spool.clone(),
                    sink.clone(),
                    cfg.forward.clone(),
                    metrics.clone(),
                    &tracker,
                    stop.clone(),
                );
                Pipeline::Spool {
                    spool,
                    retry_after: Duration::from_millis(cfg.forward.retry_after_ms),
                }
            }
        };
        let listen = Arc::new(ingest::listen_state::ListenState::new(&cfg.listen_http)?);
        // Stops when shutdown begins (`closing`): unconfirmed holds are then released.
        let closing = CancellationToken::new();
        ingest::listen_state::spawn_hold_expiry(
            listen.clone(),
            metrics.clone(),
            &tracker,
            closing.clone(),
        );
        let stage_dir = cfg.effective_stage_dir();
        if cfg.stage_dir.is_none() && cfg.ack == AckMode::Spool {
            // Our own directory: what is in it was left by a crash and was never acknowledged.
            match std::fs::remove_dir_all(&stage_dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::Error::Spool(format!("{}: {e}", stage_dir.display()))),
            }
        }
        let rejections = Arc::new(ingest::reject_log::RejectLog::default());
        {
            // Histogram samples are kept until a scrape drains them; bound them between scrapes.
            // Rejection log windows that ended get their summary line. Ends when shutdown
            // begins: the drain waits for the tracker, and this task has nothing to drain.
            let metrics = metrics.clone();
            let rejections = rejections.clone();
            let stop = closing.clone();
            tracker.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            metrics.run_upkeep();
                            rejections.flush(std::time::Instant::now());
                        }
                        () = stop.cancelled() => return,
                    }
                }
            });
        }
        let state = AppState {
            stage_dir,
            auth: Arc::new(Auth::new(&cfg.tokens)?),
            origins: Origins::new(&cfg.allowed_origins),
            ws_slots: Arc::new(Semaphore::new(cfg.limits.max_connections)),
            http_slots: Arc::new(Semaphore::new(cfg.limits.max_http_requests)),
            cfg: Arc::new(cfg),
            pipeline,
            metrics,
            sink,
            closing,
            listen,
            rejections,
        };
        Ok(Self {
            state,
            tracker,
            stop,
        })
    }

    /// The metrics (for embedding and tests).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// The axum router (without TLS or shutdown handling).
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then drains: WebSocket connections stop
    /// taking batches, every in-flight batch is answered, queued transactions finish (at most
    /// `shutdown_timeout_ms`), and the spool drain stops (spooled data stays on disk).
    ///
    /// # Cancel safety
    /// Not cancel safe: drop it only at process exit; use `shutdown` to stop.
    pub async fn serve(
        self,
        listener: std::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), crate::Error> {
        listener.set_nonblocking(true)?;
        let Self {
            state,
            tracker,
            stop,
        } = self;
        let cfg = state.cfg.clone();
        let closing = state.closing.clone();
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let handle = axum_server::Handle::new();
        let drain = Duration::from_millis(cfg.shutdown_timeout_ms);
        {
            let handle = handle.clone();
            let closing = closing.clone();
            tokio::spawn(async move {
                shutdown.await;
                tracing::info!("shutting down: draining in-flight batches");
                closing.cancel();
                handle.graceful_shutdown(Some(drain));
            });
        }
        // ConnAcceptor: header names as sent and client certificates for the handlers, the TCP
        // connection limit and the first-byte deadline.
        let guard = ingest::ConnGuard {
            slots: Arc::new(Semaphore::new(cfg.limits.max_tcp_connections)),
            first_byte: Duration::from_millis(cfg.limits.header_read_timeout_ms),
        };
        let result = match &cfg.tls {
            Some(tls) => {
                let rustls = match &tls.client_ca {
                    Some(ca) => crate::tls::server_config_with_clients(
                        &tls.cert,
                        &tls.key,
                        ca,
                        tls.require_client_cert,
                    )?,
                    None => crate::tls::server_config(&tls.cert, &tls.key)?,
                };
                let mut server = axum_server::from_tcp_rustls(
                    listener,
                    axum_server::tls_rustls::RustlsConfig::from_config(rustls),
                )
                .map(|a| ingest::ConnAcceptor::new(a, guard))
                .handle(handle);
                http_timeouts(server.http_builder(), &cfg.limits);
                server.serve(app).await
            }
            None => {
                let mut server = axum_server::from_tcp(listener)
                    .acceptor(ingest::ConnAcceptor::new(
                        axum_server::accept::DefaultAcceptor,
                        guard,
                    ))
                    .handle(handle);
                http_timeouts(server.http_builder(), &cfg.limits);
                server.serve(app).await
            }
        };
        // Every router clone is gone once the server returned: the forwarder sees its queue close.
        tracker.close();
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            tracing::warn!("drain timeout: stopping forwarder with batches still in flight");
        }
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
        result.map_err(crate::Error::Io)
    }
}

/// hyper's HTTP/1 header-read timeout (`limits.header_read_timeout_ms`): a request head —
/// also a WebSocket handshake — not complete in time, or a keep-alive connection idle that
/// long, is closed. Without a timer hyper enforces none.
fn http_timeouts(
    b: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    limits: &crate::limits::Limits,
) {
    b.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms));
    b.http2().timer(hyper_util::rt::TokioTimer::new());
}

fn router(state: AppState) -> Router {
    let base = state
        .cfg
        .listen_http
        .base_path
        .trim_end_matches('/')
        .to_owned();
    let mut r = Router::new()
        .route("/v1/ws", get(ingest::ws::upgrade))
        .route("/v1/flowfiles", post(ingest::json::post_flowfiles))
        .route(&base, post(ingest::listen::post).head(ingest::listen::head))
        .route(
            &format!("{base}/holds/{{id}}"),
            delete(ingest::listen::delete_hold),
        )
        .route(&format!("{base}/healthcheck"), get(ok).head(ok))
        .route("/healthz", get(ok))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if let Some(dir) = &state.cfg.static_dir {
        r = r.fallback_service(tower_http::services::ServeDir::new(dir));
    } else {
        r = r.fallback(any(not_found));
    }
    r.layer(DefaultBodyLimit::max(state.cfg.limits.max_message_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .with_state(state)
}

async fn ok() -> &'static str {
    "ok\n"
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}

async fn readyz(State(st): State<AppState>) -> Response {
    if let Err(e) = st.pipeline.local_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response();
    }
    match tokio::time::timeout(Duration::from_secs(5), st.sink.ready()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: NiFi check timed out\n",
        )
            .into_response(),
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

/// Origin allow-list and CORS: foreign origins get 403 (and a log line); preflights from allowed
/// origins get 204 with the CORS headers; other responses to allowed origins carry
/// `Access-Control-Allow-Origin`.
async fn cors(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return next.run(req).await;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let allowed = origin.to_str().is_ok_and(|o| st.origins.allows(o, host));
    if !allowed {
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
        ingest::admission::record_rejection(
            &st,
            peer,
            req.uri().path(),
            ingest::admission::reason::FOREIGN_ORIGIN,
            1,
            None,
            &format!("origin {origin:?} not allowed"),
        );
        if req.headers().contains_key(header::SEC_WEBSOCKET_KEY) {
            // A browser shows a refused handshake only as close code 1006: let the WebSocket
            // handler accept it and close with 4003 and the reason (PROTOCOL.md §7).
            let mut req = req;
            let origin = origin.to_str().unwrap_or("?").to_owned();
            req.extensions_mut()
                .insert(ingest::ws::ForeignOrigin(origin));
            return next.run(req).await;
        }
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, HEAD, OPTIONS"),
        );
        let requested = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or(HeaderValue::from_static("authorization, content-type"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        return resp;
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Retry-After"),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    resp
}
