//! Drains a NiFi output port, printing each FlowFile's attributes and size.
//!
//! `cargo run -p nifi-s2s --example receive -- http://127.0.0.1:8080/nifi my-output-port`

use s2s::Client;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(port)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: receive URL PORT");
    };
    let client = Client::builder(url.clone()).build()?;
    loop {
        let mut rx = client.receive(port).await?;
        let mut n = 0;
        while let Some(ff) = rx.next().await? {
            println!("{:?} ({} bytes)", ff.attributes, ff.content.len());
            n += 1;
        }
        // Persist before this line in a real application: NiFi deletes its copies on confirm.
        rx.confirm().await?;
        if n == 0 {
            break;
        }
    }
    client.close().await;
    Ok(())
}
