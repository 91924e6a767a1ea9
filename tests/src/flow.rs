//! Deploy and drive a user's flow: a flow definition exported from NiFi ("Download flow
//! definition", 1.x and 2.x) becomes a process group under the root group, with its parameter values
//! overridable, its controller services enabled, its ports reachable over Site-to-Site, and its
//! bulletins and provenance readable.
//!
//! ```no_run
//! use std::time::Duration;
//! use nifi_testkit::{Nifi, flow::FlowDefinition};
//!
//! # async fn run() -> nifi_testkit::Result<()> {
//! let nifi = Nifi::shared().await?;
//! // NARs the flow needs (no-op when NiFi already has them; a kit-provisioned NiFi only).
//! nifi.install_nars(&[
//!     "org.apache.nifi:nifi-standard-services-api-nar",
//!     "org.apache.nifi:nifi-standard-nar",
//! ])
//! .await?;
//! let def = FlowDefinition::from_file("tests/flows/route-by-priority.json")?
//!     .with_parameter("large.threshold", "10")?;
//! let flow = nifi.deploy_flow(&def, "my-test").await?;   // a unique group name: parallel-safe
//! flow.start().await?;                                    // enables services, starts everything
//! // Send over S2S to flow.input("in")?.name(); receive from flow.output("urgent")?.name() …
//! flow.output("urgent")?.wait_for_queued(1, Duration::from_secs(30)).await?;
//! flow.check_bulletins().await?;                          // an ERROR bulletin fails with its text
//! flow.delete().await?;                                   // stop, disable, drop queues, delete
//! # Ok(()) }
//! ```
//!
//! How it maps onto NiFi's REST API (the same on 1.18.0 and 2.3.0):
//!
//! * deploy: `POST /process-groups/{root}/process-groups` with the definition as
//!   `versionedFlowSnapshot` (what the UI's "upload" does after parsing the file). The
//!   definition's parameter contexts are renamed `<context> (<group name>)` first, so every deployed
//!   copy gets contexts of its own (NiFi would otherwise reuse an existing context of that name);
//!   [`DeployedFlow::delete`] deletes them again.
//! * Site-to-Site: for every input port `P` of the deployed group the kit creates a root input port
//!   `<group name>-P` connected to it, and for every output port a root output port; root ports are
//!   what NiFi 1.x and 2.x offer over S2S, whatever the group's own ports allow.
//! * start/stop: `PUT /flow/process-groups/{id}` (`RUNNING`/`STOPPED`), services through
//!   `PUT /flow/process-groups/{id}/controller-services` (`ENABLED`/`DISABLED`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    CLIENT_ID, DEFAULT_WAIT, Error, Nifi, Port, PortKind, QueuedFlowFile, Result, Step, poll_until,
    provision, rev0, revision, str_field, unique_name,
};

/// A flow definition as NiFi exports it ("Download flow definition": `flowContents`,
/// `parameterContexts`, …), with parameter overrides applied.
#[derive(Debug, Clone)]
pub struct FlowDefinition {
    json: Value,
}

