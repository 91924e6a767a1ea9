//! The client's error type: opaque, with predicates for retry decisions.

use std::fmt;

use s2s_proto::ResponseCode;

/// Everything that can go wrong talking to NiFi.
///
/// The kind is private on purpose (as in tokio-postgres): callers decide with the predicates
/// [`is_retryable`](Self::is_retryable), [`is_timeout`](Self::is_timeout),
/// [`is_closed`](Self::is_closed), [`is_destination_full`](Self::is_destination_full) and
/// [`response_code`](Self::response_code), which stay stable while the variants evolve.
pub struct Error(Box<Inner>);

struct Inner {
    kind: Kind,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// Socket-level I/O failure (includes EOF in the middle of an exchange).
    Io,
    /// A connect or read exceeded its timeout.
    Timeout(&'static str),
    /// The REST discovery call failed (HTTP status or transport): NiFi unavailable for now.
    Discovery(String),
    /// The TLS handshake failed: NiFi's certificate is not trusted or not for this host, or
    /// NiFi refused ours. The `rustls::Error` is in the source chain.
    Tls(TlsFailure),
    /// The client's configuration cannot work with this NiFi (Site-to-Site disabled on the
    /// chosen transport, no RAW port advertised, TLS required but not configured, a bad URL).
    Config(String),
    /// No port with this name or id is known to NiFi (or NiFi answered UNKNOWN_PORT).
    UnknownPort(String),
    /// The port exists but is stopped, disabled or invalid (PORT_NOT_IN_VALID_STATE).
    PortNotRunning(String),
    /// NiFi refuses new data: its queues behind the port are full.
    DestinationFull,
    /// The CRC32 of the transaction did not match.
    BadChecksum,
    /// NiFi refused the identity (policy or certificate).
    Unauthorized(String),
    /// The peer spoke something we did not expect; the connection was dropped.
    Protocol(String),
    /// Our request was invalid (a bug or bad user input), e.g. a handshake property error.
    InvalidInput(String),
    /// A FlowFile's content source failed or did not match its declared length.
    Content(String),
    /// Every known peer is currently penalized or unreachable.
    NoPeerAvailable,
    /// The peer closed the connection.
    Closed,
    /// HTTP: NiFi no longer knows the transaction (its TTL passed and it rolled back).
    TransactionExpired(String),
    /// HTTP: NiFi failed internally (500) or answered an unexpected status.
    Server(String),
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Self(Box::new(Inner { kind, source: None }))
    }

    pub(crate) fn with_source(
        kind: Kind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self(Box::new(Inner {
            kind,
            source: Some(source.into()),
        }))
    }

