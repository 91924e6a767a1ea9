//! Test PKI for a secured NiFi: a CA, NiFi's server certificate, an authorized client, a second
//! client from the same CA that NiFi does not know (wrong-DN tests), and a rogue CA with its own
//! server/client pair (wrong-CA tests); NiFi's keystore/truststore and the client identity as
//! PKCS#12.
//!
//! Everything is generated in pure Rust (rcgen + p12-keystore), so provisioning needs neither
//! `openssl` nor `keytool`. The keys are throwaway test material: they live in a git-ignored
//! `target/` directory and are recreated with every secured home.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, date_time_ymd,
};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Common name of the authorized client certificate.
pub const CLIENT_CN: &str = "s2s-test-client";
/// Common name of the second client certificate (same CA, not authorized in NiFi).
pub const OTHER_CN: &str = "s2s-other-client";
/// Organizational unit of both client certificates.
pub const CLIENT_OU: &str = "nifi-s2s";

/// What a REST or S2S client needs for mutual TLS with a secured NiFi: the CA to trust and its own
/// certificate and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The CA that signed NiFi's certificate (PEM).
    pub ca: PathBuf,
    /// The client certificate (PEM).
    pub cert: PathBuf,
    /// The client's private key (PKCS#8 PEM).
    pub key: PathBuf,
}

/// Paths (and passwords) of the generated test PKI, as recorded in a secured instance's state file.
///
/// `Debug` leaves the passwords out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    /// The CA that signed NiFi's and the clients' certificates (PEM).
    pub ca: PathBuf,
    /// The authorized client's certificate (PEM).
    pub client_cert: PathBuf,
    /// The authorized client's private key (PKCS#8 PEM).
    pub client_key: PathBuf,
    /// The authorized client's identity as PKCS#12 (key + certificate + CA).
    pub client_p12: PathBuf,
    /// Password of [`TlsFiles::client_p12`].
    pub client_p12_password: String,
    /// The authorized client's DN as NiFi writes it (`CN=…, OU=…`): its user identity.
    pub client_dn: String,
    /// A client certificate from the same CA that NiFi does not authorize (PEM).
    pub other_cert: PathBuf,
    /// Its private key (PEM).
    pub other_key: PathBuf,
    /// Its DN as NiFi writes it.
    pub other_dn: String,
    /// A CA that signed nothing NiFi trusts or presents (PEM).
    pub rogue_ca: PathBuf,
    /// A client certificate signed by the rogue CA (PEM).
    pub rogue_client_cert: PathBuf,
    /// Its private key (PEM).
    pub rogue_client_key: PathBuf,
    /// NiFi's keystore (server key + certificate chain, PKCS#12).
    pub keystore: PathBuf,
    /// NiFi's truststore (the CA, PKCS#12).
    pub truststore: PathBuf,
    /// Password of the keystore, its key and the truststore.
    pub store_password: String,
}

impl TlsFiles {
    /// The authorized client's identity (CA, certificate, key).
    pub fn identity(&self) -> ClientIdentity {
        ClientIdentity {
            ca: self.ca.clone(),
            cert: self.client_cert.clone(),
            key: self.client_key.clone(),
        }
    }
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
            .field("client_dn", &self.client_dn)
            .field("keystore", &self.keystore)
            .finish_non_exhaustive()
    }
}

/// A random password for test stores (fastrand: these protect throwaway test keys only).
pub fn random_password() -> String {
    let mut rng = fastrand::Rng::new();
    (0..24).map(|_| rng.alphanumeric()).collect()
}

/// The DN the way NiFi (Java's `X500Principal`) prints it: most specific RDN first. The
/// certificate encodes OU before CN (the usual order), so Java shows `CN=…, OU=…`.
fn nifi_dn(cn: &str) -> String {
    format!("CN={cn}, OU={CLIENT_OU}")
}

fn err(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |e| Error::Provision(format!("generating {what}: {e}"))
}

struct Issued {
    cert: Certificate,
    key: KeyPair,
}

