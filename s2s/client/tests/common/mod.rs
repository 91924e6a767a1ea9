//! What the e2e test binaries share (each `tests/*.rs` that needs it declares `mod common;`):
//! checkable test data, and the send / receive cells of the conformance matrix, which assert on
//! what NiFi queued or delivered, byte by byte.

// Each test binary uses its own subset.
#![allow(dead_code)]

pub mod proxy;

use std::time::Duration;

use nifi_testkit::{Nifi, QueuedFlowFile};
use s2s::{Client, FlowFile};

/// How long NiFi gets to queue or release FlowFiles.
pub const WAIT: Duration = Duration::from_secs(60);

/// Deterministic pseudo-random bytes (xorshift), so every byte can be checked.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `n` FlowFiles of growing size (FlowFile `i` has `i * step + 1` bytes), numbered by an `i`
/// attribute, tagged, with a non-ASCII attribute so modified UTF-8 is exercised too.
pub fn numbered(n: u64, step: usize, tag: &str) -> Vec<FlowFile> {
    (0..n)
        .map(|i| {
            FlowFile::new(pattern(i + 7, (i as usize) * step + 1))
                .with_attribute("i", i.to_string())
                .with_attribute("tag", tag)
                .with_attribute("ключ-😀", format!("значение {i}"))
        })
        .collect()
}

fn index(ff: &FlowFile) -> u64 {
    ff.attribute("i")
        .and_then(|i| i.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Asserts that `got` (any order) is `sent`: same count, every byte, every attribute sent.
pub fn assert_received(mut got: Vec<FlowFile>, sent: &[FlowFile], label: &str) {
    assert_eq!(got.len(), sent.len(), "{label}: FlowFiles received");
    got.sort_by_key(index);
    for (g, s) in got.iter().zip(sent) {
        assert_eq!(
            g.content,
            s.content,
            "{label}: content of {:?}",
            s.attribute("i")
        );
        for (k, v) in &s.attributes {
            assert_eq!(g.attribute(k), Some(v.as_str()), "{label}: attribute {k}");
        }
    }
}

/// Asserts that NiFi's queue listing (any order; NiFi's is not send order) holds `sent`.
pub fn assert_queued(mut q: Vec<QueuedFlowFile>, sent: &[FlowFile], label: &str) {
    assert_eq!(q.len(), sent.len(), "{label}: FlowFiles queued");
    q.sort_by_key(|f| {
        f.attributes
            .get("i")
            .and_then(|i| i.parse().ok())
            .unwrap_or(u64::MAX)
    });
    for (g, s) in q.iter().zip(sent) {
        assert_eq!(
            g.content,
            s.content.as_ref(),
            "{label}: content of {:?}",
            s.attribute("i")
        );
        for (k, v) in &s.attributes {
            assert_eq!(g.attributes.get(k), Some(v), "{label}: attribute {k}");
        }
    }
}

/// Receives from `port` in as many transactions as NiFi wants, confirming each, until
/// `expected` FlowFiles arrived or a transaction comes back empty.
pub async fn receive_all(c: &Client, port: &str, expected: usize) -> Vec<FlowFile> {
    let mut got = Vec::new();
    for _ in 0..20 {
        let mut rx = c.receive(port).await.unwrap();
        let mut n = 0;
        while let Some(ff) = rx.next().await.unwrap() {
            got.push(ff);
            n += 1;
        }
        rx.confirm().await.unwrap();
        if n == 0 || got.len() >= expected {
            break;
        }
    }
    got
}

/// SEND cell: `n` FlowFiles in one transaction through `c`; asserts attributes and content of
/// each in NiFi's queue.
pub async fn send_cell(nifi: &Nifi, c: &Client, label: &str, n: u64) {
    let port = nifi.input_port(&format!("send-{label}")).await.unwrap();
    let sent = numbered(n, 4099, label);
    let mut tx = c.send_transaction(port.name()).await.unwrap();
    for ff in &sent {
        tx.send(ff.clone()).await.unwrap();
    }
    let s = tx.commit().await.unwrap();
    assert_eq!((s.flowfiles, s.transactions), (n, 1), "{label}");
    port.wait_for_queued(n, WAIT).await.unwrap();
    assert_queued(port.queued_flowfiles().await.unwrap(), &sent, label);
    port.delete().await.unwrap();
}

/// RECEIVE cell: `filler` puts `n` FlowFiles in front of an output port, `c` pulls them; checks
/// every byte and attribute, that NiFi released what was confirmed, and that receiving from the
/// now empty port is an empty transaction that leaves the connection usable.
pub async fn receive_cell(nifi: &Nifi, filler: &Client, c: &Client, label: &str, n: u64) {
    let pair = nifi.port_pair(&format!("recv-{label}")).await.unwrap();
    let sent = numbered(n, 3011, label);
    filler
        .send_batch(pair.input.name(), sent.clone())
        .await
        .unwrap();
    pair.output.wait_for_queued(n, WAIT).await.unwrap();
    let got = receive_all(c, pair.output.name(), sent.len()).await;
    assert_received(got, &sent, label);
    pair.output.wait_for_empty(WAIT).await.unwrap();
    let mut rx = c.receive(pair.output.id()).await.unwrap();
    assert!(rx.next().await.unwrap().is_none(), "{label}: empty port");
    rx.confirm().await.unwrap();
    pair.delete().await.unwrap();
}
