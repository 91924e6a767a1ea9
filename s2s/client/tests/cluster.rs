//! Against a real NiFi cluster (`cargo xtask nifi up --cluster 2`, standalone ZooKeeper):
//! transactions spread over the nodes by the FlowFile counts NiFi reports (and 1 vs 2 nodes'
//! throughput); a node SIGKILLed while a send loop runs loses nothing, the bootstrap URLs and the
//! persisted peer list get a client going while it is down, and it receives again once it
//! rejoined; killing the cluster coordinator never stalls sending longer than the configured
//! timeouts; an output port is drained across both nodes byte for byte.
//!
//! `cargo xtask test` runs them in its cluster lane (`NIFI_CLUSTER_URLS` and
//! `NIFI_CLUSTER_REQUIRED=1` set: unreachable = failure). By hand they run when
//! `NIFI_CLUSTER_URLS` is set (sourced from the kit's `cluster.env`):
//!
//! ```sh
//! cargo xtask nifi up --cluster 2
//! set -a; . target/nifi/cluster-1.18.0/cluster.env; set +a
//! cargo test -p nifi-s2s --test cluster -- --nocapture
//! cargo xtask nifi down --cluster
//! ```
//!
//! They find the kit's record of that cluster (PIDs, homes; `target/nifi/cluster-<V>/cluster.json`,
//! V from `NIFI_CLUSTER_VERSION`) to kill and restart nodes, and run one at a time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nifi_testkit::cluster::Cluster;
use s2s::{Client, FlowFile};

/// One cluster, one test at a time: the kill test would disturb the shares test.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
        eprintln!(
            "SKIPPED (no NiFi cluster): set NIFI_CLUSTER_URLS (source target/nifi/cluster-<V>/cluster.env after `cargo xtask nifi up --cluster 2`)"
        );
        return None;
    };
    let version = std::env::var("NIFI_CLUSTER_VERSION")
        .unwrap_or_else(|_| nifi_testkit::provision::DEFAULT_VERSION.into());
    let c = Cluster::from_state(&version).expect("the kit's cluster state");
    let recorded: Vec<&str> = c.nodes().iter().map(|n| n.url.as_str()).collect();
    let given: Vec<&str> = urls.split(',').collect();
    assert_eq!(
        given, recorded,
        "NIFI_CLUSTER_URLS is not the kit's cluster {version}"
    );
    Some(c)
}

/// Takes the one-test-at-a-time lock, then reads the cluster (a test before this one may have
/// restarted a node: new PID) and restarts any node a failed test left killed.
async fn cluster_locked() -> Option<(tokio::sync::MutexGuard<'static, ()>, Cluster)> {
    let serial = SERIAL.lock().await;
    let mut cluster = cluster_or_skip()?;
    for k in 1..=cluster.nodes().len() {
        if !cluster.node(k).unwrap().alive() {
            eprintln!("node {k} is down (an earlier test failed?): starting it");
            cluster
                .start_node(k, Duration::from_secs(300))
                .await
                .unwrap();
        }
    }
    Some((serial, cluster))
}

/// The weights (percent) NiFi's `PeerSelector` gives senders: `(1 - share) / (n - 1)`, equal
/// when nothing is queued anywhere.
fn send_weights(counts: &[u64]) -> Vec<f64> {
    let n = counts.len() as f64;
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| {
            if total == 0 {
                100.0 / n
            } else {
                100.0 * (1.0 - *c as f64 / total as f64) / (n - 1.0)
            }
        })
        .collect()
}

fn flowfile(id: u64, tag: &str) -> FlowFile {
    FlowFile::new(format!("flowfile {id}"))
        .with_attribute("id", id.to_string())
        .with_attribute("tag", tag)
}

