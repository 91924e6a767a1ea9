//! The HTTP(S) transport (docs/site-to-site.md §7): the sans-IO [`s2s_proto::http`] pieces driven by reqwest.
//!
//! A transaction is a URL on NiFi (`Location` of the 201 to `POST …/transactions`). While it is
//! open a background task `PUT`s it every TTL/2 so NiFi does not expire it; dropping the
//! transaction stops the task and, unless it was committed, asks NiFi to cancel.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use s2s_proto::codec::flowfile::{FlowFilePart, Limits};
use s2s_proto::http::{self as proto, Failure, HandshakeHeaders};
use s2s_proto::stream::{FlowFileReader, FlowFileWriter};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::error::{Error, Kind};

/// Error bodies are small JSON or text; anything longer is cut (bounded read).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Bounds one request step by the I/O timeout.
async fn timed<T>(
    t: Option<Duration>,
    what: &'static str,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match t {
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .unwrap_or_else(|_| Err(Error::timeout(what))),
        None => fut.await,
    }
}

/// Shared settings of one transaction's requests.
#[derive(Clone)]
pub(crate) struct HttpCtx {
    pub(crate) http: reqwest::Client,
    pub(crate) headers: HeaderMap,
    pub(crate) io_timeout: Option<Duration>,
    pub(crate) keep_alive: bool,
    pub(crate) auth: Option<std::sync::Arc<crate::auth::TokenSource>>,
}

impl std::fmt::Debug for HttpCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Headers may carry an Authorization token: never printed.
        f.debug_struct("HttpCtx").finish_non_exhaustive()
    }
}

pub(crate) fn handshake_header_map(h: &HandshakeHeaders) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in h.to_headers() {
        if let Ok(v) = HeaderValue::from_str(&value) {
            map.insert(HeaderName::from_static(name), v);
        }
    }
    map
}

impl HttpCtx {
    /// A request with the protocol headers and, when configured, the bearer token.
    async fn request(&self, method: Method, url: &str) -> Result<RequestBuilder, Error> {
        let req = self.http.request(method, url).headers(self.headers.clone());
        Ok(match &self.auth {
            Some(a) => crate::auth::authorize(req, &a.header().await?),
            None => req,
        })
    }

