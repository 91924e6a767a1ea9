//! The FlowFile type of the shared codec (`s2s_proto`, StandardFlowFileCodec v1): the same Rust
//! code the native client and the bridge use, compiled to wasm. Batches are framed by
//! `s2s_bridge_protocol` (see [`super::protocol`]).

pub use s2s_proto::FlowFile;
