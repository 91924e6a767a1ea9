use std::time::Duration;

/// Everything that can go wrong in the test kit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No NiFi was configured or found, and neither `CI` nor `S2S_E2E=1` is set: tests should skip
    /// (see [`crate::nifi_or_skip!`]).
    #[error("no NiFi available ({0}); run `cargo xtask nifi up` or set NIFI_URL")]
    NotAvailable(String),
    /// No NiFi was found although `CI` or `S2S_E2E=1` demands one: tests must fail.
    #[error("a NiFi is required (CI or S2S_E2E=1 is set) but none is available: {0}")]
    Required(String),
    /// The HTTP request itself failed (connection refused, timeout, bad body).
    #[error("{method} {url}: {source}")]
    Http {
        /// HTTP method.
        method: &'static str,
        /// Request URL.
        url: String,
        /// Underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// NiFi answered with a non-success status.
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// Request URL.
        url: String,
        /// Status code.
        status: u16,
        /// Response body (NiFi puts the reason there), truncated.
        body: String,
    },
    /// NiFi answered something this kit does not understand.
    #[error("unexpected answer from NiFi: {0}")]
    Unexpected(String),
    /// A wait did not finish in time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was waited for (with the last observed state).
        what: String,
        /// How long.
        waited: Duration,
    },
    /// No port with that name exists.
    #[error("no root port named {0:?}")]
    NoSuchPort(String),
    /// The flow under test reported errors (the text of its `ERROR` bulletins, one per line).
    #[error("the flow reported errors:\n{0}")]
    FlowError(String),
    /// Downloading, assembling, starting or stopping NiFi failed.
    #[error("provisioning NiFi: {0}")]
    Provision(String),
    /// Starting, querying or stopping the test PostgreSQL failed (see [`crate::postgres`]).
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// Local I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// True when no NiFi is available and the caller may skip (not in CI).
    pub fn is_not_available(&self) -> bool {
        matches!(self, Self::NotAvailable(_))
    }
}

/// Result with the kit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
