//! Chaos soak against a REAL NiFi: clients send uniquely numbered records to two bridges (one with
//! `ack = "nifi"`, one with `ack = "spool"`) over WebSocket and HTTP, resending whatever was not
//! acknowledged (the documented client contract), while a chaos loop SIGKILLs and restarts the
//! bridges, SIGKILLs and restarts NiFi's JVM, stops and starts the input port and fills its queue
//! to back pressure. Afterwards every acknowledged record must be in NiFi (lost = 0); duplicates
//! are counted and bounded by what was in flight; the bridges' peak RSS is bounded.
//!
//! It runs on its own NiFi — the crash test's home (`provision::restart_test_dir()`), never the
//! shared one: it kills that JVM. `S2S_SOAK_SECS` sets the chaos duration and enables the test
//! (`cargo xtask soak --minutes N` sets it; `cargo xtask test` runs 120 s of chaos); without it
//! the test skips with a notice.
//!
//! Knobs: `S2S_SOAK_MAX_RSS_MIB` (default 256) bounds each bridge process's peak RSS.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BridgeProc, wait_healthy};
use futures_util::{SinkExt, StreamExt};
use nifi_testkit::provision::{self, UpOptions};
use nifi_testkit::{Nifi, Port};
use s2s_bridge::FlowFile;
use s2s_bridge::protocol::{Ack, AckStatus, Hello, SUBPROTOCOL_V1, encode_batch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Records per batch a client sends (and resends whole until acknowledged).
const BATCH: u64 = 20;
/// Content bytes per record (the id, padded).
const RECORD_BYTES: usize = 100;
/// Pause between a client's batches: the soak is about faults, not throughput; unthrottled, four
/// clients put ~6,000 records/s (half a million in a few minutes) into one NiFi queue.
const PACE: Duration = Duration::from_millis(80);
/// Queue threshold while no back-pressure fault is active: the soak never drains the queue
/// before the end, and NiFi's default (10,000) would turn into back pressure of its own.
const ROOMY: u64 = 10_000_000;

fn opts() -> UpOptions {
    UpOptions {
        make_shared: false,
        dir: Some(provision::restart_test_dir()),
        ..UpOptions::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Lane {
    Nifi,
    Spool,
}

impl Lane {
    fn name(self) -> &'static str {
        match self {
            Lane::Nifi => "nifi",
            Lane::Spool => "spool",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillBridge(Lane),
    StopPort,
    BackPressure,
    KillNifi,
}

/// What the clients did, shared with the chaos loop and the final check.
#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    resent: AtomicU64,
    unacked_at_end: AtomicU64,
    acked: Mutex<HashSet<String>>,
    /// Acknowledged batches per lane (the chaos loop watches them to measure gaps).
    acks: [AtomicU64; 2],
}

impl Stats {
    fn acks(&self, lane: Lane) -> u64 {
        self.acks[lane as usize].load(Ordering::SeqCst)
    }
}

fn record_id(lane: Lane, client: &str, n: u64) -> String {
    format!("{}-{client}-{n}", lane.name())
}

fn content(id: &str) -> String {
    format!("{id:-<RECORD_BYTES$}")
}

/// One attempt's outcome: acknowledged, or try again after a pause.
type Attempt = Result<(), Duration>;

/// A WebSocket client that reconnects after any failure.
struct WsClient {
    url: String,
    ws: Option<common::Ws>,
    next_batch_id: u64,
}

impl WsClient {
    async fn connect(&mut self) -> Result<(), Duration> {
        if self.ws.is_some() {
            return Ok(());
        }
        let mut req = self.url.as_str().into_client_request().expect("ws url");
        req.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL_V1),
        );
        let connect = tokio_tungstenite::connect_async(req);
        let Ok(Ok((mut ws, _))) = tokio::time::timeout(Duration::from_secs(10), connect).await
        else {
            return Err(Duration::from_millis(200));
        };
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                Hello::from_json(t.as_str()).expect("the bridge's hello is well-formed");
            }
            _ => return Err(Duration::from_millis(200)),
        }
        self.ws = Some(ws);
        Ok(())
    }

    async fn send(&mut self, records: &[FlowFile]) -> Attempt {
        self.connect().await?;
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        let frame = encode_batch(id, records).expect("batch encodes");
        let ws = self.ws.as_mut().expect("connected");
        if ws.send(Message::Binary(frame)).await.is_err() {
            self.ws = None;
            return Err(Duration::from_millis(200));
        }
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), ws.next()).await;
            let ack = match msg {
                Ok(Some(Ok(Message::Binary(b)))) => Ack::decode(&b).expect("well-formed ack"),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_)))) => continue,
                // Closed, broken or silent: the batch's fate is unknown; resend on a new socket.
                _ => {
                    self.ws = None;
                    return Err(Duration::from_millis(200));
                }
            };
            if ack.batch_id != id {
                continue;
            }
            return match ack.status {
                AckStatus::Committed => Ok(()),
                AckStatus::Retry => Err(Duration::from_millis(
                    u64::from(ack.retry_after_ms).clamp(50, 5_000),
                )),
                other => panic!("the bridge refused a well-formed batch: {other:?} {ack:?}"),
            };
        }
    }
}

