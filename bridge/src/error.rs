//! The bridge's error type (startup and serving; per-batch problems are [`crate::Outcome`]s).

/// Errors that stop the bridge from starting or serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Invalid configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// TLS setup failed.
    #[error("tls: {0}")]
    Tls(String),
    /// The spool could not be opened.
    #[error("spool: {0}")]
    Spool(String),
    /// The S2S client could not be set up (its error, with its own causes, is the source).
    #[error("s2s client setup")]
    Client(#[source] s2s::Error),
    /// Listener I/O.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}
