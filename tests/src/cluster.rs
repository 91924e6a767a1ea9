//! A real NiFi cluster on loopback: N nodes of one version plus a standalone ZooKeeper, built from
//! the same Maven Central artifacts and the same home assembly as a standalone test NiFi
//! ([`provision::fetch`], [`provision::assemble_into`], [`provision::configure`],
//! [`provision::start`]); only the cluster properties are added on top.
//!
//! Layout: `<nifi_dir>/cluster-<version>/` holds `node1/` … `nodeN/` (NiFi homes),
//! `zookeeper/` (`zoo.cfg`, data, log) and the state files `cluster.json` (what [`Cluster`] reads)
//! and `cluster.env` (`NIFI_CLUSTER_URLS=…`, sourceable). ZooKeeper runs in its own JVM so that
//! killing any node leaves it up.
//!
//! Every node has its own web, RAW S2S, cluster-protocol and load-balance port (free loopback
//! ports picked at first start, kept for restarts), the same sensitive-properties key, and a flow
//! election that ends as soon as all N nodes voted.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::provision::{self, Ports, progress};
use crate::{Error, Nifi};

/// The standalone ZooKeeper (the version NiFi 2.3.0 bundles; it serves NiFi 1.18.0's 3.8 client).
pub const ZOOKEEPER_VERSION: &str = "3.9.3";

/// One node of a cluster the kit started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// 1-based node number (`node stop K`).
    pub number: usize,
    /// `http://127.0.0.1:<web>/nifi`.
    pub url: String,
    /// Web port (REST API, HTTP S2S).
    pub web_port: u16,
    /// RAW S2S port.
    pub raw_port: u16,
    /// Cluster protocol port.
    pub protocol_port: u16,
    /// Load-balancing port.
    pub load_balance_port: u16,
    /// NiFi 2.x management server port.
    pub management_port: u16,
    /// The node's NiFi home.
    pub home: PathBuf,
    /// PID of its JVM (`None` while stopped).
    pub pid: Option<u32>,
}

impl ClusterNode {
    /// Whether its JVM runs.
    pub fn alive(&self) -> bool {
        self.pid.is_some_and(provision::process_running)
    }

    fn ports(&self) -> Ports {
        Ports {
            web: self.web_port,
            raw: self.raw_port,
            management: self.management_port,
        }
    }
}

/// What `cluster.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// NiFi version of every node.
    pub version: String,
    /// ZooKeeper client port (127.0.0.1).
    pub zk_port: u16,
    /// PID of the ZooKeeper JVM (`None` while stopped).
    pub zk_pid: Option<u32>,
    /// ZooKeeper's folder (`zoo.cfg`, `data/`, `zookeeper.log`).
    pub zk_dir: PathBuf,
    /// ZooKeeper runs embedded in node 1 (`nifi.state.management.embedded.zookeeper.start`)
    /// instead of a standalone JVM: killing node 1 takes ZooKeeper down with it.
    #[serde(default)]
    pub zk_embedded: bool,
    /// The nodes, in order.
    pub nodes: Vec<ClusterNode>,
}

/// Where the cluster of `version` lives: `<nifi_dir>/cluster-<version>/`.
pub fn cluster_dir(version: &str) -> PathBuf {
    provision::nifi_dir().join(format!("cluster-{version}"))
}

/// `cluster.json` of the cluster of `version`.
pub fn state_file(version: &str) -> PathBuf {
    cluster_dir(version).join("cluster.json")
}

