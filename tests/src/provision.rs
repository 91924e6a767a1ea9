//! Provisioning a real NiFi without Docker: Maven Central artifacts → a NiFi home → one JVM.
//!
//! The NiFi binary zip is not published to Maven Central, but every piece of it is (see
//! `nifi-test-peer.md`). [`fetch`] resolves those pieces with `mvn` into a cache the project owns
//! ([`cache_dir`]), [`assemble`] lays out a NiFi home under the workspace `target/nifi/<version>/`,
//! [`configure`] writes an unsecured `nifi.properties`, and [`start`] launches `org.apache.nifi.NiFi`
//! directly (one PID, no bootstrap watchdog), whose readiness [`wait_ready`] polls. [`up`] chains all of
//! that and records an [`Instance`] in the state file, which [`crate::Nifi::shared`] reads.
//!
//! Processes are stopped by PID only ([`stop`]), after checking that the PID still belongs to a NiFi
//! JVM, so a recycled PID is never signalled.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::certs::{self, ClientIdentity, TlsFiles};

/// The NiFi version `cargo xtask nifi up` provisions by default.
///
/// 1.18.0 rather than 1.28.1: the Maven repository this project's machines reach serves the 1.28.1
/// framework, server and provenance NARs as 404 (only the jetty NAR and `nifi-resources` exist at
/// 1.28.1); 1.18.0 is the newest 1.x line with every required artifact, and its S2S wire protocol is
/// the same (RAW protocol versions 6..1, HTTP transport version 1).
pub const DEFAULT_VERSION: &str = "1.18.0";

/// Versions whose artifact lists this module knows.
pub const KNOWN_VERSIONS: &[&str] = &["1.18.0", "1.28.1", "2.3.0", "2.6.0", "2.11.0"];

/// `nifi-resources` (conf/ and bin/) only exists at these versions on the reachable repository; the
/// 1.28.1 templates are used for every version (every key NiFi needs is overridden or has the same
/// meaning across 1.18 → 2.x).
const RESOURCES_VERSION: &str = "1.28.1";

/// The dependency plugin named explicitly: Maven 3.8.7's default one predates `artifactItems` fixes.
pub(crate) const DEPENDENCY_PLUGIN: &str = "3.8.1";

const GROUP: &str = "org.apache.nifi";

/// Prints one progress line (to stderr, so that stdout stays machine-readable for callers).
pub fn progress(msg: impl AsRef<str>) {
    eprintln!("[nifi] {}", msg.as_ref());
}

/// A running (or once running) NiFi, as recorded in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Base URL, e.g. `http://127.0.0.1:8080/nifi` (the REST API is at `{url}-api`).
    pub url: String,
    /// RAW Site-to-Site port, if RAW S2S is enabled.
    pub raw_port: Option<u16>,
    /// PID of the NiFi JVM (absent for a NiFi this kit did not start).
    pub pid: Option<u32>,
    /// NiFi version.
    pub version: String,
    /// NiFi home directory (absent for a NiFi this kit did not start).
    pub home: Option<PathBuf>,
    /// For a secured NiFi: the test PKI (CA, client identities, stores) the kit generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// For a secured NiFi: a username/password login (NiFi issues bearer tokens for it at
    /// `/nifi-api/access/token`). `Debug` hides the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
}

/// A username/password NiFi accepts at `/nifi-api/access/token` (test provider, see
/// [`configure`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// The username (also the NiFi user identity).
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The username of the test login of a secured instance.
pub const LOGIN_USERNAME: &str = "s2s-test-user";

impl Instance {
    /// Renders the `KEY=VALUE` form of the state file (sourceable by a shell).
    pub fn to_env(&self) -> String {
        let mut s = format!("NIFI_URL={}\n", self.url);
        if let Some(p) = self.raw_port {
            let _ = writeln!(s, "NIFI_RAW_PORT={p}");
        }
        if let Some(p) = self.pid {
            let _ = writeln!(s, "NIFI_PID={p}");
        }
        let _ = writeln!(s, "NIFI_VERSION={}", self.version);
        if let Some(h) = &self.home {
            let _ = writeln!(s, "NIFI_HOME={}", h.display());
        }
        if let Some(t) = &self.tls {
            for (k, v) in tls_env(t) {
                // Single quotes keep DNs (`CN=…, OU=…`) one value when the file is `source`d.
                if v.contains([' ', ',', '\'', '"', '$']) {
                    let _ = writeln!(s, "{k}='{}'", v.replace('\'', "'\\''"));
                } else {
                    let _ = writeln!(s, "{k}={v}");
                }
            }
        }
        if let Some(l) = &self.login {
            let _ = writeln!(s, "NIFI_USERNAME={}", l.username);
            let _ = writeln!(s, "NIFI_PASSWORD={}", l.password);
        }
        s
    }

    /// Parses the `KEY=VALUE` form written by [`Instance::to_env`].
    pub fn from_env(text: &str) -> Result<Self, Error> {
        let mut url = None;
        let mut inst = Self {
            url: String::new(),
            raw_port: None,
            pid: None,
            version: String::new(),
            home: None,
            tls: None,
            login: None,
        };
        let mut tls = Vec::new();
        let (mut username, mut password) = (None, None);
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim();
            let unquoted;
            let v = match v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                Some(inner) => {
                    unquoted = inner.replace("'\\''", "'");
                    unquoted.as_str()
                }
                None => v,
            };
            match k.trim() {
                "NIFI_URL" => url = Some(v.to_owned()),
                "NIFI_RAW_PORT" => inst.raw_port = v.parse().ok(),
                "NIFI_PID" => inst.pid = v.parse().ok(),
                "NIFI_VERSION" => inst.version = v.to_owned(),
                "NIFI_HOME" => inst.home = Some(PathBuf::from(v)),
                k if k.starts_with("NIFI_TLS_") => tls.push((k.to_owned(), v.to_owned())),
                "NIFI_USERNAME" => username = Some(v.to_owned()),
                "NIFI_PASSWORD" => password = Some(v.to_owned()),
                _ => {}
            }
        }
        inst.url = url.ok_or_else(|| Error::Provision("state file has no NIFI_URL".into()))?;
        if !tls.is_empty() {
            inst.tls = Some(tls_from_env(&tls)?);
        }
        if let (Some(username), Some(password)) = (username, password) {
            inst.login = Some(Login { username, password });
        }
        Ok(inst)
    }

    /// Whether the recorded PID is alive and still a NiFi JVM.
    pub fn process_alive(&self) -> bool {
        self.pid.is_some_and(is_nifi_process)
    }
}

/// The `NIFI_TLS_*` lines of a secured instance's state file.
fn tls_env(t: &TlsFiles) -> Vec<(&'static str, String)> {
    let p = |p: &Path| p.display().to_string();
    vec![
        ("NIFI_TLS_CA", p(&t.ca)),
        ("NIFI_TLS_CLIENT_CERT", p(&t.client_cert)),
        ("NIFI_TLS_CLIENT_KEY", p(&t.client_key)),
        ("NIFI_TLS_CLIENT_P12", p(&t.client_p12)),
        (
            "NIFI_TLS_CLIENT_P12_PASSWORD",
            t.client_p12_password.clone(),
        ),
        ("NIFI_TLS_CLIENT_DN", t.client_dn.clone()),
        ("NIFI_TLS_OTHER_CERT", p(&t.other_cert)),
        ("NIFI_TLS_OTHER_KEY", p(&t.other_key)),
        ("NIFI_TLS_OTHER_DN", t.other_dn.clone()),
        ("NIFI_TLS_ROGUE_CA", p(&t.rogue_ca)),
        ("NIFI_TLS_ROGUE_CLIENT_CERT", p(&t.rogue_client_cert)),
        ("NIFI_TLS_ROGUE_CLIENT_KEY", p(&t.rogue_client_key)),
        ("NIFI_TLS_KEYSTORE", p(&t.keystore)),
        ("NIFI_TLS_TRUSTSTORE", p(&t.truststore)),
        ("NIFI_TLS_STORE_PASSWORD", t.store_password.clone()),
    ]
}

fn tls_from_env(kv: &[(String, String)]) -> Result<TlsFiles, Error> {
    let get = |k: &str| {
        kv.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::Provision(format!("state file has NIFI_TLS_* but no {k}")))
    };
    let path = |k: &str| get(k).map(PathBuf::from);
    Ok(TlsFiles {
        ca: path("NIFI_TLS_CA")?,
        client_cert: path("NIFI_TLS_CLIENT_CERT")?,
        client_key: path("NIFI_TLS_CLIENT_KEY")?,
        client_p12: path("NIFI_TLS_CLIENT_P12")?,
        client_p12_password: get("NIFI_TLS_CLIENT_P12_PASSWORD")?,
        client_dn: get("NIFI_TLS_CLIENT_DN")?,
        other_cert: path("NIFI_TLS_OTHER_CERT")?,
        other_key: path("NIFI_TLS_OTHER_KEY")?,
        other_dn: get("NIFI_TLS_OTHER_DN")?,
        rogue_ca: path("NIFI_TLS_ROGUE_CA")?,
        rogue_client_cert: path("NIFI_TLS_ROGUE_CLIENT_CERT")?,
        rogue_client_key: path("NIFI_TLS_ROGUE_CLIENT_KEY")?,
        keystore: path("NIFI_TLS_KEYSTORE")?,
        truststore: path("NIFI_TLS_TRUSTSTORE")?,
        store_password: get("NIFI_TLS_STORE_PASSWORD")?,
    })
}

/// A reqwest client for NiFi's REST API: plain for an unsecured NiFi; for a secured one it trusts
/// only the test CA and presents the authorized client certificate (rustls, no OpenSSL).
pub fn rest_client(tls: Option<&ClientIdentity>) -> Result<reqwest::Client, Error> {
    // No idle keep-alive pool: a test may sit for minutes between two REST calls, and NiFi's
    // Jetty closes idle connections on its own clock. Reusing one that Jetty is closing at that
    // instant fails the request with "connection closed before message completed" (it failed a
    // CI run that way). A fresh loopback connection per call costs well under a millisecond
    // (a TLS handshake on loopback: a few milliseconds).
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0);
    if let Some(t) = tls {
        let read =
            |p: &Path| fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e));
        let ca = reqwest::Certificate::from_pem(&read(&t.ca)?)
            .map_err(|e| Error::Provision(format!("CA {}: {e}", t.ca.display())))?;
        let mut pem = read(&t.cert)?;
        pem.extend_from_slice(&read(&t.key)?);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| Error::Provision(format!("client identity: {e}")))?;
        b = b
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(id);
    }
    b.build()
        .map_err(|e| Error::Provision(format!("building the REST client: {e}")))
}