/// `POST /v1/flowfiles` with a JSON array; 200 means every record is committed.
async fn http_send(http: &reqwest::Client, addr: SocketAddr, records: &[FlowFile]) -> Attempt {
    let body: Vec<serde_json::Value> = records
        .iter()
        .map(|f| {
            let attrs: BTreeMap<&str, &str> = f
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            serde_json::json!({
                "attributes": attrs,
                "content": String::from_utf8_lossy(&f.content),
            })
        })
        .collect();
    let r = http
        .post(format!("http://{addr}/v1/flowfiles"))
        .json(&body)
        .send()
        .await;
    let Ok(r) = r else {
        return Err(Duration::from_millis(300));
    };
    match r.status().as_u16() {
        200 => Ok(()),
        429 | 503 | 500 | 502 | 504 => {
            let after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .map_or(Duration::from_millis(500), Duration::from_secs);
            Err(after.min(Duration::from_secs(5)))
        }
        s => panic!(
            "the bridge refused a well-formed JSON batch: {s} {}",
            r.text().await.unwrap_or_default()
        ),
    }
}

enum Via {
    Ws(Box<WsClient>),
    Http(reqwest::Client, SocketAddr),
}

/// Sends numbered batches until `stop`, resending each one until it is acknowledged; after `stop`
/// finishes the batch in hand (until `give_up`).
async fn client(
    lane: Lane,
    name: &'static str,
    mut via: Via,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    give_up: Arc<AtomicBool>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(PACE).await;
        let ids: Vec<String> = (n..n + BATCH).map(|i| record_id(lane, name, i)).collect();
        n += BATCH;
        let records: Vec<FlowFile> = ids
            .iter()
            .map(|id| {
                FlowFile::new(content(id))
                    .with_attribute("soak.id", id.clone())
                    .with_attribute("soak.lane", lane.name())
            })
            .collect();
        stats.sent.fetch_add(BATCH, Ordering::SeqCst);
        let mut attempts = 0u32;
        loop {
            let outcome = match &mut via {
                Via::Ws(ws) => ws.send(&records).await,
                Via::Http(http, addr) => http_send(http, *addr, &records).await,
            };
            attempts += 1;
            match outcome {
                Ok(()) => {
                    stats.acked.lock().unwrap().extend(ids.iter().cloned());
                    stats.acks[lane as usize].fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Err(pause) => {
                    if give_up.load(Ordering::SeqCst) {
                        stats.unacked_at_end.fetch_add(BATCH, Ordering::SeqCst);
                        return;
                    }
                    if attempts == 1 {
                        stats.resent.fetch_add(BATCH, Ordering::SeqCst);
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// A bridge process of one lane, restarted on the same address after a kill.
struct LaneBridge {
    lane: Lane,
    addr: SocketAddr,
    args: Vec<String>,
    logs: PathBuf,
    proc: Option<BridgeProc>,
    starts: u32,
    peak_rss_kib: u64,
}

impl LaneBridge {
    async fn start(&mut self) {
        self.starts += 1;
        let log = self
            .logs
            .join(format!("bridge-{}-{}.log", self.lane.name(), self.starts));
        self.proc = Some(BridgeProc::spawn_at(self.addr, &self.args, Some(&log)));
        wait_healthy(self.addr).await;
    }

    fn sample_rss(&mut self) {
        if let Some(p) = &self.proc {
            self.peak_rss_kib = self.peak_rss_kib.max(p.peak_rss_kib());
        }
    }

    /// SIGKILL: no shutdown, no flush.
    fn kill(&mut self) {
        self.sample_rss();
        if let Some(mut p) = self.proc.take() {
            p.child.kill().expect("kill -9 bridge");
            p.child.wait().expect("reap bridge");
        }
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// Waits until `lane` acknowledges a batch after `since_acks`; the time from `t0`.
async fn gap(stats: &Stats, lane: Lane, since_acks: u64, t0: Instant, what: Fault) -> Duration {
    let limit = Duration::from_secs(180);
    while stats.acks(lane) <= since_acks {
        assert!(
            t0.elapsed() < limit,
            "no batch acknowledged on the {} lane for {limit:?} after {what:?}",
            lane.name()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_soak_loses_nothing_acknowledged() {
    let Some(secs) = std::env::var("S2S_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        eprintln!(
            "SKIPPED: set S2S_SOAK_SECS=<seconds> to run the chaos soak (`cargo xtask soak` does; \
             it starts and SIGKILLs its own NiFi in {})",
            provision::restart_test_dir().display()
        );
        return;
    };
    let max_rss_mib: u64 = std::env::var("S2S_SOAK_MAX_RSS_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let t_start = Instant::now();
    let up = provision::up(&opts()).await.expect("soak NiFi up");
    let mut pid = up.instance.pid.expect("a NiFi the kit started has a PID");
    let url = up.instance.url.clone();
    let nifi = Nifi::from_state(&up.instance).await.expect("NiFi");
    let pair = nifi.port_pair("soak").await.expect("port pair");
    let in_name = pair.input.name().to_owned();
    let out_name = pair.output.name().to_owned();
    // The output port stays stopped until the final drain: records pile up in the queue, and
    // NiFi refuses threshold changes on a connection whose destination runs.
    pair.output.stop().await.expect("stop output port");
    nifi.set_back_pressure(&pair.input, ROOMY)
        .await
        .expect("roomy queue");

    let work = tempfile::tempdir().expect("tempdir");
    let logs = provision::workspace_root().join("target/soak");
    std::fs::create_dir_all(&logs).expect("log dir");
    let mut bridges = Vec::new();
    for lane in [Lane::Nifi, Lane::Spool] {
        let mut args: Vec<String> = [
            "--ack",
            lane.name(),
            "--nifi-url",
            &url,
            "--port-name",
            &in_name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if lane == Lane::Spool {
            args.push("--spool-dir".into());
            args.push(work.path().join("spool").display().to_string());
        }
        let mut b = LaneBridge {
            lane,
            addr: free_addr(),
            args,
            logs: logs.clone(),
            proc: None,
            starts: 0,
            peak_rss_kib: 0,
        };
        b.start().await;
        bridges.push(b);
    }

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let give_up = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for b in &bridges {
        let lane = b.lane;
        let ws = Via::Ws(Box::new(WsClient {
            url: format!("ws://{}/v1/ws", b.addr),
            ws: None,
            next_batch_id: 1,
        }));
        let http = Via::Http(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            b.addr,
        );
        for (name, via) in [("ws", ws), ("http", http)] {
            clients.push(tokio::spawn(client(
                lane,
                name,
                via,
                stats.clone(),
                stop.clone(),
                give_up.clone(),
            )));
        }
    }

    // The chaos loop: one fault at a time, each followed by a calm period; the gap is the time
    // from the fault's injection to the next batch acknowledged on the lane it hurts.
    let faults = [
        Fault::KillBridge(Lane::Nifi),
        Fault::StopPort,
        Fault::KillBridge(Lane::Spool),
        Fault::BackPressure,
        Fault::KillNifi,
    ];
    let calm = Duration::from_secs(5);
    let mut injected: BTreeMap<Fault, u32> = BTreeMap::new();
    let mut worst: BTreeMap<Fault, Duration> = BTreeMap::new();
    let mut nifi = nifi;
    let chaos_start = Instant::now();
    tokio::time::sleep(calm).await;
    for fault in faults.iter().cycle() {
        if chaos_start.elapsed() >= Duration::from_secs(secs) {
            break;
        }
        let (lane, before) = match fault {
            Fault::KillBridge(l) => (*l, stats.acks(*l)),
            _ => (Lane::Nifi, stats.acks(Lane::Nifi)),
        };
        let t0 = Instant::now();
        match fault {
            Fault::KillBridge(l) => {
                let b = bridges.iter_mut().find(|b| b.lane == *l).expect("lane");
                b.kill();
                b.start().await;
            }
            Fault::StopPort => {
                let port: Port = nifi.port_by_name(&in_name).await.expect("input port");
                port.stop().await.expect("stop port");
                tokio::time::sleep(Duration::from_secs(2)).await;
                port.start().await.expect("start port");
            }
            Fault::BackPressure => {
                let port = nifi.port_by_name(&in_name).await.expect("input port");
                let queued = port.queued_count().await.expect("count");
                nifi.set_back_pressure(&port, queued.max(1))
                    .await
                    .expect("back pressure on");
                tokio::time::sleep(Duration::from_secs(5)).await;
                nifi.set_back_pressure(&port, ROOMY)
                    .await
                    .expect("back pressure off");
            }
            Fault::KillNifi => {
                // NiFi saves flow changes a moment after the REST call: let the last one land.
                tokio::time::sleep(Duration::from_secs(3)).await;
                for b in &mut bridges {
                    b.sample_rss();
                }
                let killed = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status()
                    .expect("kill");
                assert!(killed.success(), "kill -KILL {pid}");
                while provision::process_running(pid) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let again = provision::up(&opts()).await.expect("NiFi restarts");
                assert!(again.restarted, "the killed NiFi restarts in place");
                assert_eq!(again.instance.url, url, "same web port after restart");
                pid = again.instance.pid.expect("pid");
                nifi = Nifi::from_state(&again.instance).await.expect("NiFi");
            }
        }
        let g = gap(&stats, lane, before, t0, *fault).await;
        *injected.entry(*fault).or_default() += 1;
        let w = worst.entry(*fault).or_default();
        *w = (*w).max(g);
        eprintln!(
            "soak {:>4.0}s: {fault:?} → next ack after {:.1} s (records acked so far {})",
            chaos_start.elapsed().as_secs_f64(),
            g.as_secs_f64(),
            stats.acked.lock().unwrap().len()
        );
        tokio::time::sleep(calm).await;
    }

    // Stop generating; let every client finish the batch in hand.
    stop.store(true, Ordering::SeqCst);
    let finish = tokio::time::timeout(Duration::from_secs(120), async {
        for c in &mut clients {
            c.await.expect("client task");
        }
    })
    .await;
    if finish.is_err() {
        give_up.store(true, Ordering::SeqCst);
    }
    for b in &mut bridges {
        b.sample_rss();
    }

    // Pull everything out of the output port and compare with what was acknowledged. The spool
    // lane may still be draining: keep pulling until every acknowledged id arrived or nothing
    // new came for a minute.
    let acked = stats.acked.lock().unwrap().clone();
    nifi.port_by_name(&out_name)
        .await
        .expect("output port")
        .start()
        .await
        .expect("start output port");
    let s2s = s2s::Client::builder(url.clone())
        .build()
        .expect("s2s client");
    let mut seen: HashSet<String> = HashSet::new();
    let mut received = 0u64;
    let mut last_new = Instant::now();
    while acked.iter().any(|id| !seen.contains(id)) && last_new.elapsed() < Duration::from_secs(60)
    {
        let mut rx = s2s.receive(&out_name).await.expect("receive");
        let mut n = 0u64;
        while let Some(ff) = rx.next().await.expect("next FlowFile") {
            let id = ff.attribute("soak.id").expect("soak.id").to_owned();
            assert_eq!(
                ff.content.as_ref(),
                content(&id).as_bytes(),
                "content of {id}"
            );
            seen.insert(id);
            n += 1;
        }
        rx.confirm().await.expect("confirm receive");
        received += n;
        if n > 0 {
            last_new = Instant::now();
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !seen.contains(*id)).collect();
    let duplicates = received - seen.len() as u64;
    let sent = stats.sent.load(Ordering::SeqCst);
    let resent = stats.resent.load(Ordering::SeqCst);
    let kills: u32 = injected
        .iter()
        .filter(|(f, _)| matches!(f, Fault::KillBridge(_) | Fault::KillNifi))
        .map(|(_, n)| *n)
        .sum();
    // In flight, beyond the client resends: what a killed bridge or NiFi had forwarded but not
    // seen confirmed (at most max_transactions × max_records = 2 × 1000 per lane and kill).
    let in_flight_bound = resent + u64::from(kills) * 2 * 2 * 1000;
    let rss_mib: Vec<String> = bridges
        .iter()
        .map(|b| format!("{} {} MiB", b.lane.name(), b.peak_rss_kib / 1024))
        .collect();
    eprintln!(
        "\nchaos soak report ({:.0} s in all)",
        t_start.elapsed().as_secs_f64()
    );
    eprintln!("  chaos duration       {secs} s");
    eprintln!("  records sent         {sent} ({resent} resent at least once)");
    eprintln!("  records acknowledged {}", acked.len());
    eprintln!(
        "  unacked at the end   {}",
        stats.unacked_at_end.load(Ordering::SeqCst)
    );
    eprintln!(
        "  records received     {received} ({} distinct)",
        seen.len()
    );
    eprintln!("  lost                 {}", lost.len());
    eprintln!("  duplicates           {duplicates} (bound {in_flight_bound})");
    eprintln!("  bridge peak RSS      {}", rss_mib.join(", "));
    for (f, n) in &injected {
        eprintln!(
            "  fault {:<22} ×{n}, worst gap to the next ack {:.1} s",
            format!("{f:?}"),
            worst[f].as_secs_f64()
        );
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged records are not in NiFi, e.g. {:?}",
        lost.len(),
        lost.iter().take(10).collect::<Vec<_>>()
    );
    assert!(
        injected.len() == faults.len() || secs < 120,
        "a soak of {secs} s injects every kind of fault: {injected:?}"
    );
    assert!(
        duplicates <= in_flight_bound,
        "{duplicates} duplicates exceed what was in flight ({in_flight_bound})"
    );
    for b in &bridges {
        assert!(
            b.peak_rss_kib / 1024 <= max_rss_mib,
            "bridge ({}) peak RSS {} MiB > {max_rss_mib} MiB",
            b.lane.name(),
            b.peak_rss_kib / 1024
        );
    }
    drop(bridges);
    // Drained: the ports can go (best effort; the home is the crash test's, wiped by `--fresh`).
    for name in [&in_name, &out_name] {
        if let Ok(p) = nifi.port_by_name(name).await {
            let _ = p.stop().await;
            let _ = p.delete().await;
        }
    }
}
