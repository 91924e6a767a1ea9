//! The Site-to-Site sink: one S2S SEND transaction per delivery, on the `s2s` client's pool
//! (peer selection, penalties, peer overrides are the client's).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s2s::{Client, Direction};

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
    timeout: Duration,
}

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
        if cfg.transport != "raw" {
            return Err(crate::Error::Config(format!(
                "nifi.transport {:?} is not supported by the s2s client yet; use \"raw\"",
                cfg.transport
            )));
        }
        let timeout = Some(Duration::from_millis(cfg.timeout_ms));
        let client = Client::builder(cfg.urls.join(","))
            .connect_timeout(timeout)
            .io_timeout(timeout)
            .build()
            .map_err(|e| crate::Error::Config(format!("s2s client: {e}")))?;
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
            timeout: Duration::from_millis(cfg.timeout_ms),
        })
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
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

/// The one place S2S errors are classified for the bridge (style: retry classification in one place).
pub(crate) fn classify(e: &s2s::Error, recently_full: bool) -> Delivery {
    let message = e.to_string();
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
                    Delivery::Committed { destination_full }
                }
                Err(SendFail::S2s(e)) => {
                    if e.is_destination_full() {
                        self.mark_full();
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
            let port = self
                .client
                .resolve_port(Direction::Send, &self.port)
                .await
                .map_err(|e| e.to_string())?;
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
