//! Content bigger than memory: streams files into an input port, then streams whatever an output
//! port holds into a directory, one file per FlowFile. Memory stays flat whatever the sizes.
//!
//! `cargo run -p nifi-s2s --example stream -- http://127.0.0.1:8080/nifi in out ./received big.iso`

use s2s::{Client, Source};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, input, output, dir, files @ ..] = &args[..] else {
        anyhow::bail!("usage: stream URL INPUT_PORT OUTPUT_PORT DIR [FILE...]");
    };
    let client = Client::builder(url.clone()).build()?;

    // Each file streams from disk in 1 MiB pieces; transactions are retried whole.
    let sources = files.iter().map(|f| {
        let name = std::path::Path::new(f)
            .file_name()
            .map_or_else(|| f.clone(), |n| n.to_string_lossy().into_owned());
        Source::file(vec![("filename".into(), name)], f)
    });
    let sent = client.send_sources(input, sources, None).await?;
    println!("sent {} FlowFiles / {} bytes", sent.flowfiles, sent.bytes);

    tokio::fs::create_dir_all(dir).await?;
    let mut total = 0u64;
    loop {
        let mut rx = client.receive(output).await?;
        let mut n = 0u64;
        while let Some(mut incoming) = rx.next_stream().await? {
            let path = std::path::Path::new(dir).join(format!("flowfile-{total}.bin"));
            let mut file = tokio::fs::File::create(&path).await?;
            let bytes = incoming.copy_to(&mut file).await?;
            file.sync_all().await?; // durable before NiFi is told to drop its copy
            println!(
                "{} ← {:?} ({bytes} bytes)",
                path.display(),
                incoming.attributes()
            );
            n += 1;
            total += 1;
        }
        rx.confirm().await?; // the transaction checksum matched before next_stream() ended
        if n == 0 {
            break;
        }
    }
    client.close().await;
    Ok(())
}
