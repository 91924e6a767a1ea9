//! A real PostgreSQL server for tests: Debian's `postgresql` package (`initdb` + `postgres`), a
//! fresh cluster per [`Postgres`] in `target/postgres/<name>-<random>/` (as root:
//! `$TMPDIR/nifi-s2s-postgres/<name>-<random>/`), listening on a free `127.0.0.1` port, stopped
//! and removed when the value is dropped.
//!
//! ```no_run
//! # fn main() -> nifi_testkit::Result<()> {
//! let pg = nifi_testkit::postgres::Postgres::start("my-test")?;
//! pg.execute("CREATE TABLE t (id int PRIMARY KEY, v jsonb)")?;
//! let rows = pg.query_json("SELECT id, v FROM t ORDER BY id")?; // a JSON array of row objects
//! println!("{} {}", pg.jdbc_url(), rows);
//! # Ok(()) }
//! ```
//!
//! The server runs as the unprivileged `postgres` system user when the test runs as root (PostgreSQL
//! refuses to run as root); otherwise as the current user. Local (Unix socket) connections are
//! trusted, TCP connections need the generated password (SCRAM), so a JDBC client such as NiFi's
//! connection pool proves the password path. Queries from the test go through `psql` over the
//! socket in the cluster's own directory.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::provision::{progress, workspace_root};
use crate::{Error, Result};

/// The user that owns the cluster's data when the kit runs as root.
const SYSTEM_USER: &str = "postgres";

/// A running PostgreSQL cluster owned by this value (stopped and deleted on drop).
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    user: String,
    password: String,
    database: String,
    run_as: Option<String>,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .finish()
    }
}

/// The directory with `initdb`, `postgres`, `pg_ctl`, `psql`: `$PG_BIN` if set, else the newest
/// `/usr/lib/postgresql/<major>/bin` (Debian's layout), else `pg_config --bindir`.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if bin.join("initdb").is_file() {
            return Ok(bin);
        }
    }
    Err(Error::Postgres(
        "no PostgreSQL server found (looked at $PG_BIN, /usr/lib/postgresql/*/bin, pg_config); \
         install it with `apt-get install -y postgresql` (cargo xtask test does)"
            .into(),
    ))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("finding a free port", e))?;
    Ok(l.local_addr()
        .map_err(|e| Error::io("finding a free port", e))?
        .port())
}

