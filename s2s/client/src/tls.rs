//! TLS client configuration from the files NiFi users have: PEM (CA, client certificate, key)
//! and PKCS#12 keystores/truststores (what NiFi's toolkit and `keytool` produce).
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
    let roots = load_pem_cas(ca_pem)?;
    let identity = match client {
        Some((cert, key)) => Some(load_pem_identity(cert, key)?),
        None => None,
    };
    build_config(&roots, identity.as_ref())
        .map_err(|e| bad_file("client certificate/key", client.map_or(ca_pem, |c| c.0), e))
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
    Ok(nifi_dn(cert.subject()))
}

/// Why a PKCS#12 file could not be used. The source of the [`Error`] returned by
/// [`ClientBuilder::tls_pkcs12`](crate::ClientBuilder::tls_pkcs12) and
/// [`ClientBuilder::tls_truststore_pkcs12`](crate::ClientBuilder::tls_truststore_pkcs12)
/// (reach it with [`std::error::Error::source`] and `downcast_ref`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs12Error {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Io(String),
    /// The bytes are not a PKCS#12 (PFX) structure.
    #[error("not a PKCS#12 file: {0}")]
    NotPkcs12(String),
    /// The integrity check (MAC) or the decryption failed: the password is wrong.
    #[error("wrong password (the PKCS#12 integrity check failed)")]
    WrongPassword,
    /// The file holds no private key (a truststore given as a keystore?).
    #[error("no private key in the file (is it a truststore?)")]
    NoPrivateKey,
    /// The file holds a private key but no certificate for it.
    #[error("no certificate for the private key in the file")]
    NoCertificate,
    /// The file holds no certificate at all (for a truststore).
    #[error("no certificate in the file")]
    NoTrustedCertificate,
    /// The key or the encryption scheme is not supported (rustls with ring handles RSA,
    /// ECDSA P-256/P-384 and Ed25519 keys; PKCS#12 with PBES2/AES or the legacy PBES1 ciphers).
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
}

fn p12_error(path: &Path, e: Pkcs12Error) -> Error {
    Error::with_source(
        Kind::InvalidInput(format!("PKCS#12 file {}", path.display())),
        e,
    )
}

fn map_p12(e: p12_keystore::error::Error) -> Pkcs12Error {
    use p12_keystore::error::Error as E;
    match e {
        E::MacError(_) | E::UnpadError => Pkcs12Error::WrongPassword,
        E::UnsupportedEncryptionScheme | E::UnsupportedMacAlgorithm => {
            Pkcs12Error::UnsupportedAlgorithm(e.to_string())
        }
        E::Pkcs5Error(m) => Pkcs12Error::UnsupportedAlgorithm(m),
        other => Pkcs12Error::NotPkcs12(other.to_string()),
    }
}

fn read_archive(path: &Path, password: &str) -> Result<p12_keystore::Pkcs12Archive, Error> {
    let data = std::fs::read(path).map_err(|e| p12_error(path, Pkcs12Error::Io(e.to_string())))?;
    p12_keystore::Pkcs12Archive::from_pkcs12(&data, password)
        .map_err(|e| p12_error(path, map_p12(e)))
}

/// PKCS#8 algorithm OIDs whose keys rustls (ring) can sign with.
const RSA_OID: &str = "1.2.840.113549.1.1.1";
const EC_OID: &str = "1.2.840.10045.2.1";
const ED25519_OID: &str = "1.3.101.112";

/// A client certificate chain and its key, as loaded from PEM or PKCS#12.
#[derive(Clone)]
pub(crate) struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    // Arc: the builder is Clone, private keys deliberately are not.
    pub(crate) key: Arc<PrivateKeyDer<'static>>,
}

impl Identity {
    /// Subject DN of the leaf certificate, as NiFi names the user.
    pub(crate) fn subject(&self) -> Option<String> {
        let leaf = self.chain.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        Some(nifi_dn(cert.subject()))
    }
}

