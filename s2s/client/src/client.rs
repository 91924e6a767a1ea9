//! [`Client`]: discovery cache, peer selection, connection pool and the transaction API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s2s_proto::FlowFile;
use s2s_proto::raw::{Event, SessionConfig};
use tokio::net::TcpStream;
use tracing::{Instrument, debug, info_span, warn};

use crate::builder::{ClientBuilder, Transport};
use crate::connection::{AsyncStream, Connection, with_timeout};
use crate::discovery::{self, Direction, PortInfo, SiteInfo};
use crate::error::{Error, Kind};
use crate::http::{HttpCtx, HttpReceive, HttpSend, OpenTx};
use crate::metrics::Dir;
use crate::peers::{self, Peer, Penalties};
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
    peer_cache: tokio::sync::Mutex<Option<(Instant, Vec<Peer>)>>,
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
                peer_cache: tokio::sync::Mutex::new(None),
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
            && at.elapsed() < self.cfg().site_info_ttl
        {
            return Ok((info.clone(), url.clone()));
        }
        let mut last = None;
        for url in &self.cfg().urls {
            match discovery::fetch_site_info(
                &self.inner.http,
                url,
                self.cfg().io_timeout,
                self.inner.auth.as_deref(),
            )
            .await
            {
                Ok(info) => {
                    let info = Arc::new(info);
                    *guard = Some((Instant::now(), info.clone(), url.clone()));
                    return Ok((info, url.clone()));
                }
                Err(e) => {
                    warn!(url, error = %e, "site-to-site discovery failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::new(Kind::NoPeerAvailable)))
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
        let mut conn = self.open(&boot, None).await?;
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
        let mut cache = self.inner.peer_cache.lock().await;
        let fresh = cache
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < self.cfg().peer_refresh);
        if !fresh {
            match self.peers().await {
                Ok(list) if !list.is_empty() => *cache = Some((Instant::now(), list)),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "peer list refresh failed; using the bootstrap peer"),
            }
        }
        match cache.as_ref() {
            Some((_, list)) if !list.is_empty() => {
                let w = peers::weights(list, direction);
                Ok(list
                    .iter()
                    .zip(w)
                    .map(|(p, w)| self.target_for(p, w))
                    .collect())
            }
            _ => Ok(vec![self.bootstrap().await?]),
        }
    }

    pub(crate) fn penalize(&self, addr: &str, port_id: Option<&str>) {
        let mut p = self
            .inner
            .penalties
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        p.penalize(addr, port_id, self.cfg().penalization, now);
        crate::metrics::penalized_peers(p.active(now));
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
        let info = self.resolve_port(direction, port).await?;
        let mut targets = self.targets(direction).await?;
        self.wait_out_penalties(&targets, &info.id).await;
        let mut last = None;
        while !targets.is_empty() {
            let now = Instant::now();
            {
                let mut pen = self
                    .inner
                    .penalties
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                targets.retain(|t| !pen.is_penalized(&t.addr, &info.id, now));
            }
            let w: Vec<f64> = targets.iter().map(|t| t.weight).collect();
            let Some(i) = peers::pick(&w, fastrand::f64()) else {
                break;
            };
            let t = targets.swap_remove(i);
            if allow_pooled && let Some(c) = self.checkout(&t.addr, &info.id).await {
                return Ok((c, info, true));
            }
            match self.open(&t, Some(&info.id)).await {
                Ok(c) => {
                    self.inner
                        .transfer_connections
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok((c, info, false));
                }
                Err(e) => {
                    warn!(peer = %t.addr, error = %e, "S2S connection failed");
                    self.penalize(&t.addr, Some(&info.id));
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
            let pen = self
                .inner
                .penalties
                .lock()
                .unwrap_or_else(|e| e.into_inner());
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
        let span = info_span!("s2s.transaction", direction = "send", port = %port);
        if self.cfg().transport == Transport::Http {
            let (tx, info) = self
                .http_open(Direction::Send, port)
                .instrument(span.clone())
                .await?;
            let http = HttpSend::new(tx, self.cfg().compression);
            return Ok(SendTransaction::new(
                self.clone(),
                SendTransport::Http(Box::new(http)),
                port,
                info.id,
                span,
            ));
        }
        let (conn, info, _) = self.acquire(Direction::Send, port, true).await?;
        Ok(SendTransaction::new(
            self.clone(),
            SendTransport::Raw(Box::new(conn)),
            port,
            info.id,
            span,
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
        if !self.cfg().single_node {
            match self.http_peers().await {
                Ok(mut list) => {
                    let now = Instant::now();
                    {
                        let mut pen = self
                            .inner
                            .penalties
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        list.retain(|p| !pen.is_penalized(&self.map_peer(p), port_id, now));
                    }
                    while !list.is_empty() {
                        let w = peers::weights(&list, direction);
                        let Some(i) = peers::pick(&w, fastrand::f64()) else {
                            break;
                        };
                        let p = list.swap_remove(i);
                        let scheme = if p.secure { "https" } else { "http" };
                        out.push(format!("{scheme}://{}/nifi-api", self.map_peer(&p)));
                    }
                }
                Err(e) => warn!(error = %e, "HTTP peer list failed; using the configured URL"),
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
        let info = self.resolve_port(direction, port).await?;
        let dir = match direction {
            Direction::Send => s2s_proto::http::Direction::Send,
            Direction::Receive => s2s_proto::http::Direction::Receive,
        };
        let mut last = None;
        for base in self.http_bases(direction, &info.id).await? {
            match OpenTx::create(self.http_ctx(), &base, dir, &info.id).await {
                Ok(tx) => return Ok((tx, info)),
                Err(e) if matches!(e.kind(), Kind::Io | Kind::Timeout(_) | Kind::Closed) => {
                    warn!(peer = %base, error = %e, "HTTP S2S peer failed");
                    if let Ok(u) = reqwest::Url::parse(&base)
                        && let (Some(h), Some(p)) = (u.host_str(), u.port_or_known_default())
                    {
                        self.penalize(&peers::format_addr(h, p), Some(&info.id));
                    }
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
    /// [`ClientBuilder::send_batch_count`]/[`send_batch_bytes`](ClientBuilder::send_batch_bytes).
    /// A transaction that fails with a retryable transport error (I/O, timeout, closed, bad
    /// checksum) is retried whole, possibly to another peer, up to three more times with
    /// jittered exponential backoff; data is released only after NiFi confirmed it, so a retry
    /// may duplicate but never lose. Port-state errors (not running, destination full) are
    /// retryable later and returned at once.
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
        let mut total = SendSummary::default();
        let mut chunk: Vec<Source> = Vec::new();
        let mut chunk_bytes = 0u64;
        let mut iter = sources.into_iter().peekable();
        while let Some(source) = iter.next() {
            chunk_bytes += source.content_len();
            chunk.push(source);
            let full = chunk.len() >= self.cfg().send_batch_count
                || chunk_bytes >= self.cfg().send_batch_bytes;
            if full || iter.peek().is_none() {
                let done = total.bytes;
                let p = progress
                    .clone()
                    .map(|p| Arc::new(move |n: u64| p(done + n)) as crate::transaction::Progress);
                let s = self.send_with_retry(port, &chunk, p).await?;
                total.flowfiles += s.flowfiles;
                total.bytes += s.bytes;
                total.transactions += s.transactions;
                total.destination_full |= s.destination_full;
                chunk.clear();
                chunk_bytes = 0;
            }
        }
        Ok(total)
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
            let res = async {
                let mut tx = self.send_transaction(port).await?;
                tx.set_progress(progress.clone());
                for source in chunk {
                    tx.send_source(source).await?;
                }
                tx.commit().await
            }
            .await;
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
        let (conn, info, finished) = loop {
            let (mut conn, info, reused) =
                self.acquire(Direction::Receive, port, allow_pooled).await?;
            // Read NiFi's first answer now: a pooled connection NiFi closed meanwhile fails
            // here, before anything was exchanged, and is replaced transparently.
            match ReceiveTransaction::begin(&mut conn)
                .instrument(span.clone())
                .await
            {
                Ok(finished) => break (conn, info, finished),
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
