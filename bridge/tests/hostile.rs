//! Hostile load on the real `s2s-bridge` binary forwarding to a REAL NiFi (the shared instance of
//! `cargo xtask nifi up`, or `NIFI_URL`; `nifi_or_skip!`, so it fails under `S2S_E2E=1`/CI when
//! NiFi is missing):
//!
//! 1. **Many clients, few connections**: `S2S_HOSTILE_WS` WebSocket clients and
//!    `S2S_HOSTILE_HTTP` HTTP keep-alive clients (default 1000 + 1000, or `S2S_HOSTILE_CLIENTS`
//!    for both) are all connected at once (checked with `bridge_ws_connections` and one refused
//!    extra WebSocket: 503 at `max_connections`), then each sends `S2S_HOSTILE_BATCHES` batches of
//!    `S2S_HOSTILE_RECORDS` records (default 2 × 2) and waits for each ack. Every acknowledged
//!    record is in NiFi's queue (queued ≥ acked, ≤ sent), and the bridge's established S2S
//!    connections to NiFi's RAW port (sampled every 50 ms from `/proc/<pid>/net/tcp{,6}` and
//!    `/proc/<pid>/fd`) stay at the pool size (`forward.max_transactions`) between transactions
//!    and at most twice that in flight (each transaction's port-state probe, see `s2s`'s
//!    `Connection::first_reply`).
//! 2. **Slow clients are cut**: slow-header (slowloris, one header byte per 300 ms), silent
//!    (connects, sends nothing), slow WebSocket handshake, stalled body and idle WebSocket clients
//!    are closed within their timeout + slack.
//! 3. **Oversized input is refused early**: a WebSocket frame header declaring 1 GiB is closed
//!    with 1009 before the payload is read; a 1 GiB `Content-Length` body gets 413 and a closed
//!    connection without being read; the bytes the client got to write and the time to the
//!    refusal are printed.
//! 4. **Connection limit**: with `max_tcp_connections` connections held open, one more is closed
//!    at once; the held ones are cut by the header timeout and the bridge serves again.
//!
//! It prints peak RSS (`VmHWM`), p50/p99 ack latency, the S2S connection count and records/s.
//! `S2S_HOSTILE_BATCHES=20 S2S_HOSTILE_RECORDS=10` is the longer variant (see bridge/README.md).

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::BridgeProc;
use futures_util::{SinkExt, StreamExt};
use nifi_testkit::nifi_or_skip;
use s2s_bridge::FlowFile;
use s2s_bridge::protocol::{Ack, AckStatus, SUBPROTOCOL_V1, encode_batch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Timeouts given to the bridge under test (short, so the slow clients are cut quickly).
const HEADER_TIMEOUT_MS: u64 = 2000;
const BODY_TIMEOUT_MS: u64 = 2000;
const WS_IDLE_TIMEOUT_MS: u64 = 3000;
/// How late a cut may come after its timeout (a loaded 2-core machine).
const SLACK: Duration = Duration::from_secs(4);
/// `max_message_bytes` / `max_body_bytes` of the bridge under test.
const MAX_MESSAGE: usize = 1 << 20;
const MAX_BODY: u64 = 1 << 20;
/// The declared size of the oversized frame and body.
const HUGE: u64 = 1 << 30;
/// The pool: at most this many S2S transactions (and so connections) at once.
const POOL: usize = 2;
/// Slow clients of each kind.
const SLOW: usize = 20;
/// `max_tcp_connections` of the second bridge (the connection-limit check).
const LIMITED: usize = 8;

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

struct Plan {
    ws: usize,
    http: usize,
    batches: usize,
    records: usize,
}

impl Plan {
    fn from_env() -> Self {
        let both = env_usize("S2S_HOSTILE_CLIENTS");
        Self {
            ws: env_usize("S2S_HOSTILE_WS").or(both).unwrap_or(1000),
            http: env_usize("S2S_HOSTILE_HTTP").or(both).unwrap_or(1000),
            batches: env_usize("S2S_HOSTILE_BATCHES").unwrap_or(2),
            records: env_usize("S2S_HOSTILE_RECORDS").unwrap_or(2),
        }
    }
}

/// The soft `RLIMIT_NOFILE` of a process (`/proc/<pid>/limits`).
fn fd_soft_limit(pid: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    text.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Established TCP connections of process `pid` to `remote_port` (its own sockets only: the
/// inodes of `/proc/<pid>/fd` matched against `/proc/<pid>/net/tcp` and `tcp6`).
fn established_to(pid: u32, remote_port: u16) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let inodes: HashSet<String> = fds
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_owned)
        })
        .collect();
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "01" {
                continue;
            }
            let port = f[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if port == Some(remote_port) && inodes.contains(f[9]) {
                n += 1;
            }
        }
    }
    n
}