impl FlowDefinition {
    /// Reads an exported flow definition file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Self::from_json(&text).map_err(|e| Error::Unexpected(format!("{}: {e}", path.display())))
    }

    /// Parses an exported flow definition.
    pub fn from_json(text: &str) -> Result<Self> {
        let json: Value = serde_json::from_str(text)
            .map_err(|e| Error::Unexpected(format!("not a flow definition (invalid JSON: {e})")))?;
        if !json["flowContents"].is_object() {
            return Err(Error::Unexpected(
                "not a flow definition: no \"flowContents\" (export it with \"Download flow \
                 definition\")"
                    .into(),
            ));
        }
        Ok(Self { json })
    }

    /// The definition as JSON (with the overrides applied so far).
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// The flow's name (its top process group's name in the export).
    pub fn name(&self) -> &str {
        self.json["flowContents"]["name"].as_str().unwrap_or("flow")
    }

    /// Every parameter of every parameter context in the definition: `(context, name, value)`
    /// (`None` for a sensitive or unset value).
    pub fn parameters(&self) -> Vec<(String, String, Option<String>)> {
        let mut out = Vec::new();
        if let Some(ctxs) = self.json["parameterContexts"].as_object() {
            for (ctx_name, ctx) in ctxs {
                for p in ctx["parameters"].as_array().into_iter().flatten() {
                    let name = p["name"].as_str().unwrap_or_default().to_owned();
                    let value = p["value"].as_str().map(str::to_owned);
                    out.push((ctx_name.clone(), name, value));
                }
            }
        }
        out
    }

    /// Sets parameter `name` to `value` in every parameter context of the definition that has it.
    /// Errors when none has it (a typo would otherwise test the default silently).
    pub fn with_parameter(mut self, name: &str, value: &str) -> Result<Self> {
        let mut found = false;
        if let Some(ctxs) = self.json["parameterContexts"].as_object_mut() {
            for ctx in ctxs.values_mut() {
                for p in ctx["parameters"].as_array_mut().into_iter().flatten() {
                    if p["name"] == name {
                        p["value"] = Value::String(value.to_owned());
                        found = true;
                    }
                }
            }
        }
        if !found {
            let known: Vec<String> = self.parameters().into_iter().map(|p| p.1).collect();
            return Err(Error::Unexpected(format!(
                "the flow definition has no parameter {name:?} (it has: {})",
                known.join(", ")
            )));
        }
        Ok(self)
    }

    /// Names of the top group's input ports.
    pub fn input_ports(&self) -> Vec<String> {
        port_names(&self.json["flowContents"]["inputPorts"])
    }

    /// Names of the top group's output ports.
    pub fn output_ports(&self) -> Vec<String> {
        port_names(&self.json["flowContents"]["outputPorts"])
    }

    /// The snapshot to deploy: parameter contexts renamed `<name> (<suffix>)` everywhere they are
    /// referenced; returns the new context names.
    fn snapshot_for(&self, suffix: &str) -> (Value, Vec<String>) {
        let mut snap = self.json.clone();
        let rename = |n: &str| format!("{n} ({suffix})");
        let mut names = Vec::new();
        if let Some(ctxs) = snap["parameterContexts"].as_object_mut() {
            let old = std::mem::take(ctxs);
            for (name, mut ctx) in old {
                let new = rename(&name);
                ctx["name"] = Value::String(new.clone());
                if let Some(inh) = ctx["inheritedParameterContexts"].as_array_mut() {
                    for i in inh.iter_mut() {
                        if let Some(s) = i.as_str() {
                            *i = Value::String(rename(s));
                        }
                    }
                }
                names.push(new.clone());
                ctxs.insert(new, ctx);
            }
        }
        rename_context_refs(&mut snap["flowContents"], &rename);
        // NiFi names the new group after the snapshot's top group, not the request's name.
        snap["flowContents"]["name"] = Value::String(suffix.to_owned());
        (snap, names)
    }
}

fn port_names(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn rename_context_refs(group: &mut Value, rename: &dyn Fn(&str) -> String) {
    if let Some(n) = group["parameterContextName"].as_str() {
        group["parameterContextName"] = Value::String(rename(n));
    }
    if let Some(children) = group["processGroups"].as_array_mut() {
        for c in children {
            rename_context_refs(c, rename);
        }
    }
}

/// A NiFi bulletin (what the UI shows on a component's corner).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bulletin {
    /// `ERROR`, `WARNING`, `INFO` or `DEBUG`.
    pub level: String,
    /// The component's name.
    pub source_name: String,
    /// The component's id.
    pub source_id: String,
    /// The message (NiFi puts the component and the exception into it).
    pub message: String,
}

/// One provenance event (a summary; [`ProvenanceEvent::raw`] has every field NiFi sent).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProvenanceEvent {
    /// `RECEIVE`, `ATTRIBUTES_MODIFIED`, `ROUTE`, `SEND`, `DROP`, …
    pub event_type: String,
    /// The component that emitted it.
    pub component_name: String,
    /// That component's type (`RouteOnAttribute`, `Input Port`, …).
    pub component_type: String,
    /// The FlowFile's uuid.
    pub flowfile_uuid: String,
    /// NiFi's event id (events of one FlowFile sort by it).
    pub id: u64,
    /// For `ROUTE` events and most others: the relationship, else empty.
    pub relationship: String,
    /// Details text, if any.
    pub details: String,
    /// The event as NiFi returned it.
    pub raw: Value,
}

/// What a queue listing got: NiFi lists at most 100 FlowFiles per listing request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueueListing {
    /// The listed FlowFiles (attributes and content), in queue order: the first `min(total, 100)`.
    pub flowfiles: Vec<QueuedFlowFile>,
    /// How many FlowFiles the queue holds.
    pub total: u64,
}

impl QueueListing {
    /// How many queued FlowFiles were not listed (NiFi's limit of 100 per listing).
    pub fn not_listed(&self) -> u64 {
        self.total.saturating_sub(self.flowfiles.len() as u64)
    }