/// Reads `cluster.json` (`None` if there is none).
pub fn read_state(version: &str) -> Result<Option<ClusterState>, Error> {
    let path = state_file(version);
    match fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| Error::Provision(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes `cluster.json` and the sourceable `cluster.env` next to it.
pub fn write_state(state: &ClusterState) -> Result<(), Error> {
    let dir = cluster_dir(&state.version);
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let json = serde_json::to_string_pretty(state).expect("state serializes");
    let tmp = dir.join(".cluster.json.tmp");
    fs::write(&tmp, json).map_err(|e| Error::io("writing cluster.json", e))?;
    fs::rename(&tmp, dir.join("cluster.json"))
        .map_err(|e| Error::io("renaming cluster.json", e))?;
    fs::write(dir.join("cluster.env"), state_env(state))
        .map_err(|e| Error::io("writing cluster.env", e))
}

/// `KEY=VALUE` lines: `NIFI_CLUSTER_URLS` (comma-separated), `NIFI_CLUSTER_RAW_PORTS`,
/// `NIFI_CLUSTER_PIDS`, `NIFI_CLUSTER_VERSION`, `NIFI_CLUSTER_ZK`, `NIFI_CLUSTER_ZK_MODE`
/// (`standalone`, or `embedded` in node 1), and per node `NIFI_NODE<K>_URL`; plus
/// `NIFI_S2S_NIFI_DIR` when the kit's folder is not the default one (so that a test that sources
/// the file finds this cluster's state).
pub fn state_env(state: &ClusterState) -> String {
    let join = |f: &dyn Fn(&ClusterNode) -> String| {
        state.nodes.iter().map(f).collect::<Vec<_>>().join(",")
    };
    let mut s = String::new();
    let _ = writeln!(s, "NIFI_CLUSTER_URLS={}", join(&|n| n.url.clone()));
    let _ = writeln!(
        s,
        "NIFI_CLUSTER_RAW_PORTS={}",
        join(&|n| n.raw_port.to_string())
    );
    let _ = writeln!(
        s,
        "NIFI_CLUSTER_PIDS={}",
        join(&|n| n.pid.map_or_else(String::new, |p| p.to_string()))
    );
    let _ = writeln!(s, "NIFI_CLUSTER_VERSION={}", state.version);
    let _ = writeln!(s, "NIFI_CLUSTER_ZK=127.0.0.1:{}", state.zk_port);
    let mode = if state.zk_embedded {
        "embedded"
    } else {
        "standalone"
    };
    let _ = writeln!(s, "NIFI_CLUSTER_ZK_MODE={mode}");
    if let Some(dir) = std::env::var_os("NIFI_S2S_NIFI_DIR").filter(|d| !d.is_empty()) {
        let dir = std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(&dir));
        let _ = writeln!(s, "NIFI_S2S_NIFI_DIR={}", dir.display());
    }
    for n in &state.nodes {
        let _ = writeln!(s, "NIFI_NODE{}_URL={}", n.number, n.url);
    }
    s
}

/// Options for [`up`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// NiFi version of every node.
    pub version: String,
    /// Number of nodes (2 or more).
    pub nodes: usize,
    /// JVM heap per node.
    pub heap: String,
    /// How long to wait until every node is CONNECTED.
    pub timeout: Duration,
    /// Wipe the homes (flow, queues, ports) and start over.
    pub fresh: bool,
    /// Run ZooKeeper embedded in node 1 instead of a standalone JVM (the setup where a node
    /// loss takes ZooKeeper down; see [`ClusterState::zk_embedded`]).
    pub embedded_zk: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            version: provision::DEFAULT_VERSION.into(),
            nodes: 2,
            heap: "512m".into(),
            timeout: Duration::from_secs(300),
            fresh: false,
            embedded_zk: false,
        }
    }
}

