//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` (libFuzzer, nightly Rust), each for
//! a fixed time, and reports executions per target.
//!
//! * Prerequisites are installed when missing, with rustup's and cargo's own progress: the nightly
//!   toolchain (`rustup toolchain install nightly --profile minimal`) and cargo-fuzz
//!   (`cargo install cargo-fuzz --locked`).
//! * All targets are built once (release, debug assertions on: integer overflow panics, and the
//!   address sanitizer unless `--sanitizer none`), then run one after the other (`--jobs N` runs N
//!   at a time).
//! * Each run reads the committed seed corpus `fuzz/corpus/<target>` and writes what it
//!   discovers to `target/fuzz/corpus/<target>` (the committed corpus is never touched;
//!   `--update-corpus` merges the discoveries back into it, minimised).
//! * A crash fails the command, naming the input saved under `target/fuzz/artifacts/<target>/`
//!   and the command that replays it. The report (targets, seconds, executions, executions per
//!   second, corpus size, result) is printed and written to `target/fuzz/report.md`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::prereqs::succeeds;
use crate::test::{run, workspace_root};

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 30)]
    pub(crate) seconds: u64,
    /// Run only this target (repeatable); default: every target of `fuzz/Cargo.toml`.
    #[arg(long = "target", value_name = "TARGET")]
    pub(crate) targets: Vec<String>,
    /// Targets run at the same time (each uses one core).
    #[arg(long, default_value_t = 1)]
    pub(crate) jobs: usize,
    /// cargo-fuzz sanitizer: `address` (default) or `none` (faster to build and run).
    #[arg(long, default_value = "address")]
    pub(crate) sanitizer: String,
    /// Afterwards, merge what the runs discovered into the committed corpus `fuzz/corpus/`
    /// (libFuzzer `-merge=1`: only inputs that add coverage are kept).
    #[arg(long)]
    pub(crate) update_corpus: bool,
}

/// The toolchain the fuzz targets are built with (`S2S_FUZZ_TOOLCHAIN` overrides).
fn toolchain() -> String {
    std::env::var("S2S_FUZZ_TOOLCHAIN").unwrap_or_else(|_| "nightly".into())
}

/// `cargo` of the fuzz toolchain, in `fuzz/`, without the outer cargo's environment (which
/// names the stable toolchain's binaries).
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", &toolchain(), "cargo"])
        .current_dir(workspace_root().join("fuzz"));
    for var in [
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTUP_TOOLCHAIN",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Nightly Rust and cargo-fuzz, installed when missing.
pub(crate) fn ensure_tools() -> Result<()> {
    let tc = toolchain();
    if !succeeds("rustup", &["run", &tc, "rustc", "--version"]) {
        eprintln!("[prereqs] installing the {tc} toolchain for the fuzz targets");
        run(Command::new("rustup").args(["toolchain", "install", &tc, "--profile", "minimal"]))?;
    }
    let have = nightly_cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        eprintln!("[prereqs] installing cargo-fuzz");
        run(crate::test::cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// The `[[bin]]` names of `fuzz/Cargo.toml`.
fn all_targets() -> Result<Vec<String>> {
    let path = workspace_root().join("fuzz/Cargo.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    // `name = "…"` lines of `[[bin]]` tables (no TOML parser in xtask for one list).
    let mut in_bin = false;
    let mut names = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin
            && let Some(v) = line.strip_prefix("name")
            && let Some(v) = v.trim_start().strip_prefix('=')
        {
            names.push(v.trim().trim_matches('"').to_owned());
        }
    }
    if names.is_empty() {
        bail!("{} has no [[bin]] targets", path.display());
    }
    Ok(names)
}

/// One target's run.
#[derive(Debug)]
struct Outcome {
    target: String,
    seconds: f64,
    execs: Option<u64>,
    corpus: usize,
    failure: Option<String>,
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.filter_map(Result::ok).count())
}

/// Runs one target for `seconds`, streaming libFuzzer's status lines prefixed with the target.
fn run_target(target: &str, args: &FuzzArgs) -> Result<Outcome> {
    let root = workspace_root();
    let work = root.join("target/fuzz/corpus").join(target);
    let artifacts = root.join("target/fuzz/artifacts").join(target);
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&artifacts)?;
    let seeds = root.join("fuzz/corpus").join(target);
    let mut cmd = nightly_cargo();
    cmd.args([
        "fuzz",
        "run",
        "--debug-assertions",
        "--sanitizer",
        &args.sanitizer,
        target,
    ])
    .arg(&work);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={}", args.seconds))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .args([
            "-print_final_stats=1",
            "-rss_limit_mb=2048",
            "-timeout=20",
            "-max_len=65536",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting the fuzz run of {target}"))?;
    let stderr = child.stderr.take().context("fuzz stderr")?;
    let mut execs = None;
    let mut crash = None;
    let mut last_status = Instant::now();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap_or_default();
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            execs = n.trim().parse().ok();
        }
        if let Some(rest) = line.split("Test unit written to ").nth(1) {
            crash = Some(rest.trim().to_owned());
        }
        // libFuzzer's progress lines (`#N pulse/NEW/REDUCE …`): one every ~10 s, everything else
        // that is not a status line in full (panics, sanitizer reports, build errors).
        let status = line.starts_with('#');
        if !status || last_status.elapsed().as_secs() >= 10 || line.contains("DONE") {
            if status {
                last_status = Instant::now();
            }
            eprintln!("[fuzz {target}] {line}");
        }
    }
    let exit = child.wait()?;
    let failure = if exit.success() {
        None
    } else {
        Some(match &crash {
            Some(input) => format!(
                "{target} failed on {input}; replay: cd fuzz && cargo +{} fuzz run {target} {input}",
                toolchain()
            ),
            None => format!("{target}: fuzz run failed ({exit})"),
        })
    };
    Ok(Outcome {
        target: target.to_owned(),
        seconds: started.elapsed().as_secs_f64(),
        execs,
        corpus: files_in(&work) + files_in(&seeds),
        failure,
    })
}

