//! A minimal, fast RAW Site-to-Site receiver: answers discovery, accepts SEND transactions, counts
//! FlowFiles and content bytes, and confirms each transaction with its CRC — built on `s2s-proto`'s
//! codecs, so the client under test speaks to the same decoders NiFi-compatible code uses.
//!
//! It is the "fast sink" of scenario P2: NiFi's content repository is far slower than the client,
//! so measuring the client's own ceiling needs a peer that does nothing but read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use bytes::BytesMut;
use s2s_proto::codec::DecodeError;
use s2s_proto::codec::checksum::TransactionChecksum;
use s2s_proto::codec::flowfile::{FlowFileDecoder, FlowFilePart, Limits};
use s2s_proto::codec::handshake::{ReceivedHandshake, RequestType};
use s2s_proto::codec::negotiation::{NegotiationReply, ResourceProposal, decode_magic};
use s2s_proto::{Response, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The one input port the sink advertises.
pub const PORT_NAME: &str = "bench-sink";
const PORT_ID: &str = "0b5e1c2a-0000-4000-8000-00000000be0c";

/// What the sink has accepted so far (confirmed transactions only).
#[derive(Debug, Default)]
pub struct Counters {
    /// FlowFiles in confirmed transactions.
    pub flowfiles: AtomicU64,
    /// Content bytes in confirmed transactions.
    pub bytes: AtomicU64,
    /// Confirmed transactions.
    pub transactions: AtomicU64,
    /// Transactions the client refused to confirm (CRC mismatch on its side).
    pub bad_checksums: AtomicU64,
}

/// A running sink.
#[derive(Debug)]
pub struct Sink {
    /// Base URL to give the client (`http://127.0.0.1:PORT/nifi`).
    pub url: String,
    /// Counters.
    pub counters: Arc<Counters>,
}

impl Sink {
    /// Binds the discovery and RAW listeners on loopback and serves them until the runtime ends.
    pub async fn start() -> anyhow::Result<Self> {
        let raw = TcpListener::bind("127.0.0.1:0").await?;
        let raw_port = raw.local_addr()?.port();
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let http_port = http.local_addr()?.port();
        let counters = Arc::new(Counters::default());
        let body = format!(
            r#"{{"controller":{{"remoteSiteListeningPort":{raw_port},"siteToSiteSecure":false,"inputPorts":[{{"id":"{PORT_ID}","name":"{PORT_NAME}","state":"RUNNING"}}],"outputPorts":[]}}}}"#
        );
        tokio::spawn(serve_discovery(http, body));
        let c = counters.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = raw.accept().await {
                let c = c.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_raw(s, &c).await {
                        eprintln!("[bench sink] connection ended: {e:#}");
                    }
                });
            }
        });
        Ok(Self {
            url: format!("http://127.0.0.1:{http_port}/nifi"),
            counters,
        })
    }
}

/// Answers every HTTP request with the discovery JSON (the client asks only for that).
async fn serve_discovery(l: TcpListener, body: String) {
    while let Ok((mut s, _)) = l.accept().await {
        let body = body.clone();
        tokio::spawn(async move {
            let mut req = Vec::new();
            let mut b = [0u8; 2048];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&b[..n]),
                }
                if req.len() > 64 * 1024 {
                    return;
                }
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}

/// Read buffer: content is streamed through it, so it need not hold a whole FlowFile.
const BUFFER: usize = 2 << 20;
/// Free space guaranteed before each read.
const READ_RESERVE: usize = 1 << 20;

struct Conn {
    s: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// Reads until `parse` yields a value; `None` on a clean EOF between messages.
    async fn read<T>(
        &mut self,
        mut parse: impl FnMut(&mut BytesMut) -> Result<Option<T>, DecodeError>,
    ) -> anyhow::Result<Option<T>> {
        loop {
            if let Some(v) = parse(&mut self.buf)? {
                return Ok(Some(v));
            }
            // Content chunks are dropped as soon as they are counted, so `reserve` reclaims the
            // same small allocation in place (cache-resident) instead of growing it: geometric
            // growth cost ~10% of P2's CPU in realloc copies when FlowFiles were buffered whole.
            self.buf.reserve(READ_RESERVE);
            if self.s.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                bail!("EOF inside a message ({} bytes pending)", self.buf.len());
            }
        }
    }

    async fn need<T>(
        &mut self,
        what: &str,
        parse: impl FnMut(&mut BytesMut) -> Result<Option<T>, DecodeError>,
    ) -> anyhow::Result<T> {
        self.read(parse)
            .await?
            .with_context(|| format!("EOF before {what}"))
    }

    async fn respond(&mut self, r: Response) -> anyhow::Result<()> {
        let mut b = BytesMut::new();
        r.encode(&mut b)?;
        self.s.write_all(&b).await?;
        Ok(())
    }

    async fn negotiate(&mut self) -> anyhow::Result<i32> {
        let p = self
            .need("a resource proposal", ResourceProposal::decode)
            .await?;
        let mut b = BytesMut::new();
        NegotiationReply::Ok.encode(&mut b);
        self.s.write_all(&b).await?;
        Ok(p.version)
    }
}

