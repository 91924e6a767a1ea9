//! Client metrics through the [`metrics`] facade: the application installs any recorder
//! (Prometheus, StatsD, OpenTelemetry…); without one, recording costs next to nothing.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `s2s_client_transactions_total` | counter | `direction`, `port`, `transport`, `peer` | transactions committed (send) or confirmed (receive) |
//! | `s2s_client_flowfiles_total` | counter | same | FlowFiles in those transactions |
//! | `s2s_client_bytes_total` | counter | same | content bytes in those transactions |
//! | `s2s_client_commit_seconds` | histogram | same | time from `commit()`/`confirm()` to NiFi's answer |
//! | `s2s_client_transaction_seconds` | histogram | same | time from opening the transaction to its commit |
//! | `s2s_client_errors_total` | counter | `direction`, `port`, `transport`, `kind` | failed transactions and failed opens, by error kind (`io`, `timeout`, `unknown_port`, …; see [`Error::kind_name`](crate::Error::kind_name)) |
//! | `s2s_client_destination_full_total` | counter | `port`, `transport`, `peer` | commits NiFi answered with "destination full" (back off) |
//! | `s2s_client_pooled_connections` | gauge | — | idle RAW connections in the pool |
//! | `s2s_client_penalized_peers` | gauge | — | peers (or peer × port) currently penalized |
//! | `s2s_client_peer_penalized` | gauge | `peer` | 1 while that node is penalized (skipped after a failure), 0 once a penalty was seen to expire |
//! | `s2s_client_peer_failures_total` | counter | `peer`, `kind` | failures that penalized that node (connect, handshake, or a transaction's transport error) |
//! | `s2s_client_peer_weight` | gauge | `peer` | the node's send weight (percent) from the last peer-list fetch |
//! | `s2s_client_peer_list_refreshes_total` | counter | `outcome` | background peer-list fetches: `ok`, `failed`, `timeout` |
//!
//! `direction` is `send` or `receive`, `transport` `raw` or `http`, `port` the port as the
//! caller named it, `peer` the NiFi node (`host:port`, after peer overrides) the transaction
//! ran on — so `s2s_client_transactions_total` and `s2s_client_flowfiles_total` summed by
//! `peer` are the per-node transaction and FlowFile counts of a cluster.

use std::time::Duration;

use crate::Error;

/// Which way a transaction moves FlowFiles.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dir {
    Send,
    Receive,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Receive => "receive",
        }
    }
}

/// Labels of one transaction.
#[derive(Debug, Clone)]
pub(crate) struct Labels {
    pub(crate) dir: Dir,
    pub(crate) port: String,
    pub(crate) transport: &'static str,
    pub(crate) peer: String,
}

impl Labels {
    fn all(&self) -> [(&'static str, String); 4] {
        [
            ("direction", self.dir.name().to_owned()),
            ("port", self.port.clone()),
            ("transport", self.transport.to_owned()),
            ("peer", self.peer.clone()),
        ]
    }

    /// A transaction NiFi committed (send) or that we confirmed (receive).
    pub(crate) fn committed(
        &self,
        flowfiles: u64,
        bytes: u64,
        commit: Duration,
        total: Duration,
        destination_full: bool,
    ) {
        let l = self.all();
        metrics::counter!("s2s_client_transactions_total", &l).increment(1);
        metrics::counter!("s2s_client_flowfiles_total", &l).increment(flowfiles);
        metrics::counter!("s2s_client_bytes_total", &l).increment(bytes);
        metrics::histogram!("s2s_client_commit_seconds", &l).record(commit.as_secs_f64());
        metrics::histogram!("s2s_client_transaction_seconds", &l).record(total.as_secs_f64());
        if destination_full {
            let l = [
                ("port", self.port.clone()),
                ("transport", self.transport.to_owned()),
                ("peer", self.peer.clone()),
            ];
            metrics::counter!("s2s_client_destination_full_total", &l).increment(1);
        }
    }

    /// A transaction that failed.
    pub(crate) fn failed(&self, e: &Error) {
        error(self.dir, &self.port, self.transport, e);
    }
}

/// A failed transaction or a transaction that could not be opened.
pub(crate) fn error(dir: Dir, port: &str, transport: &'static str, e: &Error) {
    let l = [
        ("direction", dir.name().to_owned()),
        ("port", port.to_owned()),
        ("transport", transport.to_owned()),
        ("kind", e.kind_name().to_owned()),
    ];
    metrics::counter!("s2s_client_errors_total", &l).increment(1);
}

pub(crate) fn pooled_connections(n: usize) {
    metrics::gauge!("s2s_client_pooled_connections").set(n as f64);
}

pub(crate) fn penalized_peers(n: usize) {
    metrics::gauge!("s2s_client_penalized_peers").set(n as f64);
}

/// A node was penalized (`true`) or its last penalty expired (`false`).
pub(crate) fn peer_penalized(peer: &str, on: bool) {
    metrics::gauge!("s2s_client_peer_penalized", "peer" => peer.to_owned()).set(if on {
        1.0
    } else {
        0.0
    });
}

/// A failure that penalized `peer`.
pub(crate) fn peer_failure(peer: &str, e: &Error) {
    metrics::counter!(
        "s2s_client_peer_failures_total",
        "peer" => peer.to_owned(),
        "kind" => e.kind_name()
    )
    .increment(1);
}

/// A node's send weight from the last peer-list fetch.
pub(crate) fn peer_weight(peer: &str, weight: f64) {
    metrics::gauge!("s2s_client_peer_weight", "peer" => peer.to_owned()).set(weight);
}

/// One background peer-list fetch ended: `ok`, `failed` or `timeout`.
pub(crate) fn peer_list_refresh(outcome: &'static str) {
    metrics::counter!("s2s_client_peer_list_refreshes_total", "outcome" => outcome).increment(1);
}
