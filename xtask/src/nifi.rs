//! `cargo xtask nifi …`: provision and drive a real NiFi (thin CLI over `nifi_testkit`).

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use nifi_testkit::cluster::{self, Cluster, ClusterOptions};
use nifi_testkit::provision::{self, UpOptions};
use nifi_testkit::{Nifi, PortKind};

/// NiFi subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum NifiCmd {
    /// Start NiFi in the background: reuse it if already up; restart its existing home as it was
    /// (flow, queued FlowFiles, ports) if it died or was stopped; else download (cached), assemble
    /// and start a new one.
    ///
    /// Writes target/nifi/nifi.env (NIFI_URL, NIFI_RAW_PORT, NIFI_PID, NIFI_VERSION, NIFI_HOME) and a
    /// nifi.json twin. Cache: $NIFI_S2S_CACHE or ~/.cache/nifi-s2s. Two `up` of one home at once:
    /// the second waits for the first (a lock file in the home) and reuses its NiFi.
    Up {
        /// NiFi version (1.x runs on the default Java, 2.x on Temurin 25).
        #[arg(long, default_value = provision::DEFAULT_VERSION)]
        version: String,
        /// HTTP port of the REST API and HTTP S2S (default: a free one).
        #[arg(long)]
        web_port: Option<u16>,
        /// RAW S2S port (default: a free one).
        #[arg(long)]
        raw_port: Option<u16>,
        /// Give up waiting for NiFi after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Do not point target/nifi/nifi.env at this instance (a second, side instance).
        #[arg(long)]
        no_shared: bool,
        /// Start a secured NiFi: HTTPS web port, RAW S2S over TLS, certificate users and policies,
        /// a freshly generated test PKI. Home and state in `target/nifi/<V>-secure/` (never shared);
        /// the state file adds NIFI_TLS_* (CA, client cert/key/PKCS#12, DNs, wrong-DN and
        /// rogue-CA material).
        #[arg(long)]
        secure: bool,
        /// Start over: stop this instance if it runs, wipe its home (flow, queues, repositories,
        /// logs, ports, test PKI; the unpacked NARs stay) and assemble a new one.
        #[arg(long)]
        fresh: bool,
        /// Start a cluster of N nodes (N >= 2) of --version plus a standalone ZooKeeper, in
        /// `target/nifi/cluster-<V>/` (never shared): own web/RAW/protocol/load-balance ports per
        /// node on loopback, waits until all N report CONNECTED; state in `cluster.json` and
        /// `cluster.env` (NIFI_CLUSTER_URLS, …). --web-port/--raw-port/--no-shared/--secure do not apply.
        #[arg(long, value_name = "N")]
        cluster: Option<usize>,
        /// With --cluster: ZooKeeper embedded in node 1 instead of a standalone JVM (killing
        /// node 1 takes ZooKeeper down; `cluster.env` says NIFI_CLUSTER_ZK_MODE=embedded). Give
        /// it its own folder so it does not replace the standard cluster:
        /// `NIFI_S2S_NIFI_DIR=target/nifi/zk-embedded cargo xtask nifi up --cluster 2 --embedded-zk`.
        #[arg(long, requires = "cluster")]
        embedded_zk: bool,
    },
    /// Stop NiFi by PID (TERM, then KILL after 30 s) and remove its state file. The home stays:
    /// the next `up` restarts it as it was (`up --fresh` wipes it).
    Down {
        /// Stop this version's instance instead of the shared one.
        #[arg(long)]
        version: Option<String>,
        /// Stop the secured instance of --version (default version if not given).
        #[arg(long)]
        secure: bool,
        /// Stop the cluster of --version (default version if not given): every node and its
        /// ZooKeeper. Homes and ports stay for the next `up --cluster N`.
        #[arg(long)]
        cluster: bool,
    },
    /// Take a node of the cluster away (SIGKILL) or bring it back.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Write a test PKI (CA, NiFi keystore/truststore, client PEM + PKCS#12) for a secured NiFi,
    /// e.g. the `tls` profile of docker-compose.yml. Test material only.
    Certs {
        /// Output directory (default: target/nifi-certs of the workspace, git-ignored; the `tls`
        /// profile of docker-compose.yml mounts it).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Extra DNS names/IPs for the server certificate (127.0.0.1 and localhost are always in).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Password of the keystore, truststore and client.p12.
        #[arg(long, default_value = "nifi-s2s-test-pass")]
        password: String,
    },
    /// Print the state of the shared NiFi (exit code 1 if it is not answering).
    Status,
    /// Create and start root ports on the shared NiFi.
    #[command(subcommand)]
    Port(PortCmd),
    /// Print the FlowFiles queued behind a port as JSON lines (attributes + base64 content); NiFi
    /// lists at most 100, the count of those not listed goes to stderr.
    Queue {
        /// Exact port name.
        name: String,
    },
    /// Deploy and drive a flow definition exported from NiFi (see `nifi_testkit::flow`).
    #[command(subcommand)]
    Flow(crate::flow::FlowCmd),
    /// Install NARs by Maven coordinates into the shared NiFi.
    #[command(subcommand)]
    Nar(crate::flow::NarCmd),
    /// Drop every FlowFile queued behind a port.
    Drain {
        /// Exact port name.
        name: String,
    },
}

