//! `cargo xtask soak`: the chaos soak (bridge/tests/soak.rs) on its own NiFi.
//!
//! The soak SIGKILLs NiFi's JVM, so it never touches the shared test NiFi: it uses the crash
//! test's home (`provision::restart_test_dir()`), started (or restarted in place) by the test
//! itself and stopped here afterwards. `cargo xtask test` runs a short variant.

use anyhow::Result;

use crate::prereqs;
use crate::test::{cargo, run};

/// Options for `cargo xtask soak`.
#[derive(clap::Args, Debug)]
pub(crate) struct SoakArgs {
    /// How long the chaos loop runs, in minutes.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// The duration in seconds instead (overrides `--minutes`).
    #[arg(long)]
    seconds: Option<u64>,
    /// Leave the soak's NiFi running afterwards.
    #[arg(long)]
    keep_nifi: bool,
}

/// Stops the soak's NiFi on every exit path (unless asked to keep it).
struct DownOnDrop(bool);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        if self.0 {
            let dir = nifi_testkit::provision::restart_test_dir();
            if let Err(e) = nifi_testkit::provision::down_in(
                &dir,
                Some(nifi_testkit::provision::DEFAULT_VERSION),
            ) {
                eprintln!("warning: stopping the soak NiFi in {}: {e}", dir.display());
            }
        }
    }
}

pub(crate) fn soak(args: SoakArgs) -> Result<()> {
    prereqs::ensure_rust()?;
    prereqs::ensure_nifi(&[nifi_testkit::provision::DEFAULT_VERSION])?;
    let _down = DownOnDrop(!args.keep_nifi);
    run_soak(args.seconds.unwrap_or(args.minutes * 60))
}

/// Runs the soak test for `secs` seconds of chaos (plus NiFi start-up and the final drain); its
/// report (records, faults by kind, lost, duplicates, worst gaps, bridge RSS) goes to stderr.
pub(crate) fn run_soak(secs: u64) -> Result<()> {
    eprintln!(
        "\n==> chaos soak: {secs} s of faults (bridge and NiFi SIGKILLs, port stops, back pressure); \
         one line per fault, then the report"
    );
    run(cargo()
        .args([
            "test",
            "--manifest-path",
            "bridge/Cargo.toml",
            "--test",
            "soak",
            "--",
            "--nocapture",
        ])
        .env("S2S_SOAK_SECS", secs.to_string()))
}
