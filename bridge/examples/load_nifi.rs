//! Load through the bridge into the shared real NiFi: C WebSocket clients each send B batches of
//! R records of S bytes (ack = nifi), and the run prints acked records/s and MB/s.
//!
//! `cargo run --release -p nifi-s2s-bridge --example load_nifi -- [clients] [batches] [records] [size]`
//! (defaults 10 20 20 1024). Needs `cargo xtask nifi up` (or `NIFI_URL`). Keep the total under
//! 10,000 records: NiFi's default connection back-pressure threshold; past it every client just
//! receives retry-after acks until the queue is drained (which is the point of back-pressure).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use s2s_bridge::protocol::{Ack, AckStatus, SUBPROTOCOL_V1, encode_batch};
use s2s_bridge::{Bridge, Config, FlowFile, S2sSink};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let arg = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (clients, batches, records, size) = (arg(0, 10), arg(1, 20), arg(2, 20), arg(3, 1024));
    let nifi = nifi_testkit::Nifi::shared().await?;
    let port = nifi.input_port("bridge-load").await?;
    let mut cfg = Config::default();
    cfg.nifi.urls = vec![nifi.url().to_owned()];
    cfg.nifi.port_name = Some(port.name().to_owned());
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let bridge = Bridge::new(cfg.clone(), S2sSink::new(&cfg.nifi)?)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bridge.serve(listener, async move {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut req = format!("ws://{addr}/v1/ws").into_client_request()?;
            req.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static(SUBPROTOCOL_V1),
            );
            let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
            ws.next().await; // hello
            let mut retries = 0u64;
            for b in 0..batches {
                let recs: Vec<FlowFile> = (0..records)
                    .map(|r| {
                        FlowFile::new(vec![b'x'; size]).with_attribute("id", format!("{c}-{b}-{r}"))
                    })
                    .collect();
                loop {
                    ws.send(Message::Binary(encode_batch(b as u64, &recs).unwrap()))
                        .await?;
                    let Some(Ok(Message::Binary(a))) = ws.next().await else {
                        anyhow::bail!("connection lost")
                    };
                    let ack = Ack::decode(&a)?;
                    match ack.status {
                        AckStatus::Committed => break,
                        AckStatus::Retry => {
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(u64::from(
                                ack.retry_after_ms,
                            )))
                            .await;
                        }
                        AckStatus::Rejected => anyhow::bail!("rejected: {}", ack.message),
                    }
                }
            }
            anyhow::Ok(retries)
        }));
    }
    let mut retries = 0;
    for t in tasks {
        retries += t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let total = clients * batches * records;
    println!(
        "{clients} clients x {batches} batches x {records} records x {size} B: {total} acked in {secs:.2} s = \
         {:.0} records/s, {:.1} MB/s, {retries} retry acks",
        total as f64 / secs,
        (total * size) as f64 / secs / 1e6
    );
    let queued = port
        .wait_for_queued(total as u64, Duration::from_secs(60))
        .await?;
    println!("NiFi queue holds {queued} FlowFiles");
    let _ = stop.send(());
    server.await??;
    port.delete().await?;
    Ok(())
}
