//! Peer bookkeeping: weights by queued FlowFiles, penalization, address overrides.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::discovery::Direction;

/// A NiFi node as advertised in its peer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Advertised host name.
    pub host: String,
    /// Advertised RAW S2S port.
    pub port: u16,
    /// Whether the peer requires TLS.
    pub secure: bool,
    /// FlowFiles queued on that node (0 on a standalone NiFi).
    pub flowfile_count: u32,
}

impl Peer {
    /// `host:port` as advertised (the key of the override map).
    pub fn advertised(&self) -> String {
        format_addr(&self.host, self.port)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.advertised())
    }
}

pub(crate) fn format_addr(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Applies the override map: advertised `host:port` → reachable `host:port`.
pub(crate) fn resolve(overrides: &HashMap<String, String>, advertised: &str) -> String {
    overrides
        .get(advertised)
        .cloned()
        .unwrap_or_else(|| advertised.to_owned())
}

/// Weights (percent, floored to 2 decimals) as NiFi's Java `PeerSelector` computes them:
/// senders favour idle nodes, receivers drain the fullest.
pub(crate) fn weights(peers: &[Peer], direction: Direction) -> Vec<f64> {
    let n = peers.len();
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![100.0];
    }
    let total: u64 = peers.iter().map(|p| u64::from(p.flowfile_count)).sum();
    peers
        .iter()
        .map(|p| {
            let w = if total == 0 {
                100.0 / n as f64
            } else {
                let share = p.flowfile_count as f64 / total as f64;
                match direction {
                    Direction::Receive => 100.0 * share,
                    Direction::Send => 100.0 * (1.0 - share) / (n - 1) as f64,
                }
            };
            (w * 100.0).floor() / 100.0
        })
        .collect()
}

/// Picks one index by weight among the candidates; `r01` is a uniform draw in `[0, 1)`.
/// Zero-weight peers are chosen only when every candidate weighs zero.
pub(crate) fn pick(weights: &[f64], r01: f64) -> Option<usize> {
    if weights.is_empty() {
        return None;
    }
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 {
        return Some(((r01 * weights.len() as f64) as usize).min(weights.len() - 1));
    }
    let r = r01 * sum;
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if *w > 0.0 && r < acc {
            return Some(i);
        }
    }
    weights.iter().rposition(|w| *w > 0.0)
}

/// What the client knows about one node of the peer list: see [`Client::peer_status`](crate::Client::peer_status).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PeerStatus {
    /// The node as advertised (with its queued FlowFile count from the last peer-list fetch).
    pub peer: Peer,
    /// Its share (percent) of new transactions in the client's direction of use: a send
    /// favours idle nodes, a receive the fullest, as NiFi's Java `PeerSelector` does.
    pub weight: f64,
    /// How much longer the node is skipped after a failure (the longest of its peer-wide and
    /// per-port penalties), `None` when it is not penalized.
    pub penalized_for: Option<Duration>,
    /// The last error seen with this node, if any (kept after the penalty expired).
    pub last_error: Option<String>,
}

/// Remembers which peers failed recently, per peer and optionally per port.
#[derive(Debug, Default)]
pub(crate) struct Penalties {
    until: HashMap<(String, Option<String>), Instant>,
    last_error: HashMap<String, String>,
}

impl Penalties {
    pub(crate) fn penalize(
        &mut self,
        addr: &str,
        port_id: Option<&str>,
        for_: Duration,
        now: Instant,
    ) {
        self.until
            .insert((addr.to_owned(), port_id.map(str::to_owned)), now + for_);
    }

    /// Remembers `error` as the last one seen with `addr`.
    pub(crate) fn note_error(&mut self, addr: &str, error: String) {
        self.last_error.insert(addr.to_owned(), error);
    }

    /// The last error seen with `addr`.
    pub(crate) fn last_error(&self, addr: &str) -> Option<String> {
        self.last_error.get(addr).cloned()
    }

    /// The longest penalty in force for `addr`, peer-wide or for any port.
    pub(crate) fn remaining_any(&self, addr: &str, now: Instant) -> Option<Duration> {
        self.until
            .iter()
            .filter(|((a, _), t)| a == addr && **t > now)
            .map(|(_, t)| *t - now)
            .max()
    }

    /// How long `addr` stays penalized for `port_id` (peer-wide or per port), if at all.
    pub(crate) fn remaining(&self, addr: &str, port_id: &str, now: Instant) -> Option<Duration> {
        [None, Some(port_id.to_owned())]
            .into_iter()
            .filter_map(|p| self.until.get(&(addr.to_owned(), p)))
            .filter(|t| **t > now)
            .map(|t| *t - now)
            .max()
    }

    /// Penalties (peer, or peer × port) still in force.
    pub(crate) fn active(&self, now: Instant) -> usize {
        self.until.values().filter(|t| **t > now).count()
    }

