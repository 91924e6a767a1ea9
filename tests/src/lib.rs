//! Test kit for Apache NiFi flows: provision or reuse a real NiFi, create ports, inspect and drain
//! queues.
//!
//! Every end-to-end test of nifi-s2s runs against a **real** NiFi through this crate, and so can yours:
//! push FlowFiles into a port with any Site-to-Site client, then assert on what NiFi queued.
//!
//! # Where the NiFi comes from
//!
//! [`Nifi::shared`] never starts anything; it finds a running NiFi, in this order:
//!
//! 1. `NIFI_URL` (e.g. `http://127.0.0.1:8080/nifi`, plus optional `NIFI_RAW_PORT`): point it at your
//!    own NiFi, e.g. the `docker-compose.yml` of this repository;
//! 2. the state file `target/nifi/nifi.env` written by `cargo xtask nifi up`, which downloads NiFi from
//!    Maven Central, starts it in the background and leaves it running (see [`provision`]).
//!
//! If neither is found, tests are skipped with a printed notice, except when `CI` or `S2S_E2E=1` is set:
//! then they fail (see [`nifi_or_skip!`]). That NiFi is usually unsecured (plain HTTP), with RAW and/or
//! HTTP Site-to-Site enabled; for a secured one set `NIFI_TLS_CA`, `NIFI_TLS_CLIENT_CERT` and
//! `NIFI_TLS_CLIENT_KEY` (PEM files) as well.
//!
//! # Testing your own flow
//!
//! [`flow`] deploys a flow definition exported from NiFi ("Download flow definition", 1.x or 2.x)
//! as a process group, with parameter values overridden by the test
//! ([`flow::FlowDefinition::with_parameter`]), wires a root port to each of its input and output
//! ports so Site-to-Site clients reach them, enables its controller services and starts it; the test
//! then pushes FlowFiles in with any S2S client (e.g. the `s2s` crate), pulls or lists what comes
//! out, and reads bulletins ([`flow::DeployedFlow::check_bulletins`] fails with their text) and
//! provenance. [`Nifi::install_nars`] adds NARs by Maven coordinates to a NiFi this kit started.
//!
//! ```no_run
//! use std::time::Duration;
//! use nifi_testkit::{flow::FlowDefinition, nifi_or_skip};
//!
//! #[tokio::test]
//! async fn urgent_flowfiles_go_to_urgent() {
//!     let nifi = nifi_or_skip!();
//!     let def = FlowDefinition::from_file("tests/flows/route-by-priority.json")
//!         .unwrap()
//!         .with_parameter("large.threshold", "20")
//!         .unwrap();
//!     let flow = nifi.deploy_flow(&def, "urgent").await.unwrap();
//!     flow.start().await.unwrap();
//!     // ... send "priority=urgent" over S2S to flow.input("in").unwrap().name() ...
//!     let out = flow.output("urgent").unwrap();
//!     out.wait_for_queued(1, Duration::from_secs(30)).await.unwrap();
//!     let listing = out.listing().await.unwrap();   // at most 100 listed, `not_listed()` says the rest
//!     assert_eq!(listing.flowfiles[0].attributes["priority"], "urgent");
//!     flow.check_bulletins().await.unwrap();
//!     flow.delete().await.unwrap();
//! }
//! ```
//!
//! `cargo run -p nifi-testkit --example deploy_flow` runs the same against the test NiFi, and
//! `cargo xtask nifi flow deploy FILE --param k=v` deploys from the command line.
//!
//! # Secured NiFi
//!
//! `cargo xtask nifi up --secure [--version V]` starts NiFi with HTTPS, RAW S2S over TLS and
//! certificate users, from a test PKI generated on the spot ([`certs`]); [`Nifi::secured`] connects
//! to it over mutual TLS and grants the kit's user the S2S and data policies (see
//! [`Nifi::connect_with`]), so the same port/queue API works unchanged.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use nifi_testkit::{Nifi, nifi_or_skip};
//!
//! #[tokio::test]
//! async fn my_client_delivers() {
//!     let nifi = nifi_or_skip!();
//!     // A root input port wired to a funnel, started, and listed as RUNNING for Site-to-Site.
//!     let port = nifi.input_port("my-test").await.unwrap();
//!     // ... send 3 FlowFiles to `port.name()` at `nifi.url()` / `nifi.raw_port()` ...
//!     port.wait_for_queued(3, Duration::from_secs(30)).await.unwrap();
//!     let flowfiles = port.queued_flowfiles().await.unwrap();
//!     assert_eq!(flowfiles[0].attributes["filename"], "a.txt");
//!     port.delete().await.unwrap();
//! }
//! ```
//!
//! Ports get unique names (prefix + random suffix), so tests can run in parallel against one NiFi.
//! NiFi lists at most **100 FlowFiles per queue listing**; [`Port::queued_flowfiles`] returns the first
//! 100 in queue order, so keep assertions on bigger batches to [`Port::queued_count`] or drain between
//! batches; [`Port::listing`] also says how many were not listed, and
//! [`Port::queued_flowfiles_all`] fails instead of returning a partial list.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod certs;
pub mod cluster;
mod error;
pub mod flow;
pub mod java_reference;
pub mod postgres;
pub mod provision;
pub mod rest;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use error::{Error, Result};

