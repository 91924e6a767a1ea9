//! The bridge against a real 2-node NiFi cluster (`cargo xtask nifi up --cluster 2`): two bridge
//! processes, `ack = "nifi"` and `ack = "spool"`, both given every node's URL, take flowfile-v3
//! POSTs from concurrent senders while one node is SIGKILLed; after the node is back, every
//! record a sender got a 200 for is pulled out of the cluster over S2S (none lost; duplicates
//! counted).
//!
//! Runs in `cargo xtask test`'s cluster lane (`NIFI_CLUSTER_URLS`, `NIFI_CLUSTER_REQUIRED=1`).
//! By hand:
//!
//! ```sh
//! cargo xtask nifi up --cluster 2
//! set -a; . target/nifi/cluster-1.18.0/cluster.env; set +a
//! cargo test -p nifi-s2s-bridge --test e2e_cluster -- --nocapture
//! ```

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use nifi_testkit::PortPair;
use nifi_testkit::cluster::Cluster;

/// The kit's cluster named by `NIFI_CLUSTER_URLS`, or `None` (skip) when that is not set.
fn cluster_or_skip() -> Option<Cluster> {
    let Some(urls) = std::env::var("NIFI_CLUSTER_URLS")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var_os("NIFI_CLUSTER_REQUIRED").is_none(),
            "NIFI_CLUSTER_REQUIRED is set but NIFI_CLUSTER_URLS is not: the cluster lane did not start"
        );
        eprintln!("SKIPPED (no NiFi cluster): set NIFI_CLUSTER_URLS (cluster.env)");
        return None;
    };
    let version = std::env::var("NIFI_CLUSTER_VERSION")
        .unwrap_or_else(|_| nifi_testkit::provision::DEFAULT_VERSION.into());
    let c = Cluster::from_state(&version).expect("the kit's cluster state");
    let recorded: Vec<&str> = c.nodes().iter().map(|n| n.url.as_str()).collect();
    assert_eq!(
        urls.split(',').collect::<Vec<_>>(),
        recorded,
        "NIFI_CLUSTER_URLS is not the kit's cluster {version}"
    );
    Some(c)
}