    /// True when every queued FlowFile was listed.
    pub fn is_complete(&self) -> bool {
        self.not_listed() == 0
    }
}

/// The most FlowFiles NiFi returns in one queue listing.
pub const LISTING_LIMIT: u64 = 100;

impl Port {
    /// The queue behind (input) or in front of (output) the port, with how much of it was listed.
    pub async fn listing(&self) -> Result<QueueListing> {
        let total = self.queued_count().await?;
        let flowfiles = self.queued_flowfiles().await?;
        Ok(QueueListing {
            total: total.max(flowfiles.len() as u64),
            flowfiles,
        })
    }

    /// Lists the queue, or fails with its size when it holds more than NiFi can list (100): for
    /// assertions that must see every FlowFile.
    pub async fn queued_flowfiles_all(&self) -> Result<Vec<QueuedFlowFile>> {
        let l = self.listing().await?;
        if !l.is_complete() {
            return Err(Error::Unexpected(format!(
                "{} FlowFiles are queued at port {:?}, NiFi lists only the first {LISTING_LIMIT} \
                 ({} not listed); drain or receive in batches",
                l.total,
                self.name,
                l.not_listed()
            )));
        }
        Ok(l.flowfiles)
    }
}

/// A flow deployed by [`Nifi::deploy_flow`]: a process group under the root group plus the root
/// ports that make its ports reachable over Site-to-Site.
#[derive(Debug, Clone)]
pub struct DeployedFlow {
    nifi: Nifi,
    id: String,
    name: String,
    inputs: BTreeMap<String, Port>,
    outputs: BTreeMap<String, Port>,
    contexts: Vec<String>,
}

impl Nifi {
    /// Deploys `def` as a new process group `prefix-<random>` under the root group (stopped), with
    /// a root input port `<group>-<port>` feeding each of its input ports and a root output port fed
    /// by each of its output ports (started; so S2S clients can send and receive as soon as the flow
    /// runs). See the [module docs](crate::flow).
    pub async fn deploy_flow(&self, def: &FlowDefinition, prefix: &str) -> Result<DeployedFlow> {
        let name = unique_name(prefix);
        let (snapshot, contexts) = def.snapshot_for(&name);
        let root = self.root_id().to_owned();
        let group = self
            .post(
                &format!("/process-groups/{root}/process-groups"),
                &json!({"revision": rev0(),
                        "component": {"name": name, "position": {"x": 600.0, "y": 0.0}},
                        "versionedFlowSnapshot": snapshot}),
            )
            .await?;
        let id = str_field(&group, "id")?;
        let mut flow = DeployedFlow {
            nifi: self.clone(),
            id: id.clone(),
            name: name.clone(),
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            contexts,
        };
        if let Err(e) = flow.wire_ports().await {
            let _ = flow.delete().await;
            return Err(e);
        }
        Ok(flow)
    }