async fn serve_raw(s: TcpStream, counters: &Counters) -> anyhow::Result<()> {
    s.set_nodelay(true)?;
    let mut c = Conn {
        s,
        buf: BytesMut::with_capacity(BUFFER),
    };
    c.need("the magic", decode_magic).await?;
    let version = c.negotiate().await?;
    c.need("the handshake", |b| ReceivedHandshake::decode(b, version))
        .await?;
    c.respond(Response::new(ResponseCode::PROPERTIES_OK))
        .await?;
    loop {
        let Some(req) = c.read(RequestType::decode).await? else {
            return Ok(());
        };
        match req {
            RequestType::NegotiateFlowFileCodec => {
                c.negotiate().await?;
            }
            RequestType::SendFlowFiles => receive_transaction(&mut c, counters).await?,
            RequestType::Shutdown => return Ok(()),
            other => bail!("the bench sink only accepts SEND transactions, got {other:?}"),
        }
    }
}

async fn receive_transaction(c: &mut Conn, counters: &Counters) -> anyhow::Result<()> {
    let mut crc = TransactionChecksum::new();
    let (mut flowfiles, mut bytes) = (0u64, 0u64);
    loop {
        // Streamed: each content chunk is CRC'd as it lands (cache-hot) and dropped at once, so
        // one small read buffer serves FlowFiles of any size — no content cap (the default 256
        // MiB is for decoders that buffer a FlowFile whole; P2 from a file sends 4 GiB).
        let mut d = FlowFileDecoder::new(Limits {
            max_content_len: u64::MAX,
            ..Limits::default()
        });
        loop {
            match c.need("a FlowFile", |b| d.decode_part(b, &mut crc)).await? {
                FlowFilePart::Content(chunk) => bytes += chunk.len() as u64,
                FlowFilePart::End => break,
                _ => {}
            }
        }
        flowfiles += 1;
        let marker = c.need("a transaction marker", Response::decode).await?;
        match marker.code {
            ResponseCode::CONTINUE_TRANSACTION => {}
            ResponseCode::FINISH_TRANSACTION => break,
            other => bail!("unexpected marker {other}"),
        }
    }
    c.respond(Response::with_message(
        ResponseCode::CONFIRM_TRANSACTION,
        crc.to_decimal(),
    ))
    .await?;
    let answer = c
        .need("the client's confirmation", Response::decode)
        .await?;
    match answer.code {
        ResponseCode::CONFIRM_TRANSACTION => {
            counters.flowfiles.fetch_add(flowfiles, Ordering::Relaxed);
            counters.bytes.fetch_add(bytes, Ordering::Relaxed);
            counters.transactions.fetch_add(1, Ordering::Relaxed);
            c.respond(Response::new(ResponseCode::TRANSACTION_FINISHED))
                .await
        }
        ResponseCode::BAD_CHECKSUM => {
            counters.bad_checksums.fetch_add(1, Ordering::Relaxed);
            bail!("the client reported a bad checksum")
        }
        other => bail!("unexpected confirmation {other}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use s2s::{Client, FlowFile};

    use super::*;

    #[tokio::test]
    async fn the_real_client_commits_to_the_sink_and_the_crc_agrees() {
        let sink = Sink::start().await.unwrap();
        let client = Client::builder(&sink.url)
            .single_node(true)
            .build()
            .unwrap();
        let ffs: Vec<FlowFile> = (0..50u32)
            .map(|i| {
                FlowFile::new(vec![i as u8; 1000 + i as usize]).with_attribute("i", i.to_string())
            })
            .collect();
        let s = client.send_batch(PORT_NAME, ffs).await.unwrap();
        assert_eq!(s.flowfiles, 50);
        let expected_bytes: u64 = (0..50u64).map(|i| 1000 + i).sum();
        let c = &sink.counters;
        assert_eq!(c.flowfiles.load(Ordering::Relaxed), 50);
        assert_eq!(c.bytes.load(Ordering::Relaxed), expected_bytes);
        assert_eq!(c.bad_checksums.load(Ordering::Relaxed), 0);
        // One large FlowFile over several reads, on the pooled connection.
        let big = FlowFile::new(vec![7u8; 5 << 20]);
        client.send_batch(PORT_NAME, vec![big]).await.unwrap();
        assert_eq!(c.flowfiles.load(Ordering::Relaxed), 51);
        assert_eq!(c.bytes.load(Ordering::Relaxed), expected_bytes + (5 << 20));
        client.close().await;
    }
}
