#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod api;
mod bindings;
mod sys;

pub use api::client::{Client, Config, Status};
pub use api::codec::FlowFile;
pub use api::error::Error;
pub use api::outbox::{Op, OutboxRow, WriteTx};
pub use api::schema::{IndexSpec, Schema, StoreSpec};
