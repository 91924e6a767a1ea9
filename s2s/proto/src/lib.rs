//! Sans-IO core of Apache NiFi's Site-to-Site protocol.
//!
//! No sockets, no clock, no tokio: builds for `wasm32-unknown-unknown`.
//! [`codec`] holds the byte-level encoders/decoders; [`raw`] holds the RAW-socket
//! session and transaction state machines built on them.
//!
//! ```text
//!   bytes from the peer ──► codec decoders (Ok(None) = need more) ──► raw state machines
//!   raw state machines  ──► codec encoders (append to BytesMut)   ──► bytes to the peer
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod codec;
pub mod raw;

pub use codec::flowfile::FlowFile;
pub use codec::response_code::{Response, ResponseCode};
pub use codec::{DecodeError, EncodeError};
