//! [`ClientBuilder`]: every knob of the client, with documented defaults.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Client, Error};

/// Builds a [`Client`]. All setters take and return the builder by value.
///
/// ```no_run
/// # async fn demo() -> Result<(), s2s::Error> {
/// use std::time::Duration;
/// let client = s2s::ClientBuilder::new("http://localhost:8080/nifi")
///     .compression(true)
///     .io_timeout(Some(Duration::from_secs(10)))
///     .peer_override("nifi-container:10000", "127.0.0.1:10000")
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    pub(crate) urls: Vec<String>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) io_timeout: Option<Duration>,
    pub(crate) request_expiration: Duration,
    pub(crate) compression: bool,
    pub(crate) receive_batch_count: u32,
    pub(crate) receive_batch_size: u64,
    pub(crate) receive_batch_duration: Duration,
    pub(crate) send_batch_count: usize,
    pub(crate) send_batch_bytes: u64,
    pub(crate) peer_overrides: HashMap<String, String>,
    pub(crate) single_node: bool,
    pub(crate) idle_expiration: Duration,
    pub(crate) penalization: Duration,
    pub(crate) site_info_ttl: Duration,
    pub(crate) peer_refresh: Duration,
    pub(crate) peer_refresh_timeout: Duration,
    pub(crate) peer_file: Option<std::path::PathBuf>,
    pub(crate) send_parallelism: usize,
    pub(crate) max_content_length: u64,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) connector: Option<Arc<dyn crate::Connector>>,
    pub(crate) transport: Transport,
    pub(crate) http_keep_alive: bool,
    pub(crate) proxy: Option<String>,
    pub(crate) client_dn: Option<String>,
    /// Trust anchors given explicitly (PEM CA file or PKCS#12 truststore).
    pub(crate) tls_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// CA certificates bundled in a PKCS#12 keystore: trusted only when no CA was given.
    pub(crate) tls_bundled_cas: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub(crate) tls_identity: Option<crate::tls::Identity>,
    pub(crate) auth: Option<crate::auth::Credentials>,
}

/// How FlowFiles travel to and from NiFi.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// The RAW socket protocol on `nifi.remote.input.socket.port` (default).
    #[default]
    Raw,
    /// HTTP(S) on NiFi's web port (`/nifi-api/data-transfer`): works through load balancers,
    /// reverse proxies and HTTP proxies.
    Http,
}

