//! The Site-to-Site sink: one S2S SEND transaction per delivery, on the `s2s` client's pool
//! (peer selection, penalties, peer overrides are the client's).

use std::time::Duration;

use s2s::{Client, Direction};

use crate::config::NifiConfig;
use crate::record::{FlowFile, Reason};
use crate::sink::{BoxFuture, Delivery, Sink};

/// Delivers to a NiFi input port over Site-to-Site.
#[derive(Debug, Clone)]
pub struct S2sSink {
    client: Client,
    port: String,
    label: String,
}

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
        })
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn send(&self, records: &[FlowFile]) -> Result<bool, s2s::Error> {
        let mut tx = self.client.send_transaction(&self.port).await?;
        for r in records {
            tx.send(r.clone()).await?;
        }
        Ok(tx.commit().await?.destination_full)
    }
}

/// The one place S2S errors are classified for the bridge (style: retry classification in one place).
pub(crate) fn classify(e: &s2s::Error) -> Delivery {
    let message = e.to_string();
    if e.is_destination_full() {
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
    fn deliver<'a>(&'a self, records: &'a [FlowFile]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            match self.send(records).await {
                Ok(destination_full) => Delivery::Committed { destination_full },
                Err(e) => classify(&e),
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