/// The workspace root: `git rev-parse --show-toplevel` from this crate, else the parent of this
/// crate's manifest directory (deliberately not `CARGO_TARGET_DIR`, which differs per developer).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(manifest)
        .stderr(Stdio::null())
        .output();
    if let Ok(out) = git
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if p.join("Cargo.toml").is_file() {
            return p;
        }
    }
    manifest
        .parent()
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// Where NiFi homes and state files live: `$NIFI_S2S_NIFI_DIR` if set (an isolated run, e.g. to measure
/// a cold start), else the workspace `target/nifi`.
pub fn nifi_dir() -> PathBuf {
    match std::env::var_os("NIFI_S2S_NIFI_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target").join("nifi"),
    }
}

/// The folder of the crash test's own NiFi (`<nifi_dir>/restart-test`): `tests/tests/restart.rs`
/// SIGKILLs that JVM, so it is never one another test uses. `cargo xtask test` starts it with the
/// other lanes (`NIFI_S2S_NIFI_DIR=<this> cargo xtask nifi up --no-shared`).
pub fn restart_test_dir() -> PathBuf {
    nifi_dir().join("restart-test")
}

/// The state file of the shared instance, `target/nifi/nifi.env` (plus a `nifi.json` twin).
pub fn state_file() -> PathBuf {
    nifi_dir().join("nifi.env")
}

/// The state file of one version's instance, `target/nifi/<version>/nifi.env`.
pub fn version_state_file(version: &str) -> PathBuf {
    nifi_dir().join(version).join("nifi.env")
}

/// The home (and state) directory name of an instance: `<version>` or `<version>-secure`.
pub fn instance_name(version: &str, secure: bool) -> String {
    if secure {
        format!("{version}-secure")
    } else {
        version.to_owned()
    }
}

/// The state file of one version's **secured** instance, `target/nifi/<version>-secure/nifi.env`
/// (never the shared `nifi.env`: tests that expect a plain NiFi must not find a secured one).
pub fn secure_state_file(version: &str) -> PathBuf {
    nifi_dir()
        .join(instance_name(version, true))
        .join("nifi.env")
}

/// The download cache: `$NIFI_S2S_CACHE`, else `~/.cache/nifi-s2s`. Maven's local repository is
/// `<cache>/m2`, so nothing depends on a hand-filled `~/.m2`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NIFI_S2S_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache").join("nifi-s2s")
}

/// Maven's local repository inside the cache.
pub fn maven_repo() -> PathBuf {
    cache_dir().join("m2")
}

/// Reads a state file; `Ok(None)` when it does not exist.
pub fn read_state(path: &Path) -> Result<Option<Instance>, Error> {
    match fs::read_to_string(path) {
        Ok(text) => Instance::from_env(&text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes a state file and its JSON twin (`.json` next to it).
pub fn write_state(path: &Path, inst: &Instance) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    fs::write(path, inst.to_env())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    let json = path.with_extension("json");
    let body = serde_json::to_string_pretty(inst).expect("Instance serializes");
    fs::write(&json, body).map_err(|e| Error::io(format!("writing {}", json.display()), e))
}

fn remove_state(path: &Path) {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(path.with_extension("json"));
}

/// Maven coordinates `group:artifact:version[:type[:classifier]]`; `version` empty means "from the
/// imported BOM".
#[derive(Debug, Clone)]
struct Coord {
    group: String,
    artifact: String,
    version: String,
    kind: &'static str,
}

impl Coord {
    fn new(group: &str, artifact: &str, version: &str) -> Self {
        Self {
            group: group.into(),
            artifact: artifact.into(),
            version: version.into(),
            kind: "jar",
        }
    }

    fn nar(artifact: &str, version: &str) -> Self {
        Self {
            kind: "nar",
            ..Self::new(GROUP, artifact, version)
        }
    }

    fn xml(&self, tag: &str) -> String {
        let version = if self.version.is_empty() {
            String::new()
        } else {
            format!("<version>{}</version>", self.version)
        };
        format!(
            "<{tag}><groupId>{}</groupId><artifactId>{}</artifactId>{version}<type>{}</type></{tag}>",
            self.group, self.artifact, self.kind
        )
    }
}

/// What one NiFi version's home is made of.
#[derive(Debug)]
struct Layout {
    version: String,
    /// NARs and jars for `lib/` (non-transitive).
    lib: Vec<Coord>,
    /// 1.x only: `lib/bootstrap/` (non-transitive), which `NiFi.main` loads the properties loader from.
    bootstrap: Vec<Coord>,
    /// 1.x only: `lib/java11/` (transitive), the JAXB/annotation APIs removed from the JDK.
    java11: Vec<Coord>,
    /// 2.x only: `nifi-bom` to import versions from.
    bom: Option<Coord>,
}

fn layout(version: &str) -> Result<Layout, Error> {
    let major: u8 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| Error::Provision(format!("not a NiFi version: {version:?}")))?;
    let v = version;
    match major {
        1 => {
            // Versions of the root-lib jars, from the `nifi` parent pom of each release.
            let (slf4j, logback, jaxb) = match v {
                "1.28.1" => ("2.0.16", "1.3.14", "2.3.9"),
                "1.18.0" => ("1.7.36", "1.2.11", "2.3.5"),
                _ => {
                    return Err(Error::Provision(format!(
                        "unknown 1.x version {v}; known: {KNOWN_VERSIONS:?}"
                    )));
                }
            };
            let mut lib = vec![
                Coord::nar("nifi-jetty-bundle", v),
                Coord::nar("nifi-framework-nar", v),
                Coord::nar("nifi-server-nar", v),
                Coord::nar("nifi-provenance-repository-nar", v),
                Coord::new("javax.servlet", "javax.servlet-api", "3.1.0"),
                Coord::new("org.eclipse.jetty.toolchain", "jetty-schemas", "5.2"),
                Coord::new("ch.qos.logback", "logback-classic", logback),
                Coord::new("ch.qos.logback", "logback-core", logback),
            ];
            for a in [
                "slf4j-api",
                "jcl-over-slf4j",
                "jul-to-slf4j",
                "log4j-over-slf4j",
            ] {
                lib.push(Coord::new("org.slf4j", a, slf4j));
            }
            let mut nifi_jars = vec![
                "nifi-api",
                "nifi-framework-api",
                "nifi-server-api",
                "nifi-runtime",
                "nifi-nar-utils",
                "nifi-properties",
                "nifi-property-utils",
                "nifi-stateless-api",
                "nifi-stateless-bootstrap",
            ];
            if v == "1.28.1" {
                nifi_jars.push("nifi-per-process-group-logging");
            }
            lib.extend(nifi_jars.into_iter().map(|a| Coord::new(GROUP, a, v)));
            let mut bootstrap: Vec<Coord> = [
                "nifi-properties-loader",
                "nifi-property-protection-loader",
                "nifi-property-protection-api",
                "nifi-properties",
                "nifi-property-utils",
                "nifi-deprecation-log",
            ]
            .into_iter()
            .map(|a| Coord::new(GROUP, a, v))
            .collect();
            bootstrap.push(Coord::new("org.slf4j", "slf4j-api", slf4j));
            let java11 = vec![
                Coord::new("jakarta.xml.bind", "jakarta.xml.bind-api", "2.3.3"),
                Coord::new("org.glassfish.jaxb", "jaxb-runtime", jaxb),
                Coord::new("javax.annotation", "javax.annotation-api", "1.3.2"),
            ];
            Ok(Layout {
                version: v.into(),
                lib,
                bootstrap,
                java11,
                bom: None,
            })
        }
        2 => {
            let mut lib = vec![
                Coord::nar("nifi-jetty-nar", v),
                Coord::nar("nifi-framework-nar", v),
                Coord::nar("nifi-server-nar", v),
                Coord::nar("nifi-provenance-repository-nar", v),
            ];
            for a in [
                "slf4j-api",
                "log4j-over-slf4j",
                "jcl-over-slf4j",
                "jul-to-slf4j",
            ] {
                lib.push(Coord::new("org.slf4j", a, ""));
            }
            for a in ["logback-classic", "logback-core"] {
                lib.push(Coord::new("ch.qos.logback", a, ""));
            }
            for a in [
                "nifi-api",
                "nifi-framework-api",
                "nifi-nar-utils",
                "nifi-properties",
                "nifi-property-utils",
                "nifi-python-framework-api",
                "nifi-runtime",
                "nifi-server-api",
                "nifi-stateless-api",
            ] {
                lib.push(Coord::new(GROUP, a, ""));
            }
            Ok(Layout {
                version: v.into(),
                lib,
                bootstrap: Vec::new(),
                java11: Vec::new(),
                bom: Some(Coord {
                    kind: "pom",
                    ..Coord::new(GROUP, "nifi-bom", v)
                }),
            })
        }
        _ => Err(Error::Provision(format!(
            "unsupported NiFi major version in {v}"
        ))),
    }
}

fn copy_execution(id: &str, goal: &str, out: &Path, items: &[Coord]) -> String {
    let items: String = items.iter().map(|c| c.xml("artifactItem")).collect();
    format!(
        "<execution><id>{id}</id><phase>validate</phase><goals><goal>{goal}</goal></goals>\
         <configuration><outputDirectory>{}</outputDirectory><artifactItems>{items}</artifactItems>\
         </configuration></execution>\n",
        out.display()
    )
}

/// One throwaway pom whose `validate` phase copies every artifact (one `mvn` run instead of ~30).
fn pom(layout: &Layout, stage: &Path, markers: &Path) -> String {
    let mut executions = String::new();
    let resources = Coord {
        kind: "zip",
        ..Coord::new(GROUP, "nifi-resources", RESOURCES_VERSION)
    };
    let res_xml = resources.xml("artifactItem").replace(
        "</artifactItem>",
        "<classifier>resources</classifier></artifactItem>",
    );
    let _ = writeln!(
        executions,
        "<execution><id>resources</id><phase>validate</phase><goals><goal>unpack</goal></goals>\
         <configuration><outputDirectory>{}</outputDirectory><artifactItems>{res_xml}</artifactItems>\
         </configuration></execution>",
        stage.display()
    );
    executions += &copy_execution("lib", "copy", &stage.join("lib"), &layout.lib);
    if !layout.bootstrap.is_empty() {
        let out = stage.join("lib").join("bootstrap");
        executions += &copy_execution("bootstrap", "copy", &out, &layout.bootstrap);
    }
    let mut dependencies = String::new();
    if !layout.java11.is_empty() {
        // Transitive on purpose: jaxb-runtime needs its activation/istack/txw2 jars.
        dependencies = layout.java11.iter().map(|c| c.xml("dependency")).collect();
        let _ = writeln!(
            executions,
            "<execution><id>java11</id><phase>validate</phase><goals><goal>copy-dependencies</goal>\
             </goals><configuration><outputDirectory>{}</outputDirectory>\
             <includeScope>runtime</includeScope></configuration></execution>",
            stage.join("lib").join("java11").display()
        );
    }
    let management = layout.bom.as_ref().map_or_else(String::new, |bom| {
        format!(
            "<dependencyManagement><dependencies>{}</dependencies></dependencyManagement>",
            bom.xml("dependency")
                .replace("</dependency>", "<scope>import</scope></dependency>")
        )
    });
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by nifi-testkit (provision.rs): assembles a NiFi {version} home; do not edit. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>nifi-s2s.provision</groupId>
  <artifactId>nifi-home</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  {management}
  <dependencies>{dependencies}</dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId>
    <artifactId>maven-dependency-plugin</artifactId>
    <version>{DEPENDENCY_PLUGIN}</version>
    <configuration><markersDirectory>{markers}</markersDirectory></configuration>
    <executions>
{executions}    </executions>
  </plugin></plugins></build>
</project>
"#,
        version = layout.version,
        markers = markers.display(),
    )
}

