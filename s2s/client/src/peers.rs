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

/// Remembers which peers failed recently, per peer and optionally per port.
#[derive(Debug, Default)]
pub(crate) struct Penalties {
    until: HashMap<(String, Option<String>), Instant>,
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
        self.until.retain(|_, t| *t > now);
        if self.until.len() != before {
            crate::metrics::penalized_peers(self.until.len());
        }
        self.until.contains_key(&(addr.to_owned(), None))
            || self
                .until
                .contains_key(&(addr.to_owned(), Some(port_id.to_owned())))
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
    fn overrides_map_advertised_addresses() {
        let mut o = HashMap::new();
        o.insert("nifi:10000".to_owned(), "127.0.0.1:10001".to_owned());
        assert_eq!(resolve(&o, "nifi:10000"), "127.0.0.1:10001");
        assert_eq!(resolve(&o, "other:1"), "other:1");
        assert_eq!(format_addr("::1", 5), "[::1]:5");
    }
}
