//! Project automation (the cargo-xtask pattern): `cargo xtask <command>`.

use clap::{Parser, Subcommand};

mod bench;
mod flow;
mod fuzz;
mod mirror;
mod nifi;
mod prereqs;
mod publish;
mod soak;
mod test;
mod wasm;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "nifi-s2s project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a real NiFi, the bridge and the demo page, and print where to look.
    Demo {
        /// Also a real PostgreSQL and the mirror flow (tests/flows/idb-mirror.json) behind the
        /// bridge's port (`cargo xtask mirror --demo`): the page shows the mirror's row count.
        #[arg(long)]
        mirror: bool,
    },
    /// Run everything CI runs (what `.ci/run` calls).
    Test(test::TestArgs),
    /// Provision and control a real NiFi for tests and demos.
    #[command(subcommand)]
    Nifi(nifi::NifiCmd),
    /// Benchmarks against same-run baselines; writes target/bench/report.md and .json.
    Bench(bench::BenchArgs),
    /// Run the cargo-fuzz targets of `fuzz/` (nightly; installed when missing), each for
    /// `--seconds`, and report executions per target (target/fuzz/report.md).
    Fuzz(fuzz::FuzzArgs),
    /// The chaos soak: records through two bridges while bridges, NiFi and the port fail.
    Soak(soak::SoakArgs),
    /// The browser → NiFi → PostgreSQL mirror end to end: two headless tabs, the mirror flow
    /// (tests/flows/idb-mirror.json) in the shared NiFi, a real PostgreSQL; the mirror must equal
    /// the browser's IndexedDB.
    Mirror(mirror::MirrorArgs),
    /// Build the wasm client package and demo.
    #[command(subcommand)]
    Wasm(wasm::WasmCmd),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Demo { mirror } => test::demo(mirror),
        Cmd::Test(args) => test::test(args),
        Cmd::Nifi(cmd) => nifi::run(cmd),
        Cmd::Wasm(cmd) => wasm::run(cmd),
        Cmd::Bench(args) => bench::bench(args),
        Cmd::Fuzz(args) => fuzz::fuzz(args),
        Cmd::Soak(args) => soak::soak(args),
        Cmd::Mirror(args) => prereqs::ensure_postgres().and_then(|()| mirror::mirror(args)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain, not anyhow's Debug: CI sets RUST_BACKTRACE=1, and a 40-frame
            // backtrace of xtask itself buried the one line saying which step failed.
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
