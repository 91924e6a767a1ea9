//! One RAW S2S connection: a sans-IO [`ClientSession`] driven over an async byte stream.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use s2s_proto::ResponseCode;
use s2s_proto::raw::{ClientSession, Event, SessionConfig, SessionError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tracing::debug;

use crate::error::{Error, Kind};

/// Any byte stream a connection can run over: TCP, TLS over TCP, an in-memory duplex…
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

/// The future a [`Connector`] returns.
pub type ConnectFuture<'a> =
    std::pin::Pin<Box<dyn Future<Output = std::io::Result<Box<dyn AsyncStream>>> + Send + 'a>>;

/// Opens the byte stream to a peer, replacing the built-in TCP (+ TLS) dialer: for proxies,
/// SSH tunnels, in-memory transports or tests. Set with
/// [`ClientBuilder::connector`](crate::ClientBuilder::connector).
pub trait Connector: Send + Sync + 'static {
    /// Connects to `addr` (`host:port`, after peer overrides). `secure` is NiFi's
    /// `siteToSiteSecure` flag for this peer: the stream must then already be TLS.
    fn connect<'a>(&'a self, addr: &'a str, secure: bool) -> ConnectFuture<'a>;
}

/// Write buffer size: small writes (headers, markers) coalesce, large content bypasses it.
const WRITE_BUFFER: usize = 64 * 1024;
/// Read chunk reservation.
const READ_CHUNK: usize = 64 * 1024;

pub(crate) struct Connection {
    io: BufWriter<Box<dyn AsyncStream>>,
    pub(crate) session: ClientSession,
    rbuf: BytesMut,
    io_timeout: Option<Duration>,
    /// Reachable `host:port` this connection talks to.
    pub(crate) peer: String,
    pub(crate) last_used: Instant,
    /// A transaction already finished on this connection: the port's state may have changed
    /// since the handshake checked it (see [`Connection::first_reply`]).
    pub(crate) reused: bool,
}

