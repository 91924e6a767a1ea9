//! Everything the IndexedDB mirror flow (`tests/flows/idb-mirror.json`) needs, for trying it by
//! hand or rebuilding it: a real PostgreSQL with the mirror's schema (`tests/flows/idb-mirror.sql`),
//! the PostgreSQL JDBC driver from Maven Central, and a `DBCPConnectionPool` in the running test
//! NiFi. Prints the flow's parameters as `NAME=VALUE` lines, then keeps PostgreSQL running until
//! stdin closes (Ctrl-D) or the process is interrupted.
//!
//! ```sh
//! cargo xtask nifi up
//! cargo run -p nifi-testkit --example postgres_mirror_env
//! cargo xtask nifi flow deploy tests/flows/idb-mirror.json --param postgres.jdbc.url=… …
//! ```

use std::io::Read;

use nifi_testkit::Nifi;
use nifi_testkit::postgres::{self, Postgres};

#[tokio::main]
async fn main() -> nifi_testkit::Result<()> {
    let pg = Postgres::start("idb-mirror-manual")?;
    pg.execute_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/flows/idb-mirror.sql"
    )))?;
    let driver = postgres::jdbc_driver()?;
    let nifi = Nifi::shared().await?;
    nifi.install_nars(&[
        "org.apache.nifi:nifi-standard-services-api-nar",
        "org.apache.nifi:nifi-standard-nar",
    ])
    .await?;
    let source = postgres::install_dbcp(&nifi).await?;
    eprintln!("DBCPConnectionPool: {source:?}");
    println!("postgres.jdbc.url={}", pg.jdbc_url());
    println!("postgres.user={}", pg.user());
    println!("postgres.password={}", pg.password());
    println!("jdbc.driver.location={}", driver.display());
    println!(
        "PSQL=psql -h {} -p {} -U {} -d {}",
        pg.dir().display(),
        pg.port(),
        pg.user(),
        pg.database()
    );
    eprintln!("PostgreSQL runs until stdin closes (Ctrl-D)");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    pg.stop()
}
