//! Client metrics in Prometheus' text format: installs the Prometheus recorder of the `metrics`
//! facade, sends a few FlowFiles, and prints the scrape (in a service, serve
//! `handle.render()` on `/metrics`, or use the exporter's HTTP listener).
//!
//! `cargo run -p nifi-s2s --example prometheus -- http://127.0.0.1:8080/nifi my-input-port`

use metrics_exporter_prometheus::PrometheusBuilder;
use s2s::{Client, FlowFile};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(port)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: prometheus URL INPUT_PORT");
    };
    let handle = PrometheusBuilder::new().install_recorder()?;
    let client = Client::builder(url.clone()).build()?;
    let ffs = (0..100)
        .map(|i| FlowFile::new(format!("record {i}")).with_attribute("i", i.to_string()))
        .collect();
    client.send_batch(port, ffs).await?;
    if let Err(e) = client
        .send_batch("no-such-port", vec![FlowFile::new("x")])
        .await
    {
        eprintln!("expected failure: {e}");
    }
    client.close().await;
    print!("{}", handle.render());
    Ok(())
}
