//! The upload loop, run by the one tab that holds the origin's Web Lock.
//!
//! Pipelined: up to `max_in_flight` batches (capped by the bridge's `max_inflight`) are sent
//! before the first ack is awaited. Each round reads the next rows *after* those already in flight
//! (read-only transaction) → maps them to FlowFiles → frames and sends one batch; acks may come
//! back in any order, and a *committed* ack deletes exactly that batch's rows (read-write
//! transaction). The network is never awaited inside an IndexedDB transaction: each transaction
//! is finished before the next await on the socket.
//!
//! Failure handling, following `PROTOCOL.md` §5:
//! * connection errors and timeouts: everything not acked stays in the outbox and is sent again
//!   (from the oldest row) on a new connection after a backoff with full jitter;
//! * *retry* acks: no new batch is sent; the acks of the batches still in flight are awaited
//!   (their commits count), then the connection is replaced after the backoff (at least the
//!   bridge's `retry after`) and the unacked rows are resent in order;
//! * *rejected* acks: after the other in-flight batches are settled the same way, the batch is
//!   bisected down to the offending record, which is set aside in the `__s2s_rejected` store
//!   (kept, reported, no longer blocking the queue). `BAD_CRC` is re-encoded and sent once more
//!   first.

use std::rc::{Rc, Weak};

use web_sys::IdbDatabase;

use crate::api::backoff::Backoff;
use crate::api::codec::FlowFile;
use crate::api::error::Error;
use crate::api::mapping::Mapper;
use crate::api::outbox::{self, OutboxRow};
use crate::api::protocol::{self, AckStatus, Limits};
use crate::api::signal::Signal;
use crate::api::signal::sleep;
use crate::api::status::{Config, Status};
use crate::api::transport::Connection;

const CONNECT_TIMEOUT_MS: f64 = 10_000.0;

/// What the uploader needs from its client, and nothing more (the client implements it; the
/// uploader holds it weakly, so dropping or closing the client ends the loop).
pub(crate) trait Host {
    /// The database whose outbox is uploaded.
    fn db(&self) -> &IdbDatabase;
    /// Rows → FlowFiles.
    fn mapper(&self) -> &Mapper;
    /// Batch sizes, timeouts, backoff, the bridge's URL and token.
    fn config(&self) -> &Config;
    /// Whether the client was closed (the loop then ends).
    fn is_closed(&self) -> bool;
    /// New rows to upload.
    fn wake(&self) -> Rc<Signal>;
    /// Skip the backoff now.
    fn urgent(&self) -> Rc<Signal>;
    /// Reports progress and errors.
    fn emit(&self, status: Status);
}

/// What one step achieved.
enum Round {
    /// The outbox holds nothing that is not already in flight, and nothing is in flight.
    Idle,
    /// A batch was committed, set aside, or sent.
    Progress,
    /// Everything in flight is settled; try again after this many ms (at least), on a new
    /// connection, from the oldest row.
    Retry { floor_ms: f64, error: Error },
    /// Everything in flight is settled; resend from the oldest row in batches of this size.
    Shrink(u32),
}

/// A batch sent and not yet acked.
struct InFlight {
    id: u64,
    rows: Vec<OutboxRow>,
}

/// The uploader's state across steps.
struct Pipeline {
    conn: Option<Connection>,
    in_flight: std::collections::VecDeque<InFlight>,
    /// Highest seq sent on this connection and not resent since: the next batch starts after it.
    cursor: u64,
    /// What to do once the batches still in flight are acked (no new batch goes out meanwhile).
    settle: Option<Round>,
    size: u32,
    max_records: u32,
    max_in_flight: usize,
    next_id: u64,
    total: u64,
    crc_retried: bool,
    /// A batch was committed since the loop last looked (the backoff then starts over).
    committed: bool,
}

impl Pipeline {
    /// Forget everything in flight (the rows stay in the outbox and are read again).
    fn restart(&mut self, drop_connection: bool) {
        if drop_connection {
            self.conn = None;
        }
        self.in_flight.clear();
        self.cursor = 0;
        self.settle = None;
    }
}