/// Merges the discoveries of `target/fuzz/corpus/T` into `fuzz/corpus/T`, keeping only inputs that
/// add coverage (the committed corpus stays small).
fn update_corpus(target: &str, args: &FuzzArgs) -> Result<()> {
    let root = workspace_root();
    let seeds = root.join("fuzz/corpus").join(target);
    let work = root.join("target/fuzz/corpus").join(target);
    let merged = root.join("target/fuzz/merged").join(target);
    let _ = std::fs::remove_dir_all(&merged);
    std::fs::create_dir_all(&merged)?;
    let mut cmd = nightly_cargo();
    cmd.args([
        "fuzz",
        "run",
        "--debug-assertions",
        "--sanitizer",
        &args.sanitizer,
        target,
    ])
    .arg(&merged);
    for d in [&seeds, &work] {
        if d.is_dir() {
            cmd.arg(d);
        }
    }
    cmd.args(["--", "-merge=1", "-max_len=65536"]);
    run(&mut cmd)?;
    let _ = std::fs::remove_dir_all(&seeds);
    std::fs::create_dir_all(&seeds)?;
    for e in std::fs::read_dir(&merged)? {
        let e = e?;
        std::fs::copy(e.path(), seeds.join(e.file_name()))?;
    }
    eprintln!("[fuzz {target}] corpus: {} inputs", files_in(&seeds));
    Ok(())
}

/// The `cargo fuzz build` command for `targets` (all when empty).
fn build_cmd(sanitizer: &str, targets: &[String]) -> Command {
    let mut build = nightly_cargo();
    build.args([
        "fuzz",
        "build",
        "--debug-assertions",
        "--sanitizer",
        sanitizer,
    ]);
    if let [one] = targets {
        build.arg(one);
    }
    build
}

