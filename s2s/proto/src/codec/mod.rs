//! Byte-level codecs for NiFi's Site-to-Site wire format.
//!
//! Every decoder follows the `tokio_util::codec::Decoder` contract without depending on it:
//! it reads from a `&mut BytesMut`, returns `Ok(None)` (consuming nothing) while a message is
//! incomplete, `Ok(Some(_))` after consuming exactly one message, and `Err` when the bytes
//! can never form a valid message (the connection is then poisoned). Every length read from
//! the wire is checked against a bound before anything is allocated.
//!
//! Encoders append to a `BytesMut`. They only fail for values the wire format cannot
//! represent (for example a protocol string longer than 65535 bytes), and they check that
//! before writing anything.
//!
//! | Module | Wire element | Reference |
//! |---|---|---|
//! | [`utf`] | Java modified UTF-8 strings with a u16 length, big-endian integers | docs/site-to-site.md §3 |
//! | [`response_code`] | `'R' 'C' code [message]` frames | docs/site-to-site.md §2.4 |
//! | [`negotiation`] | magic, resource/codec version negotiation | docs/site-to-site.md §2.1, §2.2, §2.7 |
//! | [`handshake`] | handshake request, request types | docs/site-to-site.md §2.3, §2.5 |
//! | [`peers`] | `REQUEST_PEER_LIST` reply | docs/site-to-site.md §2.6 |
//! | [`flowfile`] | `StandardFlowFileCodec` v1 | docs/site-to-site.md §4.1 |
//! | [`compression`] | `SYNC`-chunked zlib envelope (`GZIP=true`) | docs/site-to-site.md §4.2 |
//! | [`checksum`] | transaction CRC32 | docs/site-to-site.md §5.3 |
//! | [`package_v3`] | FlowFile Package v3 (`application/flowfile-v3`) | docs/site-to-site.md §10 |

pub mod checksum;
pub mod compression;
pub mod flowfile;
pub mod handshake;
pub mod negotiation;
pub mod package_v3;
pub mod peers;
pub mod response_code;
pub mod utf;

mod error;
pub(crate) mod reader;

pub use error::{DecodeError, EncodeError};
