//! The nifi-s2s bridge: browsers and HTTP clients in, Site-to-Site out.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