    /// Finds a flow deployed earlier by [`Nifi::deploy_flow`] (e.g. by `cargo xtask nifi flow
    /// deploy`, or one a failed test left behind) by its process group name, with its root ports
    /// and parameter contexts, so it can be driven or deleted. `name` may also be the group's id.
    pub async fn deployed_flow(&self, name: &str) -> Result<DeployedFlow> {
        let root = self.root_id().to_owned();
        let groups = self
            .api_get(&format!("/process-groups/{root}/process-groups"))
            .await?;
        let group = groups["processGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["component"]["name"] == name || g["id"] == name)
            .ok_or_else(|| {
                Error::Unexpected(format!(
                    "no process group named {name:?} under the root group"
                ))
            })?;
        let id = str_field(group, "id")?;
        let mut flow = DeployedFlow {
            nifi: self.clone(),
            id: id.clone(),
            name: group["component"]["name"]
                .as_str()
                .unwrap_or(name)
                .to_owned(),
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            contexts: Vec::new(),
        };
        let conns = self
            .api_get(&format!("/process-groups/{root}/connections"))
            .await?;
        for c in conns["connections"].as_array().into_iter().flatten() {
            let comp = &c["component"];
            let (kind, inner, outer) = if comp["destination"]["groupId"] == id.as_str()
                && comp["source"]["type"] == "INPUT_PORT"
            {
                (PortKind::Input, &comp["destination"], &comp["source"])
            } else if comp["source"]["groupId"] == id.as_str()
                && comp["destination"]["type"] == "OUTPUT_PORT"
            {
                (PortKind::Output, &comp["source"], &comp["destination"])
            } else {
                continue;
            };
            let port = Port {
                nifi: self.clone(),
                name: outer["name"].as_str().unwrap_or_default().to_owned(),
                id: outer["id"].as_str().unwrap_or_default().to_owned(),
                kind,
                connection_id: str_field(c, "id")?,
                funnel_id: None,
            };
            let inner = inner["name"].as_str().unwrap_or_default().to_owned();
            match kind {
                PortKind::Input => flow.inputs.insert(inner, port),
                PortKind::Output => flow.outputs.insert(inner, port),
            };
        }
        let suffix = format!(" ({})", flow.name);
        let ctxs = self.api_get("/flow/parameter-contexts").await?;
        flow.contexts = ctxs["parameterContexts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["component"]["name"].as_str())
            .filter(|n| n.ends_with(&suffix))
            .map(str::to_owned)
            .collect();
        Ok(flow)
    }

    /// Installs NARs by Maven coordinates (`group:artifact[:version]`, the version defaults to
    /// NiFi's) into this NiFi's `extensions/` folder and waits until NiFi loaded them (their
    /// processor or controller service types are listed). A NAR already there is skipped.
    ///
    /// Needs a NiFi this kit provisioned (its home is taken from the state file with this URL);
    /// for any other NiFi it only checks the NARs are loaded and errors naming the missing ones.
    pub async fn install_nars(&self, coords: &[&str]) -> Result<()> {
        let home = provisioned_home(self.url());
        for c in coords {
            let (group, artifact, version) = parse_coords(c, self.version())?;
            if self.bundle_loaded(&group, &artifact).await? {
                continue;
            }
            let Some(home) = &home else {
                return Err(Error::Provision(format!(
                    "NiFi at {} does not have {c} and was not started by the test kit \
                     (no home known to install it into)",
                    self.url()
                )));
            };
            provision::install_nar(home, &group, &artifact, &version)?;
            if artifact.ends_with("-api-nar") {
                continue; // API NARs contribute no component types to wait for
            }
            let this = self.clone();
            poll_until(
                &format!("NiFi to load {group}:{artifact}:{version}"),
                Duration::from_secs(180),
                || {
                    let this = this.clone();
                    let (g, a) = (group.clone(), artifact.clone());
                    async move {
                        Ok(if this.bundle_loaded(&g, &a).await? {
                            Step::Ready(())
                        } else {
                            Step::Pending("not listed in /flow/processor-types yet".into())
                        })
                    }
                },
            )
            .await?;
        }
        Ok(())
    }

    /// True when NiFi lists a processor or controller service type from that bundle.
    async fn bundle_loaded(&self, group: &str, artifact: &str) -> Result<bool> {
        for (path, key) in [
            ("processor-types", "processorTypes"),
            ("controller-service-types", "controllerServiceTypes"),
        ] {
            let v = self
                .api_get(&format!(
                    "/flow/{path}?bundleGroupFilter={group}&bundleArtifactFilter={artifact}"
                ))
                .await?;
            let hit = v[key]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["bundle"]["group"] == group && t["bundle"]["artifact"] == artifact);
            if hit {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn parse_coords(c: &str, nifi_version: &str) -> Result<(String, String, String)> {
    let parts: Vec<&str> = c.split(':').collect();
    match parts.as_slice() {
        [g, a] if !g.is_empty() && !a.is_empty() => {
            Ok(((*g).into(), (*a).into(), nifi_version.into()))
        }
        [g, a, v] if !g.is_empty() && !a.is_empty() && !v.is_empty() => {
            Ok(((*g).into(), (*a).into(), (*v).into()))
        }
        _ => Err(Error::Unexpected(format!(
            "{c:?} is not a Maven coordinate group:artifact[:version]"
        ))),
    }
}

/// The home of the kit-provisioned NiFi serving `url`, from the shared or a per-version state file.
fn provisioned_home(url: &str) -> Option<PathBuf> {
    let mut files = vec![provision::state_file()];
    if let Ok(dir) = std::fs::read_dir(provision::nifi_dir()) {
        files.extend(dir.flatten().map(|e| e.path().join("nifi.env")));
    }
    files.into_iter().find_map(|f| {
        let inst = provision::read_state(&f).ok()??;
        (inst.url == url).then_some(inst.home).flatten()
    })
}

impl DeployedFlow {
    /// The process group's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The process group's name (`prefix-<random>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The names of the parameter contexts deployed with the flow.
    pub fn parameter_contexts(&self) -> &[String] {
        &self.contexts
    }

    /// The root input port feeding the flow's input port `name`: send to `.name()` over S2S.
    pub fn input(&self, name: &str) -> Result<&Port> {
        self.inputs.get(name).ok_or_else(|| {
            Error::NoSuchPort(format!(
                "{name} (the flow's input ports: {:?})",
                self.inputs.keys().collect::<Vec<_>>()
            ))
        })
    }

    /// The root output port fed by the flow's output port `name`: receive from `.name()` over S2S,
    /// or list/count its queue.
    pub fn output(&self, name: &str) -> Result<&Port> {
        self.outputs.get(name).ok_or_else(|| {
            Error::NoSuchPort(format!(
                "{name} (the flow's output ports: {:?})",
                self.outputs.keys().collect::<Vec<_>>()
            ))
        })
    }

    /// All root input ports, by the flow's port name.
    pub fn inputs(&self) -> &BTreeMap<String, Port> {
        &self.inputs
    }

    /// All root output ports, by the flow's port name.
    pub fn outputs(&self) -> &BTreeMap<String, Port> {
        &self.outputs
    }

    async fn wire_ports(&mut self) -> Result<()> {
        let root = self.nifi.root_id().to_owned();
        for kind in [PortKind::Input, PortKind::Output] {
            let list = self
                .nifi
                .api_get(&format!("/process-groups/{}/{}", self.id, kind.path()))
                .await?;
            let key = match kind {
                PortKind::Input => "inputPorts",
                PortKind::Output => "outputPorts",
            };
            for p in list[key].as_array().into_iter().flatten() {
                let inner_name = p["component"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let inner_id = str_field(p, "id")?;
                let root_name = format!("{}-{inner_name}", self.name);
                let created = self
                    .nifi
                    .post(
                        &format!("/process-groups/{root}/{}", kind.path()),
                        &json!({"revision": rev0(), "component": {"name": root_name,
                                "allowRemoteAccess": true, "position": {"x": 0.0, "y": 0.0}}}),
                    )
                    .await?;
                let root_port = str_field(&created, "id")?;
                let (src, src_group, src_type, dst, dst_group, dst_type) = match kind {
                    PortKind::Input => (
                        &root_port,
                        &root,
                        "INPUT_PORT",
                        &inner_id,
                        &self.id,
                        "INPUT_PORT",
                    ),
                    PortKind::Output => (
                        &inner_id,
                        &self.id,
                        "OUTPUT_PORT",
                        &root_port,
                        &root,
                        "OUTPUT_PORT",
                    ),
                };
                let conn = self
                    .nifi
                    .post(
                        &format!("/process-groups/{root}/connections"),
                        &json!({"revision": rev0(), "component": {
                            "source": {"id": src, "groupId": src_group, "type": src_type},
                            "destination": {"id": dst, "groupId": dst_group, "type": dst_type},
                            "backPressureObjectThreshold": 10000,
                            "backPressureDataSizeThreshold": "1 GB"}}),
                    )
                    .await?;
                self.nifi.authorize_port(kind, &root_port).await?;
                let port = Port {
                    nifi: self.nifi.clone(),
                    name: root_name,
                    id: root_port,
                    kind,
                    connection_id: str_field(&conn, "id")?,
                    funnel_id: None,
                };
                port.start().await?;
                match kind {
                    PortKind::Input => self.inputs.insert(inner_name, port),
                    PortKind::Output => self.outputs.insert(inner_name, port),
                };
            }
        }
        Ok(())
    }

    /// Every process group of the flow (this one and its descendants) as `/flow/process-groups`
    /// answers them.
    async fn groups(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut todo = vec![self.id.clone()];
        while let Some(id) = todo.pop() {
            let g = self
                .nifi
                .api_get(&format!("/flow/process-groups/{id}"))
                .await?;
            let flow = &g["processGroupFlow"]["flow"];
            for child in flow["processGroups"].as_array().into_iter().flatten() {
                if let Some(cid) = child["id"].as_str() {
                    todo.push(cid.to_owned());
                }
            }
            out.push(g["processGroupFlow"].clone());
        }
        Ok(out)
    }

    async fn set_services(&self, state: &str) -> Result<()> {
        self.nifi
            .send(
                reqwest::Method::PUT,
                &format!("/flow/process-groups/{}/controller-services", self.id),
                Some(&json!({"id": self.id, "state": state,
                             "disconnectedNodeAcknowledged": false})),
            )
            .await?;
        let path = format!(
            "/flow/process-groups/{}/controller-services?includeAncestorGroups=false&includeDescendantGroups=true",
            self.id
        );
        let path = &path;
        poll_until(
            &format!("the controller services of {:?} to be {state}", self.name),
            DEFAULT_WAIT,
            || async move {
                let v = self.nifi.api_get(path).await?;
                let mut pending = Vec::new();
                for s in v["controllerServices"].as_array().into_iter().flatten() {
                    let c = &s["component"];
                    if c["state"] != state {
                        let errs = c["validationErrors"]
                            .as_array()
                            .map(|e| {
                                e.iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            })
                            .unwrap_or_default();
                        if state == "ENABLED" && c["validationStatus"] == "INVALID" {
                            return Err(Error::Unexpected(format!(
                                "controller service {:?} is invalid: {errs}",
                                c["name"]
                            )));
                        }
                        pending.push(format!("{} is {}", c["name"], c["state"]));
                    }
                }
                Ok(if pending.is_empty() {
                    Step::Ready(())
                } else {
                    Step::Pending(pending.join(", "))
                })
            },
        )
        .await
    }

    /// Enables every controller service of the flow and waits until all are `ENABLED`; an invalid
    /// service fails with its validation errors.
    pub async fn enable_services(&self) -> Result<()> {
        self.set_services("ENABLED").await
    }

    /// Disables every controller service of the flow and waits until all are `DISABLED`.
    pub async fn disable_services(&self) -> Result<()> {
        self.set_services("DISABLED").await
    }

    /// Waits until no processor of the flow is still validating, then fails naming every invalid
    /// processor with its validation errors.
    pub async fn check_valid(&self) -> Result<()> {
        let invalid = poll_until(
            &format!("the processors of {:?} to be validated", self.name),
            DEFAULT_WAIT,
            || async move {
                let mut invalid = Vec::new();
                let mut validating = 0;
                for g in self.groups().await? {
                    for p in g["flow"]["processors"].as_array().into_iter().flatten() {
                        let c = &p["component"];
                        match c["validationStatus"].as_str() {
                            Some("VALIDATING") => validating += 1,
                            Some("INVALID") => invalid.push(format!(
                                "{}: {}",
                                c["name"].as_str().unwrap_or("?"),
                                c["validationErrors"]
                                    .as_array()
                                    .map(|e| e
                                        .iter()
                                        .filter_map(Value::as_str)
                                        .collect::<Vec<_>>()
                                        .join("; "))
                                    .unwrap_or_default()
                            )),
                            _ => {}
                        }
                    }
                }
                Ok(if validating == 0 {
                    Step::Ready(invalid)
                } else {
                    Step::Pending(format!("{validating} validating"))
                })
            },
        )
        .await?;
        if invalid.is_empty() {
            Ok(())
        } else {
            Err(Error::Unexpected(format!(
                "flow {:?} has invalid processors: {}",
                self.name,
                invalid.join(" | ")
            )))
        }
    }

    async fn set_state(&self, state: &str) -> Result<()> {
        self.nifi
            .send(
                reqwest::Method::PUT,
                &format!("/flow/process-groups/{}", self.id),
                Some(&json!({"id": self.id, "state": state,
                             "disconnectedNodeAcknowledged": false})),
            )
            .await?;
        Ok(())
    }

    /// Enables the controller services, checks every processor is valid, and starts every
    /// component of the flow (processors and the group's own ports; the root ports already run).
    pub async fn start(&self) -> Result<()> {
        self.enable_services().await?;
        self.check_valid().await?;
        self.set_state("RUNNING").await
    }

    /// Stops every component of the flow (the root ports keep running, so FlowFiles sent meanwhile
    /// queue up in front of the flow) and waits until no processor has active threads.
    pub async fn stop(&self) -> Result<()> {
        self.set_state("STOPPED").await?;
        poll_until(
            &format!("the processors of {:?} to stop", self.name),
            DEFAULT_WAIT,
            || async move {
                let mut active = 0;
                for g in self.groups().await? {
                    for p in g["flow"]["processors"].as_array().into_iter().flatten() {
                        active += p["status"]["aggregateSnapshot"]["activeThreadCount"]
                            .as_u64()
                            .unwrap_or(0);
                    }
                }
                Ok(if active == 0 {
                    Step::Ready(())
                } else {
                    Step::Pending(format!("{active} active threads"))
                })
            },
        )
        .await
    }

    /// The bulletins of the flow's components (every group of it), oldest first.
    pub async fn bulletins(&self) -> Result<Vec<Bulletin>> {
        let ids: BTreeSet<String> = self
            .groups()
            .await?
            .iter()
            .filter_map(|g| g["id"].as_str().map(str::to_owned))
            .collect();
        let v = self.nifi.api_get("/flow/bulletin-board?limit=1000").await?;
        let mut out: Vec<(u64, Bulletin)> = Vec::new();
        for b in v["bulletinBoard"]["bulletins"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let group = b["groupId"].as_str().unwrap_or_default();
            if !ids.contains(group) {
                continue;
            }
            let inner = &b["bulletin"];
            let s = |k: &str| inner[k].as_str().unwrap_or_default().to_owned();
            out.push((
                b["id"].as_u64().unwrap_or(0),
                Bulletin {
                    level: s("level"),
                    source_name: s("sourceName"),
                    source_id: s("sourceId"),
                    message: s("message"),
                },
            ));
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out.into_iter().map(|(_, b)| b).collect())
    }

    /// Fails with the text of every `ERROR` bulletin of the flow (what a test calls after the data
    /// went through: a processor that failed on a FlowFile leaves one).
    pub async fn check_bulletins(&self) -> Result<()> {
        let errors: Vec<String> = self
            .bulletins()
            .await?
            .into_iter()
            .filter(|b| b.level == "ERROR")
            .map(|b| format!("{}: {}", b.source_name, b.message))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::FlowError(errors.join("\n")))
        }
    }

    /// The provenance events NiFi recorded for the FlowFile with this `uuid` (e.g. the `uuid`
    /// attribute of a FlowFile received from an output port), in event order. NiFi indexes events a
    /// moment after they happen: poll with [`DeployedFlow::wait_for_provenance`].
    pub async fn provenance(&self, uuid: &str) -> Result<Vec<ProvenanceEvent>> {
        provenance(&self.nifi, uuid).await
    }

    /// Polls [`DeployedFlow::provenance`] until an event of `event_type` shows up.
    pub async fn wait_for_provenance(
        &self,
        uuid: &str,
        event_type: &str,
        timeout: Duration,
    ) -> Result<Vec<ProvenanceEvent>> {
        poll_until(
            &format!("a {event_type} provenance event for FlowFile {uuid}"),
            timeout,
            || async move {
                let ev = self.provenance(uuid).await?;
                Ok(if ev.iter().any(|e| e.event_type == event_type) {
                    Step::Ready(ev)
                } else {
                    Step::Pending(format!(
                        "events: {:?}",
                        ev.iter().map(|e| &e.event_type).collect::<Vec<_>>()
                    ))
                })
            },
        )
        .await
    }

    /// Stops the flow, deletes the root ports (dropping what they queue), disables its services,
    /// drops every queue inside it, deletes the group and its parameter contexts.
    pub async fn delete(&self) -> Result<()> {
        match self
            .nifi
            .api_get(&format!("/process-groups/{}", self.id))
            .await
        {
            Err(Error::Status { status: 404, .. }) => {}
            Err(e) => return Err(e),
            Ok(_) => {
                self.stop().await?;
                for p in self.inputs.values().chain(self.outputs.values()) {
                    p.delete().await?;
                }
                self.disable_services().await?;
                for g in self.groups().await? {
                    for c in g["flow"]["connections"].as_array().into_iter().flatten() {
                        if let Some(id) = c["id"].as_str() {
                            drop_queue(&self.nifi, id).await?;
                        }
                    }
                }
                let cur = self
                    .nifi
                    .api_get(&format!("/process-groups/{}", self.id))
                    .await?;
                let version = cur["revision"]["version"].as_u64().unwrap_or(0);
                self.nifi
                    .send(
                        reqwest::Method::DELETE,
                        &format!(
                            "/process-groups/{}?version={version}&clientId={CLIENT_ID}",
                            self.id
                        ),
                        None,
                    )
                    .await?;
            }
        }
        let ctxs = self.nifi.api_get("/flow/parameter-contexts").await?;
        for c in ctxs["parameterContexts"].as_array().into_iter().flatten() {
            let name = c["component"]["name"].as_str().unwrap_or_default();
            if self.contexts.iter().any(|n| n == name) {
                let id = str_field(c, "id")?;
                let version = revision(c)["version"].as_u64().unwrap_or(0);
                self.nifi
                    .send(
                        reqwest::Method::DELETE,
                        &format!("/parameter-contexts/{id}?version={version}&clientId={CLIENT_ID}"),
                        None,
                    )
                    .await?;
            }
        }
        Ok(())
    }
}

async fn drop_queue(nifi: &Nifi, conn: &str) -> Result<()> {
    let base = format!("/flowfile-queues/{conn}/drop-requests");
    let created = nifi.post(&base, &json!({})).await?;
    let id = created["dropRequest"]["id"]
        .as_str()
        .ok_or_else(|| Error::Unexpected(format!("no drop request id in {created}")))?
        .to_owned();
    let path = &format!("{base}/{id}");
    let done = poll_until("the queue drop to finish", DEFAULT_WAIT, || async move {
        let d = nifi.api_get(path).await?;
        Ok(if d["dropRequest"]["finished"] == true {
            Step::Ready(())
        } else {
            Step::Pending(format!("{}% dropped", d["dropRequest"]["percentCompleted"]))
        })
    })
    .await;
    let _ = nifi.send(reqwest::Method::DELETE, path, None).await;
    done
}

async fn provenance(nifi: &Nifi, uuid: &str) -> Result<Vec<ProvenanceEvent>> {
    let created = nifi
        .post(
            "/provenance",
            &json!({"provenance": {"request": {"maxResults": 1000, "summarize": true,
                    "incrementalResults": false,
                    "searchTerms": {"FlowFileUUID": {"value": uuid, "inverse": false}}}}}),
        )
        .await?;
    let id = created["provenance"]["id"]
        .as_str()
        .ok_or_else(|| Error::Unexpected(format!("no provenance query id in {created}")))?
        .to_owned();
    let path = &format!("/provenance/{id}");
    let done = poll_until(
        "the provenance query to finish",
        DEFAULT_WAIT,
        || async move {
            let q = nifi.api_get(path).await?;
            Ok(if q["provenance"]["finished"] == true {
                Step::Ready(q)
            } else {
                Step::Pending(format!("{}% done", q["provenance"]["percentCompleted"]))
            })
        },
    )
    .await;
    let _ = nifi.send(reqwest::Method::DELETE, path, None).await;
    let q = done?;
    let mut out: Vec<ProvenanceEvent> = q["provenance"]["results"]["provenanceEvents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            ProvenanceEvent {
                event_type: s("eventType"),
                component_name: s("componentName"),
                component_type: s("componentType"),
                flowfile_uuid: s("flowFileUuid"),
                id: e["eventId"].as_u64().unwrap_or(0),
                relationship: s("relationship"),
                details: s("details"),
                raw: e.clone(),
            }
        })
        .collect();
    out.sort_by_key(|e| e.id);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEF: &str = r#"{"flowContents": {"name": "f", "parameterContextName": "ctx",
        "inputPorts": [{"name": "in"}], "outputPorts": [{"name": "b"}, {"name": "a"}],
        "processGroups": [{"name": "child", "parameterContextName": "ctx", "processGroups": []}]},
        "parameterContexts": {"ctx": {"name": "ctx", "inheritedParameterContexts": [],
        "parameters": [{"name": "x", "value": "1", "sensitive": false}]}}}"#;

