//! Async Apache NiFi Site-to-Site client.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
