//! Idempotent installation of the wasm toolchain (the recipe of `docs/toolchain.md`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::prereqs::{WASM_TARGET as TARGET, apt_install, wasm_target_installed};
use crate::test::{run, workspace_root};
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Everything the wasm build and browser tests need, with what is missing.
struct Status {
    target: bool,
    bindgen_version: String,
    bindgen_installed: Option<String>,
    runner_installed: Option<String>,
    chromium: bool,
    node: Option<String>,
    node_modules: bool,
}

impl Status {
    fn probe() -> Result<Self> {
        let bindgen_version = locked_version("wasm-bindgen")?;
        Ok(Self {
            target: wasm_target_installed(),
            bindgen_installed: tool_version("wasm-bindgen"),
            runner_installed: tool_version("wasm-bindgen-test-runner"),
            bindgen_version,
            chromium: PathBuf::from(CHROMIUM).exists() && PathBuf::from(CHROMEDRIVER).exists(),
            node: output("node", &["--version"]),
            // Every package of e2e/package.json (playwright-core; idb and Dexie for the
            // instrument() test).
            node_modules: ["playwright-core", "idb", "dexie"].iter().all(|p| {
                e2e_dir()
                    .join("node_modules")
                    .join(p)
                    .join("package.json")
                    .exists()
            }),
        })
    }

    fn bindgen_ok(&self) -> bool {
        let want = Some(&self.bindgen_version);
        self.bindgen_installed.as_ref() == want && self.runner_installed.as_ref() == want
    }

    fn missing(&self) -> Vec<String> {
        let mut m = Vec::new();
        if !self.target {
            m.push(format!("rust target {TARGET}"));
        }
        if !self.bindgen_ok() {
            m.push(format!(
                "wasm-bindgen-cli {} (found wasm-bindgen {:?}, wasm-bindgen-test-runner {:?})",
                self.bindgen_version, self.bindgen_installed, self.runner_installed
            ));
        }
        if !self.chromium {
            m.push(format!(
                "Debian chromium + chromium-driver ({CHROMIUM}, {CHROMEDRIVER})"
            ));
        }
        if self.node.is_none() {
            m.push("node (>= 18) and npm".into());
        }
        if !self.node_modules {
            m.push("e2e node packages (wasm-client/e2e/node_modules)".into());
        }
        m
    }
}

pub(crate) fn e2e_dir() -> PathBuf {
    workspace_root().join("wasm-client/e2e")
}

/// Fails loudly, naming every missing piece, when the browser tests cannot run.
pub(crate) fn check() -> Result<()> {
    let missing = Status::probe()?.missing();
    if !missing.is_empty() {
        bail!(
            "the wasm browser tests need: {}.\nRun `cargo xtask wasm setup` to install them.",
            missing.join("; ")
        );
    }
    Ok(())
}

/// Installs what is missing; prints each step's time.
pub(crate) fn setup() -> Result<()> {
    let started = Instant::now();
    let s = Status::probe()?;
    let mut steps: Vec<(String, f64)> = Vec::new();
    let mut step = |name: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let t = Instant::now();
        f().with_context(|| format!("setup step `{name}`"))?;
        steps.push((name.to_owned(), t.elapsed().as_secs_f64()));
        Ok(())
    };
    if !s.target {
        step("rustup target add", &mut || {
            run(Command::new("rustup").args(["target", "add", TARGET]))
        })?;
    }
    if !s.bindgen_ok() {
        // No --locked: the CLI's own lockfile pins a webpki-roots release this registry lacks
        // (toolchain.md). The version itself is pinned, equal to the crate in Cargo.lock.
        let v = &s.bindgen_version;
        eprintln!(
            "wasm setup: building wasm-bindgen-cli {v} from source (the longest step: 5-20 min on \
             2 busy cores; cargo shows each crate)"
        );
        step("cargo install wasm-bindgen-cli", &mut || {
            run(Command::new("cargo").args([
                "install",
                "wasm-bindgen-cli",
                "--version",
                v,
                "--force",
            ]))
        })?;
    }
    if !s.chromium {
        step("apt-get install chromium chromium-driver", &mut || {
            apt_install(&["chromium", "chromium-driver"])
        })?;
    }
    if s.node.is_none() {
        step("apt-get install nodejs npm", &mut || {
            apt_install(&["nodejs", "npm"])
        })?;
    }
    if !s.node_modules {
        step("npm ci (playwright-core, idb, dexie)", &mut || {
            run(Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(e2e_dir()))
        })?;
    }
    // Check again: an install that "succeeded" but left something missing must not pass.
    check()?;
    if steps.is_empty() {
        eprintln!(
            "wasm setup: everything already installed ({:.2}s)",
            started.elapsed().as_secs_f64()
        );
    }
    for (name, secs) in &steps {
        eprintln!("wasm setup: {name}: {secs:.1}s");
    }
    Ok(())
}

/// The wasm-bindgen version Cargo.lock resolved (the crate pins it with `=`).
fn locked_version(name: &str) -> Result<String> {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock"))
        .context("reading Cargo.lock")?;
    let needle = format!("name = \"{name}\"\nversion = \"");
    let start = lock
        .find(&needle)
        .with_context(|| format!("{name} is not in Cargo.lock"))?
        + needle.len();
    let end = lock[start..].find('"').context("malformed Cargo.lock")? + start;
    Ok(lock[start..end].to_owned())
}

/// `wasm-bindgen 0.2.130` → `0.2.130`.
fn tool_version(tool: &str) -> Option<String> {
    let out = output(wasm_bindgen_bin(tool).to_str()?, &["--version"])?;
    out.split_whitespace().nth(1).map(str::to_owned)
}

/// The tool from PATH, else from `$CARGO_HOME/bin` (where `cargo install` puts it).
pub(crate) fn wasm_bindgen_bin(tool: &str) -> PathBuf {
    if output(tool, &["--version"]).is_some() {
        return PathBuf::from(tool);
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    home.join("bin").join(tool)
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
