//! rustls server configuration for the listener (ring provider; no OpenSSL).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Loads a PEM certificate chain and key into a rustls server config (HTTP/1.1 ALPN).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, crate::Error> {
    let tls_err = |what: &str, e: &dyn std::fmt::Display| crate::Error::Tls(format!("{what}: {e}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err(&cert.display().to_string(), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(&cert.display().to_string(), &e))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(&key.display().to_string(), &e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err("protocol versions", &e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| tls_err("certificate", &e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