fn params(sans: &[&str], dn: DistinguishedName) -> Result<CertificateParams, Error> {
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut p = CertificateParams::new(sans).map_err(err("certificate parameters"))?;
    p.distinguished_name = dn;
    // UTCTime-encodable validity (before 2050): some ASN.1 readers dislike GeneralizedTime here.
    p.not_before = date_time_ymd(2024, 1, 1);
    p.not_after = date_time_ymd(2049, 12, 31);
    Ok(p)
}

fn ca(cn: &str) -> Result<Issued, Error> {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "nifi-s2s tests");
    dn.push(DnType::CommonName, cn);
    let mut p = params(&[], dn)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().map_err(err("a CA key"))?;
    let cert = p.self_signed(&key).map_err(err("a CA certificate"))?;
    Ok(Issued { cert, key })
}

fn leaf(issuer: &Issued, sans: &[&str], dn: DistinguishedName) -> Result<Issued, Error> {
    let mut p = params(sans, dn)?;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // Both purposes: NiFi's server certificate also acts as a client (node-to-node, and its own
    // S2S when a flow talks to itself); the client ones only ever present as clients, but one shape
    // keeps the generator simple.
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(err("a key"))?;
    let cert = p
        .signed_by(&key, &issuer.cert, &issuer.key)
        .map_err(err("a certificate"))?;
    Ok(Issued { cert, key })
}

fn client_dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationalUnitName, CLIENT_OU);
    dn.push(DnType::CommonName, cn);
    dn
}

fn write(dir: &Path, name: &str, data: impl AsRef<[u8]>) -> Result<PathBuf, Error> {
    let p = dir.join(name);
    fs::write(&p, data).map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
    Ok(p)
}

fn p12_err(e: p12_keystore::error::Error) -> Error {
    Error::Provision(format!("writing PKCS#12: {e}"))
}

/// A PKCS#12 file holding one private key with its chain (leaf first).
fn key_p12(
    alias: &str,
    leaf: &Issued,
    chain: &[&Certificate],
    password: &str,
) -> Result<Vec<u8>, Error> {
    let key = p12_keystore::PrivateKey::from_der(&leaf.key.serialize_der()).map_err(p12_err)?;
    let mut certs = vec![p12_keystore::Certificate::from_der(leaf.cert.der()).map_err(p12_err)?];
    for c in chain {
        certs.push(p12_keystore::Certificate::from_der(c.der()).map_err(p12_err)?);
    }
    let id: Vec<u8> = (0..8).map(|_| fastrand::u8(..)).collect();
    let chain = p12_keystore::PrivateKeyChain::new(id, key, certs);
    let mut ks = p12_keystore::KeyStore::new();
    ks.add_entry(alias, p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    ks.writer(password).write().map_err(p12_err)
}

/// A PKCS#12 truststore: certificate entries carry Java's "trusted" attribute, which is what
/// makes Java's `KeyStore` see them as trusted CAs.
fn trust_p12(alias: &str, ca: &Certificate, password: &str) -> Result<Vec<u8>, Error> {
    let mut ks = p12_keystore::KeyStore::new();
    let cert = p12_keystore::Certificate::from_der(ca.der()).map_err(p12_err)?;
    ks.add_entry(alias, p12_keystore::KeyStoreEntry::Certificate(cert));
    ks.writer(password).write().map_err(p12_err)
}

/// Generates the whole test PKI into `dir` (created if needed; existing files are overwritten).
///
/// The server certificate's subject alternative names are `127.0.0.1`, `localhost` and
/// `extra_sans` (e.g. a docker-compose service name). `store_password` protects the keystore,
/// truststore and `client.p12`.
pub fn generate(dir: &Path, extra_sans: &[&str], store_password: &str) -> Result<TlsFiles, Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let ca = ca("nifi-s2s test CA")?;
    let mut sans = vec!["127.0.0.1", "localhost"];
    sans.extend_from_slice(extra_sans);
    let mut server_dn = DistinguishedName::new();
    server_dn.push(DnType::OrganizationalUnitName, "nifi");
    server_dn.push(DnType::CommonName, "localhost");
    let server = leaf(&ca, &sans, server_dn)?;
    let client = leaf(&ca, &[], client_dn(CLIENT_CN))?;
    let other = leaf(&ca, &[], client_dn(OTHER_CN))?;
    let rogue = ca_rogue()?;
    let rogue_client = leaf(&rogue, &[], client_dn(CLIENT_CN))?;

    let ks = key_p12("nifi-key", &server, &[&ca.cert], store_password)?;
    let ts = trust_p12("nifi-s2s-test-ca", &ca.cert, store_password)?;
    let client_p12 = key_p12("s2s-test-client", &client, &[&ca.cert], store_password)?;
    write(dir, "ca.key", ca.key.serialize_pem())?;
    write(dir, "server.pem", server.cert.pem())?;
    write(dir, "server.key", server.key.serialize_pem())?;
    write(dir, "rogue-ca.key", rogue.key.serialize_pem())?;
    Ok(TlsFiles {
        ca: write(dir, "ca.pem", ca.cert.pem())?,
        client_cert: write(dir, "client.pem", client.cert.pem())?,
        client_key: write(dir, "client.key", client.key.serialize_pem())?,
        client_p12: write(dir, "client.p12", client_p12)?,
        client_p12_password: store_password.to_owned(),
        client_dn: nifi_dn(CLIENT_CN),
        other_cert: write(dir, "other-client.pem", other.cert.pem())?,
        other_key: write(dir, "other-client.key", other.key.serialize_pem())?,
        other_dn: nifi_dn(OTHER_CN),
        rogue_ca: write(dir, "rogue-ca.pem", rogue.cert.pem())?,
        rogue_client_cert: write(dir, "rogue-client.pem", rogue_client.cert.pem())?,
        rogue_client_key: write(dir, "rogue-client.key", rogue_client.key.serialize_pem())?,
        keystore: write(dir, "keystore.p12", ks)?,
        truststore: write(dir, "truststore.p12", ts)?,
        store_password: store_password.to_owned(),
    })
}