    pub(crate) fn io(e: std::io::Error) -> Self {
        if let Some(t) = find_rustls(Some(&e)).map(TlsFailure::of) {
            return Self::with_source(Kind::Tls(t), e);
        }
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return Self::with_source(Kind::Closed, e);
        }
        Self::with_source(Kind::Io, e)
    }

    pub(crate) fn timeout(what: &'static str) -> Self {
        Self::new(Kind::Timeout(what))
    }

    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        Self::new(Kind::Protocol(msg.into()))
    }

    pub(crate) fn invalid_input(msg: impl Into<String>) -> Self {
        Self::new(Kind::InvalidInput(msg.into()))
    }

    /// A copy with the same kind and the source rendered as text (sources are not `Clone`).
    pub(crate) fn clone_shallow(&self) -> Self {
        let kind = match &self.0.kind {
            Kind::Io => Kind::Io,
            Kind::Timeout(w) => Kind::Timeout(w),
            Kind::Discovery(m) => Kind::Discovery(m.clone()),
            Kind::Tls(t) => Kind::Tls(*t),
            Kind::Config(m) => Kind::Config(m.clone()),
            Kind::UnknownPort(m) => Kind::UnknownPort(m.clone()),
            Kind::PortNotRunning(m) => Kind::PortNotRunning(m.clone()),
            Kind::DestinationFull => Kind::DestinationFull,
            Kind::BadChecksum => Kind::BadChecksum,
            Kind::Unauthorized(m) => Kind::Unauthorized(m.clone()),
            Kind::Protocol(m) => Kind::Protocol(m.clone()),
            Kind::InvalidInput(m) => Kind::InvalidInput(m.clone()),
            Kind::Content(m) => Kind::Content(m.clone()),
            Kind::NoPeerAvailable => Kind::NoPeerAvailable,
            Kind::Closed => Kind::Closed,
            Kind::TransactionExpired(m) => Kind::TransactionExpired(m.clone()),
            Kind::Server(m) => Kind::Server(m.clone()),
        };
        match &self.0.source {
            Some(s) => Self::with_source(kind, s.to_string()),
            None => Self::new(kind),
        }
    }

    /// An unauthorized error extended with the identity the client presented, so the user
    /// knows which DN needs NiFi's policies.
    pub(crate) fn with_identity(self, dn: Option<&str>) -> Self {
        let Kind::Unauthorized(m) = &self.0.kind else {
            return self;
        };
        let who = match dn {
            Some(dn) => format!("{m} (client presented DN {dn:?})"),
            None => format!("{m} (no client certificate configured)"),
        };
        Self(Box::new(Inner {
            kind: Kind::Unauthorized(who),
            source: self.0.source,
        }))
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.0.kind
    }

    /// Whether trying again later (possibly against another peer) may succeed.
    ///
    /// Retryable: I/O errors (connection refused included), closed connections, timeouts,
    /// destination full, bad checksum, port not running, no peer available, an expired HTTP
    /// transaction, NiFi unavailable (server errors, a failed discovery call). Fatal: TLS
    /// failures (untrusted certificate, wrong host name, client certificate refused), invalid
    /// configuration (Site-to-Site disabled on the transport, no RAW port advertised), unknown
    /// port, unauthorized, invalid input, content that does not match its length, and protocol
    /// violations (a bug on one side that a retry will not fix).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.0.kind,
            Kind::Io
                | Kind::Closed
                | Kind::Timeout(_)
                | Kind::DestinationFull
                | Kind::BadChecksum
                | Kind::PortNotRunning(_)
                | Kind::NoPeerAvailable
                | Kind::Discovery(_)
                | Kind::TransactionExpired(_)
                | Kind::Server(_)
        )
    }

    /// A short, stable name of the error's kind, for metrics and log fields: `io`, `timeout`,
    /// `discovery`, `tls`, `config`, `unknown_port`, `port_not_running`, `destination_full`, `bad_checksum`,
    /// `unauthorized`, `protocol`, `invalid_input`, `content`, `no_peer_available`, `closed`,
    /// `transaction_expired`, `server`.
    pub fn kind_name(&self) -> &'static str {
        match self.0.kind {
            Kind::Io => "io",
            Kind::Timeout(_) => "timeout",
            Kind::Discovery(_) => "discovery",
            Kind::Tls(_) => "tls",
            Kind::Config(_) => "config",
            Kind::UnknownPort(_) => "unknown_port",
            Kind::PortNotRunning(_) => "port_not_running",
            Kind::DestinationFull => "destination_full",
            Kind::BadChecksum => "bad_checksum",
            Kind::Unauthorized(_) => "unauthorized",
            Kind::Protocol(_) => "protocol",
            Kind::InvalidInput(_) => "invalid_input",
            Kind::Content(_) => "content",
            Kind::NoPeerAvailable => "no_peer_available",
            Kind::Closed => "closed",
            Kind::TransactionExpired(_) => "transaction_expired",
            Kind::Server(_) => "server",
        }
    }

    /// Whether NiFi had already expired (and rolled back) the HTTP transaction: nothing of it
    /// was committed, so resending cannot duplicate.
    pub fn is_transaction_expired(&self) -> bool {
        matches!(self.0.kind, Kind::TransactionExpired(_))
    }

    /// Whether the error is about the port's state (not running, destination full): retryable,
    /// but only after a backoff.
    pub fn is_port_state(&self) -> bool {
        matches!(self.0.kind, Kind::PortNotRunning(_) | Kind::DestinationFull)
    }

    /// Whether a connect or read timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self.0.kind, Kind::Timeout(_))
    }

    /// Whether the peer closed the connection unexpectedly.
    pub fn is_closed(&self) -> bool {
        matches!(self.0.kind, Kind::Closed)
    }

    /// Whether NiFi signalled backpressure (its queues are full).
    pub fn is_destination_full(&self) -> bool {
        matches!(self.0.kind, Kind::DestinationFull)
    }

    /// Whether the port is unknown to NiFi (by name or id).
    pub fn is_unknown_port(&self) -> bool {
        matches!(self.0.kind, Kind::UnknownPort(_))
    }

    /// Whether the port exists but is not running.
    pub fn is_port_not_running(&self) -> bool {
        matches!(self.0.kind, Kind::PortNotRunning(_))
    }

    /// Whether a FlowFile's content source failed or did not match its declared length (a
    /// file that changed size, a reader that ended early or ran long): not retryable as is.
    pub fn is_content_error(&self) -> bool {
        matches!(self.0.kind, Kind::Content(_))
    }

    /// What failed in the TLS handshake, if it was TLS (always fatal: fix the trust store,
    /// the URL's host name or the client certificate).
    pub fn tls_failure(&self) -> Option<TlsFailure> {
        match self.0.kind {
            Kind::Tls(t) => Some(t),
            _ => None,
        }
    }

    /// Whether the configuration cannot work with this NiFi: Site-to-Site disabled on the
    /// chosen transport, no RAW port advertised, TLS required but not configured, a bad URL,
    /// an unusable certificate file, or another invalid request.
    pub fn is_config(&self) -> bool {
        matches!(self.0.kind, Kind::Config(_) | Kind::InvalidInput(_))
    }

    /// Whether NiFi spoke something this client does not understand (fatal; a bug on one side).
    pub fn is_protocol(&self) -> bool {
        matches!(self.0.kind, Kind::Protocol(_))
    }

    /// Whether NiFi refused our identity.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self.0.kind, Kind::Unauthorized(_))
    }

    /// The S2S response code behind this error, when NiFi sent one.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match &self.0.kind {
            Kind::UnknownPort(_) => Some(ResponseCode::UNKNOWN_PORT),
            Kind::PortNotRunning(_) => Some(ResponseCode::PORT_NOT_IN_VALID_STATE),
            Kind::DestinationFull => Some(ResponseCode::PORTS_DESTINATION_FULL),
            Kind::BadChecksum => Some(ResponseCode::BAD_CHECKSUM),
            Kind::Unauthorized(_) => Some(ResponseCode::UNAUTHORIZED),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.kind {
            Kind::Io => f.write_str("I/O error talking to NiFi")?,
            Kind::Timeout(what) => write!(f, "timed out while {what}")?,
            Kind::Discovery(m) => write!(f, "site-to-site discovery failed: {m}")?,
            Kind::Tls(t) => write!(f, "TLS: {t}")?,
            Kind::Config(m) => write!(f, "configuration: {m}")?,
            Kind::UnknownPort(p) => write!(f, "unknown port: {p}")?,
            Kind::PortNotRunning(m) => write!(f, "port not running: {m}")?,
            Kind::DestinationFull => f.write_str("NiFi destination full (backpressure)")?,
            Kind::BadChecksum => f.write_str("transaction checksum mismatch")?,
            Kind::Unauthorized(m) => write!(f, "unauthorized: {m}")?,
            Kind::Protocol(m) => write!(f, "protocol error: {m}")?,
            Kind::InvalidInput(m) => write!(f, "invalid input: {m}")?,
            Kind::Content(m) => write!(f, "FlowFile content: {m}")?,
            Kind::NoPeerAvailable => f.write_str("no NiFi peer available")?,
            Kind::Closed => f.write_str("connection closed by peer")?,
            Kind::TransactionExpired(m) => write!(f, "transaction expired on NiFi: {m}")?,
            Kind::Server(m) => write!(f, "NiFi server error: {m}")?,
        }
        Ok(())
    }
}

