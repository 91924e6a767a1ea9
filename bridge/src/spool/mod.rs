//! The spool: a durable local queue for `ack = "spool"`.
//!
//! # Design
//!
//! A small segment log in one directory, no embedded database:
//!
//! ```text
//! dir/seg-00000000000000000001.log   entries, appended; a new segment once one passes `segment_bytes`
//! dir/seg-00000000000000000002.log
//! dir/ledger                         u64 segment, u64 offset of the first entry NiFi has not confirmed,
//!                                    u32 CRC32 of those 16 bytes; replaced atomically (tmp + rename)
//! entry  := u32 payload_len | u32 CRC32(payload) | payload
//! payload := u32 record_count | record_count × FlowFile (StandardFlowFileCodec v1)
//! ```
//!
//! One entry is one ingest batch, so a batch is spooled, forwarded and confirmed as a whole.
//!
//! # Invariants
//!
//! 1. **Acked ⇒ durable.** [`Spool::append`] returns only after the entry is written and
//!    `fdatasync`ed (and, for a new segment, the directory fsynced). Concurrent appends share one
//!    fsync (group commit, one writer thread), which is what makes fsync-per-ack affordable.
//! 2. **Deleted ⇒ confirmed.** The drain loop reads entries from the ledger position, delivers them
//!    to NiFi, and only after NiFi's TRANSACTION_FINISHED writes the new ledger position (fsynced)
//!    and deletes segments wholly before it. A crash between commit and ledger write resends
//!    those entries: at-least-once, never loss.
//! 3. **Bounded.** Bytes appended and not yet confirmed never exceed `max_bytes`. An append that
//!    does not fit waits for space (`full_policy = "block"`, up to `block_timeout_ms`) or fails at
//!    once (`"reject"`); either way the client gets *retry after* / HTTP 429, never a silent drop.
//! 4. **Recovery.** On open, segments before the ledger are deleted, and every entry after it is
//!    checked (length and CRC). A torn tail (crash mid-write: never acked) is truncated. A bad
//!    entry inside an older segment (disk corruption) is logged, counted and truncated as well.
//! 5. Reads never pass the durable end, so nothing is forwarded that could vanish in a crash.

mod log;

pub use log::{FullPolicy, Pos, ReadBatch, Spool, SpoolConfig, SpoolError};

#[cfg(test)]
mod tests;