/// A DN the way NiFi prints (and authorizes) it: Java's order, most specific RDN first
/// (`CN=client, OU=team`), the reverse of the certificate's encoding order that
/// `x509-parser` displays (`OU=team, CN=client`).
pub(crate) fn nifi_dn(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let key = x509_parser::objects::oid2abbrev(atv.attr_type(), registry)
                        .map_or_else(|_| atv.attr_type().to_id_string(), str::to_owned);
                    let value = atv.as_str().map_or_else(
                        |_| format!("#{}", hex_bytes(atv.attr_value().data)),
                        str::to_owned,
                    );
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(", ")
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Loads the private key and its certificate chain from a PKCS#12 keystore. Also returns the
/// other certificates of the file (the issuing CA, as NiFi's toolkit bundles it).
pub(crate) fn load_pkcs12_identity(
    path: &Path,
    password: &str,
) -> Result<(Identity, Vec<CertificateDer<'static>>), Error> {
    let archive = read_archive(path, password)?;
    let Some(key) = archive.keys.first() else {
        return Err(p12_error(path, Pkcs12Error::NoPrivateKey));
    };
    let oid = key.key.oid().to_string();
    if ![RSA_OID, EC_OID, ED25519_OID].contains(&oid.as_str()) {
        return Err(p12_error(
            path,
            Pkcs12Error::UnsupportedAlgorithm(format!("private key algorithm {oid}")),
        ));
    }
    // The certificate of the key carries the same localKeyId; without ids, a lone key goes
    // with the first certificate that is not someone's issuer.
    let leaf_idx = match &key.local_key_id {
        Some(id) => archive
            .certs
            .iter()
            .position(|c| c.local_key_id.as_deref() == Some(id.0.as_slice())),
        None => None,
    }
    .or_else(|| {
        (archive.keys.len() == 1)
            .then(|| {
                archive.certs.iter().position(|c| {
                    !archive
                        .certs
                        .iter()
                        .any(|o| o.cert.issuer() == c.cert.subject() && o.cert != c.cert)
                })
            })
            .flatten()
    });
    let Some(leaf_idx) = leaf_idx else {
        return Err(p12_error(path, Pkcs12Error::NoCertificate));
    };
    let mut chain = vec![CertificateDer::from(
        archive.certs[leaf_idx].cert.as_der().to_vec(),
    )];
    // Follow issuers by name so the chain is in the order TLS wants it.
    let mut cur = &archive.certs[leaf_idx].cert;
    let mut used = vec![leaf_idx];
    while cur.issuer() != cur.subject() {
        let Some(i) = archive
            .certs
            .iter()
            .enumerate()
            .position(|(i, c)| !used.contains(&i) && c.cert.subject() == cur.issuer())
        else {
            break;
        };
        used.push(i);
        chain.push(CertificateDer::from(
            archive.certs[i].cert.as_der().to_vec(),
        ));
        cur = &archive.certs[i].cert;
    }
    let others: Vec<CertificateDer<'static>> = archive
        .certs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leaf_idx)
        .map(|(_, c)| CertificateDer::from(c.cert.as_der().to_vec()))
        .collect();
    let key_der = usable_key(key.key.as_der().to_vec(), &chain[0]).map_err(|e| {
        p12_error(
            path,
            Pkcs12Error::UnsupportedAlgorithm(format!("private key: {e}")),
        )
    })?;
    Ok((
        Identity {
            chain,
            key: Arc::new(key_der),
        },
        others,
    ))
}

/// A PKCS#8 key rustls (ring) can sign with, checked now so a bad key is reported with its
/// file rather than at the first handshake. Java's `keytool` writes EC keys without the
/// optional public key that ring insists on; it is taken from the certificate then.
fn usable_key(
    pkcs8: Vec<u8>,
    leaf: &CertificateDer<'_>,
) -> Result<PrivateKeyDer<'static>, rustls::Error> {
    let key = PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8));
    let Err(err) = rustls::crypto::ring::sign::any_supported_type(&key) else {
        return Ok(key);
    };
    let fixed = ec_pkcs8_with_public_key(key.secret_der(), leaf).ok_or_else(|| err.clone())?;
    let key = PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(fixed));
    rustls::crypto::ring::sign::any_supported_type(&key).map_err(|_| err)?;
    Ok(key)
}

/// DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Rebuilds an EC PKCS#8 key (RFC 5915 inside RFC 5208) with the curve and the public point
/// of its certificate. `None` when the key is not EC, already has a public key, or does not
/// parse.
fn ec_pkcs8_with_public_key(pkcs8: &[u8], leaf: &CertificateDer<'_>) -> Option<Vec<u8>> {
    use x509_parser::der_parser::ber::{BerObjectContent, Class};
    const EC_PUBLIC_KEY: [u8; 7] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm.as_bytes() != EC_PUBLIC_KEY {
        return None;
    }
    let curve = spki.algorithm.parameters.as_ref()?;
    let point = &spki.subject_public_key.data;
    let (_, info) = x509_parser::der_parser::parse_der(pkcs8).ok()?;
    let fields = info.as_sequence().ok()?;
    let sec1 = fields.get(2)?.as_slice().ok()?;
    let (_, ec) = x509_parser::der_parser::parse_der(sec1).ok()?;
    let ec_fields = ec.as_sequence().ok()?;
    let has_public = ec_fields
        .iter()
        .any(|f| f.header.class() == Class::ContextSpecific && f.header.tag().0 == 1);
    if has_public {
        return None;
    }
    let BerObjectContent::OctetString(d) = ec_fields.get(1)?.content else {
        return None;
    };
    let curve_oid = tlv(0x06, curve.data);
    let mut bits = vec![0u8];
    bits.extend_from_slice(point);
    let ec_key = tlv(
        0x30,
        &[
            tlv(0x02, &[1]),
            tlv(0x04, d),
            tlv(0xa0, &curve_oid),
            tlv(0xa1, &tlv(0x03, &bits)),
        ]
        .concat(),
    );
    let alg = tlv(0x30, &[tlv(0x06, &EC_PUBLIC_KEY), curve_oid].concat());
    Some(tlv(
        0x30,
        &[tlv(0x02, &[0]), alg, tlv(0x04, &ec_key)].concat(),
    ))
}

/// Every certificate of a PKCS#12 truststore (Java's trusted-certificate entries and plain
/// certificate bags alike).
pub(crate) fn load_pkcs12_trust(
    path: &Path,
    password: &str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let archive = read_archive(path, password)?;
    let certs: Vec<_> = archive
        .certs
        .iter()
        .map(|c| CertificateDer::from(c.cert.as_der().to_vec()))
        .collect();
    if certs.is_empty() {
        return Err(p12_error(path, Pkcs12Error::NoTrustedCertificate));
    }
    Ok(certs)
}

/// The CA certificates of a PEM file.
pub(crate) fn load_pem_cas(ca_pem: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_pem)
        .map_err(|e| bad_file("CA file", ca_pem, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad_file("CA file", ca_pem, e))?;
    if cas.is_empty() {
        return Err(bad_file("CA file", ca_pem, "no CERTIFICATE in it"));
    }
    Ok(cas)
}

