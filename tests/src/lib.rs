//! Test kit for Apache NiFi: provision or reuse a real NiFi, create ports, inspect queues.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
