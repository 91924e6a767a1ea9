//! [`Client`]: discovery cache, peer selection, connection pool and the transaction API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s2s_proto::FlowFile;
use s2s_proto::raw::{Event, SessionConfig};
use tokio::net::TcpStream;
use tracing::{Instrument, debug, info_span, warn};

use crate::batch::{BatchFailure, BatchReport};
use crate::builder::{ClientBuilder, Transport};
use crate::connection::{AsyncStream, Connection, with_timeout};
use crate::discovery::{self, Direction, PortInfo, SiteInfo};
use crate::error::{Error, Kind};
use crate::http::{HttpCtx, HttpReceive, HttpSend, OnNode as _, OpenTx};
use crate::metrics::Dir;
use crate::peers::{self, Peer, PeerStatus, Penalties};
use crate::transaction::{
    ReceiveTransaction, ReceiveTransport, SendSummary, SendTransaction, SendTransport, Source,
};

/// An async NiFi Site-to-Site client (RAW or HTTP transport, see [`ClientBuilder::transport`]). Cheap to clone; clones share the
/// discovery cache, peer list, penalties and connection pool.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: ClientBuilder,
    pub(crate) http: reqwest::Client,
    pub(crate) auth: Option<Arc<crate::auth::TokenSource>>,
    site: tokio::sync::Mutex<Option<(Instant, Arc<SiteInfo>, String)>>,
    /// A background discovery refresh is running.
    site_refreshing: std::sync::atomic::AtomicBool,
    /// When the last background discovery refresh failed (retried after a backoff).
    site_failed_at: Mutex<Option<Instant>>,
    peer_cache: Mutex<PeerCache>,
    /// Bumped after every peer-list fetch (success or not): the first fetch is waited for.
    peer_fetches: tokio::sync::watch::Sender<u64>,
    /// Transactions this client has open per node (`host:port` after overrides).
    inflight: Arc<Mutex<HashMap<String, usize>>>,
    pub(crate) penalties: Mutex<Penalties>,
    pub(crate) pool: Mutex<HashMap<(String, String), Vec<Connection>>>,
    transfer_connections: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

/// The cached peer list (of the client's transport) and the state of its refresh.
#[derive(Debug, Default)]
pub(crate) struct PeerCache {
    list: Option<Arc<Vec<Peer>>>,
    /// Last successful fetch; `None` for a list read from the peer file.
    fetched_at: Option<Instant>,
    /// Last failed fetch: the next one waits for a backoff.
    failed_at: Option<Instant>,
    refreshing: bool,
    file_tried: bool,
    /// FlowFiles this client received per node (`host:port` after overrides) since the last
    /// fetch, as a negative number. NiFi's counts lag (a heartbeat, then the refresh interval),
    /// so the weights use the listed count plus this.
    moved: HashMap<String, i64>,
    /// Nodes whose RECEIVE answered "no data", and when: counted as holding nothing until a
    /// peer list fetched [`DRAIN_HOLD`] after that answer (or data from the node) says more.
    drained: HashMap<String, Instant>,
    /// A refresh due before the regular interval (set by a "no data" answer).
    refresh_at: Option<Instant>,
}

/// How long a node's "no data" answer outweighs the FlowFile count of the peer list: NiFi
/// reports a node's count from its last heartbeat (5 s by default), so a list fetched sooner
/// after the drain may still show the old count. Also the delay of the refresh such an answer
/// triggers (at most one per hold).
#[cfg(not(test))]
pub(crate) const DRAIN_HOLD: Duration = Duration::from_secs(10);
/// Shorter in the unit tests, which wait it out.
#[cfg(test)]
pub(crate) const DRAIN_HOLD: Duration = Duration::from_secs(2);

impl PeerCache {
    /// A list was just fetched (at `now`): its counts supersede what this client moved, and
    /// "no data" marks older than [`DRAIN_HOLD`] expire.
    fn fresh_list(&mut self, now: Instant) {
        self.fetched_at = Some(now);
        self.failed_at = None;
        self.refresh_at = None;
        self.moved.clear();
        self.drained.retain(|_, t| now < *t + DRAIN_HOLD);
    }

    /// The FlowFile count to weigh node `addr` by: the listed count less what this client
    /// received since, 0 while a "no data" answer from it is newer than the list can know.
    fn effective_count(&self, addr: &str, listed: u32) -> u32 {
        if self.drained.contains_key(addr) {
            return 0;
        }
        let moved = self.moved.get(addr).copied().unwrap_or(0);
        (i64::from(listed) + moved).clamp(0, i64::from(u32::MAX)) as u32
    }
}

/// Counts one open transaction on a node while alive (weights of parallel sends).
#[derive(Debug)]
pub(crate) struct InflightGuard {
    map: Arc<Mutex<HashMap<String, usize>>>,
    addr: String,
}

impl InflightGuard {
    fn new(map: &Arc<Mutex<HashMap<String, usize>>>, addr: &str) -> Self {
        *map.lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr.to_owned())
            .or_default() += 1;
        Self {
            map: map.clone(),
            addr: addr.to_owned(),
        }
    }

    /// The node (`host:port` after overrides).
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.addr);
            }
        }
    }
}

/// Where a connection goes: the reachable address plus what NiFi advertised.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host:port` to dial (after overrides).
    pub(crate) addr: String,
    /// Advertised host (for TLS server name and the transit URI).
    pub(crate) advertised_host: String,
    pub(crate) advertised_port: u16,
    pub(crate) secure: bool,
    pub(crate) weight: f64,
}

