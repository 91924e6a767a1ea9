//! The one place the client touches the shared FlowFile codec (`s2s_proto`, StandardFlowFileCodec
//! v1): the same Rust code the native client and the bridge use, compiled to wasm.

pub use s2s_proto::FlowFile;
pub(crate) use s2s_proto::codec::flowfile::{encode, encoded_len};
