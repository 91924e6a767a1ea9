//! The ListenHTTP endpoint's shared state: compiled header and DN patterns, the byte-rate
//! throttle ("Max Data to Receive per Second") and the holds of the hold protocol. A leaf module:
//! [`AppState`](crate::state::AppState) holds it, the ListenHTTP handlers use it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::conn::ClientDn;
use crate::config::ListenHttpConfig;
use crate::record::Record;

/// A byte-rate limit shared by all requests of an endpoint (ListenHTTP's "Max Data to Receive
/// per Second"): each piece of a body waits until the rate allows it.
#[derive(Debug)]
pub(crate) struct Throttle {
    per_sec: u64,
    next: Mutex<tokio::time::Instant>,
}

impl Throttle {
    pub(crate) fn new(per_sec: u64) -> Self {
        Self {
            per_sec: per_sec.max(1),
            next: Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits until `n` more bytes fit the rate (until the end of their time slot).
    pub(crate) async fn take(&self, n: usize) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(n as f64 / self.per_sec as f64);
            // Handed on once its share of time has passed: no faster than the rate.
            *next
        };
        tokio::time::sleep_until(at).await;
    }
}

/// The ListenHTTP endpoint's state: compiled patterns, the throttle and the holds.
#[derive(Debug)]
pub(crate) struct ListenState {
    pub(crate) header_regex: Option<regex::Regex>,
    subject_dn: regex::Regex,
    issuer_dn: regex::Regex,
    pub(crate) throttle: Option<Throttle>,
    pub(crate) hold_timeout: Duration,
    holds: Mutex<HashMap<String, Hold>>,
    /// `{base}` without its leading `/`, as ListenHTTP's Base Path.
    pub(crate) base: String,
}

/// FlowFiles received with `x-prefer-acknowledge-uri: true`, waiting for the sender's `DELETE`.
#[derive(Debug)]
pub(crate) struct Hold {
    pub(crate) records: Vec<Record>,
    pub(crate) created: Instant,
    pub(crate) peer: SocketAddr,
}

fn whole(re: &str) -> Result<regex::Regex, crate::Error> {
    regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| crate::Error::Config(e.to_string()))
}

impl ListenState {
    pub(crate) fn new(cfg: &ListenHttpConfig) -> Result<Self, crate::Error> {
        Ok(Self {
            header_regex: cfg.header_regex.as_deref().map(whole).transpose()?,
            subject_dn: whole(&cfg.authorized_dn_pattern)?,
            issuer_dn: whole(&cfg.authorized_issuer_dn_pattern)?,
            throttle: cfg.max_bytes_per_sec.map(Throttle::new),
            hold_timeout: Duration::from_millis(cfg.hold_timeout_ms),
            holds: Mutex::default(),
            base: cfg.base_path.trim_matches('/').to_owned(),
        })
    }

    pub(crate) fn holds(&self) -> std::sync::MutexGuard<'_, HashMap<String, Hold>> {
        self.holds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Releases holds older than `hold_timeout` (their staged content is removed with them);
    /// returns how many.
    pub(crate) fn expire_holds(&self) -> usize {
        let now = Instant::now();
        let expired: Vec<(String, Hold)> = {
            let mut holds = self.holds();
            let ids: Vec<String> = holds
                .iter()
                .filter(|(_, h)| now.duration_since(h.created) >= self.hold_timeout)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| holds.remove(&id).map(|h| (id, h)))
                .collect()
        };
        for (id, h) in &expired {
            tracing::warn!(
                hold = %id,
                peer = %h.peer,
                flowfiles = h.records.len(),
                "hold not confirmed within hold_timeout_ms: released, never delivered"
            );
        }
        expired.len()
    }

    /// Checks a client certificate against the DN patterns: `Err(why)` means 403.
    pub(crate) fn check_dn(
        &self,
        client: Option<&ClientDn>,
        issuer_too: bool,
    ) -> Result<(), String> {
        let Some(c) = client else { return Ok(()) };
        if !self.subject_dn.is_match(&c.subject) {
            return Err(format!("subject DN {:?} not authorized", c.subject));
        }
        if issuer_too && !self.issuer_dn.is_match(&c.issuer) {
            return Err(format!("issuer DN {:?} not authorized", c.issuer));
        }
        Ok(())
    }
}

/// Runs [`ListenState::expire_holds`] every second until `stop`.
pub(crate) fn spawn_hold_expiry(
    st: std::sync::Arc<ListenState>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    tracker: &tokio_util::task::TaskTracker,
    stop: tokio_util::sync::CancellationToken,
) {
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1).min(st.hold_timeout));
        let expired = metrics.counter("bridge_listenhttp_holds_total", &[("event", "expired")]);
        loop {
            tokio::select! {
                _ = tick.tick() => { expired.increment(st.expire_holds() as u64); }
                () = stop.cancelled() => return,
            }
        }
    });
}
