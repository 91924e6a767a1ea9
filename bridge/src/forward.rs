//! The forwarder: aggregates batches from all clients into S2S transactions.
//!
//! Ingest tasks [`Forwarder::submit`] whole batches and wait for their [`Outcome`]. One aggregator
//! task takes batches from a bounded queue and closes a transaction when it holds `max_records`
//! records or `max_bytes` bytes, or `linger` passed since its first batch. Batches are never split,
//! so each is committed or not as a whole. Up to `max_transactions` transactions run at once.
//!
//! The default `linger` is 0: group commit. The aggregator waits for a free transaction slot,
//! then takes everything queued by then, so under load transactions grow by themselves (batches
//! pile up while both slots are busy) and a lone batch is never held back. A fixed linger delays
//! every closed-loop sender (one that waits for its answer before sending more, as `PostHTTP` and
//! the WebSocket client at their window do) by the whole linger on every request: with 20 ms, 16
//! such senders posting one record each got ~400 records/s through a NiFi that commits a
//! transaction in ~6 ms.
//! A retryable failure is retried with exponential backoff and full jitter for at most
//! `retry_budget`; after that every batch of the transaction is answered *retry after*, so the
//! clients keep the data. In `ack = "nifi"` mode this is the whole pipeline; in `ack = "spool"`
//! mode the spool drain loop uses [`deliver_with_retry`] directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::record::{Outcome, Reason, Record};
use crate::sink::{Delivery, Sink};

/// Aggregation and retry settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardConfig {
    /// Most FlowFiles per S2S transaction (a single larger batch still goes alone). Default 1000.
    pub max_records: usize,
    /// Most encoded bytes per S2S transaction. Default 4 MiB.
    pub max_bytes: usize,
    /// Longest wait for more batches before a transaction is sent, in ms. Default 0: send what is
    /// queued as soon as a transaction slot is free (batches aggregate while the slots are busy).
    pub linger_ms: u64,
    /// Most S2S transactions in flight at once. Default 2.
    pub max_transactions: usize,
    /// Batches waiting for a transaction before ingest blocks. Default 1024.
    pub queue: usize,
    /// First retry delay, in ms (doubles each attempt, full jitter). Default 100.
    pub backoff_initial_ms: u64,
    /// Largest retry delay, in ms. Default 10 000.
    pub backoff_max_ms: u64,
    /// `ack = "nifi"`: how long to keep retrying before answering *retry after*, in ms. Default 3000.
    pub retry_budget_ms: u64,
    /// The retry-after given to clients when NiFi gave no hint, in ms. Default 1000.
    pub retry_after_ms: u64,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            max_records: 1000,
            max_bytes: 4 << 20,
            linger_ms: 0,
            max_transactions: 2,
            queue: 1024,
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
            retry_budget_ms: 3000,
            retry_after_ms: 1000,
        }
    }
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `initial`, caps at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The next delay: uniform in `[0, min(max, initial * 2^attempt)]`.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self
            .initial
            .saturating_mul(1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        cap.mul_f64(fastrand::f64())
    }

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Delivers `records` as one transaction, retrying retryable failures until `budget` is spent
/// (`None`: forever, or until `stop` is cancelled). Returns the last delivery result.
pub async fn deliver_with_retry(
    sink: &dyn Sink,
    records: &[Record],
    cfg: &ForwardConfig,
    budget: Option<Duration>,
    metrics: &Metrics,
    stop: &tokio_util::sync::CancellationToken,
) -> Delivery {
    let started = Instant::now();
    let mut backoff = Backoff::new(
        Duration::from_millis(cfg.backoff_initial_ms),
        Duration::from_millis(cfg.backoff_max_ms),
    );
    let peer = sink.name();
    loop {
        let result = sink.deliver(records).await;
        let outcome = match &result {
            Delivery::Committed {
                destination_full: false,
            } => "committed",
            Delivery::Committed {
                destination_full: true,
            } => "committed_full",
            Delivery::Retryable { .. } => "retryable",
            Delivery::Fatal { .. } => "fatal",
        };
        metrics.transaction(&peer, outcome);
        match &result {
            Delivery::Committed { .. } => {
                if let LogNow::Recovered { failures, since } =
                    failure_log(&peer, Instant::now(), None)
                {
                    tracing::info!(
                        peer,
                        failures,
                        "transactions commit again after {failures} failed attempts over {} s",
                        since.as_secs()
                    );
                }
                metrics.records_out.increment(records.len() as u64);
                metrics
                    .bytes_out
                    .increment(records.iter().map(Record::len).sum());
                return result;
            }
            Delivery::Fatal { message } => {
                tracing::error!(peer, records = records.len(), %message, "destination refused transaction");
                return result;
            }
            Delivery::Retryable {
                reason,
                message,
                retry_after,
            } => {
                let delay = retry_after.unwrap_or_else(|| backoff.next_delay());
                match failure_log(&peer, Instant::now(), Some(message)) {
                    LogNow::First => tracing::warn!(
                        peer,
                        reason = reason.name(),
                        %message,
                        ?delay,
                        "transaction not committed; will retry (further failures are summarised every 30 s)"
                    ),
                    LogNow::Summary { failures, window } => tracing::warn!(
                        peer,
                        reason = reason.name(),
                        last = %message,
                        "{failures} more failures in the last {} s; still retrying",
                        window.as_secs()
                    ),
                    LogNow::Quiet | LogNow::Recovered { .. } => {
                        tracing::debug!(peer, reason = reason.name(), %message, ?delay, "transaction not committed; will retry");
                    }
                }
                if budget.is_some_and(|b| started.elapsed() + delay > b) {
                    return result;
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return result,
                }
            }
        }
    }
}

