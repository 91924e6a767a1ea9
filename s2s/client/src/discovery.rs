//! Discovery: `GET {base}/nifi-api/site-to-site` → RAW port, secure flag, port name → id.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Kind};

/// Which way data flows through a port, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The client sends into a NiFi input port.
    Send,
    /// The client receives from a NiFi output port.
    Receive,
}

/// One remote port as discovery lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The port id (what goes into the handshake).
    pub id: String,
    /// The port name.
    pub name: String,
    /// Scheduled state as NiFi reports it (`RUNNING`, `STOPPED`, `DISABLED`).
    pub state: String,
}

/// What `GET /nifi-api/site-to-site` told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteInfo {
    /// The RAW S2S port (`nifi.remote.input.socket.port`), if RAW is enabled.
    pub raw_port: Option<u16>,
    /// The HTTP S2S port, if HTTP S2S is enabled.
    pub http_port: Option<u16>,
    /// Whether S2S requires TLS.
    pub secure: bool,
    /// Root input ports (targets of a SEND).
    pub input_ports: Vec<PortInfo>,
    /// Root output ports (sources of a RECEIVE).
    pub output_ports: Vec<PortInfo>,
}

impl SiteInfo {
    /// Finds a port for `direction` by exact, case-sensitive name, or by id.
    /// With duplicate names the last one wins, as in NiFi's Java client.
    pub fn find_port(&self, direction: Direction, name_or_id: &str) -> Option<&PortInfo> {
        let list = match direction {
            Direction::Send => &self.input_ports,
            Direction::Receive => &self.output_ports,
        };
        list.iter()
            .rev()
            .find(|p| p.name == name_or_id)
            .or_else(|| list.iter().find(|p| p.id == name_or_id))
    }
}

#[derive(Deserialize)]
struct Envelope {
    controller: Controller,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Controller {
    remote_site_listening_port: Option<u16>,
    remote_site_http_listening_port: Option<u16>,
    // NiFi defaults the property to true when unset; an absent field means "not reported".
    site_to_site_secure: Option<bool>,
    #[serde(default)]
    input_ports: Vec<JsonPort>,
    #[serde(default)]
    output_ports: Vec<JsonPort>,
}

#[derive(Deserialize)]
struct JsonPort {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    state: String,
}

impl From<JsonPort> for PortInfo {
    fn from(p: JsonPort) -> Self {
        Self {
            id: p.id,
            name: p.name,
            state: p.state,
        }
    }
}

/// Parses the JSON body of `/nifi-api/site-to-site`.
pub(crate) fn parse_site_info(body: &[u8]) -> Result<SiteInfo, Error> {
    let env: Envelope = serde_json::from_slice(body)
        .map_err(|e| Error::with_source(Kind::Discovery("unexpected JSON".into()), e))?;
    let c = env.controller;
    Ok(SiteInfo {
        raw_port: c.remote_site_listening_port,
        http_port: c.remote_site_http_listening_port,
        secure: c.site_to_site_secure.unwrap_or(true),
        input_ports: c.input_ports.into_iter().map(Into::into).collect(),
        output_ports: c.output_ports.into_iter().map(Into::into).collect(),
    })
}

/// Turns the user's URL into the REST API base, as NiFi's Java client does:
/// `http://h:8080/nifi` → `http://h:8080/nifi-api`, `http://h:8080` → `http://h:8080/nifi-api`.
pub(crate) fn api_base(url: &str) -> Result<reqwest::Url, Error> {
    let mut u = reqwest::Url::parse(url)
        .map_err(|e| Error::with_source(Kind::Config(format!("bad NiFi URL {url:?}")), e))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(Error::new(Kind::Config(format!(
            "NiFi URL must be http(s)://host[:port]/nifi, got {url:?}"
        ))));
    }
    let path = u.path().trim_end_matches('/').to_owned();
    let new_path = if path.is_empty() {
        "/nifi-api".to_owned()
    } else if path.ends_with("/nifi-api") {
        path
    } else if path.ends_with("/nifi") {
        format!("{path}-api")
    } else {
        format!("{path}/nifi-api")
    };
    u.set_path(&new_path);
    u.set_query(None);
    u.set_fragment(None);
    Ok(u)
}