impl Client {
    /// The peer cache, locked (a panic elsewhere while it was held does not poison it: the
    /// cache is plain data, still consistent field by field).
    fn peer_cache(&self) -> std::sync::MutexGuard<'_, PeerCache> {
        self.inner
            .peer_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The penalty table, locked (poisoning ignored, as for [`Client::peer_cache`]).
    fn penalties(&self) -> std::sync::MutexGuard<'_, Penalties> {
        self.inner
            .penalties
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Shorthand for [`ClientBuilder::new`].
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    pub(crate) fn from_builder(cfg: ClientBuilder) -> Result<Self, Error> {
        if cfg.urls.is_empty() {
            return Err(Error::invalid_input("no NiFi URL given"));
        }
        for u in &cfg.urls {
            discovery::api_base(u)?;
        }
        for (k, v) in &cfg.peer_overrides {
            for a in [k, v] {
                if a.rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(Error::invalid_input(format!(
                        "peer override {a:?} is not host:port"
                    )));
                }
            }
        }
        let mut http = reqwest::Client::builder();
        if let Some(t) = cfg.connect_timeout {
            http = http.connect_timeout(t);
        }
        if let Some(tls) = &cfg.tls {
            http = http.use_preconfigured_tls((**tls).clone());
        }
        if let Some(p) = &cfg.proxy {
            let proxy = reqwest::Proxy::all(p.as_str()).map_err(|e| {
                Error::with_source(Kind::InvalidInput(format!("bad proxy URL {p:?}")), e)
            })?;
            http = http.proxy(proxy);
        }
        let http = http
            .build()
            .map_err(|e| Error::with_source(Kind::InvalidInput("HTTP client setup".into()), e))?;
        let auth = match &cfg.auth {
            Some(creds) => Some(Arc::new(crate::auth::TokenSource::new(
                creds.clone(),
                http.clone(),
                discovery::api_base(&cfg.urls[0])?.as_str(),
                cfg.io_timeout,
            ))),
            None => None,
        };
        let client = Self {
            inner: Arc::new(Inner {
                cfg,
                http,
                auth,
                site: tokio::sync::Mutex::new(None),
                site_refreshing: std::sync::atomic::AtomicBool::new(false),
                site_failed_at: Mutex::new(None),
                peer_cache: Mutex::new(PeerCache::default()),
                peer_fetches: tokio::sync::watch::Sender::new(0),
                inflight: Arc::new(Mutex::new(HashMap::new())),
                penalties: Mutex::new(Penalties::default()),
                pool: Mutex::new(HashMap::new()),
                transfer_connections: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        client.spawn_reaper();
        Ok(client)
    }

    /// Closes idle pooled connections (with `SHUTDOWN`) once they exceed the idle expiration,
    /// so NiFi never has to time them out. Runs only inside a tokio runtime and stops when the
    /// last clone of the client is dropped; without a runtime, expiry is checked on checkout.
    fn spawn_reaper(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let every = (self.cfg().idle_expiration / 6)
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let expired: Vec<Connection> = {
                    let idle = inner.cfg.idle_expiration;
                    let mut pool = inner.pool.lock().unwrap_or_else(|e| e.into_inner());
                    let mut out = Vec::new();
                    for list in pool.values_mut() {
                        let (old, keep): (Vec<_>, Vec<_>) =
                            list.drain(..).partition(|c| c.last_used.elapsed() >= idle);
                        *list = keep;
                        out.extend(old);
                    }
                    pool.retain(|_, v| !v.is_empty());
                    out
                };
                drop(inner);
                for c in expired {
                    debug!(peer = %c.peer, "closing idle pooled S2S connection");
                    c.shutdown().await;
                }
            }
        });
    }

    pub(crate) fn cfg(&self) -> &ClientBuilder {
        &self.inner.cfg
    }

    /// NiFi's site-to-site details, cached for [`ClientBuilder::site_info_ttl`].
    ///
    /// # Cancel safety
    /// Cancel-safe: an interrupted fetch leaves the cache as it was.
    pub async fn site_info(&self) -> Result<Arc<SiteInfo>, Error> {
        self.site_info_inner(false).await.map(|(s, _)| s)
    }

    pub(crate) async fn site_info_inner(
        &self,
        force: bool,
    ) -> Result<(Arc<SiteInfo>, String), Error> {
        let mut guard = self.inner.site.lock().await;
        if let Some((at, info, url)) = guard.as_ref()
            && !force
        {
            if at.elapsed() >= self.cfg().site_info_ttl {
                // Stale: serve what we have and refresh in the background, so a node that
                // hangs on REST (lost coordinator) never stalls a transaction.
                self.spawn_site_refresh();
            }
            return Ok((info.clone(), url.clone()));
        }
        match self.discover(self.cfg().io_timeout).await {
            Ok((info, url)) => {
                *guard = Some((Instant::now(), info.clone(), url.clone()));
                Ok((info, url))
            }
            Err(e) => {
                // No bootstrap URL answers: the persisted discovery answer, if any.
                if !force && let Some(info) = self.saved_site() {
                    warn!(error = %e, "no NiFi URL answers discovery; using the peer file");
                    let url = self.cfg().urls[0].clone();
                    // Counted as stale at once: refreshed in the background.
                    let at = Instant::now()
                        .checked_sub(self.cfg().site_info_ttl)
                        .unwrap_or_else(Instant::now);
                    *guard = Some((at, info.clone(), url.clone()));
                    return Ok((info, url));
                }
                Err(e)
            }
        }
    }

    /// One discovery round over the configured URLs, in order; each bounded by `timeout`.
    async fn discover(&self, timeout: Option<Duration>) -> Result<(Arc<SiteInfo>, String), Error> {
        let mut last = None;
        for url in &self.cfg().urls {
            match discovery::fetch_site_info(
                &self.inner.http,
                url,
                timeout,
                self.inner.auth.as_deref(),
            )
            .await
            {
                Ok(info) => return Ok((Arc::new(info), url.clone())),
                Err(e) => {
                    warn!(url, error = %e, "site-to-site discovery failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::new(Kind::NoPeerAvailable)))
    }

    /// Refreshes the discovery answer in the background (at most one at a time, and after a
    /// failure not before a backoff of [`ClientBuilder::peer_refresh_timeout`]).
    fn spawn_site_refresh(&self) {
        use std::sync::atomic::Ordering;
        let backoff = self.cfg().peer_refresh_timeout;
        {
            let failed = self
                .inner
                .site_failed_at
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if failed.is_some_and(|t| t.elapsed() < backoff) {
                return;
            }
        }
        if self.inner.site_refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let t = Some(me.cfg().peer_refresh_timeout);
            let res = me.discover(t).await;
            match res {
                Ok((info, url)) => {
                    *me.inner.site.lock().await = Some((Instant::now(), info, url));
                    *me.inner
                        .site_failed_at
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = None;
                }
                Err(e) => {
                    debug!(error = %e, "background discovery refresh failed; keeping the cached answer");
                    *me.inner
                        .site_failed_at
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                }
            }
            me.inner.site_refreshing.store(false, Ordering::Release);
        });
    }

    /// The discovery answer saved in the peer file, if one is configured and readable.
    fn saved_site(&self) -> Option<Arc<SiteInfo>> {
        let path = self.cfg().peer_file.as_ref()?;
        match peers::file::read(path) {
            Ok(saved) => saved.site.map(Arc::new),
            Err(e) => {
                warn!(error = %e, "peer file unusable");
                None
            }
        }
    }

    /// Resolves a port by name (or id) for `direction`, re-fetching discovery once on a miss.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn resolve_port(
        &self,
        direction: Direction,
        name_or_id: &str,
    ) -> Result<PortInfo, Error> {
        let (info, _) = self.site_info_inner(false).await?;
        if let Some(p) = info.find_port(direction, name_or_id) {
            return Ok(p.clone());
        }
        let (info, _) = self.site_info_inner(true).await?;
        info.find_port(direction, name_or_id)
            .cloned()
            .ok_or_else(|| {
                let kind = match direction {
                    Direction::Send => "input",
                    Direction::Receive => "output",
                };
                Error::new(Kind::UnknownPort(format!(
                    "no {kind} port named or with id {name_or_id:?}"
                )))
            })
    }

    /// The bootstrap peer: the configured URL's host on the advertised RAW port.
    pub(crate) async fn bootstrap(&self) -> Result<Target, Error> {
        let (info, url) = self.site_info_inner(false).await?;
        let port = info.raw_port.ok_or_else(|| {
            Error::new(Kind::Config(
                "NiFi does not advertise a RAW site-to-site port (nifi.remote.input.socket.port unset)"
                    .into(),
            ))
        })?;
        let host = discovery::url_host(&url)?;
        let advertised = peers::format_addr(&host, port);
        Ok(Target {
            addr: peers::resolve(&self.cfg().peer_overrides, &advertised),
            advertised_host: host,
            advertised_port: port,
            secure: info.secure,
            weight: 100.0,
        })
    }

    fn target_for(&self, p: &Peer, weight: f64) -> Target {
        Target {
            addr: self.map_peer(p),
            advertised_host: p.host.clone(),
            advertised_port: p.port,
            secure: p.secure,
            weight,
        }
    }

    /// Where the client would actually connect for an advertised peer (after overrides).
    pub fn map_peer(&self, p: &Peer) -> String {
        peers::resolve(&self.cfg().peer_overrides, &p.advertised())
    }

    /// Asks NiFi for its current RAW peer list (a dedicated connection: handshake without a
    /// port, `REQUEST_PEER_LIST`, `SHUTDOWN`). Not cached; see also [`ClientBuilder::single_node`].
    ///
    /// # Cancel safety
    /// Cancel-safe: the dedicated connection is simply dropped.
    pub async fn peers(&self) -> Result<Vec<Peer>, Error> {
        let boot = self.bootstrap().await?;
        self.peers_from(&boot).await
    }

    /// `REQUEST_PEER_LIST` on a dedicated connection to `boot`.
    async fn peers_from(&self, boot: &Target) -> Result<Vec<Peer>, Error> {
        let mut conn = self.open(boot, None).await?;
        conn.session
            .request_peer_list()
            .map_err(crate::connection::map_session_error)?;
        let ev = conn.next_event().await?;
        let Event::PeerList(list) = ev else {
            return Err(Error::protocol(format!("expected a peer list, got {ev:?}")));
        };
        conn.shutdown().await;
        Ok(list
            .into_iter()
            .map(|p| Peer {
                host: p.hostname,
                port: p.port,
                secure: p.secure,
                flowfile_count: p.flow_file_count,
            })
            .collect())
    }

    /// The candidate targets for a transfer, in no particular order, with their weights.
    async fn targets(&self, direction: Direction) -> Result<Vec<Target>, Error> {
        if self.cfg().single_node {
            return Ok(vec![self.bootstrap().await?]);
        }
        match self.known_peers().await {
            Some(list) if !list.is_empty() => {
                let list = self.adjusted(&list);
                let w = peers::weights(&list, direction);
                Ok(list
                    .iter()
                    .zip(w)
                    .map(|(p, w)| self.target_for(p, w))
                    .collect())
            }
            _ => Ok(vec![self.bootstrap().await?]),
        }
    }

    /// `list` with each node's count as this client last knew it (see
    /// [`PeerCache::effective_count`]): what it sent or received since the fetch, and nodes that
    /// answered a receive with "no data" at 0.
    fn adjusted(&self, list: &[Peer]) -> Vec<Peer> {
        let c = self.peer_cache();
        list.iter()
            .map(|p| Peer {
                flowfile_count: c.effective_count(&self.map_peer(p), p.flowfile_count),
                ..p.clone()
            })
            .collect()
    }

    /// A receive transaction on node `addr` took `n` FlowFiles (`n` < 0, received and
    /// confirmed): the node's count for the weights until the next fetch, so a node this client
    /// drained is not picked again for receiving, and is weighed as emptied for sending. Data from
    /// a node clears its "no data" mark. Sends are not added: send weights follow the counts NiFi
    /// reported until the next fetch, as NiFi's own client does.
    pub(crate) fn note_moved(&self, addr: &str, n: i64) {
        if self.cfg().single_node || n == 0 {
            return;
        }
        let mut c = self.peer_cache();
        *c.moved.entry(addr.to_owned()).or_default() += n;
        if n < 0 {
            c.drained.remove(addr);
        }
    }

    /// Node `addr` answered a RECEIVE with "no data": weigh it as empty until a list fetched
    /// [`DRAIN_HOLD`] later says otherwise, and have that list fetched then (one refresh per
    /// hold, not one per empty answer). Only with several peers (one node is picked anyway).
    fn note_drained(&self, addr: &str) {
        if !self.has_other_peers() {
            return;
        }
        let now = Instant::now();
        let mut c = self.peer_cache();
        c.drained.insert(addr.to_owned(), now);
        c.moved.remove(addr);
        if c.refresh_at.is_none() {
            c.refresh_at = Some(now + DRAIN_HOLD);
        }
        debug!(peer = %addr, "no data from this node: weighed as empty until a later peer list");
    }

    /// Whether a peer of the cached list other than those in `tried` is not penalized for
    /// `port_id`.
    fn untried_peer_left(&self, tried: &[String], port_id: &str) -> bool {
        let list = {
            let c = self.peer_cache();
            c.list.clone()
        };
        let Some(list) = list else {
            return false;
        };
        let mut pen = self.penalties();
        let now = Instant::now();
        list.iter()
            .map(|p| self.map_peer(p))
            .any(|a| !tried.contains(&a) && !pen.is_penalized(&a, port_id, now))
    }

    /// The cached peer list of the client's transport, never waiting on a refresh once a list
    /// is known. A stale list triggers one background refresh (not again within
    /// [`ClientBuilder::peer_refresh_timeout`] of a failed one). Without any list yet, waits
    /// for the first fetch at most that timeout, then falls back to the peer file.
    pub(crate) async fn known_peers(&self) -> Option<Arc<Vec<Peer>>> {
        let mut fetches = self.inner.peer_fetches.subscribe();
        let (list, wait) = {
            let mut c = self.peer_cache();
            let cfg = self.cfg();
            let stale = c.fetched_at.is_none_or(|t| t.elapsed() >= cfg.peer_refresh)
                || c.refresh_at.is_some_and(|t| Instant::now() >= t);
            let backoff_over = c
                .failed_at
                .is_none_or(|t| t.elapsed() >= cfg.peer_refresh_timeout);
            if stale && backoff_over && !c.refreshing {
                c.refreshing = true;
                self.spawn_peer_refresh();
            }
            (c.list.clone(), c.refreshing)
        };
        if list.is_some() {
            return list;
        }
        if wait {
            let _ = tokio::time::timeout(self.cfg().peer_refresh_timeout, fetches.changed()).await;
            let c = self.peer_cache();
            if c.list.is_some() {
                return c.list.clone();
            }
        }
        self.load_peer_file()
    }

    /// Reads the peer file once (when no peer list could be fetched yet) into the cache.
    fn load_peer_file(&self) -> Option<Arc<Vec<Peer>>> {
        let path = self.cfg().peer_file.as_ref()?;
        let mut c = self.peer_cache();
        if c.file_tried || c.list.is_some() {
            return c.list.clone();
        }
        c.file_tried = true;
        match peers::file::read(path) {
            Ok(saved) if saved.transport == self.transport_name() && !saved.peers.is_empty() => {
                warn!(
                    file = %path.display(),
                    peers = saved.peers.len(),
                    "peer list unavailable; using the persisted peers"
                );
                c.list = Some(Arc::new(saved.peers));
            }
            Ok(saved) => warn!(
                file = %path.display(),
                transport = saved.transport,
                "peer file holds no peers for this transport; ignored"
            ),
            Err(e) => warn!(error = %e, "peer file unusable"),
        }
        c.list.clone()
    }

    /// Fetches the peer list in a background task; the result lands in the cache (and the
    /// peer file).
    fn spawn_peer_refresh(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            let res = me.fetch_peer_list().await;
            let ok = res.is_ok();
            {
                let mut c = me
                    .inner
                    .peer_cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                c.refreshing = false;
                match res {
                    Ok(list) => {
                        let w = peers::weights(&list, Direction::Send);
                        for (p, w) in list.iter().zip(w) {
                            crate::metrics::peer_weight(&me.map_peer(p), w);
                        }
                        c.list = Some(Arc::new(list));
                        c.fresh_list(Instant::now());
                        crate::metrics::peer_list_refresh("ok");
                    }
                    Err(e) => {
                        c.failed_at = Some(Instant::now());
                        crate::metrics::peer_list_refresh(if e.is_timeout() {
                            "timeout"
                        } else {
                            "failed"
                        });
                        if c.list.is_some() {
                            warn!(error = %e, "peer list refresh failed; keeping the known peers");
                        } else {
                            warn!(error = %e, "peer list fetch failed; using the bootstrap peer");
                        }
                    }
                }
            }
            me.inner.peer_fetches.send_modify(|g| *g += 1);
            if ok {
                me.persist_peers().await;
            }
        });
    }

    /// Asks for the peer list: the bootstrap node first, then every known peer, each within
    /// [`ClientBuilder::peer_refresh_timeout`].
    async fn fetch_peer_list(&self) -> Result<Vec<Peer>, Error> {
        let limit = self.cfg().peer_refresh_timeout;
        let timed = async |f: std::pin::Pin<
            Box<dyn Future<Output = Result<Vec<Peer>, Error>> + Send + '_>,
        >| {
            tokio::time::timeout(limit, f)
                .await
                .unwrap_or_else(|_| Err(Error::timeout("fetching the peer list")))
        };
        let known: Vec<Peer> = {
            let c = self.peer_cache();
            c.list.as_deref().cloned().unwrap_or_default()
        };
        let mut last = None;
        match self.cfg().transport {
            Transport::Http => {
                let mut bases = Vec::new();
                match tokio::time::timeout(limit, self.site_info_inner(false)).await {
                    Ok(Ok((_, url))) => bases.push(discovery::api_base(&url)?.to_string()),
                    Ok(Err(e)) => last = Some(e),
                    Err(_) => last = Some(Error::timeout("fetching site-to-site details")),
                }
                for p in &known {
                    let scheme = if p.secure { "https" } else { "http" };
                    let b = format!("{scheme}://{}/nifi-api", self.map_peer(p));
                    if !bases.contains(&b) {
                        bases.push(b);
                    }
                }
                let ctx = self.http_ctx();
                for b in bases {
                    match timed(Box::pin(crate::http::fetch_peers(&ctx, &b))).await {
                        Ok(list) if !list.is_empty() => return Ok(list),
                        Ok(_) => {}
                        Err(e) => {
                            debug!(peer = %b, error = %e, "HTTP peer list failed");
                            last = Some(e);
                        }
                    }
                }
            }
            _ => {
                let mut cands = Vec::new();
                match tokio::time::timeout(limit, self.bootstrap()).await {
                    Ok(Ok(b)) => cands.push(b),
                    Ok(Err(e)) => last = Some(e),
                    Err(_) => last = Some(Error::timeout("fetching site-to-site details")),
                }
                for p in &known {
                    let t = self.target_for(p, 0.0);
                    if !cands.iter().any(|c: &Target| c.addr == t.addr) {
                        cands.push(t);
                    }
                }
                for t in cands {
                    match timed(Box::pin(self.peers_from(&t))).await {
                        Ok(list) if !list.is_empty() => return Ok(list),
                        Ok(_) => {}
                        Err(e) => {
                            debug!(peer = %t.addr, error = %e, "peer list failed");
                            last = Some(e);
                        }
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::new(Kind::NoPeerAvailable)))
    }

    /// Writes the cached peer list (and discovery answer) to the peer file, if configured.
    async fn persist_peers(&self) {
        let Some(path) = self.cfg().peer_file.clone() else {
            return;
        };
        let list = {
            let c = self.peer_cache();
            match &c.list {
                Some(l) => l.clone(),
                None => return,
            }
        };
        let site = self
            .inner
            .site
            .lock()
            .await
            .as_ref()
            .map(|(_, s, _)| s.clone());
        let body = peers::file::encode(self.transport_name(), &list, site.as_deref());
        let res = tokio::task::spawn_blocking(move || {
            peers::file::write_atomic(&path, &body).map_err(|e| (path, e))
        })
        .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err((path, e))) => {
                warn!(file = %path.display(), error = %e, "could not write the peer file")
            }
            Err(e) => warn!(error = %e, "peer file writer failed"),
        }
    }

    /// Fetches the peer list now (bounded by [`ClientBuilder::peer_refresh_timeout`] per node
    /// asked), stores it as the client's cached list (and in the peer file), and returns it.
    /// When the fetch fails, the list the client already knows (or the peer file's) is
    /// returned if there is one, else the error.
    ///
    /// # Cancel safety
    /// Cancel-safe: an interrupted fetch leaves the cache as it was.
    pub async fn refresh_peers(&self) -> Result<Vec<Peer>, Error> {
        if self.cfg().single_node {
            return Ok(Vec::new());
        }
        match self.fetch_peer_list().await {
            Ok(list) => {
                {
                    let mut c = self.peer_cache();
                    c.list = Some(Arc::new(list.clone()));
                    c.fresh_list(Instant::now());
                }
                self.persist_peers().await;
                Ok(list)
            }
            Err(e) => {
                warn!(error = %e, "peer list fetch failed");
                match self.load_peer_file() {
                    Some(l) => Ok(l.as_ref().clone()),
                    None => Err(e),
                }
            }
        }
    }

    /// What the client knows about every node of its cached peer list: the node, its weight
    /// for sending, its penalty and the last error seen with it. Empty before the first
    /// peer-list fetch (see [`refresh_peers`](Self::refresh_peers)) and with
    /// [`ClientBuilder::single_node`].
    ///
    /// ```no_run
    /// # async fn demo(client: s2s::Client) -> Result<(), s2s::Error> {
    /// client.refresh_peers().await?;
    /// for s in client.peer_status() {
    ///     println!("{} flowfiles={} weight={:.1}% penalized={:?} last_error={:?}",
    ///         s.peer, s.peer.flowfile_count, s.weight, s.penalized_for, s.last_error);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn peer_status(&self) -> Vec<PeerStatus> {
        let list = {
            let c = self.peer_cache();
            match &c.list {
                Some(l) => l.clone(),
                None => return Vec::new(),
            }
        };
        let w = peers::weights(&list, Direction::Send);
        let pen = self.penalties();
        let now = Instant::now();
        list.iter()
            .zip(w)
            .map(|(p, weight)| {
                let addr = self.map_peer(p);
                PeerStatus {
                    peer: p.clone(),
                    weight,
                    penalized_for: pen.remaining_any(&addr, now),
                    last_error: pen.last_error(&addr),
                }
            })
            .collect()
    }

    /// Whether the cached peer list names more than one node (penalizing one leaves others).
    fn has_other_peers(&self) -> bool {
        !self.cfg().single_node && self.peer_cache().list.as_ref().is_some_and(|l| l.len() > 1)
    }

    pub(crate) fn penalize(&self, addr: &str, port_id: Option<&str>) {
        let mut p = self.penalties();
        let now = Instant::now();
        p.penalize(addr, port_id, self.cfg().penalization, now);
        crate::metrics::penalized_peers(p.active(now));
        crate::metrics::peer_penalized(addr, true);
    }

    /// Penalizes `addr` after `e`, remembering the error for [`peer_status`](Self::peer_status).
    pub(crate) fn penalize_after(&self, addr: &str, port_id: Option<&str>, e: &Error) {
        self.penalties().note_error(addr, crate::error_chain(e));
        crate::metrics::peer_failure(addr, e);
        self.penalize(addr, port_id);
    }

    /// Opens and handshakes a new connection to `t` (with `port_id`, or for a peer list).
    pub(crate) async fn open(
        &self,
        t: &Target,
        port_id: Option<&str>,
    ) -> Result<Connection, Error> {
        let span = info_span!("s2s.connect", peer = %t.addr, port = port_id.unwrap_or("-"));
        async {
            let stream = self.dial(t).await?;
            let cfg = self.session_config(t, port_id);
            let hs_span = info_span!("s2s.handshake");
            Connection::establish(stream, cfg, self.cfg().io_timeout, t.addr.clone())
                .instrument(hs_span)
                .await
        }
        .instrument(span)
        .await
    }

    async fn dial(&self, t: &Target) -> Result<Box<dyn AsyncStream>, Error> {
        if let Some(c) = &self.cfg().connector {
            return with_timeout(
                self.cfg().connect_timeout,
                "connecting to NiFi",
                c.connect(&t.addr, t.secure),
            )
            .await;
        }
        let tcp = match self.cfg().connect_timeout {
            Some(d) => tokio::time::timeout(d, TcpStream::connect(&t.addr))
                .await
                .map_err(|_| Error::timeout("connecting to NiFi"))?,
            None => TcpStream::connect(&t.addr).await,
        }
        .map_err(Error::io)?;
        let _ = tcp.set_nodelay(true);
        if !t.secure {
            return Ok(Box::new(tcp));
        }
        let Some(tls) = self.cfg().tls.clone() else {
            return Err(Error::invalid_input(
                "NiFi requires TLS for site-to-site (siteToSiteSecure=true); configure ClientBuilder::tls",
            ));
        };
        let name = rustls_pki_types::ServerName::try_from(t.advertised_host.clone())
            .map_err(|e| Error::with_source(Kind::InvalidInput("bad TLS server name".into()), e))?;
        let connector = tokio_rustls::TlsConnector::from(tls);
        let s = with_timeout(
            self.cfg().connect_timeout,
            "TLS handshake",
            connector.connect(name, tcp),
        )
        .await?;
        Ok(Box::new(s))
    }

    pub(crate) fn session_config(&self, t: &Target, port_id: Option<&str>) -> SessionConfig {
        let c = self.cfg();
        let mut s = SessionConfig::new(
            uuid::Uuid::new_v4().to_string(),
            format!(
                "nifi://{}",
                peers::format_addr(&t.advertised_host, t.advertised_port)
            ),
        );
        s.port_id = port_id.map(str::to_owned);
        s.compression = c.compression;
        s.request_expiration_millis = c.request_expiration.as_millis() as u64;
        s.batch_count = c.receive_batch_count;
        s.batch_size = c.receive_batch_size;
        s.batch_duration_millis = c.receive_batch_duration.as_millis() as u64;
        s.limits = streaming_limits();
        s
    }

    /// A ready connection for `port` in `direction`: a pooled one if fresh, else a new one to a
    /// weighted, unpenalized peer. Errors that no other peer would fix (unknown port, port not
    /// running, unauthorized, bad input) abort at once; others penalize the peer and try the next.
    pub(crate) async fn acquire(
        &self,
        direction: Direction,
        port: &str,
        allow_pooled: bool,
    ) -> Result<(Connection, PortInfo, bool), Error> {
        self.acquire_tracked(direction, port, allow_pooled)
            .await
            .map(|(c, i, r, _)| (c, i, r))
    }

    /// The weight of `t` for a new transaction: divided by one plus the transactions this
    /// client has open on it, so parallel transactions spread over the nodes.
    fn effective_weight(&self, t: &Target) -> f64 {
        let open = self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&t.addr)
            .copied()
            .unwrap_or(0);
        t.weight / (1 + open) as f64
    }

    /// [`acquire`](Self::acquire), counting the transaction on its node until the guard drops.
    pub(crate) async fn acquire_tracked(
        &self,
        direction: Direction,
        port: &str,
        allow_pooled: bool,
    ) -> Result<(Connection, PortInfo, bool, InflightGuard), Error> {
        self.acquire_excluding(direction, port, allow_pooled, &[])
            .await
    }

    /// [`acquire_tracked`](Self::acquire_tracked) among the peers not in `exclude`.
    async fn acquire_excluding(
        &self,
        direction: Direction,
        port: &str,
        allow_pooled: bool,
        exclude: &[String],
    ) -> Result<(Connection, PortInfo, bool, InflightGuard), Error> {
        let info = self.resolve_port(direction, port).await?;
        let mut targets = self.targets(direction).await?;
        targets.retain(|t| !exclude.contains(&t.addr));
        self.wait_out_penalties(&targets, &info.id).await;
        let mut last = None;
        while !targets.is_empty() {
            let now = Instant::now();
            {
                let mut pen = self.penalties();
                targets.retain(|t| !pen.is_penalized(&t.addr, &info.id, now));
            }
            let w: Vec<f64> = targets.iter().map(|t| self.effective_weight(t)).collect();
            let Some(i) = peers::pick(&w, fastrand::f64()) else {
                break;
            };
            let t = targets.swap_remove(i);
            let guard = InflightGuard::new(&self.inner.inflight, &t.addr);
            if allow_pooled && let Some(c) = self.checkout(&t.addr, &info.id).await {
                return Ok((c, info, true, guard));
            }
            match self.open(&t, Some(&info.id)).await {
                Ok(c) => {
                    self.inner
                        .transfer_connections
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok((c, info, false, guard));
                }
                Err(e) => {
                    warn!(peer = %t.addr, error = %e, "S2S connection failed");
                    self.penalize_after(&t.addr, Some(&info.id), &e);
                    if e.is_unknown_port() {
                        // The name→id map may be stale: forget it so the next call re-fetches.
                        *self.inner.site.lock().await = None;
                        return Err(e);
                    }
                    if e.is_port_not_running()
                        || e.is_unauthorized()
                        || matches!(e.kind(), Kind::InvalidInput(_))
                    {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::new(Kind::NoPeerAvailable)))
    }

    /// When every candidate is penalized (e.g. right after NiFi asked to back off), waits until
    /// the first penalty expires instead of failing with "no peer available": the penalty is
    /// the backoff.
    async fn wait_out_penalties(&self, targets: &[Target], port_id: &str) {
        let wait = {
            let pen = self.penalties();
            let now = Instant::now();
            let rem: Option<Vec<Duration>> = targets
                .iter()
                .map(|t| pen.remaining(&t.addr, port_id, now))
                .collect();
            rem.and_then(|r| r.into_iter().min())
        };
        if let Some(w) = wait {
            debug!(?w, "all peers penalized; backing off");
            tokio::time::sleep(w.min(self.cfg().penalization)).await;
        }
    }

    async fn checkout(&self, addr: &str, port_id: &str) -> Option<Connection> {
        let idle = self.cfg().idle_expiration;
        loop {
            let mut c = {
                let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
                let c = pool
                    .get_mut(&(addr.to_owned(), port_id.to_owned()))?
                    .pop()?;
                crate::metrics::pooled_connections(pool.values().map(Vec::len).sum());
                c
            };
            if c.last_used.elapsed() >= idle {
                // Expired: close it politely in the background.
                tokio::spawn(c.shutdown());
                continue;
            }
            if c.is_alive().await {
                debug!(peer = addr, "reusing pooled S2S connection");
                return Some(c);
            }
            debug!(
                peer = addr,
                "pooled S2S connection was closed by NiFi; discarding it"
            );
        }
    }

    pub(crate) fn checkin(&self, port_id: &str, conn: Connection) {
        if !conn.session.is_idle() {
            return;
        }
        let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.entry((conn.peer.clone(), port_id.to_owned()))
            .or_default()
            .push(conn);
        crate::metrics::pooled_connections(pool.values().map(Vec::len).sum());
    }

    fn transport_name(&self) -> &'static str {
        match self.cfg().transport {
            Transport::Http => "http",
            _ => "raw",
        }
    }

    #[cfg(test)]
    pub(crate) async fn checkout_for_test(&self, addr: &str, port_id: &str) -> Option<Connection> {
        self.checkout(addr, port_id).await
    }

    #[cfg(test)]
    pub(crate) async fn receive_pooled_for_test(
        &self,
        port_id: &str,
    ) -> Result<ReceiveTransaction, Error> {
        let conn = self
            .checkout("fake:1", port_id)
            .await
            .ok_or_else(|| Error::new(Kind::NoPeerAvailable))?;
        ReceiveTransaction::begin_for_test(self.clone(), conn, port_id).await
    }

    /// Number of connections opened for transfers so far (peer-list connections excluded):
    /// with pooling, many transactions share few connections.
    pub fn transfer_connections_opened(&self) -> u64 {
        self.inner
            .transfer_connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many times the client logged in to NiFi for a bearer token (see
    /// [`ClientBuilder::login`]): once, plus once per renewal.
    pub fn logins(&self) -> u64 {
        self.inner.auth.as_ref().map_or(0, |a| a.logins())
    }

    /// Number of idle pooled connections (for tests and metrics).
    pub fn pooled_connections(&self) -> usize {
        let pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.values().map(Vec::len).sum()
    }

    /// Closes every pooled connection with `SHUTDOWN`.
    ///
    /// # Cancel safety
    /// Cancel-safe: connections not yet shut down are dropped (closed without `SHUTDOWN`).
    pub async fn close(&self) {
        let conns: Vec<Connection> = {
            let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.drain().flat_map(|(_, v)| v).collect()
        };
        for c in conns {
            c.shutdown().await;
        }
    }

    /// The largest content [`ReceiveTransaction::next`] collects in memory
    /// ([`ClientBuilder::max_content_length`]).
    pub fn max_content_length(&self) -> u64 {
        self.cfg().max_content_length
    }

    /// Starts a SEND transaction to the input port `port` (name or id).
    ///
    /// Nothing goes on the wire before the first [`SendTransaction::send`].
    ///
    /// # Cancel safety
    /// Cancel-safe: an interrupted connect leaves nothing behind.
    pub async fn send_transaction(&self, port: &str) -> Result<SendTransaction, Error> {
        self.send_transaction_inner(port).await.map_err(|e| {
            crate::metrics::error(Dir::Send, port, self.transport_name(), &e);
            e.with_identity(self.cfg().client_dn.as_deref())
        })
    }

    async fn send_transaction_inner(&self, port: &str) -> Result<SendTransaction, Error> {
        self.send_transaction_tracked(port).await.map(|(tx, _)| tx)
    }

    /// A SEND transaction plus the guard counting it on its node.
    async fn send_transaction_tracked(
        &self,
        port: &str,
    ) -> Result<(SendTransaction, InflightGuard), Error> {
        let span = info_span!("s2s.transaction", direction = "send", port = %port);
        if self.cfg().transport == Transport::Http {
            let (tx, info, guard) = self
                .http_open_tracked(Direction::Send, port)
                .instrument(span.clone())
                .await?;
            let http = HttpSend::new(tx, self.cfg().compression);
            return Ok((
                SendTransaction::new(
                    self.clone(),
                    SendTransport::Http(Box::new(http)),
                    port,
                    info.id,
                    span,
                ),
                guard,
            ));
        }
        let (conn, info, _, guard) = self.acquire_tracked(Direction::Send, port, true).await?;
        Ok((
            SendTransaction::new(
                self.clone(),
                SendTransport::Raw(Box::new(conn)),
                port,
                info.id,
                span,
            ),
            guard,
        ))
    }

    pub(crate) fn http_ctx(&self) -> HttpCtx {
        let c = self.cfg();
        let hs = s2s_proto::http::HandshakeHeaders {
            compression: c.compression,
            request_expiration_millis: c.request_expiration.as_millis() as u64,
            batch_count: c.receive_batch_count,
            batch_size: c.receive_batch_size,
            batch_duration_millis: c.receive_batch_duration.as_millis() as u64,
        };
        HttpCtx {
            http: self.inner.http.clone(),
            headers: crate::http::handshake_header_map(&hs),
            io_timeout: c.io_timeout,
            keep_alive: c.http_keep_alive,
            auth: self.inner.auth.clone(),
        }
    }

    /// The HTTP peers NiFi advertises (`GET /nifi-api/site-to-site/peers`: web ports).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn http_peers(&self) -> Result<Vec<Peer>, Error> {
        let (_, url) = self.site_info_inner(false).await?;
        crate::http::fetch_peers(&self.http_ctx(), discovery::api_base(&url)?.as_str()).await
    }

    /// Candidate API bases for an HTTP transaction: weighted advertised peers (after
    /// overrides, unpenalized) first, the configured URL last.
    async fn http_bases(&self, direction: Direction, port_id: &str) -> Result<Vec<String>, Error> {
        let (_, url) = self.site_info_inner(false).await?;
        let boot = discovery::api_base(&url)?.to_string();
        let mut out = Vec::new();
        if !self.cfg().single_node
            && let Some(list) = self.known_peers().await
        {
            // Weights over the whole list (as NiFi computes them), then the penalized left out.
            let list = self.adjusted(&list);
            let w = peers::weights(&list, direction);
            let now = Instant::now();
            let mut cands: Vec<Target> = {
                let mut pen = self.penalties();
                list.iter()
                    .zip(w)
                    .map(|(p, w)| self.target_for(p, w))
                    .filter(|t| !pen.is_penalized(&t.addr, port_id, now))
                    .collect()
            };
            while !cands.is_empty() {
                let w: Vec<f64> = cands.iter().map(|t| self.effective_weight(t)).collect();
                let Some(i) = peers::pick(&w, fastrand::f64()) else {
                    break;
                };
                let t = cands.swap_remove(i);
                let scheme = if t.secure { "https" } else { "http" };
                out.push(format!("{scheme}://{}/nifi-api", t.addr));
            }
        }
        if !out.contains(&boot) {
            out.push(boot);
        }
        Ok(out)
    }

    /// Creates an HTTP transaction on the first peer that answers.
    pub(crate) async fn http_open(
        &self,
        direction: Direction,
        port: &str,
    ) -> Result<(OpenTx, PortInfo), Error> {
        self.http_open_tracked(direction, port)
            .await
            .map(|(tx, info, _)| (tx, info))
    }

    /// [`http_open`](Self::http_open), counting the transaction on its node until the guard
    /// drops.
    pub(crate) async fn http_open_tracked(
        &self,
        direction: Direction,
        port: &str,
    ) -> Result<(OpenTx, PortInfo, InflightGuard), Error> {
        let info = self.resolve_port(direction, port).await?;
        let dir = match direction {
            Direction::Send => s2s_proto::http::Direction::Send,
            Direction::Receive => s2s_proto::http::Direction::Receive,
        };
        let mut last = None;
        for base in self.http_bases(direction, &info.id).await? {
            let node = reqwest::Url::parse(&base)
                .ok()
                .and_then(|u| {
                    Some(peers::format_addr(
                        u.host_str()?,
                        u.port_or_known_default()?,
                    ))
                })
                .unwrap_or_else(|| base.clone());
            let guard = InflightGuard::new(&self.inner.inflight, &node);
            match OpenTx::create(self.http_ctx(), &base, dir, &info.id).await {
                Ok(tx) => return Ok((tx, info, guard)),
                Err(e) if matches!(e.kind(), Kind::Io | Kind::Timeout(_) | Kind::Closed) => {
                    warn!(peer = %base, error = %e, "HTTP S2S peer failed");
                    self.penalize_after(&node, Some(&info.id), &e);
                    last = Some(e);
                }
                Err(e) => {
                    if e.is_unknown_port() {
                        *self.inner.site.lock().await = None;
                    }
                    return Err(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::new(Kind::NoPeerAvailable)))
    }

    /// Sends `flowfiles` to the input port `port`, split into transactions by
    /// [`ClientBuilder::send_batch_count`]/[`send_batch_bytes`](ClientBuilder::send_batch_bytes),
    /// up to [`ClientBuilder::send_parallelism`] of them at once on different nodes.
    /// A transaction that fails with a retryable transport error (I/O, timeout, closed, bad
    /// checksum) is retried whole, possibly to another peer, up to three more times with
    /// jittered exponential backoff; data is released only after NiFi confirmed it, so a retry
    /// may duplicate but never lose. Port-state errors (not running, destination full) are
    /// retryable later and returned at once.
    ///
    /// Each transaction is all-or-nothing, but a batch of several is not: when one fails, no
    /// new one starts, and the error is returned although other transactions of the batch
    /// (before it, or running beside it) may have committed. To know exactly which FlowFiles
    /// NiFi confirmed, use [`send_batch_report`](Self::send_batch_report).
    ///
    /// # Cancel safety
    /// Not cancel-safe: transactions committed before cancellation stay committed; the summary
    /// of what was committed is lost.
    pub async fn send_batch(
        &self,
        port: &str,
        flowfiles: Vec<FlowFile>,
    ) -> Result<SendSummary, Error> {
        self.send_sources(port, flowfiles.into_iter().map(Source::from), None)
            .await
    }

    /// [`send_batch`](Self::send_batch) for [`Source`]s: FlowFiles from memory or streamed
    /// from files, split into transactions by the builder's batch count and size, each retried
    /// whole as `send_batch` does (a file is read again). `progress`, if given, is called with
    /// the content bytes committed before the current transaction plus those written in it.
    ///
    /// # Cancel safety
    /// Not cancel-safe (as [`send_batch`](Self::send_batch)).
    pub async fn send_sources(
        &self,
        port: &str,
        sources: impl IntoIterator<Item = Source>,
        progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    ) -> Result<SendSummary, Error> {
        self.send_sources_report(port, sources, progress)
            .await
            .into_result()
    }

    /// [`send_batch`](Self::send_batch), reporting which FlowFiles (by position in
    /// `flowfiles`) NiFi confirmed and which transactions failed, instead of stopping at the
    /// first error.
    ///
    /// ```no_run
    /// # async fn demo(client: s2s::Client) {
    /// let ffs: Vec<s2s::FlowFile> = (0..5000).map(|i| s2s::FlowFile::new(format!("{i}"))).collect();
    /// let report = client.send_batch_report("in", ffs).await;
    /// if !report.is_complete() {
    ///     eprintln!("{} of 5000 confirmed: {:?}", report.committed_items(), report.committed);
    /// }
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Not cancel-safe (as [`send_batch`](Self::send_batch)).
    pub async fn send_batch_report(&self, port: &str, flowfiles: Vec<FlowFile>) -> BatchReport {
        self.send_sources_report(port, flowfiles.into_iter().map(Source::from), None)
            .await
    }

    /// How many transactions a batch runs at once: [`ClientBuilder::send_parallelism`], or
    /// when 0 the number of listed peers not penalized (1 with `single_node`).
    async fn send_parallelism(&self) -> usize {
        let n = self.cfg().send_parallelism;
        if n > 0 {
            return n;
        }
        if self.cfg().single_node {
            return 1;
        }
        let Some(list) = self.known_peers().await else {
            return 1;
        };
        let pen = self.penalties();
        let now = Instant::now();
        list.iter()
            .filter(|p| pen.remaining_any(&self.map_peer(p), now).is_none())
            .count()
            .max(1)
    }

    /// [`send_sources`](Self::send_sources), reporting per transaction as
    /// [`send_batch_report`](Self::send_batch_report) does. `progress` is called with the
    /// content bytes of the committed transactions plus those written so far in the running
    /// ones.
    ///
    /// # Cancel safety
    /// Not cancel-safe (as [`send_batch`](Self::send_batch)).
    pub async fn send_sources_report(
        &self,
        port: &str,
        sources: impl IntoIterator<Item = Source>,
        progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    ) -> BatchReport {
        use futures_util::StreamExt as _;
        let mut report = BatchReport::default();
        let mut iter = sources.into_iter().peekable();
        // Committed bytes, and bytes written per running transaction (by first item index).
        let written: Arc<Mutex<(u64, HashMap<usize, u64>)>> = Arc::default();
        let mut running = futures_util::stream::FuturesUnordered::new();
        let mut parallelism: Option<usize> = None;
        let mut next = 0usize;
        let mut stopped = false;
        loop {
            while !stopped && iter.peek().is_some() {
                let limit = match parallelism {
                    Some(n) => n,
                    // Decided when a second transaction would start: a batch of one
                    // transaction needs no peer list for it.
                    None if running.is_empty() => 1,
                    None => *parallelism.insert(self.send_parallelism().await),
                };
                if running.len() >= limit {
                    break;
                }
                let mut chunk: Vec<Source> = Vec::new();
                let mut chunk_bytes = 0u64;
                while let Some(source) = iter.next_if(|_| {
                    chunk.len() < self.cfg().send_batch_count
                        && chunk_bytes < self.cfg().send_batch_bytes
                }) {
                    chunk_bytes += source.content_len();
                    chunk.push(source);
                }
                let start = next;
                next += chunk.len();
                let p = progress.clone().map(|p| {
                    let written = written.clone();
                    Arc::new(move |n: u64| {
                        let total = {
                            let mut w = written.lock().unwrap_or_else(|e| e.into_inner());
                            w.1.insert(start, n);
                            w.0 + w.1.values().sum::<u64>()
                        };
                        p(total)
                    }) as crate::transaction::Progress
                });
                running.push(async move {
                    let r = self.send_with_retry(port, &chunk, p).await;
                    (start..start + chunk.len(), r)
                });
            }
            let Some((items, res)) = running.next().await else {
                break;
            };
            {
                let mut w = written.lock().unwrap_or_else(|e| e.into_inner());
                w.1.remove(&items.start);
                if let Ok(s) = &res {
                    w.0 += s.bytes;
                }
            }
            match res {
                Ok(s) => {
                    report.summary.flowfiles += s.flowfiles;
                    report.summary.bytes += s.bytes;
                    report.summary.transactions += s.transactions;
                    report.summary.destination_full |= s.destination_full;
                    report.add_committed(items);
                }
                Err(error) => {
                    stopped = true;
                    report.failed.push(BatchFailure { items, error });
                }
            }
        }
        if iter.peek().is_some() {
            report.not_attempted_from = Some(next);
        }
        report
    }

    async fn send_with_retry(
        &self,
        port: &str,
        chunk: &[Source],
        progress: Option<crate::transaction::Progress>,
    ) -> Result<SendSummary, Error> {
        let mut attempt = 0u32;
        let mut first: Option<Error> = None;
        loop {
            let (res, node) = match self.send_transaction_tracked(port).await {
                Err(e) => {
                    // As the public send_transaction: a failed open is counted, and names the
                    // client certificate's DN when NiFi refused it.
                    crate::metrics::error(Dir::Send, port, self.transport_name(), &e);
                    (Err(e.with_identity(self.cfg().client_dn.as_deref())), None)
                }
                Ok((mut tx, guard)) => {
                    let node = guard.addr().to_owned();
                    let res = async {
                        tx.set_progress(progress.clone());
                        for source in chunk {
                            tx.send_source(source).await?;
                        }
                        tx.commit().await
                    }
                    .await;
                    drop(guard);
                    (res, Some(node))
                }
            };
            if let (Err(e), Some(node)) = (&res, &node)
                && matches!(e.kind(), Kind::Io | Kind::Closed | Kind::Timeout(_))
                && self.has_other_peers()
            {
                // The node failed mid-transaction: skip it for the retry.
                self.penalize_after(node, None, e);
            }
            match res {
                Ok(s) => return Ok(s),
                // Port state (stopped, queues full) will not change within a short backoff:
                // hand it to the caller, who decides how long to wait.
                Err(e) if e.is_retryable() && !e.is_port_state() && attempt < 3 => {
                    first.get_or_insert_with(|| e.clone_shallow());
                    attempt += 1;
                    let cap = Duration::from_millis(100 << attempt.min(6));
                    let wait = cap.mul_f64(fastrand::f64());
                    warn!(error = %e, attempt, ?wait, "send failed; retrying the whole transaction");
                    tokio::time::sleep(wait).await;
                }
                // "No peer" after a real failure hides the cause: report the cause.
                Err(e) if matches!(e.kind(), Kind::NoPeerAvailable) => {
                    return Err(first.unwrap_or(e));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts a RECEIVE transaction from the output port `port` (name or id).
    ///
    /// # Cancel safety
    /// Cancel-safe: nothing is received before [`ReceiveTransaction::next`].
    pub async fn receive(&self, port: &str) -> Result<ReceiveTransaction, Error> {
        self.receive_inner(port).await.map_err(|e| {
            crate::metrics::error(Dir::Receive, port, self.transport_name(), &e);
            e.with_identity(self.cfg().client_dn.as_deref())
        })
    }

    async fn receive_inner(&self, port: &str) -> Result<ReceiveTransaction, Error> {
        let span = info_span!("s2s.transaction", direction = "receive", port = %port);
        if self.cfg().transport == Transport::Http {
            let limits = streaming_limits();
            let (tx, info) = self
                .http_open(Direction::Receive, port)
                .instrument(span.clone())
                .await?;
            let h = HttpReceive::begin(tx, self.cfg().compression, limits)
                .instrument(span.clone())
                .await?;
            let finished = h.no_data;
            if finished {
                self.note_drained(&h.node());
            }
            return Ok(ReceiveTransaction::new(
                self.clone(),
                ReceiveTransport::Http(Box::new(h)),
                port,
                info.id,
                finished,
                span,
            ));
        }
        let mut allow_pooled = true;
        // Nodes that answered "no data" in this call, and the last such answer (returned when
        // no other node is left to ask).
        let mut tried: Vec<String> = Vec::new();
        let mut empty: Option<(Connection, PortInfo)> = None;
        let (conn, info, finished) = loop {
            let acquired = self
                .acquire_excluding(Direction::Receive, port, allow_pooled, &tried)
                .await
                .map(|(c, i, r, _)| (c, i, r));
            let (mut conn, info, reused) = match (acquired, empty.take()) {
                (Ok(a), held) => {
                    if let Some((c, i)) = held {
                        self.checkin(&i.id, c);
                    }
                    a
                }
                // Another node was tried after an empty answer and failed: the empty answer
                // stands (the failure penalized that node).
                (Err(e), Some((c, i))) => {
                    debug!(error = %e, "no other node to receive from");
                    break (c, i, true);
                }
                (Err(e), None) => return Err(e),
            };
            // Read NiFi's first answer now: a pooled connection NiFi closed meanwhile fails
            // here, before anything was exchanged, and is replaced transparently.
            match ReceiveTransaction::begin(&mut conn)
                .instrument(span.clone())
                .await
            {
                Ok(true) => {
                    // No data on this node: it counts as empty for the weights, and another
                    // node not asked yet in this call is asked before the caller backs off.
                    let node = conn.peer.clone();
                    self.note_drained(&node);
                    tried.push(node);
                    if self.untried_peer_left(&tried, &info.id) {
                        allow_pooled = true;
                        empty = Some((conn, info));
                        continue;
                    }
                    break (conn, info, true);
                }
                Ok(false) => break (conn, info, false),
                Err(e) if reused && (e.is_closed() || matches!(e.kind(), Kind::Io)) => {
                    debug!(error = %e, "pooled connection failed on first read; reconnecting");
                    allow_pooled = false;
                }
                Err(e) => return Err(e),
            }
        };
        Ok(ReceiveTransaction::new(
            self.clone(),
            ReceiveTransport::Raw(Box::new(conn)),
            port,
            info.id,
            finished,
            span,
        ))
    }
}

/// Decoder limits of a RECEIVE: content streams, so its length is not bounded here (any size
/// a Java `long` can announce); [`ReceiveTransaction::next`] applies `max_content_length`
/// before it collects content in memory. Attribute bounds stay.
fn streaming_limits() -> s2s_proto::codec::flowfile::Limits {
    s2s_proto::codec::flowfile::Limits {
        max_content_len: i64::MAX as u64,
        ..Default::default()
    }
}
