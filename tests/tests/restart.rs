//! A test NiFi survives its own crash: after a SIGKILL of its JVM, `up` restarts the same home on
//! the same web and RAW ports, with its flow (the port) and its queued FlowFiles; two `up` at once
//! start one JVM (the second waits on the home's lock, then reuses the first one's NiFi).
//!
//! Runs on its own NiFi (`provision::restart_test_dir()`), never on one other tests use: it kills
//! that JVM. `cargo xtask test` starts that NiFi with its other lanes and sets
//! `NIFI_RESTART_TEST=1`; elsewhere the test skips unless that variable is set (it then provisions
//! the NiFi itself).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nifi_testkit::java_reference::{self, SendSpec, Transport};
use nifi_testkit::provision::{self, UpOptions, UpReport};
use nifi_testkit::{Nifi, Port};

fn opts() -> UpOptions {
    UpOptions {
        make_shared: false,
        dir: Some(provision::restart_test_dir()),
        ..UpOptions::default()
    }
}

/// `count` FlowFiles of 100 bytes with the Java reference client (`ref.index` = 0..count).
async fn send(nifi: &Nifi, port: &Port, transport: Transport, count: u64) {
    let spec = SendSpec {
        url: nifi.url().to_owned(),
        port: port.name().to_owned(),
        transport,
        count,
        size: 100,
        batch: 10,
        compress: false,
        attributes: vec![("restart.transport".into(), format!("{transport:?}"))],
    };
    let report = tokio::task::spawn_blocking(move || java_reference::send(&spec))
        .await
        .expect("java client task")
        .unwrap_or_else(|e| panic!("sending {count} over {transport:?}: {e}"));
    assert_eq!(report.count, count);
}

/// NiFi saves flow changes a moment after the REST call; a kill before that would lose the port
/// for a reason that is not the kit's. Waits until a saved flow names the port.
fn wait_flow_saved(home: &Path, name: &str) {
    let t = Instant::now();
    loop {
        let saved = ["flow.xml.gz", "flow.json.gz"].iter().any(|f| {
            Command::new("gzip")
                .arg("-dc")
                .arg(home.join("conf").join(f))
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(name))
        });
        if saved {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "NiFi did not save a flow naming {name:?} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn assert_queue(port: &Port, n: usize) {
    let ffs = port.queued_flowfiles().await.unwrap();
    assert_eq!(ffs.len(), n, "FlowFiles queued at {:?}", port.name());
    for ff in &ffs {
        let i: u64 = ff.attributes["ref.index"].parse().unwrap();
        assert_eq!(
            ff.content,
            java_reference::expected_content(i, 100),
            "content of FlowFile ref.index={i} ({:?})",
            ff.attributes.get("restart.transport")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nifi_comes_back_with_its_ports_flow_and_queue() {
    if std::env::var("NIFI_RESTART_TEST").ok().as_deref() != Some("1") {
        eprintln!(
            "SKIPPED: set NIFI_RESTART_TEST=1 to run the crash test (it starts and SIGKILLs its own \
             NiFi in {}; `cargo xtask test` does)",
            provision::restart_test_dir().display()
        );
        return;
    }
    let t0 = Instant::now();
    let first = provision::up(&opts()).await.expect("first up");
    let before = first.instance.clone();
    let old_pid = before.pid.expect("a NiFi the kit started has a PID");
    let home = before
        .home
        .clone()
        .expect("a NiFi the kit started has a home");
    let nifi = Nifi::from_state(&before).await.unwrap();
    let port = nifi.input_port("restart").await.unwrap();
    send(&nifi, &port, Transport::Raw, 3).await;
    send(&nifi, &port, Transport::Http, 2).await;
    port.wait_for_queued(5, Duration::from_secs(30))
        .await
        .unwrap();
    wait_flow_saved(&home, port.name());
    let prepared = t0.elapsed();

    // The crash: SIGKILL, no shutdown hook, no flow save, no repository checkpoint.
    let killed = Command::new("kill")
        .args(["-KILL", &old_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -KILL {old_pid}");
    let t = Instant::now();
    while provision::process_running(old_pid) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "PID {old_pid} survived SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        provision::about(&reqwest_client(), &before.url)
            .await
            .is_none()
    );

    // Two `up` at once, as two terminals (or a soak and a user) would: one JVM, one restart.
    let t = Instant::now();
    let (a, b) = tokio::join!(
        tokio::spawn(async { provision::up(&opts()).await }),
        tokio::spawn(async { provision::up(&opts()).await })
    );
    let restart = t.elapsed();
    let a: UpReport = a.unwrap().expect("up A");
    let b: UpReport = b.unwrap().expect("up B");
    assert_eq!(
        (
            a.restarted as u8 + b.restarted as u8,
            a.reused as u8 + b.reused as u8
        ),
        (1, 1),
        "one `up` restarts the home, the other waits and reuses it: A {a:?}, B {b:?}"
    );
    let after = a.instance.clone();
    assert_eq!(after.pid, b.instance.pid, "one JVM for both `up`");
    let new_pid = after.pid.unwrap();
    assert_ne!(new_pid, old_pid);
    assert!(provision::process_running(new_pid));
    assert_eq!(after.url, before.url, "same web port");
    assert_eq!(after.raw_port, before.raw_port, "same RAW port");
    assert_eq!(after.home, before.home, "same home");

    // The flow and the queue survived; both ports answer S2S again.
    let nifi = Nifi::from_state(&after).await.unwrap();
    assert_eq!(nifi.raw_port(), before.raw_port);
    let port = nifi.port_by_name(port.name()).await.unwrap();
    assert_eq!(
        port.queued_count().await.unwrap(),
        5,
        "queued FlowFiles kept"
    );
    assert_queue(&port, 5).await;
    send(&nifi, &port, Transport::Raw, 1).await;
    send(&nifi, &port, Transport::Http, 1).await;
    port.wait_for_queued(7, Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!(
        "crash test: first up {:.1} s ({}), port + 5 FlowFiles {:.1} s, restart after SIGKILL \
         {:.1} s (NiFi startup {:.1} s, second `up` waited {:.1} s on the lock), total {:.1} s",
        first.startup.as_secs_f64(),
        if first.reused { "reused" } else { "started" },
        prepared.as_secs_f64(),
        restart.as_secs_f64(),
        a.startup.max(b.startup).as_secs_f64(),
        a.lock_wait.max(b.lock_wait).as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    port.delete().await.unwrap();
    provision::down_in(&provision::restart_test_dir(), Some(&after.version)).unwrap();
}

fn reqwest_client() -> reqwest::Client {
    provision::rest_client(None).unwrap()
}
