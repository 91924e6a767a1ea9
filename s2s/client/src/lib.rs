//! Async Apache NiFi Site-to-Site client (RAW and HTTP transports) on tokio.
//!
//! ```text
//!  Client ──discovery (GET /nifi-api/site-to-site, cached)──▶ port name → id, RAW port, secure
//!    │──peer list (REQUEST_PEER_LIST, refreshed every 60 s)──▶ weighted peers, penalties
//!    └──pool of idle connections per (peer, port) ──▶ Connection = s2s_proto::raw::ClientSession
//!                                                                  driven over TCP / TLS
//! ```
//!
//! Quick start:
//!
//! ```no_run
//! # async fn demo() -> Result<(), s2s::Error> {
//! use s2s::{Client, FlowFile};
//! let client = Client::builder("http://localhost:8080/nifi").build()?;
//!
//! // One call: split into transactions, retried on retryable errors.
//! let ff = FlowFile::new("hello").with_attribute("filename", "hello.txt");
//! let summary = client.send_batch("in", vec![ff]).await?;
//! println!("committed {} FlowFiles", summary.flowfiles);
//!
//! // Explicit transaction: nothing is committed unless commit() returns Ok.
//! let mut tx = client.send_transaction("in").await?;
//! tx.send(FlowFile::new("a")).await?;
//! tx.commit().await?;
//!
//! // Receive: read until None, persist, then confirm.
//! let mut rx = client.receive("out").await?;
//! while let Some(ff) = rx.next().await? {
//!     println!("{} bytes", ff.content.len());
//! }
//! rx.confirm().await?;
//! # Ok(()) }
//! ```
//!
//! The HTTP transport (`/nifi-api/data-transfer` on NiFi's web port) has the same API:
//! `Client::builder(url).transport(s2s::Transport::Http)`.
//!
//! Delivery is at-least-once: a SEND is released only after NiFi's `TRANSACTION_FINISHED`; a
//! dropped or failed transaction closes its connection so NiFi rolls back. Errors tell
//! retryable from fatal ([`Error::is_retryable`]).
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod auth;
mod batch;
mod builder;
mod client;
mod connection;
mod discovery;
pub mod doctor;
mod error;
#[cfg(test)]
mod error_tests;
mod http;
pub mod metrics;
mod peers;
#[cfg(test)]
mod tests;
pub mod tls;
mod transaction;

pub use batch::{BatchFailure, BatchReport};
pub use builder::{ClientBuilder, Transport};
pub use client::Client;
pub use connection::{AsyncStream, ConnectFuture, Connector};
pub use discovery::{Direction, PortInfo, SiteInfo};
pub use error::{Error, TlsFailure, error_chain};
pub use peers::{Peer, PeerStatus};
pub use s2s_proto::{FlowFile, ResponseCode};
pub use transaction::{
    IncomingFlowFile, ReceiveSummary, ReceiveTransaction, SendSummary, SendTransaction, Source,
};
