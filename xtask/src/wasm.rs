//! `cargo xtask wasm …`: building the wasm client package (owned by the wasm-client work).

/// Wasm subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum WasmCmd {
    /// Build the JS package with wasm-bindgen `--target web`.
    Build,
}

pub(crate) fn run(cmd: WasmCmd) -> anyhow::Result<()> {
    match cmd {
        WasmCmd::Build => anyhow::bail!("not implemented yet"),
    }
}
