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