/// A client certificate chain and key from PEM files.
pub(crate) fn load_pem_identity(cert: &Path, key: &Path) -> Result<Identity, Error> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad_file("certificate file", cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad_file("certificate file", cert, e))?;
    if chain.is_empty() {
        return Err(bad_file("certificate file", cert, "no CERTIFICATE in it"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad_file("key file", key, e))?;
    Ok(Identity {
        chain,
        key: Arc::new(key_der),
    })
}

/// Composes a rustls client configuration: host-name verification on, the given trust
/// anchors, and the identity for mutual TLS when present.
pub(crate) fn build_config(
    roots: &[CertificateDer<'static>],
    identity: Option<&Identity>,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut store = rustls::RootCertStore::empty();
    for c in roots {
        store.add(c.clone()).map_err(|e| {
            Error::with_source(Kind::InvalidInput("unusable CA certificate".into()), e)
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::with_source(Kind::InvalidInput("TLS setup".into()), e))?
        .with_root_certificates(store);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| {
                Error::with_source(
                    Kind::InvalidInput("client certificate/key do not fit together".into()),
                    e,
                )
            })?,
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const P12_PASSWORD: &str = "s3cret-pw";

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
        let p12_cert =
            |c: &rcgen::Certificate| p12_keystore::Certificate::from_der(c.der()).unwrap();
        let chain = p12_keystore::PrivateKeyChain::new(
            vec![1u8, 2, 3, 4],
            p12_keystore::PrivateKey::from_der(&cli_key.serialize_der()).unwrap(),
            [p12_cert(&cli), p12_cert(&ca)],
        );
        let mut ks = p12_keystore::KeyStore::new();
        ks.add_entry(
            "client",
            p12_keystore::KeyStoreEntry::PrivateKeyChain(chain),
        );
        std::fs::write(
            dir.join("client.p12"),
            ks.writer(P12_PASSWORD).write().unwrap(),
        )
        .unwrap();
        let mut ts = p12_keystore::KeyStore::new();
        ts.add_entry(
            "ca",
            p12_keystore::KeyStoreEntry::Certificate(p12_cert(&ca)),
        );
        std::fs::write(
            dir.join("trust.p12"),
            ts.writer(P12_PASSWORD).write().unwrap(),
        )
        .unwrap();
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
        // Several RDNs: NiFi's (Java's) order, most specific first.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // Encoded O, OU, CN (rcgen's default DN would put its CN first).
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Acme");
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "nifi-s2s");
        params
            .distinguished_name
            .push(DnType::CommonName, "s2s-client");
        let cert = params.self_signed(&key).unwrap();
        let f = write(&p.dir, "multi.pem", &cert.pem());
        assert_eq!(
            certificate_subject(&f).unwrap(),
            "CN=s2s-client, OU=nifi-s2s, O=Acme"
        );
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

    fn p12_kind(e: &Error) -> Pkcs12Error {
        std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<Pkcs12Error>())
            .cloned()
            .unwrap_or_else(|| panic!("no Pkcs12Error source in {e:?}"))
    }

    #[tokio::test]
    async fn pkcs12_keystore_gives_mutual_tls_trusting_its_bundled_ca() {
        let p = pki("p12");
        let (id, others) = load_pkcs12_identity(&p.dir.join("client.p12"), P12_PASSWORD).unwrap();
        assert_eq!(id.subject().as_deref(), Some("CN=client"));
        assert_eq!(id.chain.len(), 2, "leaf + CA");
        assert_eq!(others.len(), 1);
        let port = server(p.server).await;
        // Bundled CA as trust anchor.
        handshake(build_config(&others, Some(&id)).unwrap(), port, "localhost")
            .await
            .unwrap();
        // Truststore as trust anchor.
        let roots = load_pkcs12_trust(&p.dir.join("trust.p12"), P12_PASSWORD).unwrap();
        handshake(build_config(&roots, Some(&id)).unwrap(), port, "localhost")
            .await
            .unwrap();
        // Through the builder, which remembers the DN.
        let b = crate::ClientBuilder::new("https://localhost:1/nifi")
            .tls_pkcs12(&p.dir.join("client.p12"), P12_PASSWORD)
            .unwrap();
        assert_eq!(b.client_dn.as_deref(), Some("CN=client"));
        handshake(b.tls.clone().unwrap(), port, "localhost")
            .await
            .unwrap();
        assert!(b.client_certificate().is_some());
        let d = format!("{b:?}");
        assert!(!d.contains(P12_PASSWORD), "{d}");
    }

    #[test]
    fn pkcs12_errors_are_typed_and_name_the_file() {
        let p = pki("p12err");
        let ks = p.dir.join("client.p12");
        let e = load_pkcs12_identity(&ks, "wrong").err().unwrap();
        assert_eq!(p12_kind(&e), Pkcs12Error::WrongPassword);
        assert!(e.to_string().contains("client.p12"), "{e}");
        assert!(crate::error_chain(&e).contains("wrong password"), "{e}");
        // A truststore given as keystore.
        let e = load_pkcs12_identity(&p.dir.join("trust.p12"), P12_PASSWORD)
            .err()
            .unwrap();
        assert_eq!(p12_kind(&e), Pkcs12Error::NoPrivateKey);
        // PEM given where PKCS#12 is expected.
        let e = load_pkcs12_identity(&p.dir.join("ca.pem"), P12_PASSWORD)
            .err()
            .unwrap();
        assert!(matches!(p12_kind(&e), Pkcs12Error::NotPkcs12(_)), "{e}");
        let e = load_pkcs12_identity(&p.dir.join("missing.p12"), "x")
            .err()
            .unwrap();
        assert!(matches!(p12_kind(&e), Pkcs12Error::Io(_)), "{e}");
        let e = load_pkcs12_trust(&ks, "nope").err().unwrap();
        assert_eq!(p12_kind(&e), Pkcs12Error::WrongPassword);
        // A key without its certificate.
        let key = KeyPair::generate().unwrap();
        let mut lone = p12_keystore::KeyStore::new();
        lone.add_entry(
            "k",
            p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
                vec![9u8],
                p12_keystore::PrivateKey::from_der(&key.serialize_der()).unwrap(),
                [],
            )),
        );
        let f = p.dir.join("lone.p12");
        std::fs::write(&f, lone.writer(P12_PASSWORD).write().unwrap()).unwrap();
        let e = load_pkcs12_identity(&f, P12_PASSWORD).err().unwrap();
        assert_eq!(p12_kind(&e), Pkcs12Error::NoCertificate);
    }

    #[test]
    fn pkcs12_with_an_unsupported_key_algorithm_is_refused() {
        let p = pki("p12alg");
        // A PKCS#8 DSA key (OID 1.2.840.10040.4.1): neither rustls nor ring sign with DSA.
        let dsa_pkcs8: &[u8] = &[
            0x30, 0x16, 0x02, 0x01, 0x00, 0x30, 0x09, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x38,
            0x04, 0x01, 0x04, 0x06, 0x02, 0x04, 0x01, 0x02, 0x03, 0x04,
        ];
        let cli_pem = std::fs::read_to_string(p.dir.join("client.pem")).unwrap();
        let cli_der = CertificateDer::from_pem_slice(cli_pem.as_bytes()).unwrap();
        let mut ks = p12_keystore::KeyStore::new();
        ks.add_entry(
            "dsa",
            p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
                vec![7u8],
                p12_keystore::PrivateKey::from_der(dsa_pkcs8).unwrap(),
                [p12_keystore::Certificate::from_der(&cli_der).unwrap()],
            )),
        );
        let f = p.dir.join("dsa.p12");
        std::fs::write(&f, ks.writer(P12_PASSWORD).write().unwrap()).unwrap();
        let e = load_pkcs12_identity(&f, P12_PASSWORD).err().unwrap();
        let k = p12_kind(&e);
        assert!(
            matches!(&k, Pkcs12Error::UnsupportedAlgorithm(m) if m.contains("1.2.840.10040.4.1")),
            "{k:?}"
        );
    }

    #[test]
    fn a_client_certificate_without_any_ca_is_refused_at_build() {
        let p = pki("noca");
        // Keystore with the leaf only: nothing to trust.
        let (id, _) = load_pkcs12_identity(&p.dir.join("client.p12"), P12_PASSWORD).unwrap();
        let mut b = crate::ClientBuilder::new("https://localhost:1/nifi");
        b.tls_identity = Some(Identity {
            chain: id.chain[..1].to_vec(),
            key: id.key,
        });
        let e = b.build().unwrap_err();
        assert!(e.to_string().contains("no CA to trust"), "{e}");
    }

    /// Keystores as real tools write them (generated once, password `fixture-pw`):
    /// `keytool` of JDK 17 (RSA) and 25 (EC P-256) with `-storetype PKCS12`, a keytool
    /// truststore (`-importcert`), and OpenSSL 3.0 `pkcs12 -export` (PBES2/AES, EC P-384) and
    /// `-legacy` (3DES/RC2). keytool's EC key has no embedded public key, which ring needs:
    /// the loader completes it from the certificate.
    #[tokio::test]
    async fn keystores_written_by_keytool_and_openssl_load() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        for (file, dn) in [
            ("keytool17-rsa.p12", "CN=keytool-client, OU=nifi-s2s"),
            ("keytool25-ec.p12", "CN=keytool25-ec, OU=nifi-s2s"),
            ("openssl3-aes.p12", "CN=openssl-client, OU=nifi-s2s"),
            ("openssl-legacy-3des.p12", "CN=openssl-client, OU=nifi-s2s"),
        ] {
            let path = data.join(file);
            let (id, _) =
                load_pkcs12_identity(&path, "fixture-pw").unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(id.subject().as_deref(), Some(dn), "{file}");
            // The key signs what its certificate verifies: a mutual TLS handshake with a
            // server that trusts this (self-signed) client certificate.
            let p = pki(file);
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut client_roots = rustls::RootCertStore::empty();
            client_roots.add(id.chain[0].clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(client_roots),
                provider.clone(),
            )
            .build()
            .unwrap();
            let srv_cfg = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(p.server.cert_resolver.clone());
            let port = server(srv_cfg).await;
            let cas = load_pem_cas(&p.dir.join("ca.pem")).unwrap();
            let cfg = build_config(&cas, Some(&id)).unwrap_or_else(|e| panic!("{file}: {e}"));
            handshake(cfg, port, "localhost")
                .await
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let e = load_pkcs12_identity(&path, "wrong").err().unwrap();
            assert_eq!(p12_kind(&e), Pkcs12Error::WrongPassword, "{file}");
        }
        let roots =
            load_pkcs12_trust(&data.join("keytool17-truststore.p12"), "fixture-pw").unwrap();
        assert_eq!(roots.len(), 1);
        let e = load_pkcs12_identity(&data.join("keytool17-truststore.p12"), "fixture-pw")
            .err()
            .unwrap();
        assert_eq!(p12_kind(&e), Pkcs12Error::NoPrivateKey);
    }
}