/// Waits until `conn` holds `n` FlowFiles across the cluster; returns the per-node counts.
async fn wait_cluster_queued(c: &Cluster, conn: &str, n: u64) -> Vec<(usize, u64)> {
    let t = Instant::now();
    loop {
        match c.queued_per_node(conn).await {
            Ok(per) if per.iter().map(|(_, q)| q).sum::<u64>() >= n => return per,
            Ok(per) if t.elapsed() > Duration::from_secs(120) => {
                panic!("{n} FlowFiles queued across the cluster: last {per:?}")
            }
            Err(e) if t.elapsed() > Duration::from_secs(120) => panic!("queue counts: {e}"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

#[tokio::test]
async fn flowfiles_spread_over_nodes_by_reported_counts() {
    let Some((_serial, cluster)) = cluster_locked().await else {
        return;
    };
    let nifi = cluster.nifi().await.unwrap();
    let port = nifi.input_port("cluster-share").await.unwrap();
    nifi.set_back_pressure(&port, 1_000_000).await.unwrap();
    // Unequal queues first, each straight to one node: 6,000 on node 1, 2,000 on node 2, so the
    // weights NiFi's counts give senders are 25 % / 75 %, not an even split.
    let preload = [6_000u64, 2_000];
    for (k, n) in preload.iter().enumerate() {
        let node = cluster.node(k + 1).unwrap();
        let direct = Client::builder(&node.url)
            .single_node(true)
            .build()
            .unwrap();
        let ffs = (0..*n).map(|i| flowfile(i, "preload")).collect();
        direct.send_batch(port.name(), ffs).await.unwrap();
        direct.close().await;
    }
    let per = wait_cluster_queued(&cluster, port.connection_id(), preload.iter().sum()).await;
    assert_eq!(
        per.iter().map(|(_, q)| *q).collect::<Vec<_>>(),
        preload,
        "preload per node"
    );
    let client = Client::builder(cluster_urls(&cluster)).build().unwrap();
    // Counts come with heartbeats (3 s): let them settle, then read what the client will see.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let peers = client.peers().await.unwrap();
    let mut counts = vec![0u64; cluster.nodes().len()];
    for p in &peers {
        let node = cluster
            .node_by_raw_port(p.port)
            .unwrap_or_else(|| panic!("peer {p:?} is no node of the cluster"));
        counts[node.number - 1] = u64::from(p.flowfile_count);
    }
    assert_eq!(peers.len(), cluster.nodes().len(), "peers: {peers:?}");
    let weights = send_weights(&counts);
    eprintln!("peer list: counts per node {counts:?} → send weights {weights:?} %");

    // 20,000 FlowFiles with the default client, as an application hands them over: 200 batches.
    const N: u64 = 20_000;
    const BATCH: u64 = 100;
    let t = Instant::now();
    let mut transactions = 0;
    for b in 0..N / BATCH {
        let ffs = (b * BATCH..(b + 1) * BATCH)
            .map(|i| flowfile(i, "share"))
            .collect();
        transactions += client
            .send_batch(port.name(), ffs)
            .await
            .unwrap()
            .transactions;
    }
    let took = t.elapsed();
    let per = wait_cluster_queued(
        &cluster,
        port.connection_id(),
        N + preload.iter().sum::<u64>(),
    )
    .await;
    let per: Vec<(usize, u64)> = per
        .into_iter()
        .map(|(node, q)| (node, q - preload[node - 1]))
        .collect();
    let total: u64 = per.iter().map(|(_, q)| q).sum();
    assert_eq!(total, N, "per node {per:?}");
    for (node, q) in &per {
        let share = 100.0 * *q as f64 / N as f64;
        let want = weights[node - 1];
        eprintln!("node {node}: {q} of {N} FlowFiles = {share:.1} % (weight {want:.1} %)");
        // 200 transactions: one binomial standard deviation is <= 3.5 points.
        assert!(
            (share - want).abs() <= 12.0,
            "node {node} got {share:.1} %, weight {want:.1} % ({per:?})"
        );
    }
    eprintln!(
        "{N} FlowFiles in {transactions} transactions, {:.1} s ({:.0} FlowFiles/s)",
        took.as_secs_f64(),
        N as f64 / took.as_secs_f64()
    );

    port.drain().await.unwrap();
    client.close().await;

    // Throughput, 1 node vs the cluster, same run, same port: 20,000 FlowFiles in one
    // `send_batch` (1,000 per transaction) to node 1 alone, then with the default client over
    // both nodes (parallelism auto = one transaction per usable node at once). Printed, not
    // asserted (benchmarks measure speed).
    let mut rates = Vec::new();
    for (label, single) in [("1 node", true), ("2 nodes", false)] {
        let url = if single {
            cluster.node(1).unwrap().url.clone()
        } else {
            cluster_urls(&cluster)
        };
        let c = Client::builder(&url)
            .single_node(single)
            .send_batch_count(1_000)
            .build()
            .unwrap();
        // Counts of the previous run (drained) lag by a heartbeat or two.
        tokio::time::sleep(Duration::from_secs(7)).await;
        c.peers().await.unwrap();
        let all = (0..N).map(|i| flowfile(i, label)).collect();
        let t = Instant::now();
        let s = c.send_batch(port.name(), all).await.unwrap();
        let took = t.elapsed();
        assert_eq!(s.flowfiles, N);
        let per = wait_cluster_queued(&cluster, port.connection_id(), N).await;
        rates.push(format!(
            "{label}: {N} FlowFiles in {} transactions, {:.2} s = {:.0} FlowFiles/s, per node {per:?}",
            s.transactions,
            took.as_secs_f64(),
            N as f64 / took.as_secs_f64()
        ));
        c.close().await;
        port.drain().await.unwrap();
    }
    eprintln!("throughput: {}", rates.join("; "));
    port.delete().await.unwrap();
}
/// Every node's URL, comma-separated (the builder's form of several bootstrap URLs).
fn cluster_urls(c: &Cluster) -> String {
    c.nodes()
        .iter()
        .map(|n| n.url.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The number of the node holding `role` ("Cluster Coordinator", "Primary Node").
async fn node_with_role(c: &Cluster, role: &str) -> usize {
    let statuses = c.api_get("/controller/cluster").await.unwrap();
    statuses["cluster"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| {
            n["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x.as_str() == Some(role)))
        })
        .and_then(|n| c.node_by_web_port(n["apiPort"].as_u64()? as u16))
        .unwrap_or_else(|| panic!("no node has role {role}: {statuses}"))
        .number
}

/// What the send loop saw.
#[derive(Default)]
struct Log {
    /// Commit times of batches.
    commits: Vec<Instant>,
    /// Failed attempts (each batch is resent until it commits).
    failures: Vec<(Instant, String)>,
}

const BATCH: u64 = 100;

/// The kill and receive tests' peer-list refresh (default 60 s): NiFi's counts change fast while
/// a loop sends, and a new or rejoined node shows up in the list only with a refresh.
const PEER_REFRESH: Duration = Duration::from_secs(5);

/// Waits (up to 60 s, while a send loop runs) until node `k` holds FlowFiles of `conn`; returns
/// the per-node counts.
async fn wait_node_has_some(c: &Cluster, conn: &str, k: usize) -> Vec<(usize, u64)> {
    let t = Instant::now();
    loop {
        let per = c.queued_per_node(conn).await.unwrap();
        if per.iter().any(|(n, q)| *n == k && *q > 0) {
            return per;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "node {k} got nothing in 60 s: {per:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sends batches of [`BATCH`] FlowFiles with ids from 0 up, each resent until it commits, until
/// `stop`; returns how many ids were committed.
struct SendLoop {
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl SendLoop {
    fn start(client: &Client, port: &str, tag: &'static str) -> Self {
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (client, l, s, port) = (client.clone(), log.clone(), stop.clone(), port.to_owned());
        let task = tokio::spawn(async move {
            let mut next = 0u64;
            while !s.load(Ordering::Relaxed) {
                let ffs: Vec<FlowFile> = (next..next + BATCH).map(|i| flowfile(i, tag)).collect();
                match client.send_batch(&port, ffs).await {
                    Ok(_) => {
                        l.lock().unwrap().commits.push(Instant::now());
                        next += BATCH;
                    }
                    Err(e) => {
                        l.lock()
                            .unwrap()
                            .failures
                            .push((Instant::now(), e.to_string()));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            next
        });
        Self { log, stop, task }
    }

    fn commits(&self) -> usize {
        self.log.lock().unwrap().commits.len()
    }

    /// Stops the loop; returns the ids committed and what happened after `since`.
    async fn finish(self, since: Instant) -> (u64, AfterKill) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = tokio::time::timeout(Duration::from_secs(120), self.task)
            .await
            .expect("the send loop ends")
            .unwrap();
        let l = self.log.lock().unwrap();
        let after: Vec<Instant> = l.commits.iter().copied().filter(|t| *t > since).collect();
        let mut worst_gap = Duration::ZERO;
        let mut prev = since;
        for t in &after {
            worst_gap = worst_gap.max(*t - prev);
            prev = *t;
        }
        let failures = l
            .failures
            .iter()
            .map(|(t, e)| {
                format!(
                    "+{:.2} s: {e}",
                    t.saturating_duration_since(since).as_secs_f64()
                )
            })
            .collect();
        (
            sent,
            AfterKill {
                first_commit: after.first().map(|t| *t - since),
                worst_gap,
                commits: after.len(),
                failures,
            },
        )
    }
}

/// The send loop after a kill.
struct AfterKill {
    /// Kill → first commit.
    first_commit: Option<Duration>,
    /// Longest time without a commit (from the kill on).
    worst_gap: Duration,
    /// Batches committed after the kill.
    commits: usize,
    /// Every failed attempt of the whole loop, timed from the kill.
    failures: Vec<String>,
}

/// Sends `n` FlowFiles with ids `first..first + n` in batches of [`BATCH`] (each must commit).
async fn send_ids(client: &Client, port: &str, first: u64, n: u64, tag: &str) {
    for b in (first..first + n).step_by(BATCH as usize) {
        let ffs = (b..b + BATCH).map(|i| flowfile(i, tag)).collect();
        client.send_batch(port, ffs).await.unwrap();
    }
}

/// Receives from `port` until `total` FlowFiles arrived; counts each id.
async fn pull_back(client: &Client, port: &str, total: u64) -> HashMap<u64, u32> {
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let t = Instant::now();
    let mut received = 0u64;
    while received < total {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "received {received} of {total}"
        );
        let mut rx = client.receive(port).await.unwrap();
        let mut n = 0;
        while let Some(ff) = rx.next().await.unwrap() {
            let id: u64 = ff.attribute("id").unwrap().parse().unwrap();
            *seen.entry(id).or_default() += 1;
            n += 1;
        }
        rx.confirm().await.unwrap();
        received += n;
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    seen
}

/// Deletes a port pair; right after the last receive a node can still call the queue not empty
/// (409): retried.
async fn delete_pair(pair: nifi_testkit::PortPair) {
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

/// A port pair whose connection holds up to 1,000,000 FlowFiles (the default 10,000 per node
/// would stop a send loop, not a kill).
async fn big_pair(cluster: &Cluster, prefix: &str) -> nifi_testkit::PortPair {
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

/// Ids the kill test sends besides its loop: through a client whose first bootstrap URL is the
/// dead node, through one with no URL answering (persisted peer list), and after the rejoin.
const BOOT_IDS: u64 = 1_000_000;
const PERSISTED_IDS: u64 = 2_000_000;
const REJOIN_IDS: u64 = 3_000_000;

#[tokio::test]
async fn sigkill_one_node_while_sending_loses_nothing() {
    let Some((_serial, mut cluster)) = cluster_locked().await else {
        return;
    };
    // Input → output port: afterwards every FlowFile is pulled back over S2S and checked by id.
    let pair = big_pair(&cluster, "cluster-kill").await;
    let conn = pair.input.connection_id().to_owned();
    let port = pair.input.name().to_owned();
    // The victim is not the coordinator (that is the other kill test).
    let coordinator = node_with_role(&cluster, "Cluster Coordinator").await;
    let victim = if coordinator == 1 { 2 } else { 1 };
    let survivor = coordinator;
    let victim_url = cluster.node(victim).unwrap().url.clone();
    let survivor_url = cluster.node(survivor).unwrap().url.clone();
    let client = Client::builder(cluster_urls(&cluster))
        .io_timeout(Some(Duration::from_secs(10)))
        .peer_refresh(PEER_REFRESH)
        .build()
        .unwrap();

    // A client that persists its peer list: one batch while both nodes are up writes the file.
    let dir = tempfile::tempdir().unwrap();
    let peer_file = dir.path().join("peers.json");
    {
        let c = Client::builder(&victim_url)
            .peer_persistence(&peer_file)
            .build()
            .unwrap();
        c.refresh_peers().await.unwrap();
        c.close().await;
    }
    let saved = std::fs::read_to_string(&peer_file).expect("the peer list was persisted");
    assert!(saved.contains("\"peers\""), "peer file: {saved}");

    // The peer list's counts lag by a heartbeat (3 s) or two: a queue dropped just before (the
    // other test) would still make a node look full and get it no FlowFiles before the kill.
    tokio::time::sleep(Duration::from_secs(8)).await;
    eprintln!(
        "peer list before the loop: {:?}",
        client.peers().await.unwrap()
    );

    let sender = SendLoop::start(&client, &port, "kill");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let per_before = wait_node_has_some(&cluster, &conn, victim).await;
    let before = sender.commits();
    let killed_at = Instant::now();
    cluster.kill_node(victim).unwrap();
    eprintln!(
        "SIGKILLed node {victim} (not the coordinator) after {before} batches; queued per node then {per_before:?}"
    );

    // While it is down (and still listed by the survivor): a new client whose first bootstrap
    // URL is the dead node works through the second ...
    let t = Instant::now();
    let boot = Client::builder(format!("{victim_url},{survivor_url}"))
        .build()
        .unwrap();
    send_ids(&boot, &port, BOOT_IDS, 1_000, "boot").await;
    eprintln!(
        "first bootstrap URL down: 1,000 FlowFiles through the second URL in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    boot.close().await;
    // ... and one whose only bootstrap URL is the dead node works through the persisted list.
    let t = Instant::now();
    let persisted = Client::builder(&victim_url)
        .peer_persistence(&peer_file)
        .build()
        .unwrap();
    send_ids(&persisted, &port, PERSISTED_IDS, 1_000, "persisted").await;
    eprintln!(
        "no bootstrap URL answering: 1,000 FlowFiles through the persisted peer list in {:.2} s; peer status {:?}",
        t.elapsed().as_secs_f64(),
        persisted.peer_status()
    );
    persisted.close().await;

    // Keep the loop sending for 15 s after the kill.
    tokio::time::sleep(Duration::from_secs(15).saturating_sub(killed_at.elapsed())).await;
    let (sent, after) = sender.finish(killed_at).await;
    eprintln!(
        "after the kill: {} batches committed; kill → first commit on the survivor {:?}; worst gap between commits {:?}; {} failed attempts: {:#?}",
        after.commits,
        after.first_commit,
        after.worst_gap,
        after.failures.len(),
        after.failures
    );
    let first_after = after
        .first_commit
        .expect("sending continued on the surviving node");
    assert!(
        after.commits >= 10,
        "only {} batches after the kill",
        after.commits
    );
    assert!(first_after < Duration::from_secs(30), "{first_after:?}");

    // Bring the node back: what it committed before the kill is in its FlowFile repository.
    let rejoin = cluster
        .start_node(victim, Duration::from_secs(300))
        .await
        .unwrap();
    eprintln!(
        "node {victim} restarted and CONNECTED in {:.1} s",
        rejoin.as_secs_f64()
    );
    // Once it rejoined, the same client sends to it again (its penalty expires, the peer list
    // refreshes): batches until the node's queue grows.
    let base = cluster.queued_per_node(&conn).await.unwrap();
    let of_victim =
        |per: &[(usize, u64)]| per.iter().find(|(n, _)| *n == victim).map_or(0, |p| p.1);
    let t = Instant::now();
    let mut rejoin_ids = 0u64;
    loop {
        send_ids(&client, &port, REJOIN_IDS + rejoin_ids, BATCH, "rejoin").await;
        rejoin_ids += BATCH;
        let per = cluster.queued_per_node(&conn).await.unwrap();
        if of_victim(&per) > of_victim(&base) {
            eprintln!(
                "the rejoined node received FlowFiles again {:.1} s after it was CONNECTED ({rejoin_ids} sent; per node {base:?} → {per:?})",
                t.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "node {victim} got nothing of {rejoin_ids} FlowFiles in 120 s after rejoining: {per:?}; peer status {:?}",
            client.peer_status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let expected: u64 = sent + 2_000 + rejoin_ids;
    let per = wait_cluster_queued(&cluster, &conn, expected).await;
    let total: u64 = per.iter().map(|(_, q)| q).sum();
    eprintln!("sent {expected} FlowFiles; queued per node {per:?}, total {total}");

    // Pull everything back through the output port and check every id.
    let rx_client = Client::builder(cluster_urls(&cluster)).build().unwrap();
    let seen = pull_back(&rx_client, pair.output.name(), total).await;
    let want: Vec<u64> = (0..sent)
        .chain(BOOT_IDS..BOOT_IDS + 1_000)
        .chain(PERSISTED_IDS..PERSISTED_IDS + 1_000)
        .chain(REJOIN_IDS..REJOIN_IDS + rejoin_ids)
        .collect();
    let wanted: HashSet<u64> = want.iter().copied().collect();
    let missing: Vec<u64> = want.into_iter().filter(|i| !seen.contains_key(i)).collect();
    let duplicates: u64 = seen.values().map(|c| u64::from(*c) - 1).sum();
    let unknown = seen.keys().filter(|i| !wanted.contains(i)).count();
    eprintln!(
        "pulled back {total} FlowFiles: {} distinct ids, {} missing, {duplicates} duplicates, {unknown} ids of batches never confirmed to the client",
        seen.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "lost ids: {:?}",
        &missing[..missing.len().min(20)]
    );
    // A duplicate is a batch NiFi committed whose confirmation the client never saw (resent):
    // at most the one in flight per failed attempt.
    assert!(
        duplicates <= BATCH * after.failures.len() as u64,
        "{duplicates} duplicates for {} failed attempts",
        after.failures.len()
    );
    client.close().await;
    rx_client.close().await;
    delete_pair(pair).await;
}

#[tokio::test]
async fn sigkill_coordinator_never_stalls_sending() {
    let Some((_serial, mut cluster)) = cluster_locked().await else {
        return;
    };
    let pair = big_pair(&cluster, "cluster-coord").await;
    let conn = pair.input.connection_id().to_owned();
    let victim = node_with_role(&cluster, "Cluster Coordinator").await;
    // The timeouts the client is configured with: one I/O operation, one peer-list fetch.
    let io_timeout = Duration::from_secs(10);
    let refresh_timeout = Duration::from_secs(3);
    let client = Client::builder(cluster_urls(&cluster))
        .io_timeout(Some(io_timeout))
        .peer_refresh(PEER_REFRESH)
        .peer_refresh_timeout(refresh_timeout)
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    client.peers().await.unwrap();
    let sender = SendLoop::start(&client, pair.input.name(), "coordinator");
    tokio::time::sleep(Duration::from_secs(3)).await;
    // It must be taking FlowFiles, or its loss would not disturb the loop.
    let per_before = wait_node_has_some(&cluster, &conn, victim).await;
    let killed_at = Instant::now();
    cluster.kill_node(victim).unwrap();
    eprintln!(
        "SIGKILLed node {victim}, the cluster coordinator, after {} batches; queued per node then {per_before:?}",
        sender.commits()
    );
    // The survivor needs ~10 s to win the election; keep sending through and past that.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (sent, after) = sender.finish(killed_at).await;
    eprintln!(
        "coordinator killed: {} batches committed after; kill → first commit {:?}; worst gap {:?} (io timeout {io_timeout:?}, peer refresh timeout {refresh_timeout:?}); {} failed attempts: {:#?}",
        after.commits,
        after.first_commit,
        after.worst_gap,
        after.failures.len(),
        after.failures
    );
    assert!(
        after.commits >= 10,
        "only {} batches after the kill",
        after.commits
    );
    assert!(
        after.worst_gap < io_timeout + refresh_timeout,
        "sending stalled {:?}",
        after.worst_gap
    );
    let rejoin = cluster
        .start_node(victim, Duration::from_secs(300))
        .await
        .unwrap();
    eprintln!(
        "node {victim} restarted and CONNECTED in {:.1} s",
        rejoin.as_secs_f64()
    );
    // Nothing lost: every committed id is queued (at most one resent batch per failure extra).
    let per = wait_cluster_queued(&cluster, &conn, sent).await;
    let total: u64 = per.iter().map(|(_, q)| q).sum();
    eprintln!("sent {sent}, queued per node {per:?}");
    assert!(
        total <= sent + BATCH * after.failures.len() as u64,
        "{total} queued for {sent} sent"
    );
    client.close().await;
    delete_pair(pair).await;
}

/// With ZooKeeper embedded in node 1 (`up --cluster 2 --embedded-zk`, cluster.env says
/// `NIFI_CLUSTER_ZK_MODE=embedded`; skipped on the standard lane's standalone ZooKeeper):
/// SIGKILL node 1, and ZooKeeper with it, while a send loop runs. The survivor then has no
/// coordinator: its REST API stops answering and its peer-list request hangs ~12 s before NiFi
/// closes it, but its port still takes transactions. The background peer-list refresh (3 s
/// timeout) must keep those hangs off the send path: sending never stalls longer than the
/// configured timeouts; the worst gap is printed.
///
/// ```sh
/// NIFI_S2S_NIFI_DIR=target/nifi/zk-embedded cargo xtask nifi up --cluster 2 --embedded-zk
/// set -a; . target/nifi/zk-embedded/cluster-1.18.0/cluster.env; set +a
/// cargo test -p nifi-s2s --test cluster sigkill_zookeeper_node -- --nocapture
/// NIFI_S2S_NIFI_DIR=target/nifi/zk-embedded cargo xtask nifi down --cluster
/// ```
#[tokio::test]
async fn sigkill_zookeeper_node_never_stalls_sending() {
    if std::env::var("NIFI_CLUSTER_ZK_MODE").as_deref() != Ok("embedded") {
        eprintln!(
            "SKIPPED (ZooKeeper is not embedded in a node): run against `cargo xtask nifi up --cluster 2 --embedded-zk` (see the doc comment)"
        );
        return;
    }
    let Some((_serial, mut cluster)) = cluster_locked().await else {
        return;
    };
    assert!(
        cluster.state().zk_embedded,
        "cluster.env says embedded, the kit's record does not"
    );
    // The kit embeds ZooKeeper in node 1.
    let victim = 1;
    let pair = big_pair(&cluster, "cluster-zk").await;
    let conn = pair.input.connection_id().to_owned();
    let coordinator = node_with_role(&cluster, "Cluster Coordinator").await;
    let io_timeout = Duration::from_secs(10);
    let refresh_timeout = Duration::from_secs(3);
    let client = Client::builder(cluster_urls(&cluster))
        .io_timeout(Some(io_timeout))
        .peer_refresh(PEER_REFRESH)
        .peer_refresh_timeout(refresh_timeout)
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    client.peers().await.unwrap();
    let sender = SendLoop::start(&client, pair.input.name(), "zookeeper");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let per_before = wait_node_has_some(&cluster, &conn, victim).await;
    let killed_at = Instant::now();
    cluster.kill_node(victim).unwrap();
    eprintln!(
        "SIGKILLed node {victim} (embedded ZooKeeper; coordinator: node {coordinator}) after {} batches; queued per node then {per_before:?}",
        sender.commits()
    );
    // Long enough for several refreshes to hang on the survivor (~12 s each, 5 s interval).
    // Meanwhile, what a peer-list fetch does now (bounded by the refresh timeout per node).
    tokio::time::sleep(Duration::from_secs(15)).await;
    let t = Instant::now();
    let fetch = client.refresh_peers().await;
    eprintln!(
        "a peer-list fetch {:.1} s after the kill took {:.2} s: {}",
        killed_at.elapsed().as_secs_f64() - t.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64(),
        match &fetch {
            Ok(l) => format!("{} peers (cached or persisted)", l.len()),
            Err(e) => format!("failed: {e}"),
        }
    );
    tokio::time::sleep(Duration::from_secs(40).saturating_sub(killed_at.elapsed())).await;
    let refreshes = client.peer_status();
    let (sent, after) = sender.finish(killed_at).await;
    eprintln!(
        "ZooKeeper node killed: {} batches ({} FlowFiles) committed in the 40 s after; kill → first commit {:?}; worst gap {:?} (io timeout {io_timeout:?}, peer refresh timeout {refresh_timeout:?}); peers then {refreshes:?}; {} failed attempts: {:#?}",
        after.commits,
        after.commits as u64 * BATCH,
        after.first_commit,
        after.worst_gap,
        after.failures.len(),
        after.failures
    );
    assert!(
        after.commits >= 10,
        "only {} batches after the kill",
        after.commits
    );
    assert!(
        after.worst_gap < io_timeout + refresh_timeout,
        "sending stalled {:?}",
        after.worst_gap
    );
    // Node 1 brings ZooKeeper back; both nodes reconnect.
    let rejoin = cluster
        .start_node(victim, Duration::from_secs(300))
        .await
        .unwrap();
    eprintln!(
        "node {victim} (with ZooKeeper) restarted; both CONNECTED in {:.1} s",
        rejoin.as_secs_f64()
    );
    let per = wait_cluster_queued(&cluster, &conn, sent).await;
    let total: u64 = per.iter().map(|(_, q)| q).sum();
    eprintln!("sent {sent}, queued per node {per:?}");
    assert!(
        total <= sent + BATCH * after.failures.len() as u64,
        "{total} queued for {sent} sent"
    );
    client.close().await;
    delete_pair(pair).await;
}

/// Content of FlowFile `id` for the receive test: 0 to ~64 KiB of id-seeded bytes.
fn content(id: u64) -> Vec<u8> {
    let len = (id * 7_919 % 65_537) as usize;
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn receive_from_output_port_across_both_nodes_byte_for_byte() {
    let Some((_serial, cluster)) = cluster_locked().await else {
        return;
    };
    let nifi = cluster.nifi().await.unwrap();
    let pair = nifi.port_pair("cluster-rx").await.unwrap();
    let conn = pair.input.connection_id().to_owned();
    // 500 FlowFiles straight to each node, so both nodes' queues hold some.
    const PER_NODE: u64 = 500;
    let n = cluster.nodes().len() as u64;
    for node in cluster.nodes() {
        let direct = Client::builder(&node.url)
            .single_node(true)
            .build()
            .unwrap();
        let first = (node.number as u64 - 1) * PER_NODE;
        for b in (first..first + PER_NODE).step_by(BATCH as usize) {
            let ffs = (b..b + BATCH)
                .map(|i| FlowFile::new(content(i)).with_attribute("id", i.to_string()))
                .collect();
            direct.send_batch(pair.input.name(), ffs).await.unwrap();
        }
        direct.close().await;
    }
    let per = wait_cluster_queued(&cluster, &conn, n * PER_NODE).await;
    assert!(
        per.iter().all(|(_, q)| *q == PER_NODE),
        "queued per node {per:?}"
    );
    // One client over the cluster receives them all, with the default peer refresh (60 s):
    // receiving favours the fullest node by the counts of the last peer list, so a node it
    // emptied still looks full; its "no data" answer must send the receive on to the other
    // node at once (before: 29-72 s for these 1,000 FlowFiles, ~3 s with a 5 s refresh).
    let client = Client::builder(cluster_urls(&cluster)).build().unwrap();
    let t = Instant::now();
    let (mut transactions, mut empty) = (0u32, 0u32);
    let mut seen = HashSet::new();
    let mut bytes = 0u64;
    while (seen.len() as u64) < n * PER_NODE {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "received {} of {}",
            seen.len(),
            n * PER_NODE
        );
        let mut rx = client.receive(pair.output.name()).await.unwrap();
        let mut got = 0;
        while let Some(ff) = rx.next().await.unwrap() {
            let id: u64 = ff.attribute("id").unwrap().parse().unwrap();
            assert!(id < n * PER_NODE, "unknown id {id}");
            assert!(
                ff.content.as_ref() == content(id).as_slice(),
                "FlowFile {id}: {} bytes differ from the {} sent",
                ff.content.len(),
                content(id).len()
            );
            assert!(seen.insert(id), "FlowFile {id} received twice");
            bytes += ff.content.len() as u64;
            got += 1;
        }
        rx.confirm().await.unwrap();
        transactions += 1;
        if got == 0 {
            empty += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    eprintln!(
        "received {} FlowFiles ({bytes} bytes) from both nodes byte for byte in {:.2} s, {transactions} transactions ({empty} empty)",
        seen.len(),
        t.elapsed().as_secs_f64()
    );
    // A receive returns nothing only when every node answered "no data" (NiFi may, rarely,
    // answer so while a node's queue is being swapped in).
    assert!(
        empty <= 2,
        "{empty} receives returned nothing while the cluster held FlowFiles"
    );
    // Both nodes' queues were drained through the one client (the node-wise status lags).
    let t = Instant::now();
    loop {
        let per = cluster.queued_per_node(&conn).await.unwrap();
        if per.iter().all(|(_, q)| *q == 0) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "left per node {per:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    client.close().await;
    delete_pair(pair).await;
}