    /// Sends a body-less request; a 401 to a token obtained by login renews the token and
    /// retries once (NiFi may have restarted or the token expired early).
    async fn send(
        &self,
        method: Method,
        url: &str,
        accept: &'static str,
    ) -> Result<Response, Error> {
        let mut retried = false;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url)
                .headers(self.headers.clone());
            let used = match &self.auth {
                Some(a) => {
                    let h = a.header().await?;
                    req = crate::auth::authorize(req, &h);
                    Some(h)
                }
                None => None,
            };
            let resp = req
                .header(ACCEPT, accept)
                .send()
                .await
                .map_err(|e| transport_error("talking to NiFi", e))?;
            if resp.status() == StatusCode::UNAUTHORIZED
                && !retried
                && let (Some(a), Some(h)) = (&self.auth, &used)
                && a.rejected(h).await
            {
                debug!("NiFi answered 401 to the bearer token; logging in again");
                retried = true;
                continue;
            }
            return Ok(resp);
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransactionResult {
    response_code: Option<i64>,
    message: Option<String>,
}

/// Timeout, TLS (fatal) or I/O.
fn transport_error(what: &'static str, e: reqwest::Error) -> Error {
    crate::error::from_reqwest(e, what, Kind::Io)
}

/// Turns a non-success answer into the client's typed error (docs/site-to-site.md §7.3).
pub(crate) async fn error_from_response(what: &str, resp: Response) -> Error {
    let status = resp.status().as_u16();
    let text = read_bounded(resp).await;
    let (code, message) = match serde_json::from_str::<TransactionResult>(&text) {
        Ok(r) => (
            r.response_code.and_then(|c| u8::try_from(c).ok()),
            r.message.unwrap_or_default(),
        ),
        // NiFi answers some refusals as a bare string (even under a JSON content type).
        Err(_) => (None, text.trim().trim_matches('"').to_owned()),
    };
    let msg = format!("{what}: HTTP {status}: {message}");
    let kind = match proto::classify(status, code, &message) {
        Failure::BadRequest | Failure::UnsupportedEncoding => Kind::InvalidInput(msg),
        Failure::HttpDisabled => Kind::Config(msg),
        Failure::Unauthorized => Kind::Unauthorized(msg),
        Failure::UnknownPort => Kind::UnknownPort(msg),
        Failure::TransactionNotFound => Kind::TransactionExpired(msg),
        Failure::PortNotRunning => Kind::PortNotRunning(msg),
        Failure::DestinationFull => return Error::new(Kind::DestinationFull),
        Failure::ServerError => Kind::Server(msg),
    };
    Error::new(kind)
}

async fn read_bounded(mut resp: Response) -> String {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_ERROR_BODY.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// An open transaction on NiFi: its URL and the keep-alive task.
#[derive(Debug)]
pub(crate) struct OpenTx {
    pub(crate) ctx: HttpCtx,
    pub(crate) location: String,
    keep_alive: Option<JoinHandle<()>>,
    done: bool,
}

impl OpenTx {
    /// `POST {api}/data-transfer/{dir}/{port}/transactions` → 201 with Location and TTL.
    pub(crate) async fn create(
        ctx: HttpCtx,
        api_base: &str,
        direction: proto::Direction,
        port_id: &str,
    ) -> Result<Self, Error> {
        let url = proto::create_transaction_url(api_base, direction, port_id);
        let resp = timed(
            ctx.io_timeout,
            "creating an HTTP S2S transaction",
            ctx.send(Method::POST, &url, "application/json"),
        )
        .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(error_from_response("create transaction", resp).await);
        }
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| Error::protocol("201 to create transaction without a Location"))?;
        let ttl = resp
            .headers()
            .get(proto::headers::SERVER_TRANSACTION_TTL)
            .and_then(|v| v.to_str().ok())
            .and_then(proto::parse_ttl)
            .unwrap_or(30);
        debug!(%location, ttl, "HTTP S2S transaction created");
        let keep_alive = ctx.keep_alive.then(|| {
            let ctx = ctx.clone();
            let location = location.clone();
            let every = Duration::from_millis(proto::keep_alive_interval_millis(ttl));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    tick.tick().await;
                    let res = timed(
                        ctx.io_timeout,
                        "extending the transaction",
                        ctx.send(Method::PUT, &location, "application/json"),
                    )
                    .await;
                    match res {
                        Ok(r) if r.status().is_success() => debug!("HTTP S2S transaction extended"),
                        Ok(r) => {
                            warn!(status = %r.status(), "keep-alive refused; transaction lost");
                            return;
                        }
                        Err(e) => warn!(error = %e, "keep-alive failed"),
                    }
                }
            })
        });
        Ok(Self {
            ctx,
            location,
            keep_alive,
            done: false,
        })
    }

    /// `DELETE {Location}?…` and the `responseCode` of NiFi's JSON answer.
    async fn delete(&mut self, url: &str, what: &'static str) -> Result<u8, Error> {
        self.stop_keep_alive();
        self.done = true;
        let resp = timed(
            self.ctx.io_timeout,
            what,
            self.ctx.send(Method::DELETE, url, "application/json"),
        )
        .await?;
        if !resp.status().is_success() {
            return Err(error_from_response(what, resp).await);
        }
        let text = read_bounded(resp).await;
        let r: TransactionResult = serde_json::from_str(&text).map_err(|e| {
            Error::with_source(Kind::Protocol(format!("{what}: answer {text:?}")), e)
        })?;
        r.response_code
            .and_then(|c| u8::try_from(c).ok())
            .ok_or_else(|| Error::protocol(format!("{what}: no responseCode in {text:?}")))
    }

    /// Cancels the transaction now (`DELETE ?responseCode=15`), nothing transferred.
    pub(crate) async fn cancel(mut self) -> Result<u8, Error> {
        let url = proto::cancel_url(&self.location);
        self.delete(&url, "cancelling the transaction").await
    }

    fn stop_keep_alive(&mut self) {
        if let Some(h) = self.keep_alive.take() {
            h.abort();
        }
    }

    /// Forgets the transaction without telling NiFi (it expires it after the TTL).
    fn abandon(&mut self) {
        self.stop_keep_alive();
        self.done = true;
    }
}

