//! Metrics through the [`metrics`] facade, served as Prometheus text on `/metrics`.
//!
//! Each [`Bridge`](crate::Bridge) records its own numbers into its own Prometheus recorder
//! (so several bridges in one process — tests, embedders — do not mix their counts), and its
//! `/metrics` route also renders the process-wide recorder that carries the `s2s` client's metrics
//! (per-port and per-peer transactions, FlowFiles, bytes, commit latency, errors by kind, pool and
//! penalty gauges; see the `s2s::metrics` module of the `nifi-s2s` crate). The first
//! [`Metrics::new`] in a process installs that global recorder; if the process has already installed
//! one of its own, the client's metrics go there and `/metrics` shows the bridge's own only.
//! There is no second listener.
//!
//! The bridge's own metrics:
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `bridge_records_in_total` | counter | `source` (`ws`, `json`, `listenhttp`) | FlowFiles received |
//! | `bridge_bytes_in_total` | counter | `source` | content bytes received |
//! | `bridge_records_out_total` | counter | — | FlowFiles committed by NiFi |
//! | `bridge_bytes_out_total` | counter | — | content bytes committed by NiFi |
//! | `bridge_batch_latency_seconds` | histogram | — | from accepting a batch to its acknowledgement (`ack = "nifi"`), or from reading it from the spool to NiFi's commit (`ack = "spool"`) |
//! | `bridge_spool_bytes` | gauge | — | spooled bytes not yet confirmed by NiFi |
//! | `bridge_spool_entries` | gauge | — | spooled batches not yet confirmed by NiFi |
//! | `bridge_spool_corrupt_entries_total` | counter | `kind` (`corrupt`: a bad entry skipped, every valid one around it kept; `torn_tail`: a bad end of a segment cut off) | bad spool entries found by recovery on open or by the drain's reads |
//! | `bridge_spool_write_errors_total` | counter | — | spool write groups whose write or fsync failed (none of their batches was acknowledged) |
//! | `bridge_s2s_transactions_total` | counter | `peer`, `outcome` (`committed`, `committed_full`, `retryable`, `fatal`) | S2S transactions by sink/peer and outcome |
//! | `bridge_rejections_total` | counter | `reason` (`PROTOCOL.md` §5 reason names, or the HTTP/connection-level `UNAUTHORIZED`, `FORBIDDEN`, `FOREIGN_ORIGIN`, `CONNECTION_LIMIT`, `UNSUPPORTED_MEDIA_TYPE`, `TRUNCATED`, `UNKNOWN_HOLD`, `UNSUPPORTED_VERSION`, `AUTH_TIMEOUT`, `PROTOCOL_ERROR`, `UNSUPPORTED_DATA`; the table in bridge/README.md) | rejected batches, requests and connections; rejected JSON elements count one each |
//! | `bridge_ws_connections` | gauge | — | open WebSocket connections |
//!
//! Histograms are rendered with buckets `0.001 · 2^i` s, `i` = 0‥15 (1 ms to ~33 s), for the
//! bridge's and the client's histograms alike.
//!
//! A sample scrape (trimmed):
//!
//! ```text
//! # HELP bridge_records_in_total FlowFiles received
//! # TYPE bridge_records_in_total counter
//! bridge_records_in_total{source="listenhttp"} 1
//! # TYPE bridge_s2s_transactions_total counter
//! bridge_s2s_transactions_total{peer="127.0.0.1:8081",outcome="committed"} 1
//! # TYPE bridge_spool_entries gauge
//! bridge_spool_entries 0
//! # TYPE s2s_client_transactions_total counter
//! s2s_client_transactions_total{direction="send",port="in",transport="raw",peer="127.0.0.1:8081"} 1
//! ```
//!
//! To add a metric: give [`Metrics`] a field registered in [`Metrics::new`] with a description
//! (or use [`Metrics::counter`] / [`Metrics::gauge`] for labelled ones), and add a row above.

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Histogram buckets (seconds): 1 ms doubling to ~33 s.
fn buckets() -> Vec<f64> {
    (0..16).map(|i| 0.001 * f64::from(1u32 << i)).collect()
}

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets(&buckets())
        .expect("the bucket list is not empty")
}

