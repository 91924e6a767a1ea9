//! The `s2s` binary's exit codes (sysexits, see `s2s --help`), one test per code that can be
//! produced here: a refused port (75), an untrusted TLS server (76), no RAW port advertised (78),
//! bad usage (64), and an unknown port on the real NiFi (69; skipped without NiFi unless
//! `S2S_E2E=1`).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use nifi_testkit::nifi_or_skip;

fn s2s(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_s2s"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn s2s");
    child.stdin.take().unwrap().write_all(b"x").unwrap();
    child.wait_with_output().expect("wait")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A blocking HTTP server answering every request with `body` (JSON), on its own thread.
fn discovery(body: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A TLS server with a self-signed certificate for `localhost`, on its own thread.
fn untrusted_tls() -> u16 {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            // Handshake until the client gives up (it rejects the certificate).
            while conn.complete_io(&mut s).is_ok() && conn.is_handshaking() {}
        }
    });
    port
}

#[test]
fn refused_connection_exits_75_tempfail() {
    let url = format!("http://127.0.0.1:{}/nifi", free_port());
    let out = s2s(&["send", "--url", &url, "--port", "in", "--timeout", "5", "-"]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
}

#[test]
fn untrusted_certificate_exits_76_and_says_why_once() {
    let url = format!("https://localhost:{}/nifi", untrusted_tls());
    let out = s2s(&["send", "--url", &url, "--port", "in", "--timeout", "5", "-"]);
    assert_eq!(code(&out), 76, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("TLS"), "{err}");
    assert_eq!(err.matches("UnknownIssuer").count(), 1, "{err}");
}

#[test]
fn no_raw_port_advertised_exits_78_config() {
    let http = discovery(
        r#"{"controller":{"siteToSiteSecure":false,"inputPorts":[{"id":"p-1","name":"in","state":"RUNNING"}]}}"#,
    );
    let url = format!("http://127.0.0.1:{http}/nifi");
    let out = s2s(&[
        "send",
        "--url",
        &url,
        "--port",
        "in",
        "--single-node",
        "--timeout",
        "5",
        "-",
    ]);
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    assert!(stderr(&out).contains("RAW"), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_64_and_help_lists_the_codes() {
    let out = s2s(&["send", "--no-such-flag"]);
    assert_eq!(code(&out), 64, "{}", stderr(&out));
    let out = s2s(&[
        "send",
        "--url",
        "http://127.0.0.1:1/nifi",
        "--port",
        "in",
        "-a",
        "novalue",
        "-",
    ]);
    assert_eq!(code(&out), 64, "{}", stderr(&out));
    let out = s2s(&["--help"]);
    assert_eq!(code(&out), 0);
    let help = String::from_utf8_lossy(&out.stdout);
    for c in ["75", "76", "77", "78", "69", "64"] {
        assert!(
            help.contains(&format!("  {c}  ")),
            "{c} missing in:\n{help}"
        );
    }
}

#[tokio::test]
async fn unknown_port_on_real_nifi_exits_69_unavailable() {
    let nifi = nifi_or_skip!();
    let out = s2s(&[
        "send",
        "--url",
        nifi.url(),
        "--port",
        "no-such-port-exit-codes",
        "-",
    ]);
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown port"), "{}", stderr(&out));
}