/// Downloads (once) ZooKeeper and the jars its server needs into `<cache>/dist/zookeeper-<V>/lib`.
pub fn fetch_zookeeper() -> Result<PathBuf, Error> {
    let cache = provision::cache_dir();
    let _lock = provision::cache_lock()?;
    let dist = cache
        .join("dist")
        .join(format!("zookeeper-{ZOOKEEPER_VERSION}"));
    if dist.join(".complete").is_file() {
        return Ok(dist);
    }
    let build = cache
        .join("build")
        .join(format!("zookeeper-{ZOOKEEPER_VERSION}"));
    fs::create_dir_all(&build).map_err(|e| Error::io("creating the ZooKeeper build dir", e))?;
    let _ = fs::remove_dir_all(&dist);
    // The pom marks metrics-core and snappy-java `provided` and the logging binding optional,
    // but the server needs all three.
    let deps = [
        ("org.apache.zookeeper", "zookeeper", ZOOKEEPER_VERSION),
        ("io.dropwizard.metrics", "metrics-core", "4.1.12.1"),
        ("org.xerial.snappy", "snappy-java", "1.1.10.5"),
        ("org.slf4j", "slf4j-simple", "1.7.30"),
    ]
    .iter()
    .map(|(g, a, v)| {
        format!("<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>")
    })
    .collect::<String>();
    let pom = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by nifi-testkit (cluster.rs): a standalone ZooKeeper's jars; do not edit. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>nifi-s2s.provision</groupId>
  <artifactId>zookeeper</artifactId>
  <version>{ZOOKEEPER_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>{deps}</dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId>
    <artifactId>maven-dependency-plugin</artifactId>
    <version>{plugin}</version>
    <executions><execution><id>copy</id><phase>validate</phase><goals><goal>copy-dependencies</goal></goals>
      <configuration><outputDirectory>{out}</outputDirectory><includeScope>runtime</includeScope></configuration>
    </execution></executions>
  </plugin></plugins></build>
</project>
"#,
        plugin = provision::DEPENDENCY_PLUGIN,
        out = dist.join("lib").display(),
    );
    fs::write(build.join("pom.xml"), pom).map_err(|e| Error::io("writing the ZooKeeper pom", e))?;
    provision::run_maven(&build, &["validate"])?;
    fs::write(dist.join(".complete"), "")
        .map_err(|e| Error::io("marking ZooKeeper complete", e))?;
    Ok(dist)
}

/// Whether a ZooKeeper answers `srvr` on `127.0.0.1:port` and is serving.
pub fn zookeeper_serving(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"srvr").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("Mode: standalone")
}

