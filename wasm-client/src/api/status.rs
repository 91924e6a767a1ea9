//! The client's settings ([`Config`]) and the status events it reports ([`Status`]): shared by the
//! client and the uploader, which do not import each other.

use js_sys::{Object, Reflect};
use wasm_bindgen::JsValue;

/// Client options (plain values with documented defaults).
#[derive(Debug, Clone)]
pub struct Config {
    /// `ws://…/v1/ws` of the bridge. `None`: capture only, nothing is uploaded.
    pub bridge_url: Option<String>,
    /// Bearer token, sent as the first-message `auth` (never in the URL). Default none.
    pub token: Option<String>,
    /// Attributes added to every FlowFile (`idb.*`, `mime.type` and `filename` win on conflict).
    pub static_attributes: Vec<(String, String)>,
    /// Most records per batch (default 500; the bridge's `max_records` caps it).
    pub batch_records: u32,
    /// Most batches sent and not yet acked (default 4; the bridge's `max_inflight` caps it).
    /// Acks may come back in any order; each deletes exactly its own rows.
    pub max_in_flight: u32,
    /// How long to wait for an ack before giving up on the connection (default 30 s).
    pub ack_timeout_ms: f64,
    /// First backoff ceiling (default 250 ms) and cap (default 30 s).
    pub backoff_base_ms: f64,
    /// See `backoff_base_ms`.
    pub backoff_cap_ms: f64,
    /// An idle uploader re-checks the outbox this often even without a wake-up (default 5 s).
    pub idle_poll_ms: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bridge_url: None,
            token: None,
            static_attributes: Vec::new(),
            batch_records: 500,
            max_in_flight: 4,
            ack_timeout_ms: 30_000.0,
            backoff_base_ms: 250.0,
            backoff_cap_ms: 30_000.0,
            idle_poll_ms: 5_000.0,
        }
    }
}

/// A status event (`type` in JS): what the outbox and the uploader are doing.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Rows committed to the outbox by this tab.
    Queued {
        /// Rows added.
        count: u32,
    },
    /// A batch was sent and waits for its ack.
    InFlight {
        /// Records in the batch.
        count: u32,
        /// First and last `seq`.
        seq: (u64, u64),
    },
    /// The bridge committed a batch; its rows were deleted.
    Delivered {
        /// Records in the batch.
        count: u32,
        /// First and last `seq`.
        seq: (u64, u64),
        /// Rows left in the outbox.
        depth: u32,
        /// Delivered by this uploader since it started.
        total: u64,
    },
    /// Something failed. `fatal` errors set rows aside; the others are retried after `retry_in_ms`.
    Error {
        /// Error kind name.
        kind: &'static str,
        /// Description.
        message: String,
        /// Whether rows were set aside (rejected for good).
        fatal: bool,
        /// When the next attempt happens.
        retry_in_ms: f64,
    },
    /// This tab became the origin's uploader.
    Leader,
}

impl Status {
    pub(crate) fn to_js(&self, source: &str) -> JsValue {
        let o = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&o, &k.into(), &v);
        };
        let ty = match self {
            Self::Queued { count } => {
                set("count", (*count).into());
                "queued"
            }
            Self::InFlight { count, seq } => {
                set("count", (*count).into());
                set("seqFrom", (seq.0 as f64).into());
                set("seqTo", (seq.1 as f64).into());
                "inflight"
            }
            Self::Delivered {
                count,
                seq,
                depth,
                total,
            } => {
                set("count", (*count).into());
                set("seqFrom", (seq.0 as f64).into());
                set("seqTo", (seq.1 as f64).into());
                set("depth", (*depth).into());
                set("total", (*total as f64).into());
                "delivered"
            }
            Self::Error {
                kind,
                message,
                fatal,
                retry_in_ms,
            } => {
                set("kind", (*kind).into());
                set("message", message.as_str().into());
                set("fatal", (*fatal).into());
                set("retryInMs", (*retry_in_ms).into());
                "error"
            }
            Self::Leader => "leader",
        };
        set("type", ty.into());
        set("source", source.into());
        o.into()
    }
}
