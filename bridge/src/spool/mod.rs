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
//! The code is split along the same lines: `ledger` (the confirmed position), `writer` (the
//! writer thread: group commit, rolling, failed writes), `reader` (the entry format and the
//! drain's reads), `recovery` (scanning segments on open, stepping over bad entries) and `log`
//! (the [`Spool`] handle). Every file operation goes through the `fs::Filesystem` seam: `StdFs`
//! over `std::fs` in production, a fault-injecting implementation in the tests (disk full,
//! failed fsync, dropped dirty pages).
//!
//! # Invariants
//!
//! 1. **Acked ⇒ durable.** [`Spool::append`] returns `Ok` only after the entry is written and
//!    `fdatasync`ed (and, for a new segment, the directory fsynced). Concurrent appends share one
//!    fsync (group commit, one writer thread), which is what makes fsync-per-ack affordable.
//! 2. **Failed ⇒ not acked, segment not trusted.** If a write (disk full: `ENOSPC`) or the fsync
//!    of a group fails, every append of that group gets the error (the client is answered
//!    *retry after*), and the segment is sealed at the end of the last durable group: reads never
//!    pass the seal, the rest is truncated when the disk allows it, and the next append starts a
//!    new segment. A failed fsync may have dropped dirty pages, and a later fsync of the same file
//!    can report success without them, so the segment is never appended to again. (If the
//!    failed group's bytes reached the disk after all, a restart's recovery finds them valid and
//!    forwards them: the client resent them too, so that is a duplicate, never a loss.)
//! 3. **Deleted ⇒ confirmed.** The drain loop reads entries from the ledger position, delivers them
//!    to NiFi, and only after NiFi's TRANSACTION_FINISHED writes the new ledger position (fsynced)
//!    and deletes segments wholly before it. A crash between commit and ledger write resends
//!    those entries: at-least-once, never loss; the duplicates are the unconfirmed batch only.
//! 4. **Bounded.** Bytes appended and not yet confirmed never exceed `max_bytes`. An append that
//!    does not fit waits for space (`full_policy = "block"`, up to `block_timeout_ms`) or fails at
//!    once (`"reject"`); either way the client gets *retry after* / HTTP 429, never a silent drop.
//! 5. **Recovery keeps every intact entry.** On open, segments before the ledger are deleted, and
//!    every entry after it is checked (length, structure, CRC). A bad entry in the middle of a
//!    segment (disk corruption) is logged, skipped and counted in
//!    `bridge_spool_corrupt_entries_total{kind="corrupt"}`; the valid entries after it are kept
//!    (the next valid one is found by searching the bytes after the bad one). A bad tail with no
//!    valid entry after it (a torn write: never acked) is truncated and counted with
//!    `kind="torn_tail"`. Reads that meet a bad entry not known from recovery do the same. No file
//!    content makes recovery panic.
//! 6. Reads never pass the durable end, so nothing is forwarded that could vanish in a crash.
//!
//! Failed write groups are counted in `bridge_spool_write_errors_total`.

mod fs;
mod ledger;
mod log;
mod reader;
mod recovery;
mod writer;

pub use log::{FullPolicy, Pos, ReadBatch, Spool, SpoolConfig, SpoolError};

#[cfg(test)]
mod faults;
#[cfg(test)]
mod tests;