/// How often repeated retryable failures of one peer are summarised in the log.
pub const LOG_WINDOW: Duration = Duration::from_secs(30);

/// What [`failure_log`] says to log now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogNow {
    /// The first failure of a streak: log it.
    First,
    /// A failure inside the current window: stay quiet.
    Quiet,
    /// The window is over: log how many failures it saw (this one included).
    Summary {
        /// Failures since the last line.
        failures: u64,
        /// How long that was.
        window: Duration,
    },
    /// A success ended a streak.
    Recovered {
        /// Failed attempts in the streak.
        failures: u64,
        /// Since the streak's first failure.
        since: Duration,
    },
}

/// One peer's failure streak.
#[derive(Debug)]
pub(crate) struct Streak {
    started: Instant,
    window_started: Instant,
    in_window: u64,
    total: u64,
}

/// Bounded-rate logging of retryable failures (first one, then at most one summary per
/// [`LOG_WINDOW`]), per peer: while NiFi is down every transaction attempt fails, and the
/// forwarder's tasks and the spool drain would otherwise log each one.
pub(crate) fn note(
    streaks: &mut std::collections::HashMap<String, Streak>,
    peer: &str,
    now: Instant,
    failure: bool,
) -> LogNow {
    if !failure {
        return match streaks.remove(peer) {
            Some(s) => LogNow::Recovered {
                failures: s.total,
                since: now.saturating_duration_since(s.started),
            },
            None => LogNow::Quiet,
        };
    }
    let Some(s) = streaks.get_mut(peer) else {
        streaks.insert(
            peer.to_owned(),
            Streak {
                started: now,
                window_started: now,
                in_window: 0,
                total: 1,
            },
        );
        return LogNow::First;
    };
    s.total += 1;
    s.in_window += 1;
    let window = now.saturating_duration_since(s.window_started);
    if window >= LOG_WINDOW {
        let failures = s.in_window;
        s.in_window = 0;
        s.window_started = now;
        LogNow::Summary { failures, window }
    } else {
        LogNow::Quiet
    }
}

/// [`note`] on the process-wide streaks (`failure`: the message of a failure, `None`: a commit).
fn failure_log(peer: &str, now: Instant, failure: Option<&String>) -> LogNow {
    static STREAKS: std::sync::Mutex<Option<std::collections::HashMap<String, Streak>>> =
        std::sync::Mutex::new(None);
    let mut g = STREAKS.lock().unwrap_or_else(|e| e.into_inner());
    note(
        g.get_or_insert_with(Default::default),
        peer,
        now,
        failure.is_some(),
    )
}

struct Job {
    records: Vec<Record>,
    bytes: u64,
    accepted: Instant,
    reply: oneshot::Sender<Outcome>,
}

/// Handle to the aggregating forwarder (`ack = "nifi"`). Cheap to clone.
#[derive(Clone)]
pub struct Forwarder {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Starts the aggregator on `tracker`. It stops once every [`Forwarder`] clone is dropped and
    /// the queued batches are answered.
    pub fn start(
        sink: Arc<dyn Sink>,
        cfg: ForwardConfig,
        metrics: Arc<Metrics>,
        tracker: &TaskTracker,
        stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let inner_tracker = tracker.clone();
        tracker.spawn(aggregate(rx, sink, cfg, metrics, inner_tracker, stop));
        Self { tx }
    }

