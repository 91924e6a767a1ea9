//! Sans-IO core of Apache NiFi's Site-to-Site protocol.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
