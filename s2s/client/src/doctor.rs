//! `s2s doctor`: checks, in the order a connection needs them, everything between this machine
//! and a NiFi port, and says what to fix. Nothing is transferred: the last check opens a
//! transaction (RAW handshake with the port, or an HTTP transaction) and cancels it.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;
use tokio::net::TcpStream;

use crate::builder::Transport;
use crate::discovery::{self, Direction, SiteInfo};
use crate::error::{Error, Kind};
use crate::peers;
use crate::{Client, Peer};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Status {
    /// Fine.
    Pass,
    /// Works, but will not for long or only by luck (e.g. a certificate about to expire).
    Warn,
    /// Broken: the hint says what to do.
    Fail,
    /// Not run because an earlier check failed.
    Skip,
}

/// One line of the doctor's report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name: `reachable`, `discovery`, `identity`, `port`, `peers`, `authorization`.
    pub name: &'static str,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about a failure or warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Every check, in order.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The checks run (and skipped).
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether no check failed (warnings allowed).
    pub fn ok(&self) -> bool {
        self.checks
            .iter()
            .all(|c| matches!(c.status, Status::Pass | Status::Warn))
    }

    /// The check named `name`, if it ran.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.checks {
            let mark = match c.status {
                Status::Pass => "✓",
                Status::Warn => "!",
                Status::Fail => "✗",
                Status::Skip => "-",
            };
            writeln!(f, "{mark} {:<13} {}", c.name, c.detail)?;
            if let Some(h) = &c.hint {
                writeln!(f, "  {:<13} fix: {h}", "")?;
            }
        }
        Ok(())
    }
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        hint: None,
    }
}

fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Fail,
        detail: detail.into(),
        hint: Some(hint.into()),
    }
}

/// How long one reachability probe may take.
const PROBE: Duration = Duration::from_secs(5);
/// A client certificate closer than this to expiry is a warning.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// Certificate facts worth printing.
struct CertFacts {
    subject: String,
    issuer: String,
    not_after: String,
    days_left: i64,
    names: Vec<String>,
}

fn cert_facts(der: &[u8]) -> Option<CertFacts> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    let days_left = c
        .validity()
        .time_to_expiration()
        .map_or(-1, |d| d.whole_days());
    let mut names = Vec::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push((*d).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => {
                    let s = match ip.len() {
                        4 => std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string(),
                        16 => <[u8; 16]>::try_from(*ip)
                            .map(|b| std::net::Ipv6Addr::from(b).to_string())
                            .unwrap_or_default(),
                        _ => continue,
                    };
                    names.push(s);
                }
                _ => {}
            }
        }
    }
    Some(CertFacts {
        subject: crate::tls::nifi_dn(c.subject()),
        issuer: crate::tls::nifi_dn(c.issuer()),
        not_after: c.validity().not_after.to_string(),
        days_left,
        names,
    })
}

