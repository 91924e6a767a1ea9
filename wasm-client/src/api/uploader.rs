//! The upload loop, run by the one tab that holds the origin's Web Lock.
//!
//! Per round: read the head of the outbox (read-only transaction) → map rows to FlowFiles →
//! frame one batch → send → await its ack → on *committed* delete exactly those rows (read-write
//! transaction). The network is never awaited inside an IndexedDB transaction: each transaction
//! is finished before the next await on the socket.
//!
//! Failure handling, following `PROTOCOL.md` §5:
//! * connection errors, timeouts and *retry* acks: keep the rows, back off with full jitter (at
//!   least the bridge's `retry after`), reconnect;
//! * *rejected* acks: bisect the batch down to the offending record, then set that record aside
//!   in the `__s2s_rejected` store (kept, reported, no longer blocking the queue). `BAD_CRC` is
//!   re-encoded and sent once more first.

use std::rc::Weak;

use crate::api::backoff::Backoff;
use crate::api::client::{Inner, Status};
use crate::api::codec::FlowFile;
use crate::api::error::Error;
use crate::api::outbox::{self, OutboxRow};
use crate::api::protocol::{self, AckStatus, Limits};
use crate::api::signal::sleep;
use crate::api::transport::Connection;

const CONNECT_TIMEOUT_MS: f64 = 10_000.0;

/// What one round achieved.
enum Round {
    /// The outbox was empty.
    Idle,
    /// A batch was committed.
    Delivered,
    /// Try again after this many ms (at least).
    Retry { floor_ms: f64, error: Error },
    /// The batch was rejected; shrink to `size` records and try again at once.
    Shrink(u32),
}

pub(crate) async fn run(weak: Weak<Inner>) {
    let Some(first) = weak.upgrade() else { return };
    let mut backoff = Backoff::new(first.config.backoff_base_ms, first.config.backoff_cap_ms);
    let max_records = first.config.batch_records.max(1);
    drop(first);
    let mut conn: Option<Connection> = None;
    let mut size = max_records;
    let mut next_id: u64 = 1;
    let mut total: u64 = 0;
    let mut crc_retried = false;

    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.get() {
            return;
        }
        let round = round(
            &inner,
            &mut conn,
            size,
            &mut next_id,
            &mut total,
            &mut crc_retried,
        )
        .await;
        match round {
            Round::Idle => {
                let poll = inner.config.idle_poll_ms;
                // Do not keep the Rc across the wait: close() must be able to drop the client.
                let wake = std::rc::Rc::downgrade(&inner);
                drop(inner);
                if let Some(i) = wake.upgrade() {
                    let fut = i.wake.wait(poll);
                    fut.await;
                }
            }
            Round::Delivered => {
                backoff.reset();
                size = (size.saturating_mul(2)).min(max_records);
            }
            Round::Shrink(s) => size = s,
            Round::Retry { floor_ms, error } => {
                conn = None;
                let delay = backoff.next_delay(js_sys::Math::random(), 0.0);
                inner.emit(Status::Error {
                    kind: error.kind(),
                    message: error.to_string(),
                    fatal: false,
                    retry_in_ms: delay.max(floor_ms),
                });
                drop(inner);
                // The bridge's `retry after` is a floor nothing shortens; the jittered part can be
                // cut short by flush(), page hide or `online`.
                if floor_ms > 0.0 {
                    sleep(floor_ms).await;
                }
                if let Some(i) = weak.upgrade() {
                    i.urgent.wait((delay - floor_ms).max(0.0)).await;
                }
            }
        }
    }
}

