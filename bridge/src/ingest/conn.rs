//! Per-connection facts hyper does not hand to handlers: the header names **as the sender wrote
//! them** (hyper lower-cases names; its `preserve_header_case` map is private to hyper) and, on the
//! TLS listener, the client certificate's subject and issuer DN.
//!
//! [`ConnAcceptor`] wraps axum-server's acceptor: the accepted stream becomes an [`Observed`]
//! stream that reads HTTP/1 request heads as they pass (bounded: a head over [`MAX_HEAD`] bytes,
//! HTTP/2, an upgrade or anything it cannot parse switches the observer off for the connection),
//! follows the body framing (`Content-Length`, chunked) to find the next head, and queues each
//! head's names. The per-connection service [`WithConn`] takes the oldest queued head when hyper
//! calls it (hyper serves a connection's requests in order) and puts it into the request's
//! extensions as [`RequestConn`], after checking that it names exactly the request's headers —
//! if not, the handler falls back to the lower-case names.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::http::Request;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest request head observed; a longer one switches the observer off (hyper's own limit is
/// lower, so such a request is refused anyway).
pub(crate) const MAX_HEAD: usize = 256 << 10;
/// Most header lines in one observed head.
const MAX_HEADERS: usize = 512;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 8 << 10;

/// The client certificate of a TLS connection, formatted like NiFi does (RFC 2253-style DN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientDn {
    pub(crate) subject: String,
    pub(crate) issuer: String,
}

/// What the handlers learn about a request's connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestConn {
    /// Header names in the sender's case, in order, each name once (first spelling wins);
    /// `None` if unknown (then use the lower-case names).
    pub(crate) names: Option<Arc<Vec<String>>>,
    /// The client certificate (TLS listener with client authentication).
    pub(crate) client: Option<ClientDn>,
}

/// Shared between the stream observer and the per-connection service.
#[derive(Debug, Default)]
struct Meta {
    heads: Mutex<VecDeque<Vec<String>>>,
    client: Option<ClientDn>,
}

impl Meta {
    fn push(&self, names: Vec<String>) {
        let mut q = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: hyper never reads far ahead of the request it serves.
        if q.len() >= 64 {
            q.pop_front();
        }
        q.push_back(names);
    }

    /// The oldest head if it names exactly the headers of `req`.
    fn take<B>(&self, req: &Request<B>) -> Option<Vec<String>> {
        let names = self
            .heads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()?;
        let h = req.headers();
        let same = names.len() == h.keys_len()
            && names
                .iter()
                .all(|n| h.contains_key(n.to_ascii_lowercase().as_str()));
        same.then_some(names)
    }
}

/// Streams whose peer may have presented a client certificate.
pub(crate) trait PeerCert {
    /// The client certificate's DNs, if any.
    fn client_dn(&self) -> Option<ClientDn>;
}

impl PeerCert for tokio::net::TcpStream {
    fn client_dn(&self) -> Option<ClientDn> {
        None
    }
}

impl<S> PeerCert for tokio_rustls::server::TlsStream<S> {
    fn client_dn(&self) -> Option<ClientDn> {
        let cert = self.get_ref().1.peer_certificates()?.first()?;
        crate::tls::cert_dns(cert.as_ref())
    }
}

/// What every accepted connection must pass before hyper sees it: the connection limit and the
/// first-byte deadline (hyper's header-read timer only starts once the first byte has arrived).
#[derive(Debug, Clone)]
pub(crate) struct ConnGuard {
    /// One permit per open TCP connection (`limits.max_tcp_connections`).
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    /// A connection that sends nothing for this long is closed (`limits.header_read_timeout_ms`).
    pub(crate) first_byte: std::time::Duration,
}

/// axum-server acceptor adding the observer and [`RequestConn`] (see the module docs), and
/// enforcing [`ConnGuard`].
#[derive(Debug, Clone)]
pub(crate) struct ConnAcceptor<A> {
    inner: A,
    guard: ConnGuard,
}

impl<A> ConnAcceptor<A> {
    pub(crate) fn new(inner: A, guard: ConnGuard) -> Self {
        Self { inner, guard }
    }
}