fn record(id: &str) -> FlowFile {
    FlowFile::new(format!("{id:-<64}"))
        .with_attribute("id", id)
        .with_attribute("filename", format!("{id}.txt"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    acked: AtomicU64,
    not_acked: AtomicU64,
    failed_clients: AtomicU64,
    latencies: std::sync::Mutex<Vec<Duration>>,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn ws_connect(addr: SocketAddr) -> Result<Ws, String> {
    let mut req = format!("ws://{addr}/v1/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL_V1),
    );
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        Ok(Some(Ok(Message::Text(_)))) => Ok(ws),
        other => Err(format!("no hello: {other:?}")),
    }
}

/// One WebSocket client: connect, wait for everyone, send its batches one by one.
async fn ws_client(
    addr: SocketAddr,
    k: usize,
    plan: Arc<Plan>,
    start: Arc<tokio::sync::Barrier>,
    tally: Arc<Tally>,
) {
    let ws = ws_connect(addr).await;
    // Once everyone is connected, the extra-connection probe runs; then all send.
    start.wait().await;
    start.wait().await;
    let Ok(mut ws) = ws else {
        eprintln!("ws client {k}: {}", ws.err().unwrap_or_default());
        tally.failed_clients.fetch_add(1, Ordering::SeqCst);
        return;
    };
    for b in 0..plan.batches {
        let records: Vec<FlowFile> = (0..plan.records)
            .map(|r| record(&format!("ws-{k}-{b}-{r}")))
            .collect();
        let frame = encode_batch(b as u64, &records).expect("encode");
        tally.sent.fetch_add(plan.records as u64, Ordering::SeqCst);
        let t = Instant::now();
        if let Err(e) = ws.send(Message::Binary(frame)).await {
            eprintln!("ws client {k}: send: {e}");
            tally.failed_clients.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let ack = loop {
            match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
                Ok(Some(Ok(Message::Binary(m)))) => break Ack::decode(&m).ok(),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                other => {
                    eprintln!("ws client {k}: batch {b}: no ack: {other:?}");
                    break None;
                }
            }
        };
        match ack {
            Some(a) if a.status == AckStatus::Committed && a.batch_id == b as u64 => {
                tally.latencies.lock().unwrap().push(t.elapsed());
                tally.acked.fetch_add(plan.records as u64, Ordering::SeqCst);
            }
            Some(a) => {
                eprintln!("ws client {k}: batch {b} not committed: {a:?}");
                tally
                    .not_acked
                    .fetch_add(plan.records as u64, Ordering::SeqCst);
            }
            None => {
                tally.failed_clients.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    }
    let _ = ws.close(None).await;
}

/// Writes one request and reads its response on a kept-alive connection.
async fn http_exchange(s: &mut TcpStream, req: &[u8]) -> std::io::Result<(u16, String)> {
    s.write_all(req).await?;
    common::read_response(s).await
}

/// One HTTP/1.1 keep-alive client: one connection for all its requests.
async fn http_client(
    addr: SocketAddr,
    k: usize,
    plan: Arc<Plan>,
    start: Arc<tokio::sync::Barrier>,
    tally: Arc<Tally>,
) {
    let health = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let conn = async {
        let mut s = TcpStream::connect(addr).await?;
        let (status, _) = http_exchange(&mut s, health.as_bytes()).await?;
        (status == 200)
            .then_some(s)
            .ok_or_else(|| std::io::Error::other(format!("healthz {status}")))
    };
    let conn = tokio::time::timeout(Duration::from_secs(30), conn).await;
    start.wait().await;
    start.wait().await;
    let Ok(Ok(mut s)) = conn else {
        eprintln!("http client {k}: no connection");
        tally.failed_clients.fetch_add(1, Ordering::SeqCst);
        return;
    };
    for b in 0..plan.batches {
        let body = serde_json::Value::Array(
            (0..plan.records)
                .map(|r| {
                    let id = format!("http-{k}-{b}-{r}");
                    serde_json::json!({
                        "attributes": {"id": id, "filename": format!("{id}.txt")},
                        "content": format!("{id:-<64}"),
                    })
                })
                .collect(),
        )
        .to_string();
        let req = format!(
            "POST /v1/flowfiles HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tally.sent.fetch_add(plan.records as u64, Ordering::SeqCst);
        let t = Instant::now();
        match tokio::time::timeout(
            Duration::from_secs(60),
            http_exchange(&mut s, req.as_bytes()),
        )
        .await
        {
            Ok(Ok((200, _))) => {
                tally.latencies.lock().unwrap().push(t.elapsed());
                tally.acked.fetch_add(plan.records as u64, Ordering::SeqCst);
            }
            Ok(Ok((status, text))) => {
                eprintln!("http client {k}: batch {b}: {status} {text}");
                tally
                    .not_acked
                    .fetch_add(plan.records as u64, Ordering::SeqCst);
            }
            other => {
                // The connection failed: keep-alive broken (counted, and the assertion fails).
                eprintln!("http client {k}: batch {b}: {other:?}");
                tally.failed_clients.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// Reads until EOF or error; the time it took. `None` if still open after `limit`.
async fn time_to_close(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    let r = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    r.ok().map(|()| t.elapsed())
}

/// Slowloris: a request head, one byte every 300 ms; the time until the bridge closes it.
async fn slow_header(addr: SocketAddr, head: String) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let t = Instant::now();
    let (mut rd, mut wr) = s.split();
    let writer = async {
        for b in head.bytes().cycle() {
            if wr.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let reader = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return t.elapsed(),
                Ok(_) => {}
            }
        }
    };
    let limit = Duration::from_millis(HEADER_TIMEOUT_MS) + SLACK + SLACK;
    tokio::time::timeout(limit, async {
        tokio::select! {
            () = writer => None,
            d = reader => Some(d),
        }
    })
    .await
    .ok()
    .flatten()
}

/// Connects and sends nothing.
async fn silent(addr: SocketAddr) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    time_to_close(
        &mut s,
        Duration::from_millis(HEADER_TIMEOUT_MS) + SLACK + SLACK,
    )
    .await
}

/// A body that stalls after 10 of its 1000 bytes: the status answered (if any) and when.
async fn slow_body(addr: SocketAddr) -> Option<(Option<u16>, Duration)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let head = format!(
        "POST /v1/flowfiles HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{\"conte"
    );
    s.write_all(head.as_bytes()).await.ok()?;
    let t = Instant::now();
    let limit = Duration::from_millis(BODY_TIMEOUT_MS) + SLACK + SLACK;
    match tokio::time::timeout(limit, common::read_response(&mut s)).await {
        Ok(Ok((status, _))) => Some((Some(status), t.elapsed())),
        Ok(Err(_)) => Some((None, t.elapsed())),
        Err(_) => None,
    }
}

/// A WebSocket that says nothing after the hello: the close code and when it came.
async fn idle_ws(addr: SocketAddr) -> Option<(u16, Duration)> {
    let mut ws = ws_connect(addr).await.ok()?;
    let t = Instant::now();
    let limit = Duration::from_millis(WS_IDLE_TIMEOUT_MS) + SLACK + SLACK;
    loop {
        match tokio::time::timeout(limit, ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => {
                return Some((f.map(|f| u16::from(f.code)).unwrap_or(1005), t.elapsed()));
            }
            Ok(Some(Ok(_))) => continue,
            Ok(_) => return Some((1006, t.elapsed())),
            Err(_) => return None,
        }
    }
}

/// Writes `head` and then a body of `HUGE` bytes on a raw connection while reading: the bytes
/// written when the first answer byte (or EOF) arrived, the time, and what was read.
async fn huge_upload(s: TcpStream, head: Vec<u8>) -> (u64, Duration, Vec<u8>) {
    let (mut rd, mut wr) = s.into_split();
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let writer = {
        let written = written.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            if wr.write_all(&head).await.is_err() {
                return;
            }
            let chunk = vec![0x5Au8; 64 << 10];
            let mut sent = 0u64;
            while sent < HUGE && !stop.load(Ordering::SeqCst) {
                match wr.write(&chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        sent += n as u64;
                        written.store(sent, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    let mut got = Vec::new();
    let mut at_first: Option<(u64, Duration)> = None;
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    at_first.get_or_insert_with(|| (written.load(Ordering::SeqCst), t.elapsed()));
                    got.extend_from_slice(&buf[..n]);
                }
            }
        }
    })
    .await;
    let (bytes, time) = at_first.unwrap_or_else(|| (written.load(Ordering::SeqCst), t.elapsed()));
    stop.store(true, Ordering::SeqCst);
    writer.abort();
    (bytes, time, got)
}

/// A raw WebSocket handshake; returns the stream after the `hello` text frame.
async fn raw_ws(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Protocol: {SUBPROTOCOL_V1}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("handshake");
    let mut buf = Vec::new();
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.expect("handshake answer");
        buf.push(b[0]);
        if buf.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    assert!(
        buf.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    // The hello: an unmasked text frame with a 7- or 16-bit length.
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.expect("hello frame");
    let len = match h[1] & 0x7F {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).await.expect("len");
            u16::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut hello = vec![0u8; len];
    s.read_exact(&mut hello).await.expect("hello");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_clients_few_s2s_connections_slow_and_oversized_clients_cut() {
    let nifi = nifi_or_skip!();
    let plan = Arc::new(Plan::from_env());
    let raw_port = nifi.raw_port().expect("the test NiFi has a RAW S2S port");
    let clients = plan.ws + plan.http;
    let max_tcp = clients + 4 * SLOW + 64;
    let own = fd_soft_limit("self");
    assert!(
        own >= (max_tcp + 256) as u64,
        "open-file limit {own} too low for {clients} clients: raise it (ulimit -n {})",
        max_tcp + 1024
    );
    let port = nifi.input_port("bridge-hostile").await.expect("port");
    nifi.set_back_pressure(&port, 10_000_000)
        .await
        .expect("back pressure threshold");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("bridge.log");
    let s = |v: usize| v.to_string();
    let nifi_args = |stage: &str| -> Vec<String> {
        vec![
            "--ack".into(),
            "nifi".into(),
            "--nifi-url".into(),
            nifi.url().to_owned(),
            "--port-name".into(),
            port.name().to_owned(),
            "--stage-dir".into(),
            dir.path().join(stage).to_string_lossy().into_owned(),
            "--max-message-bytes".into(),
            s(MAX_MESSAGE),
            "--max-body-bytes".into(),
            MAX_BODY.to_string(),
        ]
    };
    // The load bridge: default timeouts (the clients wait for each other before sending), room
    // for every client.
    let mut load_args = nifi_args("stage-load");
    load_args.extend([
        "--max-connections".into(),
        s(plan.ws),
        "--max-http-requests".into(),
        s(plan.http + 64),
        "--max-tcp-connections".into(),
        s(max_tcp),
    ]);
    let mut bridge = BridgeProc::spawn(load_args, Some(&log));
    // The hostile bridge: same NiFi port, short timeouts for the slow clients.
    let mut hostile_args = nifi_args("stage-hostile");
    hostile_args.extend([
        "--header-read-timeout-ms".into(),
        HEADER_TIMEOUT_MS.to_string(),
        "--body-timeout-ms".into(),
        BODY_TIMEOUT_MS.to_string(),
        "--ws-idle-timeout-ms".into(),
        WS_IDLE_TIMEOUT_MS.to_string(),
    ]);
    let mut hostile = BridgeProc::spawn(hostile_args, None);
    let haddr = hostile.addr;
    hostile.wait_healthy().await;
    let pid = bridge.child.id();
    let addr = bridge.addr;
    bridge.wait_healthy().await;
    let bridge_fds = fd_soft_limit(&pid.to_string());
    assert!(
        bridge_fds >= (max_tcp + 256) as u64,
        "the bridge's open-file limit {bridge_fds} is too low for {max_tcp} connections"
    );

    // The S2S connection sampler runs for the whole test.
    let sampling = Arc::new(AtomicBool::new(true));
    let peak_s2s = Arc::new(AtomicU64::new(0));
    let sampler = {
        let sampling = sampling.clone();
        let peak = peak_s2s.clone();
        tokio::spawn(async move {
            let mut samples = 0u64;
            while sampling.load(Ordering::SeqCst) {
                let n = tokio::task::spawn_blocking(move || established_to(pid, raw_port))
                    .await
                    .unwrap_or(0);
                peak.fetch_max(n as u64, Ordering::SeqCst);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        })
    };

    // 1. Many clients.
    println!(
        "hostile: {} WebSocket + {} HTTP keep-alive clients, {} batches x {} records each",
        plan.ws, plan.http, plan.batches, plan.records
    );
    let tally = Arc::new(Tally::default());
    // Every client and the probe below meet twice: once all are connected, once the probe ran.
    let start = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let t_connect = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for k in 0..plan.ws {
        tasks.push(tokio::spawn(ws_client(
            addr,
            k,
            plan.clone(),
            start.clone(),
            tally.clone(),
        )));
    }
    for k in 0..plan.http {
        tasks.push(tokio::spawn(http_client(
            addr,
            k,
            plan.clone(),
            start.clone(),
            tally.clone(),
        )));
    }
    start.wait().await;
    let connect_time = t_connect.elapsed();
    let metrics = bridge.metrics().await;
    let open_ws = metrics
        .lines()
        .find_map(|l| l.strip_prefix("bridge_ws_connections "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(-1.0);
    // One WebSocket over max_connections: refused with 503 at the handshake.
    let extra = match ws_connect(addr).await {
        Ok(_) => "accepted".to_owned(),
        Err(e) => e,
    };
    start.wait().await;
    let t_load = Instant::now();
    for t in tasks {
        t.await.expect("client task");
    }
    let load_time = t_load.elapsed();
    let rss_after_load = bridge.peak_rss_kib();
    let sent = tally.sent.load(Ordering::SeqCst);
    let acked = tally.acked.load(Ordering::SeqCst);
    let failed = tally.failed_clients.load(Ordering::SeqCst);
    let not_acked = tally.not_acked.load(Ordering::SeqCst);
    assert_eq!(failed, 0, "no client lost its connection");
    assert_eq!(
        open_ws, plan.ws as f64,
        "all WebSocket clients connected at once (bridge_ws_connections)"
    );
    assert!(
        extra.contains("503"),
        "a WebSocket over max_connections is refused with 503: {extra}"
    );
    let expected = (clients * plan.batches * plan.records) as u64;
    assert_eq!(
        acked + not_acked,
        expected,
        "every batch answered ({not_acked} records not committed)"
    );
    assert_eq!(not_acked, 0, "every batch committed");
    // Every acknowledged record is in NiFi: ack = nifi answers after NiFi's commit.
    let queued = port
        .wait_for_queued(acked, Duration::from_secs(120))
        .await
        .expect("every acknowledged record queued in NiFi");
    assert!(
        queued >= acked && queued <= sent,
        "queued {queued}: acked {acked}, sent {sent}"
    );
    // Between transactions only the pooled connections remain.
    let settled = established_to(pid, raw_port);
    let mut lat = std::mem::take(&mut *tally.latencies.lock().unwrap());
    lat.sort();

    // 2. Slow clients, 3. oversized input: all at once, on the hostile bridge.
    let slow_head = format!(
        "POST /v1/flowfiles HTTP/1.1\r\nHost: {haddr}\r\nContent-Type: application/json\r\nX-Padding: {}",
        "a".repeat(200)
    );
    let slow_ws_head = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {haddr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Padding: {}",
        "a".repeat(200)
    );
    let mut loris = Vec::new();
    for i in 0..SLOW {
        let head = if i % 2 == 0 {
            slow_head.clone()
        } else {
            slow_ws_head.clone()
        };
        loris.push(tokio::spawn(slow_header(haddr, head)));
    }
    let silents: Vec<_> = (0..SLOW).map(|_| tokio::spawn(silent(haddr))).collect();
    let bodies: Vec<_> = (0..SLOW).map(|_| tokio::spawn(slow_body(haddr))).collect();
    let idles: Vec<_> = (0..SLOW).map(|_| tokio::spawn(idle_ws(haddr))).collect();
    // A frame header declaring 1 GiB (binary, masked, 64-bit length), then its payload.
    let big_frame = tokio::spawn(async move {
        let s = raw_ws(haddr).await;
        let mut head = vec![0x82, 0xFF];
        head.extend_from_slice(&HUGE.to_be_bytes());
        head.extend_from_slice(&[1, 2, 3, 4]);
        huge_upload(s, head).await
    });
    let big_body = tokio::spawn(async move {
        let s = TcpStream::connect(haddr).await.expect("connect");
        let head = format!(
            "POST /v1/flowfiles HTTP/1.1\r\nHost: {haddr}\r\nContent-Type: application/json\r\nContent-Length: {HUGE}\r\n\r\n"
        );
        huge_upload(s, head.into_bytes()).await
    });
    let header_limit = Duration::from_millis(HEADER_TIMEOUT_MS) + SLACK;
    let mut loris_max = Duration::ZERO;
    for t in loris {
        let d = t.await.expect("task").expect("slow-header client cut");
        assert!(d <= header_limit, "slow-header client cut after {d:?}");
        loris_max = loris_max.max(d);
    }
    let mut silent_max = Duration::ZERO;
    for t in silents {
        let d = t.await.expect("task").expect("silent client cut");
        assert!(d <= header_limit, "silent client cut after {d:?}");
        silent_max = silent_max.max(d);
    }
    let mut body_max = Duration::ZERO;
    for t in bodies {
        let (status, d) = t.await.expect("task").expect("slow-body client cut");
        assert!(
            d <= Duration::from_millis(BODY_TIMEOUT_MS) + SLACK,
            "slow-body client cut after {d:?}"
        );
        assert!(
            matches!(status, None | Some(400 | 408)),
            "slow body answered {status:?}"
        );
        body_max = body_max.max(d);
    }
    let mut idle_max = Duration::ZERO;
    for t in idles {
        let (code, d) = t.await.expect("task").expect("idle WebSocket closed");
        assert_eq!(code, 1000, "idle WebSocket closed normally");
        assert!(
            d <= Duration::from_millis(WS_IDLE_TIMEOUT_MS) + SLACK,
            "idle WebSocket closed after {d:?}"
        );
        idle_max = idle_max.max(d);
    }
    let (frame_bytes, frame_time, frame_reply) = big_frame.await.expect("task");
    // The close frame: 0x88, length, 2-byte code.
    assert!(
        frame_reply.len() >= 4 && frame_reply[0] == 0x88,
        "a close frame for the oversized frame: {frame_reply:?}"
    );
    let frame_code = u16::from_be_bytes([frame_reply[2], frame_reply[3]]);
    assert_eq!(frame_code, 1009, "oversized frame closed with 1009");
    assert!(
        frame_bytes < HUGE / 8,
        "refused after {frame_bytes} of {HUGE} bytes"
    );
    let (body_bytes, body_time, body_reply) = big_body.await.expect("task");
    let body_reply = String::from_utf8_lossy(&body_reply);
    assert!(
        body_reply.starts_with("HTTP/1.1 413"),
        "oversized body answered 413: {body_reply}"
    );
    assert!(
        body_bytes < HUGE / 8,
        "refused after {body_bytes} of {HUGE} bytes"
    );

    // 4. The connection limit, on a second bridge (memory sink) with room for few: with
    // `LIMITED` connections held (a partial head each), one more is closed at once without an
    // answer; the held ones are cut by the header timeout, then it serves again.
    let limited = BridgeProc::spawn(
        [
            "--memory-sink".to_owned(),
            "--max-tcp-connections".into(),
            LIMITED.to_string(),
            "--header-read-timeout-ms".into(),
            HEADER_TIMEOUT_MS.to_string(),
        ],
        None,
    );
    limited.wait_healthy().await;
    // wait_healthy's connection may still hold its slot for a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::with_capacity(LIMITED);
    for _ in 0..LIMITED {
        let mut s = TcpStream::connect(limited.addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .expect("write");
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let mut over = TcpStream::connect(limited.addr).await.expect("connect");
    let _ = over
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), over.read_to_end(&mut answer)).await;
    let over_closed = t.elapsed();
    assert!(
        answer.is_empty() && over_closed < Duration::from_secs(1),
        "a connection over max_tcp_connections is closed at once, unanswered ({over_closed:?}): {}",
        String::from_utf8_lossy(&answer)
    );
    let t = Instant::now();
    for s in &mut held {
        let left = (header_limit + SLACK).saturating_sub(t.elapsed());
        assert!(
            time_to_close(s, left).await.is_some(),
            "held connections cut by the header timeout"
        );
    }
    drop(held);
    common::wait_healthy(limited.addr).await;
    drop(limited);

    // Both bridges are alive and forward a new client's record.
    for (b, name) in [(&mut bridge, "load"), (&mut hostile, "hostile")] {
        assert!(b.child.try_wait_alive(), "the {name} bridge is running");
        common::wait_healthy(b.addr).await;
        let mut ws = ws_connect(b.addr)
            .await
            .expect("a new WebSocket after the storm");
        let frame = encode_batch(1, &[record(&format!("after-{name}"))]).expect("encode");
        ws.send(Message::Binary(frame)).await.expect("send");
        let ack = match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Binary(m)))) => Ack::decode(&m).expect("ack"),
            other => panic!("no ack from the {name} bridge after the storm: {other:?}"),
        };
        assert_eq!(ack.status, AckStatus::Committed, "{name}: {ack:?}");
        let _ = ws.close(None).await;
    }
    port.wait_for_queued(queued + 2, Duration::from_secs(60))
        .await
        .expect("the records after the storm queued");

    sampling.store(false, Ordering::SeqCst);
    let samples = sampler.await.expect("sampler");
    let s2s = peak_s2s.load(Ordering::SeqCst);
    let rss = bridge.peak_rss_kib();
    let m = bridge.metrics().await;
    let limit_rejections: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("bridge_rejections_total"))
        .collect();
    println!(
        "hostile: connected {clients} clients in {connect_time:?}; load {load_time:?}; \
{acked} records acked ({:.0} records/s), {queued} queued in NiFi",
        acked as f64 / load_time.as_secs_f64()
    );
    println!(
        "hostile: ack latency p50 {:?} p99 {:?} max {:?} ({} acks)",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default(),
        lat.len()
    );
    println!(
        "hostile: peak RSS {} KiB after the load, {rss} KiB at the end; S2S connections to NiFi \
(RAW port {raw_port}) at most {s2s} in {samples} samples, {settled} after the load (pool {POOL})",
        rss_after_load
    );
    println!(
        "hostile: slow-header cut within {loris_max:?}, silent within {silent_max:?} \
(header_read_timeout_ms {HEADER_TIMEOUT_MS}); stalled body within {body_max:?} \
(body_timeout_ms {BODY_TIMEOUT_MS}); idle WebSocket within {idle_max:?} (ws_idle_timeout_ms {WS_IDLE_TIMEOUT_MS})"
    );
    println!(
        "hostile: 1 GiB frame closed 1009 after {frame_bytes} bytes written, {frame_time:?}; \
1 GiB body answered 413 after {body_bytes} bytes written, {body_time:?}; \
connection over max_tcp_connections ({LIMITED}) closed in {over_closed:?}"
    );
    println!("hostile: {}", limit_rejections.join("; "));
    // In flight, each of the POOL transactions may also hold a port-state probe (a fresh
    // handshake when NiFi's first reply on a reused connection takes over 1 s); the probe's
    // connection is closed, never pooled.
    assert!(
        s2s >= 1 && s2s <= 2 * POOL as u64,
        "S2S connections to NiFi stay within the pool (+ one probe per transaction): {s2s} (pool {POOL})"
    );
    assert!(
        settled <= POOL,
        "after the load at most the pool stays open: {settled} (pool {POOL})"
    );

    drop(bridge);
    drop(hostile);
    port.drain().await.expect("drain");
    port.delete().await.expect("delete");
}

trait Alive {
    fn try_wait_alive(&mut self) -> bool;
}

impl Alive for std::process::Child {
    fn try_wait_alive(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }
}
