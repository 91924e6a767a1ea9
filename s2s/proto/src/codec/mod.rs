//! Byte-level codecs (owned by the codec work; see crate docs).