/// One discovery round trip (with the bearer token when configured; a 401 to a token from a
/// login renews it and retries once).
pub(crate) async fn fetch_site_info(
    http: &reqwest::Client,
    url: &str,
    timeout: Option<Duration>,
    auth: Option<&crate::auth::TokenSource>,
) -> Result<SiteInfo, Error> {
    let base = api_base(url)?;
    let target = format!("{}/site-to-site", base.as_str().trim_end_matches('/'));
    let mut retried = false;
    let resp = loop {
        let mut req = http
            .get(&target)
            .header("Accept", "application/json")
            .header("x-nifi-site-to-site-protocol-version", "1");
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let used = match auth {
            Some(a) => {
                let h = a.header().await?;
                req = crate::auth::authorize(req, &h);
                Some(h)
            }
            None => None,
        };
        // Refused or timed out: retryable; TLS (untrusted certificate, host name): fatal.
        let resp = req.send().await.map_err(|e| {
            crate::error::from_reqwest(
                e,
                "fetching site-to-site details",
                Kind::Discovery(format!("GET {target}")),
            )
        })?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED
            && !retried
            && let (Some(a), Some(h)) = (auth, &used)
            && a.rejected(h).await
        {
            retried = true;
            continue;
        }
        break resp;
    };
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        let why = if auth.is_some() {
            "the bearer token was refused, or its user lacks the 'retrieve site-to-site details' policy"
        } else {
            "no identity, or one without the 'retrieve site-to-site details' policy (a client certificate, or for HTTP a token)"
        };
        return Err(Error::new(Kind::Unauthorized(format!(
            "GET {target} answered {status}: {why}"
        ))));
    }
    if !status.is_success() {
        return Err(Error::new(Kind::Discovery(format!(
            "GET {target} answered {status}"
        ))));
    }
    let body = resp.bytes().await.map_err(|e| {
        crate::error::from_reqwest(
            e,
            "reading site-to-site details",
            Kind::Discovery(format!("reading {target}")),
        )
    })?;
    parse_site_info(&body)
}

/// Host of the configured URL: the bootstrap peer's host for RAW.
pub(crate) fn url_host(url: &str) -> Result<String, Error> {
    let u = api_base(url)?;
    Ok(u.host_str().unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"controller":{"id":"root","name":"NiFi Flow","remoteSiteListeningPort":10443,
        "remoteSiteHttpListeningPort":8080,"siteToSiteSecure":false,
        "inputPorts":[{"id":"a","name":"in","comments":"","state":"RUNNING"},{"id":"b","name":"in","state":"STOPPED"}],
        "outputPorts":[{"id":"c","name":"out","state":"RUNNING"}]}}"#;

    #[test]
    fn parses_discovery_answer() {
        let info = parse_site_info(BODY.as_bytes()).unwrap();
        assert_eq!(info.raw_port, Some(10443));
        assert_eq!(info.http_port, Some(8080));
        assert!(!info.secure);
        // Last duplicate wins, like NiFi's Java client.
        assert_eq!(info.find_port(Direction::Send, "in").unwrap().id, "b");
        assert_eq!(info.find_port(Direction::Send, "a").unwrap().name, "in");
        assert!(info.find_port(Direction::Send, "out").is_none());
        assert_eq!(info.find_port(Direction::Receive, "out").unwrap().id, "c");
    }

    #[test]
    fn secure_defaults_to_true_and_ports_may_be_absent() {
        let info = parse_site_info(br#"{"controller":{}}"#).unwrap();
        assert!(info.secure);
        assert_eq!(info.raw_port, None);
        assert!(info.input_ports.is_empty());
        assert!(parse_site_info(b"<html>").is_err());
    }

    #[test]
    fn normalises_user_urls() {
        for (input, want) in [
            ("http://h:8080/nifi", "http://h:8080/nifi-api"),
            ("http://h:8080/nifi/", "http://h:8080/nifi-api"),
            ("http://h:8080", "http://h:8080/nifi-api"),
            ("http://h:8080/nifi-api", "http://h:8080/nifi-api"),
            ("https://h/proxy", "https://h/proxy/nifi-api"),
        ] {
            assert_eq!(api_base(input).unwrap().as_str(), want, "{input}");
        }
        assert!(api_base("ftp://h/nifi").is_err());
        assert!(api_base("not a url").is_err());
    }
}
