//! Delivery semantics in one place: what "committed" means for each ack mode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::forward::{Backoff, ForwardConfig, Forwarder, deliver_with_retry};
use crate::metrics::Metrics;
use crate::record::{Outcome, Reason, Record};
use crate::sink::{Delivery, Sink};
use crate::spool::{Spool, SpoolError};

/// The path from ingest to NiFi, per `ack` mode.
#[derive(Debug, Clone)]
pub enum Pipeline {
    /// `ack = "nifi"`: a batch is answered after NiFi's TRANSACTION_FINISHED.
    Nifi(Forwarder),
    /// `ack = "spool"`: a batch is answered after its fsynced spool write; a drain task forwards.
    Spool {
        /// The spool.
        spool: Spool,
        /// Retry-after given when the spool is full.
        retry_after: Duration,
    },
}

impl Pipeline {
    /// Hands one validated batch to the pipeline and waits for its outcome.
    ///
    /// # Cancel safety
    /// Dropping the future leaves the batch's fate unknown (it may still be committed); the client
    /// got no ack and resends.
    pub async fn accept(&self, records: Vec<Record>) -> Outcome {
        match self {
            Self::Nifi(fwd) => fwd.submit(records).await,
            Self::Spool { spool, retry_after } => {
                if records.is_empty() {
                    return Outcome::Committed;
                }
                match spool.append(&records).await {
                    Ok(()) => Outcome::Committed,
                    Err(SpoolError::Full { pending, max }) => Outcome::retry(
                        *retry_after,
                        Reason::Backpressure,
                        format!("spool full ({pending} of {max} bytes waiting for NiFi)"),
                    ),
                    Err(SpoolError::TooLarge(n)) => Outcome::rejected(
                        Reason::Limit,
                        format!("batch of {n} bytes is larger than the spool"),
                    ),
                    Err(SpoolError::Closed) => Outcome::retry(
                        *retry_after,
                        Reason::ShuttingDown,
                        "bridge is shutting down",
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "spool append failed");
                        Outcome::retry(*retry_after, Reason::Internal, "spool write failed")
                    }
                }
            }
        }
    }

    /// Whether the local side can take data (spool not full).
    pub fn local_ready(&self) -> Result<(), String> {
        match self {
            Self::Spool { spool, .. } if spool.is_full() => Err("spool is full".into()),
            _ => Ok(()),
        }
    }
}

/// Starts the spool drain loop: spool → NiFi, forever retrying, confirming only after commit.
pub fn start_drain(
    spool: Spool,
    sink: Arc<dyn Sink>,
    cfg: ForwardConfig,
    metrics: Arc<Metrics>,
    tracker: &TaskTracker,
    stop: CancellationToken,
) {
    tracker.spawn(async move {
        let mut pos = spool.confirmed();
        let mut backoff = Backoff::new(
            Duration::from_millis(cfg.backoff_initial_ms),
            Duration::from_millis(cfg.backoff_max_ms),
        );
        loop {
            tokio::select! {
                () = spool.wait_for_data(pos) => {}
                () = stop.cancelled() => return,
            }
            let batch = match spool.read(pos, cfg.max_records, cfg.max_bytes as u64).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, ?pos, "spool read failed; retrying");
                    if sleep_or_stop(backoff.next_delay(), &stop).await {
                        return;
                    }
                    continue;
                }
            };
            if batch.entries == 0 {
                pos = batch.next;
                continue;
            }
            let started = Instant::now();
            loop {
                match deliver_with_retry(&*sink, &batch.records, &cfg, None, &metrics, &stop).await
                {
                    Delivery::Committed { .. } => break,
                    // Data already acked to clients can never be dropped: keep it and keep trying.
                    Delivery::Fatal { .. } | Delivery::Retryable { .. } => {
                        if sleep_or_stop(backoff.next_delay(), &stop).await {
                            return;
                        }
                    }
                }
            }
            metrics
                .batch_latency
                .record(started.elapsed().as_secs_f64());
            backoff.reset();
            while let Err(e) = spool.confirm(&batch).await {
                tracing::error!(error = %e, "spool confirm failed; retrying");
                if sleep_or_stop(backoff.next_delay(), &stop).await {
                    return;
                }
            }
            pos = batch.next;
        }
    });
}

async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = stop.cancelled() => true,
    }
}