/// `cargo xtask nifi node …` (the cluster started by `up --cluster N`).
#[derive(clap::Subcommand)]
pub(crate) enum NodeCmd {
    /// SIGKILL node K's JVM (by its recorded PID).
    Stop {
        /// Node number (1-based).
        k: usize,
        /// Cluster version.
        #[arg(long, default_value = provision::DEFAULT_VERSION)]
        version: String,
    },
    /// Start node K again (same home and ports) and wait until it is CONNECTED.
    Start {
        /// Node number (1-based).
        k: usize,
        /// Cluster version.
        #[arg(long, default_value = provision::DEFAULT_VERSION)]
        version: String,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
}

/// `cargo xtask nifi port …`
#[derive(clap::Subcommand)]
pub(crate) enum PortCmd {
    /// Create a root input port NAME → funnel (FlowFiles stay queued), or with --output an input port
    /// NAME-in → output port NAME (push into NAME-in, pull from NAME); started and ready for S2S.
    Create {
        /// Exact port name.
        name: String,
        /// Create an output port (fed by NAME-in) instead of an input port.
        #[arg(long)]
        output: bool,
    },
    /// Stop and delete a root port with its queue, its connection and its funnel (if any).
    Delete {
        /// Exact port name.
        name: String,
    },
}

pub(crate) fn run(cmd: NifiCmd) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(run_async(cmd))
}

async fn shared() -> Result<Nifi> {
    Nifi::shared()
        .await
        .context("no NiFi: run `cargo xtask nifi up` (or set NIFI_URL)")
}