type BoxFut<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl<A, S> axum_server::accept::Accept<tokio::net::TcpStream, S> for ConnAcceptor<A>
where
    A: axum_server::accept::Accept<tokio::net::TcpStream, S> + Clone + Send + Sync + 'static,
    A::Future: Send + 'static,
    A::Stream: PeerCert + Send + 'static,
    A::Service: Send + 'static,
    S: Send + 'static,
{
    type Stream = Observed<A::Stream>;
    type Service = WithConn<A::Service>;
    type Future = BoxFut<(Self::Stream, Self::Service)>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        // Over the limit: dropping the stream closes it at once, before any byte is read.
        let slot = self.guard.slots.clone().try_acquire_owned();
        let first_byte = self.guard.first_byte;
        let inner = self.inner.clone();
        Box::pin(async move {
            let slot = slot.map_err(|_| {
                tracing::debug!("connection refused: max_tcp_connections reached");
                io::Error::other("max_tcp_connections reached")
            })?;
            // A client that connects and sends nothing would otherwise wait in hyper's protocol
            // detection forever (peek also returns on EOF and errors; it consumes nothing).
            tokio::time::timeout(first_byte, stream.peek(&mut [0u8; 1]))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within the header read timeout",
                    )
                })??;
            let (stream, service) = inner.accept(stream, service).await?;
            let meta = Arc::new(Meta {
                heads: Mutex::default(),
                client: stream.client_dn(),
            });
            Ok((
                Observed {
                    inner: stream,
                    meta: meta.clone(),
                    state: State::Head(Vec::new()),
                    _slot: Some(slot),
                },
                WithConn {
                    inner: service,
                    meta,
                },
            ))
        })
    }
}

/// The per-connection service: puts [`RequestConn`] into each request.
#[derive(Debug, Clone)]
pub(crate) struct WithConn<S> {
    inner: S,
    meta: Arc<Meta>,
}

impl<S, B> tower_service::Service<Request<B>> for WithConn<S>
where
    S: tower_service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let names = self.meta.take(&req).map(Arc::new);
        req.extensions_mut().insert(RequestConn {
            names,
            client: self.meta.client.clone(),
        });
        self.inner.call(req)
    }
}

/// Where the observer is in the byte stream.
#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head(Vec<u8>),
    /// Skipping this many body bytes.
    Body(u64),
    /// A chunk-size line (collected so far).
    ChunkSize(Vec<u8>),
    /// Chunk data still to skip, then its CRLF.
    ChunkData(u64),
    /// The CRLF after chunk data: bytes still to skip.
    ChunkEnd(u8),
    /// A trailer line (after the last chunk); an empty one ends the request.
    Trailer(Vec<u8>),
    /// Not observing (HTTP/2, upgrade, unparseable).
    Off,
}

