//! Helpers shared by the bridge's integration tests: start a bridge on 127.0.0.1:0, speak the
//! WebSocket protocol as a client.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use s2s_bridge::protocol::{Ack, Hello, SUBPROTOCOL_V1};
use s2s_bridge::{Bridge, Config, FlowFile, Sink};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), s2s_bridge::Error>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/v1/ws{}", self.addr, query)
    }

    /// Triggers graceful shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let r = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
        r.expect("bridge stops within 30 s")
            .expect("join")
            .expect("serve ok");
    }
}

pub fn start<S: Sink + std::fmt::Debug>(cfg: Config, sink: S) -> Running {
    if std::env::var_os("BRIDGE_TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("BRIDGE_TEST_LOG"))
            .try_init();
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let bridge = Bridge::new(cfg, sink).expect("bridge");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(bridge.serve(listener, async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        task,
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket with the v1 subprotocol (and optional Origin / Authorization headers).
pub async fn connect(
    url: &str,
    origin: Option<&str>,
    bearer: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL_V1),
    );
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).expect("origin"));
    }
    if let Some(t) = bearer {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).expect("hdr"),
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    Ok(ws)
}

/// Next message, with a timeout.
pub async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("message within 20 s")
        .expect("stream open")
        .expect("message ok")
}

pub async fn hello(ws: &mut Ws) -> Hello {
    match next(ws).await {
        Message::Text(t) => Hello::from_json(t.as_str()).expect("hello JSON"),
        other => panic!("expected hello, got {other:?}"),
    }
}

pub async fn ack(ws: &mut Ws) -> Ack {
    match next(ws).await {
        Message::Binary(b) => Ack::decode(&b).expect("well-formed ack"),
        other => panic!("expected ack, got {other:?}"),
    }
}

/// Waits for the close frame and returns its code.
pub async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("close within 20 s")
        {
            Some(Ok(Message::Close(Some(f)))) => return f.code.into(),
            Some(Ok(Message::Close(None))) | None => return 1005,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("error instead of close frame: {e}"),
        }
    }
}

pub async fn send(ws: &mut Ws, bytes: impl Into<bytes::Bytes>) {
    ws.send(Message::Binary(bytes.into())).await.expect("send");
}

pub fn ff(id: &str, content: &str) -> FlowFile {
    FlowFile::new(content.to_owned())
        .with_attribute("id", id)
        .with_attribute("filename", format!("{id}.txt"))
}

/// The real `s2s-bridge` binary as a child process, killed when dropped.
pub struct BridgeProc {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BridgeProc {
    /// Starts the binary listening on a free 127.0.0.1 port with `args`; its log goes to `log`
    /// (inherited when `None`).
    pub fn spawn<I, S>(args: I, log: Option<&std::path::Path>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        Self::spawn_at(addr, args, log)
    }

    /// [`spawn`](Self::spawn) on a given address (to restart on the same one).
    pub fn spawn_at<I, S>(addr: SocketAddr, args: I, log: Option<&std::path::Path>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_s2s-bridge"));
        cmd.arg("--listen")
            .arg(addr.to_string())
            .args(args)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("BRIDGE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        // tracing's fmt subscriber writes to stdout.
        match log {
            Some(p) => cmd.stdout(std::fs::File::create(p).expect("log file")),
            None => cmd.stdout(std::process::Stdio::inherit()),
        };
        Self {
            child: cmd.spawn().expect("spawn s2s-bridge"),
            addr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits until `/healthz` answers.
    pub async fn wait_healthy(&self) {
        wait_healthy(self.addr).await;
    }

    /// Peak resident memory so far (`VmHWM` of `/proc/<pid>/status`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("bridge process is alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

/// Waits (at most 30 s) until the bridge at `addr` answers `/healthz`.
pub async fn wait_healthy(addr: SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://{addr}/healthz"))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "bridge did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A raw HTTP/1.1 client for what reqwest cannot do: a chunked POST whose body comes from
/// `next_chunk` (until it returns `None`), optionally cut off (connection dropped) after `cut`
/// body bytes. Returns the status and body of the answer, or `None` when cut.
pub async fn chunked_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    mut next_chunk: impl FnMut() -> Option<Vec<u8>>,
    cut: Option<u64>,
) -> std::io::Result<Option<(u16, String)>> {
    use tokio::io::AsyncWriteExt;
    let mut s = TcpStream::connect(addr).await?;
    let mut head =
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    let mut sent = 0u64;
    while let Some(chunk) = next_chunk() {
        if chunk.is_empty() {
            continue;
        }
        let mut chunk = &chunk[..];
        if let Some(c) = cut
            && sent + chunk.len() as u64 >= c
        {
            chunk = &chunk[..(c - sent) as usize];
            s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            s.write_all(chunk).await?;
            s.flush().await?;
            // Gone mid-body: no terminating chunk, connection reset.
            drop(s);
            return Ok(None);
        }
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await?;
        s.write_all(chunk).await?;
        s.write_all(b"\r\n").await?;
        sent += chunk.len() as u64;
    }
    s.write_all(b"0\r\n\r\n").await?;
    read_response(&mut s).await.map(Some)
}

/// Reads one HTTP/1.1 response (status line, headers, a `Content-Length` body).
pub async fn read_response(s: &mut TcpStream) -> std::io::Result<(u16, String)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        if s.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    Ok((status, body))
}
