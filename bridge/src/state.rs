//! The state every handler shares ([`AppState`]), in its own module so that the server (which
//! builds it) and the ingest handlers (which use it) depend on it and not on each other.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, Origins};
use crate::config::Config;
use crate::ingest::listen_state::ListenState;
use crate::ingest::reject_log::RejectLog;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::sink::Sink;

/// Shared state of all handlers.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) cfg: Arc<Config>,
    pub(crate) pipeline: Pipeline,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) auth: Arc<Auth>,
    pub(crate) origins: Origins,
    pub(crate) sink: Arc<dyn SinkDebug>,
    pub(crate) closing: CancellationToken,
    /// WebSocket connection slots (`limits.max_connections`).
    pub(crate) ws_slots: Arc<Semaphore>,
    /// Concurrent HTTP ingest requests (`limits.max_http_requests`).
    pub(crate) http_slots: Arc<Semaphore>,
    /// The ListenHTTP endpoint's patterns, throttle and holds.
    pub(crate) listen: Arc<ListenState>,
    /// Where large HTTP request content is staged.
    pub(crate) stage_dir: std::path::PathBuf,
    /// The rate limit of rejection log lines (every rejection is still counted).
    pub(crate) rejections: Arc<RejectLog>,
}

/// [`Sink`] plus `Debug`, so the state can derive it.
pub(crate) trait SinkDebug: Sink + std::fmt::Debug {}
impl<T: Sink + std::fmt::Debug> SinkDebug for T {}