async fn run_async(cmd: NifiCmd) -> Result<()> {
    match cmd {
        NifiCmd::Up {
            version,
            web_port,
            raw_port,
            timeout,
            no_shared,
            secure,
            fresh,
            cluster: Some(n),
            embedded_zk,
        } => {
            let opts = ClusterOptions {
                version,
                nodes: n,
                timeout: Duration::from_secs(timeout),
                fresh,
                embedded_zk,
                ..ClusterOptions::default()
            };
            if web_port.is_some() || raw_port.is_some() || no_shared || secure {
                bail!("--cluster picks its own ports and is never shared or secured");
            }
            let report = cluster::up(&opts).await?;
            let st = &report.state;
            if !report.reused {
                let rss: Vec<String> = st
                    .nodes
                    .iter()
                    .map(|n| {
                        n.pid
                            .and_then(provision::rss_kib)
                            .map_or_else(|| "?".into(), |k| format!("{} MiB", k / 1024))
                    })
                    .collect();
                let zk = if st.zk_embedded {
                    "embedded in node 1".to_owned()
                } else {
                    st.zk_pid
                        .and_then(provision::rss_kib)
                        .map_or_else(|| "?".into(), |k| format!("{} MiB", k / 1024))
                };
                eprintln!(
                    "[nifi] cluster of {} CONNECTED {:.1} s after start; RSS per node {}; ZooKeeper {zk}",
                    st.nodes.len(),
                    report.startup.as_secs_f64(),
                    rss.join(", ")
                );
            }
            for node in &st.nodes {
                eprintln!(
                    "[nifi] node {}: {} (RAW {}, PID {})",
                    node.number,
                    node.url,
                    node.raw_port,
                    node.pid.unwrap_or(0)
                );
            }
            eprintln!(
                "[nifi] state: {} (source it)",
                cluster::cluster_dir(&st.version)
                    .join("cluster.env")
                    .display()
            );
            print!("{}", cluster::state_env(st));
            Ok(())
        }
        NifiCmd::Up {
            version,
            web_port,
            raw_port,
            timeout,
            no_shared,
            secure,
            fresh,
            cluster: None,
            embedded_zk: _,
        } => {
            let opts = UpOptions {
                version,
                web_port,
                raw_port,
                start_timeout: Duration::from_secs(timeout),
                make_shared: !no_shared && !secure,
                secure,
                fresh,
                ..UpOptions::default()
            };
            let report = provision::up(&opts).await?;
            let inst = &report.instance;
            if report.restarted {
                eprintln!(
                    "[nifi] restarted its existing home in {:.1} s (flow, queues and ports kept)",
                    report.startup.as_secs_f64()
                );
            } else if !report.reused {
                let rss = inst
                    .pid
                    .and_then(provision::rss_kib)
                    .map_or_else(|| "?".into(), |k| format!("{} MiB", k / 1024));
                eprintln!(
                    "[nifi] timings: download {:.1} s, assembly {:.1} s, startup {:.1} s; RSS {rss}",
                    report.download.as_secs_f64(),
                    report.assembly.as_secs_f64(),
                    report.startup.as_secs_f64()
                );
            }
            let state = if opts.secure {
                provision::secure_state_file(&inst.version)
            } else if opts.make_shared {
                provision::state_file()
            } else {
                provision::version_state_file(&inst.version)
            };
            eprintln!("[nifi] state: {} (source it)", state.display());
            print!("{}", inst.to_env());
            Ok(())
        }
        NifiCmd::Down {
            version,
            secure: _,
            cluster: true,
        } => {
            let v = version.as_deref().unwrap_or(provision::DEFAULT_VERSION);
            cluster::down(v)?;
            Ok(())
        }
        NifiCmd::Node(NodeCmd::Stop { k, version }) => {
            let mut c = Cluster::from_state(&version)?;
            let pid = c.node(k)?.pid;
            c.kill_node(k)?;
            eprintln!("[nifi] node {k} (PID {pid:?}) killed (SIGKILL)");
            Ok(())
        }
        NifiCmd::Node(NodeCmd::Start {
            k,
            version,
            timeout,
        }) => {
            let st = cluster::read_state(&version)?
                .context("no cluster state: run `cargo xtask nifi up --cluster 2`")?;
            let mut c = Cluster::new(st)?;
            let took = c.start_node(k, Duration::from_secs(timeout)).await?;
            let rss = c
                .node(k)?
                .pid
                .and_then(provision::rss_kib)
                .map_or_else(|| "?".into(), |kib| format!("{} MiB", kib / 1024));
            eprintln!(
                "[nifi] node {k} CONNECTED {:.1} s after start (RSS {rss}): {}",
                took.as_secs_f64(),
                c.node(k)?.url
            );
            Ok(())
        }
        NifiCmd::Down {
            version,
            secure,
            cluster: false,
        } => {
            if secure {
                let v = version.as_deref().unwrap_or(provision::DEFAULT_VERSION);
                provision::down_secure(v)?;
            } else {
                provision::down(version.as_deref())?;
            }
            Ok(())
        }
        NifiCmd::Certs {
            out,
            sans,
            password,
        } => {
            let out = out.unwrap_or_else(|| provision::workspace_root().join("target/nifi-certs"));
            let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
            let t = nifi_testkit::certs::generate(&out, &sans, &password)?;
            eprintln!(
                "[nifi] test PKI in {} (server SANs 127.0.0.1, localhost{}); NiFi user (initial admin): {:?}",
                out.display(),
                sans.iter().map(|s| format!(", {s}")).collect::<String>(),
                t.client_dn
            );
            // What a client of that NiFi needs, sourceable.
            println!("NIFI_TLS_CA={}", t.ca.display());
            println!("NIFI_TLS_CLIENT_CERT={}", t.client_cert.display());
            println!("NIFI_TLS_CLIENT_KEY={}", t.client_key.display());
            println!("NIFI_TLS_CLIENT_P12={}", t.client_p12.display());
            Ok(())
        }
        NifiCmd::Status => {
            let path = provision::state_file();
            let inst = provision::read_state(&path)?;
            match &inst {
                Some(i) => print!("{}", i.to_env()),
                None => println!("# no state file at {}", path.display()),
            }
            match shared().await {
                Ok(nifi) => {
                    let pid = inst.as_ref().and_then(|i| i.pid);
                    let rss = pid
                        .and_then(provision::rss_kib)
                        .map_or_else(String::new, |k| format!(", RSS {} MiB", k / 1024));
                    let raw = nifi
                        .raw_port()
                        .map_or_else(|| "RAW S2S off".to_owned(), |p| format!("RAW port {p}"));
                    println!(
                        "# answering: NiFi {} at {} ({raw}{rss})",
                        nifi.version(),
                        nifi.url()
                    );
                    Ok(())
                }
                Err(e) => bail!("NiFi is not answering: {e:#}"),
            }
        }
        NifiCmd::Port(PortCmd::Create { name, output }) => {
            let nifi = shared().await?;
            if output {
                let pair = nifi.create_port_pair(&format!("{name}-in"), &name).await?;
                println!(
                    "created input port {:?} ({}) → output port {:?} ({}), both running",
                    pair.input.name(),
                    pair.input.id(),
                    pair.output.name(),
                    pair.output.id()
                );
            } else {
                let port = nifi.create_input_port(&name).await?;
                println!(
                    "created input port {:?} ({}) → funnel, running",
                    port.name(),
                    port.id()
                );
            }
            Ok(())
        }
        NifiCmd::Port(PortCmd::Delete { name }) => {
            let nifi = shared().await?;
            let port = nifi.port_by_name(&name).await?;
            port.delete().await?;
            println!("deleted port {name:?} ({})", port.id());
            Ok(())
        }
        NifiCmd::Queue { name } => {
            let nifi = shared().await?;
            let port = nifi.port_by_name(&name).await?;
            let total = port.queued_count().await?;
            let flowfiles = port.queued_flowfiles().await?;
            let mut out = std::io::stdout().lock();
            for ff in &flowfiles {
                let line = serde_json::json!({
                    "attributes": ff.attributes,
                    "size": ff.content.len(),
                    "content": base64::engine::general_purpose::STANDARD.encode(&ff.content),
                });
                writeln!(out, "{line}")?;
            }
            let side = match port.kind() {
                PortKind::Input => "behind input port",
                PortKind::Output => "in front of output port",
            };
            let listed = flowfiles.len() as u64;
            if listed < total {
                eprintln!(
                    "[nifi] {listed} of {total} FlowFiles queued {side} {name:?} listed: NiFi lists \
                     at most {}, {} NOT listed (drain or receive them, then list again)",
                    nifi_testkit::flow::LISTING_LIMIT,
                    total - listed
                );
            } else {
                eprintln!("[nifi] all {listed} FlowFiles queued {side} {name:?} listed");
            }
            Ok(())
        }
        NifiCmd::Flow(cmd) => crate::flow::run(shared().await?, cmd).await,
        NifiCmd::Nar(cmd) => crate::flow::run_nar(shared().await?, cmd).await,
        NifiCmd::Drain { name } => {
            let nifi = shared().await?;
            let port = nifi.port_by_name(&name).await?;
            let before = port.queued_count().await?;
            port.drain().await?;
            eprintln!("[nifi] dropped {before} FlowFiles queued at {name:?}");
            Ok(())
        }
    }
}