fn start_zookeeper(dir: &Path, port: u16) -> Result<u32, Error> {
    use std::os::unix::process::CommandExt as _;
    let lib = fetch_zookeeper()?.join("lib");
    fs::create_dir_all(dir.join("data")).map_err(|e| Error::io("creating ZooKeeper data", e))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| Error::io(format!("resolving {}", dir.display()), e))?;
    fs::write(
        dir.join("zoo.cfg"),
        format!(
            "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n",
            dir.join("data").display()
        ),
    )
    .map_err(|e| Error::io("writing zoo.cfg", e))?;
    let log = fs::File::create(dir.join("zookeeper.log"))
        .map_err(|e| Error::io("creating zookeeper.log", e))?;
    let err = log
        .try_clone()
        .map_err(|e| Error::io("cloning a handle", e))?;
    let java = provision::java_for("1.18.0")?;
    let child = Command::new(&java)
        .args(["-Xmx128m", "-Dzookeeper.admin.enableServer=false", "-cp"])
        .arg(format!("{}/*", lib.display()))
        .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
        .arg(dir.join("zoo.cfg"))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::io(format!("starting ZooKeeper with {}", java.display()), e))?;
    let pid = child.id();
    let t = Instant::now();
    while !zookeeper_serving(port) {
        if !provision::process_running(pid) || t.elapsed() > Duration::from_secs(60) {
            let log = fs::read_to_string(dir.join("zookeeper.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let _ = provision::stop_running(pid, Duration::from_secs(5));
            return Err(Error::Provision(format!(
                "ZooKeeper on 127.0.0.1:{port} did not start serving:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    progress(format!(
        "ZooKeeper {ZOOKEEPER_VERSION} serving on 127.0.0.1:{port} (PID {pid}) after {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    Ok(pid)
}

/// Writes the cluster properties on top of what [`provision::configure`] wrote, and points the
/// ZooKeeper state provider at ZooKeeper; `embed_zk`: this node starts an embedded ZooKeeper
/// (standalone mode, client port `zk` on 127.0.0.1).
fn configure_node(
    node: &ClusterNode,
    version: &str,
    n: usize,
    zk: u16,
    embed_zk: bool,
) -> Result<(), Error> {
    provision::configure(&node.home, version, node.ports(), None, None)?;
    let path = node.home.join("conf/nifi.properties");
    let text = fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let connect = format!("127.0.0.1:{zk}");
    let o: Vec<(&str, String)> = vec![
        ("nifi.cluster.is.node", "true".into()),
        ("nifi.cluster.protocol.is.secure", "false".into()),
        ("nifi.cluster.node.address", "127.0.0.1".into()),
        (
            "nifi.cluster.node.protocol.port",
            node.protocol_port.to_string(),
        ),
        ("nifi.cluster.load.balance.host", "127.0.0.1".into()),
        (
            "nifi.cluster.load.balance.port",
            node.load_balance_port.to_string(),
        ),
        ("nifi.cluster.flow.election.max.candidates", n.to_string()),
        ("nifi.cluster.flow.election.max.wait.time", "1 min".into()),
        // 3 s (template: 5 s) × 8 missable: a dead node is DISCONNECTED after ~24 s, not ~40 s.
        ("nifi.cluster.protocol.heartbeat.interval", "3 sec".into()),
        ("nifi.zookeeper.connect.string", connect.clone()),
        (
            "nifi.state.management.embedded.zookeeper.start",
            embed_zk.to_string(),
        ),
    ];
    fs::write(&path, provision::set_properties(&text, &o))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    if embed_zk {
        // The template's single `server.1=…;2181` entry makes ZooKeeper 3.8 drop the client
        // port and NiFi fail to start: no server entry (standalone mode), our own client port.
        let zp = node.home.join("conf/zookeeper.properties");
        let text = fs::read_to_string(&zp)
            .map_err(|e| Error::io(format!("reading {}", zp.display()), e))?;
        let mut out: String = text
            .lines()
            .filter(|l| !l.starts_with("server.") && !l.starts_with("clientPort"))
            .map(|l| format!("{l}\n"))
            .collect();
        let _ = write!(out, "clientPort={zk}\nclientPortAddress=127.0.0.1\n");
        fs::write(&zp, out).map_err(|e| Error::io(format!("writing {}", zp.display()), e))?;
    }
    let sm = node.home.join("conf/state-management.xml");
    let xml =
        fs::read_to_string(&sm).map_err(|e| Error::io(format!("reading {}", sm.display()), e))?;
    let key = "<property name=\"Connect String\">";
    let Some(at) = xml.find(key) else {
        return Err(Error::Provision(format!(
            "{}: no Connect String property",
            sm.display()
        )));
    };
    let start = at + key.len();
    let end = start
        + xml[start..]
            .find("</property>")
            .ok_or_else(|| Error::Provision(format!("{}: unclosed property", sm.display())))?;
    let xml = format!("{}{connect}{}", &xml[..start], &xml[end..]);
    fs::write(&sm, xml).map_err(|e| Error::io(format!("writing {}", sm.display()), e))
}

/// What [`up`] did.
#[derive(Debug, Clone)]
pub struct ClusterReport {
    /// The cluster as recorded in `cluster.json`.
    pub state: ClusterState,
    /// It was already up: nothing was started.
    pub reused: bool,
    /// From the JVMs' start until every node reported CONNECTED.
    pub startup: Duration,
}

/// Brings up the cluster of `opts.version` with `opts.nodes` nodes: reuses it when every node is
/// CONNECTED; else restarts what is recorded (same homes and ports) or, the first time or with
/// `fresh`, assembles new homes. Waits until every node reports CONNECTED.
pub async fn up(opts: &ClusterOptions) -> Result<ClusterReport, Error> {
    let version = opts.version.as_str();
    if opts.nodes < 2 {
        return Err(Error::Provision("a cluster needs 2 or more nodes".into()));
    }
    let dir = cluster_dir(version);
    let prev = read_state(version)?;
    if let Some(st) = &prev
        && !opts.fresh
        && st.nodes.len() == opts.nodes
        && st.zk_embedded == opts.embedded_zk
        && st.nodes.iter().all(ClusterNode::alive)
        && Cluster::new(st.clone())?.connected_count().await == opts.nodes
    {
        progress(format!("NiFi cluster {version} already up"));
        return Ok(ClusterReport {
            state: st.clone(),
            reused: true,
            startup: Duration::ZERO,
        });
    }
    // Whatever runs of a previous cluster goes first (a half-up cluster, or --fresh).
    if let Some(st) = &prev {
        stop_all(st, Duration::from_secs(20))?;
    }
    let reuse = prev.filter(|st| {
        !opts.fresh && st.nodes.len() == opts.nodes && st.zk_embedded == opts.embedded_zk
    });
    let mut state = match reuse {
        Some(mut st) => {
            progress(format!(
                "restarting the NiFi cluster {version} in {} (flow, queues and ports kept; --fresh starts over)",
                dir.display()
            ));
            for n in &mut st.nodes {
                n.pid = None;
                let logs = n.home.join("logs");
                let _ = fs::rename(
                    logs.join("nifi-stdout.log"),
                    logs.join("nifi-stdout.previous.log"),
                );
                provision::wait_ports_free(
                    &[n.web_port, n.raw_port, n.protocol_port, n.load_balance_port],
                    Duration::from_secs(10),
                )?;
            }
            st.zk_pid = None;
            st
        }
        None => {
            let _ = provision::java_for(version)?;
            let dist = provision::fetch(version)?;
            let n = opts.nodes;
            let free = provision::free_ports(5 * n + 1)?;
            let zk_port = free[5 * n];
            let mut nodes = Vec::with_capacity(n);
            for i in 0..n {
                let home = dir.join(format!("node{}", i + 1));
                let home = provision::assemble_into(&home, &dist)?;
                let p = &free[5 * i..5 * i + 5];
                let node = ClusterNode {
                    number: i + 1,
                    url: format!("http://127.0.0.1:{}/nifi", p[0]),
                    web_port: p[0],
                    raw_port: p[1],
                    protocol_port: p[2],
                    load_balance_port: p[3],
                    management_port: p[4],
                    home,
                    pid: None,
                };
                // Flows of an earlier cluster would fight the election.
                for f in ["conf/flow.xml.gz", "conf/flow.json.gz"] {
                    let _ = fs::remove_file(node.home.join(f));
                }
                configure_node(&node, version, n, zk_port, opts.embedded_zk && i == 0)?;
                nodes.push(node);
            }
            let zk_dir = dir.join("zookeeper");
            let _ = fs::remove_dir_all(&zk_dir);
            fs::create_dir_all(&zk_dir).map_err(|e| Error::io("creating the ZooKeeper dir", e))?;
            ClusterState {
                version: version.into(),
                zk_port,
                zk_pid: None,
                zk_dir,
                zk_embedded: opts.embedded_zk,
                nodes,
            }
        }
    };
    if !state.zk_embedded {
        state.zk_pid = Some(start_zookeeper(&state.zk_dir, state.zk_port)?);
    }
    write_state(&state)?;
    let t = Instant::now();
    for i in 0..state.nodes.len() {
        let node = &state.nodes[i];
        progress(format!(
            "starting node {} (web {}, RAW {}, protocol {}, load balance {}), log {}",
            node.number,
            node.web_port,
            node.raw_port,
            node.protocol_port,
            node.load_balance_port,
            node.home.join("logs/nifi-app.log").display()
        ));
        let pid = provision::start(&node.home, version, node.ports(), &opts.heap)?;
        state.nodes[i].pid = Some(pid);
        write_state(&state)?;
    }
    let cluster = Cluster::new(state.clone())?;
    if let Err(e) = cluster.wait_connected(opts.nodes, opts.timeout).await {
        let logs: String = state
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "--- node {}:\n{}\n",
                    n.number,
                    provision::log_tail(&n.home, 15)
                )
            })
            .collect();
        return Err(Error::Provision(format!(
            "{e}\n{logs}(the JVMs are left running: `cargo xtask nifi down --cluster` stops them)"
        )));
    }
    let startup = t.elapsed();
    Ok(ClusterReport {
        state,
        reused: false,
        startup,
    })
}

/// SIGTERMs every node and ZooKeeper at once, SIGKILLs what is left after `grace`.
fn stop_all(state: &ClusterState, grace: Duration) -> Result<(), Error> {
    let nifi: Vec<u32> = state
        .nodes
        .iter()
        .filter_map(|n| n.pid)
        .filter(|p| provision::is_nifi_process(*p))
        .collect();
    let zk: Vec<u32> = state
        .zk_pid
        .filter(|p| is_zookeeper_process(*p))
        .into_iter()
        .collect();
    let t = Instant::now();
    for p in &nifi {
        provision::signal(*p, "-TERM");
    }
    while t.elapsed() < grace && nifi.iter().any(|p| provision::process_running(*p)) {
        std::thread::sleep(Duration::from_millis(200));
    }
    for p in nifi.iter().filter(|p| provision::process_running(**p)) {
        progress(format!("node PID {p} still alive after {grace:?}: SIGKILL"));
        provision::signal(*p, "-KILL");
    }
    // ZooKeeper last: nodes shutting down still talk to it.
    for p in zk {
        provision::stop_running(p, Duration::from_secs(10))?;
    }
    std::thread::sleep(Duration::from_millis(300));
    if let Some(p) = nifi.iter().find(|p| provision::process_running(**p)) {
        return Err(Error::Provision(format!("node PID {p} survived SIGKILL")));
    }
    if !nifi.is_empty() {
        progress(format!(
            "stopped {} node(s) in {:.1} s",
            nifi.len(),
            t.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

fn is_zookeeper_process(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("ZooKeeperServerMain"))
        && provision::process_running(pid)
}

/// Stops every node and ZooKeeper of the cluster of `version` (TERM, KILL after 30 s); the homes
/// and `cluster.json` stay (PIDs cleared), so the next [`up`] restarts the same cluster.
pub fn down(version: &str) -> Result<Option<ClusterState>, Error> {
    let Some(mut st) = read_state(version)? else {
        progress(format!(
            "no cluster state at {}: nothing to stop",
            state_file(version).display()
        ));
        return Ok(None);
    };
    stop_all(&st, Duration::from_secs(30))?;
    for n in &mut st.nodes {
        n.pid = None;
    }
    st.zk_pid = None;
    write_state(&st)?;
    Ok(Some(st))
}

/// A handle on a running cluster: its nodes, REST that fails over to any connected node, per-node
/// and cluster-wide queue counts, and node stop (SIGKILL) / start.
#[derive(Debug, Clone)]
pub struct Cluster {
    state: ClusterState,
    http: reqwest::Client,
}

/// How long one REST call to one node may take before the next node is tried.
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

impl Cluster {
    /// A handle on the cluster described by `state`.
    pub fn new(state: ClusterState) -> Result<Self, Error> {
        Ok(Self {
            state,
            http: provision::rest_client(None)?,
        })
    }

    /// The cluster of `version` recorded by `cargo xtask nifi up --cluster N`
    /// ([`Error::NotAvailable`] when there is none, or none of its nodes runs).
    pub fn from_state(version: &str) -> Result<Self, Error> {
        match read_state(version)? {
            Some(st) if st.nodes.iter().any(ClusterNode::alive) => Self::new(st),
            Some(_) => Err(Error::NotAvailable(format!(
                "the NiFi cluster {version} in {} is stopped (run `cargo xtask nifi up --cluster 2`)",
                cluster_dir(version).display()
            ))),
            None => Err(Error::NotAvailable(format!(
                "no NiFi cluster: {} does not exist (run `cargo xtask nifi up --cluster 2`)",
                state_file(version).display()
            ))),
        }
    }

    /// The recorded state (nodes with ports and PIDs).
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The nodes, in order.
    pub fn nodes(&self) -> &[ClusterNode] {
        &self.state.nodes
    }

    /// Node `k` (1-based).
    pub fn node(&self, k: usize) -> Result<&ClusterNode, Error> {
        self.state.nodes.get(k.wrapping_sub(1)).ok_or_else(|| {
            Error::Provision(format!("no node {k} (1..={})", self.state.nodes.len()))
        })
    }

    /// The node whose web port is `port`.
    pub fn node_by_web_port(&self, port: u16) -> Option<&ClusterNode> {
        self.state.nodes.iter().find(|n| n.web_port == port)
    }

    /// The node whose RAW S2S port is `port`.
    pub fn node_by_raw_port(&self, port: u16) -> Option<&ClusterNode> {
        self.state.nodes.iter().find(|n| n.raw_port == port)
    }

    async fn get_from(&self, node: &ClusterNode, path: &str) -> Result<Value, String> {
        let url = format!("{}-api{path}", node.url);
        let resp = self
            .http
            .get(&url)
            .timeout(NODE_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("node {}: {e}", node.number))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!(
                "node {}: HTTP {status}: {}",
                node.number,
                text.chars().take(200).collect::<String>()
            ));
        }
        serde_json::from_str(&text).map_err(|e| format!("node {}: {e}", node.number))
    }

    /// GETs `/nifi-api{path}` from the first node (in order, skipping stopped ones) that answers
    /// 2xx; the error lists every node's failure.
    pub async fn api_get(&self, path: &str) -> Result<Value, Error> {
        let mut errors = Vec::new();
        for node in self.state.nodes.iter().filter(|n| n.alive()) {
            match self.get_from(node, path).await {
                Ok(v) => return Ok(v),
                Err(e) => errors.push(e),
            }
        }
        Err(Error::Unexpected(format!(
            "GET {path}: no node answered ({})",
            errors.join("; ")
        )))
    }

    /// Every node's `(web port, status)` as the cluster reports it (`/controller/cluster`).
    pub async fn node_statuses(&self) -> Result<Vec<(u16, String)>, Error> {
        let v = self.api_get("/controller/cluster").await?;
        Ok(v["cluster"]["nodes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|n| {
                        (
                            n["apiPort"].as_u64().unwrap_or(0) as u16,
                            n["status"].as_str().unwrap_or("?").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// How many nodes the cluster reports CONNECTED (0 when no node answers).
    pub async fn connected_count(&self) -> usize {
        self.node_statuses()
            .await
            .map(|v| v.iter().filter(|(_, s)| s == "CONNECTED").count())
            .unwrap_or(0)
    }

    /// Waits until `/controller/cluster` (of any node) reports at least `n` nodes CONNECTED, and
    /// every node that runs answers `/controller/cluster` itself (a node not yet connected
    /// answers 404).
    pub async fn wait_connected(&self, n: usize, timeout: Duration) -> Result<Duration, Error> {
        let t = Instant::now();
        let mut last = String::from("no answer yet");
        let mut reported = Instant::now();
        loop {
            if let Ok(statuses) = self.node_statuses().await {
                let connected = statuses.iter().filter(|(_, s)| s == "CONNECTED").count();
                last = format!("{statuses:?}");
                if connected >= n {
                    let mut all = true;
                    for node in self.state.nodes.iter().filter(|x| x.alive()) {
                        all &= self.get_from(node, "/controller/cluster").await.is_ok();
                    }
                    if all {
                        return Ok(t.elapsed());
                    }
                }
            }
            for node in &self.state.nodes {
                if node.pid.is_some() && !node.alive() {
                    return Err(Error::Provision(format!(
                        "node {} (PID {:?}) exited:\n{}",
                        node.number,
                        node.pid,
                        provision::log_tail(&node.home, 30)
                    )));
                }
            }
            if t.elapsed() > timeout {
                return Err(Error::Timeout {
                    what: format!("{n} cluster nodes CONNECTED (last seen: {last})"),
                    waited: timeout,
                });
            }
            if reported.elapsed() >= Duration::from_secs(10) {
                reported = Instant::now();
                progress(format!(
                    "  waiting for {n} CONNECTED nodes ({:.0} s): {last}",
                    t.elapsed().as_secs_f64()
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A REST handle ([`Nifi`]) on the first running node that reports itself part of the
    /// cluster; changes to the flow made through it are replicated to every connected node.
    pub async fn nifi(&self) -> Result<Nifi, Error> {
        let mut errors = Vec::new();
        for node in self.state.nodes.iter().filter(|n| n.alive()) {
            if let Err(e) = self.get_from(node, "/controller/cluster").await {
                errors.push(e);
                continue;
            }
            match Nifi::connect(&node.url, Some(node.raw_port)).await {
                Ok(n) => return Ok(n),
                Err(e) => errors.push(format!("node {}: {e}", node.number)),
            }
        }
        Err(Error::Unexpected(format!(
            "no connected cluster node ({})",
            errors.join("; ")
        )))
    }

    /// FlowFiles queued in connection `connection_id` per node, as `(node number, count)`, from
    /// NiFi's node-wise status (asked of any connected node). A node the cluster no longer lists
    /// is missing; a listed but unreachable one makes NiFi answer 500 (the call fails).
    pub async fn queued_per_node(&self, connection_id: &str) -> Result<Vec<(usize, u64)>, Error> {
        let v = self
            .api_get(&format!(
                "/flow/connections/{connection_id}/status?nodewise=true"
            ))
            .await?;
        let snaps = v["connectionStatus"]["nodeSnapshots"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        for s in snaps {
            let port = s["apiPort"].as_u64().unwrap_or(0) as u16;
            let node = self.node_by_web_port(port).ok_or_else(|| {
                Error::Unexpected(format!("node-wise status names unknown node port {port}"))
            })?;
            let q = s["statusSnapshot"]["flowFilesQueued"].as_u64().unwrap_or(0);
            out.push((node.number, q));
        }
        out.sort_unstable();
        Ok(out)
    }

    /// FlowFiles queued in connection `connection_id` across the cluster.
    pub async fn queued_total(&self, connection_id: &str) -> Result<u64, Error> {
        let v = self
            .api_get(&format!("/flow/connections/{connection_id}/status"))
            .await?;
        v["connectionStatus"]["aggregateSnapshot"]["flowFilesQueued"]
            .as_u64()
            .ok_or_else(|| Error::Unexpected(format!("no flowFilesQueued in {v}")))
    }

    /// SIGKILLs node `k`'s JVM (by its recorded PID, after checking it is a NiFi) and records it
    /// stopped. The cluster marks it DISCONNECTED only after missing heartbeats (~24 s).
    pub fn kill_node(&mut self, k: usize) -> Result<(), Error> {
        let node = self.node(k)?.clone();
        if let Some(pid) = node.pid.filter(|p| provision::is_nifi_process(*p)) {
            provision::signal(pid, "-KILL");
            let t = Instant::now();
            while provision::process_running(pid) {
                if t.elapsed() > Duration::from_secs(10) {
                    return Err(Error::Provision(format!(
                        "node {k} (PID {pid}) survived SIGKILL"
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.state.nodes[k - 1].pid = None;
        write_state(&self.state)
    }

    /// Starts node `k` again (same home and ports) and waits until the cluster reports every
    /// running node CONNECTED; returns how long that took.
    pub async fn start_node(&mut self, k: usize, timeout: Duration) -> Result<Duration, Error> {
        let node = self.node(k)?.clone();
        if node.alive() {
            return Err(Error::Provision(format!(
                "node {k} already runs (PID {:?})",
                node.pid
            )));
        }
        if !self.state.zk_embedded && !zookeeper_serving(self.state.zk_port) {
            self.state.zk_pid = Some(start_zookeeper(&self.state.zk_dir, self.state.zk_port)?);
        }
        provision::wait_ports_free(
            &[
                node.web_port,
                node.raw_port,
                node.protocol_port,
                node.load_balance_port,
            ],
            Duration::from_secs(10),
        )?;
        let logs = node.home.join("logs");
        let _ = fs::rename(
            logs.join("nifi-stdout.log"),
            logs.join("nifi-stdout.previous.log"),
        );
        let t = Instant::now();
        let pid = provision::start(&node.home, &self.state.version, node.ports(), "512m")?;
        self.state.nodes[k - 1].pid = Some(pid);
        write_state(&self.state)?;
        let running = self.state.nodes.iter().filter(|n| n.alive()).count();
        self.wait_connected(running, timeout).await?;
        Ok(t.elapsed())
    }
}