/// `err` and every error below it (`source()` after `source()`) on one line, `": "`-joined.
///
/// [`Error`]'s `Display` says only its own part ("site-to-site discovery failed: GET …"); the
/// cause that matters ("invalid peer certificate: UnknownIssuer", "Connection refused") is
/// further down the chain. This is what the `s2s` CLI prints; use it (or walk `source()`) in
/// logs.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !text.is_empty() {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// What failed in a TLS handshake (see [`Error::tls_failure`]). Every one is fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// NiFi's certificate chain does not lead to a trusted CA (configure the CA/truststore).
    UnknownIssuer,
    /// NiFi's certificate is not valid for the host name in the URL (or peer list).
    HostName,
    /// NiFi's certificate is otherwise invalid: expired, not yet valid, revoked, a bad
    /// signature or an unsupported key.
    Certificate,
    /// NiFi refused the client certificate, or wanted one and got none.
    ClientCertificateRejected,
    /// The handshake failed otherwise (no common protocol version or cipher suite, …).
    Handshake,
}

impl TlsFailure {
    fn of(e: &rustls::Error) -> Self {
        use rustls::{AlertDescription as A, CertificateError as C};
        match e {
            rustls::Error::InvalidCertificate(C::UnknownIssuer) => Self::UnknownIssuer,
            rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            ) => Self::HostName,
            rustls::Error::InvalidCertificate(_) => Self::Certificate,
            rustls::Error::AlertReceived(
                A::BadCertificate
                | A::CertificateRequired
                | A::UnknownCA
                | A::CertificateUnknown
                | A::CertificateExpired
                | A::CertificateRevoked
                | A::UnsupportedCertificate
                | A::AccessDenied,
            ) => Self::ClientCertificateRejected,
            _ => Self::Handshake,
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownIssuer => "NiFi's certificate is not issued by a trusted CA",
            Self::HostName => "NiFi's certificate is not valid for this host name",
            Self::Certificate => "NiFi's certificate is invalid",
            Self::ClientCertificateRejected => "NiFi refused the client certificate",
            Self::Handshake => "handshake failed",
        })
    }
}

