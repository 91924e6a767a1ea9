//! `cargo xtask nifi …`: provisioning a real NiFi (owned by the harness work).

/// NiFi subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum NifiCmd {
    /// Download, assemble and start NiFi.
    Up,
}

pub(crate) fn run(cmd: NifiCmd) -> anyhow::Result<()> {
    match cmd {
        NifiCmd::Up => anyhow::bail!("not implemented yet"),
    }
}
