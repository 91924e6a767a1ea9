//! Push FlowFiles into a fresh NiFi input port and look at what NiFi queued.
//!
//! ```text
//! cargo xtask nifi up                         # or: export NIFI_URL=http://127.0.0.1:8080/nifi
//! cargo run -p nifi-testkit --example send_and_inspect
//! ```
//!
//! The sender here is the official Java client (`tests/java-reference`, built on first use with
//! Maven); in your own tests it is whatever Site-to-Site client you are testing.

use std::time::Duration;

use nifi_testkit::Nifi;
use nifi_testkit::java_reference::{self, SendSpec, Transport};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let nifi = Nifi::shared().await?;
    println!(
        "NiFi {} at {} (RAW port {:?})",
        nifi.version(),
        nifi.url(),
        nifi.raw_port()
    );

    // A root input port → funnel: FlowFiles stay queued where the kit can list them.
    let port = nifi.input_port("example").await?;
    println!("created input port {:?}", port.name());

    let spec = SendSpec {
        url: nifi.url().to_owned(),
        port: port.name().to_owned(),
        transport: Transport::Http,
        count: 3,
        size: 16,
        batch: 3,
        compress: false,
        attributes: vec![("filename".into(), "hello.bin".into())],
    };
    let report = tokio::task::spawn_blocking(move || java_reference::send(&spec)).await??;
    println!("sent {} FlowFiles in {:.3} s", report.count, report.seconds);

    port.wait_for_queued(3, Duration::from_secs(30)).await?;
    for ff in port.queued_flowfiles().await? {
        println!("{:?} {:02x?}", ff.attributes, ff.content);
    }

    // Leave nothing behind on a shared NiFi.
    port.delete().await?;
    Ok(())
}