impl ClientBuilder {
    /// Starts a builder for the NiFi at `url`, NiFi's web URL as a user pastes it
    /// (`http://host:8080/nifi`; `…/nifi-api` and a bare `http://host:8080` work too).
    /// Several URLs may be given comma-separated; they are tried in order for discovery.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        Self {
            urls: url
                .split(',')
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty())
                .collect(),
            connect_timeout: Some(Duration::from_secs(30)),
            io_timeout: Some(Duration::from_secs(30)),
            request_expiration: Duration::from_secs(30),
            compression: false,
            receive_batch_count: 0,
            receive_batch_size: 0,
            receive_batch_duration: Duration::ZERO,
            send_batch_count: 1_000,
            send_batch_bytes: 256 * 1024 * 1024,
            peer_overrides: HashMap::new(),
            single_node: false,
            idle_expiration: Duration::from_secs(30),
            penalization: Duration::from_secs(3),
            site_info_ttl: Duration::from_secs(30),
            peer_refresh: Duration::from_secs(60),
            peer_refresh_timeout: Duration::from_secs(5),
            peer_file: None,
            send_parallelism: 0,
            max_content_length: 1 << 30,
            tls: None,
            connector: None,
            transport: Transport::Raw,
            http_keep_alive: true,
            proxy: None,
            client_dn: None,
            tls_roots: Vec::new(),
            tls_bundled_cas: Vec::new(),
            tls_identity: None,
            auth: None,
        }
    }

    /// TCP (and TLS) connect timeout. Default 30 s; `None` = no limit.
    pub fn connect_timeout(mut self, t: Option<Duration>) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Timeout applied to every single read and write on a connection and to REST calls.
    /// Default 30 s; `None` = no limit.
    pub fn io_timeout(mut self, t: Option<Duration>) -> Self {
        self.io_timeout = t;
        self
    }

    /// `REQUEST_EXPIRATION_MILLIS` sent in the handshake: NiFi's read timeout for this
    /// connection (it drops idle connections after about twice this). Default 30 s.
    pub fn request_expiration(mut self, t: Duration) -> Self {
        self.request_expiration = t;
        self
    }

    /// Compress FlowFiles on the wire (NiFi's `GZIP` handshake property, which is really
    /// SYNC-chunked zlib). Default `false`.
    pub fn compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// Maximum FlowFiles NiFi sends per RECEIVE transaction (`BATCH_COUNT`). Default 0 = NiFi's
    /// default (about 5 s worth of data).
    pub fn receive_batch_count(mut self, n: u32) -> Self {
        self.receive_batch_count = n;
        self
    }

    /// Maximum content bytes NiFi sends per RECEIVE transaction (`BATCH_SIZE`). Default 0 = unset.
    pub fn receive_batch_size(mut self, bytes: u64) -> Self {
        self.receive_batch_size = bytes;
        self
    }

    /// Maximum time NiFi keeps sending in one RECEIVE transaction (`BATCH_DURATION`).
    /// Default zero = unset.
    pub fn receive_batch_duration(mut self, d: Duration) -> Self {
        self.receive_batch_duration = d;
        self
    }

    /// [`Client::send_batch`] splits into transactions of at most this many FlowFiles.
    /// Default 1 000: small enough that a batch becomes several transactions that spread over a
    /// cluster's nodes (and run in parallel, see [`send_parallelism`](Self::send_parallelism))
    /// and that a failed transaction resends little, large enough that the commit round trip
    /// is negligible for small FlowFiles. (NiFi's own remote ports commit after about 0.5 s of
    /// sending; 10 000 made 20 000 FlowFiles two sequential transactions, one node each.)
    pub fn send_batch_count(mut self, n: usize) -> Self {
        self.send_batch_count = n.max(1);
        self
    }

    /// [`Client::send_batch`] splits into transactions of at most about this many content bytes
    /// (a single larger FlowFile still goes alone). Default 256 MiB.
    pub fn send_batch_bytes(mut self, bytes: u64) -> Self {
        self.send_batch_bytes = bytes.max(1);
        self
    }

    /// Maps an address NiFi advertises (`host:port`, as in its peer list) to the address this
    /// client can actually reach — the fix for NiFi in Docker or behind NAT. Default: none.
    pub fn peer_override(
        mut self,
        advertised: impl Into<String>,
        reachable: impl Into<String>,
    ) -> Self {
        self.peer_overrides
            .insert(advertised.into(), reachable.into());
        self
    }

    /// Ignore NiFi's peer list and always talk to the host of the configured URL on the RAW port
    /// discovery reports (after overrides). Default `false`.
    pub fn single_node(mut self, on: bool) -> Self {
        self.single_node = on;
        self
    }

    /// Pooled connections unused for this long are closed (with `SHUTDOWN`) instead of reused.
    /// Keep it below twice [`request_expiration`](Self::request_expiration). Default 30 s.
    pub fn idle_expiration(mut self, t: Duration) -> Self {
        self.idle_expiration = t;
        self
    }

    /// How long a failing peer is skipped. Default 3 s.
    pub fn penalization(mut self, t: Duration) -> Self {
        self.penalization = t;
        self
    }

    /// How long the discovery answer (ports, RAW port, secure flag) is cached. Default 30 s.
    pub fn site_info_ttl(mut self, t: Duration) -> Self {
        self.site_info_ttl = t;
        self
    }

    /// How long the peer list is trusted before it is fetched again. Default 60 s.
    ///
    /// The fetch happens in the background: transactions keep using the list they have (and
    /// the peers in it that are not penalized) while it runs, and a failed fetch is retried
    /// no sooner than [`peer_refresh_timeout`](Self::peer_refresh_timeout) later. Only the very
    /// first fetch is waited for (at most that timeout).
    pub fn peer_refresh(mut self, t: Duration) -> Self {
        self.peer_refresh = t;
        self
    }

    /// Time limit of one peer-list fetch (and of one background discovery refresh) per node
    /// asked. A NiFi node that lost its cluster coordinator can hold a peer-list request open
    /// for ~12 s; past this limit the client gives up on that node and keeps sending to the
    /// peers it knows. Default 5 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = s2s::Client::builder("http://nifi-1:8080/nifi,http://nifi-2:8080/nifi")
    ///     .peer_refresh(Duration::from_secs(30))
    ///     .peer_refresh_timeout(Duration::from_secs(2));
    /// # let _ = b;
    /// ```
    pub fn peer_refresh_timeout(mut self, t: Duration) -> Self {
        self.peer_refresh_timeout = t.max(Duration::from_millis(1));
        self
    }

    /// Persist the peer list to `path`: after every successful peer-list fetch the list (and
    /// the discovery answer: ports by name, RAW port) is written atomically (a temporary file
    /// in the same directory, then renamed). When no bootstrap URL answers — the cluster's
    /// first node is down while the client starts — the client reads the file and works with
    /// those peers. The format is one JSON object with a `version` field (1), the transport
    /// the peers belong to, and the peers with their FlowFile counts:
    ///
    /// ```json
    /// {"version":1,"transport":"raw","savedAtUnixSecs":1765000000,
    ///  "peers":[{"host":"nifi-1","port":10443,"secure":true,"flowFileCount":12}],
    ///  "site":{"rawPort":10443,"httpPort":8443,"secure":true,
    ///          "inputPorts":[{"id":"…","name":"in","state":"RUNNING"}],"outputPorts":[]}}
    /// ```
    ///
    /// A file of another version or transport is ignored (with a warning). Default: no file.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), s2s::Error> {
    /// let client = s2s::Client::builder("http://nifi-1:8080/nifi,http://nifi-2:8080/nifi")
    ///     .peer_persistence("/var/lib/myapp/nifi-peers.json")
    ///     .build()?;
    /// client.send_batch("in", vec![s2s::FlowFile::new("x")]).await?;
    /// # Ok(()) }
    /// ```
    pub fn peer_persistence(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.peer_file = Some(path.into());
        self
    }

    /// How many transactions [`Client::send_batch`]/[`Client::send_sources`] run at once.
    /// A batch is split into transactions by [`send_batch_count`](Self::send_batch_count) and
    /// [`send_batch_bytes`](Self::send_batch_bytes); up to `n` of them are open at the same
    /// time, each on a node picked by weight, where a node's weight is divided by one plus the
    /// transactions this client already has open on it — so concurrent transactions go to
    /// different nodes whenever the weights allow. Each transaction is still all-or-nothing.
    /// 0 (the default) = auto: the number of usable (listed, not penalized) peers, 1 on a
    /// standalone NiFi or with [`single_node`](Self::single_node).
    ///
    /// ```no_run
    /// # async fn demo(ffs: Vec<s2s::FlowFile>) -> Result<(), s2s::Error> {
    /// let client = s2s::Client::builder("http://nifi-1:8080/nifi,http://nifi-2:8080/nifi")
    ///     .send_batch_count(500)
    ///     .send_parallelism(4)
    ///     .build()?;
    /// let report = client.send_batch_report("in", ffs).await;
    /// println!("committed {:?}", report.committed);
    /// # Ok(()) }
    /// ```
    pub fn send_parallelism(mut self, n: usize) -> Self {
        self.send_parallelism = n;
        self
    }

    /// Largest FlowFile content accepted when receiving (bounds memory). Default 1 GiB.
    pub fn max_content_length(mut self, bytes: u64) -> Self {
        self.max_content_length = bytes;
        self
    }

    /// TLS configuration (with the client certificate) for secure NiFi: used for RAW sockets
    /// and for HTTPS discovery. Default: none (plain TCP; a secure NiFi then fails clearly).
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// TLS from PEM files: trust the CA certificates in `ca_pem`, present `client`'s
    /// certificate and key (mutual TLS, what NiFi's RAW S2S requires). Host names are verified.
    /// The certificate's subject DN is remembered so an "unauthorized" error can name it.
    ///
    /// # Errors
    /// See [`tls::client_config_from_pem`](crate::tls::client_config_from_pem).
    pub fn tls_pem(
        mut self,
        ca_pem: &std::path::Path,
        client: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<Self, Error> {
        self.tls_roots = crate::tls::load_pem_cas(ca_pem)?;
        self.tls_identity = match client {
            Some((cert, key)) => Some(crate::tls::load_pem_identity(cert, key)?),
            None => None,
        };
        self.tls_bundled_cas.clear();
        self.rebuild_tls()?;
        Ok(self)
    }

    /// Trusts the CA certificates of a PEM file (replacing CAs given before). Combine with
    /// [`tls_pkcs12`](Self::tls_pkcs12) for a client certificate.
    ///
    /// # Errors
    /// Invalid input naming the file when it is missing or holds no certificate.
    pub fn tls_ca_pem(mut self, ca_pem: &std::path::Path) -> Result<Self, Error> {
        self.tls_roots = crate::tls::load_pem_cas(ca_pem)?;
        self.rebuild_tls()?;
        Ok(self)
    }

    /// Mutual TLS with the private key and certificate chain of a PKCS#12 keystore
    /// (`.p12`/`.pfx`, what NiFi's toolkit and `keytool` produce). The password only unlocks
    /// the file here; it is not kept.
    ///
    /// Trust: the CAs of [`tls_ca_pem`](Self::tls_ca_pem) or
    /// [`tls_truststore_pkcs12`](Self::tls_truststore_pkcs12) when given (in any order);
    /// otherwise the CA certificates bundled in this keystore (the issuer of the client
    /// certificate, which usually also issued NiFi's).
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), s2s::Error> {
    /// let password = std::env::var("S2S_PKCS12_PASSWORD").unwrap_or_default();
    /// let client = s2s::Client::builder("https://nifi.example.com:8443/nifi")
    ///     .tls_pkcs12(std::path::Path::new("client.p12"), &password)?
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Invalid input naming the file, with a [`tls::Pkcs12Error`](crate::tls::Pkcs12Error)
    /// source: wrong password, no private key, no certificate, unsupported algorithm.
    pub fn tls_pkcs12(mut self, path: &std::path::Path, password: &str) -> Result<Self, Error> {
        let (identity, others) = crate::tls::load_pkcs12_identity(path, password)?;
        self.tls_identity = Some(identity);
        self.tls_bundled_cas = others;
        self.rebuild_tls()?;
        Ok(self)
    }

    /// Trusts every certificate of a PKCS#12 truststore (NiFi's `truststore.p12`), replacing
    /// CAs given before.
    ///
    /// # Errors
    /// Invalid input naming the file, with a [`tls::Pkcs12Error`](crate::tls::Pkcs12Error)
    /// source (wrong password, no certificate, …).
    pub fn tls_truststore_pkcs12(
        mut self,
        path: &std::path::Path,
        password: &str,
    ) -> Result<Self, Error> {
        self.tls_roots = crate::tls::load_pkcs12_trust(path, password)?;
        self.rebuild_tls()?;
        Ok(self)
    }

    /// Recomposes the rustls configuration from the TLS pieces given so far. Without any
    /// trust anchor yet the configuration waits (checked in [`build`](Self::build)).
    fn rebuild_tls(&mut self) -> Result<(), Error> {
        self.client_dn = self.tls_identity.as_ref().and_then(|i| i.subject());
        let roots = if self.tls_roots.is_empty() {
            &self.tls_bundled_cas
        } else {
            &self.tls_roots
        };
        if roots.is_empty() {
            self.tls = None;
            return Ok(());
        }
        self.tls = Some(crate::tls::build_config(roots, self.tls_identity.as_ref())?);
        Ok(())
    }

    /// The leaf certificate (DER) the client presents in mutual TLS, if one is configured
    /// through [`tls_pem`](Self::tls_pem) or [`tls_pkcs12`](Self::tls_pkcs12).
    pub fn client_certificate(&self) -> Option<&[u8]> {
        self.tls_identity
            .as_ref()
            .and_then(|i| i.chain.first())
            .map(|c| c.as_ref())
    }

    /// HTTP transport: send `Authorization: Bearer <token>` on every request (discovery, peer
    /// list, data transfer). For NiFi 2.x single-user or OIDC setups, with a token obtained
    /// elsewhere. Never printed in `Debug` or logs.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.auth = Some(crate::auth::Credentials::Token(crate::auth::Secret::new(
            token.into(),
        )));
        self
    }

    /// HTTP transport: log in with `POST {api}/access/token` (form `username`, `password`)
    /// and send the JWT NiFi answers as a bearer token. The token is renewed (by logging in
    /// again) at 80% of its lifetime (`exp` of the JWT) and once when NiFi answers 401.
    /// The password is never printed in `Debug` or logs.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), s2s::Error> {
    /// let password = std::env::var("NIFI_PASSWORD").unwrap_or_default();
    /// let client = s2s::Client::builder("https://localhost:8443/nifi")
    ///     .tls_ca_pem(std::path::Path::new("ca.pem"))?
    ///     .transport(s2s::Transport::Http)
    ///     .login("admin", password)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn login(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some(crate::auth::Credentials::Login {
            username: username.into(),
            password: crate::auth::Secret::new(password.into()),
        });
        self
    }

    /// Replaces the built-in TCP (+ TLS) dialer for RAW connections (discovery still uses
    /// HTTP). Default: none (built-in dialer, honouring the connect timeout and [`tls`](Self::tls)).
    pub fn connector(mut self, connector: Arc<dyn crate::Connector>) -> Self {
        self.connector = Some(connector);
        self
    }

    /// RAW sockets or HTTP(S). Same API either way. Default [`Transport::Raw`].
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// HTTP transport: extend open transactions with a `PUT` every TTL/2 so NiFi does not
    /// expire them. Default `true`; turning it off only makes sense to test expiry.
    pub fn http_keep_alive(mut self, on: bool) -> Self {
        self.http_keep_alive = on;
        self
    }

    /// Sends every HTTP request (discovery, and the HTTP transport) through this proxy
    /// (`http://[user:password@]host:port`; `CONNECT` is used for https targets). Default: none
    /// (reqwest still honours `HTTPS_PROXY`/`HTTP_PROXY` from the environment).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Builds the client. Does no I/O: discovery happens lazily on first use.
    pub fn build(self) -> Result<Client, Error> {
        if self.tls.is_none() && self.tls_identity.is_some() {
            return Err(Error::invalid_input(
                "a client certificate was given but no CA to trust: add a CA (PEM) or a \
                 PKCS#12 truststore",
            ));
        }
        Client::from_builder(self)
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // TLS material is deliberately left out: it may hold private keys.
        f.debug_struct("ClientBuilder")
            .field("urls", &self.urls)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("compression", &self.compression)
            .field("peer_overrides", &self.peer_overrides)
            .field("single_node", &self.single_node)
            .field("peer_file", &self.peer_file)
            .field("send_parallelism", &self.send_parallelism)
            .field("tls", &self.tls.is_some())
            .field("connector", &self.connector.is_some())
            .field("transport", &self.transport)
            .field("proxy", &self.proxy.is_some())
            .field("client_dn", &self.client_dn)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}