    #[test]
    fn overrides_and_renames() {
        let def = FlowDefinition::from_json(DEF).unwrap();
        assert_eq!(def.input_ports(), ["in"]);
        assert_eq!(def.output_ports(), ["a", "b"]);
        let def = def.with_parameter("x", "2").unwrap();
        assert_eq!(
            def.parameters(),
            [("ctx".into(), "x".into(), Some("2".into()))]
        );
        let e = def
            .clone()
            .with_parameter("y", "2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no parameter \"y\""), "{e}");
        let (snap, names) = def.snapshot_for("g-1");
        assert_eq!(names, ["ctx (g-1)"]);
        assert_eq!(snap["flowContents"]["parameterContextName"], "ctx (g-1)");
        assert_eq!(
            snap["flowContents"]["processGroups"][0]["parameterContextName"],
            "ctx (g-1)"
        );
        assert_eq!(snap["parameterContexts"]["ctx (g-1)"]["name"], "ctx (g-1)");
        assert_eq!(snap["flowContents"]["name"], "g-1");
    }

    #[test]
    fn rejects_non_definitions_and_bad_coords() {
        assert!(FlowDefinition::from_json("{}").is_err());
        assert!(parse_coords("a", "1.18.0").is_err());
        assert_eq!(
            parse_coords("org.apache.nifi:nifi-standard-nar", "1.18.0").unwrap(),
            (
                "org.apache.nifi".into(),
                "nifi-standard-nar".into(),
                "1.18.0".into()
            )
        );
    }
}