/// The `clientId` of every revision this kit sends (NiFi's optimistic locking).
const CLIENT_ID: &str = "nifi-testkit";
/// How long port/queue operations wait for NiFi by default.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// Gets the shared NiFi, or skips the current test when none is available outside CI.
///
/// Expands to `Nifi::shared().await` inside an `async` test returning `()`: on "not available" it
/// prints `SKIPPED: …` and `return`s; when `CI` or `S2S_E2E=1` is set, or on any other error, it
/// panics, so CI never silently skips.
#[macro_export]
macro_rules! nifi_or_skip {
    () => {
        match $crate::Nifi::shared().await {
            Ok(nifi) => nifi,
            Err(e) if e.is_not_available() => {
                eprintln!("SKIPPED (no NiFi): {e}");
                return;
            }
            Err(e) => panic!("NiFi required for this test: {e}"),
        }
    };
}

/// Whether a missing **secured** NiFi fails tests instead of skipping them (`NIFI_SECURE_REQUIRED=1`,
/// set by `cargo xtask test` when it started the secured lanes).
pub fn secure_required() -> bool {
    std::env::var("NIFI_SECURE_REQUIRED").is_ok_and(|v| v == "1")
}

/// True when a missing NiFi must fail tests: `CI` set (and not `false`/`0`) or `S2S_E2E=1`.
pub fn nifi_required() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    ci || std::env::var("S2S_E2E").is_ok_and(|v| v == "1")
}

/// A handle on a running NiFi's REST API. Cheap to clone.
#[derive(Clone)]
pub struct Nifi {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    url: String,
    api: String,
    raw_port: Option<u16>,
    version: String,
    root_id: String,
    /// Secured NiFi: the ids of the users every port this kit creates is authorized for (the kit's
    /// own, i.e. the client certificate's DN, and the instance's login user if it has one).
    users: Vec<String>,
    /// The test PKI, for an instance read from a state file.
    pki: Option<certs::TlsFiles>,
}

impl fmt::Debug for Nifi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nifi")
            .field("url", &self.inner.url)
            .field("raw_port", &self.inner.raw_port)
            .field("version", &self.inner.version)
            .finish_non_exhaustive()
    }
}

impl Nifi {
    /// Finds the NiFi to test against (`NIFI_URL`, else `target/nifi/nifi.env`); see the crate docs.
    ///
    /// Errors with [`Error::NotAvailable`] when none is found (tests skip), or [`Error::Required`] when
    /// none is found although `CI`/`S2S_E2E=1` is set. A `NIFI_URL` that does not answer is always an
    /// error (the user asked for that NiFi).
    pub async fn shared() -> Result<Self> {
        let unavailable = |why: String| {
            if nifi_required() {
                Error::Required(why)
            } else {
                Error::NotAvailable(why)
            }
        };
        if let Some(url) = std::env::var("NIFI_URL").ok().filter(|u| !u.is_empty()) {
            let raw = match std::env::var("NIFI_RAW_PORT") {
                Ok(p) if !p.is_empty() => Some(p.parse().map_err(|_| {
                    Error::Unexpected(format!("NIFI_RAW_PORT={p:?} is not a port number"))
                })?),
                _ => None,
            };
            // A secured NiFi of the user's (e.g. the `tls` profile of docker-compose.yml).
            let id = match (
                std::env::var_os("NIFI_TLS_CA"),
                std::env::var_os("NIFI_TLS_CLIENT_CERT"),
                std::env::var_os("NIFI_TLS_CLIENT_KEY"),
            ) {
                (Some(ca), Some(cert), Some(key)) => Some(certs::ClientIdentity {
                    ca: ca.into(),
                    cert: cert.into(),
                    key: key.into(),
                }),
                _ => None,
            };
            return Self::connect_with(&url, raw, id.as_ref()).await;
        }
        let path = provision::state_file();
        match provision::read_state(&path)? {
            Some(inst) => match Self::connect(&inst.url, inst.raw_port).await {
                Ok(nifi) => Ok(nifi),
                Err(e) => Err(unavailable(format!(
                    "{} points to {}, which does not answer: {e}",
                    path.display(),
                    inst.url
                ))),
            },
            None => Err(unavailable(format!(
                "NIFI_URL is not set and {} does not exist",
                path.display()
            ))),
        }
    }

    /// Connects to the NiFi at `url` (`http://host:port/nifi`; the REST API is `{url}-api`). When
    /// `raw_port` is `None`, it is taken from NiFi's `/site-to-site` answer (if RAW S2S is enabled).
    pub async fn connect(url: &str, raw_port: Option<u16>) -> Result<Self> {
        Self::connect_with(url, raw_port, None).await
    }

    /// Connects to the instance recorded in a state file (plain or secured).
    pub async fn from_state(inst: &provision::Instance) -> Result<Self> {
        let id = inst.tls.as_ref().map(certs::TlsFiles::identity);
        let mut nifi = Self::connect_with(&inst.url, inst.raw_port, id.as_ref()).await?;
        let login_user = match &inst.login {
            Some(l) => {
                let user = user_id(&nifi.inner.http, &nifi.inner.api, &l.username).await?;
                // What an S2S client logged in with a token needs besides the port policies.
                nifi.grant("read", "/site-to-site", &user).await?;
                nifi.grant("read", "/flow", &user).await?;
                Some(user)
            }
            None => None,
        };
        if let Some(inner) = Arc::get_mut(&mut nifi.inner) {
            inner.pki.clone_from(&inst.tls);
            inner.users.extend(login_user);
        }
        Ok(nifi)
    }