/// The `rustls::Error` somewhere in `cur`'s chain: reqwest and hyper nest it a few `source()`s
/// down, tokio-rustls wraps it in an `io::Error` (whose `source()` skips the wrapped error, so
/// `get_ref()` is looked into as well).
pub(crate) fn find_rustls<'a>(
    mut cur: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a rustls::Error> {
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && let Some(r) = find_rustls(Some(inner))
        {
            return Some(r);
        }
        cur = e.source();
    }
    None
}

/// A failed HTTP request (discovery, HTTP S2S): a timeout, a TLS failure (fatal), a refused or
/// broken connection (`Io`), or else `fallback`. The reqwest error stays the source.
pub(crate) fn from_reqwest(e: reqwest::Error, what: &'static str, fallback: Kind) -> Error {
    if e.is_timeout() {
        return Error::with_source(Kind::Timeout(what), e);
    }
    if let Some(t) = find_rustls(Some(&e)).map(TlsFailure::of) {
        return Error::with_source(Kind::Tls(t), e);
    }
    if e.is_connect() {
        return Error::with_source(Kind::Io, e);
    }
    Error::with_source(fallback, e)
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("source", &self.0.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(Error::io(std::io::Error::other("x")).is_retryable());
        assert!(Error::timeout("reading").is_timeout());
        assert!(Error::timeout("reading").is_retryable());
        assert!(Error::new(Kind::DestinationFull).is_retryable());
        assert!(Error::new(Kind::BadChecksum).is_retryable());
        assert!(Error::new(Kind::PortNotRunning("x".into())).is_retryable());
        assert!(!Error::new(Kind::UnknownPort("x".into())).is_retryable());
        assert!(!Error::new(Kind::Unauthorized("x".into())).is_retryable());
        assert!(!Error::invalid_input("x").is_retryable());
        assert!(!Error::protocol("x").is_retryable());
        assert_eq!(
            Error::new(Kind::UnknownPort("x".into())).response_code(),
            Some(ResponseCode::UNKNOWN_PORT)
        );
        assert!(Error::io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)).is_closed());
        let e = Error::new(Kind::Unauthorized("User DN is not known".into()))
            .with_identity(Some("CN=client, OU=NIFI"));
        assert!(e.is_unauthorized());
        assert!(e.to_string().contains("CN=client, OU=NIFI"), "{e}");
        let e = Error::new(Kind::Unauthorized("no".into())).with_identity(None);
        assert!(e.to_string().contains("no client certificate"), "{e}");
        assert!(
            Error::new(Kind::DestinationFull)
                .with_identity(Some("x"))
                .is_destination_full()
        );
    }

    /// Like reqwest's: a generic message whose `source()` holds another generic one, with the
    /// cause that matters at the bottom.
    #[derive(Debug)]
    struct Layer(
        &'static str,
        Option<Box<dyn std::error::Error + Send + Sync>>,
    );

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn display_says_it_once_and_the_chain_carries_the_cause() {
        let root = Layer("invalid peer certificate: UnknownIssuer", None);
        let mid = Layer("client error (Connect)", Some(Box::new(root)));
        let top = Layer("error sending request", Some(Box::new(mid)));
        let e = Error::with_source(Kind::Discovery("GET https://nifi/x".into()), top);
        assert_eq!(
            e.to_string(),
            "site-to-site discovery failed: GET https://nifi/x"
        );
        // What the CLI prints for the same error: each message once, the root cause included.
        assert_eq!(
            error_chain(&e),
            "site-to-site discovery failed: GET https://nifi/x: error sending request: \
             client error (Connect): invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn rustls_errors_are_found_through_io_and_source_layers() {
        use rustls::CertificateError as C;
        for (err, want) in [
            (
                rustls::Error::InvalidCertificate(C::UnknownIssuer),
                TlsFailure::UnknownIssuer,
            ),
            (
                rustls::Error::InvalidCertificate(C::NotValidForName),
                TlsFailure::HostName,
            ),
            (
                rustls::Error::InvalidCertificate(C::Expired),
                TlsFailure::Certificate,
            ),
            (
                rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
                TlsFailure::ClientCertificateRejected,
            ),
            (
                rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
                TlsFailure::Handshake,
            ),
        ] {
            // As tokio-rustls reports it: an io::Error wrapping the rustls::Error.
            let io = std::io::Error::new(std::io::ErrorKind::InvalidData, err.clone());
            let e = Error::io(io);
            assert_eq!(e.tls_failure(), Some(want), "{err:?}");
            assert!(!e.is_retryable(), "{err:?}");
            assert_eq!(e.kind_name(), "tls");
            // As hyper/reqwest nest it: generic layers above an io::Error above the rustls one.
            let io = std::io::Error::other(err.clone());
            let nested = Layer("error sending request", Some(Box::new(io)));
            assert_eq!(find_rustls(Some(&nested)).map(TlsFailure::of), Some(want));
            assert!(
                error_chain(&e).contains(&err.to_string()),
                "{}",
                error_chain(&e)
            );
        }
        // Plain I/O stays retryable.
        let refused = Error::io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(refused.is_retryable() && refused.tls_failure().is_none());
        assert!(!Error::new(Kind::Config("x".into())).is_retryable());
        assert!(Error::new(Kind::Config("x".into())).is_config());
    }
}
