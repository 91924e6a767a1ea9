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
//!
//! # Quick start: the FlowFile codec
//!
//! ```
//! use bytes::BytesMut;
//! use s2s_proto::FlowFile;
//! use s2s_proto::codec::flowfile::{self, FlowFileDecoder};
//!
//! let ff = FlowFile::new("hello").with_attribute("filename", "hello.txt");
//! let mut wire = BytesMut::new();
//! flowfile::encode(&ff, &mut wire);
//!
//! // Decoders are incremental: feed bytes as they arrive.
//! let mut decoder = FlowFileDecoder::default();
//! let mut rx = BytesMut::from(&wire[..10]);
//! assert_eq!(decoder.decode(&mut rx)?, None); // need more bytes
//! rx.extend_from_slice(&wire[10..]);
//! assert_eq!(decoder.decode(&mut rx)?, Some(ff));
//! # Ok::<(), s2s_proto::DecodeError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod codec;
pub mod http;
pub mod raw;
pub mod stream;

pub use codec::flowfile::FlowFile;
pub use codec::response_code::{Response, ResponseCode};
pub use codec::{DecodeError, EncodeError};