impl Drop for OpenTx {
    fn drop(&mut self) {
        self.stop_keep_alive();
        if self.done {
            return;
        }
        // Uncommitted: ask NiFi to roll back now instead of after the TTL (best effort).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let ctx = self.ctx.clone();
            let url = proto::cancel_url(&self.location);
            rt.spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    ctx.send(Method::DELETE, &url, "application/json"),
                )
                .await;
            });
        }
    }
}

/// The HTTP half of a SEND transaction: one streamed `POST …/flow-files` for all FlowFiles.
#[derive(Debug)]
pub(crate) struct HttpSend {
    tx: OpenTx,
    writer: FlowFileWriter,
    chunks: Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
    post: Option<JoinHandle<Result<Response, reqwest::Error>>>,
    confirmed: bool,
}

/// Body chunks queued for the upload: with content pieces of at most 1 MiB this bounds what
/// waits for the socket to a few MiB.
const UPLOAD_QUEUE: usize = 4;

/// `host:port` of a transaction URL (the NiFi node it runs on).
fn node_of(location: &str) -> String {
    reqwest::Url::parse(location)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_default()
}

/// The HTTP half of a transaction, on one NiFi node.
pub(crate) trait OnNode {
    /// `host:port` of the node the transaction runs on.
    fn node(&self) -> String;
}

impl OnNode for HttpSend {
    fn node(&self) -> String {
        node_of(&self.tx.location)
    }
}

impl OnNode for HttpReceive {
    fn node(&self) -> String {
        node_of(&self.tx.location)
    }
}

impl HttpSend {
    pub(crate) fn new(tx: OpenTx, compression: bool) -> Self {
        Self {
            tx,
            writer: FlowFileWriter::new(compression),
            chunks: None,
            post: None,
            confirmed: false,
        }
    }