/// Runs `mvn` with the project's local repository, streaming the interesting lines as progress.
pub fn run_maven(dir: &Path, args: &[&str]) -> Result<(), Error> {
    run_maven_env(dir, args, &[])
}

/// [`run_maven`] with extra environment variables (e.g. `JAVA_HOME`).
fn run_maven_env(dir: &Path, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Result<(), Error> {
    let repo = maven_repo();
    let mut cmd = Command::new("mvn");
    cmd.envs(env.iter().copied());
    cmd.arg("-B")
        .arg("-Dstyle.color=never")
        .arg(format!("-Dmaven.repo.local={}", repo.display()))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    progress(format!(
        "mvn {} (in {}, repo {})",
        args.join(" "),
        dir.display(),
        repo.display()
    ));
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io("starting mvn (is Maven installed?)", e))?;
    let mut tail: Vec<String> = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("Downloaded from")
                || line.contains("[ERROR]")
                || line.contains("BUILD")
                || line.contains("Unpacking")
            {
                progress(format!("  {line}"));
            }
            tail.push(line);
            if tail.len() > 40 {
                tail.remove(0);
            }
        }
    }
    let status = child.wait().map_err(|e| Error::io("waiting for mvn", e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Provision(format!(
            "mvn {} failed ({status}); last output:\n{}",
            args.join(" "),
            tail.join("\n")
        )))
    }
}