/// Accepts any server certificate: used only to show what NiFi presents after the real,
/// verifying handshake failed. Nothing is sent over such a connection.
#[derive(Debug)]
struct ShowAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for ShowAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate NiFi presents at `addr`, without verifying it.
async fn peek_server_cert(addr: &str, host: &str) -> Option<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ShowAnyCert(provider)))
        .with_no_client_auth();
    let tcp = tokio::time::timeout(PROBE, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let name = ServerName::try_from(host.to_owned()).ok()?;
    let tls = tokio::time::timeout(
        PROBE,
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await
    .ok()?
    .ok()?;
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
}

/// TCP connect with a short timeout; the error text names the cause.
async fn tcp_probe(addr: &str) -> Result<TcpStream, String> {
    match tokio::time::timeout(PROBE, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err("connection refused".into())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", PROBE.as_secs())),
    }
}

fn describe_error(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    // reqwest hides the root cause (refused, TLS alert) a few sources down.
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

impl Client {
    /// Runs the checks of `s2s doctor` for `port` (a name or id; input or output port), in
    /// order: `reachable` (TCP, TLS handshake, server certificate and host name), `discovery`,
    /// `identity` (client certificate DN and expiry, or token), `port` (exists, direction,
    /// state), `peers` (every advertised address after overrides) and `authorization` (a RAW
    /// handshake with the port, or an HTTP transaction created and cancelled: nothing is
    /// transferred). Checks after a failed prerequisite are [`Status::Skip`]. Never fails
    /// itself: problems are in the [`Report`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), s2s::Error> {
    /// let client = s2s::Client::builder("http://localhost:8080/nifi").build()?;
    /// let report = client.doctor("in").await;
    /// print!("{report}"); // one line per check, with a fix for each failure
    /// assert!(report.ok());
    /// # Ok(()) }
    /// ```
    pub async fn doctor(&self, port: &str) -> Report {
        let mut checks = Vec::new();
        let ok = self.check_reachable(&mut checks).await;
        let site = if ok {
            self.check_discovery(&mut checks).await
        } else {
            None
        };
        self.check_identity(&mut checks, site.as_deref());
        let direction = match &site {
            Some(s) => self.check_port(&mut checks, s, port),
            None => None,
        };
        if site.is_some() {
            self.check_peers(&mut checks).await;
        }
        if let Some(d) = direction {
            self.check_authorization(&mut checks, d, port).await;
        }
        const ORDER: [&str; 6] = [
            "reachable",
            "discovery",
            "identity",
            "port",
            "peers",
            "authorization",
        ];
        for name in ORDER {
            if !checks.iter().any(|c: &Check| c.name == name) {
                checks.push(check(
                    name,
                    Status::Skip,
                    "not checked (an earlier check failed)",
                ));
            }
        }
        checks.sort_by_key(|c| ORDER.iter().position(|n| *n == c.name));
        Report { checks }
    }

    async fn check_reachable(&self, out: &mut Vec<Check>) -> bool {
        const N: &str = "reachable";
        let url = &self.cfg().urls[0];
        let Ok(api) = discovery::api_base(url) else {
            out.push(fail(
                N,
                format!("{url:?} is not a URL"),
                "give NiFi's web URL, e.g. https://host:8443/nifi",
            ));
            return false;
        };
        let host = api.host_str().unwrap_or_default().to_owned();
        let port = api.port_or_known_default().unwrap_or(80);
        let addr = peers::format_addr(&host, port);
        if let Some(p) = &self.cfg().proxy {
            let shown = reqwest::Url::parse(p)
                .map(|u| format!("{}:{}", u.host_str().unwrap_or("?"), u.port().unwrap_or(0)))
                .unwrap_or_else(|_| "?".into());
            out.push(check(
                N,
                Status::Pass,
                format!("{addr} through the proxy {shown} (checked by discovery)"),
            ));
            return true;
        }
        let tcp = match tcp_probe(&addr).await {
            Ok(t) => t,
            Err(why) => {
                out.push(fail(
                    N,
                    format!("{addr}: {why}"),
                    format!(
                        "is NiFi running and is {port} its web port (nifi.web.http{}.port)? \
                         Check --url",
                        if api.scheme() == "https" { "s" } else { "" }
                    ),
                ));
                return false;
            }
        };
        if api.scheme() == "http" {
            out.push(check(N, Status::Pass, format!("{addr} (plain HTTP)")));
            return true;
        }
        let Some(tls) = self.cfg().tls.clone() else {
            let facts = peek_server_cert(&addr, &host)
                .await
                .and_then(|d| cert_facts(&d));
            let issuer = facts.map_or_else(String::new, |f| format!(" (issuer {})", f.issuer));
            out.push(fail(
                N,
                format!("{addr} speaks HTTPS but no CA to trust is configured{issuer}"),
                "give the CA that signed NiFi's certificate: --ca ca.pem or --truststore truststore.p12 (or a --pkcs12 bundling it)",
            ));
            return false;
        };
        let Ok(name) = ServerName::try_from(host.clone()) else {
            out.push(fail(N, format!("bad host {host:?}"), "check --url"));
            return false;
        };
        let res = tokio::time::timeout(
            PROBE,
            tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
        )
        .await;
        match res {
            Ok(Ok(s)) => {
                let conn = s.get_ref().1;
                let version = conn
                    .protocol_version()
                    .map_or_else(|| "TLS".into(), |v| format!("{v:?}").replace('_', "."));
                let facts = conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| cert_facts(c));
                let detail = match facts {
                    Some(f) => format!(
                        "{addr} ({version}; server certificate {} issued by {}, valid until {} \
                         ({} days); host name {host} matches)",
                        f.subject, f.issuer, f.not_after, f.days_left
                    ),
                    None => format!("{addr} ({version}; host name {host} matches)"),
                };
                out.push(check(N, Status::Pass, detail));
                true
            }
            Ok(Err(e)) => {
                let facts = peek_server_cert(&addr, &host)
                    .await
                    .and_then(|d| cert_facts(&d));
                let msg = e.to_string();
                let seen = facts.as_ref().map_or_else(String::new, |f| {
                    format!(
                        "; NiFi presents {} issued by {}, for names [{}]",
                        f.subject,
                        f.issuer,
                        f.names.join(", ")
                    )
                });
                let hint = if msg.contains("NotValidForName") || msg.contains("not valid for name")
                {
                    match facts.as_ref().and_then(|f| f.names.first()) {
                        Some(n) => format!(
                            "the certificate does not name {host:?}: use one of its names in --url (e.g. https://{n}:{port}/nifi)"
                        ),
                        None => "the certificate does not name this host: use the host name it was issued for in --url".into(),
                    }
                } else if msg.contains("UnknownIssuer") || msg.contains("BadSignature") {
                    "NiFi's certificate is not signed by the configured CA: give the CA that issued it (--ca/--truststore)".into()
                } else if msg.contains("Expired") {
                    "NiFi's certificate has expired: renew it on the NiFi side".into()
                } else if msg.contains("alert") {
                    "NiFi refused the handshake: it may want a client certificate it trusts (--pkcs12 or --cert/--key)".into()
                } else {
                    "check the CA and the host name in --url".into()
                };
                out.push(fail(
                    N,
                    format!("{addr}: TLS handshake failed: {msg}{seen}"),
                    hint,
                ));
                false
            }
            Err(_) => {
                out.push(fail(
                    N,
                    format!("{addr}: no TLS answer within {}s", PROBE.as_secs()),
                    "is this NiFi's HTTPS port?",
                ));
                false
            }
        }
    }

    async fn check_discovery(&self, out: &mut Vec<Check>) -> Option<Arc<SiteInfo>> {
        const N: &str = "discovery";
        let info = match self.site_info_inner(true).await {
            Ok((i, _)) => i,
            Err(e) => {
                let hint = if e.is_unauthorized() {
                    match (&self.cfg().client_dn, &self.cfg().auth) {
                        (_, Some(_)) => "NiFi refused the token: check the user (--username/--token-env) and grant it the policy 'retrieve site-to-site details'".to_owned(),
                        (Some(dn), None) => format!("grant {dn:?} the policy 'retrieve site-to-site details' (Global menu → Policies)"),
                        (None, None) => "NiFi wants an identity: a client certificate (--pkcs12 or --cert/--key) or, for HTTP, a token (--username/--token-env)".to_owned(),
                    }
                } else if describe_error(&e).contains("fatal alert") {
                    // TLS 1.3: the client finishes its side of the handshake before NiFi
                    // judges the client certificate, so the refusal shows up on first use.
                    let issuer = self
                        .cfg()
                        .client_certificate()
                        .and_then(cert_facts)
                        .map_or_else(String::new, |f| format!(" (issuer {})", f.issuer));
                    format!(
                        "NiFi refused the TLS handshake: the client certificate{issuer} must be issued by a CA in NiFi's truststore (nifi.security.truststore), or NiFi requires one and none was given (--pkcs12 or --cert/--key)"
                    )
                } else if describe_error(&e).contains("404") {
                    "no /nifi-api/site-to-site here: is --url NiFi's web URL (…/nifi)?".to_owned()
                } else {
                    "check --url".to_owned()
                };
                out.push(fail(N, describe_error(&e), hint));
                return None;
            }
        };
        let raw = info
            .raw_port
            .map_or_else(|| "RAW disabled".to_owned(), |p| format!("RAW port {p}"));
        let http = info.http_port.map_or_else(
            || "HTTP S2S disabled".to_owned(),
            |p| format!("HTTP S2S enabled (port {p})"),
        );
        let detail = format!(
            "{raw}, {http}, secure={}, {} input / {} output ports visible",
            info.secure,
            info.input_ports.len(),
            info.output_ports.len()
        );
        let transport = self.cfg().transport;
        let c = if transport == Transport::Raw && info.raw_port.is_none() {
            fail(
                N,
                detail,
                "NiFi has no RAW S2S port (nifi.remote.input.socket.port unset): use --transport http, or set the property",
            )
        } else if transport == Transport::Http && info.http_port.is_none() {
            fail(
                N,
                detail,
                "HTTP S2S is disabled on NiFi (nifi.remote.input.http.enabled=false): use --transport raw, or enable it",
            )
        } else if transport == Transport::Raw && info.secure && self.cfg().tls.is_none() {
            fail(
                N,
                detail,
                "NiFi's S2S is secure: RAW needs TLS with a client certificate (--pkcs12 or --ca/--cert/--key)",
            )
        } else {
            check(N, Status::Pass, detail)
        };
        out.push(c);
        Some(info)
    }

    fn check_identity(&self, out: &mut Vec<Check>, site: Option<&SiteInfo>) {
        const N: &str = "identity";
        let cfg = self.cfg();
        let secure = site.is_some_and(|s| s.secure);
        if let Some(der) = cfg.client_certificate() {
            let Some(f) = cert_facts(der) else {
                out.push(fail(
                    N,
                    "the client certificate cannot be parsed",
                    "check --cert/--pkcs12",
                ));
                return;
            };
            let detail = format!(
                "client certificate {} issued by {}, valid until {} ({} days)",
                f.subject, f.issuer, f.not_after, f.days_left
            );
            let c = if f.days_left < 0 {
                fail(
                    N,
                    detail,
                    "the client certificate has expired (or is not valid yet): get a new one",
                )
            } else if f.days_left < EXPIRY_WARNING_DAYS {
                Check {
                    hint: Some("renew the client certificate soon".into()),
                    ..check(N, Status::Warn, detail)
                }
            } else {
                check(N, Status::Pass, detail)
            };
            out.push(c);
            return;
        }
        match &cfg.auth {
            Some(crate::auth::Credentials::Login { username, .. }) => out.push(check(
                N,
                Status::Pass,
                format!("bearer token from a login as {username:?} (no client certificate)"),
            )),
            Some(crate::auth::Credentials::Token(_)) => out.push(check(
                N,
                Status::Pass,
                "bearer token (no client certificate)",
            )),
            None if secure && cfg.transport == Transport::Raw => out.push(fail(
                N,
                "no client certificate configured",
                "secure RAW S2S authenticates by certificate: --pkcs12 FILE or --cert/--key",
            )),
            None => out.push(check(
                N,
                Status::Pass,
                "anonymous (no client certificate, no token)",
            )),
        }
    }

    fn check_port(&self, out: &mut Vec<Check>, site: &SiteInfo, port: &str) -> Option<Direction> {
        const N: &str = "port";
        let found = site
            .find_port(Direction::Send, port)
            .map(|p| (Direction::Send, p))
            .or_else(|| {
                site.find_port(Direction::Receive, port)
                    .map(|p| (Direction::Receive, p))
            });
        let Some((dir, p)) = found else {
            let names = |l: &[crate::PortInfo]| {
                if l.is_empty() {
                    "none".to_owned()
                } else {
                    l.iter()
                        .map(|p| format!("{:?}", p.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            // NiFi lists only the ports the caller may use: on a secure NiFi an existing port
            // the identity lacks a policy for looks exactly like a missing one.
            let policy = if site.secure {
                let who = match (&self.cfg().client_dn, &self.cfg().auth) {
                    (Some(dn), _) => format!("{dn:?}"),
                    (None, Some(_)) => "the token's user".to_owned(),
                    (None, None) => "your identity".to_owned(),
                };
                format!(
                    "; if the port exists, grant {who} 'receive data via site-to-site' (input port) or 'send data via site-to-site' (output port) on it"
                )
            } else {
                String::new()
            };
            out.push(fail(
                N,
                format!("no input or output port named (or with id) {port:?}"),
                format!(
                    "available input ports: {}; output ports: {} (root-group ports only; names are case-sensitive){policy}",
                    names(&site.input_ports),
                    names(&site.output_ports)
                ),
            ));
            return None;
        };
        let kind = match dir {
            Direction::Send => "input port (you send to it)",
            Direction::Receive => "output port (you receive from it)",
        };
        let detail = format!("{:?} ({}) is an {kind}, {}", p.name, p.id, p.state);
        if p.state != "RUNNING" {
            out.push(fail(
                N,
                detail,
                format!("the port is {}: start it in NiFi", p.state),
            ));
        } else {
            out.push(check(N, Status::Pass, detail));
        }
        Some(dir)
    }

    async fn check_peers(&self, out: &mut Vec<Check>) {
        const N: &str = "peers";
        let transport = self.cfg().transport;
        let listed: Result<Vec<Peer>, Error> = if self.cfg().single_node {
            match transport {
                Transport::Raw => match self.bootstrap().await {
                    Ok(t) => {
                        out.push(
                            self.probe_peers_check(
                                vec![(
                                    format!("{}:{}", t.advertised_host, t.advertised_port),
                                    t.addr,
                                )],
                                "--single-node: ",
                            )
                            .await,
                        );
                        return;
                    }
                    Err(e) => Err(e),
                },
                Transport::Http => {
                    out.push(check(
                        N,
                        Status::Pass,
                        "--single-node: only the --url host is used",
                    ));
                    return;
                }
            }
        } else {
            match transport {
                Transport::Raw => self.peers().await,
                Transport::Http => self.http_peers().await,
            }
        };
        match listed {
            Ok(list) if list.is_empty() => out.push(check(
                N,
                Status::Pass,
                "NiFi advertises no peers (the --url host is used)",
            )),
            Ok(list) => {
                let pairs = list
                    .iter()
                    .map(|p| (p.advertised(), self.map_peer(p)))
                    .collect();
                out.push(self.probe_peers_check(pairs, "").await);
            }
            Err(e) => {
                // The peer list itself travels over the RAW port of the --url host.
                let hint = match (transport, self.bootstrap().await) {
                    (Transport::Raw, Ok(t)) if matches!(e.kind(), Kind::Io | Kind::Timeout(_)) => {
                        let adv = peers::format_addr(&t.advertised_host, t.advertised_port);
                        if adv == t.addr {
                            format!(
                                "the RAW port '{adv}' of the --url host is not reachable from here: publish/open NiFi's nifi.remote.input.socket.port, map it with --peer-override {adv}=REACHABLE:PORT, or use --transport http"
                            )
                        } else {
                            format!(
                                "the RAW port '{adv}' of the --url host is mapped to '{}', which is not reachable from here: fix --peer-override {adv}=…",
                                t.addr
                            )
                        }
                    }
                    _ if e.is_unauthorized() => {
                        "NiFi refused the identity for the peer list: grant it 'retrieve site-to-site details'".into()
                    }
                    _ => "see the error; --single-node skips the peer list".into(),
                };
                out.push(fail(
                    N,
                    format!("cannot get the peer list: {}", describe_error(&e)),
                    hint,
                ));
            }
        }
    }

    /// Connects to every (advertised, mapped) address; one check for all of them.
    async fn probe_peers_check(&self, pairs: Vec<(String, String)>, prefix: &str) -> Check {
        const N: &str = "peers";
        let url_host = discovery::url_host(&self.cfg().urls[0]).unwrap_or_default();
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let mut hints = Vec::new();
        for (adv, addr) in pairs {
            let shown = if adv == addr {
                format!("'{adv}'")
            } else {
                format!("'{adv}' → '{addr}'")
            };
            match tcp_probe(&addr).await {
                Ok(_) => good.push(shown),
                Err(why) => {
                    bad.push(format!("{shown} ({why})"));
                    let port = adv
                        .rsplit_once(':')
                        .and_then(|(_, p)| p.parse().ok())
                        .unwrap_or(0);
                    let suggested = peers::format_addr(&url_host, port);
                    hints.push(if adv == addr {
                        format!(
                            "advertised '{adv}' is not reachable from here; use --peer-override {adv}={suggested} or --single-node"
                        )
                    } else {
                        format!(
                            "advertised '{adv}' is mapped to '{addr}', which is not reachable from here; fix the override (e.g. --peer-override {adv}={suggested}) or use --single-node"
                        )
                    });
                }
            }
        }
        if bad.is_empty() {
            check(
                N,
                Status::Pass,
                format!("{prefix}reachable: {}", good.join(", ")),
            )
        } else {
            let mut detail = format!("{prefix}unreachable: {}", bad.join(", "));
            if !good.is_empty() {
                detail.push_str(&format!("; reachable: {}", good.join(", ")));
            }
            fail(N, detail, hints.join("; "))
        }
    }

    async fn check_authorization(&self, out: &mut Vec<Check>, dir: Direction, port: &str) {
        const N: &str = "authorization";
        let res: Result<String, Error> = match self.cfg().transport {
            Transport::Raw => match self.acquire(dir, port, false).await {
                Ok((conn, _, _)) => {
                    let peer = conn.peer.clone();
                    conn.shutdown().await;
                    Ok(format!(
                        "RAW handshake with the port accepted by {peer} (PROPERTIES_OK); nothing transferred"
                    ))
                }
                Err(e) => Err(e),
            },
            Transport::Http => match self.http_open(dir, port).await {
                Ok((tx, _)) => {
                    let loc = tx.location.clone();
                    match tx.cancel().await {
                        Ok(_) => Ok(format!(
                            "HTTP transaction created and cancelled ({loc}); nothing transferred"
                        )),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
        };
        match res {
            Ok(d) => out.push(check(N, Status::Pass, d)),
            Err(e) => {
                let e = e.with_identity(self.cfg().client_dn.as_deref());
                let policy = match dir {
                    Direction::Send => "receive data via site-to-site",
                    Direction::Receive => "send data via site-to-site",
                };
                let hint = if e.is_unauthorized() {
                    match &self.cfg().client_dn {
                        Some(dn) => format!(
                            "grant {dn:?} the policy '{policy}' on port {port:?} (port's ⋮ → Manage access policies)"
                        ),
                        None => format!(
                            "NiFi wants an identity it authorizes for '{policy}' on the port: a client certificate (--pkcs12) or a token"
                        ),
                    }
                } else if e.is_port_not_running() {
                    "start the port in NiFi".into()
                } else if e.is_unknown_port() {
                    "NiFi does not know the port any more: check --port".into()
                } else {
                    "see the error; the checks above may point at the cause".into()
                };
                out.push(fail(N, describe_error(&e), hint));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn closed_port() -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn unreachable_advertised_peer_gets_the_override_hint() {
        let port = closed_port().await;
        let client = Client::builder("http://localhost:8080/nifi")
            .build()
            .unwrap();
        let adv = format!("nifi:{port}");
        let c = client
            .probe_peers_check(vec![(adv.clone(), adv.clone())], "")
            .await;
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.detail.contains("connection refused") || c.detail.contains("unreachable"),
            "{}",
            c.detail
        );
        let hint = c.hint.unwrap();
        assert_eq!(
            hint,
            format!(
                "advertised '{adv}' is not reachable from here; use --peer-override {adv}=localhost:{port} or --single-node"
            )
        );
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = open.local_addr().unwrap().to_string();
        let c = client
            .probe_peers_check(vec![("nifi:10000".into(), good.clone())], "")
            .await;
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert!(
            c.detail.contains(&format!("'nifi:10000' → '{good}'")),
            "{}",
            c.detail
        );
    }

    #[test]
    fn report_renders_marks_hints_and_json() {
        let r = Report {
            checks: vec![
                check("reachable", Status::Pass, "127.0.0.1:1 (plain HTTP)"),
                fail("port", "no port \"x\"", "available input ports: \"in\""),
                check("peers", Status::Skip, "not checked"),
            ],
        };
        assert!(!r.ok());
        let text = r.to_string();
        assert!(text.starts_with("✓ reachable"), "{text}");
        assert!(text.contains("✗ port"), "{text}");
        assert!(text.contains("fix: available input ports"), "{text}");
        let j: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(j["checks"][1]["status"], "fail");
        assert_eq!(j["checks"][0].get("hint"), None);
        assert!(
            Report {
                checks: vec![check("a", Status::Warn, "")]
            }
            .ok()
        );
    }

    fn pem_identity(dir: &std::path::Path, expired: bool) -> crate::ClientBuilder {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "doctor CA");
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "doctor-client");
        if expired {
            p.not_before = rcgen::date_time_ymd(2019, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("c.key"), key.serialize_pem()).unwrap();
        Client::builder("https://localhost:1/nifi")
            .tls_pem(
                &dir.join("ca.pem"),
                Some((&dir.join("c.pem"), &dir.join("c.key"))),
            )
            .unwrap()
    }

    #[tokio::test]
    async fn identity_check_names_the_dn_and_fails_an_expired_certificate() {
        let dir = std::env::temp_dir().join(format!("s2s-doctor-{}", uuid::Uuid::new_v4()));
        let good = pem_identity(&dir.join("good"), false).build().unwrap();
        let mut out = Vec::new();
        good.check_identity(&mut out, None);
        assert_eq!(out[0].status, Status::Pass, "{out:?}");
        assert!(out[0].detail.contains("CN=doctor-client"), "{out:?}");
        assert!(out[0].detail.contains("issued by CN=doctor CA"), "{out:?}");

        let old = pem_identity(&dir.join("old"), true).build().unwrap();
        let mut out = Vec::new();
        old.check_identity(&mut out, None);
        assert_eq!(out[0].status, Status::Fail, "{out:?}");
        assert!(out[0].detail.contains("2020"), "{out:?}");
        assert!(
            out[0].hint.as_deref().unwrap().contains("expired"),
            "{out:?}"
        );

        // Secure RAW without any certificate: what to configure.
        let none = Client::builder("https://localhost:1/nifi").build().unwrap();
        let site = SiteInfo {
            raw_port: Some(1),
            http_port: None,
            secure: true,
            input_ports: vec![],
            output_ports: vec![],
        };
        let mut out = Vec::new();
        none.check_identity(&mut out, Some(&site));
        assert_eq!(out[0].status, Status::Fail, "{out:?}");
        assert!(
            out[0].hint.as_deref().unwrap().contains("--pkcs12"),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn tls_check_shows_the_names_the_certificate_has_when_the_host_does_not_match() {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "names CA");
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let srv = CertificateParams::new(vec!["nifi.internal".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![srv.der().clone()],
                rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let a = acceptor.clone();
                tokio::spawn(async move {
                    let _ = a.accept(s).await;
                });
            }
        });
        let dir = std::env::temp_dir().join(format!("s2s-doctor-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let client = Client::builder(format!("https://127.0.0.1:{port}/nifi"))
            .tls_ca_pem(&dir.join("ca.pem"))
            .unwrap()
            .build()
            .unwrap();
        let mut out = Vec::new();
        assert!(!client.check_reachable(&mut out).await);
        let c = &out[0];
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.detail.contains("for names [nifi.internal]"), "{c:?}");
        assert!(
            c.hint
                .as_deref()
                .unwrap()
                .contains(&format!("https://nifi.internal:{port}/nifi")),
            "{c:?}"
        );
        // Without any CA: says so and who issued NiFi's certificate.
        let bare = Client::builder(format!("https://127.0.0.1:{port}/nifi"))
            .build()
            .unwrap();
        let mut out = Vec::new();
        assert!(!bare.check_reachable(&mut out).await);
        assert!(out[0].detail.contains("CN=names CA"), "{:?}", out[0]);
    }
}
