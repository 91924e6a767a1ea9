//! `cargo xtask nifi flow …` and `cargo xtask nifi nar …`: deploy a user's flow definition into
//! the shared NiFi (thin CLI over `nifi_testkit::flow`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use nifi_testkit::Nifi;
use nifi_testkit::flow::FlowDefinition;

/// `cargo xtask nifi flow …`
#[derive(clap::Subcommand)]
pub(crate) enum FlowCmd {
    /// Deploy a flow definition exported from NiFi ("Download flow definition") as a process group
    /// `NAME-<random>` under the root group, with root ports `NAME-<random>-<port>` for each of its
    /// input/output ports (reachable over Site-to-Site), and start it (unless --stopped). Prints
    /// the group name and the S2S port names.
    Deploy {
        /// The flow definition JSON.
        file: PathBuf,
        /// Override a parameter of the definition's parameter contexts (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Prefix of the process group's name (default: the flow's name).
        #[arg(long)]
        name: Option<String>,
        /// Deploy only; do not enable services or start the flow.
        #[arg(long)]
        stopped: bool,
    },
    /// Start a deployed flow (enable its services, check its processors are valid, start all).
    Start {
        /// The process group name printed by `deploy`.
        name: String,
    },
    /// Stop a deployed flow (its root ports keep accepting FlowFiles).
    Stop {
        /// The process group name printed by `deploy`.
        name: String,
    },
    /// Print the flow's bulletins (exit 1 if any is an ERROR).
    Bulletins {
        /// The process group name printed by `deploy`.
        name: String,
    },
    /// Print the provenance events of a FlowFile (by its uuid) as JSON lines.
    Provenance {
        /// The process group name printed by `deploy`.
        name: String,
        /// The FlowFile's uuid.
        uuid: String,
    },
    /// Stop and delete a deployed flow: its root ports, queues, group and parameter contexts.
    Delete {
        /// The process group name printed by `deploy`.
        name: String,
    },
}

pub(crate) async fn run(nifi: Nifi, cmd: FlowCmd) -> Result<()> {
    match cmd {
        FlowCmd::Deploy {
            file,
            params,
            name,
            stopped,
        } => {
            let mut def = FlowDefinition::from_file(&file)?;
            for p in &params {
                let Some((k, v)) = p.split_once('=') else {
                    bail!("--param {p:?}: expected NAME=VALUE");
                };
                def = def.with_parameter(k, v)?;
            }
            let prefix = name.unwrap_or_else(|| def.name().to_owned());
            let flow = nifi
                .deploy_flow(&def, &prefix)
                .await
                .with_context(|| format!("deploying {}", file.display()))?;
            if !stopped && let Err(e) = flow.start().await {
                eprintln!(
                    "[nifi] deployed as {:?} but not started: {e}; fix it in the UI, then \
                     `cargo xtask nifi flow start {}`",
                    flow.name(),
                    flow.name()
                );
                return Err(e.into());
            }
            println!("NIFI_FLOW={}", flow.name());
            for (inner, p) in flow.inputs() {
                println!("# input port {inner:?}: send to {:?}", p.name());
            }
            for (inner, p) in flow.outputs() {
                println!("# output port {inner:?}: receive from {:?}", p.name());
            }
            eprintln!(
                "[nifi] deployed {} as {:?} ({})",
                file.display(),
                flow.name(),
                if stopped { "stopped" } else { "running" }
            );
            Ok(())
        }
        FlowCmd::Start { name } => {
            nifi.deployed_flow(&name).await?.start().await?;
            eprintln!("[nifi] started {name:?}");
            Ok(())
        }
        FlowCmd::Stop { name } => {
            nifi.deployed_flow(&name).await?.stop().await?;
            eprintln!("[nifi] stopped {name:?}");
            Ok(())
        }
        FlowCmd::Bulletins { name } => {
            let flow = nifi.deployed_flow(&name).await?;
            let bulletins = flow.bulletins().await?;
            for b in &bulletins {
                println!("{} {}: {}", b.level, b.source_name, b.message);
            }
            if bulletins.iter().any(|b| b.level == "ERROR") {
                bail!("the flow {name:?} has ERROR bulletins");
            }
            Ok(())
        }
        FlowCmd::Provenance { name, uuid } => {
            let flow = nifi.deployed_flow(&name).await?;
            for e in flow.provenance(&uuid).await? {
                println!("{}", e.raw);
            }
            Ok(())
        }
        FlowCmd::Delete { name } => {
            nifi.deployed_flow(&name).await?.delete().await?;
            eprintln!("[nifi] deleted {name:?}");
            Ok(())
        }
    }
}

/// `cargo xtask nifi nar install COORDS…`
#[derive(clap::Subcommand)]
pub(crate) enum NarCmd {
    /// Install NARs by Maven coordinates (`group:artifact[:version]`, default version: NiFi's) into
    /// the shared NiFi's extensions/ and wait until NiFi loaded them.
    Install {
        /// Maven coordinates, e.g. org.apache.nifi:nifi-standard-nar.
        #[arg(required = true)]
        coords: Vec<String>,
    },
}

pub(crate) async fn run_nar(nifi: Nifi, cmd: NarCmd) -> Result<()> {
    match cmd {
        NarCmd::Install { coords } => {
            let refs: Vec<&str> = coords.iter().map(String::as_str).collect();
            nifi.install_nars(&refs).await?;
            eprintln!("[nifi] loaded: {}", coords.join(", "));
            Ok(())
        }
    }
}