pub(crate) async fn run<H: Host>(weak: Weak<H>) {
    let Some(first) = weak.upgrade() else { return };
    let mut backoff = Backoff::new(
        first.config().backoff_base_ms,
        first.config().backoff_cap_ms,
    );
    let max_records = first.config().batch_records.max(1);
    let mut p = Pipeline {
        conn: None,
        in_flight: std::collections::VecDeque::new(),
        cursor: 0,
        settle: None,
        size: max_records,
        max_records,
        max_in_flight: first.config().max_in_flight.max(1) as usize,
        next_id: 1,
        total: 0,
        crc_retried: false,
        committed: false,
    };
    drop(first);

    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.is_closed() {
            return;
        }
        match step(&*inner, &mut p).await {
            Round::Progress => {}
            Round::Idle => {
                let poll = inner.config().idle_poll_ms;
                // Keep only the signal across the wait: the client can be dropped meanwhile.
                let wake = inner.wake();
                drop(inner);
                wake.wait(poll).await;
            }
            Round::Shrink(s) => {
                p.restart(false);
                p.size = s;
            }
            Round::Retry { floor_ms, error } => {
                p.restart(true);
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
                let urgent = weak.upgrade().map(|i| i.urgent());
                if let Some(urgent) = urgent {
                    urgent.wait((delay - floor_ms).max(0.0)).await;
                }
                continue;
            }
        }
        if std::mem::take(&mut p.committed) {
            backoff.reset();
        }
    }
}

fn retry(error: Error) -> Round {
    Round::Retry {
        floor_ms: 0.0,
        error,
    }
}

/// One step: fill the pipeline, else wait for one ack and act on it.
async fn step(inner: &impl Host, p: &mut Pipeline) -> Round {
    if p.settle.is_none() {
        if let Some(c) = &p.conn {
            // The bridge closes idle connections quietly (`PROTOCOL.md` §6): replace it.
            if c.is_closed() && p.in_flight.is_empty() {
                p.restart(true);
            }
        }
        let window = p.conn.as_ref().map_or(p.max_in_flight, |c| {
            p.max_in_flight.min(c.hello().limits.max_inflight.max(1))
        });
        if p.in_flight.len() < window {
            match send_next(inner, p).await {
                Ok(true) => return Round::Progress,
                Ok(false) => {}
                Err(round) => {
                    if p.in_flight.is_empty() {
                        return round;
                    }
                    // Settle what is in flight first: its acks may still commit.
                    p.settle = Some(round);
                }
            }
        }
    }
    if p.in_flight.is_empty() {
        return p.settle.take().unwrap_or(Round::Idle);
    }
    let Some(c) = p.conn.as_ref() else {
        return retry(Error::Connection(
            "no connection with batches in flight".into(),
        ));
    };
    let ack = match c.next_ack(inner.config().ack_timeout_ms).await {
        Ok(ack) => ack,
        Err(e) => return retry(e),
    };
    // An ack for an id this connection is not waiting for: skip it defensively.
    let Some(pos) = p.in_flight.iter().position(|b| b.id == ack.batch_id) else {
        return Round::Progress;
    };
    let batch = p.in_flight.remove(pos).expect("position is in range");
    let round = on_ack(inner, p, batch, ack).await;
    if let Round::Progress = round {
        if p.in_flight.is_empty()
            && let Some(r) = p.settle.take()
        {
            return r;
        }
        return Round::Progress;
    }
    // Keep the most drastic outcome (a retry beats a shrink) until the pipeline is empty.
    let keep = match (&p.settle, &round) {
        (Some(Round::Retry { .. }), _) => p.settle.take(),
        _ => Some(round),
    };
    if p.in_flight.is_empty() {
        return keep.unwrap_or(Round::Progress);
    }
    p.settle = keep;
    Round::Progress
}

