//! The Site-to-Site sink: one S2S SEND transaction per delivery, on the `s2s` client's pool
//! (peer selection, penalties, peer overrides are the client's).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s2s::{Client, ClientBuilder, Direction, Transport};

use crate::config::NifiConfig;
use crate::record::{Content, FlowFile, Reason, Record};
use crate::sink::{BoxFuture, Delivery, Sink};

/// Delivers to a NiFi input port over Site-to-Site.
#[derive(Debug, Clone)]
pub struct S2sSink {
    client: Client,
    port: String,
    label: String,
    /// When NiFi last said its destination was full. The client then penalizes the peer, so the
    /// next attempts fail with "no peer available": that is still back-pressure, not an outage.
    last_full: Arc<Mutex<Option<Instant>>>,
    /// Set by a fatal error (TLS, unauthorized, unknown port, configuration): NiFi is not
    /// contacted again before its backoff passed.
    fatal: Arc<Mutex<Option<FatalState>>>,
    timeout: Duration,
}

/// A fatal error and how long the sink leaves NiFi alone because of it.
#[derive(Debug, Clone)]
struct FatalState {
    /// `s2s::Error::kind_name` (`tls`, `unauthorized`, `unknown_port`, `config`, …).
    kind: &'static str,
    /// The error with its cause chain.
    message: String,
    /// Current backoff: [`FATAL_FIRST`] doubling to [`FATAL_MAX`].
    backoff: Duration,
    /// No attempt before this.
    until: Instant,
    /// Fatal attempts in a row.
    count: u64,
}

/// First wait after a fatal error; it doubles with each fatal attempt, up to [`FATAL_MAX`].
pub const FATAL_FIRST: Duration = Duration::from_secs(30);
/// Longest wait between attempts while NiFi keeps refusing for good.
pub const FATAL_MAX: Duration = Duration::from_secs(300);

/// The slowest transfer rate (bytes/s) a transaction is given time for, beyond `timeout_ms`.
const MIN_RATE: u64 = 4 << 20;

/// How long after a "destination full" a peer-less failure still counts as back-pressure.
const FULL_MEMORY: Duration = Duration::from_secs(30);