async fn round(
    inner: &Inner,
    conn: &mut Option<Connection>,
    size: u32,
    next_id: &mut u64,
    total: &mut u64,
    crc_retried: &mut bool,
) -> Round {
    let limits = conn
        .as_ref()
        .map_or_else(Limits::default, |c| c.hello().limits);
    let want = size
        .min(u32::try_from(limits.max_records).unwrap_or(u32::MAX))
        .max(1);
    let rows = match outbox::peek(&inner.db, want).await {
        Ok(rows) => rows,
        Err(e) => {
            return Round::Retry {
                floor_ms: 0.0,
                error: e,
            };
        }
    };
    if rows.is_empty() {
        return Round::Idle;
    }

    // Map and cut the batch at the message size limit.
    let mut flowfiles: Vec<FlowFile> = Vec::with_capacity(rows.len());
    let mut bytes = protocol::BATCH_HEADER_LEN;
    for row in &rows {
        let ff = match inner.mapper.flowfile(row).await {
            Ok(ff) => ff,
            Err(e) if flowfiles.is_empty() => return set_aside(inner, &rows[..1], e).await,
            // A later row is bad: send the good prefix; the bad row will be first next round.
            Err(_) => break,
        };
        let len = protocol::encoded_len(&ff);
        if !flowfiles.is_empty() && bytes + len > limits.max_message_bytes {
            break;
        }
        bytes += len;
        flowfiles.push(ff);
    }
    let batch_rows = &rows[..flowfiles.len()];

    if conn.is_none() {
        let url = inner.config.bridge_url.clone().unwrap_or_default();
        match Connection::connect(&url, inner.config.token.as_deref(), CONNECT_TIMEOUT_MS).await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                return Round::Retry {
                    floor_ms: 0.0,
                    error: e,
                };
            }
        }
    }
    let Some(c) = conn.as_ref() else {
        return Round::Idle;
    };
    // The hello may have lowered the limits below what the batch was built for.
    let limits = c.hello().limits;
    let id = *next_id;
    *next_id += 1;
    let message = match protocol::encode_batch(id, &flowfiles, &limits) {
        Ok(m) => m,
        Err(e) if flowfiles.len() == 1 => return set_aside(inner, batch_rows, e).await,
        Err(_) => return Round::Shrink((flowfiles.len() / 2).max(1) as u32),
    };
    let seq = (batch_rows[0].seq, batch_rows[batch_rows.len() - 1].seq);
    let count = batch_rows.len() as u32;
    inner.emit(Status::InFlight { count, seq });
    if let Err(e) = c.send(&message) {
        return Round::Retry {
            floor_ms: 0.0,
            error: e,
        };
    }
    let ack = loop {
        match c.next_ack(inner.config.ack_timeout_ms).await {
            // An ack for an id this client is not waiting for (a late one from an earlier
            // attempt is impossible on a new connection; skip anything else defensively).
            Ok(ack) if ack.batch_id != id => continue,
            Ok(ack) => break ack,
            Err(e) => {
                return Round::Retry {
                    floor_ms: 0.0,
                    error: e,
                };
            }
        }
    };
    match ack.status {
        AckStatus::Committed => {
            *crc_retried = false;
            let seqs: Vec<u64> = batch_rows.iter().map(|r| r.seq).collect();
            if let Err(e) = outbox::remove(&inner.db, &seqs).await {
                // Delivered but not deleted: it is sent again later (at-least-once; NiFi drops
                // the duplicate by idb.client.id + idb.seq).
                return Round::Retry {
                    floor_ms: 0.0,
                    error: e,
                };
            }
            *total += u64::from(count);
            let depth = outbox::depth(&inner.db).await.unwrap_or(0);
            inner.emit(Status::Delivered {
                count,
                seq,
                depth,
                total: *total,
            });
            Round::Delivered
        }
        AckStatus::Retry => Round::Retry {
            floor_ms: f64::from(ack.retry_after_ms),
            error: Error::Connection(format!(
                "bridge asked to retry ({}): {}",
                protocol::reason_name(ack.reason),
                ack.message
            )),
        },
        AckStatus::Rejected if ack.reason == protocol::REASON_BAD_CRC && !*crc_retried => {
            // The rows may be fine and only this encoding damaged: re-encode once.
            *crc_retried = true;
            Round::Retry {
                floor_ms: 0.0,
                error: Error::Protocol("bridge reported BAD_CRC".into()),
            }
        }
        AckStatus::Rejected if count > 1 => Round::Shrink(count / 2),
        AckStatus::Rejected => {
            *crc_retried = false;
            let e = Error::Rejected {
                reason: protocol::reason_name(ack.reason),
                message: ack.message,
            };
            set_aside(inner, batch_rows, e).await
        }
    }
}

async fn set_aside(inner: &Inner, rows: &[OutboxRow], error: Error) -> Round {
    let reason = error.to_string();
    if let Err(e) = outbox::set_aside(&inner.db, rows, &reason).await {
        return Round::Retry {
            floor_ms: 0.0,
            error: e,
        };
    }
    inner.emit(Status::Error {
        kind: error.kind(),
        message: reason,
        fatal: true,
        retry_in_ms: 0.0,
    });
    Round::Delivered
}
