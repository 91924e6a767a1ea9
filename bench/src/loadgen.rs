//! A small HTTP/1.1 load generator on `hyper`'s client connections (P3a): `connections` keep-alive
//! connections, each POSTing the same body back to back for a fixed time; counts the answers by
//! status. Closed loop (a connection sends its next request when the previous one was answered),
//! like `oha -c N -z T` or `wrk -c N -d T`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What one load run did.
#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection reset, refused, …), with the first error seen.
    pub errors: u64,
    /// The first transport error, if any.
    pub first_error: Option<String>,
    /// Wall-clock seconds from the first request to the last answer.
    pub secs: f64,
}

impl LoadResult {
    /// Answers with a 2xx status.
    pub fn ok(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    /// 2xx answers per second.
    pub fn rate(&self) -> f64 {
        self.ok() as f64 / self.secs.max(1e-9)
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Load {
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    /// Request path, e.g. `/contentListener`.
    pub path: String,
    /// Request headers besides `host` and `content-length`.
    pub headers: Vec<(String, String)>,
    /// The body of every request.
    pub body: Bytes,
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// How long to send.
    pub duration: Duration,
}

/// Runs `load`: every connection sends until `load.duration` has passed; a connection that fails
/// is counted and reconnected.
pub async fn run(load: Load) -> LoadResult {
    let load = Arc::new(load);
    let started = Instant::now();
    let deadline = started + load.duration;
    let mut tasks = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let load = load.clone();
        tasks.push(tokio::spawn(
            async move { connection(&load, deadline).await },
        ));
    }
    let mut total = LoadResult::default();
    for t in tasks {
        let r = t.await.unwrap_or_else(|e| LoadResult {
            errors: 1,
            first_error: Some(format!("load task: {e}")),
            ..LoadResult::default()
        });
        for (s, n) in r.statuses {
            *total.statuses.entry(s).or_default() += n;
        }
        total.errors += r.errors;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
    }
    total.secs = started.elapsed().as_secs_f64();
    total
}

async fn connection(load: &Load, deadline: Instant) -> LoadResult {
    let mut out = LoadResult::default();
    let host = load.addr.to_string();
    let fail = |out: &mut LoadResult, e: String| {
        out.errors += 1;
        if out.first_error.is_none() {
            out.first_error = Some(e);
        }
    };
    'reconnect: while Instant::now() < deadline {
        let stream = match TcpStream::connect(load.addr).await {
            Ok(s) => s,
            Err(e) => {
                fail(&mut out, format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut send, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(x) => x,
                Err(e) => {
                    fail(&mut out, format!("handshake: {e}"));
                    continue;
                }
            };
        let driver = tokio::spawn(conn);
        while Instant::now() < deadline {
            let mut req = Request::post(load.path.as_str()).header("host", &host);
            for (k, v) in &load.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let req = match req.body(Full::new(load.body.clone())) {
                Ok(r) => r,
                Err(e) => {
                    fail(&mut out, format!("request: {e}"));
                    break 'reconnect;
                }
            };
            if send.ready().await.is_err() {
                fail(&mut out, "connection closed by the server".into());
                continue 'reconnect;
            }
            match send.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    // Read the whole answer so the connection can carry the next request.
                    if let Err(e) = resp.into_body().collect().await {
                        fail(&mut out, format!("response body: {e}"));
                        continue 'reconnect;
                    }
                    *out.statuses.entry(status).or_default() += 1;
                }
                Err(e) => {
                    fail(&mut out, format!("request: {e}"));
                    continue 'reconnect;
                }
            }
        }
        drop(send);
        let _ = driver.await;
    }
    out
}