/// The process-wide recorder (the `s2s` client's metrics), if this module installed it.
fn global() -> Option<&'static PrometheusHandle> {
    static GLOBAL: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    GLOBAL
        .get_or_init(|| match builder().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::debug!(error = %e, "a metrics recorder is already installed; /metrics shows the bridge's own metrics only");
                None
            }
        })
        .as_ref()
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// Every metric the bridge exports (the table in the [module docs](self)).
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    client: Option<&'static PrometheusHandle>,
    /// FlowFiles committed by NiFi.
    pub records_out: Counter,
    /// Content bytes committed by NiFi.
    pub bytes_out: Counter,
    /// Seconds from accepting a batch to its ack (or from spool read to NiFi commit).
    pub batch_latency: Histogram,
    /// Bytes in the spool not yet confirmed by NiFi.
    pub spool_bytes: Gauge,
    /// Entries (batches) in the spool not yet confirmed by NiFi.
    pub spool_entries: Gauge,
    /// Open WebSocket connections.
    pub ws_connections: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("client_metrics", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, (*v).to_owned()))
            .collect::<Vec<_>>(),
    )
}

impl Metrics {
    /// Creates this bridge's recorder and registers its metrics; installs the process-wide
    /// recorder for the client's metrics if nothing is installed yet.
    pub fn new() -> Self {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        for (name, help) in [
            ("bridge_records_in_total", "FlowFiles received"),
            ("bridge_bytes_in_total", "Content bytes received"),
            ("bridge_records_out_total", "FlowFiles committed by NiFi"),
            ("bridge_bytes_out_total", "Content bytes committed by NiFi"),
            (
                "bridge_s2s_transactions_total",
                "S2S transactions by peer and outcome",
            ),
            (
                "bridge_rejections_total",
                "Rejected batches, requests and connections",
            ),
        ] {
            recorder.describe_counter(KeyName::from(name), None, SharedString::from(help));
        }
        for (name, help) in [
            (
                "bridge_spool_bytes",
                "Spooled bytes not yet confirmed by NiFi",
            ),
            (
                "bridge_spool_entries",
                "Spooled batches not yet confirmed by NiFi",
            ),
            ("bridge_ws_connections", "Open WebSocket connections"),
        ] {
            recorder.describe_gauge(KeyName::from(name), None, SharedString::from(help));
        }
        recorder.describe_histogram(
            KeyName::from("bridge_batch_latency_seconds"),
            Some(metrics::Unit::Seconds),
            SharedString::from("Time from accepting a batch to its acknowledgement"),
        );
        let counter = |n| recorder.register_counter(&key(n, &[]), &METADATA);
        let gauge = |n| recorder.register_gauge(&key(n, &[]), &METADATA);
        let m = Self {
            records_out: counter("bridge_records_out_total"),
            bytes_out: counter("bridge_bytes_out_total"),
            batch_latency: recorder
                .register_histogram(&key("bridge_batch_latency_seconds", &[]), &METADATA),
            spool_bytes: gauge("bridge_spool_bytes"),
            spool_entries: gauge("bridge_spool_entries"),
            ws_connections: gauge("bridge_ws_connections"),
            client: global(),
            handle,
            recorder,
        };
        m.spool_bytes.set(0.0);
        m.spool_entries.set(0.0);
        m
    }

    /// A labelled counter of this bridge (registered on first use).
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    /// A labelled gauge of this bridge (registered on first use).
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    /// Counts one S2S transaction of `peer` with its `outcome`.
    pub fn transaction(&self, peer: &str, outcome: &'static str) {
        self.counter(
            "bridge_s2s_transactions_total",
            &[("peer", peer), ("outcome", outcome)],
        )
        .increment(1);
    }

    /// Counts one rejection.
    pub fn reject(&self, reason: &'static str) {
        self.counter("bridge_rejections_total", &[("reason", reason)])
            .increment(1);
    }

    /// Counts received records.
    pub fn received(&self, source: &'static str, records: &[crate::record::Record]) {
        let l = [("source", source)];
        self.counter("bridge_records_in_total", &l)
            .increment(records.len() as u64);
        self.counter("bridge_bytes_in_total", &l)
            .increment(records.iter().map(crate::record::Record::len).sum());
    }

    /// Drains histogram samples nobody scraped yet (bounds their memory); the bridge calls it
    /// every few seconds.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
        if let Some(c) = self.client {
            c.run_upkeep();
        }
    }

    /// Renders the Prometheus text format (version 0.0.4): this bridge's metrics, then the
    /// process-wide ones (the client's).
    pub fn render(&self) -> String {
        let mut out = self.handle.render();
        if let Some(c) = self.client {
            out.push_str(&c.render());
        }
        out
    }
}