/// `cargo xtask fuzz`.
pub(crate) fn fuzz(args: FuzzArgs) -> Result<()> {
    let started = Instant::now();
    ensure_tools()?;
    let all = all_targets()?;
    let targets = if args.targets.is_empty() {
        all
    } else {
        for t in &args.targets {
            if !all.contains(t) {
                bail!("no fuzz target {t:?}; there are: {}", all.join(", "));
            }
        }
        args.targets.clone()
    };
    eprintln!(
        "[fuzz] building {} targets ({} toolchain, sanitizer {})",
        targets.len(),
        toolchain(),
        args.sanitizer
    );
    run(&mut build_cmd(&args.sanitizer, &targets))?;
    run_targets(&args, &targets)?;
    eprintln!(
        "[fuzz] {} targets fuzzed in {:.0}s",
        targets.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The sanitizer `cargo xtask test` fuzzes with: none (the code under test forbids `unsafe`;
/// the build is minutes shorter and the runs about twice as fast).
pub(crate) const CI_SANITIZER: &str = "none";

/// A `cargo fuzz build` of every target running in the background (`cargo xtask test` starts it
/// while NiFi starts), its output in `target/fuzz/build.log`. Killed if dropped unfinished.
pub(crate) struct BackgroundBuild {
    child: Option<std::process::Child>,
    log: std::path::PathBuf,
    started: Instant,
}

/// Installs the tools and starts the build of every target at low CPU priority.
pub(crate) fn spawn_build() -> Result<BackgroundBuild> {
    ensure_tools()?;
    let dir = workspace_root().join("target/fuzz");
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("build.log");
    let out = std::fs::File::create(&log)?;
    let cmd = build_cmd(CI_SANITIZER, &[]);
    let mut nice = Command::new("nice");
    nice.args(["-n", "10"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .current_dir(workspace_root().join("fuzz"))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => nice.env(k, v),
            None => nice.env_remove(k),
        };
    }
    eprintln!(
        "[fuzz] building the fuzz targets in the background (log: {})",
        log.display()
    );
    let child = nice.spawn().context("starting the fuzz build")?;
    Ok(BackgroundBuild {
        child: Some(child),
        log,
        started: Instant::now(),
    })
}

impl BackgroundBuild {
    /// Waits for the build; on failure shows the end of its log.
    pub(crate) fn wait(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        eprintln!("\n==> waiting for the background fuzz build");
        let status = child.wait()?;
        if !status.success() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
            bail!(
                "the fuzz build failed ({status}); log: {}",
                self.log.display()
            );
        }
        eprintln!(
            "<== fuzz build ok ({:.0}s since it started)",
            self.started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

impl Drop for BackgroundBuild {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `cargo xtask test`'s fuzz step: after `build`, every target for `seconds`, `jobs` at a time.
pub(crate) fn ci(build: BackgroundBuild, seconds: u64, jobs: usize) -> Result<()> {
    build.wait()?;
    let args = FuzzArgs {
        seconds,
        targets: Vec::new(),
        jobs,
        sanitizer: CI_SANITIZER.into(),
        update_corpus: false,
    };
    run_targets(&args, &all_targets()?)
}

/// Runs `targets` (built), prints and writes the report, fails on any crash.
fn run_targets(args: &FuzzArgs, targets: &[String]) -> Result<()> {
    eprintln!(
        "[fuzz] running {} targets, {} s each, {} at a time",
        targets.len(),
        args.seconds,
        args.jobs.max(1)
    );
    let mut outcomes = Vec::new();
    for chunk in targets.chunks(args.jobs.max(1)) {
        let results: Vec<Result<Outcome>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|t| s.spawn(|| run_target(t, args)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| bail!("fuzz runner thread panicked"))
                })
                .collect()
        });
        for r in results {
            outcomes.push(r?);
        }
    }
    let mut report = String::from(
        "| target | seconds | executions | executions/s | corpus | result |\n|---|---:|---:|---:|---:|---|\n",
    );
    for o in &outcomes {
        let execs = o.execs.map_or_else(|| "?".into(), |n| n.to_string());
        let rate = o.execs.map_or_else(
            || "?".into(),
            |n| format!("{:.0}", n as f64 / o.seconds.max(0.001)),
        );
        let result = if o.failure.is_some() { "FAILED" } else { "ok" };
        report.push_str(&format!(
            "| {} | {:.0} | {execs} | {rate} | {} | {result} |\n",
            o.target, o.seconds, o.corpus
        ));
    }
    let dir = workspace_root().join("target/fuzz");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("report.md"), &report)?;
    eprintln!("\n{report}");
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.failure.as_ref()).collect();
    if !failures.is_empty() {
        bail!(
            "{} fuzz target(s) failed:\n  {}",
            failures.len(),
            failures
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    if args.update_corpus {
        for t in targets {
            update_corpus(t, args)?;
        }
    }
    Ok(())
}
