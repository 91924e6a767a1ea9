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
    /// The REST discovery call failed (HTTP status or transport).
    Discovery(String),
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
    /// Retryable: I/O errors, closed connections, timeouts, destination full, bad checksum,
    /// port not running, no peer available, an expired HTTP transaction, NiFi server errors. Fatal: unknown port, unauthorized, invalid input,
    /// content that does not match its length, and protocol violations (a bug on one side that a retry will not fix).
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
    /// `discovery`, `unknown_port`, `port_not_running`, `destination_full`, `bad_checksum`,
    /// `unauthorized`, `protocol`, `invalid_input`, `content`, `no_peer_available`, `closed`,
    /// `transaction_expired`, `server`.
    pub fn kind_name(&self) -> &'static str {
        match self.0.kind {
            Kind::Io => "io",
            Kind::Timeout(_) => "timeout",
            Kind::Discovery(_) => "discovery",
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
            Kind::Io => f.write_str("I/O error")?,
            Kind::Timeout(what) => write!(f, "timed out while {what}")?,
            Kind::Discovery(m) => write!(f, "site-to-site discovery failed: {m}")?,
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
        if let Some(src) = &self.0.source {
            write!(f, ": {}", error_chain(src.as_ref()))?;
        }
        Ok(())
    }
}

/// `err` and every error below it on one line, `": "`-joined, each message once.
///
/// HTTP client errors nest the useful part ("invalid peer certificate: UnknownIssuer",
/// "Connection refused") two or three `source()`s below generic ones ("error sending request");
/// [`Error`]'s own `Display` already uses this for its cause, and the `s2s` CLI for what it prints.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
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
    fn display_names_the_deepest_cause_once() {
        let root = Layer("invalid peer certificate: UnknownIssuer", None);
        let mid = Layer("error sending request", Some(Box::new(root)));
        let top = Layer("error sending request", Some(Box::new(mid)));
        let e = Error::with_source(Kind::Discovery("GET https://nifi/x".into()), top);
        assert_eq!(
            e.to_string(),
            "site-to-site discovery failed: GET https://nifi/x: error sending request: \
             invalid peer certificate: UnknownIssuer"
        );
        // What the CLI prints for the same error: each message once, the root cause included.
        assert_eq!(error_chain(&e), e.to_string());
    }
}