    /// [`Nifi::secured`] for tests: `None` (after printing `SKIPPED`) when the secured instance
    /// of `version` is not running, unless `NIFI_SECURE_REQUIRED=1` (set by `cargo xtask test`),
    /// in which case its absence fails the test. Any other error fails it too.
    pub async fn secured_or_skip(version: &str) -> Option<Self> {
        match Self::secured(version).await {
            Ok(n) => Some(n),
            Err(e) if e.is_not_available() && !secure_required() => {
                eprintln!("SKIPPED (no secured NiFi {version}): {e}");
                None
            }
            Err(e) => panic!("secured NiFi {version} required (NIFI_SECURE_REQUIRED=1): {e}"),
        }
    }

    /// Connects to the **secured** instance of `version` started by
    /// `cargo xtask nifi up --secure --version V` (state in `target/nifi/<V>-secure/nifi.env`).
    ///
    /// Errors with [`Error::NotAvailable`] when that state file is missing or its NiFi does not
    /// answer (callers decide whether that skips or fails, e.g. on `NIFI_SECURE_REQUIRED=1`).
    pub async fn secured(version: &str) -> Result<Self> {
        let path = provision::secure_state_file(version);
        let Some(inst) = provision::read_state(&path)? else {
            return Err(Error::NotAvailable(format!(
                "no secured NiFi {version}: {} does not exist (run `cargo xtask nifi up --secure --version {version}`)",
                path.display()
            )));
        };
        if inst.tls.is_none() {
            return Err(Error::Unexpected(format!(
                "{} has no NIFI_TLS_* entries",
                path.display()
            )));
        }
        Self::from_state(&inst).await.map_err(|e| {
            Error::NotAvailable(format!(
                "{} points to {}, which does not answer: {e}",
                path.display(),
                inst.url
            ))
        })
    }

    /// [`Nifi::connect`], over mutual TLS when `tls` is given: the REST client trusts only the test
    /// CA and presents the authorized client certificate, and the kit grants its own user (the
    /// certificate's DN) what tests need, through NiFi's policy API: "retrieve site-to-site
    /// details", view/modify the root process group and its data (create ports, list and drop
    /// queues), and on every port it creates "receive/send data via site-to-site".
    pub async fn connect_with(
        url: &str,
        raw_port: Option<u16>,
        tls: Option<&certs::ClientIdentity>,
    ) -> Result<Self> {
        let url = url.trim_end_matches('/').to_owned();
        let url = if url.ends_with("/nifi") {
            url
        } else {
            format!("{url}/nifi")
        };
        // No idle keep-alive pool (see `provision::rest_client`).
        let http = provision::rest_client(tls)?;
        let api = format!("{url}-api");
        let about = get(&http, &format!("{api}/flow/about")).await?;
        let version = about["about"]["version"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned();
        // The flow endpoint (not /process-groups/root): it only needs "view the user interface",
        // which a fresh secured NiFi's initial admin has, while its root group policies may not
        // exist yet.
        let root = get(&http, &format!("{api}/flow/process-groups/root")).await?;
        let root_id = str_field_of(&root["processGroupFlow"], "id")?;
        let users = match tls {
            None => Vec::new(),
            Some(_) => {
                let user = self_user_id(&http, &api).await?;
                for (action, resource) in [
                    ("read", "/site-to-site".to_owned()),
                    ("read", format!("/process-groups/{root_id}")),
                    ("write", format!("/process-groups/{root_id}")),
                    ("read", format!("/data/process-groups/{root_id}")),
                    ("write", format!("/data/process-groups/{root_id}")),
                ] {
                    grant_policy(&http, &api, action, &resource, &user).await?;
                }
                vec![user]
            }
        };
        let raw_port = match raw_port {
            Some(p) => Some(p),
            None => {
                let s2s = get(&http, &format!("{api}/site-to-site")).await?;
                s2s["controller"]["remoteSiteListeningPort"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                url,
                api,
                raw_port,
                version,
                root_id,
                users,
                pki: None,
            }),
        })
    }

    /// The test PKI of a secured NiFi (`None` for a plain one).
    pub fn tls(&self) -> Option<&certs::TlsFiles> {
        self.inner.pki.as_ref()
    }

    /// Grants `user_id` the policy `action` (`read`/`write`) on `resource` (e.g. `/site-to-site`),
    /// creating the policy if NiFi has none for exactly that resource.
    pub async fn grant(&self, action: &str, resource: &str, user_id: &str) -> Result<()> {
        grant_policy(&self.inner.http, &self.inner.api, action, resource, user_id).await
    }