/// How long NiFi's first reply of a transaction on a reused connection may take before the
/// port's state is checked with a fresh handshake.
pub(crate) const FIRST_REPLY_DEADLINE: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Runs magic, version negotiation, handshake and (with a port) codec negotiation.
    pub(crate) async fn establish(
        io: Box<dyn AsyncStream>,
        config: SessionConfig,
        io_timeout: Option<Duration>,
        peer: String,
    ) -> Result<Self, Error> {
        let mut conn = Self {
            io: BufWriter::with_capacity(WRITE_BUFFER, io),
            session: ClientSession::new(config).map_err(map_session_error)?,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            io_timeout,
            peer,
            last_used: Instant::now(),
            reused: false,
        };
        match conn.next_event().await? {
            Event::Ready { protocol_version } => {
                debug!(protocol_version, "S2S session ready");
                Ok(conn)
            }
            other => Err(Error::protocol(format!(
                "unexpected event during handshake: {other:?}"
            ))),
        }
    }

    /// Hands everything the session queued to the socket (through the write buffer).
    pub(crate) async fn write_pending(&mut self) -> Result<(), Error> {
        while let Some(chunk) = self.session.poll_transmit() {
            with_timeout(
                self.io_timeout,
                "writing to NiFi",
                self.io.write_all(&chunk),
            )
            .await?;
        }
        Ok(())
    }

    /// Writes and flushes everything queued.
    pub(crate) async fn flush(&mut self) -> Result<(), Error> {
        self.write_pending().await?;
        with_timeout(self.io_timeout, "writing to NiFi", self.io.flush()).await
    }

    /// The next event of the session, reading from the peer as needed (every read bounded by
    /// the I/O timeout). Everything queued is flushed before any read.
    pub(crate) async fn next_event(&mut self) -> Result<Event, Error> {
        loop {
            if let Some(ev) = self.session.poll_event() {
                self.last_used = Instant::now();
                if matches!(
                    ev,
                    Event::SendCommitted { .. } | Event::ReceiveVerified { .. } | Event::NoData
                ) {
                    self.reused = true;
                }
                return Ok(ev);
            }
            self.flush().await?;
            if self.rbuf.capacity() - self.rbuf.len() < 1024 {
                self.rbuf.reserve(READ_CHUNK);
            }
            let n = with_timeout(
                self.io_timeout,
                "waiting for NiFi",
                self.io.get_mut().read_buf(&mut self.rbuf),
            )
            .await?;
            let res = if n == 0 {
                self.session.handle_eof(&self.rbuf)
            } else {
                self.session.handle_input(&mut self.rbuf)
            };
            if let Err(e) = res {
                // The session may have queued a last word (e.g. BAD_CHECKSUM); best effort.
                let _ = self.flush().await;
                return Err(map_session_error(e));
            }
        }
    }

    /// NiFi's first reply of a transaction. On a reused connection NiFi does not re-check the
    /// port: a transaction to a port stopped since the handshake gets no answer at all (NiFi
    /// reads until the client closes), so after [`FIRST_REPLY_DEADLINE`] without a reply
    /// `probe` runs (a fresh handshake, which does answer `PORT_NOT_IN_VALID_STATE`) while the
    /// wait goes on: its port-state or unknown-port error ends the transaction at once (it is
    /// rolled back: nothing was confirmed); if the port is fine, the wait continues as usual
    /// (bounded by the I/O timeout).
    pub(crate) async fn first_reply(
        &mut self,
        probe: impl Future<Output = Result<(), Error>>,
    ) -> Result<Event, Error> {
        if !self.reused {
            return self.next_event().await;
        }
        let peer = self.peer.clone();
        let ev = self.next_event();
        tokio::pin!(ev);
        tokio::select! {
            r = &mut ev => return r,
            () = tokio::time::sleep(FIRST_REPLY_DEADLINE) => {}
        }
        debug!(%peer, "no reply on a reused connection within {FIRST_REPLY_DEADLINE:?}; checking the port");
        tokio::pin!(probe);
        tokio::select! {
            r = &mut ev => r,
            p = &mut probe => match p {
                Err(e) if e.is_port_state() || e.is_unknown_port() => Err(e),
                _ => ev.await,
            },
        }
    }

    /// Cheap liveness probe for a pooled connection: polls one read without waiting. NiFi
    /// never speaks first between transactions, so EOF, an error or any byte means the
    /// connection is unusable (typically NiFi closed it after its idle timeout).
    pub(crate) async fn is_alive(&mut self) -> bool {
        if !self.rbuf.is_empty() || !self.session.is_idle() {
            return false;
        }
        self.rbuf.reserve(1024);
        // `timeout` polls the read once before looking at the (already expired) deadline.
        tokio::time::timeout(Duration::ZERO, self.io.get_mut().read_buf(&mut self.rbuf))
            .await
            .is_err()
    }

    /// Sends `SHUTDOWN` and closes, ignoring errors: the peer may already be gone.
    pub(crate) async fn shutdown(mut self) {
        if self.session.shutdown().is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = self.flush().await;
                let _ = self.io.shutdown().await;
            })
            .await;
        }
    }
}

pub(crate) async fn with_timeout<T>(
    t: Option<Duration>,
    what: &'static str,
    fut: impl Future<Output = std::io::Result<T>>,
) -> Result<T, Error> {
    match t {
        Some(t) => match tokio::time::timeout(t, fut).await {
            Ok(r) => r.map_err(Error::io),
            Err(_) => Err(Error::timeout(what)),
        },
        None => fut.await.map_err(Error::io),
    }
}

pub(crate) fn map_session_error(e: SessionError) -> Error {
    match e {
        SessionError::Refused { code, message } => {
            let msg = message.unwrap_or_default();
            match code {
                ResponseCode::UNKNOWN_PORT => Error::new(Kind::UnknownPort(if msg.is_empty() {
                    "NiFi answered UNKNOWN_PORT".into()
                } else {
                    msg
                })),
                ResponseCode::PORT_NOT_IN_VALID_STATE => Error::new(Kind::PortNotRunning(msg)),
                ResponseCode::PORTS_DESTINATION_FULL => Error::new(Kind::DestinationFull),
                ResponseCode::UNAUTHORIZED => Error::new(Kind::Unauthorized(msg)),
                other => Error::new(Kind::InvalidInput(format!(
                    "NiFi refused the handshake with {other:?}: {msg}"
                ))),
            }
        }
        SessionError::BadChecksum { .. } => Error::with_source(Kind::BadChecksum, e),
        SessionError::UnexpectedEof { .. } => Error::with_source(Kind::Closed, e),
        SessionError::Stream(_) => Error::with_source(
            Kind::Content("the FlowFile does not match its length".into()),
            e,
        ),
        SessionError::Encode(_) | SessionError::InvalidState(_) => Error::with_source(
            Kind::InvalidInput(String::from("request rejected locally")),
            e,
        ),
        other => Error::with_source(
            Kind::Protocol("NiFi sent something unexpected".into()),
            other,
        ),
    }
}