impl Postgres {
    /// Initializes a new cluster in `target/postgres/<name>-<random>/` (as root in the temp dir),
    /// starts it on a free
    /// loopback port and creates the database `name` (lower-cased, non-alphanumerics as `_`) owned
    /// by the user `s2s` with a random password. Takes 1–5 s.
    pub fn start(name: &str) -> Result<Self> {
        let bin = bin_dir()?;
        let database: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let run_as = is_root().then(|| SYSTEM_USER.to_owned());
        // As root the server runs as `postgres`, which may not be allowed into the workspace (a
        // clone under /root): then the cluster lives in the temp dir.
        let root = if run_as.is_some() {
            std::env::temp_dir().join("nifi-s2s-postgres")
        } else {
            workspace_root().join("target").join("postgres")
        };
        let dir = root.join(format!("{database}-{:08x}", fastrand::u32(..)));
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let password: String = (0..24).map(|_| fastrand::alphanumeric()).collect();
        let mut pg = Self {
            bin,
            dir,
            port: 0,
            user: "s2s".into(),
            password,
            database,
            run_as,
        };
        // From here on, Drop cleans up whatever was created.
        pg.init()?;
        let t0 = Instant::now();
        // A port can be taken between choosing and binding it: try a few.
        let mut last = None;
        for _ in 0..5 {
            pg.port = free_port()?;
            match pg.launch() {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
        pg.psql_as_superuser(&format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}'",
            pg.user, pg.password
        ))?;
        pg.psql_as_superuser(&format!(
            "CREATE DATABASE {} OWNER {}",
            pg.database, pg.user
        ))?;
        progress(format!(
            "PostgreSQL up on 127.0.0.1:{} (database {}, {:.1}s, data in {})",
            pg.port,
            pg.database,
            t0.elapsed().as_secs_f64(),
            pg.dir.display()
        ));
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, tool: &str, cmd: &mut Command) -> Result<String> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("running {tool}"), e))?;
        if !out.status.success() {
            return Err(Error::Postgres(format!(
                "{tool} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn init(&self) -> Result<()> {
        if let Some(user) = &self.run_as {
            let out = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&self.dir)
                .output()
                .map_err(|e| Error::io("chown of the PostgreSQL directory", e))?;
            if !out.status.success() {
                return Err(Error::Postgres(format!(
                    "chown {user} {}: {}",
                    self.dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        self.run(
            "initdb",
            self.command("initdb").arg("-D").arg(self.data()).args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]),
        )?;
        Ok(())
    }

    fn launch(&self) -> Result<()> {
        let log = self.dir.join("postgres.log");
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c fsync=off \
             -c max_connections=50 -c shared_buffers=32MB",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl start",
            self.command("pg_ctl")
                .arg("start")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &opts]),
        )
        .map_err(|e| {
            let tail = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(10).collect();
            Error::Postgres(format!(
                "{e}; log: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ))
        })?;
        Ok(())
    }

    fn psql_cmd(&self, database: &str, user: &str) -> Command {
        let mut c = self.command("psql");
        c.arg("-h")
            .arg(&self.dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", user, "-d", database])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        c
    }

    fn psql_as_superuser(&self, sql: &str) -> Result<String> {
        self.run(
            "psql",
            self.psql_cmd("postgres", "postgres").arg("-c").arg(sql),
        )
    }

    /// Runs SQL (one or more statements) in the database as its owner; returns psql's unaligned,
    /// tuples-only output.
    pub fn execute(&self, sql: &str) -> Result<String> {
        self.run(
            "psql",
            self.psql_cmd(&self.database, &self.user).arg("-c").arg(sql),
        )
    }

    /// Runs a SQL file (e.g. a schema) in the database as its owner, in one transaction.
    pub fn execute_file(&self, path: &Path) -> Result<String> {
        let sql = fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        self.run(
            "psql",
            self.psql_cmd(&self.database, &self.user)
                .arg("-1")
                .arg("-c")
                .arg(sql),
        )
    }

    /// The rows of `select` as a JSON array of objects (`json_agg`; `[]` for no rows).
    pub fn query_json(&self, select: &str) -> Result<Value> {
        let out = self.execute(&format!(
            "SELECT coalesce(json_agg(q), '[]'::json) FROM ({select}) q"
        ))?;
        serde_json::from_str(out.trim())
            .map_err(|e| Error::Postgres(format!("psql returned no JSON ({e}): {}", out.trim())))
    }

    /// A single value (first column of the first row), as text; `None` for no row or NULL.
    pub fn query_scalar(&self, select: &str) -> Result<Option<String>> {
        let v = self.query_json(select)?;
        Ok(v.get(0)
            .and_then(|row| row.as_object()?.values().next().cloned())
            .and_then(|v| match v {
                Value::Null => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            }))
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The login that owns the database.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// That login's password (random per cluster; required over TCP).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `jdbc:postgresql://127.0.0.1:<port>/<database>` (for NiFi's DBCP connection pool).
    pub fn jdbc_url(&self) -> String {
        format!(
            "jdbc:postgresql://127.0.0.1:{}/{}",
            self.port, self.database
        )
    }

    /// The data directory's parent (log file `postgres.log`, the Unix socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server (fast shutdown) and deletes its directory. Dropping does the same.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let mut result = Ok(());
        if self.data().join("postmaster.pid").exists() {
            result = self
                .run(
                    "pg_ctl stop",
                    self.command("pg_ctl")
                        .arg("stop")
                        .arg("-D")
                        .arg(self.data())
                        .args(["-m", "fast", "-w", "-t", "30"]),
                )
                .map(|_| ());
        }
        if self.dir.exists() && std::env::var_os("S2S_KEEP_POSTGRES").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        result
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("stopping PostgreSQL in {}: {e}", self.dir.display());
        }
    }
}

/// Waits until `check` returns `Some`, polling every 200 ms for at most `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if t0.elapsed() > timeout {
            return Err(Error::Timeout {
                what: what.into(),
                waited: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Maven coordinates of the PostgreSQL JDBC driver the mirror flow uses.
pub const JDBC_DRIVER: &str = "org.postgresql:postgresql:42.7.7";
/// The driver's class name (the flow's `Database Driver Class Name`).
pub const JDBC_DRIVER_CLASS: &str = "org.postgresql.Driver";

/// The PostgreSQL JDBC driver jar ([`JDBC_DRIVER`], from Maven Central into the kit's Maven cache,
/// downloaded once): the value for a flow's `Database Driver Location(s)`.
pub fn jdbc_driver() -> Result<PathBuf> {
    let mut parts = JDBC_DRIVER.split(':');
    let (g, a, v) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut jar = crate::provision::maven_repo();
    jar.extend(g.split('.'));
    let jar = jar.join(a).join(v).join(format!("{a}-{v}.jar"));
    if !jar.is_file() {
        crate::provision::run_maven(
            &std::env::temp_dir(),
            &[
                "dependency:get",
                &format!("-Dartifact={JDBC_DRIVER}"),
                "-Dtransitive=false",
            ],
        )?;
    }
    if !jar.is_file() {
        return Err(Error::Postgres(format!(
            "Maven resolved {JDBC_DRIVER} but {} is missing",
            jar.display()
        )));
    }
    Ok(jar)
}

/// Where NiFi's JDBC connection pool came from (see [`install_dbcp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbcpSource {
    /// NiFi already had `DBCPConnectionPool` loaded.
    Present,
    /// `org.apache.nifi:nifi-dbcp-service-nar` was installed from Maven.
    Maven,
    /// The NAR is not on the Maven repository: the kit built its stand-in
    /// (`tests/dbcp-standin/DBCPConnectionPool.java`) with the real bundle's coordinates.
    StandIn,
}

const DBCP_GROUP: &str = "org.apache.nifi";
const DBCP_NAR: &str = "nifi-dbcp-service-nar";
const DBCP_TYPE: &str = "org.apache.nifi.dbcp.DBCPConnectionPool";
const STANDIN_JAVA: &str = include_str!("../dbcp-standin/DBCPConnectionPool.java");

async fn dbcp_listed(nifi: &crate::Nifi) -> Result<bool> {
    let v = nifi
        .api_get(&format!(
            "/flow/controller-service-types?bundleGroupFilter={DBCP_GROUP}&bundleArtifactFilter={DBCP_NAR}"
        ))
        .await?;
    Ok(v["controllerServiceTypes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["type"] == DBCP_TYPE))
}

/// Makes `org.apache.nifi.dbcp.DBCPConnectionPool` (bundle `nifi-dbcp-service-nar` at NiFi's
/// version) available in `nifi`, a NiFi this kit provisioned: already there, else the NAR from
/// Maven (`Nifi::install_nars`), else — the reachable Maven repository has no 1.x
/// `nifi-dbcp-service-nar` — the kit's stand-in, compiled with the NiFi's JDK against its
/// `nifi-api` and `nifi-dbcp-service-api`, packaged as a NAR of the same coordinates in the autoload
/// `extensions/` folder; then waits until NiFi lists the type.
pub async fn install_dbcp(nifi: &crate::Nifi) -> Result<DbcpSource> {
    if dbcp_listed(nifi).await? {
        return Ok(DbcpSource::Present);
    }
    nifi.install_nars(&["org.apache.nifi:nifi-standard-services-api-nar"])
        .await?;
    match nifi
        .install_nars(&[&format!("{DBCP_GROUP}:{DBCP_NAR}")])
        .await
    {
        Ok(()) => return Ok(DbcpSource::Maven),
        Err(e) => progress(format!(
            "{DBCP_NAR} {} not installable ({e}); building the kit's stand-in",
            nifi.version()
        )),
    }
    let home = provisioned_home(nifi.url()).ok_or_else(|| {
        Error::Postgres(format!(
            "NiFi at {} has no DBCPConnectionPool and was not started by the test kit",
            nifi.url()
        ))
    })?;
    build_standin_nar(&home, nifi.version())?;
    let t0 = Instant::now();
    while !dbcp_listed(nifi).await? {
        if t0.elapsed() > Duration::from_secs(180) {
            return Err(Error::Timeout {
                what: format!(
                    "NiFi to load the DBCPConnectionPool stand-in from {}",
                    home.display()
                ),
                waited: Duration::from_secs(180),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    progress(format!(
        "DBCPConnectionPool stand-in loaded ({:.1}s)",
        t0.elapsed().as_secs_f64()
    ));
    Ok(DbcpSource::StandIn)
}

fn provisioned_home(url: &str) -> Option<PathBuf> {
    let mut files = vec![crate::provision::state_file()];
    if let Ok(dir) = fs::read_dir(crate::provision::nifi_dir()) {
        files.extend(dir.flatten().map(|e| e.path().join("nifi.env")));
    }
    files.into_iter().find_map(|f| {
        let inst = crate::provision::read_state(&f).ok()??;
        (inst.url == url).then_some(inst.home).flatten()
    })
}

/// Compiles the stand-in and writes `extensions/nifi-dbcp-service-nar-<version>.nar` into `home`.
fn build_standin_nar(home: &Path, version: &str) -> Result<()> {
    let java = crate::provision::java_for(version)?;
    let bin = |tool: &str| -> PathBuf {
        match java.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(tool),
            _ => PathBuf::from(tool),
        }
    };
    let api_artifact = format!("{DBCP_GROUP}:nifi-dbcp-service-api:{version}");
    let mut api = crate::provision::maven_repo();
    api.extend(DBCP_GROUP.split('.'));
    let api = api
        .join("nifi-dbcp-service-api")
        .join(version)
        .join(format!("nifi-dbcp-service-api-{version}.jar"));
    if !api.is_file() {
        crate::provision::run_maven(
            &std::env::temp_dir(),
            &[
                "dependency:get",
                &format!("-Dartifact={api_artifact}"),
                "-Dtransitive=false",
            ],
        )?;
    }
    let nifi_api = home.join("lib").join(format!("nifi-api-{version}.jar"));
    let build = home.join("work").join("dbcp-standin");
    if build.exists() {
        fs::remove_dir_all(&build).map_err(|e| Error::io("cleaning the stand-in build", e))?;
    }
    let classes = build.join("classes");
    let services = classes.join("META-INF").join("services");
    let nar_root = build.join("nar");
    let deps = nar_root.join("META-INF").join("bundled-dependencies");
    for d in [&services, &deps] {
        fs::create_dir_all(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    }
    let src = build.join("DBCPConnectionPool.java");
    fs::write(&src, STANDIN_JAVA).map_err(|e| Error::io("writing the stand-in source", e))?;
    fs::write(
        services.join("org.apache.nifi.controller.ControllerService"),
        format!("{DBCP_TYPE}\n"),
    )
    .map_err(|e| Error::io("writing the service entry", e))?;
    let manifest = build.join("MANIFEST.MF");
    fs::write(
        &manifest,
        format!(
            "Nar-Id: {DBCP_NAR}\nNar-Group: {DBCP_GROUP}\nNar-Version: {version}\n\
             Nar-Dependency-Group: {DBCP_GROUP}\nNar-Dependency-Id: nifi-standard-services-api-nar\n\
             Nar-Dependency-Version: {version}\nBuild-Tag: nifi-s2s-test-kit-stand-in\n"
        ),
    )
    .map_err(|e| Error::io("writing the NAR manifest", e))?;
    let file = format!("{DBCP_NAR}-{version}.nar");
    let part = build.join(&file);
    let classpath = format!("{}:{}", nifi_api.display(), api.display());
    let steps: [(&str, Vec<String>); 3] = [
        (
            "javac",
            vec![
                "--release".into(),
                "11".into(),
                "-nowarn".into(),
                "-d".into(),
                classes.display().to_string(),
                "-cp".into(),
                classpath,
                src.display().to_string(),
            ],
        ),
        (
            "jar",
            vec![
                "cf".into(),
                deps.join("nifi-s2s-dbcp-standin.jar").display().to_string(),
                "-C".into(),
                classes.display().to_string(),
                ".".into(),
            ],
        ),
        (
            "jar",
            vec![
                "cfm".into(),
                part.display().to_string(),
                manifest.display().to_string(),
                "-C".into(),
                nar_root.display().to_string(),
                ".".into(),
            ],
        ),
    ];
    for (tool, args) in steps {
        let out = Command::new(bin(tool))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("running {}", bin(tool).display()), e))?;
        if !out.status.success() {
            return Err(Error::Postgres(format!(
                "{tool} failed building the DBCPConnectionPool stand-in: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    let ext = home.join("extensions");
    fs::create_dir_all(&ext).map_err(|e| Error::io("creating extensions/", e))?;
    let tmp = ext.join(format!(".{file}.{}.part", std::process::id()));
    fs::copy(&part, &tmp).map_err(|e| Error::io("copying the stand-in NAR", e))?;
    fs::rename(&tmp, ext.join(&file)).map_err(|e| Error::io("renaming the stand-in NAR", e))?;
    progress(format!(
        "DBCPConnectionPool stand-in NAR → {}",
        ext.display()
    ));
    Ok(())
}