    /// Creates a NiFi user with this identity (e.g. a certificate DN) and returns its id; an
    /// existing user of that identity is reused.
    pub async fn create_user(&self, identity: &str) -> Result<String> {
        let users = self.api_get("/tenants/users").await?;
        if let Some(id) = users["users"].as_array().and_then(|us| {
            us.iter()
                .find(|u| u["component"]["identity"] == identity)
                .and_then(|u| u["id"].as_str())
        }) {
            return Ok(id.to_owned());
        }
        let u = self
            .post(
                "/tenants/users",
                &json!({"revision": rev0(), "component": {"identity": identity}}),
            )
            .await?;
        str_field(&u, "id")
    }

    /// Deletes a NiFi user (and with it its place in every policy).
    pub async fn delete_user(&self, id: &str) -> Result<()> {
        let path = format!("/tenants/users/{id}");
        let cur = self.api_get(&path).await?;
        let version = cur["revision"]["version"].as_u64().unwrap_or(0);
        self.send(
            reqwest::Method::DELETE,
            &format!("{path}?version={version}&clientId={CLIENT_ID}"),
            None,
        )
        .await?;
        Ok(())
    }

    /// On a secured NiFi, authorizes the kit's user for S2S on a port: "receive data via
    /// site-to-site" (`/data-transfer/input-ports/{id}`) or "send data via site-to-site"
    /// (`/data-transfer/output-ports/{id}`). Nothing to do on a plain NiFi.
    async fn authorize_port(&self, kind: PortKind, id: &str) -> Result<()> {
        for user in &self.inner.users {
            self.grant(
                "write",
                &format!("/data-transfer/{}/{id}", kind.path()),
                user,
            )
            .await?;
        }
        Ok(())
    }

    /// Base URL, e.g. `http://127.0.0.1:8080/nifi`: what S2S clients are configured with.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// RAW Site-to-Site port (`None` if RAW S2S is disabled).
    pub fn raw_port(&self) -> Option<u16> {
        self.inner.raw_port
    }

    /// The NiFi version reported by `/flow/about`.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The id of the root process group.
    pub fn root_id(&self) -> &str {
        &self.inner.root_id
    }

    /// GETs `{url}-api{path}` as JSON (for whatever this kit does not wrap).
    pub async fn api_get(&self, path: &str) -> Result<Value> {
        get(&self.inner.http, &format!("{}{path}", self.inner.api)).await
    }

