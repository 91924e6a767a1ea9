//! Secure NiFi from Rust: mutual TLS from PKCS#12, a bearer token from a login on HTTP S2S
//! through a proxy, and the doctor's report. The README's "Secure NiFi" example, compiled.
//!
//! ```bash
//! S2S_PKCS12_PASSWORD=… S2S_TRUSTSTORE_PASSWORD=… NIFI_PASSWORD=… \
//!   cargo run -p nifi-s2s --example secure -- https://nifi.example.com:8443/nifi in
//! ```

use std::path::Path;

use s2s::{Client, FlowFile, Transport};

async fn secure(url: &str, port: &str) -> Result<(), Box<dyn std::error::Error>> {
    let password = std::env::var("S2S_PKCS12_PASSWORD")?;
    // Mutual TLS from a PKCS#12 keystore, NiFi's truststore as trust anchor (or tls_pem/tls_ca_pem).
    let client = Client::builder(url)
        .tls_pkcs12(Path::new("client.p12"), &password)?
        .tls_truststore_pkcs12(
            Path::new("truststore.p12"),
            &std::env::var("S2S_TRUSTSTORE_PASSWORD")?,
        )?
        .build()?;
    client
        .send_batch(port, vec![FlowFile::new("over mTLS")])
        .await?;

    // NiFi 2.x single-user: HTTP S2S with a bearer token from a login, through a proxy.
    let client = Client::builder(url)
        .transport(Transport::Http)
        .tls_ca_pem(Path::new("ca.pem"))?
        .login("admin", std::env::var("NIFI_PASSWORD")?) // or .bearer_token(token)
        .proxy("http://user:secret@proxy.internal:3128")
        .build()?;
    let report = client.doctor(port).await; // the checks of `s2s doctor`
    if !report.ok() {
        eprint!("{report}");
    }
    client
        .send_batch(port, vec![FlowFile::new("with a token")])
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "https://localhost:8443/nifi".into());
    let port = args.next().unwrap_or_else(|| "in".into());
    secure(&url, &port).await
}
