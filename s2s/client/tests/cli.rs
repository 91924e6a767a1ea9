//! The `s2s` binary run as a process against a real NiFi (see `nifi-testkit`).

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use nifi_testkit::nifi_or_skip;

const WAIT: Duration = Duration::from_secs(60);

fn s2s(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_s2s"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run s2s");
    {
        let mut i = child.stdin.take().unwrap();
        if let Some(data) = stdin {
            i.write_all(data).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "s2s failed: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[tokio::test]
async fn send_files_and_stdin_with_attributes() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("s2s-cli-send").await.unwrap();
    let dir = std::env::temp_dir().join(format!("s2s-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.txt");
    let b = dir.join("b.bin");
    std::fs::write(&a, "file a").unwrap();
    let bin: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    std::fs::write(&b, &bin).unwrap();
    let out = s2s(
        &[
            "send",
            "--url",
            nifi.url(),
            "--port",
            port.name(),
            "-a",
            "source=cli",
            "-a",
            "emoji=😀",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "-",
        ],
        Some(b"from stdin"),
    );
    let stdout = ok(&out);
    assert!(
        stdout.contains("committed 3 FlowFiles / 100016 bytes in 1 transactions"),
        "{stdout}"
    );
    port.wait_for_queued(3, WAIT).await.unwrap();
    let q = port.queued_flowfiles().await.unwrap();
    let find = |name: &str| q.iter().find(|f| f.attributes["filename"] == name).unwrap();
    assert_eq!(find("a.txt").content, b"file a");
    assert_eq!(find("b.bin").content, bin);
    assert_eq!(find("stdin").content, b"from stdin");
    for f in &q {
        assert_eq!(f.attributes["source"], "cli");
        assert_eq!(f.attributes["emoji"], "😀");
    }
    std::fs::remove_dir_all(&dir).ok();
    port.delete().await.unwrap();
}

#[tokio::test]
async fn send_jsonl_by_port_id_compressed_then_recv_jsonl_and_out_dir() {
    let nifi = nifi_or_skip!();
    let pair = nifi.port_pair("s2s-cli-jsonl").await.unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode([0u8, 159, 146, 150, 255]);
    let jsonl = format!(
        "{{\"attributes\":{{\"filename\":\"one.txt\",\"k\":\"𝄞\"}},\"content\":\"first line\"}}\n\
         \n\
         {{\"attributes\":{{\"filename\":\"two.bin\"}},\"content_base64\":\"{b64}\"}}\n\
         {{\"attributes\":{{}},\"content\":\"\"}}\n"
    );
    let out = s2s(
        &[
            "send",
            "--url",
            nifi.url(),
            "--port-id",
            pair.input.id(),
            "--compress",
            "--batch",
            "2",
            "--jsonl",
            "-",
        ],
        Some(jsonl.as_bytes()),
    );
    let stdout = ok(&out);
    assert!(
        stdout.contains("committed 3 FlowFiles / 15 bytes in 2 transactions"),
        "{stdout}"
    );
    pair.output.wait_for_queued(3, WAIT).await.unwrap();

    // recv --jsonl - --max 1: exactly one FlowFile, as JSON with content_base64.
    let out = s2s(
        &[
            "recv",
            "--url",
            nifi.url(),
            "--port",
            pair.output.name(),
            "--jsonl",
            "-",
            "--max",
            "1",
        ],
        None,
    );
    let stdout = ok(&out);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let first = &lines[0];
    let b64d = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let mut contents = vec![b64d(&first["content_base64"])];
    // NiFi does not promise FIFO here: check whichever came first by its content.
    if contents[0] == b"first line" {
        assert_eq!(first["attributes"]["filename"], "one.txt");
        assert_eq!(first["attributes"]["k"], "𝄞");
    } else if contents[0] == [0u8, 159, 146, 150, 255] {
        assert_eq!(first["attributes"]["filename"], "two.bin");
    } else {
        assert!(contents[0].is_empty(), "{first}");
    }

    // recv --out-dir: the rest, as files named by `filename`.
    let dir = std::env::temp_dir().join(format!("s2s-cli-out-{}", std::process::id()));
    let out = s2s(
        &[
            "recv",
            "--url",
            nifi.url(),
            "--port",
            pair.output.name(),
            "--out-dir",
            dir.to_str().unwrap(),
        ],
        None,
    );
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("received 2 FlowFiles"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for (name, content) in &files {
        if name == "one.txt" {
            assert_eq!(content, b"first line");
        } else if name == "two.bin" {
            assert_eq!(content, &[0u8, 159, 146, 150, 255]);
        } else {
            // No filename was sent: NiFi names it by its uuid.
            assert!(content.is_empty(), "{name}");
        }
        contents.push(content.clone());
    }
    contents.sort();
    let mut want = vec![
        Vec::new(),
        b"first line".to_vec(),
        vec![0u8, 159, 146, 150, 255],
    ];
    want.sort();
    assert_eq!(contents, want);
    std::fs::remove_dir_all(&dir).ok();
    // Confirmed receives are gone from NiFi's queue.
    pair.output
        .wait_for_empty(Duration::from_secs(10))
        .await
        .unwrap();
    pair.delete().await.unwrap();
}

#[tokio::test]
async fn peers_and_failures() {
    let nifi = nifi_or_skip!();
    let raw = nifi.raw_port().unwrap();
    let out = s2s(
        &[
            "peers",
            "--url",
            nifi.url(),
            "--peer-override",
            &format!("127.0.0.1:{raw}=localhost:{raw}"),
        ],
        None,
    );
    let stdout = ok(&out);
    assert!(stdout.contains(&format!(":{raw}")), "{stdout}");
    // The table: one row per node, with its SECURE column.
    assert!(
        stdout.starts_with("PEER") && stdout.contains("SECURE"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.contains(&format!(":{raw}")))
        .expect("a row for the node");
    assert_eq!(row.split_whitespace().nth(3), Some("false"), "{stdout}");

    // Unknown port: non-zero exit, one line on stderr naming the problem.
    let out = s2s(
        &[
            "send",
            "--url",
            nifi.url(),
            "--port",
            "no-such-port-cli",
            "-",
        ],
        Some(b"x"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("unknown port"), "{err}");

    // Unreachable NiFi.
    let out = s2s(
        &[
            "peers",
            "--url",
            "http://127.0.0.1:9/nifi",
            "--timeout",
            "2",
        ],
        None,
    );
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );

    // Bad JSON line.
    let out = s2s(
        &["send", "--url", nifi.url(), "--port", "x", "--jsonl", "-"],
        Some(b"{not json}\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}

#[tokio::test]
async fn recv_jsonl_to_a_file_then_empty_port() {
    let nifi = nifi_or_skip!();
    let pair = nifi.port_pair("s2s-cli-file").await.unwrap();
    let c = s2s::Client::builder(nifi.url()).build().unwrap();
    c.send_batch(
        pair.input.name(),
        vec![
            s2s::FlowFile::new("alpha").with_attribute("n", "1"),
            s2s::FlowFile::new(vec![0u8, 1, 2, 255]).with_attribute("n", "2"),
        ],
    )
    .await
    .unwrap();
    c.close().await;
    pair.output.wait_for_queued(2, WAIT).await.unwrap();
    let file = std::env::temp_dir().join(format!("s2s-cli-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let out = s2s(
        &[
            "recv",
            "--url",
            nifi.url(),
            "--port",
            pair.output.name(),
            "--jsonl",
            file.to_str().unwrap(),
        ],
        None,
    );
    ok(&out);
    let text = std::fs::read_to_string(&file).unwrap();
    let mut got: Vec<(String, Vec<u8>)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["attributes"]["n"].as_str().unwrap().to_owned(),
                base64::engine::general_purpose::STANDARD
                    .decode(v["content_base64"].as_str().unwrap())
                    .unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("1".to_owned(), b"alpha".to_vec()),
            ("2".to_owned(), vec![0u8, 1, 2, 255])
        ]
    );
    // Empty port now: succeeds, writes nothing more.
    let out = s2s(
        &[
            "recv",
            "--url",
            nifi.url(),
            "--port",
            pair.output.name(),
            "--jsonl",
            file.to_str().unwrap(),
        ],
        None,
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("received 0 FlowFiles"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    std::fs::remove_file(&file).ok();
    pair.delete().await.unwrap();
}

/// `--transport http`: send JSON lines compressed, then receive them back as JSON lines.
#[tokio::test]
async fn transport_http_send_then_recv_jsonl() {
    let nifi = nifi_or_skip!();
    let pair = nifi.port_pair("s2s-cli-http").await.unwrap();
    let jsonl = "{\"attributes\":{\"filename\":\"h1\",\"k\":\"𝄞\"},\"content\":\"over http 1\"}\n\
                 {\"attributes\":{\"filename\":\"h2\"},\"content\":\"over http 22\"}\n";
    let out = s2s(
        &[
            "send",
            "--url",
            nifi.url(),
            "--transport",
            "http",
            "--port",
            pair.input.name(),
            "--compress",
            "--jsonl",
            "-",
        ],
        Some(jsonl.as_bytes()),
    );
    let stdout = ok(&out);
    assert!(
        stdout.contains("committed 2 FlowFiles / 23 bytes"),
        "{stdout}"
    );
    pair.output.wait_for_queued(2, WAIT).await.unwrap();
    let out = s2s(
        &[
            "recv",
            "--url",
            nifi.url(),
            "--transport",
            "http",
            "--port",
            pair.output.name(),
            "--jsonl",
            "-",
        ],
        None,
    );
    let stdout = ok(&out);
    let mut lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines.sort_by_key(|v| v["attributes"]["filename"].as_str().unwrap().to_owned());
    assert_eq!(lines.len(), 2, "{stdout}");
    let content = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v["content_base64"].as_str().unwrap())
            .unwrap()
    };
    assert_eq!(content(&lines[0]), b"over http 1");
    assert_eq!(lines[0]["attributes"]["k"], "𝄞");
    assert_eq!(content(&lines[1]), b"over http 22");
    pair.delete().await.unwrap();
}

/// `peers --transport http` lists the HTTP peers: NiFi's web port.
#[tokio::test]
async fn peers_over_http_lists_the_web_port() {
    let nifi = nifi_or_skip!();
    let out = s2s(&["peers", "--url", nifi.url(), "--transport", "http"], None);
    let stdout = ok(&out);
    let web_port = nifi
        .url()
        .split("://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let web_port = web_port.rsplit_once(':').unwrap().1;
    assert!(
        stdout.lines().any(|l| l
            .split_whitespace()
            .next()
            .unwrap_or("")
            .ends_with(&format!(":{web_port}"))),
        "{stdout}"
    );
}

/// Secrets only come from the environment: a missing variable is named (never a value), and
/// a PKCS#12 problem names the file. No NiFi needed: these fail before any connection.
#[test]
fn secrets_come_from_named_environment_variables() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_s2s"));
        cmd.args(args)
            .env_remove("S2S_PKCS12_PASSWORD")
            .env_remove("NIFI_PASSWORD")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let base = ["peers", "--url", "https://127.0.0.1:1/nifi"];
    let e = run(
        &[&base[..], &["--pkcs12", "/nonexistent/client.p12"]].concat(),
        &[],
    );
    assert!(e.contains("S2S_PKCS12_PASSWORD"), "{e}");
    let e = run(
        &[
            &base[..],
            &[
                "--pkcs12",
                "/nonexistent/client.p12",
                "--pkcs12-password-env",
                "MY_PW",
            ],
        ]
        .concat(),
        &[("MY_PW", "s3cr3t-value")],
    );
    assert!(
        e.contains("/nonexistent/client.p12") && e.contains("cannot read"),
        "{e}"
    );
    assert!(!e.contains("s3cr3t-value"), "{e}");
    let e = run(
        &[&base[..], &["--transport", "http", "--username", "admin"]].concat(),
        &[],
    );
    assert!(e.contains("NIFI_PASSWORD"), "{e}");
    let e = run(
        &[&base[..], &["--token-env", "NO_SUCH_TOKEN_VAR"]].concat(),
        &[],
    );
    assert!(e.contains("NO_SUCH_TOKEN_VAR"), "{e}");
}

/// Stdin above the in-memory threshold (1 MiB) is staged in a temporary file to learn its
/// length, then streamed: NiFi gets every byte, and the temporary file is gone afterwards.
#[tokio::test]
async fn large_stdin_is_staged_and_streamed() {
    let nifi = nifi_or_skip!();
    let port = nifi.input_port("s2s-cli-stdin").await.unwrap();
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_s2s"))
        .args(["send", "--url", nifi.url(), "--port", port.name(), "-"])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&feed));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let text = ok(&out);
    assert!(
        text.contains("committed 1 FlowFiles / 3145728 bytes"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the staging file is removed"
    );
    port.wait_for_queued(1, WAIT).await.unwrap();
    let q = port.queued_flowfiles().await.unwrap();
    assert_eq!(q[0].attributes["filename"], "stdin");
    assert!(q[0].content == data, "content differs");
    port.delete().await.unwrap();
}
