//! Throughput benchmark against the shared test NiFi (`nifi-testkit`): creates a throwaway input
//! port, sends, prints rates, deletes the port. Not a test: numbers depend on the machine.
//!
//! `cargo run -p nifi-s2s --release --example bench_nifi`

use std::time::{Duration, Instant};

use s2s::{Client, FlowFile};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nifi = nifi_testkit::Nifi::shared().await?;
    for (count, size, compress) in [
        (10_000usize, 100usize, false),
        (10_000, 100, true),
        (1_000, 64 * 1024, false),
        (1_000, 64 * 1024, true),
        (10, 10 * 1024 * 1024, false),
    ] {
        let port = nifi.input_port("s2s-bench").await?;
        let client = Client::builder(nifi.url()).compression(compress).build()?;
        // Warm-up: discovery, peer list, connection.
        client
            .send_batch(port.name(), vec![FlowFile::new("warm")])
            .await?;
        let content = bytes::Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        let ffs: Vec<FlowFile> = (0..count)
            .map(|i| FlowFile::new(content.clone()).with_attribute("i", i.to_string()))
            .collect();
        let start = Instant::now();
        let s = client.send_batch(port.name(), ffs).await?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{count:>6} x {size:>8} B compress={compress:<5}: {:>8.0} FlowFiles/s {:>7.1} MiB/s ({} tx, {:.2}s)",
            s.flowfiles as f64 / secs,
            s.bytes as f64 / secs / 1_048_576.0,
            s.transactions,
            secs
        );
        port.wait_for_queued(count as u64 + 1, Duration::from_secs(120))
            .await?;
        client.close().await;
        port.delete().await?;
    }
    Ok(())
}