impl S2sSink {
    /// Builds the client from the `[nifi]` configuration (no network I/O yet).
    pub fn new(cfg: &NifiConfig) -> Result<Self, crate::Error> {
        if cfg.urls.is_empty() {
            return Err(crate::Error::Config(
                "nifi.urls is empty (use --nifi-url)".into(),
            ));
        }
        let port = cfg
            .port_id
            .clone()
            .or_else(|| cfg.port_name.clone())
            .ok_or_else(|| {
                crate::Error::Config("nifi.port_name or nifi.port_id is required".into())
            })?;
        let client = client_builder(cfg)?.build().map_err(crate::Error::Client)?;
        let label = format!(
            "{}#{}",
            cfg.urls.first().map(String::as_str).unwrap_or(""),
            port
        );
        Ok(Self {
            client,
            port,
            label,
            last_full: Arc::new(Mutex::new(None)),
            fatal: Arc::new(Mutex::new(None)),
            timeout: Duration::from_millis(cfg.timeout_ms),
        })
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn fatal_lock(&self) -> std::sync::MutexGuard<'_, Option<FatalState>> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// While a fatal error's backoff runs: what to answer instead of contacting NiFi.
    fn fatal_pending(&self) -> Option<Delivery> {
        let g = self.fatal_lock();
        let st = g.as_ref()?;
        let left = st.until.checked_duration_since(Instant::now())?;
        Some(Delivery::Retryable {
            reason: Reason::Unavailable,
            message: format!(
                "NiFi refused for good ({}): {}; next attempt in {} s",
                st.kind,
                st.message,
                left.as_secs().max(1)
            ),
            retry_after: Some(left),
        })
    }

    /// Records a fatal error: one error line (again only when the error changes), a metric,
    /// and a slow backoff during which NiFi is left alone. The batch is kept (answered *retry
    /// after*): the data is fine, the bridge's configuration or NiFi's is not.
    fn trip(&self, e: &s2s::Error) -> Delivery {
        let message = s2s::error_chain(e);
        let kind = e.kind_name();
        metrics::counter!("bridge_sink_fatal_errors_total", "kind" => kind).increment(1);
        let mut g = self.fatal_lock();
        let (backoff, count, same) = match g.as_ref() {
            Some(st) => (
                (st.backoff * 2).min(FATAL_MAX),
                st.count + 1,
                st.message == message,
            ),
            None => (FATAL_FIRST, 1, false),
        };
        if same {
            tracing::debug!(sink = %self.label, kind, error = %message, ?backoff, count, "NiFi still refuses");
        } else {
            tracing::error!(
                sink = %self.label,
                kind,
                error = %message,
                retry_in = ?backoff,
                "NiFi refused for good: not retrying before the backoff (doubling to 5 min); fix the configuration, /readyz says why"
            );
        }
        *g = Some(FatalState {
            kind,
            message: message.clone(),
            backoff,
            until: Instant::now() + backoff,
            count,
        });
        Delivery::Retryable {
            reason: Reason::Unavailable,
            message: format!("NiFi refused for good ({kind}): {message}"),
            retry_after: Some(backoff),
        }
    }

    /// A commit after a fatal streak: say so once and forget it.
    fn clear_fatal(&self) {
        if let Some(st) = self.fatal_lock().take() {
            tracing::info!(sink = %self.label, after = st.count, "NiFi accepts again after fatal errors");
        }
    }

    fn mark_full(&self) {
        *self.last_full.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn recently_full(&self) -> bool {
        self.last_full
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < FULL_MEMORY)
    }

    async fn send(&self, records: &[Record]) -> Result<bool, SendFail> {
        let mut tx = self.client.send_transaction(&self.port).await?;
        for r in records {
            match &r.content {
                Content::Inline(b) => {
                    tx.send(FlowFile {
                        attributes: r.attributes.clone(),
                        content: b.clone(),
                    })
                    .await?;
                }
                Content::File { len, .. } => {
                    // Staged content streams from its file in bounded chunks.
                    let reader = r.reader().await.map_err(SendFail::Content)?;
                    tx.send_reader(r.attributes.clone(), *len, reader).await?;
                }
            }
        }
        Ok(tx.commit().await?.destination_full)
    }
}

/// The `s2s` client builder for `cfg`: transport, TLS (PEM or PKCS#12), token or login, proxy.
/// Passwords and tokens are read from the environment variables `cfg` names; errors name the
/// variable, never a value.
pub(crate) fn client_builder(cfg: &NifiConfig) -> Result<ClientBuilder, crate::Error> {
    let transport = match cfg.transport.as_str() {
        "raw" => Transport::Raw,
        "http" => Transport::Http,
        other => {
            return Err(crate::Error::Config(format!(
                "nifi.transport must be \"raw\" or \"http\", not {other:?}"
            )));
        }
    };
    let secret = |var: &str, what: &str| {
        std::env::var(var).map_err(|_| {
            crate::Error::Config(format!(
                "{what}: set the environment variable {var} (or name another with nifi.{what}_env)"
            ))
        })
    };
    let timeout = Some(Duration::from_millis(cfg.timeout_ms));
    let mut b = Client::builder(cfg.urls.join(","))
        .connect_timeout(timeout)
        .io_timeout(timeout)
        .transport(transport);
    if let Some(p) = &cfg.proxy {
        b = b.proxy(p.clone());
    }
    if let Some(p12) = &cfg.pkcs12 {
        let pw = secret(&cfg.pkcs12_password_env, "pkcs12_password")?;
        b = b.tls_pkcs12(p12, &pw).map_err(crate::Error::Client)?;
    }
    match (&cfg.ca, &cfg.cert, &cfg.key) {
        (Some(ca), Some(cert), Some(key)) => {
            b = b
                .tls_pem(ca, Some((cert, key)))
                .map_err(crate::Error::Client)?;
        }
        (Some(ca), None, None) => b = b.tls_ca_pem(ca).map_err(crate::Error::Client)?,
        (_, None, None) => {}
        _ => {
            return Err(crate::Error::Config(
                "nifi.cert and nifi.key go together and need nifi.ca (PEM), as the s2s CLI's \
                 --cert/--key/--ca; with a PKCS#12 identity use nifi.pkcs12"
                    .into(),
            ));
        }
    }
    if let Some(ts) = &cfg.truststore {
        let pw = secret(&cfg.truststore_password_env, "truststore_password")?;
        b = b
            .tls_truststore_pkcs12(ts, &pw)
            .map_err(crate::Error::Client)?;
    }
    if let Some(var) = &cfg.token_env {
        b = b.bearer_token(secret(var, "token")?);
    }
    if let Some(user) = &cfg.username {
        b = b.login(user.clone(), secret(&cfg.password_env, "password")?);
    }
    Ok(b)
}

/// Why a transaction failed: NiFi / the connection, or reading staged content (then the dropped
/// transaction rolls back in NiFi).
#[derive(Debug)]
enum SendFail {
    S2s(s2s::Error),
    Content(std::io::Error),
}

impl From<s2s::Error> for SendFail {
    fn from(e: s2s::Error) -> Self {
        Self::S2s(e)
    }
}

/// Whether `e` means no batch can get through until someone fixes a configuration (TLS trust,
/// host name, policies, the port, the transport), as opposed to a problem of this batch (its
/// content) or of the moment (retryable).
pub(crate) fn is_destination_fatal(e: &s2s::Error) -> bool {
    !e.is_retryable() && !e.is_content_error()
}

/// The one place S2S errors are classified for the bridge (style: retry classification in one place).
pub(crate) fn classify(e: &s2s::Error, recently_full: bool) -> Delivery {
    let message = s2s::error_chain(e);
    if e.is_destination_full() || (recently_full && e.is_retryable() && !e.is_port_not_running()) {
        Delivery::Retryable {
            reason: Reason::Backpressure,
            message,
            retry_after: None,
        }
    } else if e.is_unknown_port() || e.is_unauthorized() {
        Delivery::Fatal { message }
    } else if e.is_port_not_running() || e.is_retryable() {
        Delivery::Retryable {
            reason: Reason::Unavailable,
            message,
            retry_after: None,
        }
    } else {
        Delivery::Fatal { message }
    }
}

impl Sink for S2sSink {
    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            if let Some(answer) = self.fatal_pending() {
                return answer;
            }
            // NiFi parks a SEND on a pooled connection while the port's queue is full (the
            // handshake-time PORTS_DESTINATION_FULL check is skipped), so bound the whole
            // transaction; dropping it closes the connection and NiFi rolls back. Large content
            // gets one more second per MIN_RATE bytes.
            let bytes: u64 = records.iter().map(Record::len).sum();
            let limit = self.timeout + Duration::from_secs(bytes / MIN_RATE);
            let Ok(result) = tokio::time::timeout(limit, self.send(records)).await else {
                let message = format!("S2S transaction did not finish within {limit:?}");
                let reason = if self.recently_full() {
                    Reason::Backpressure
                } else {
                    Reason::Unavailable
                };
                return Delivery::Retryable {
                    reason,
                    message,
                    retry_after: None,
                };
            };
            match result {
                Ok(destination_full) => {
                    if destination_full {
                        self.mark_full();
                    } else {
                        *self.last_full.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    }
                    self.clear_fatal();
                    Delivery::Committed { destination_full }
                }
                Err(SendFail::S2s(e)) => {
                    if e.is_destination_full() {
                        self.mark_full();
                    }
                    if is_destination_fatal(&e) {
                        return self.trip(&e);
                    }
                    classify(&e, self.recently_full())
                }
                Err(SendFail::Content(e)) => Delivery::Retryable {
                    reason: Reason::Internal,
                    message: format!("reading staged content: {e}"),
                    retry_after: None,
                },
            }
        })
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if let Some(Delivery::Retryable { message, .. }) = self.fatal_pending() {
                return Err(message);
            }
            let port = self
                .client
                .resolve_port(Direction::Send, &self.port)
                .await
                .map_err(|e| s2s::error_chain(&e))?;
            if port.state == "RUNNING" {
                Ok(())
            } else {
                Err(format!("input port {:?} is {}", port.name, port.state))
            }
        })
    }

    fn name(&self) -> String {
        self.label.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A TLS server with a self-signed certificate no client trusts; counts TCP connections.
    async fn untrusted_tls_server() -> (u16, Arc<AtomicUsize>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let n = Arc::new(AtomicUsize::new(0));
        let count = n.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let a = acceptor.clone();
                tokio::spawn(async move {
                    let _ = a.accept(s).await;
                });
            }
        });
        (port, n)
    }

    #[tokio::test]
    async fn an_untrusted_certificate_is_not_retried_hot_and_readyz_says_why() {
        let (port, connections) = untrusted_tls_server().await;
        let sink = S2sSink::new(&NifiConfig {
            urls: vec![format!("https://localhost:{port}/nifi")],
            port_name: Some("in".into()),
            timeout_ms: 5000,
            ..NifiConfig::default()
        })
        .unwrap();
        let Delivery::Retryable {
            reason,
            message,
            retry_after,
        } = sink.deliver(&[]).await
        else {
            panic!("expected retry-after")
        };
        assert_eq!(reason, Reason::Unavailable);
        assert_eq!(retry_after, Some(FATAL_FIRST), "{message}");
        assert!(message.contains("(tls)"), "{message}");
        assert!(message.contains("UnknownIssuer"), "{message}");
        let tried = connections.load(Ordering::SeqCst);
        assert!(tried >= 1);
        // During the backoff NiFi is left alone: answers come at once, no connection is made.
        for _ in 0..20 {
            let Delivery::Retryable { retry_after, .. } = sink.deliver(&[]).await else {
                panic!("expected retry-after")
            };
            assert!(retry_after.is_some_and(|d| d <= FATAL_FIRST && d > Duration::ZERO));
        }
        let why = sink.ready().await.unwrap_err();
        assert!(
            why.contains("refused for good (tls)") && why.contains("next attempt in"),
            "{why}"
        );
        assert_eq!(connections.load(Ordering::SeqCst), tried);
    }

    #[test]
    fn a_configuration_error_is_destination_wide() {
        // A bad URL: no batch can get through until the configuration is fixed.
        let e = Client::builder("ftp://x").build().unwrap_err();
        assert!(is_destination_fatal(&e), "{e}");
    }
}
