//! Browser client for nifi-s2s.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