    pub(crate) fn is_penalized(&mut self, addr: &str, port_id: &str, now: Instant) -> bool {
        let before = self.until.len();
        let mut expired = Vec::new();
        self.until.retain(|(a, _), t| {
            let keep = *t > now;
            if !keep {
                expired.push(a.clone());
            }
            keep
        });
        if self.until.len() != before {
            crate::metrics::penalized_peers(self.until.len());
            for a in expired {
                if !self.until.keys().any(|(k, _)| *k == a) {
                    crate::metrics::peer_penalized(&a, false);
                }
            }
        }
        self.until.contains_key(&(addr.to_owned(), None))
            || self
                .until
                .contains_key(&(addr.to_owned(), Some(port_id.to_owned())))
    }
}

/// The peer file ([`ClientBuilder::peer_persistence`](crate::ClientBuilder::peer_persistence)):
/// one JSON object, rewritten whole after every successful peer-list fetch.
///
/// ```json
/// {"version":1,"transport":"raw","savedAtUnixSecs":1765000000,
///  "peers":[{"host":"nifi-1","port":10443,"secure":true,"flowFileCount":12}],
///  "site":{"rawPort":10443,"httpPort":8443,"secure":true,
///          "inputPorts":[{"id":"…","name":"in","state":"RUNNING"}],"outputPorts":[]}}
/// ```
///
/// `version` is 1; a file with another version is ignored (with a warning). `transport` is
/// `raw` (peers carry RAW ports) or `http` (web ports): a client of the other transport ignores
/// the peers. `site` is the discovery answer, so that ports are found by name while no
/// bootstrap URL answers.
pub(crate) mod file {
    use serde::{Deserialize, Serialize};
    use std::path::Path;

    use super::Peer;
    use crate::discovery::{PortInfo, SiteInfo};
    use crate::error::{Error, Kind};

