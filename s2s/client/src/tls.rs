//! TLS client configuration from the PEM files NiFi users have (CA, client certificate, key).
//!
//! Host-name verification stays on (rustls' WebPKI verifier): a NiFi whose certificate does not
//! name the host the client dials is refused, naming the cause.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Kind};

fn bad_file(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::new(Kind::InvalidInput(format!(
        "{what} {}: {e}",
        path.display()
    )))
}

/// Builds a rustls client configuration trusting the CA certificates in `ca_pem` and, when
/// given, presenting the client certificate chain `cert_pem` with its private key `key_pem`
/// (PKCS#8, PKCS#1 or SEC1). Pass the result to [`ClientBuilder::tls`](crate::ClientBuilder::tls).
///
/// # Errors
/// [`Error`] (invalid input) naming the file that is missing, unreadable or holds no usable
/// PEM object, or a key that does not match the certificate.
pub fn client_config_from_pem(
    ca_pem: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_pem)
        .map_err(|e| bad_file("CA file", ca_pem, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad_file("CA file", ca_pem, e))?;
    if cas.is_empty() {
        return Err(bad_file("CA file", ca_pem, "no CERTIFICATE in it"));
    }
    for c in cas {
        roots
            .add(c)
            .map_err(|e| bad_file("CA certificate in", ca_pem, e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::with_source(Kind::InvalidInput("TLS setup".into()), e))?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad_file("certificate file", cert, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad_file("certificate file", cert, e))?;
            if chain.is_empty() {
                return Err(bad_file("certificate file", cert, "no CERTIFICATE in it"));
            }
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|e| bad_file("key file", key, e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| bad_file("client certificate/key", cert, e))?
        }
    };
    Ok(Arc::new(config))
}

/// The subject DN of the first certificate in `cert_pem`, as NiFi names the client
/// (`CN=…, OU=…`, before NiFi's identity mapping).
///
/// # Errors
/// [`Error`] (invalid input) naming the file when it holds no parsable certificate.
pub fn certificate_subject(cert_pem: &Path) -> Result<String, Error> {
    let first = CertificateDer::pem_file_iter(cert_pem)
        .map_err(|e| bad_file("certificate file", cert_pem, e))?
        .next()
        .ok_or_else(|| bad_file("certificate file", cert_pem, "no CERTIFICATE in it"))?
        .map_err(|e| bad_file("certificate file", cert_pem, e))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&first)
        .map_err(|e| bad_file("certificate file", cert_pem, e))?;
    Ok(cert.subject().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Pki {
        dir: std::path::PathBuf,
        server: rustls::ServerConfig,
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn pki(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("s2s-tls-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let srv_key = KeyPair::generate().unwrap();
        let srv = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&srv_key, &ca, &ca_key)
            .unwrap();
        let cli_key = KeyPair::generate().unwrap();
        let mut cli_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        cli_params
            .distinguished_name
            .push(DnType::CommonName, "client");
        let cli = cli_params.signed_by(&cli_key, &ca, &ca_key).unwrap();
        write(&dir, "ca.pem", &ca.pem());
        write(&dir, "client.pem", &cli.pem());
        write(&dir, "client.key", &cli_key.serialize_pem());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![srv.der().clone()],
                PrivateKeyDer::try_from(srv_key.serialize_der()).unwrap(),
            )
            .unwrap();
        Pki { dir, server }
    }

    /// A TLS echo server requiring a client certificate; returns its port.
    async fn server(cfg: rustls::ServerConfig) -> u16 {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(s).await {
                        let mut b = [0u8; 4];
                        if tls.read_exact(&mut b).await.is_ok() {
                            let _ = tls.write_all(&b).await;
                            let _ = tls.flush().await;
                        }
                    }
                });
            }
        });
        port
    }

    async fn handshake(
        cfg: Arc<rustls::ClientConfig>,
        port: u16,
        name: &str,
    ) -> Result<(), String> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 4];
        tls.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        assert_eq!(&b, b"ping");
        Ok(())
    }

    #[tokio::test]
    async fn pem_files_give_mutual_tls_with_hostname_verification() {
        let p = pki("ok");
        let cfg = client_config_from_pem(
            &p.dir.join("ca.pem"),
            Some((&p.dir.join("client.pem"), &p.dir.join("client.key"))),
        )
        .unwrap();
        let port = server(p.server).await;
        handshake(cfg.clone(), port, "localhost").await.unwrap();
        // Host-name verification is on: the certificate names only "localhost".
        let e = handshake(cfg, port, "127.0.0.1").await.unwrap_err();
        assert!(e.contains("not valid for name"), "{e}");
    }

    #[tokio::test]
    async fn wrong_ca_is_refused_naming_the_cause() {
        let good = pki("srv");
        let other = pki("other");
        let cfg = client_config_from_pem(
            &other.dir.join("ca.pem"),
            Some((&other.dir.join("client.pem"), &other.dir.join("client.key"))),
        )
        .unwrap();
        let port = server(good.server).await;
        let e = handshake(cfg, port, "localhost").await.unwrap_err();
        // webpki reports UnknownIssuer or, when it finds a same-named CA, BadSignature.
        assert!(e.contains("invalid peer certificate"), "{e}");
        assert!(
            e.contains("UnknownIssuer") || e.contains("BadSignature"),
            "{e}"
        );
    }

    #[test]
    fn subject_dn_of_the_client_certificate() {
        let p = pki("dn");
        let dn = certificate_subject(&p.dir.join("client.pem")).unwrap();
        assert_eq!(dn, "CN=client");
    }

    #[test]
    fn missing_or_empty_files_are_named() {
        let p = pki("files");
        let e = client_config_from_pem(&p.dir.join("nope.pem"), None).unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let empty = write(&p.dir, "empty.pem", "");
        let e = client_config_from_pem(&empty, None).unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
        let e = client_config_from_pem(
            &p.dir.join("ca.pem"),
            Some((&p.dir.join("client.pem"), &empty)),
        )
        .unwrap_err();
        assert!(e.to_string().contains("empty.pem"), "{e}");
    }
}