    /// Starts a FlowFile (and, with the first one, the streamed request).
    pub(crate) async fn start(
        &mut self,
        attributes: &[(String, String)],
        content_len: u64,
    ) -> Result<(), Error> {
        if self.confirmed {
            return Err(Error::invalid_input("send() after confirm()"));
        }
        if self.chunks.is_none() {
            // The body is streamed: the request starts now and takes chunks as they come.
            let (sender, mut receiver) =
                mpsc::channel::<Result<Bytes, std::io::Error>>(UPLOAD_QUEUE);
            let stream = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx));
            let req = self
                .tx
                .ctx
                .request(Method::POST, &proto::flow_files_url(&self.tx.location))
                .await?
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(ACCEPT, "text/plain")
                .body(reqwest::Body::wrap_stream(stream));
            self.post = Some(tokio::spawn(req.send()));
            self.chunks = Some(sender);
        }
        let mut out = BytesMut::new();
        self.writer
            .start(attributes, content_len, &mut out)
            .map_err(stream_error)?;
        self.push(out.freeze()).await
    }

    /// The next piece of the current FlowFile's content.
    pub(crate) async fn content(&mut self, chunk: Bytes) -> Result<(), Error> {
        let mut out = BytesMut::new();
        let content = self.writer.content(chunk, &mut out).map_err(stream_error)?;
        self.push(out.freeze()).await?;
        match content {
            Some(c) => self.push(c).await,
            None => Ok(()),
        }
    }

    /// Ends the current FlowFile.
    pub(crate) async fn finish(&mut self) -> Result<(), Error> {
        let mut out = BytesMut::new();
        self.writer.finish(&mut out).map_err(stream_error)?;
        self.push(out.freeze()).await
    }

    /// Hands one body chunk to the upload, waiting (bounded by the I/O timeout) for room.
    async fn push(&mut self, chunk: Bytes) -> Result<(), Error> {
        if chunk.is_empty() {
            return Ok(());
        }
        let Some(chunks) = &self.chunks else {
            return Err(Error::invalid_input("no upload in progress"));
        };
        let sent = timed(self.tx.ctx.io_timeout, "writing FlowFiles", async {
            chunks
                .send(Ok(chunk))
                .await
                .map_err(|_| Error::new(Kind::Closed))
        })
        .await;
        match sent {
            Ok(()) => Ok(()),
            // The request ended early: NiFi's answer says why.
            Err(e) => Err(self.post_error(e).await),
        }
    }

    async fn post_error(&mut self, fallback: Error) -> Error {
        self.chunks = None;
        let Some(post) = self.post.take() else {
            return fallback;
        };
        match tokio::time::timeout(Duration::from_secs(5), post).await {
            Ok(Ok(Ok(resp))) if !resp.status().is_success() => {
                error_from_response("send FlowFiles", resp).await
            }
            Ok(Ok(Err(e))) => transport_error("sending FlowFiles", e),
            _ => fallback,
        }
    }

    /// Ends the body and checks NiFi's CRC; on mismatch tells NiFi (responseCode 19).
    pub(crate) async fn confirm(&mut self) -> Result<(), Error> {
        if self.confirmed {
            return Ok(());
        }
        self.chunks = None;
        let Some(post) = self.post.take() else {
            return Err(Error::invalid_input("confirm() without a FlowFile sent"));
        };
        let resp = timed(
            self.tx.ctx.io_timeout,
            "waiting for NiFi's checksum",
            async {
                post.await
                    .map_err(|e| Error::with_source(Kind::Io, e))?
                    .map_err(|e| transport_error("sending FlowFiles", e))
            },
        )
        .await?;
        if resp.status() != StatusCode::ACCEPTED {
            self.tx.abandon();
            return Err(error_from_response("send FlowFiles", resp).await);
        }
        let text = read_bounded(resp).await;
        let theirs = proto::parse_checksum(&text)
            .ok_or_else(|| Error::protocol(format!("checksum answer {text:?} is not a number")))?;
        if theirs != self.writer.checksum() {
            let url = proto::bad_checksum_url(&self.tx.location);
            let _ = self.tx.delete(&url, "reporting a bad checksum").await;
            return Err(Error::with_source(
                Kind::BadChecksum,
                format!("NiFi computed {theirs}, we sent {}", self.writer.checksum()),
            ));
        }
        self.confirmed = true;
        Ok(())
    }

    /// Confirms if needed, then commits; `Ok(true)` = committed but destination full.
    pub(crate) async fn commit(&mut self) -> Result<bool, Error> {
        self.confirm().await?;
        let url = proto::commit_send_url(&self.tx.location);
        let code = self.tx.delete(&url, "committing the SEND").await?;
        match code {
            13 => Ok(false),
            14 => Ok(true),
            other => Err(Error::protocol(format!(
                "commit answered responseCode {other}, expected 13 or 14"
            ))),
        }
    }
}

impl Drop for HttpSend {
    fn drop(&mut self) {
        // Cut an unfinished upload off mid-body (instead of ending it cleanly), so NiFi can
        // never take a dropped transaction's FlowFiles as complete; `OpenTx` then cancels.
        if let Some(post) = self.post.take() {
            post.abort();
        }
    }
}

/// The HTTP half of a RECEIVE transaction: `GET …/flow-files` read incrementally.
#[derive(Debug)]
pub(crate) struct HttpReceive {
    tx: OpenTx,
    resp: Option<Response>,
    reader: FlowFileReader,
    buf: BytesMut,
    /// NiFi answered 200: nothing to receive, nothing to commit.
    pub(crate) no_data: bool,
}