fn ffv3(attrs: &[(&str, &str)], content: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"NiFiFF3");
    let len = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as u16).to_be_bytes());
    len(out, attrs.len());
    for (k, v) in attrs {
        len(out, k.len());
        out.extend_from_slice(k.as_bytes());
        len(out, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(&(content.len() as u64).to_be_bytes());
    out.extend_from_slice(content);
}

/// Records per POST.
const RECORDS: u64 = 10;
/// Concurrent senders per bridge.
const SENDERS: u64 = 4;

/// What the senders of one bridge saw.
#[derive(Default)]
struct Load {
    /// Ids of records in POSTs answered 200.
    acked: Vec<u64>,
    /// POSTs answered otherwise (status or error), with the time since the kill.
    refused: Vec<String>,
}

/// `SENDERS` tasks POSTing flowfile-v3 bodies of `RECORDS` records (ids `sender * 10^7 + n`)
/// until `stop`.
fn load(
    bridge_url: String,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Load>>, Vec<tokio::task::JoinHandle<()>>) {
    let out = Arc::new(Mutex::new(Load::default()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let tasks = (0..SENDERS)
        .map(|s| {
            let (out, stop, http, url) =
                (out.clone(), stop.clone(), http.clone(), bridge_url.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<u64> = (n..n + RECORDS).map(|i| s * 10_000_000 + i).collect();
                    n += RECORDS;
                    let mut body = Vec::new();
                    for id in &ids {
                        let id_s = id.to_string();
                        ffv3(
                            &[("id", &id_s)],
                            format!("record {id}").as_bytes(),
                            &mut body,
                        );
                    }
                    let r = http
                        .post(&url)
                        .header("content-type", "application/flowfile-v3")
                        .body(body)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => out.lock().unwrap().acked.extend(ids),
                        Ok(r) => {
                            let st = r.status();
                            let text = r.text().await.unwrap_or_default();
                            out.lock().unwrap().refused.push(format!("{st}: {text}"));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => {
                            out.lock().unwrap().refused.push(e.to_string());
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            })
        })
        .collect();
    (out, tasks)
}

/// A port pair on the cluster whose connection holds up to 1,000,000 FlowFiles.
async fn big_pair(cluster: &Cluster, prefix: &str) -> PortPair {
    let nifi = cluster.nifi().await.unwrap();
    let pair = nifi.port_pair(prefix).await.unwrap();
    // In a cluster, NiFi changes that connection only while its destination is stopped.
    pair.output.stop().await.unwrap();
    nifi.set_back_pressure(&pair.input, 1_000_000)
        .await
        .unwrap();
    pair.output.start().await.unwrap();
    pair
}

/// Pulls FlowFiles from `port` over S2S (every node) until every id of `want` arrived and the
/// cluster queue is empty, or `limit` passed; counts each id.
async fn pull_back(
    cluster: &Cluster,
    pair: &PortPair,
    want: &HashSet<u64>,
    limit: Duration,
) -> HashMap<u64, u32> {
    let urls: Vec<&str> = cluster.nodes().iter().map(|n| n.url.as_str()).collect();
    let client = s2s::Client::builder(urls.join(","))
        .peer_refresh(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let t = Instant::now();
    loop {
        let mut rx = client.receive(pair.output.name()).await.unwrap();
        let mut n = 0;
        while let Some(ff) = rx.next().await.unwrap() {
            let id: u64 = ff.attribute("id").unwrap().parse().unwrap();
            *seen.entry(id).or_default() += 1;
            n += 1;
        }
        rx.confirm().await.unwrap();
        if n == 0 {
            let covered = want.iter().all(|i| seen.contains_key(i));
            if covered
                && cluster
                    .queued_total(pair.input.connection_id())
                    .await
                    .is_ok_and(|q| q == 0)
            {
                break;
            }
            if t.elapsed() > limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    client.close().await;
    seen
}

/// Sum of the samples of `name` in the Prometheus text `metrics` whose labels include every
/// `key="value"` of `labels`.
fn metric(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0
}

/// Whether `metrics` has a sample of `name` with `peer="<peer>"`.
fn has_peer_sample(metrics: &str, name: &str, peer: &str) -> bool {
    metrics
        .lines()
        .any(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("peer=\"{peer}\"")))
}

/// The bridge's `/metrics` per node of the cluster against what landed in each node's queue:
/// per-peer transaction and FlowFile counts for both nodes, the killed node's failures and
/// penalty. Waits (spool: background forwarding) until the bridge's sent count covers the
/// `acked` records. Returns a report line.
async fn check_per_peer_metrics(
    cluster: &Cluster,
    bridge: &BridgeProc,
    pair: &PortPair,
    ack: &str,
    acked: usize,
    victim: usize,
) -> String {
    let port = pair.input.name();
    let send = [("direction", "send"), ("port", port)];
    let t = Instant::now();
    let metrics = loop {
        let m = bridge.metrics().await;
        if metric(&m, "s2s_client_flowfiles_total", &send) >= acked as f64 {
            break m;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "ack={ack}: the bridge sent {} FlowFiles, {acked} acknowledged",
            metric(&m, "s2s_client_flowfiles_total", &send)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // The node-wise queue status lags the commits by a heartbeat: wait until it covers them.
    let total_ff = metric(&metrics, "s2s_client_flowfiles_total", &send) as u64;
    let t = Instant::now();
    let per = loop {
        let per = cluster
            .queued_per_node(pair.input.connection_id())
            .await
            .unwrap();
        if per.iter().map(|(_, q)| q).sum::<u64>() >= total_ff {
            break per;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "ack={ack}: queued {per:?}, the bridge counted {total_ff} committed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let errors = metric(&metrics, "s2s_client_errors_total", &send) as u64;
    let mut line = format!("ack={ack}: {errors} failed transactions/opens;");
    let mut extra_total = 0;
    for node in cluster.nodes() {
        let peer = format!("127.0.0.1:{}", node.raw_port);
        let on = [("direction", "send"), ("port", port), ("peer", &peer)];
        let tx = metric(&metrics, "s2s_client_transactions_total", &on) as u64;
        let ff = metric(&metrics, "s2s_client_flowfiles_total", &on) as u64;
        let failures = metric(
            &metrics,
            "s2s_client_peer_failures_total",
            &[("peer", &peer)],
        ) as u64;
        let penalized = metric(&metrics, "s2s_client_peer_penalized", &[("peer", &peer)]);
        let queued = per
            .iter()
            .find(|(k, _)| *k == node.number)
            .map_or(0, |(_, q)| *q);
        line += &format!(
            " node {} ({peer}): {tx} transactions, {ff} FlowFiles, queued {queued}, {failures} failures, penalized {penalized};",
            node.number
        );
        assert!(
            tx > 0 && ff > 0,
            "ack={ack}: no per-peer counts for node {} ({peer}) on /metrics:\n{metrics}",
            node.number
        );
        // Everything the bridge counted as committed on a node is in that node's queue; a
        // node holds more only by transactions NiFi committed but whose answer was lost.
        assert!(
            ff <= queued,
            "ack={ack}: node {}: {ff} FlowFiles committed per /metrics, {queued} queued",
            node.number
        );
        extra_total += queued - ff;
        if node.number == victim {
            assert!(
                failures > 0 && has_peer_sample(&metrics, "s2s_client_peer_penalized", &peer),
                "ack={ack}: the killed node {peer} is not penalized on /metrics:\n{metrics}"
            );
        }
    }
    // ack=nifi: a transaction carries at most one POST of every sender, so each failed one
    // can leave at most that many uncounted in NiFi (the spool forwards bigger batches).
    assert!(
        ack != "nifi" || extra_total <= errors * RECORDS * SENDERS,
        "ack={ack}: {extra_total} queued beyond the committed count, {errors} failures"
    );
    line + &format!(" {extra_total} queued beyond the committed count")
}

/// Deletes a port pair; right after the last receive a node can still call the queue not empty
/// (409): retried.
async fn delete_pair(pair: PortPair) {
    for attempt in 1..=10 {
        match pair.clone().delete().await {
            Ok(()) => return,
            Err(e) if attempt < 10 => {
                eprintln!("cleanup attempt {attempt}: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => panic!("deleting the port pair: {e}"),
        }
    }
}

#[tokio::test]
async fn bridge_ack_nifi_and_spool_lose_no_acknowledged_record_when_a_node_dies() {
    let Some(mut cluster) = cluster_or_skip() else {
        return;
    };
    for k in 1..=cluster.nodes().len() {
        if !cluster.node(k).unwrap().alive() {
            eprintln!("node {k} is down (an earlier test failed?): starting it");
            cluster
                .start_node(k, Duration::from_secs(300))
                .await
                .unwrap();
        }
    }
    let urls: Vec<String> = cluster.nodes().iter().map(|n| n.url.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    // One bridge per ack mode, each into its own port pair, both loaded at once: one kill and
    // one restart serve both.
    let mut runs = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    for ack in ["nifi", "spool"] {
        let pair = big_pair(&cluster, &format!("bridge-cluster-{ack}")).await;
        let mut args: Vec<std::ffi::OsString> = vec![
            "--ack".into(),
            ack.into(),
            "--nifi-url".into(),
            urls.join(",").into(),
            "--port-name".into(),
            pair.input.name().into(),
            "--stage-dir".into(),
            dir.path().join(format!("stage-{ack}")).into(),
        ];
        if ack == "spool" {
            args.push("--spool-dir".into());
            args.push(dir.path().join("spool").into());
        }
        let log = dir.path().join(format!("bridge-{ack}.log"));
        let bridge = BridgeProc::spawn(args, Some(&log));
        bridge.wait_healthy().await;
        runs.push((ack, pair, bridge, log));
    }
    let loads: Vec<_> = runs
        .iter()
        .map(|(_, _, bridge, _)| load(bridge.url("/contentListener"), stop.clone()))
        .collect();

    // Load on both nodes for 4 s, then kill the node that is not the coordinator (the
    // coordinator kill is s2s's cluster test).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let statuses = cluster.api_get("/controller/cluster").await.unwrap();
    let coordinator_port = statuses["cluster"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| {
            n["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "Cluster Coordinator"))
        })
        .and_then(|n| n["apiPort"].as_u64())
        .expect("a coordinator") as u16;
    let victim = cluster
        .nodes()
        .iter()
        .find(|n| n.web_port != coordinator_port)
        .unwrap()
        .number;
    // Both bridges must be putting records on the victim, or its loss would prove nothing.
    let t = Instant::now();
    for (ack, pair, _, _) in &runs {
        loop {
            let per = cluster
                .queued_per_node(pair.input.connection_id())
                .await
                .unwrap();
            if per.iter().any(|(n, q)| *n == victim && *q > 0) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "ack={ack}: node {victim} got nothing in 60 s: {per:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let before: Vec<usize> = loads
        .iter()
        .map(|(l, _)| l.lock().unwrap().acked.len())
        .collect();
    let killed_at = Instant::now();
    cluster.kill_node(victim).unwrap();
    eprintln!("SIGKILLed node {victim} with {before:?} records acknowledged (ack nifi, spool)");
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for (l, tasks) in loads {
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(90), t)
                .await
                .expect("a sender ends")
                .unwrap();
        }
        let l = std::mem::take(&mut *l.lock().unwrap());
        results.push(l);
    }
    eprintln!(
        "load stopped {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );
    let rejoin = cluster
        .start_node(victim, Duration::from_secs(300))
        .await
        .unwrap();
    eprintln!(
        "node {victim} restarted and CONNECTED in {:.1} s",
        rejoin.as_secs_f64()
    );

    let mut report = BTreeMap::new();
    for ((ack, pair, bridge, log), l) in runs.into_iter().zip(results) {
        assert!(!l.acked.is_empty(), "ack={ack}: nothing acknowledged");
        let per_peer =
            check_per_peer_metrics(&cluster, &bridge, &pair, ack, l.acked.len(), victim).await;
        eprintln!("{per_peer}");
        let want: HashSet<u64> = l.acked.iter().copied().collect();
        // Spooled records are forwarded by the bridge in the background: the pull waits.
        let seen = pull_back(&cluster, &pair, &want, Duration::from_secs(180)).await;
        let missing: Vec<u64> = want
            .iter()
            .copied()
            .filter(|i| !seen.contains_key(i))
            .collect();
        let duplicates: u64 = seen.values().map(|c| u64::from(*c) - 1).sum();
        let unacked = seen.keys().filter(|i| !want.contains(i)).count();
        let line = format!(
            "{} records acknowledged, {} POSTs refused; in NiFi: {} distinct, {} missing, {duplicates} duplicates, {unacked} not acknowledged to the sender",
            want.len(),
            l.refused.len(),
            seen.len(),
            missing.len()
        );
        eprintln!(
            "ack={ack}: {line}; first refusals {:?}",
            &l.refused[..l.refused.len().min(3)]
        );
        if !missing.is_empty() {
            eprintln!(
                "bridge log ({}):\n{}",
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            missing.is_empty(),
            "ack={ack}: acknowledged records lost: {:?}",
            &missing[..missing.len().min(20)]
        );
        report.insert(ack, line);
        drop(bridge);
        delete_pair(pair).await;
    }
    eprintln!("{report:#?}");
}