    /// GETs `{url}-api{path}` as bytes (FlowFile content).
    pub(crate) async fn api_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.inner.api);
        let resp = self
            .inner
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| Error::Http {
                method: "GET",
                url: url.clone(),
                source,
            })?;
        let resp = check_status("GET", &url, resp).await?;
        let bytes = resp.bytes().await.map_err(|source| Error::Http {
            method: "GET",
            url,
            source,
        })?;
        Ok(bytes.to_vec())
    }

    /// Drops every FlowFile queued in `connection` (a drop request, waited for up to
    /// `timeout`, then deleted).
    pub(crate) async fn drop_queue(&self, connection: &str, timeout: Duration) -> Result<()> {
        let base = format!("/flowfile-queues/{connection}/drop-requests");
        let created = self.post(&base, &json!({})).await?;
        let id = created["dropRequest"]["id"]
            .as_str()
            .ok_or_else(|| Error::Unexpected(format!("no drop request id in {created}")))?
            .to_owned();
        let path = &format!("{base}/{id}");
        let done = poll_until("the queue drop to finish", timeout, || async move {
            let d = self.api_get(path).await?;
            Ok(if d["dropRequest"]["finished"] == true {
                Step::Ready(d)
            } else {
                Step::Pending(format!("{}% dropped", d["dropRequest"]["percentCompleted"]))
            })
        })
        .await;
        let _ = self.send(reqwest::Method::DELETE, path, None).await;
        let done = done?;
        match done["dropRequest"]["failureReason"].as_str() {
            Some(reason) => Err(Error::Unexpected(format!("queue drop failed: {reason}"))),
            None => Ok(()),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        request(
            &self.inner.http,
            method,
            &format!("{}{path}", self.inner.api),
            body,
        )
        .await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// Creates a root input port named `prefix-<random>` wired to a funnel (FlowFiles stay queued in
    /// the port → funnel connection), starts it, and waits until `/site-to-site` lists it RUNNING.
    pub async fn input_port(&self, prefix: &str) -> Result<Port> {
        self.create_input_port(&unique_name(prefix)).await
    }

    /// [`Nifi::input_port`] with an exact name (root port names must be unique in the flow).
    pub async fn create_input_port(&self, name: &str) -> Result<Port> {
        let root = self.root_id().to_owned();
        let port = self
            .post(
                &format!("/process-groups/{root}/input-ports"),
                &json!({"revision": rev0(), "component": {"name": name, "allowRemoteAccess": true,
                        "position": {"x": 0.0, "y": 0.0}}}),
            )
            .await?;
        let port_id = str_field(&port, "id")?;
        let funnel = self
            .post(
                &format!("/process-groups/{root}/funnels"),
                &json!({"revision": rev0(), "component": {"position": {"x": 0.0, "y": 200.0}}}),
            )
            .await?;
        let funnel_id = str_field(&funnel, "id")?;
        let conn = self
            .connect_components(&port_id, "INPUT_PORT", &funnel_id, "FUNNEL")
            .await?;
        self.authorize_port(PortKind::Input, &port_id).await?;
        let port = Port {
            nifi: self.clone(),
            name: name.to_owned(),
            id: port_id,
            kind: PortKind::Input,
            connection_id: conn,
            funnel_id: Some(funnel_id),
        };
        port.start().await?;
        Ok(port)
    }

    /// Creates a root input port → root output port pair (names `prefix-<random>-in`/`-out`), both
    /// started and listed RUNNING: a send test pushes into `pair.input`, a receive test pulls from
    /// `pair.output`, and both see the same queue.
    pub async fn port_pair(&self, prefix: &str) -> Result<PortPair> {
        let base = unique_name(prefix);
        self.create_port_pair(&format!("{base}-in"), &format!("{base}-out"))
            .await
    }

    /// [`Nifi::port_pair`] with exact names.
    pub async fn create_port_pair(&self, input: &str, output: &str) -> Result<PortPair> {
        let root = self.root_id().to_owned();
        let inp = self
            .post(
                &format!("/process-groups/{root}/input-ports"),
                &json!({"revision": rev0(), "component": {"name": input, "allowRemoteAccess": true,
                        "position": {"x": 0.0, "y": 0.0}}}),
            )
            .await?;
        let in_id = str_field(&inp, "id")?;
        let out = self
            .post(
                &format!("/process-groups/{root}/output-ports"),
                &json!({"revision": rev0(), "component": {"name": output, "allowRemoteAccess": true,
                        "position": {"x": 0.0, "y": 200.0}}}),
            )
            .await?;
        let out_id = str_field(&out, "id")?;
        let conn = self
            .connect_components(&in_id, "INPUT_PORT", &out_id, "OUTPUT_PORT")
            .await?;
        self.authorize_port(PortKind::Input, &in_id).await?;
        self.authorize_port(PortKind::Output, &out_id).await?;
        let pair = PortPair {
            input: Port {
                nifi: self.clone(),
                name: input.to_owned(),
                id: in_id,
                kind: PortKind::Input,
                connection_id: conn.clone(),
                funnel_id: None,
            },
            output: Port {
                nifi: self.clone(),
                name: output.to_owned(),
                id: out_id,
                kind: PortKind::Output,
                connection_id: conn,
                funnel_id: None,
            },
        };
        pair.input.start().await?;
        pair.output.start().await?;
        Ok(pair)
    }

    async fn connect_components(
        &self,
        src: &str,
        src_type: &str,
        dst: &str,
        dst_type: &str,
    ) -> Result<String> {
        let root = self.root_id().to_owned();
        let conn = self
            .post(
                &format!("/process-groups/{root}/connections"),
                &json!({"revision": rev0(), "component": {
                    "source": {"id": src, "groupId": root, "type": src_type},
                    "destination": {"id": dst, "groupId": root, "type": dst_type},
                    "backPressureObjectThreshold": 10000,
                    "backPressureDataSizeThreshold": "1 GB"}}),
            )
            .await?;
        str_field(&conn, "id")
    }

    /// Finds an existing root port by exact name (input ports first), with the connection that holds
    /// its FlowFiles (an input port's outgoing one, an output port's incoming one).
    pub async fn port_by_name(&self, name: &str) -> Result<Port> {
        let root = self.root_id().to_owned();
        let conns = self
            .api_get(&format!("/process-groups/{root}/connections"))
            .await?;
        let conns = conns["connections"].as_array().cloned().unwrap_or_default();
        for kind in [PortKind::Input, PortKind::Output] {
            let list = self
                .api_get(&format!("/process-groups/{root}/{}", kind.path()))
                .await?;
            let key = match kind {
                PortKind::Input => "inputPorts",
                PortKind::Output => "outputPorts",
            };
            let Some(p) = list[key]
                .as_array()
                .and_then(|a| a.iter().find(|p| p["component"]["name"] == name))
            else {
                continue;
            };
            let id = str_field(p, "id")?;
            let side = match kind {
                PortKind::Input => "source",
                PortKind::Output => "destination",
            };
            // A port whose connection was deleted is still returned (so it can be deleted), with an
            // empty connection id; queue operations on it fail with a clear error.
            let conn = conns
                .iter()
                .find(|c| c["component"][side]["id"] == id.as_str());
            let funnel_id = conn
                .filter(|c| {
                    kind == PortKind::Input && c["component"]["destination"]["type"] == "FUNNEL"
                })
                .and_then(|c| {
                    c["component"]["destination"]["id"]
                        .as_str()
                        .map(str::to_owned)
                });
            return Ok(Port {
                nifi: self.clone(),
                name: name.to_owned(),
                id,
                kind,
                connection_id: conn
                    .map(|c| str_field(c, "id"))
                    .transpose()?
                    .unwrap_or_default(),
                funnel_id,
            });
        }
        Err(Error::NoSuchPort(name.to_owned()))
    }

    /// Sets the FlowFile-count back-pressure threshold of the connection behind `port` (e.g. 1, to
    /// make NiFi report the destination full after one FlowFile).
    pub async fn set_back_pressure(&self, port: &Port, count: u64) -> Result<()> {
        let path = format!("/connections/{}", port.conn()?);
        let cur = self.api_get(&path).await?;
        self.send(
            reqwest::Method::PUT,
            &path,
            Some(&json!({"revision": revision(&cur), "component": {
                "id": port.connection_id, "backPressureObjectThreshold": count}})),
        )
        .await?;
        Ok(())
    }

    /// Waits until `/site-to-site` lists `name` (of `kind`) in `state` (`RUNNING`/`STOPPED`).
    async fn wait_s2s_state(&self, kind: PortKind, name: &str, state: &str) -> Result<()> {
        let key = match kind {
            PortKind::Input => "inputPorts",
            PortKind::Output => "outputPorts",
        };
        poll_until(
            &format!("/site-to-site to list {name:?} as {state}"),
            DEFAULT_WAIT,
            || async move {
                let s2s = self.api_get("/site-to-site").await?;
                let found = s2s["controller"][key]
                    .as_array()
                    .and_then(|ports| ports.iter().find(|p| p["name"] == name).cloned());
                Ok(match found {
                    Some(p) if p["state"] == state => Step::Ready(()),
                    Some(p) => Step::Pending(format!("state {}", p["state"])),
                    None => Step::Pending("not listed".into()),
                })
            },
        )
        .await
    }
}

/// Which kind of root port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// Receives FlowFiles from S2S clients (they send).
    Input,
    /// Offers FlowFiles to S2S clients (they receive).
    Output,
}

