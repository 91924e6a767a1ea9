//! Benchmark building blocks for `cargo xtask bench`: a fast in-bench S2S sink, a plain TCP byte
//! pump (the loopback baseline), process CPU/RSS probes and the statistics of repeated runs.
//!
//! Every figure the bench reports is a ratio against a baseline measured in the same run, because
//! absolute numbers on a shared machine drift from one minute to the next.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod loadgen;
pub mod proc;
pub mod pump;
pub mod sink;
pub mod stats;
