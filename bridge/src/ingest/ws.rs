//! `/v1/ws`: the WebSocket batch protocol (PROTOCOL.md §1–§7).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::admission::{Admission, Admitted, Stamp, reason};
use crate::auth::presented_token;
use crate::codec::{self, DecodeError};
use crate::config::AckMode;
use crate::protocol::{self, Auth, BatchHeader, Hello, SUBPROTOCOL_V1, TYPE_BATCH, close};
use crate::record::{Outcome, Reason, Record};
use crate::state::AppState;

const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Set by the origin check on a WebSocket handshake from an origin not allowed: the upgrade is
/// accepted only to close at once with [`FORBIDDEN_ORIGIN`] and a reason the page can read.
#[derive(Clone, Debug)]
pub(crate) struct ForeignOrigin(pub(crate) String);

/// Close code for a handshake from an origin not allowed (PROTOCOL.md §7).
pub(crate) const FORBIDDEN_ORIGIN: u16 = 4003;

pub(crate) async fn upgrade(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    foreign: Option<axum::Extension<ForeignOrigin>>,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(axum::Extension(ForeignOrigin(origin))) = foreign {
        let mut reason = format!("origin {origin} not allowed (bridge --allowed-origin)");
        // A close reason is at most 123 bytes.
        while reason.len() > 123 {
            reason.pop();
        }
        // Select the subprotocol the client offered: without it a browser fails the handshake
        // (1006) before it sees the close frame.
        return ws
            .protocols([SUBPROTOCOL_V1])
            .on_upgrade(move |mut socket| async move {
                let frame = CloseFrame {
                    code: FORBIDDEN_ORIGIN,
                    reason: reason.into(),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
            });
    }
    let adm = Admission::new(st, peer, "/v1/ws", "ws");
    let slot = match adm.ws_slot() {
        Ok(s) => s,
        Err(d) => return d.text(),
    };
    let token = presented_token(&headers, query.as_deref());
    let max = adm.st.cfg.limits.max_message_bytes;
    let ws = ws
        .protocols([SUBPROTOCOL_V1])
        .max_message_size(max)
        .max_frame_size(max);
    let negotiated = ws.selected_protocol().is_some();
    ws.on_upgrade(move |socket| async move {
        let metrics = adm.st.metrics.clone();
        metrics.ws_connections.increment(1.0);
        Conn {
            st: adm.st.clone(),
            adm,
            socket,
            peer,
        }
        .run(negotiated, token, slot)
        .await;
        metrics.ws_connections.decrement(1.0);
    })
}

struct Conn {
    st: AppState,
    adm: Admission,
    socket: WebSocket,
    peer: SocketAddr,
}

impl Conn {
    async fn close(&mut self, code: u16, reason: &str) {
        tracing::debug!(peer = %self.peer, code, reason, "closing WebSocket");
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        // The peer may already be gone; nothing more to do then.
        let _ = self.socket.send(Message::Close(Some(frame))).await;
    }

    fn reject_log(&self, what: &'static str, detail: &str) {
        self.adm.reject(what, None, detail);
    }

    async fn run(mut self, negotiated: bool, token: Option<String>, slot: OwnedSemaphorePermit) {
        if !negotiated {
            self.reject_log("UNSUPPORTED_VERSION", "no supported subprotocol offered");
            self.close(
                close::UNSUPPORTED_VERSION,
                &format!("supported subprotocols: {SUBPROTOCOL_V1}"),
            )
            .await;
            return;
        }
        let Some(fixed) = self.authenticate(token).await else {
            return;
        };
        let admitted = Admitted::new(Stamp::new(fixed, &self.st.cfg.limits), slot);
        let limits = &self.st.cfg.limits;
        let hello = Hello {
            version: 1,
            ack_mode: match self.st.cfg.ack {
                AckMode::Nifi => "nifi".into(),
                AckMode::Spool => "spool".into(),
            },
            limits: limits.announced(),
        }
        .to_json();
        if self.socket.send(Message::Text(hello.into())).await.is_err() {
            return;
        }
        self.serve(admitted).await;
    }

    async fn authenticate(
        &mut self,
        token: Option<String>,
    ) -> Option<crate::auth::FixedAttributes> {
        if let Some(t) = token {
            return match self.adm.authenticate(Some(&t)) {
                Ok(a) => Some(a),
                Err(_) => {
                    self.close(close::UNAUTHORIZED, "unauthorized").await;
                    None
                }
            };
        }
        if !self.st.auth.enabled() {
            return self.st.auth.check(None);
        }
        let first = tokio::time::timeout(AUTH_TIMEOUT, self.socket.recv()).await;
        let msg = match first {
            Err(_) => {
                self.reject_log("AUTH_TIMEOUT", "no auth message");
                self.close(close::AUTH_TIMEOUT, "no auth message within 10 s")
                    .await;
                return None;
            }
            Ok(Some(Ok(Message::Text(t)))) => Auth::from_json(t.as_str()),
            Ok(Some(Ok(Message::Binary(_)))) => {
                self.reject_log("PROTOCOL_ERROR", "batch before hello");
                self.close(
                    close::PROTOCOL_ERROR,
                    "batch sent before hello (authenticate first)",
                )
                .await;
                return None;
            }
            Ok(_) => None,
        };
        let Some(m) = msg else {
            self.reject_log(reason::UNAUTHORIZED, "missing or bad auth message");
            self.close(close::UNAUTHORIZED, "unauthorized").await;
            return None;
        };
        match self.adm.authenticate(Some(&m.token)) {
            Ok(a) => Some(a),
            Err(_) => {
                self.close(close::UNAUTHORIZED, "unauthorized").await;
                None
            }
        }
    }

    async fn send_ack(&mut self, id: u64, outcome: &Outcome) -> bool {
        let ack = protocol::ack_for(id, outcome).encode();
        self.socket.send(Message::Binary(ack)).await.is_ok()
    }

    async fn serve(mut self, admitted: Admitted) {
        let max_inflight = self.st.cfg.limits.max_inflight;
        let (ack_tx, mut ack_rx) = mpsc::channel::<(u64, Outcome)>(max_inflight.max(1));
        let mut inflight: HashSet<u64> = HashSet::new();
        let mut draining = false;
        let closing = self.st.closing.clone();
        let idle_timeout = Duration::from_millis(self.st.cfg.limits.ws_idle_timeout_ms);
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        loop {
            if draining && inflight.is_empty() {
                self.close(close::GOING_AWAY, "bridge shutting down").await;
                return;
            }
            tokio::select! {
                biased;
                Some((id, outcome)) = ack_rx.recv() => {
                    inflight.remove(&id);
                    if !self.send_ack(id, &outcome).await {
                        return;
                    }
                }
                () = closing.cancelled(), if !draining => draining = true,
                () = &mut idle, if !draining => {
                    if inflight.is_empty() {
                        self.close(1000, "idle").await;
                        return;
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                }
                msg = self.socket.recv(), if !draining => {
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                    match msg {
                        None | Some(Ok(Message::Close(_))) => return,
                        Some(Err(e)) => {
                            if is_too_big(&e) {
                                self.reject_log(reason::LIMIT, "message over max_message_bytes");
                                let limit = self.st.cfg.limits.max_message_bytes;
                                self.close(close::MESSAGE_TOO_BIG, &format!("message larger than {limit} bytes")).await;
                            } else {
                                tracing::debug!(peer = %self.peer, error = %e, "WebSocket read error");
                            }
                            return;
                        }
                        Some(Ok(Message::Binary(b))) => {
                            if !self.batch(b, &admitted.stamp, &mut inflight, &ack_tx).await {
                                return;
                            }
                        }
                        Some(Ok(Message::Text(t))) => {
                            let is_auth = Auth::from_json(t.as_str()).is_some();
                            if is_auth && !self.st.auth.enabled() {
                                continue;
                            }
                            self.reject_log("UNSUPPORTED_DATA", "text message");
                            self.close(close::UNSUPPORTED_DATA, "only binary batch messages are accepted").await;
                            return;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    }
                }
            }
        }
    }

    /// Handles one binary message; `false` ends the connection.
    async fn batch(
        &mut self,
        msg: Bytes,
        stamp: &Stamp,
        inflight: &mut HashSet<u64>,
        acks: &mpsc::Sender<(u64, Outcome)>,
    ) -> bool {
        let Some((h, payload)) = BatchHeader::parse(&msg) else {
            self.reject_log("MALFORMED", "message shorter than the 18-byte batch header");
            self.close(close::PROTOCOL_ERROR, "truncated batch header")
                .await;
            return false;
        };
        let limits = self.st.cfg.limits.clone();
        let refuse = |reason: Reason, m: String| Outcome::rejected(reason, m);
        let early = if h.kind != TYPE_BATCH || h.flags != 0 {
            Some(refuse(
                Reason::Malformed,
                format!(
                    "unknown frame type {:#04x} / flags {:#04x}",
                    h.kind, h.flags
                ),
            ))
        } else if inflight.contains(&h.id) {
            Some(refuse(
                Reason::DuplicateId,
                format!("batch {} is still in flight", h.id),
            ))
        } else if inflight.len() >= limits.max_inflight {
            Some(Outcome::retry(
                Duration::from_millis(100),
                Reason::TooManyInflight,
                format!(
                    "more than max_inflight = {} unacked batches",
                    limits.max_inflight
                ),
            ))
        } else if crc32fast::hash(&payload) != h.crc {
            Some(refuse(
                Reason::BadCrc,
                "CRC32 does not match the payload".into(),
            ))
        } else if h.count as usize > limits.max_records {
            Some(refuse(
                Reason::Limit,
                format!(
                    "{} records exceed max_records = {}",
                    h.count, limits.max_records
                ),
            ))
        } else {
            None
        };
        if let Some(outcome) = early {
            let size = Some(payload.len() as u64);
            self.adm
                .reject(outcome.reason().name(), size, &format!("batch {}", h.id));
            return self.send_ack(h.id, &outcome).await;
        }
        let mut records = match codec::decode_all(payload, h.count as usize, &limits) {
            Ok(r) => r,
            Err(e) => {
                let reason = match e {
                    DecodeError::Limit(_) => Reason::Limit,
                    _ => Reason::Malformed,
                };
                self.reject_log(reason.name(), &format!("batch {}: {e}", h.id));
                return self.send_ack(h.id, &refuse(reason, e.to_string())).await;
            }
        };
        if let Err(e) = stamp.batch(&mut records) {
            self.reject_log(reason::LIMIT, &format!("batch {}: {e}", h.id));
            return self.send_ack(h.id, &refuse(Reason::Limit, e)).await;
        }
        let records: Vec<Record> = records.into_iter().map(Record::from).collect();
        self.adm.received(&records);
        inflight.insert(h.id);
        let acks = acks.clone();
        let adm = self.adm.clone();
        tokio::spawn(async move {
            let outcome = adm.forward(records, &format!("batch {}", h.id)).await;
            // The connection may be gone; the client then resends on a new one.
            let _ = acks.send((h.id, outcome)).await;
        });
        true
    }
}

fn is_too_big(e: &axum::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(t) = err.downcast_ref::<tungstenite::Error>() {
            return matches!(t, tungstenite::Error::Capacity(_));
        }
        src = err.source();
    }
    false
}