    /// The format version this client writes and reads.
    pub(crate) const VERSION: u32 = 1;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct FileV1 {
        version: u32,
        transport: String,
        #[serde(default)]
        saved_at_unix_secs: u64,
        peers: Vec<JsonPeer>,
        #[serde(default)]
        site: Option<JsonSite>,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct JsonPeer {
        host: String,
        port: u16,
        secure: bool,
        #[serde(default)]
        flow_file_count: u32,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct JsonSite {
        raw_port: Option<u16>,
        http_port: Option<u16>,
        secure: bool,
        #[serde(default)]
        input_ports: Vec<JsonPort>,
        #[serde(default)]
        output_ports: Vec<JsonPort>,
    }

    #[derive(Serialize, Deserialize)]
    struct JsonPort {
        id: String,
        name: String,
        #[serde(default)]
        state: String,
    }

    fn ports(p: &[PortInfo]) -> Vec<JsonPort> {
        p.iter()
            .map(|p| JsonPort {
                id: p.id.clone(),
                name: p.name.clone(),
                state: p.state.clone(),
            })
            .collect()
    }

    fn unports(p: Vec<JsonPort>) -> Vec<PortInfo> {
        p.into_iter()
            .map(|p| PortInfo {
                id: p.id,
                name: p.name,
                state: p.state,
            })
            .collect()
    }

    /// What a peer file holds.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct Saved {
        pub(crate) transport: String,
        pub(crate) peers: Vec<Peer>,
        pub(crate) site: Option<SiteInfo>,
    }

    /// Serializes a peer file.
    pub(crate) fn encode(transport: &str, peers: &[Peer], site: Option<&SiteInfo>) -> Vec<u8> {
        let f = FileV1 {
            version: VERSION,
            transport: transport.to_owned(),
            saved_at_unix_secs: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            peers: peers
                .iter()
                .map(|p| JsonPeer {
                    host: p.host.clone(),
                    port: p.port,
                    secure: p.secure,
                    flow_file_count: p.flowfile_count,
                })
                .collect(),
            site: site.map(|s| JsonSite {
                raw_port: s.raw_port,
                http_port: s.http_port,
                secure: s.secure,
                input_ports: ports(&s.input_ports),
                output_ports: ports(&s.output_ports),
            }),
        };
        let mut out = serde_json::to_vec_pretty(&f).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Parses a peer file; a bad or foreign file is an [`Error`] naming what is wrong.
    pub(crate) fn decode(body: &[u8]) -> Result<Saved, Error> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let bad = |m: String| Error::new(Kind::InvalidInput(m));
        let v: Version = serde_json::from_slice(body).map_err(|e| {
            Error::with_source(
                Kind::InvalidInput("peer file is not JSON with a version".into()),
                e,
            )
        })?;
        if v.version != VERSION {
            return Err(bad(format!(
                "peer file has version {}, this client reads version {VERSION}",
                v.version
            )));
        }
        let f: FileV1 = serde_json::from_slice(body)
            .map_err(|e| Error::with_source(Kind::InvalidInput("peer file".into()), e))?;
        Ok(Saved {
            transport: f.transport,
            peers: f
                .peers
                .into_iter()
                .map(|p| Peer {
                    host: p.host,
                    port: p.port,
                    secure: p.secure,
                    flowfile_count: p.flow_file_count,
                })
                .collect(),
            site: f.site.map(|s| SiteInfo {
                raw_port: s.raw_port,
                http_port: s.http_port,
                secure: s.secure,
                input_ports: unports(s.input_ports),
                output_ports: unports(s.output_ports),
            }),
        })
    }

    /// Writes `body` to `path` atomically: a temporary file in the same directory, synced,
    /// then renamed over `path` (readers see the old or the new file, never a torn one).
    pub(crate) fn write_atomic(path: &Path, body: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "peers".into());
        let tmp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            fastrand::u64(..)
        ));
        let res = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// Reads and parses the peer file at `path`.
    pub(crate) fn read(path: &Path) -> Result<Saved, Error> {
        let body = std::fs::read(path).map_err(|e| {
            Error::with_source(
                Kind::InvalidInput(format!("reading peer file {}", path.display())),
                e,
            )
        })?;
        decode(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(host: &str, count: u32) -> Peer {
        Peer {
            host: host.into(),
            port: 10443,
            secure: true,
            flowfile_count: count,
        }
    }

    #[test]
    fn tv8_weights() {
        // docs/site-to-site.md §14 TV8: nifi1 holds 120 FlowFiles, nifi2 none.
        let peers = [peer("nifi1", 120), peer("nifi2", 0)];
        assert_eq!(weights(&peers, Direction::Send), vec![0.0, 100.0]);
        assert_eq!(weights(&peers, Direction::Receive), vec![100.0, 0.0]);
        assert_eq!(weights(&peers[..1], Direction::Send), vec![100.0]);
        let three = [peer("a", 0), peer("b", 0), peer("c", 0)];
        assert_eq!(weights(&three, Direction::Send), vec![33.33, 33.33, 33.33]);
    }

    #[test]
    fn pick_respects_weights() {
        let w = [0.0, 100.0];
        for r in [0.0, 0.3, 0.999] {
            assert_eq!(pick(&w, r), Some(1));
        }
        assert_eq!(pick(&[50.0, 50.0], 0.1), Some(0));
        assert_eq!(pick(&[50.0, 50.0], 0.9), Some(1));
        assert_eq!(pick(&[0.0, 0.0], 0.9), Some(1));
        assert_eq!(pick(&[], 0.5), None);
    }

    #[test]
    fn penalties_expire_and_scope_by_port() {
        let now = Instant::now();
        let mut p = Penalties::default();
        p.penalize("h:1", Some("port-a"), Duration::from_secs(3), now);
        assert!(p.is_penalized("h:1", "port-a", now));
        assert!(!p.is_penalized("h:1", "port-b", now));
        p.penalize("h:2", None, Duration::from_secs(3), now);
        assert!(p.is_penalized("h:2", "anything", now));
        assert_eq!(p.remaining("h:2", "x", now), Some(Duration::from_secs(3)));
        assert_eq!(p.remaining("h:1", "port-b", now), None);
        assert!(!p.is_penalized("h:2", "anything", now + Duration::from_secs(4)));
    }

    #[test]
    fn peer_file_round_trips_atomically_and_rejects_other_versions() {
        let dir = std::env::temp_dir().join(format!("s2s-peerfile-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("peers.json");
        let site = crate::discovery::SiteInfo {
            raw_port: Some(10443),
            http_port: None,
            secure: false,
            input_ports: vec![crate::discovery::PortInfo {
                id: "id-1".into(),
                name: "in".into(),
                state: "RUNNING".into(),
            }],
            output_ports: vec![],
        };
        let peers = vec![peer("a", 3), peer("b", 0)];
        file::write_atomic(&path, &file::encode("raw", &peers, Some(&site))).unwrap();
        let saved = file::read(&path).unwrap();
        assert_eq!(saved.peers, peers);
        assert_eq!(saved.transport, "raw");
        assert_eq!(saved.site, Some(site));
        // Rewriting replaces the file whole and leaves no temporary file behind.
        file::write_atomic(&path, &file::encode("http", &peers[..1], None)).unwrap();
        assert_eq!(file::read(&path).unwrap().peers.len(), 1);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let e = file::decode(br#"{"version":2,"transport":"raw","peers":[]}"#).unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        assert!(file::decode(b"garbage").is_err());
        assert!(file::read(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn penalty_status_and_last_error() {
        let now = Instant::now();
        let mut p = Penalties::default();
        p.penalize("h:1", Some("port-a"), Duration::from_secs(3), now);
        p.penalize("h:1", None, Duration::from_secs(1), now);
        p.note_error("h:1", "boom".into());
        assert_eq!(p.remaining_any("h:1", now), Some(Duration::from_secs(3)));
        assert_eq!(p.remaining_any("h:1", now + Duration::from_secs(5)), None);
        assert_eq!(p.last_error("h:1").as_deref(), Some("boom"));
        assert_eq!(p.last_error("h:2"), None);
    }

    #[test]
    fn overrides_map_advertised_addresses() {
        let mut o = HashMap::new();
        o.insert("nifi:10000".to_owned(), "127.0.0.1:10001".to_owned());
        assert_eq!(resolve(&o, "nifi:10000"), "127.0.0.1:10001");
        assert_eq!(resolve(&o, "other:1"), "other:1");
        assert_eq!(format_addr("::1", 5), "[::1]:5");
    }
}