impl PortKind {
    fn path(self) -> &'static str {
        match self {
            Self::Input => "input-ports",
            Self::Output => "output-ports",
        }
    }
}

/// A root port created (or found) by this kit, with the connection that holds its FlowFiles.
#[derive(Debug, Clone)]
pub struct Port {
    nifi: Nifi,
    name: String,
    id: String,
    kind: PortKind,
    connection_id: String,
    funnel_id: Option<String>,
}

/// An input port feeding an output port through one connection (see [`Nifi::port_pair`]).
#[derive(Debug, Clone)]
pub struct PortPair {
    /// The input port (S2S clients send here).
    pub input: Port,
    /// The output port (S2S clients receive from here).
    pub output: Port,
}

impl PortPair {
    /// Stops both ports, drops the queue and deletes the connection and both ports.
    pub async fn delete(self) -> Result<()> {
        self.output.stop().await?;
        self.input.delete().await?;
        self.output.delete().await
    }
}

/// One FlowFile in a NiFi queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedFlowFile {
    /// All attributes, including the ones NiFi adds on receipt (a new `uuid`, `s2s.host`,
    /// `s2s.address`, …).
    pub attributes: BTreeMap<String, String>,
    /// The content bytes.
    pub content: Vec<u8>,
}

impl Port {
    /// The port's (unique) name: what S2S clients address.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port's component id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Input or output port.
    pub fn kind(&self) -> PortKind {
        self.kind
    }

    /// The id of the connection whose queue this port's FlowFiles sit in (empty for a port found by
    /// [`Nifi::port_by_name`] that has no connection).
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    fn conn(&self) -> Result<&str> {
        if self.connection_id.is_empty() {
            return Err(Error::Unexpected(format!(
                "port {:?} has no connection (no queue)",
                self.name
            )));
        }
        Ok(&self.connection_id)
    }

    /// Number of FlowFiles queued in the port's connection.
    pub async fn queued_count(&self) -> Result<u64> {
        let c = self
            .nifi
            .api_get(&format!("/connections/{}", self.conn()?))
            .await?;
        c["status"]["aggregateSnapshot"]["flowFilesQueued"]
            .as_u64()
            .ok_or_else(|| Error::Unexpected(format!("no flowFilesQueued in {c}")))
    }

    /// Waits until at least `n` FlowFiles are queued, or errors after `timeout` with the last count.
    pub async fn wait_for_queued(&self, n: u64, timeout: Duration) -> Result<u64> {
        poll_until(
            &format!("{n} FlowFiles queued behind port {:?}", self.name),
            timeout,
            || async move {
                let count = self.queued_count().await?;
                Ok(if count >= n {
                    Step::Ready(count)
                } else {
                    Step::Pending(format!("{count} queued"))
                })
            },
        )
        .await
    }

    /// Waits until nothing is queued behind the port (NiFi's queue status lags a confirmed
    /// receive by a moment).
    pub async fn wait_for_empty(&self, timeout: Duration) -> Result<()> {
        poll_until(
            &format!("an empty queue behind port {:?}", self.name),
            timeout,
            || async move {
                let count = self.queued_count().await?;
                Ok(if count == 0 {
                    Step::Ready(())
                } else {
                    Step::Pending(format!("{count} still queued"))
                })
            },
        )
        .await
    }

