//! Sends FlowFiles to a NiFi input port and reports throughput.
//!
//! `cargo run -p nifi-s2s --release --example send -- http://127.0.0.1:8080/nifi my-input-port 1000 4096 [--compress]`
//! (URL, port, FlowFile count, content bytes per FlowFile).

use std::time::Instant;

use s2s::{Client, FlowFile};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(port)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: send URL PORT [COUNT] [BYTES] [--compress]");
    };
    let count: usize = args.get(3).map_or(Ok(1000), |s| s.parse())?;
    let size: usize = args.get(4).map_or(Ok(4096), |s| s.parse())?;
    let compress = args.iter().any(|a| a == "--compress");
    let client = Client::builder(url.clone()).compression(compress).build()?;
    let content = bytes::Bytes::from(vec![b'x'; size]);
    let flowfiles: Vec<FlowFile> = (0..count)
        .map(|i| FlowFile::new(content.clone()).with_attribute("index", i.to_string()))
        .collect();
    let start = Instant::now();
    let s = client.send_batch(port, flowfiles).await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "committed {} FlowFiles / {} bytes in {} transactions: {:.0} FlowFiles/s, {:.1} MiB/s",
        s.flowfiles,
        s.bytes,
        s.transactions,
        s.flowfiles as f64 / secs,
        s.bytes as f64 / secs / 1048576.0
    );
    client.close().await;
    Ok(())
}
