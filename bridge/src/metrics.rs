//! Prometheus metrics (`/metrics`, text format).

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label: which ingest path.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `ws`, `json` or `listenhttp`.
    pub source: &'static str,
}

/// Label: rejection reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Reason name (PROTOCOL.md §5), or an HTTP-level reason such as `UNAUTHORIZED`.
    pub reason: &'static str,
}

/// Label: S2S transaction outcome per peer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TxLabel {
    /// Sink / peer name.
    pub peer: String,
    /// `committed`, `committed_full`, `retryable`, `fatal`.
    pub outcome: &'static str,
}

/// Every metric the bridge exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// FlowFiles received, by source.
    pub records_in: Family<SourceLabel, Counter>,
    /// Content bytes received, by source.
    pub bytes_in: Family<SourceLabel, Counter>,
    /// FlowFiles committed by NiFi.
    pub records_out: Counter,
    /// Content bytes committed by NiFi.
    pub bytes_out: Counter,
    /// Seconds from accepting a batch to its ack (or from spool read to NiFi commit).
    pub batch_latency: Histogram,
    /// Bytes in the spool not yet confirmed by NiFi.
    pub spool_bytes: Gauge<i64, AtomicI64>,
    /// Entries (batches) in the spool not yet confirmed by NiFi.
    pub spool_entries: Gauge<i64, AtomicI64>,
    /// S2S transactions by peer and outcome.
    pub transactions: Family<TxLabel, Counter>,
    /// Rejections (of batches, requests or connections) by reason.
    pub rejections: Family<ReasonLabel, Counter>,
    /// Open WebSocket connections.
    pub ws_connections: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers all metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bridge");
        let m = Self {
            records_in: Family::default(),
            bytes_in: Family::default(),
            records_out: Counter::<u64, AtomicU64>::default(),
            bytes_out: Counter::<u64, AtomicU64>::default(),
            batch_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            spool_bytes: Gauge::default(),
            spool_entries: Gauge::default(),
            transactions: Family::default(),
            rejections: Family::default(),
            ws_connections: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("records_in", "FlowFiles received", m.records_in.clone());
        registry.register("bytes_in", "Content bytes received", m.bytes_in.clone());
        registry.register(
            "records_out",
            "FlowFiles committed by NiFi",
            m.records_out.clone(),
        );
        registry.register(
            "bytes_out",
            "Content bytes committed by NiFi",
            m.bytes_out.clone(),
        );
        registry.register(
            "batch_latency_seconds",
            "Time from accepting a batch to its acknowledgement",
            m.batch_latency.clone(),
        );
        registry.register(
            "spool_bytes",
            "Spooled bytes not yet confirmed by NiFi",
            m.spool_bytes.clone(),
        );
        registry.register(
            "spool_entries",
            "Spooled batches not yet confirmed by NiFi",
            m.spool_entries.clone(),
        );
        registry.register(
            "s2s_transactions",
            "S2S transactions by peer and outcome",
            m.transactions.clone(),
        );
        registry.register(
            "rejections",
            "Rejected batches, requests and connections",
            m.rejections.clone(),
        );
        registry.register(
            "ws_connections",
            "Open WebSocket connections",
            m.ws_connections.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts one rejection.
    pub fn reject(&self, reason: &'static str) {
        self.rejections.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts received records.
    pub fn received(&self, source: &'static str, records: &[crate::record::Record]) {
        let l = SourceLabel { source };
        self.records_in
            .get_or_create(&l)
            .inc_by(records.len() as u64);
        self.bytes_in
            .get_or_create(&l)
            .inc_by(records.iter().map(crate::record::Record::len).sum());
    }

    /// Renders the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