    /// Lists the queued FlowFiles with attributes and content, in queue order.
    ///
    /// NiFi lists **at most 100** FlowFiles per listing request, so this returns the first 100 at
    /// most. It fetches each FlowFile's attributes and content separately: fine for tests, slow for
    /// thousands.
    pub async fn queued_flowfiles(&self) -> Result<Vec<QueuedFlowFile>> {
        let base = format!("/flowfile-queues/{}", self.conn()?);
        let created = self
            .nifi
            .post(&format!("{base}/listing-requests"), &json!({}))
            .await?;
        let req_id = created["listingRequest"]["id"]
            .as_str()
            .ok_or_else(|| Error::Unexpected(format!("no listing request id in {created}")))?
            .to_owned();
        let req_path = &format!("{base}/listing-requests/{req_id}");
        let listing = poll_until("the queue listing to finish", DEFAULT_WAIT, || async move {
            let l = self.nifi.api_get(req_path).await?;
            Ok(if l["listingRequest"]["finished"] == true {
                Step::Ready(l)
            } else {
                Step::Pending(format!(
                    "{}% listed",
                    l["listingRequest"]["percentCompleted"]
                ))
            })
        })
        .await;
        // Listing requests hold server memory until deleted, even when the poll failed.
        let _ = self
            .nifi
            .send(reqwest::Method::DELETE, req_path, None)
            .await;
        let listing = listing?;
        if let Some(reason) = listing["listingRequest"]["failureReason"].as_str() {
            return Err(Error::Unexpected(format!("queue listing failed: {reason}")));
        }
        let mut summaries = listing["listingRequest"]["flowFileSummaries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        summaries.sort_by_key(|s| s["position"].as_u64().unwrap_or(u64::MAX));
        let mut out = Vec::with_capacity(summaries.len());
        for s in summaries {
            let uuid = str_field_of(&s, "uuid")?;
            let ff = self
                .nifi
                .api_get(&format!("{base}/flowfiles/{uuid}"))
                .await?;
            let attributes = ff["flowFile"]["attributes"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let size = s["size"].as_u64().unwrap_or(0);
            let content = if size == 0 {
                Vec::new()
            } else {
                self.nifi
                    .api_bytes(&format!("{base}/flowfiles/{uuid}/content"))
                    .await?
            };
            out.push(QueuedFlowFile {
                attributes,
                content,
            });
        }
        Ok(out)
    }

    /// Drops every FlowFile queued behind the port; returns when NiFi reports the drop finished.
    pub async fn drain(&self) -> Result<()> {
        self.nifi.drop_queue(self.conn()?, DEFAULT_WAIT).await
    }

    async fn set_state(&self, state: &str) -> Result<()> {
        let path = format!("/{}/{}", self.kind.path(), self.id);
        let cur = self.nifi.api_get(&path).await?;
        self.nifi
            .send(
                reqwest::Method::PUT,
                &format!("{path}/run-status"),
                Some(&json!({"revision": revision(&cur), "state": state,
                             "disconnectedNodeAcknowledged": false})),
            )
            .await?;
        self.nifi.wait_s2s_state(self.kind, &self.name, state).await
    }

    /// Starts the port and waits until Site-to-Site lists it RUNNING.
    pub async fn start(&self) -> Result<()> {
        self.set_state("RUNNING").await
    }

    /// Stops the port (S2S clients then get "port not running") and waits until S2S lists it STOPPED.
    pub async fn stop(&self) -> Result<()> {
        self.set_state("STOPPED").await
    }

    /// Stops the port, drops its queue, and deletes its connection, its funnel (if this kit created
    /// one) and the port itself. Parts already deleted are skipped.
    pub async fn delete(&self) -> Result<()> {
        let path = format!("/{}/{}", self.kind.path(), self.id);
        let cur = match self.nifi.api_get(&path).await {
            Ok(v) => v,
            Err(Error::Status { status: 404, .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if cur["component"]["state"] == "RUNNING" {
            self.stop().await?;
        }
        let conn_path = format!("/connections/{}", self.connection_id);
        let conn = if self.connection_id.is_empty() {
            Err(Error::Status {
                method: "GET",
                url: conn_path.clone(),
                status: 404,
                body: String::new(),
            })
        } else {
            self.nifi.api_get(&conn_path).await
        };
        match conn {
            Ok(conn) => {
                // NiFi refuses to delete a connection while either end runs (409), so stop the port
                // at the other end too (the partner of a port pair).
                let other = match self.kind {
                    PortKind::Input => &conn["component"]["destination"],
                    PortKind::Output => &conn["component"]["source"],
                };
                let other_path = match other["type"].as_str() {
                    Some("INPUT_PORT") => Some("input-ports"),
                    Some("OUTPUT_PORT") => Some("output-ports"),
                    _ => None,
                };
                if let (Some(kind), Some(id)) = (other_path, other["id"].as_str()) {
                    let path = format!("/{kind}/{id}");
                    let cur = self.nifi.api_get(&path).await?;
                    if cur["component"]["state"] == "RUNNING" {
                        self.nifi
                            .send(
                                reqwest::Method::PUT,
                                &format!("{path}/run-status"),
                                Some(&json!({"revision": revision(&cur), "state": "STOPPED",
                                             "disconnectedNodeAcknowledged": false})),
                            )
                            .await?;
                    }
                }
                self.drain().await?;
                let conn = self.nifi.api_get(&conn_path).await.unwrap_or(conn);
                self.delete_component(&conn_path, &conn).await?;
            }
            Err(Error::Status { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        if let Some(funnel) = &self.funnel_id {
            let fpath = format!("/funnels/{funnel}");
            if let Ok(f) = self.nifi.api_get(&fpath).await {
                self.delete_component(&fpath, &f).await?;
            }
        }
        let cur = self.nifi.api_get(&path).await?;
        self.delete_component(&path, &cur).await
    }

    async fn delete_component(&self, path: &str, entity: &Value) -> Result<()> {
        let version = entity["revision"]["version"].as_u64().unwrap_or(0);
        self.nifi
            .send(
                reqwest::Method::DELETE,
                &format!("{path}?version={version}&clientId={CLIENT_ID}"),
                None,
            )
            .await?;
        Ok(())
    }
}

/// `prefix-<8 hex digits>`: unique enough for parallel tests on one NiFi.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{:08x}", fastrand::u32(..))
}

fn rev0() -> Value {
    json!({"clientId": CLIENT_ID, "version": 0})
}

fn revision(entity: &Value) -> Value {
    json!({"clientId": CLIENT_ID, "version": entity["revision"]["version"].as_u64().unwrap_or(0)})
}

fn str_field(entity: &Value, key: &str) -> Result<String> {
    str_field_of(entity, key)
}

fn str_field_of(v: &Value, key: &str) -> Result<String> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::Unexpected(format!("no {key:?} in {v}")))
}

/// One observation of a polled condition.
enum Step<T> {
    /// Done, with the result.
    Ready(T),
    /// Not yet; the text describes the state seen (for the timeout error).
    Pending(String),
}

/// Polls `step` every 100 ms until it is ready, or fails with [`Error::Timeout`] naming the last state
/// seen.
async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut step: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Step<T>>>,
{
    let t = Instant::now();
    loop {
        let last = match step().await? {
            Step::Ready(v) => return Ok(v),
            Step::Pending(last) => last,
        };
        if t.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: format!("{what} (last seen: {last})"),
                waited: timeout,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn check_status(
    method: &'static str,
    url: &str,
    resp: reqwest::Response,
) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(Error::Status {
        method,
        url: url.to_owned(),
        status: status.as_u16(),
        body: body.chars().take(500).collect(),
    })
}

async fn request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let name: &'static str = match method {
        reqwest::Method::GET => "GET",
        reqwest::Method::POST => "POST",
        reqwest::Method::PUT => "PUT",
        reqwest::Method::DELETE => "DELETE",
        _ => "REQUEST",
    };
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.map_err(|source| Error::Http {
        method: name,
        url: url.to_owned(),
        source,
    })?;
    let resp = check_status(name, url, resp).await?;
    let text = resp.text().await.map_err(|source| Error::Http {
        method: name,
        url: url.to_owned(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text)
        .map_err(|e| Error::Unexpected(format!("{name} {url}: invalid JSON ({e}): {text:.200}")))
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Value> {
    request(http, reqwest::Method::GET, url, None).await
}

/// The user id of the identity this client authenticates as (`/flow/current-user`), looked up in
/// `/tenants/users`.
async fn self_user_id(http: &reqwest::Client, api: &str) -> Result<String> {
    let me = get(http, &format!("{api}/flow/current-user")).await?;
    let identity = str_field_of(&me, "identity")?;
    user_id(http, api, &identity).await
}

/// The id of the NiFi user with this identity (`/tenants/users`).
async fn user_id(http: &reqwest::Client, api: &str, identity: &str) -> Result<String> {
    let users = get(http, &format!("{api}/tenants/users")).await?;
    users["users"]
        .as_array()
        .and_then(|us| us.iter().find(|u| u["component"]["identity"] == identity))
        .and_then(|u| u["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::Unexpected(format!("NiFi knows no user {identity:?} ")))
}

/// Adds `user_id` to the policy `action` on exactly `resource`, creating it if needed.
///
/// `GET /policies/{action}{resource}` answers 404 when no policy exists for exactly that resource
/// (the UI then shows the inherited one); a policy found for another resource is treated the same.
async fn grant_policy(
    http: &reqwest::Client,
    api: &str,
    action: &str,
    resource: &str,
    user_id: &str,
) -> Result<()> {
    let found = match get(http, &format!("{api}/policies/{action}{resource}")).await {
        Ok(p) if p["component"]["resource"] == resource => Some(p),
        Ok(_) | Err(Error::Status { status: 404, .. }) => None,
        Err(e) => return Err(e),
    };
    match found {
        None => {
            request(
                http,
                reqwest::Method::POST,
                &format!("{api}/policies"),
                Some(&json!({"revision": rev0(), "component": {
                    "action": action, "resource": resource,
                    "users": [{"id": user_id}], "userGroups": []}})),
            )
            .await?;
        }
        Some(p) => {
            let c = &p["component"];
            let mut users: Vec<Value> = c["users"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|u| u["id"].as_str().map(|id| json!({"id": id})))
                .collect();
            if users.iter().any(|u| u["id"] == user_id) {
                return Ok(());
            }
            users.push(json!({"id": user_id}));
            let groups: Vec<Value> = c["userGroups"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|g| g["id"].as_str().map(|id| json!({"id": id})))
                .collect();
            let id = str_field(&p, "id")?;
            request(
                http,
                reqwest::Method::PUT,
                &format!("{api}/policies/{id}"),
                Some(&json!({"revision": revision(&p), "component": {
                    "id": id, "action": action, "resource": resource,
                    "users": users, "userGroups": groups}})),
            )
            .await?;
        }
    }
    Ok(())
}