/// Reads, maps, frames and sends the next batch after `p.cursor`. `Ok(false)`: nothing to send.
async fn send_next(inner: &impl Host, p: &mut Pipeline) -> Result<bool, Round> {
    let limits = p
        .conn
        .as_ref()
        .map_or_else(Limits::default, |c| c.hello().limits);
    let want = p
        .size
        .min(u32::try_from(limits.max_records).unwrap_or(u32::MAX))
        .max(1);
    let rows = outbox::peek_after(inner.db(), p.cursor, want)
        .await
        .map_err(retry)?;
    if rows.is_empty() {
        return Ok(false);
    }

    // Map and cut the batch at the message size limit.
    let mut flowfiles: Vec<FlowFile> = Vec::with_capacity(rows.len());
    let mut bytes = protocol::BATCH_HEADER_LEN;
    for row in &rows {
        let ff = match inner.mapper().flowfile(row).await {
            Ok(ff) => ff,
            Err(e) if flowfiles.is_empty() => {
                set_aside(inner, &rows[..1], e).await?;
                return Ok(true);
            }
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
    let mut rows = rows;
    rows.truncate(flowfiles.len());

    if p.conn.is_none() {
        let url = inner.config().bridge_url.clone().unwrap_or_default();
        let c = Connection::connect(&url, inner.config().token.as_deref(), CONNECT_TIMEOUT_MS)
            .await
            .map_err(retry)?;
        p.conn = Some(c);
    }
    let Some(c) = p.conn.as_ref() else {
        return Ok(false);
    };
    // The hello may have lowered the limits below what the batch was built for.
    let limits = c.hello().limits;
    let id = p.next_id;
    p.next_id += 1;
    let message = match protocol::encode_batch(id, &flowfiles, &limits) {
        Ok(m) => m,
        Err(e) if flowfiles.len() == 1 => {
            set_aside(inner, &rows, e).await?;
            return Ok(true);
        }
        Err(_) => return Err(Round::Shrink((flowfiles.len() / 2).max(1) as u32)),
    };
    let seq = (rows[0].seq, rows[rows.len() - 1].seq);
    inner.emit(Status::InFlight {
        count: rows.len() as u32,
        seq,
    });
    c.send(&message).map_err(retry)?;
    p.cursor = seq.1;
    p.in_flight.push_back(InFlight { id, rows });
    Ok(true)
}

/// Acts on the ack of `batch` (already taken out of the pipeline).
async fn on_ack(inner: &impl Host, p: &mut Pipeline, batch: InFlight, ack: protocol::Ack) -> Round {
    let count = batch.rows.len() as u32;
    let seq = (batch.rows[0].seq, batch.rows[batch.rows.len() - 1].seq);
    match ack.status {
        AckStatus::Committed => {
            p.crc_retried = false;
            p.committed = true;
            let seqs: Vec<u64> = batch.rows.iter().map(|r| r.seq).collect();
            if let Err(e) = outbox::remove(inner.db(), &seqs).await {
                // Delivered but not deleted: it is sent again later (at-least-once; NiFi drops
                // the duplicate by idb.client.id + idb.seq).
                return retry(e);
            }
            p.total += u64::from(count);
            p.size = p.size.saturating_mul(2).min(p.max_records);
            let depth = outbox::depth(inner.db()).await.unwrap_or(0);
            inner.emit(Status::Delivered {
                count,
                seq,
                depth,
                total: p.total,
            });
            Round::Progress
        }
        AckStatus::Retry => Round::Retry {
            floor_ms: f64::from(ack.retry_after_ms),
            error: Error::Connection(format!(
                "bridge asked to retry ({}): {}",
                protocol::reason_name(ack.reason),
                ack.message
            )),
        },
        AckStatus::Rejected if ack.reason == protocol::REASON_BAD_CRC && !p.crc_retried => {
            // The rows may be fine and only this encoding damaged: re-encode once.
            p.crc_retried = true;
            retry(Error::Protocol("bridge reported BAD_CRC".into()))
        }
        AckStatus::Rejected if count > 1 => Round::Shrink(count / 2),
        AckStatus::Rejected => {
            p.crc_retried = false;
            let e = Error::Rejected {
                reason: protocol::reason_name(ack.reason),
                message: ack.message,
            };
            match set_aside(inner, &batch.rows, e).await {
                Ok(()) => Round::Progress,
                Err(r) => r,
            }
        }
    }
}

async fn set_aside(inner: &impl Host, rows: &[OutboxRow], error: Error) -> Result<(), Round> {
    let reason = error.to_string();
    outbox::set_aside(inner.db(), rows, &reason)
        .await
        .map_err(retry)?;
    inner.emit(Status::Error {
        kind: error.kind(),
        message: reason,
        fatal: true,
        retry_in_ms: 0.0,
    });
    Ok(())
}
