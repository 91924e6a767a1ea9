//! The plain-Rust API (no `#[wasm_bindgen]` exports here; see `bindings`).

pub mod backoff;
pub mod client;
pub mod codec;
pub mod error;
pub(crate) mod idb;
pub mod mapping;
pub mod outbox;
pub mod protocol;
pub mod schema;
pub mod signal;
pub mod snapshot;
pub mod status;
pub mod transport;
mod uploader;
