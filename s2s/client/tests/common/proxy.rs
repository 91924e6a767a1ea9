//! A small HTTP proxy for the proxy tests: requires `Proxy-Authorization: Basic <basic>`, opens
//! CONNECT tunnels (what https targets use) and forwards plain absolute-form requests (http
//! targets), counting each kind and every refused request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Proxy {
    /// `host:port` to put in the proxy URL.
    pub addr: String,
    /// CONNECT tunnels opened.
    pub tunnels: Arc<AtomicUsize>,
    /// Plain requests forwarded.
    pub forwarded: Arc<AtomicUsize>,
    /// Requests answered 407.
    pub refused: Arc<AtomicUsize>,
}

impl Proxy {
    /// Requests let through, of both kinds.
    pub fn allowed(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst) + self.forwarded.load(Ordering::SeqCst)
    }
}

pub async fn start(basic: &'static str) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = Proxy {
        addr: l.local_addr().unwrap().to_string(),
        tunnels: Arc::default(),
        forwarded: Arc::default(),
        refused: Arc::default(),
    };
    let counters = (p.tunnels.clone(), p.forwarded.clone(), p.refused.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let counters = counters.clone();
            tokio::spawn(async move {
                let _ = serve(s, basic, counters).await;
            });
        }
    });
    p
}

type Counters = (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<AtomicUsize>);

async fn serve(
    mut client: TcpStream,
    basic: &str,
    (tunnels, forwarded, refused): Counters,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut b).await? == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut first = text.lines().next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let authorized = text.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("proxy-authorization:")
            && l.split_once(':')
                .is_some_and(|(_, v)| v.trim() == format!("Basic {basic}"))
    });
    if !authorized {
        refused.fetch_add(1, Ordering::SeqCst);
        client
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        return Ok(());
    }
    if method == "CONNECT" {
        let Ok(mut up) = TcpStream::connect(target).await else {
            client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                .await?;
            return Ok(());
        };
        tunnels.fetch_add(1, Ordering::SeqCst);
        client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        tokio::io::copy_bidirectional(&mut client, &mut up).await?;
    } else {
        let hostport = target
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or("");
        let mut up = TcpStream::connect(hostport).await?;
        forwarded.fetch_add(1, Ordering::SeqCst);
        // One request per connection keeps the byte forwarding trivially correct.
        let head = text.replace("Connection: keep-alive", "Connection: close");
        let head = head.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
        up.write_all(head.as_bytes()).await?;
        tokio::io::copy_bidirectional(&mut client, &mut up).await?;
    }
    Ok(())
}
