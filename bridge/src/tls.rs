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

/// Like [`server_config`], verifying client certificates against the PEM CA bundle `client_ca`:
/// a client without a certificate is still served unless `require` (ListenHTTP then sees no DN).
pub fn server_config_with_clients(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    require: bool,
) -> Result<Arc<rustls::ServerConfig>, crate::Error> {
    let tls_err = |what: &str, e: &dyn std::fmt::Display| crate::Error::Tls(format!("{what}: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(client_ca)
        .map_err(|e| tls_err(&client_ca.display().to_string(), &e))?
    {
        let c = c.map_err(|e| tls_err(&client_ca.display().to_string(), &e))?;
        roots
            .add(c)
            .map_err(|e| tls_err(&client_ca.display().to_string(), &e))?;
    }
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    );
    let verifier = if require {
        builder.build()
    } else {
        builder.allow_unauthenticated().build()
    }
    .map_err(|e| tls_err("client verifier", &e))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err(&cert.display().to_string(), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(&cert.display().to_string(), &e))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(&key.display().to_string(), &e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("certificate", &e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A certificate's subject and issuer DN as Java's `X500Principal`/`getSubjectDN().getName()`
/// writes them (what ListenHTTP puts into `restlistener.remote.user.dn`): RDNs from the last to
/// the first, `, ` between them, short names (`CN`, `OU`, `O`, `L`, `ST`, `C`, `DC`, `EMAILADDRESS`,
/// `UID`), other types as their OID.
pub(crate) fn cert_dns(der: &[u8]) -> Option<crate::ingest::ClientDn> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(crate::ingest::ClientDn {
        subject: dn_string(cert.subject()),
        issuer: dn_string(cert.issuer()),
    })
}

fn dn_string(name: &x509_parser::x509::X509Name<'_>) -> String {
    let rdns: Vec<String> =
        name.iter_rdn()
            .map(|rdn| {
                rdn.iter()
                    .map(|atv| {
                        let oid = atv.attr_type().to_id_string();
                        let key = match oid.as_str() {
                            "2.5.4.3" => "CN",
                            "2.5.4.11" => "OU",
                            "2.5.4.10" => "O",
                            "2.5.4.7" => "L",
                            "2.5.4.8" => "ST",
                            "2.5.4.6" => "C",
                            "2.5.4.9" => "STREET",
                            "0.9.2342.19200300.100.1.25" => "DC",
                            "0.9.2342.19200300.100.1.1" => "UID",
                            "1.2.840.113549.1.9.1" => "EMAILADDRESS",
                            _ => "",
                        };
                        let value = atv.as_str().map(str::to_owned).unwrap_or_else(|_| {
                            String::from_utf8_lossy(atv.as_slice()).into_owned()
                        });
                        let value = if value.contains([',', '+', '"', '\\', '<', '>', ';', '='])
                            || value.starts_with(' ')
                            || value.ends_with(' ')
                        {
                            format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
                        } else {
                            value
                        };
                        if key.is_empty() {
                            format!("OID.{oid}={value}")
                        } else {
                            format!("{key}={value}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" + ")
            })
            .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(", ")
}