/// A stream that observes request heads as they are read (see the module docs).
#[derive(Debug)]
pub(crate) struct Observed<S> {
    inner: S,
    meta: Arc<Meta>,
    state: State,
    /// Held while the connection is open (`limits.max_tcp_connections`).
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<S> Observed<S> {
    fn observe(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Off => return,
                State::Body(left) => {
                    let n = (*left).min(data.len() as u64);
                    *left -= n;
                    data = &data[n as usize..];
                    if *left == 0 {
                        self.state = State::Head(Vec::new());
                    }
                }
                State::ChunkData(left) => {
                    let n = (*left).min(data.len() as u64);
                    *left -= n;
                    data = &data[n as usize..];
                    if *left == 0 {
                        self.state = State::ChunkEnd(2);
                    }
                }
                State::ChunkEnd(left) => {
                    *left -= 1;
                    data = &data[1..];
                    if *left == 0 {
                        self.state = State::ChunkSize(Vec::new());
                    }
                }
                State::ChunkSize(line) | State::Trailer(line) => {
                    let (line_done, used) = match data.iter().position(|&b| b == b'\n') {
                        Some(i) => (true, i + 1),
                        None => (false, data.len()),
                    };
                    line.extend_from_slice(&data[..used]);
                    data = &data[used..];
                    if line.len() > MAX_LINE {
                        self.state = State::Off;
                        return;
                    }
                    if !line_done {
                        continue;
                    }
                    let text = String::from_utf8_lossy(line).trim().to_owned();
                    if matches!(self.state, State::Trailer(_)) {
                        self.state = if text.is_empty() {
                            State::Head(Vec::new())
                        } else {
                            State::Trailer(Vec::new())
                        };
                        continue;
                    }
                    let size = text.split(';').next().unwrap_or("").trim();
                    self.state = match u64::from_str_radix(size, 16) {
                        Ok(0) => State::Trailer(Vec::new()),
                        Ok(n) => State::ChunkData(n),
                        Err(_) => State::Off,
                    };
                }
                State::Head(buf) => {
                    // Empty lines between requests are allowed.
                    if buf.is_empty() {
                        while let [b'\r' | b'\n', rest @ ..] = data {
                            data = rest;
                        }
                        if data.is_empty() {
                            return;
                        }
                    }
                    let before = buf.len();
                    let take = data.len().min(MAX_HEAD + 1 - before);
                    buf.extend_from_slice(&data[..take]);
                    let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut req = httparse::Request::new(&mut headers);
                    match req.parse(buf) {
                        Ok(httparse::Status::Complete(len)) => {
                            let next = head_done(&req);
                            data = &data[len - before..];
                            self.state = match next {
                                Some((names, state)) => {
                                    self.meta.push(names);
                                    state
                                }
                                None => State::Off,
                            };
                        }
                        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return,
                        _ => {
                            self.state = State::Off;
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// A complete head: its names (first spelling of each, in order) and how its body is framed.
fn head_done(req: &httparse::Request<'_, '_>) -> Option<(Vec<String>, State)> {
    if req.version != Some(1) && req.version != Some(0) {
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    let mut chunked = false;
    let mut length: Option<u64> = None;
    let mut upgrade = false;
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse().ok()?);
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
        if !names.iter().any(|n| n.eq_ignore_ascii_case(h.name)) {
            names.push(h.name.to_owned());
        }
    }
    let state = if upgrade || req.method == Some("CONNECT") {
        State::Off
    } else if chunked {
        State::ChunkSize(Vec::new())
    } else {
        match length {
            Some(n) if n > 0 => State::Body(n),
            _ => State::Head(Vec::new()),
        }
    };
    Some((names, state))
}

impl<S: AsyncRead + Unpin> AsyncRead for Observed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r
            && !matches!(self.state, State::Off)
        {
            let new = buf.filled()[before..].to_vec();
            self.observe(&new);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Observed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observer() -> Observed<()> {
        Observed {
            inner: (),
            meta: Arc::new(Meta::default()),
            state: State::Head(Vec::new()),
            _slot: None,
        }
    }

    fn heads(o: &Observed<()>) -> Vec<Vec<String>> {
        o.meta.heads.lock().unwrap().iter().cloned().collect()
    }

    /// Three pipelined requests (fixed length, chunked with a trailer, no body), fed at every
    /// split size: each head's names in the sender's case, in order.
    #[test]
    fn heads_across_bodies_at_any_split() {
        let stream = b"POST /a HTTP/1.1\r\nHost: x\r\ntenantId: 1\r\nContent-Length: 5\r\n\r\nhello\
POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Mixed-Case: v\r\nx-mixed-case: w\r\n\r\n\
5;ext=1\r\nabcde\r\n3\r\nfgh\r\n0\r\nTrailer-A: t\r\n\r\n\
\r\nHEAD /a HTTP/1.1\r\nHOST: y\r\n\r\n";
        for step in [1, 2, 3, 7, 50, stream.len()] {
            let mut o = observer();
            for piece in stream.chunks(step) {
                o.observe(piece);
            }
            assert_eq!(
                heads(&o),
                vec![
                    vec!["Host", "tenantId", "Content-Length"],
                    vec!["Host", "Transfer-Encoding", "X-Mixed-Case"],
                    vec!["HOST"],
                ],
                "step {step}"
            );
            assert!(matches!(o.state, State::Head(ref b) if b.is_empty()));
        }
    }

    #[test]
    fn off_for_http2_upgrade_and_garbage() {
        for input in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
            b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"\x16\x03\x01 not http",
            b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        ] {
            let mut o = observer();
            o.observe(input);
            o.observe(b"POST / HTTP/1.1\r\nLate: 1\r\n\r\n");
            assert!(matches!(o.state, State::Off), "{input:?}");
            assert!(heads(&o).iter().all(|h| !h.contains(&"Late".to_owned())));
        }
        let mut o = observer();
        o.observe(b"POST / HTTP/1.1\r\nX: ");
        o.observe(&vec![b'a'; MAX_HEAD]);
        assert!(matches!(o.state, State::Off));
    }

    #[test]
    fn take_checks_the_names() {
        let meta = Meta::default();
        meta.push(vec!["Host".into(), "tenantId".into()]);
        let req = Request::builder()
            .header("host", "x")
            .header("tenantid", "1")
            .body(())
            .unwrap();
        assert_eq!(
            meta.take(&req),
            Some(vec!["Host".to_owned(), "tenantId".to_owned()])
        );
        meta.push(vec!["Host".into()]);
        assert_eq!(
            meta.take(&req),
            None,
            "a head that does not match is dropped"
        );
        assert_eq!(meta.take(&req), None);
    }
}
