//! The kit's PostgreSQL: a real server starts, answers SQL, needs the password over TCP, and is
//! gone (process and directory) after drop.

use nifi_testkit::postgres::Postgres;

#[test]
fn starts_answers_and_cleans_up() {
    if nifi_testkit::postgres::bin_dir().is_err() && std::env::var_os("S2S_E2E").is_none() {
        eprintln!("SKIPPED: no PostgreSQL installed");
        return;
    }
    let pg = Postgres::start("kit-pg-test").unwrap();
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, v jsonb)")
        .unwrap();
    pg.execute(r#"INSERT INTO t VALUES (1, '{"a":[1,2]}'), (2, 'null')"#)
        .unwrap();
    let rows = pg.query_json("SELECT id, v FROM t ORDER BY id").unwrap();
    assert_eq!(
        rows,
        serde_json::json!([{"id": 1, "v": {"a": [1, 2]}}, {"id": 2, "v": null}])
    );
    assert_eq!(
        pg.query_scalar("SELECT count(*) FROM t")
            .unwrap()
            .as_deref(),
        Some("2")
    );
    assert!(pg.execute("SELECT * FROM missing").is_err());
    assert!(!format!("{pg:?}").contains(pg.password()));
    assert!(pg.jdbc_url().starts_with("jdbc:postgresql://127.0.0.1:"));
    // TCP needs the password: a connection without it is refused.
    let port = pg.port();
    let refused =
        std::process::Command::new(nifi_testkit::postgres::bin_dir().unwrap().join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "s2s",
                "-d",
                pg.database(),
                "-w",
                "-c",
                "select 1",
            ])
            .output()
            .unwrap();
    assert!(
        !refused.status.success(),
        "TCP without a password must be refused"
    );
    let dir = pg.dir().to_path_buf();
    pg.stop().unwrap();
    assert!(!dir.exists(), "{} removed", dir.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server stopped"
    );
}
