//! Where batches go: the [`Sink`] trait, an in-memory sink for tests, and (with the `s2s` client)
//! the Site-to-Site sink.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::record::{FlowFile, Reason, Record};

/// A boxed, sendable future (keeps [`Sink`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Result of handing one transaction's worth of FlowFiles to the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The destination committed every FlowFile (S2S TRANSACTION_FINISHED). `destination_full`
    /// is NiFi's TRANSACTION_FINISHED_BUT_DESTINATION_FULL: committed, but slow down.
    Committed {
        /// Back-pressure hint from NiFi.
        destination_full: bool,
    },
    /// Nothing was committed and trying again later may succeed.
    Retryable {
        /// [`Reason::Backpressure`] or [`Reason::Unavailable`] usually.
        reason: Reason,
        /// Detail for logs and clients.
        message: String,
        /// A hint from the destination, if any.
        retry_after: Option<Duration>,
    },
    /// Nothing was committed and retrying cannot help (unknown port, unauthorized).
    Fatal {
        /// Detail for logs and clients.
        message: String,
    },
}

/// The destination of forwarded batches. Implementations must commit all records or none.
pub trait Sink: Send + Sync + 'static {
    /// Delivers `records` as one transaction (content in files is streamed, not loaded).
    ///
    /// # Cancel safety
    /// Dropping the future leaves the outcome unknown; callers treat that as not committed and
    /// resend (at-least-once).
    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Delivery>;

    /// Whether the destination is reachable and accepting (for `/readyz`); `Err` says why not.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>>;

    /// A label for metrics and logs (for example the NiFi peer).
    fn name(&self) -> String;
}

/// How an [`MemorySink`] answers the next deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryMode {
    /// Commit everything.
    Accept,
    /// Answer destination full (retryable back-pressure), keep nothing.
    Full,
    /// Answer unavailable, keep nothing.
    Down,
    /// Answer fatal.
    Refuse,
}

#[derive(Debug)]
struct MemoryState {
    mode: MemoryMode,
    delivered: Vec<FlowFile>,
    transactions: usize,
    delay: Duration,
}

/// An in-memory sink for tests and fault injection: records every committed FlowFile.
#[derive(Debug, Clone)]
pub struct MemorySink {
    state: Arc<Mutex<MemoryState>>,
    notify: Arc<tokio::sync::Notify>,
}

impl Default for MemorySink {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySink {
    /// A sink that accepts everything.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(MemoryState {
                mode: MemoryMode::Accept,
                delivered: Vec::new(),
                transactions: 0,
                delay: Duration::ZERO,
            })),
            notify: Arc::new(tokio::sync::Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding this test-only lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes how the next deliveries are answered.
    pub fn set_mode(&self, mode: MemoryMode) {
        self.lock().mode = mode;
    }

    /// Delays every delivery (to observe acks arriving only after commit).
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Everything committed so far.
    pub fn delivered(&self) -> Vec<FlowFile> {
        self.lock().delivered.clone()
    }

    /// Committed transactions so far.
    pub fn transactions(&self) -> usize {
        self.lock().transactions
    }

    /// Waits until at least `n` FlowFiles were committed, or `timeout` passes; returns the count.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            let have = self.lock().delivered.len();
            if have >= n {
                return have;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.lock().delivered.len();
            }
        }
    }
}

impl Sink for MemorySink {
    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            let delay = self.lock().delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut flowfiles = Vec::with_capacity(records.len());
            for r in records {
                match r.clone().into_flowfile().await {
                    Ok(ff) => flowfiles.push(ff),
                    Err(e) => {
                        return Delivery::Retryable {
                            reason: Reason::Internal,
                            message: format!("reading staged content: {e}"),
                            retry_after: None,
                        };
                    }
                }
            }
            let mut st = self.lock();
            let answer = match st.mode {
                MemoryMode::Accept => {
                    st.delivered.extend(flowfiles);
                    st.transactions += 1;
                    Delivery::Committed {
                        destination_full: false,
                    }
                }
                MemoryMode::Full => Delivery::Retryable {
                    reason: Reason::Backpressure,
                    message: "destination full".into(),
                    retry_after: None,
                },
                MemoryMode::Down => Delivery::Retryable {
                    reason: Reason::Unavailable,
                    message: "destination unavailable".into(),
                    retry_after: None,
                },
                MemoryMode::Refuse => Delivery::Fatal {
                    message: "destination refused".into(),
                },
            };
            drop(st);
            self.notify.notify_waiters();
            answer
        })
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match self.lock().mode {
                MemoryMode::Accept | MemoryMode::Full => Ok(()),
                MemoryMode::Down | MemoryMode::Refuse => Err("memory sink is down".into()),
            }
        })
    }

    fn name(&self) -> String {
        "memory".into()
    }
}