/// Downloads (once) every artifact of a NiFi home into `<cache>/dist/<version>/`, returning that
/// directory. A finished download is reused; a half-finished one is redone.
pub fn fetch(version: &str) -> Result<PathBuf, Error> {
    let layout = layout(version)?;
    let cache = cache_dir();
    let _lock = cache_lock()?;
    let dist = cache.join("dist").join(version);
    if dist.join(".complete").is_file() {
        progress(format!(
            "artifacts of NiFi {version} cached in {}",
            dist.display()
        ));
        return Ok(dist);
    }
    let build = cache.join("build").join(version);
    let stage = cache.join("dist").join(format!("{version}.partial"));
    for d in [&build, &stage] {
        if d.exists() {
            fs::remove_dir_all(d).map_err(|e| Error::io(format!("cleaning {}", d.display()), e))?;
        }
        fs::create_dir_all(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    }
    fs::write(
        build.join("pom.xml"),
        pom(&layout, &stage, &build.join("markers")),
    )
    .map_err(|e| Error::io("writing the assembly pom", e))?;
    progress(format!(
        "downloading NiFi {version} from Maven Central (cold: ~20 s, 150 MB)"
    ));
    let t = Instant::now();
    run_maven(&build, &["validate"])?;
    fs::write(
        stage.join(".complete"),
        format!("{}\n", t.elapsed().as_secs_f64()),
    )
    .map_err(|e| Error::io("marking the download complete", e))?;
    if dist.exists() {
        fs::remove_dir_all(&dist).map_err(|e| Error::io("replacing the old download", e))?;
    }
    fs::rename(&stage, &dist).map_err(|e| Error::io("publishing the download", e))?;
    progress(format!(
        "downloaded NiFi {version} in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    Ok(dist)
}

/// An exclusive lock on the download cache, released when dropped: `cargo xtask test` starts
/// several lanes at once, and two `mvn` runs into one staging folder (or filling one local Maven
/// repository) at the same time could corrupt it on a cold cache. Warm, it is held for
/// milliseconds. A directory is the lock (`mkdir` is atomic; `File::lock`
/// is newer than this crate's MSRV); one older than 15 minutes is a crashed run's and is broken.
pub(crate) struct CacheLock(PathBuf);

impl Drop for CacheLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

pub(crate) fn cache_lock() -> Result<CacheLock, Error> {
    let dir = cache_dir();
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join("download.lock");
    let mut reported = false;
    loop {
        match fs::create_dir(&path) {
            Ok(()) => return Ok(CacheLock(path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let stale = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(15 * 60));
                if stale {
                    let _ = fs::remove_dir(&path);
                    continue;
                }
                if !reported {
                    progress(format!("waiting for another download ({})", path.display()));
                    reported = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
        }
    }
}

/// NiFi 1.x loads its property-protection implementations from `lib/properties/` (relative to its
/// working directory) whenever it reads `authorizers.xml`, i.e. only when secured; without them
/// startup fails with "No implementations found [ProtectionSchemeResolver]". The factory refers to
/// every provider class (else `NoClassDefFoundError: AwsKmsSensitivePropertyProvider`), but no cloud
/// SDK is touched while no property is protected, so the provider jars are taken without their
/// dependencies.
fn secure_extras(version: &str) -> Vec<Coord> {
    if !version.starts_with("1.") {
        return Vec::new();
    }
    let mut v: Vec<Coord> = [
        "nifi-property-protection-factory",
        "nifi-property-protection-shared",
        "nifi-property-protection-cipher",
        "nifi-property-protection-aws",
        "nifi-property-protection-azure",
        "nifi-property-protection-gcp",
        "nifi-property-protection-hashicorp",
    ]
    .into_iter()
    .map(|a| Coord::new(GROUP, a, version))
    .collect();
    v.push(Coord::new("commons-codec", "commons-codec", "1.15"));
    v
}

/// Downloads (once) the extra jars a secured home of `version` needs into
/// `<cache>/dist/<version>-secure-extras/lib/properties/`; `None` when the version needs none.
pub fn fetch_secure_extras(version: &str) -> Result<Option<PathBuf>, Error> {
    let extras = secure_extras(version);
    if extras.is_empty() {
        return Ok(None);
    }
    let cache = cache_dir();
    let _lock = cache_lock()?;
    let dist = cache.join("dist").join(format!("{version}-secure-extras"));
    if dist.join(".complete").is_file() {
        return Ok(Some(dist));
    }
    let build = cache.join("build").join(format!("{version}-secure-extras"));
    for d in [&build, &dist] {
        if d.exists() {
            fs::remove_dir_all(d).map_err(|e| Error::io(format!("cleaning {}", d.display()), e))?;
        }
        fs::create_dir_all(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    }
    let exec = copy_execution(
        "properties",
        "copy",
        &dist.join("lib").join("properties"),
        &extras,
    );
    let pom = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by nifi-testkit (provision.rs): extra jars of a secured NiFi {version}; do not edit. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>nifi-s2s.provision</groupId>
  <artifactId>nifi-secure-extras</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId>
    <artifactId>maven-dependency-plugin</artifactId>
    <version>{DEPENDENCY_PLUGIN}</version>
    <configuration><markersDirectory>{markers}</markersDirectory></configuration>
    <executions>
{exec}    </executions>
  </plugin></plugins></build>
</project>
"#,
        markers = build.join("markers").display(),
    );
    fs::write(build.join("pom.xml"), pom).map_err(|e| Error::io("writing the extras pom", e))?;
    run_maven(&build, &["validate"])?;
    fs::write(dist.join(".complete"), "")
        .map_err(|e| Error::io("marking the extras download complete", e))?;
    Ok(Some(dist))
}

/// Replaces the hard links in `dir` (one level) by private copies. `conf/` is written in place by
/// [`configure`] and [`assemble_into`]; written through a hard link, every home of that version
/// and the download cache would share one `nifi.properties`, and homes started at the same time
/// (`cargo xtask test` starts its lanes in parallel) would read each other's ports and security.
fn own_copies(dir: &Path) -> Result<(), Error> {
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", e))?;
        let path = entry.path();
        if !entry
            .file_type()
            .map_err(|e| Error::io("stat", e))?
            .is_file()
        {
            continue;
        }
        let data =
            fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        fs::remove_file(&path)
            .map_err(|e| Error::io(format!("unlinking {}", path.display()), e))?;
        fs::write(&path, data).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    fs::create_dir_all(to).map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    let entries =
        fs::read_dir(from).map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let ty = entry.file_type().map_err(|e| Error::io("stat", e))?;
        if ty.is_dir() {
            copy_tree(&src, &dst)?;
        } else if !dst.exists() {
            // Hard links keep a second home free on disk; fall back to a copy across filesystems.
            if fs::hard_link(&src, &dst).is_err() {
                fs::copy(&src, &dst)
                    .map_err(|e| Error::io(format!("copying {}", src.display()), e))?;
            }
        }
    }
    Ok(())
}

/// Lays out (or refreshes) the NiFi home `target/nifi/<version>/` from the downloaded artifacts, with
/// an empty flow and empty repositories; keeps `work/nar` (the unpacked NARs) so warm starts are fast.
pub fn assemble(version: &str, dist: &Path) -> Result<PathBuf, Error> {
    assemble_into(&nifi_dir().join(version), dist)
}

/// [`assemble`] into an explicit home directory (e.g. `target/nifi/<version>-secure`).
pub fn assemble_into(home: &Path, dist: &Path) -> Result<PathBuf, Error> {
    let home = home.to_path_buf();
    let t = Instant::now();
    for stale in [
        "flowfile_repository",
        "content_repository",
        "provenance_repository",
        "database_repository",
        "state",
        "work/jetty",
        "logs",
        "conf",
        "lib",
        "tls",
    ] {
        let p = home.join(stale);
        if p.exists() {
            fs::remove_dir_all(&p)
                .map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
        }
    }
    copy_tree(dist, &home)?;
    let _ = fs::remove_file(home.join(".complete"));
    own_copies(&home.join("conf"))?;
    for dir in ["extensions", "logs"] {
        fs::create_dir_all(home.join(dir)).map_err(|e| Error::io("creating home dirs", e))?;
    }
    // Our own logback config: the 1.28.1 template references classes (NifiDiscriminator) that other
    // versions' lib/ lacks, and one plain file is all a test peer needs.
    fs::write(home.join("conf").join("logback.xml"), LOGBACK)
        .map_err(|e| Error::io("writing logback.xml", e))?;
    progress(format!(
        "assembled {} in {:.1} s",
        home.display(),
        t.elapsed().as_secs_f64()
    ));
    Ok(home)
}

const LOGBACK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by nifi-testkit: one log file, S2S at INFO (raise org.apache.nifi.remote to DEBUG to see handshakes). -->
<configuration scan="false">
  <appender name="APP_FILE" class="ch.qos.logback.core.FileAppender">
    <file>${org.apache.nifi.bootstrap.config.log.dir}/nifi-app.log</file>
    <encoder><pattern>%date %level [%thread] %logger{40} %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.nifi" level="INFO"/>
  <logger name="org.apache.nifi.web.security" level="WARN"/>
  <logger name="org.apache.nifi.web.server.RequestLog" level="WARN"/>
  <logger name="org.eclipse.jetty" level="WARN"/>
  <logger name="org.springframework" level="ERROR"/>
  <logger name="org.glassfish.jersey.internal.Errors" level="ERROR"/>
  <root level="INFO"><appender-ref ref="APP_FILE"/></root>
</configuration>
"#;

/// Ports of one instance.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// HTTP port of the REST API, UI and HTTP S2S.
    pub web: u16,
    /// RAW S2S port.
    pub raw: u16,
    /// NiFi 2.x management server port (ignored by 1.x).
    pub management: u16,
}

/// `n` distinct free loopback ports (the OS picks; all are held until every one is chosen, so they
/// differ; another process may still grab one before NiFi binds it, which is unlikely).
pub fn free_ports(n: usize) -> Result<Vec<u16>, Error> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::io("finding free ports", e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::io("finding free ports", e))
}

/// Sets (or appends) `key=value` lines of a properties file, leaving the rest as shipped.
pub(crate) fn set_properties(text: &str, overrides: &[(&str, String)]) -> String {
    let mut done = vec![false; overrides.len()];
    let mut out = String::with_capacity(text.len() + 512);
    for line in text.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim());
        match key.and_then(|k| overrides.iter().position(|(o, _)| *o == k)) {
            Some(i) if !line.trim_start().starts_with('#') => {
                let _ = writeln!(out, "{}={}", overrides[i].0, overrides[i].1);
                done[i] = true;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (i, (k, v)) in overrides.iter().enumerate() {
        if !done[i] {
            let _ = writeln!(out, "{k}={v}");
        }
    }
    out
}

/// Writes `conf/nifi.properties`: HTTP only on 127.0.0.1, unsecured RAW and HTTP S2S, the advertised
/// S2S host 127.0.0.1, no authorizer/login provider, no archive churn.
///
/// With `tls`: HTTPS only (the web port), RAW S2S over TLS (`nifi.remote.input.secure=true`), HTTP S2S
/// over https, the generated PKCS#12 keystore/truststore, and `conf/authorizers.xml` with a
/// file-based user group provider and access policy provider whose initial user and initial admin
/// is the client certificate's DN.
pub fn configure(
    home: &Path,
    version: &str,
    ports: Ports,
    tls: Option<&TlsFiles>,
    login: Option<&Login>,
) -> Result<(), Error> {
    let path = home.join("conf").join("nifi.properties");
    let text = fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let e = String::new;
    let mut o: Vec<(&str, String)> = vec![
        ("nifi.web.http.host", "127.0.0.1".into()),
        ("nifi.web.http.port", ports.web.to_string()),
        // HTTPS and HTTP cannot both be set (the template ships 8443).
        ("nifi.web.https.host", e()),
        ("nifi.web.https.port", e()),
        ("nifi.remote.input.host", "127.0.0.1".into()),
        ("nifi.remote.input.secure", "false".into()),
        ("nifi.remote.input.socket.port", ports.raw.to_string()),
        ("nifi.remote.input.http.enabled", "true".into()),
        // >= 12 characters; a fixed key keeps flows readable across restarts of the same home.
        ("nifi.sensitive.props.key", "nifi-s2s-test-props-key".into()),
        ("nifi.security.user.authorizer", e()),
        ("nifi.security.user.login.identity.provider", e()),
        ("nifi.security.keystore", e()),
        ("nifi.security.keystoreType", e()),
        ("nifi.security.keystorePasswd", e()),
        ("nifi.security.keyPasswd", e()),
        ("nifi.security.truststore", e()),
        ("nifi.security.truststoreType", e()),
        ("nifi.security.truststorePasswd", e()),
        ("nifi.cluster.is.node", "false".into()),
        (
            "nifi.state.management.embedded.zookeeper.start",
            "false".into(),
        ),
        ("nifi.flow.configuration.archive.enabled", "false".into()),
        ("nifi.content.repository.archive.enabled", "false".into()),
        // Tests run one after another on one NiFi: a short poll keeps ports and funnels snappy.
        ("nifi.bored.yield.duration", "10 millis".into()),
    ];
    if version.starts_with("2.") {
        o.push(("nifi.flow.configuration.file", "./conf/flow.json.gz".into()));
    }
    if let Some(t) = tls {
        let abs = |p: &Path| p.display().to_string();
        let pw = &t.store_password;
        o.extend([
            ("nifi.web.http.host", e()),
            ("nifi.web.http.port", e()),
            ("nifi.web.https.host", "127.0.0.1".into()),
            ("nifi.web.https.port", ports.web.to_string()),
            ("nifi.remote.input.secure", "true".into()),
            ("nifi.security.keystore", abs(&t.keystore)),
            ("nifi.security.keystoreType", "PKCS12".into()),
            ("nifi.security.keystorePasswd", pw.clone()),
            ("nifi.security.keyPasswd", pw.clone()),
            ("nifi.security.truststore", abs(&t.truststore)),
            ("nifi.security.truststoreType", "PKCS12".into()),
            ("nifi.security.truststorePasswd", pw.clone()),
            ("nifi.security.user.authorizer", "managed-authorizer".into()),
        ]);
        let authorizers = home.join("conf").join("authorizers.xml");
        fs::write(
            &authorizers,
            authorizers_xml(&t.client_dn, login.map(|l| l.username.as_str())),
        )
        .map_err(|e| Error::io(format!("writing {}", authorizers.display()), e))?;
        if let Some(l) = login {
            let providers = home.join("conf").join("login-identity-providers.xml");
            fs::write(&providers, login_providers_xml(l))
                .map_err(|e| Error::io(format!("writing {}", providers.display()), e))?;
            o.push((
                "nifi.login.identity.provider.configuration.file",
                "./conf/login-identity-providers.xml".into(),
            ));
            o.push((
                "nifi.security.user.login.identity.provider",
                LOGIN_PROVIDER_ID.into(),
            ));
        }
        for stale in ["users.xml", "authorizations.xml"] {
            let _ = fs::remove_file(home.join("conf").join(stale));
        }
    }
    // Later entries win: the secured overrides replace the plain ones of the same key.
    let mut merged: Vec<(&str, String)> = Vec::with_capacity(o.len());
    for (k, v) in o {
        match merged.iter_mut().find(|(m, _)| *m == k) {
            Some(slot) => slot.1 = v,
            None => merged.push((k, v)),
        }
    }
    fs::write(&path, set_properties(&text, &merged))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The identifier of the test login provider in `login-identity-providers.xml`.
const LOGIN_PROVIDER_ID: &str = "nifi-s2s-test-login";

/// Java source of the test login provider (compiled per home by [`build_login_provider`]).
const LOGIN_PROVIDER_JAVA: &str =
    include_str!("../login-provider/StaticLoginIdentityProvider.java");
const LOGIN_PROVIDER_CLASS: &str = "nifi_s2s.testkit.StaticLoginIdentityProvider";

fn login_providers_xml(l: &Login) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<!-- Written by nifi-testkit (provision.rs): one test user, NiFi issues bearer tokens for it. -->
<loginIdentityProviders>
    <provider>
        <identifier>{LOGIN_PROVIDER_ID}</identifier>
        <class>{LOGIN_PROVIDER_CLASS}</class>
        <property name="Username">{}</property>
        <property name="Password">{}</property>
        <property name="Expiration Minutes">60</property>
    </provider>
</loginIdentityProviders>
"#,
        xml_escape(&l.username),
        xml_escape(&l.password)
    )
}

/// Compiles the test login provider against the home's `nifi-framework-api` jar with the JDK that
/// runs this version, and puts the jar (with its `META-INF/services` entry) into `lib/`, where
/// NiFi's system bundle finds it.
///
/// Why our own provider: NiFi's single-user provider NAR (`nifi-single-user-iaa-providers-nar`)
/// is 404 on the Maven repository this project reaches, for 1.18.0 and 2.3.0 alike.
pub fn build_login_provider(home: &Path, version: &str) -> Result<(), Error> {
    let java = java_for(version)?;
    let bin = |tool: &str| -> PathBuf {
        match java.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(tool),
            _ => PathBuf::from(tool),
        }
    };
    let api = home
        .join("lib")
        .join(format!("nifi-framework-api-{version}.jar"));
    let build = home.join("work").join("login-provider");
    if build.exists() {
        fs::remove_dir_all(&build)
            .map_err(|e| Error::io("cleaning the login provider build", e))?;
    }
    let src = build.join("src");
    let classes = build.join("classes");
    let services = classes.join("META-INF").join("services");
    for d in [&src, &services] {
        fs::create_dir_all(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    }
    let java_file = src.join("StaticLoginIdentityProvider.java");
    fs::write(&java_file, LOGIN_PROVIDER_JAVA).map_err(|e| Error::io("writing the provider", e))?;
    fs::write(
        services.join("org.apache.nifi.authentication.LoginIdentityProvider"),
        format!("{LOGIN_PROVIDER_CLASS}\n"),
    )
    .map_err(|e| Error::io("writing the provider's service entry", e))?;
    let jar = home.join("lib").join("nifi-s2s-test-login.jar");
    for (tool, args) in [
        (
            "javac",
            vec![
                "--release".into(),
                "17".into(),
                "-nowarn".into(),
                "-d".into(),
                classes.display().to_string(),
                "-cp".into(),
                api.display().to_string(),
                java_file.display().to_string(),
            ],
        ),
        (
            "jar",
            vec![
                "cf".into(),
                jar.display().to_string(),
                "-C".into(),
                classes.display().to_string(),
                ".".into(),
            ],
        ),
    ] {
        let out = Command::new(bin(tool))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("running {}", bin(tool).display()), e))?;
        if !out.status.success() {
            return Err(Error::Provision(format!(
                "{tool} failed building the test login provider: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    Ok(())
}

/// Minimal XML escaping for a DN placed in an element.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `conf/authorizers.xml` for a secured test NiFi: users and policies in files under `conf/`
/// (relative to the home, NiFi's working directory), the client DN as the only user and the
/// initial admin. The admin gets NiFi's admin policies (UI, tenants, policies, controller) but not
/// the data or S2S ones; [`crate::Nifi`] grants those through the REST API.
fn authorizers_xml(admin_dn: &str, login_user: Option<&str>) -> String {
    let dn = xml_escape(admin_dn);
    let second = login_user.map_or_else(String::new, |u| {
        format!(
            "\n        <property name=\"Initial User Identity 2\">{}</property>",
            xml_escape(u)
        )
    });
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<!-- Written by nifi-testkit (provision.rs) for a secured test NiFi. -->
<authorizers>
    <userGroupProvider>
        <identifier>file-user-group-provider</identifier>
        <class>org.apache.nifi.authorization.FileUserGroupProvider</class>
        <property name="Users File">./conf/users.xml</property>
        <property name="Initial User Identity 1">{dn}</property>{second}
    </userGroupProvider>
    <accessPolicyProvider>
        <identifier>file-access-policy-provider</identifier>
        <class>org.apache.nifi.authorization.FileAccessPolicyProvider</class>
        <property name="User Group Provider">file-user-group-provider</property>
        <property name="Authorizations File">./conf/authorizations.xml</property>
        <property name="Initial Admin Identity">{dn}</property>
    </accessPolicyProvider>
    <authorizer>
        <identifier>managed-authorizer</identifier>
        <class>org.apache.nifi.authorization.StandardManagedAuthorizer</class>
        <property name="Access Policy Provider">file-access-policy-provider</property>
    </authorizer>
</authorizers>
"#
    )
}

/// The oldest Java a NiFi version runs on: 21 for 2.x, 17 for the 1.x lines this kit provisions
/// (they also run on 8/11, but the kit's login provider is compiled with `--release 17`).
pub fn min_java(version: &str) -> u32 {
    if version.starts_with("1.") { 17 } else { 21 }
}

/// The major version of the JDK/JRE at `java_home` (`<home>/release`'s `JAVA_VERSION`, else what
/// `<home>/bin/java -version` prints); `None` when there is no Java there.
pub fn java_major(java_home: &Path) -> Option<u32> {
    let from_release = fs::read_to_string(java_home.join("release"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("JAVA_VERSION="))
                .and_then(|v| parse_java_version(v.trim_matches('"')))
        });
    if from_release.is_some() {
        return from_release;
    }
    let java = java_home.join("bin").join("java");
    let out = Command::new(&java)
        .arg("-version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    // `openjdk version "21.0.2" 2024-01-16` (on stderr).
    let text = String::from_utf8_lossy(&out.stderr);
    let quoted = text.split('"').nth(1)?;
    parse_java_version(quoted)
}

/// `"25.0.3"` → 25, `"21"` → 21, `"1.8.0_392"` → 8.
fn parse_java_version(v: &str) -> Option<u32> {
    let mut parts = v.split(['.', '_', '-', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

/// The Java home behind `java` on `PATH` (`/usr/bin/java` → `/usr/lib/jvm/…`), if any.
fn java_home_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let java = std::env::split_paths(&path)
        .map(|d| d.join("java"))
        .find(|p| p.is_file())?;
    let real = java.canonicalize().ok()?;
    Some(real.parent()?.parent()?.to_path_buf())
}

/// Every Java home this kit looks at, in order of preference, each with its major version (`None`
/// when the directory holds no working Java): `$JAVA_HOME`, the `java` on `PATH`, then
/// `/usr/lib/jvm/*`, `/usr/java/*`, `/opt/java/*` and `/opt/jdk*` (newest first).
pub fn java_candidates() -> Vec<(PathBuf, Option<u32>)> {
    let mut homes: Vec<PathBuf> = Vec::new();
    if let Some(h) = std::env::var_os("JAVA_HOME").filter(|h| !h.is_empty()) {
        homes.push(PathBuf::from(h));
    }
    homes.extend(java_home_on_path());
    let mut scanned: Vec<(PathBuf, Option<u32>)> = Vec::new();
    for root in ["/usr/lib/jvm", "/usr/java", "/opt/java", "/opt"] {
        let Ok(entries) = fs::read_dir(root) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if root == "/opt" && !name.starts_with("jdk") {
                continue;
            }
            if p.join("bin").join("java").is_file() {
                scanned.push((p.clone(), java_major(&p)));
            }
        }
    }
    // Newest first; symlinked twins (java-1.17.0-openjdk-amd64 → java-17-openjdk-amd64) once.
    scanned.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut out: Vec<(PathBuf, Option<u32>)> = homes
        .into_iter()
        .map(|h| (h.clone(), java_major(&h)))
        .collect();
    out.extend(scanned);
    let mut seen = Vec::new();
    out.retain(|(p, _)| {
        let real = p.canonicalize().unwrap_or_else(|_| p.clone());
        if seen.contains(&real) {
            false
        } else {
            seen.push(real);
            true
        }
    });
    out
}

/// The `java` binary for a version: `$NIFI_S2S_JAVA_HOME/bin/java` if set (it must be new enough),
/// else the first of [`java_candidates`] with at least [`min_java`]`(version)`: Java 21+ for 2.x
/// (Debian 12 only ships 17; a Temurin JDK under `/usr/lib/jvm` is found there), 17+ for 1.x.
///
/// Fails at once, naming what was found and what to install, when there is none: called before
/// anything is downloaded or started.
pub fn java_for(version: &str) -> Result<PathBuf, Error> {
    let min = min_java(version);
    if let Some(h) = std::env::var_os("NIFI_S2S_JAVA_HOME").filter(|h| !h.is_empty()) {
        let h = PathBuf::from(h);
        return match java_major(&h) {
            Some(m) if m >= min => Ok(h.join("bin").join("java")),
            found => Err(Error::Provision(format!(
                "NIFI_S2S_JAVA_HOME={} is {}, but NiFi {version} needs Java {min} or newer",
                h.display(),
                found.map_or_else(|| "not a Java home".to_owned(), |m| format!("Java {m}"))
            ))),
        };
    }
    pick_java(version, &java_candidates())
}

/// [`java_for`]'s choice among `candidates` (home, major version), or the error naming what to
/// install.
fn pick_java(version: &str, candidates: &[(PathBuf, Option<u32>)]) -> Result<PathBuf, Error> {
    let min = min_java(version);
    // 1.x is only known to run on 17 (and older): a 17 beats a newer JDK listed before it.
    let preferred = |m: u32| min >= 21 || m <= 17;
    if let Some((h, _)) = candidates
        .iter()
        .find(|(_, m)| m.is_some_and(|m| m >= min && preferred(m)))
        .or_else(|| candidates.iter().find(|(_, m)| m.is_some_and(|m| m >= min)))
    {
        return Ok(h.join("bin").join("java"));
    }
    let found = if candidates.is_empty() {
        "no Java at all".to_owned()
    } else {
        candidates
            .iter()
            .map(|(h, m)| {
                let m = m.map_or_else(|| "?".to_owned(), |m| m.to_string());
                format!("Java {m} at {}", h.display())
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let install = if min >= 21 {
        "install a JDK 21 or newer: Eclipse Temurin 21 or 25 (package `temurin-25-jdk` from \
         Adoptium's apt repository, it lands in /usr/lib/jvm/temurin-25-jdk-amd64), or \
         `apt-get install openjdk-21-jdk-headless` on Debian 13 / Ubuntu 24.04; \
         or point NIFI_S2S_JAVA_HOME at one"
    } else {
        "install a JDK 17 (`apt-get install openjdk-17-jdk-headless`), or point \
         NIFI_S2S_JAVA_HOME at one"
    };
    Err(Error::Provision(format!(
        "NiFi {version} needs Java {min} or newer and this machine has none (looked at \
         $JAVA_HOME, `java` on PATH, /usr/lib/jvm/*, /usr/java/*, /opt/java/*, /opt/jdk*; found {found}): {install}"
    )))
}

/// Starts the NiFi JVM in the background (its own process group, so a Ctrl-C on the caller does not
/// kill it), logging to `logs/nifi-stdout.log`. Returns its PID.
pub fn start(home: &Path, version: &str, ports: Ports, heap: &str) -> Result<u32, Error> {
    use std::os::unix::process::CommandExt as _;
    let home = home
        .canonicalize()
        .map_err(|e| Error::io(format!("resolving {}", home.display()), e))?;
    let logs = home.join("logs");
    let out = fs::File::create(logs.join("nifi-stdout.log"))
        .map_err(|e| Error::io("creating nifi-stdout.log", e))?;
    let err = out
        .try_clone()
        .map_err(|e| Error::io("cloning a file handle", e))?;
    let java = java_for(version)?;
    let mut cmd = Command::new(&java);
    cmd.current_dir(&home)
        .arg(format!("-Xms{heap}"))
        .arg(format!("-Xmx{heap}"))
        .args([
            "-Djava.net.preferIPv4Stack=true",
            "-Dsun.net.http.allowRestrictedHeaders=true",
            "-Djava.protocol.handler.pkgs=sun.net.www.protocol",
            "-Djava.awt.headless=true",
            "-Djava.security.egd=file:/dev/urandom",
            "-Djavax.security.auth.useSubjectCredsOnly=true",
            "-Dzookeeper.admin.enableServer=false",
            "-Dapp=NiFi",
        ])
        .arg(format!(
            "-Dnifi.properties.file.path={}",
            home.join("conf/nifi.properties").display()
        ))
        .arg(format!(
            "-Dorg.apache.nifi.bootstrap.config.log.dir={}",
            logs.display()
        ));
    let h = home.display();
    if version.starts_with("2.") {
        cmd.arg(format!(
            "-Dorg.apache.nifi.management.server.address=127.0.0.1:{}",
            ports.management
        ))
        .arg("--class-path")
        .arg(format!("{h}/lib/*:{h}/conf"));
    } else {
        cmd.arg("-cp")
            .arg(format!("{h}/conf:{h}/lib/*:{h}/lib/java11/*"));
    }
    cmd.arg("org.apache.nifi.NiFi")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", java.display()), e))?;
    Ok(child.id())
}

/// Whether `pid` exists and is not a zombie (a child this process never reaped stays a zombie).
pub fn process_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        // The state letter follows the parenthesised command name, which may itself contain spaces.
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// Whether `pid` is alive and its command line is a NiFi JVM (`org.apache.nifi.NiFi`).
pub fn is_nifi_process(pid: u32) -> bool {
    process_running(pid)
        && fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            c.split(|b| *b == 0)
                .any(|arg| arg == b"org.apache.nifi.NiFi")
        })
}

/// Resident set size of a process in KiB (from `/proc`), for reports.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub(crate) fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops a NiFi JVM by PID: SIGTERM, then SIGKILL after `grace`. Does nothing if the PID is gone or
/// is no longer a NiFi JVM.
pub fn stop(pid: u32, grace: Duration) -> Result<(), Error> {
    if !is_nifi_process(pid) {
        progress(format!("PID {pid} is not a running NiFi; nothing to stop"));
        return Ok(());
    }
    stop_running(pid, grace)
}

/// SIGTERM, then SIGKILL after `grace`, without the NiFi check: only for a PID this process spawned.
pub(crate) fn stop_running(pid: u32, grace: Duration) -> Result<(), Error> {
    progress(format!("stopping NiFi (PID {pid}, SIGTERM)"));
    signal(pid, "-TERM");
    let t = Instant::now();
    while t.elapsed() < grace {
        if !process_running(pid) {
            progress(format!("stopped in {:.1} s", t.elapsed().as_secs_f64()));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    progress(format!("still alive after {grace:?}: SIGKILL"));
    signal(pid, "-KILL");
    std::thread::sleep(Duration::from_millis(500));
    if process_running(pid) {
        return Err(Error::Provision(format!("PID {pid} survived SIGKILL")));
    }
    Ok(())
}

/// Whether `GET {url}-api/flow/about` answers 200 (returns the NiFi version it reports).
pub async fn about(http: &reqwest::Client, url: &str) -> Option<String> {
    let resp = http
        .get(format!("{url}-api/flow/about"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: serde_json::Value = resp.json().await.ok()?;
    v["about"]["version"].as_str().map(str::to_owned)
}

/// Polls `GET /nifi-api/flow/about` until it answers, the process dies, or `timeout` passes (then the
/// end of the NiFi log is part of the error).
pub async fn wait_ready(
    url: &str,
    pid: u32,
    home: &Path,
    timeout: Duration,
) -> Result<Duration, Error> {
    wait_ready_with(&reqwest::Client::new(), url, pid, home, timeout).await
}

/// [`wait_ready`] with a given REST client (a secured NiFi needs [`rest_client`] with the test PKI).
pub async fn wait_ready_with(
    http: &reqwest::Client,
    url: &str,
    pid: u32,
    home: &Path,
    timeout: Duration,
) -> Result<Duration, Error> {
    let t = Instant::now();
    let mut last_report = Instant::now();
    loop {
        if about(http, url).await.is_some() {
            return Ok(t.elapsed());
        }
        // Only "gone or zombie" counts as dead here: right after spawn the cmdline can be briefly
        // unreadable or the launcher's, so the NiFi-cmdline check would give false alarms.
        if !process_running(pid) {
            return Err(Error::Provision(format!(
                "NiFi (PID {pid}) exited during startup:\n{}",
                log_tail(home, 40)
            )));
        }
        if t.elapsed() > timeout {
            return Err(Error::Timeout {
                what: format!(
                    "NiFi at {url} to answer /flow/about; log:\n{}",
                    log_tail(home, 40)
                ),
                waited: timeout,
            });
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let line = log_tail(home, 1);
            progress(format!(
                "  waiting for NiFi ({:.0} s): {}",
                t.elapsed().as_secs_f64(),
                line.chars().take(140).collect::<String>()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The last `n` lines of `logs/nifi-app.log` (else `logs/nifi-stdout.log`).
pub fn log_tail(home: &Path, n: usize) -> String {
    for name in ["nifi-app.log", "nifi-stdout.log"] {
        if let Ok(text) = fs::read_to_string(home.join("logs").join(name)) {
            if text.trim().is_empty() {
                continue;
            }
            let lines: Vec<&str> = text.lines().collect();
            return lines[lines.len().saturating_sub(n)..].join("\n");
        }
    }
    String::from("(no log yet)")
}

/// Options for [`up`].
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// NiFi version ([`DEFAULT_VERSION`] by default).
    pub version: String,
    /// Web (HTTP) port; a free one if `None`. A home that is restarted keeps its own ports.
    pub web_port: Option<u16>,
    /// RAW S2S port; a free one if `None`. A home that is restarted keeps its own ports.
    pub raw_port: Option<u16>,
    /// JVM heap (`-Xms`/`-Xmx`).
    pub heap: String,
    /// How long to wait for `/flow/about`.
    pub start_timeout: Duration,
    /// Also record the instance in the shared state file `<dir>/nifi.env` (unless that one
    /// points to another live NiFi). Ignored for a secured instance (never shared).
    pub make_shared: bool,
    /// Start NiFi secured: HTTPS, RAW S2S over TLS, certificate users, a generated test PKI. Its home
    /// and state file are `<dir>/<version>-secure/` ([`secure_state_file`]).
    pub secure: bool,
    /// Wipe the home (flow, repositories, logs, ports, test PKI; the unpacked NARs are kept) and
    /// start from scratch, stopping its NiFi first if it runs. Without it, an existing home whose
    /// NiFi is not running (it crashed, was killed, or was stopped) is restarted as it is.
    pub fresh: bool,
    /// Where homes and state files go; [`nifi_dir`] if `None`.
    pub dir: Option<PathBuf>,
}

impl Default for UpOptions {
    fn default() -> Self {
        Self {
            version: DEFAULT_VERSION.into(),
            web_port: None,
            raw_port: None,
            heap: "512m".into(),
            start_timeout: Duration::from_secs(300),
            make_shared: true,
            secure: false,
            fresh: false,
            dir: None,
        }
    }
}

/// What [`up`] did.
#[derive(Debug, Clone)]
pub struct UpReport {
    /// The instance (also in the state file).
    pub instance: Instance,
    /// True if an already running instance was reused.
    pub reused: bool,
    /// True if an existing home was restarted (same flow, queues, ports and PKI), not assembled.
    pub restarted: bool,
    /// Time spent downloading (zero when cached).
    pub download: Duration,
    /// Time spent assembling the home.
    pub assembly: Duration,
    /// Time from JVM start to `/flow/about` answering.
    pub startup: Duration,
    /// Time spent waiting for another `up`/`down` of the same home.
    pub lock_wait: Duration,
}

/// The record of a home that started once (`<home>/home.json`): what [`up`] needs to restart it
/// as it was (URL and ports, test PKI, login). Unlike the state file it survives `down`; only
/// [`UpOptions::fresh`] replaces it.
pub fn home_record_file(home: &Path) -> PathBuf {
    home.join("home.json")
}

fn read_home_record(home: &Path) -> Result<Option<Instance>, Error> {
    let path = home_record_file(home);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    // A home is only restartable while its pieces are there.
    let complete = home.join("conf").join("nifi.properties").is_file() && home.join("lib").is_dir();
    if !complete {
        return Ok(None);
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Provision(format!("{}: {e} (use --fresh)", path.display())))
}

fn write_home_record(home: &Path, inst: &Instance) -> Result<(), Error> {
    let path = home_record_file(home);
    let rec = Instance {
        pid: None,
        ..inst.clone()
    };
    let body = serde_json::to_string_pretty(&rec).expect("Instance serializes");
    fs::write(&path, body).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The port of a `scheme://host:port/path` URL.
fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// An exclusive lock on one home (`<home>/up.lock`, a kernel `flock`, so a killed holder releases
/// it at once): two `up` (or an `up` and a `down`) of the same home never run at the same time.
/// The second one waits, then finds the first one's NiFi up and reuses it. The file holds the
/// holder's PID, for the waiting message.
#[derive(Debug)]
pub struct HomeLock {
    _file: fs::File,
}

impl HomeLock {
    /// Takes the lock of `home` (creating the folder), waiting as long as another process holds it
    /// and saying so every 10 s.
    pub fn acquire(home: &Path) -> Result<Self, Error> {
        use std::io::{Seek as _, Write as _};
        fs::create_dir_all(home)
            .map_err(|e| Error::io(format!("creating {}", home.display()), e))?;
        let path = home.join("up.lock");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let t = Instant::now();
        let mut next_report = Duration::ZERO;
        loop {
            // Fully qualified: std's `File::try_lock` is newer than this crate's MSRV.
            match fs4::FileExt::try_lock(&file) {
                Ok(()) => break,
                Err(fs4::TryLockError::WouldBlock) => {
                    if t.elapsed() >= next_report {
                        let holder = fs::read_to_string(&path).unwrap_or_default();
                        let holder = match holder.trim() {
                            "" => String::new(),
                            pid => format!(" (PID {pid})"),
                        };
                        progress(format!(
                            "waiting for another `nifi up`/`down` of {}{holder} to finish ({:.0} s)",
                            home.display(),
                            t.elapsed().as_secs_f64()
                        ));
                        next_report += Duration::from_secs(10);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(fs4::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", path.display()), e));
                }
            }
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "{}", std::process::id());
        Ok(Self { _file: file })
    }
}

/// Waits (up to `wait`) until every port can be bound on 127.0.0.1 again; a killed NiFi's ports
/// are free at once, so this only waits for a straggler (e.g. a JVM still exiting).
pub(crate) fn wait_ports_free(ports: &[u16], wait: Duration) -> Result<(), Error> {
    let t = Instant::now();
    loop {
        let busy: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| TcpListener::bind(("127.0.0.1", *p)).is_err())
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        if t.elapsed() > wait {
            return Err(Error::Provision(format!(
                "port(s) {busy:?} of this NiFi home are in use by another process (`ss -ltnp` \
                 names it); stop it, or start over on new ports with `--fresh`"
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Brings a NiFi up and records it in the state files: reuses the instance of that version if it is
/// up and answering; else restarts its existing home as it is (same flow, queued FlowFiles, ports
/// and test PKI; after a crash, a SIGKILL or `down`); else (no home yet, or
/// [`UpOptions::fresh`]) downloads (cached), assembles, configures and starts a new one.
///
/// One `up` at a time per home ([`HomeLock`]): a concurrent second one waits, then reuses.
pub async fn up(opts: &UpOptions) -> Result<UpReport, Error> {
    let version = opts.version.as_str();
    let secure = opts.secure;
    let make_shared = opts.make_shared && !secure;
    let name = instance_name(version, secure);
    let base = opts.dir.clone().unwrap_or_else(nifi_dir);
    let home_dir = base.join(&name);
    let vstate = home_dir.join("nifi.env");
    let shared_state = base.join("nifi.env");
    // Before anything is downloaded or started: the right Java, or a message naming what to install.
    let java = java_for(version)?;
    let t = Instant::now();
    let lock_home = home_dir.clone();
    let _lock = tokio::task::spawn_blocking(move || HomeLock::acquire(&lock_home))
        .await
        .map_err(|e| Error::Provision(format!("waiting for the home lock: {e}")))??;
    let lock_wait = t.elapsed();
    // The shared state file may record this version's instance even when the per-version one is
    // missing (older runs); reusing it also protects its home from being re-assembled under it.
    let recorded = match read_state(&vstate)? {
        Some(inst) => Some(inst),
        None if !secure => read_state(&shared_state)?.filter(|s| s.version == version),
        None => None,
    };
    if let Some(inst) = recorded {
        let http = rest_client(inst.tls.as_ref().map(TlsFiles::identity).as_ref())?;
        if !opts.fresh && inst.process_alive() && about(&http, &inst.url).await.is_some() {
            write_state(&vstate, &inst)?;
            progress(format!("NiFi {name} already up at {}", inst.url));
            publish_shared(&inst, make_shared, &shared_state, &http).await?;
            return Ok(UpReport {
                instance: inst,
                reused: true,
                restarted: false,
                download: Duration::ZERO,
                assembly: Duration::ZERO,
                startup: Duration::ZERO,
                lock_wait,
            });
        }
        if let Some(pid) = inst.pid.filter(|p| is_nifi_process(*p)) {
            // --fresh, or alive but not answering: a half-dead JVM would hold the ports and the
            // repositories.
            stop(pid, Duration::from_secs(20))?;
        }
        remove_state(&vstate);
    }
    if !opts.fresh
        && let Some(rec) = read_home_record(&home_dir)?
    {
        return restart(opts, rec, &home_dir, &java, lock_wait).await;
    }
    let _ = fs::remove_file(home_record_file(&home_dir));
    let t = Instant::now();
    let dist = fetch(version)?;
    let download = t.elapsed();
    let t = Instant::now();
    let home = assemble_into(&home_dir, &dist)?;
    let tls = if secure {
        if let Some(extras) = fetch_secure_extras(version)? {
            copy_tree(&extras, &home)?;
            let _ = fs::remove_file(home.join(".complete"));
        }
        let files = certs::generate(&home.join("tls"), &[], &certs::random_password())?;
        Some(files)
    } else {
        None
    };
    let free = free_ports(3)?;
    let ports = Ports {
        web: opts.web_port.unwrap_or(free[0]),
        raw: opts.raw_port.unwrap_or(free[1]),
        management: free[2],
    };
    if ports.web == ports.raw {
        return Err(Error::Provision(format!(
            "web and RAW port are both {}",
            ports.web
        )));
    }
    let login = if secure {
        build_login_provider(&home, version)?;
        Some(Login {
            username: LOGIN_USERNAME.into(),
            password: certs::random_password(),
        })
    } else {
        None
    };
    configure(&home, version, ports, tls.as_ref(), login.as_ref())?;
    let assembly = t.elapsed();
    let scheme = if secure { "https" } else { "http" };
    let instance = Instance {
        url: format!("{scheme}://127.0.0.1:{}/nifi", ports.web),
        raw_port: Some(ports.raw),
        pid: None,
        version: version.into(),
        home: Some(home),
        tls,
        login,
    };
    let (instance, startup) = launch(opts, instance, ports, &java, &shared_state).await?;
    Ok(UpReport {
        instance,
        reused: false,
        restarted: false,
        download,
        assembly,
        startup,
        lock_wait,
    })
}

/// Restarts an existing home as it is: same ports (they must be free), flow, repositories, PKI.
async fn restart(
    opts: &UpOptions,
    rec: Instance,
    home: &Path,
    java: &Path,
    lock_wait: Duration,
) -> Result<UpReport, Error> {
    let name = instance_name(&rec.version, rec.tls.is_some());
    let web = url_port(&rec.url).ok_or_else(|| {
        Error::Provision(format!(
            "{}: no port in {:?} (use --fresh)",
            home_record_file(home).display(),
            rec.url
        ))
    })?;
    let raw = rec.raw_port.ok_or_else(|| {
        Error::Provision(format!(
            "{}: no RAW port (use --fresh)",
            home_record_file(home).display()
        ))
    })?;
    for (asked, has, what) in [(opts.web_port, web, "web"), (opts.raw_port, raw, "RAW")] {
        if let Some(p) = asked.filter(|p| *p != has) {
            return Err(Error::Provision(format!(
                "the NiFi home {} uses {what} port {has}, not {p}: restart it on its own ports, or \
                 start over on new ones with --fresh (which wipes its flow and queues)",
                home.display()
            )));
        }
    }
    wait_ports_free(&[web, raw], Duration::from_secs(10))?;
    progress(format!(
        "restarting NiFi {name} in its existing home {} (flow, queued FlowFiles and ports kept; \
         --fresh starts over)",
        home.display()
    ));
    // Keep the crashed run's console output next to the new one.
    let logs = home.join("logs");
    let _ = fs::rename(
        logs.join("nifi-stdout.log"),
        logs.join("nifi-stdout.previous.log"),
    );
    let ports = Ports {
        web,
        raw,
        management: free_ports(1)?[0],
    };
    let shared_state = opts.dir.clone().unwrap_or_else(nifi_dir).join("nifi.env");
    let (instance, startup) = launch(opts, rec, ports, java, &shared_state).await?;
    Ok(UpReport {
        instance,
        reused: false,
        restarted: true,
        download: Duration::ZERO,
        assembly: Duration::ZERO,
        startup,
        lock_wait,
    })
}

/// Starts the JVM of a configured home, waits for it to answer, writes the home record and the
/// state files. `inst` describes the instance (its `pid` is filled in).
async fn launch(
    opts: &UpOptions,
    mut inst: Instance,
    ports: Ports,
    java: &Path,
    shared_state: &Path,
) -> Result<(Instance, Duration), Error> {
    let home = inst
        .home
        .clone()
        .ok_or_else(|| Error::Provision("an instance to launch has no home".into()))?;
    let name = instance_name(&inst.version, inst.tls.is_some());
    progress(format!(
        "starting NiFi {name} with {} (web {}, RAW {}), log {}",
        java.display(),
        ports.web,
        ports.raw,
        home.join("logs/nifi-app.log").display()
    ));
    let pid = start(&home, &inst.version, ports, &opts.heap)?;
    let http = rest_client(inst.tls.as_ref().map(TlsFiles::identity).as_ref())?;
    let startup = match wait_ready_with(&http, &inst.url, pid, &home, opts.start_timeout).await {
        Ok(d) => d,
        Err(e) => {
            // Our own child: stop it even if it never got far enough to look like NiFi.
            let _ = stop_running(pid, Duration::from_secs(10));
            return Err(e);
        }
    };
    inst.pid = Some(pid);
    write_home_record(&home, &inst)?;
    write_state(&home.join("nifi.env"), &inst)?;
    let make_shared = opts.make_shared && inst.tls.is_none();
    publish_shared(&inst, make_shared, shared_state, &http).await?;
    progress(format!(
        "NiFi {name} up in {:.1} s: NIFI_URL={} NIFI_RAW_PORT={}",
        startup.as_secs_f64(),
        inst.url,
        ports.raw
    ));
    Ok((inst, startup))
}

async fn publish_shared(
    inst: &Instance,
    make_shared: bool,
    shared: &Path,
    http: &reqwest::Client,
) -> Result<(), Error> {
    if !make_shared {
        return Ok(());
    }
    if let Some(cur) = read_state(shared)?
        && cur.url != inst.url
        && cur.process_alive()
        && about(http, &cur.url).await.is_some()
    {
        progress(format!(
            "{} keeps pointing at the NiFi {} already up at {}",
            shared.display(),
            cur.version,
            cur.url
        ));
        return Ok(());
    }
    write_state(shared, inst)
}

/// Stops the instance recorded in a state file and removes that file (and, if it is the shared
/// instance, the shared state file). Returns the stopped instance, if there was one. Its home
/// stays: the next [`up`] restarts it as it was (unless `fresh`).
pub fn down(version: Option<&str>) -> Result<Option<Instance>, Error> {
    down_in(&nifi_dir(), version)
}

/// [`down`] for the homes under `dir` (see [`UpOptions::dir`]).
pub fn down_in(dir: &Path, version: Option<&str>) -> Result<Option<Instance>, Error> {
    let path = match version {
        Some(v) => dir.join(v).join("nifi.env"),
        None => dir.join("nifi.env"),
    };
    down_at(&path, dir)
}

/// Stops the secured instance of `version` ([`secure_state_file`]) and removes its state file.
pub fn down_secure(version: &str) -> Result<Option<Instance>, Error> {
    down_at(&secure_state_file(version), &nifi_dir())
}

fn down_at(path: &Path, dir: &Path) -> Result<Option<Instance>, Error> {
    let path = path.to_path_buf();
    let Some(inst) = read_state(&path)? else {
        progress(format!(
            "no state file at {}: nothing to stop",
            path.display()
        ));
        return Ok(None);
    };
    // Not while an `up` of that home is starting it.
    let _lock = match &inst.home {
        Some(home) if home.is_dir() => Some(HomeLock::acquire(home)?),
        _ => None,
    };
    if let Some(pid) = inst.pid {
        stop(pid, Duration::from_secs(30))?;
    }
    remove_state(&path);
    if inst.tls.is_some() {
        return Ok(Some(inst));
    }
    remove_state(&dir.join(&inst.version).join("nifi.env"));
    let shared = dir.join("nifi.env");
    if let Some(cur) = read_state(&shared)?
        && cur.url == inst.url
    {
        remove_state(&shared);
    }
    Ok(Some(inst))
}

/// Puts `nifi-standard-nar` and its parent `nifi-standard-services-api-nar` (both at the
/// instance's version, resolved with `mvn` into [`maven_repo`]) into the instance's autoload
/// `extensions/` directory, so processors such as `ListenHTTP`, `PostHTTP` and
/// `GenerateFlowFile` become available without a restart (NiFi loads them within seconds to a
/// minute). Skipped for NARs already there. Needs the instance's home (one the kit started).
pub fn standard_nar(inst: &Instance) -> Result<(), Error> {
    let home = inst.home.as_ref().ok_or_else(|| {
        Error::Provision(
            "the NiFi was not started by the test kit (no home directory known)".into(),
        )
    })?;
    for id in ["nifi-standard-services-api-nar", "nifi-standard-nar"] {
        install_nar(home, GROUP, id, &inst.version)?;
    }
    Ok(())
}

/// Puts the NAR `group:artifact:version` (resolved with `mvn` into [`maven_repo`], not
/// transitively: install a NAR's parent, e.g. `nifi-standard-services-api-nar`, first) into the
/// autoload `extensions/` directory of the NiFi home `home`; NiFi loads it without a restart. Skipped
/// when a NAR of that file name is already in `extensions/` or `lib/`.
pub fn install_nar(home: &Path, group: &str, artifact: &str, version: &str) -> Result<(), Error> {
    let ext = home.join("extensions");
    fs::create_dir_all(&ext).map_err(|e| Error::io(format!("creating {}", ext.display()), e))?;
    let file = format!("{artifact}-{version}.nar");
    if ext.join(&file).exists() || home.join("lib").join(&file).exists() {
        return Ok(());
    }
    if group == GROUP && artifact == STANDARD_NAR && !version.starts_with("1.") {
        // From 2.0 on its NAR parent is nifi-standard-shared-nar (itself a child of
        // nifi-standard-services-api-nar, which the caller installs first).
        install_nar(home, GROUP, "nifi-standard-shared-nar", version)?;
    }
    let cached = fetch_nar(group, artifact, version)?;
    // Copy then rename: the autoloader must never see a half-written NAR (and two tests installing
    // the same NAR at once each write their own part file).
    let part = ext.join(format!(
        ".{file}.{}-{:08x}.part",
        std::process::id(),
        fastrand::u32(..)
    ));
    fs::copy(&cached, &part).map_err(|e| Error::io(format!("copying {}", cached.display()), e))?;
    fs::rename(&part, ext.join(&file))
        .map_err(|e| Error::io(format!("renaming {}", part.display()), e))?;
    progress(format!("{file} → {}", ext.display()));
    Ok(())
}

/// The NAR `group:artifact:version` in [`maven_repo`], resolved with `mvn` when missing;
/// `nifi-standard-nar` 2.x, which the Maven repository reachable here does not serve, is built
/// from its published parts instead (see `tests/standard-nar/pom.xml`). `cargo xtask test` calls
/// this while its NiFi lanes start, so the tests find it cached.
pub fn fetch_nar(group: &str, artifact: &str, version: &str) -> Result<PathBuf, Error> {
    let file = format!("{artifact}-{version}.nar");
    let mut cached = maven_repo();
    cached.extend(group.split('.'));
    let cached = cached.join(artifact).join(version).join(&file);
    if cached.exists() {
        return Ok(cached);
    }
    let got = run_maven(
        &std::env::temp_dir(),
        &[
            "dependency:get",
            &format!("-Dartifact={group}:{artifact}:{version}:nar"),
            "-Dtransitive=false",
        ],
    );
    match got {
        Err(e) if group == GROUP && artifact == STANDARD_NAR && !version.starts_with("1.") => {
            progress(format!(
                "{file} is not on the Maven repository ({}); building it from \
                 nifi-standard-processors {version} and NiFi's bundle POM",
                e.to_string().lines().next().unwrap_or_default()
            ));
            build_standard_nar(version)?;
        }
        other => other?,
    }
    Ok(cached)
}

const STANDARD_NAR: &str = "nifi-standard-nar";

/// The POM that rebuilds `nifi-standard-nar` 2.x from its published parts (`@NIFI_VERSION@`
/// replaced): NiFi's own `nifi-standard-bundle` as parent, `nifi-standard-shared-nar` as NAR
/// parent, `nifi-standard-processors` bundled.
const STANDARD_NAR_POM: &str = include_str!("../standard-nar/pom.xml");

/// Builds `org.apache.nifi:nifi-standard-nar:<version>` (2.x) with the NAR Maven plugin (Java 21+)
/// and installs it into [`maven_repo`], where [`install_nar`] then finds it (once per cache: a few
/// minutes the first time, mostly downloads).
fn build_standard_nar(version: &str) -> Result<(), Error> {
    let _lock = cache_lock()?;
    let mut cached = maven_repo();
    cached.extend(GROUP.split('.'));
    let cached = cached
        .join(STANDARD_NAR)
        .join(version)
        .join(format!("{STANDARD_NAR}-{version}.nar"));
    if cached.exists() {
        return Ok(()); // built by another test while this one waited for the lock
    }
    let dir = cache_dir()
        .join("build")
        .join(format!("{STANDARD_NAR}-{version}"));
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    fs::write(
        dir.join("pom.xml"),
        STANDARD_NAR_POM.replace("@NIFI_VERSION@", version),
    )
    .map_err(|e| Error::io("writing the nifi-standard-nar POM", e))?;
    // The NAR plugin of 2.x runs on Java 21+: the JDK that runs this NiFi version.
    let java = java_for(version)?;
    let java_home = java
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| Error::Provision(format!("no Java home above {}", java.display())))?;
    run_maven_env(
        &dir,
        &[
            "install",
            "-DskipTests",
            "-Drat.skip",
            "-Dcheckstyle.skip",
            "-Denforcer.skip",
            "-Dmaven.javadoc.skip",
            "-Dmaven.source.skip",
        ],
        &[("JAVA_HOME", java_home.as_os_str())],
    )?;
    if !cached.exists() {
        return Err(Error::Provision(format!(
            "building {STANDARD_NAR} {version} left no {}",
            cached.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_env_form() {
        let inst = Instance {
            url: "http://127.0.0.1:8080/nifi".into(),
            raw_port: Some(10000),
            pid: Some(42),
            version: "1.18.0".into(),
            home: Some("/x/y".into()),
            tls: None,
            login: None,
        };
        assert_eq!(Instance::from_env(&inst.to_env()).unwrap(), inst);
        let dir = std::env::temp_dir().join(format!("nifi-testkit-state-{}", std::process::id()));
        let secured = Instance {
            url: "https://127.0.0.1:8443/nifi".into(),
            tls: Some(certs::generate(&dir, &[], "pw-abcdefghijkl").unwrap()),
            login: Some(Login {
                username: LOGIN_USERNAME.into(),
                password: "pw-login".into(),
            }),
            ..inst
        };
        assert!(!format!("{secured:?}").contains("pw-login"));
        let env = secured.to_env();
        assert!(env.contains("NIFI_TLS_CLIENT_DN='CN=s2s-test-client, OU=nifi-s2s'\n"));
        assert_eq!(Instance::from_env(&env).unwrap(), secured);
        let _ = fs::remove_dir_all(dir);
        assert!(Instance::from_env("NIFI_RAW_PORT=1\n").is_err());
    }

    #[test]
    fn properties_are_replaced_in_place_or_appended() {
        let text = "a=1\n#b=2\nc = 3\n";
        let out = set_properties(text, &[("b", "9".into()), ("c", String::new())]);
        assert_eq!(out, "a=1\n#b=2\nc=\nb=9\n");
    }

    #[test]
    fn pom_lists_every_artifact_once_per_execution() {
        let l = layout("1.18.0").unwrap();
        let p = pom(&l, Path::new("/s"), Path::new("/m"));
        assert!(p.contains(
            "<artifactId>nifi-framework-nar</artifactId><version>1.18.0</version><type>nar</type>"
        ));
        assert!(p.contains("<outputDirectory>/s/lib/bootstrap</outputDirectory>"));
        assert!(p.contains("<classifier>resources</classifier>"));
        let l2 = layout("2.3.0").unwrap();
        let p2 = pom(&l2, Path::new("/s"), Path::new("/m"));
        assert!(p2.contains("<scope>import</scope>"));
        assert!(p2.contains("nifi-jetty-nar"));
        assert!(layout("3.0.0").is_err());
    }

    #[test]
    fn conf_files_are_private_copies_not_hard_links() {
        let root = std::env::temp_dir().join(format!("nifi-testkit-links-{}", std::process::id()));
        let (dist, home) = (root.join("dist"), root.join("home"));
        fs::create_dir_all(dist.join("conf")).unwrap();
        fs::write(dist.join("conf/nifi.properties"), "a=1\n").unwrap();
        copy_tree(&dist, &home).unwrap();
        own_copies(&home.join("conf")).unwrap();
        fs::write(home.join("conf/nifi.properties"), "a=2\n").unwrap();
        assert_eq!(
            fs::read_to_string(dist.join("conf/nifi.properties")).unwrap(),
            "a=1\n",
            "writing a home's conf must not change the cache"
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn free_ports_are_distinct() {
        let p = free_ports(3).unwrap();
        assert!(p[0] != p[1] && p[1] != p[2] && p[0] != p[2], "{p:?}");
    }

    #[test]
    fn java_is_chosen_by_version_or_named_when_missing() {
        let jdk = |h: &str, m: u32| (PathBuf::from(h), Some(m));
        let found = [
            jdk("/j/25", 25),
            jdk("/j/17", 17),
            (PathBuf::from("/j/x"), None),
        ];
        assert_eq!(
            pick_java("2.3.0", &found).unwrap(),
            Path::new("/j/25/bin/java")
        );
        // 1.x prefers a 17 even when a newer JDK comes first.
        assert_eq!(
            pick_java("1.18.0", &found).unwrap(),
            Path::new("/j/17/bin/java")
        );
        assert_eq!(
            pick_java("1.18.0", &[jdk("/j/21", 21)]).unwrap(),
            Path::new("/j/21/bin/java")
        );
        let err = pick_java("2.3.0", &found[1..]).unwrap_err().to_string();
        assert!(err.contains("needs Java 21 or newer"), "{err}");
        assert!(err.contains("Java 17 at /j/17"), "{err}");
        assert!(err.contains("Temurin"), "{err}");
        assert!(
            pick_java("2.3.0", &[])
                .unwrap_err()
                .to_string()
                .contains("no Java at all")
        );
        assert_eq!(parse_java_version("1.8.0_392"), Some(8));
        assert_eq!(parse_java_version("25.0.3"), Some(25));
        assert_eq!(parse_java_version("21"), Some(21));
    }

    #[test]
    fn restart_reads_ports_from_the_recorded_url() {
        assert_eq!(url_port("http://127.0.0.1:8080/nifi"), Some(8080));
        assert_eq!(url_port("https://127.0.0.1:8443/nifi"), Some(8443));
        assert_eq!(url_port("http://localhost/nifi"), None);
    }

    #[test]
    fn home_lock_is_exclusive_and_released_on_drop() {
        let home = std::env::temp_dir().join(format!("nifi-testkit-lock-{}", std::process::id()));
        let first = HomeLock::acquire(&home).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let h = home.clone();
        let waiter = std::thread::spawn(move || {
            let l = HomeLock::acquire(&h).unwrap();
            tx.send(()).unwrap();
            drop(l);
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(600)).is_err(),
            "a second lock must wait for the first"
        );
        drop(first);
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the second lock is taken once the first is dropped");
        waiter.join().unwrap();
        fs::remove_dir_all(home).unwrap();
    }

    #[test]
    fn own_pid_is_not_nifi() {
        assert!(!is_nifi_process(std::process::id()));
    }
}
