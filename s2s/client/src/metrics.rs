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
//!
//! `direction` is `send` or `receive`, `transport` `raw` or `http`, `port` the port as the
//! caller named it, `peer` the NiFi node (`host:port`) the transaction ran on.

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