impl HttpReceive {
    /// Issues the GET; returns with the response headers read.
    pub(crate) async fn begin(
        mut tx: OpenTx,
        compression: bool,
        limits: Limits,
    ) -> Result<Self, Error> {
        let url = proto::flow_files_url(&tx.location);
        let resp = timed(
            tx.ctx.io_timeout,
            "requesting FlowFiles",
            tx.ctx.send(Method::GET, &url, "application/octet-stream"),
        )
        .await?;
        let status = resp.status();
        let (resp, no_data) = if status == StatusCode::OK {
            // No data: NiFi expires the empty transaction itself; nothing more to send.
            tx.abandon();
            (None, true)
        } else if status == StatusCode::ACCEPTED {
            (Some(resp), false)
        } else {
            tx.abandon();
            return Err(error_from_response("receive FlowFiles", resp).await);
        };
        Ok(Self {
            tx,
            resp,
            reader: FlowFileReader::new(compression, limits),
            buf: BytesMut::new(),
            no_data,
        })
    }

    /// The next piece of the body's FlowFile stream, or `None` at the end of the body.
    pub(crate) async fn next_part(&mut self) -> Result<Option<FlowFilePart>, Error> {
        loop {
            if let Some(part) = self.reader.next_part(&mut self.buf).map_err(|e| {
                Error::with_source(Kind::Protocol("bad FlowFile in the response".into()), e)
            })? {
                return Ok(Some(part));
            }
            let Some(resp) = self.resp.as_mut() else {
                return Ok(None);
            };
            let chunk = timed(self.tx.ctx.io_timeout, "reading FlowFiles", async {
                resp.chunk()
                    .await
                    .map_err(|e| transport_error("reading FlowFiles", e))
            })
            .await?;
            match chunk {
                Some(c) => self.buf.extend_from_slice(&c),
                None => {
                    self.resp = None;
                    if !self.reader.is_idle() || !self.buf.is_empty() {
                        return Err(Error::with_source(
                            Kind::Closed,
                            format!(
                                "response ended mid-FlowFile ({} bytes unread)",
                                self.buf.len()
                            ),
                        ));
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// `DELETE ?responseCode=12&checksum=…`: NiFi compares and commits.
    pub(crate) async fn confirm(&mut self) -> Result<(), Error> {
        if self.no_data {
            return Ok(());
        }
        let url = proto::commit_receive_url(&self.tx.location, self.reader.checksum());
        match self.tx.delete(&url, "committing the RECEIVE").await {
            Ok(12) => Ok(()),
            Ok(other) => Err(Error::protocol(format!(
                "receive commit answered responseCode {other}, expected 12"
            ))),
            Err(e) => Err(e),
        }
    }
}

fn stream_error(e: s2s_proto::stream::StreamError) -> Error {
    Error::with_source(
        Kind::Content("the FlowFile does not match its length".into()),
        e,
    )
}

/// `GET {api}/site-to-site/peers`: the HTTP peers (web ports).
pub(crate) async fn fetch_peers(ctx: &HttpCtx, api_base: &str) -> Result<Vec<crate::Peer>, Error> {
    #[derive(Deserialize)]
    struct Peers {
        #[serde(default)]
        peers: Vec<JsonPeer>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct JsonPeer {
        hostname: String,
        port: u16,
        #[serde(default)]
        secure: bool,
        #[serde(default)]
        flow_file_count: u32,
    }
    let url = proto::peers_url(api_base);
    let resp = timed(
        ctx.io_timeout,
        "fetching HTTP peers",
        ctx.send(Method::GET, &url, "application/json"),
    )
    .await?;
    if !resp.status().is_success() {
        return Err(error_from_response("peer list", resp).await);
    }
    let text = read_bounded(resp).await;
    let p: Peers = serde_json::from_str(&text)
        .map_err(|e| Error::with_source(Kind::Protocol("peer list JSON".into()), e))?;
    Ok(p.peers
        .into_iter()
        .map(|p| crate::Peer {
            host: p.hostname,
            port: p.port,
            secure: p.secure,
            flowfile_count: p.flow_file_count,
        })
        .collect())
}