fn ca_rogue() -> Result<Issued, Error> {
    // Same CN as the real CA on purpose: a wrong-CA failure must come from the signature, not from
    // a name mismatch a lazy verifier could catch.
    ca("nifi-s2s test CA")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_every_file_and_readable_pkcs12() {
        let dir = std::env::temp_dir().join(format!("nifi-testkit-certs-{}", std::process::id()));
        let t = generate(&dir, &["nifi"], "pw-123456").unwrap();
        for p in [
            &t.ca,
            &t.client_cert,
            &t.client_key,
            &t.other_cert,
            &t.rogue_ca,
            &t.keystore,
        ] {
            assert!(p.is_file(), "{}", p.display());
        }
        let ks = p12_keystore::KeyStore::from_pkcs12(
            &fs::read(&t.keystore).unwrap(),
            "pw-123456",
            p12_keystore::Pkcs12ImportPolicy::Strict,
        )
        .unwrap();
        let (_, chain) = ks.private_key_chain().expect("server key in keystore");
        assert_eq!(chain.certs().len(), 2, "leaf + CA");
        assert!(chain.certs()[0].subject().contains("localhost"));
        let ts = p12_keystore::KeyStore::from_pkcs12(
            &fs::read(&t.truststore).unwrap(),
            "pw-123456",
            p12_keystore::Pkcs12ImportPolicy::Strict,
        )
        .unwrap();
        assert_eq!(ts.entries_len(), 1, "the trusted CA");
        assert!(
            p12_keystore::KeyStore::from_pkcs12(
                &fs::read(&t.client_p12).unwrap(),
                "wrong",
                p12_keystore::Pkcs12ImportPolicy::Strict
            )
            .is_err()
        );
        assert_eq!(t.client_dn, "CN=s2s-test-client, OU=nifi-s2s");
        assert!(
            !format!("{t:?}").contains("pw-123456"),
            "no secrets in Debug"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
