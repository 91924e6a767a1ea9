//! The nifi-s2s bridge: browsers and HTTP clients in, Site-to-Site out.
//!
//! ```text
//!  browsers ──WebSocket /v1/ws (PROTOCOL.md)──┐
//!  HTTP clients ──POST /v1/flowfiles (JSON)───┼─► auth, CORS, limits ─► Pipeline ─┬─ ack=nifi:  Forwarder ──► Sink (S2S) ─► NiFi
//!  PostHTTP/InvokeHTTP ──/contentListener─────┘                                   └─ ack=spool: Spool ─► drain ─► Sink
//! ```
//!
//! * [`Bridge`] wires a [`Config`] and a [`Sink`] into an HTTP server ([`Bridge::serve`]).
//! * [`Pipeline`] holds the delivery semantics: in `ack = "nifi"` a batch is acknowledged after
//!   NiFi's TRANSACTION_FINISHED (via the aggregating [`Forwarder`]); in `ack = "spool"` after an
//!   fsynced [`Spool`] write, with a drain task forwarding and deleting only what NiFi confirmed.
//! * [`protocol`] is the WebSocket wire format, [`MemorySink`] an in-memory destination for tests.
//! * Bounded memory: HTTP bodies (ListenHTTP plain or flowfile-v3, gzip or not; JSON batches) are
//!   streamed, never held whole. Each FlowFile becomes a [`Record`] whose content is in memory when
//!   small and staged in a per-request file when large; a body is handed on only once it ended
//!   cleanly, so one cut off mid-way commits nothing. The S2S sink and the spool stream staged
//!   content in chunks.
//!
//! The wire protocol for clients is `bridge/PROTOCOL.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod auth;
pub mod codec;
pub mod config;
mod error;
mod ffv3;
pub mod forward;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod ingest;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod protocol;
pub mod record;
mod s2s_sink;
mod server;
pub mod sink;
pub mod spool;
mod stage;
mod state;
mod tls;

pub use config::{AckMode, Config};
pub use error::Error;
pub use forward::Forwarder;
pub use limits::{ByteLimit, Limits};
pub use pipeline::Pipeline;
pub use record::{Content, FlowFile, Outcome, Reason, Record};
pub use s2s_sink::S2sSink;
pub use server::Bridge;
pub use sink::{Delivery, MemoryMode, MemorySink, Sink};
pub use spool::Spool;