    /// Submits one batch and waits until it is committed or refused.
    ///
    /// # Cancel safety
    /// Dropping the future does not withdraw the batch: it may still be committed. The client
    /// never got an ack, so it resends (at-least-once).
    pub async fn submit(&self, records: Vec<Record>) -> Outcome {
        if records.is_empty() {
            return Outcome::Committed;
        }
        let (reply, rx) = oneshot::channel();
        let bytes = records.iter().map(Record::encoded_len).sum();
        let job = Job {
            records,
            bytes,
            accepted: Instant::now(),
            reply,
        };
        if self.tx.send(job).await.is_err() {
            return Outcome::retry(
                Duration::from_secs(1),
                Reason::ShuttingDown,
                "bridge is shutting down",
            );
        }
        rx.await.unwrap_or_else(|_| {
            Outcome::retry(
                Duration::from_secs(1),
                Reason::ShuttingDown,
                "bridge is shutting down",
            )
        })
    }
}

async fn aggregate(
    mut rx: mpsc::Receiver<Job>,
    sink: Arc<dyn Sink>,
    cfg: ForwardConfig,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    stop: tokio_util::sync::CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(cfg.max_transactions.max(1)));
    let linger = Duration::from_millis(cfg.linger_ms);
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        // Wait for a transaction slot before collecting, so batches keep aggregating meanwhile.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let deadline = tokio::time::Instant::now() + linger;
        let mut count = first.records.len();
        let mut bytes = first.bytes;
        let mut jobs = vec![first];
        let max_bytes = cfg.max_bytes as u64;
        while count < cfg.max_records && bytes < max_bytes {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => {
                    if count + job.records.len() > cfg.max_records || bytes + job.bytes > max_bytes
                    {
                        carry = Some(job);
                        break;
                    }
                    count += job.records.len();
                    bytes += job.bytes;
                    jobs.push(job);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let sink = sink.clone();
        let cfg = cfg.clone();
        let metrics = metrics.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let mut records = Vec::with_capacity(count);
            let mut replies = Vec::with_capacity(jobs.len());
            for job in jobs {
                records.extend(job.records);
                replies.push((job.reply, job.accepted));
            }
            let budget = Duration::from_millis(cfg.retry_budget_ms);
            let result =
                deliver_with_retry(&*sink, &records, &cfg, Some(budget), &metrics, &stop).await;
            let outcome = match result {
                Delivery::Committed { .. } => Outcome::Committed,
                Delivery::Retryable {
                    reason,
                    message,
                    retry_after,
                } => Outcome::retry(
                    retry_after.unwrap_or_else(|| Duration::from_millis(cfg.retry_after_ms)),
                    reason,
                    message,
                ),
                Delivery::Fatal { message } => {
                    Outcome::rejected(Reason::DestinationRejected, message)
                }
            };
            for (reply, accepted) in replies {
                metrics
                    .batch_latency
                    .record(accepted.elapsed().as_secs_f64());
                // The submitter may have gone away (connection closed); nothing to tell then.
                let _ = reply.send(outcome.clone());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_failures_are_logged_first_then_summarised_per_window() {
        let mut m = std::collections::HashMap::new();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(note(&mut m, "a", at(0), true), LogNow::First);
        // ~12 attempts per second while NiFi is down: quiet inside the window.
        let mut quiet = 0;
        for i in 1..360u64 {
            match note(&mut m, "a", at(i * 83), true) {
                LogNow::Quiet => quiet += 1,
                LogNow::Summary { failures, window } => {
                    assert_eq!(failures, i);
                    assert!(window >= LOG_WINDOW, "{window:?}");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(quiet > 300, "{quiet}");
        // Another peer has its own streak.
        assert_eq!(note(&mut m, "b", at(40_000), true), LogNow::First);
        // A commit ends the streak and says so once; the next failure is "first" again.
        assert!(matches!(
            note(&mut m, "a", at(41_000), false),
            LogNow::Recovered { failures, .. } if failures > 300
        ));
        assert_eq!(note(&mut m, "a", at(41_001), false), LogNow::Quiet);
        assert_eq!(note(&mut m, "a", at(42_000), true), LogNow::First);
    }
}
