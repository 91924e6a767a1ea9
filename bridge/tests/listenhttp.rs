//! The ListenHTTP-compatible endpoint against a memory sink: header names as the sender wrote
//! them, the header regex, `filename`/legacy attributes, flowfile-v2/v1 bodies, the hold protocol
//! (confirm, unknown id, expiry), HEAD, the throttle, client-certificate DNs and their patterns,
//! and the rejection counts. (Real NiFi senders: `e2e_posthttp.rs`.)

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use s2s_bridge::{Config, FlowFile, MemorySink};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn attr<'a>(ff: &'a FlowFile, k: &str) -> Option<&'a str> {
    ff.attributes
        .iter()
        .find(|(ek, _)| ek == k)
        .map(|(_, v)| v.as_str())
}

fn v3(attrs: &[(&str, &str)], content: &[u8]) -> Vec<u8> {
    let ff = FlowFile {
        attributes: attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        content: bytes::Bytes::copy_from_slice(content),
    };
    let mut b = BytesMut::new();
    s2s_proto::codec::package_v3::encode(&ff, &mut b);
    b.to_vec()
}

fn tar_header(name: &str, size: usize) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A flowfile-v1 package: tar of `flowfile.attributes` (properties XML) and `flowfile.content`.
fn v1(attrs: &[(&str, &str)], content: &[u8]) -> Vec<u8> {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n<!DOCTYPE properties SYSTEM \"http://java.sun.com/dtd/properties.dtd\">\n<properties>\n",
    );
    for (k, v) in attrs {
        xml.push_str(&format!(
            "<entry key=\"{k}\">{}</entry>\n",
            v.replace('&', "&amp;").replace('<', "&lt;")
        ));
    }
    xml.push_str("</properties>\n");
    let pad = |out: &mut Vec<u8>| out.resize(out.len().div_ceil(512) * 512, 0);
    let mut out = tar_header("flowfile.attributes", xml.len());
    out.extend_from_slice(xml.as_bytes());
    pad(&mut out);
    out.extend(tar_header("flowfile.content", content.len()));
    out.extend_from_slice(content);
    pad(&mut out);
    out.resize(out.len() + 1024, 0);
    out
}

fn cfg(regex: Option<&str>) -> Config {
    let mut c = Config {
        shutdown_timeout_ms: 1000,
        ..Config::default()
    };
    c.listen_http.header_regex = regex.map(str::to_owned);
    c
}

async fn wait_delivered(sink: &MemorySink, n: usize) -> Vec<FlowFile> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let d = sink.delivered();
        if d.len() >= n || Instant::now() > until {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends raw requests on one keep-alive connection; returns each (status, head).
async fn raw_requests(addr: std::net::SocketAddr, requests: &[Vec<u8>]) -> Vec<(u16, String)> {
    use tokio::io::AsyncReadExt;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut out = Vec::new();
    for r in requests {
        s.write_all(r).await.expect("write");
        // Read one response head + Content-Length body.
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            assert!(s.read_buf(&mut buf).await.expect("read") > 0, "closed");
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            assert!(s.read_buf(&mut buf).await.expect("read") > 0);
        }
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        out.push((status, head));
    }
    out
}

/// ListenHTTP keeps the sender's spelling of header names and matches its regex against it,
/// whole name, case-sensitive — on fixed-length and chunked requests sharing one connection.
#[tokio::test]
async fn header_names_keep_the_senders_case() {
    let sink = MemorySink::new();
    let b = start(cfg(Some("tenantId|X-[A-Z].*|lower")), sink.clone());
    let body = b"hello";
    let r1 = format!(
        "POST /contentListener HTTP/1.1\r\nHost: x\r\ntenantId: t1\r\nX-Trace-Id: a\r\nx-lower-start: no\r\nLOWER: no\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes()
    .into_iter()
    .chain(body.iter().copied())
    .collect::<Vec<u8>>();
    let r2 = b"POST /contentListener HTTP/1.1\r\nHost: x\r\nTENANTID: shouting\r\nlower: yes\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec();
    let got = raw_requests(b.addr, &[r1, r2]).await;
    assert_eq!(got[0].0, 200, "{got:?}");
    assert_eq!(got[1].0, 200, "{got:?}");
    let d = wait_delivered(&sink, 2).await;
    assert_eq!(d.len(), 2);
    let (a, c) = if d[0].content.as_ref() == b"hello" {
        (&d[0], &d[1])
    } else {
        (&d[1], &d[0])
    };
    assert_eq!(attr(a, "tenantId"), Some("t1"));
    assert_eq!(attr(a, "X-Trace-Id"), Some("a"));
    assert_eq!(attr(a, "tenantid"), None);
    assert_eq!(attr(a, "x-lower-start"), None, "case-sensitive");
    assert_eq!(attr(a, "LOWER"), None, "case-sensitive");
    assert_eq!(
        attr(a, "restlistener.request.uri"),
        Some("/contentListener")
    );
    assert_eq!(
        attr(a, "restlistener.remote.source.host"),
        Some("127.0.0.1")
    );
    assert_eq!(attr(a, "restlistener.remote.user.dn"), Some("none"));
    assert_eq!(attr(a, "restlistener.remote.issuer.dn"), Some("none"));
    assert_eq!(c.content.as_ref(), b"abc");
    assert_eq!(attr(c, "TENANTID"), None, "regex is case-sensitive");
    assert_eq!(attr(c, "lower"), Some("yes"));
    b.shutdown().await;
}

/// `filename` header overrides the package's; a package's uuid is dropped; without a protocol
/// version header (a legacy sender) `nf.file.name`/`nf.file.path` become `filename`/`path`.
#[tokio::test]
async fn filename_uuid_and_legacy_attributes() {
    let sink = MemorySink::new();
    let b = start(cfg(None), sink.clone());
    let http = reqwest::Client::new();
    let pkg = v3(
        &[
            ("filename", "in-package"),
            ("uuid", "11111111-1111-1111-1111-111111111111"),
            ("nf.file.name", "legacy-name"),
            ("nf.file.path", "legacy/path"),
        ],
        b"one",
    );
    let r = http
        .post(b.url("/contentListener"))
        .header("content-type", "application/flowfile-v3")
        .header("x-nifi-transfer-protocol-version", "3")
        .header("filename", "from-header")
        .body(pkg.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d = wait_delivered(&sink, 1).await;
    assert_eq!(attr(&d[0], "filename"), Some("from-header"));
    assert_eq!(attr(&d[0], "uuid"), None);
    assert_eq!(attr(&d[0], "nf.file.name"), Some("legacy-name"));
    // Legacy sender (no protocol version), blank filename header.
    let r = http
        .post(b.url("/contentListener"))
        .header("content-type", "application/flowfile-v3")
        .header("filename", "  ")
        .body(pkg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d = wait_delivered(&sink, 2).await;
    assert_eq!(attr(&d[1], "filename"), Some("legacy-name"));
    assert_eq!(attr(&d[1], "path"), Some("legacy/path"));
    assert_eq!(attr(&d[1], "nf.file.name"), None);
    b.shutdown().await;
}

/// flowfile-v2 (several packages, gzip) and v1 (tar) bodies; HEAD advertises all three;
/// malformed packages are refused with 500 and counted.
#[tokio::test]
async fn v2_v1_gzip_and_head() {
    let sink = MemorySink::new();
    let b = start(cfg(None), sink.clone());
    let http = reqwest::Client::new();
    let head = http.head(b.url("/contentListener")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let accept = head.headers()["accept"].to_str().unwrap().to_owned();
    for t in [
        "application/flowfile-v3",
        "application/flowfile-v2",
        "application/flowfile-v1",
    ] {
        assert!(accept.contains(t), "{accept}");
    }
    assert_eq!(head.headers()["x-nifi-transfer-protocol-version"], "3");
    assert_eq!(head.headers()["accept-encoding"], "gzip");

    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let mut v2 = v3(&[("filename", "a")], b"first")[7..].to_vec();
    v2.extend_from_slice(&v3(&[("filename", "b")], &big)[7..]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &v2).unwrap();
    let r = http
        .post(b.url("/contentListener"))
        .header("content-type", "application/flowfile-v2")
        .header("flowfile-gzipped", "true")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(b.url("/contentListener"))
        .header("content-type", "application/flowfile")
        .body(v1(&[("filename", "c & <d>"), ("k", "v")], b"tarred"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let d = wait_delivered(&sink, 3).await;
    assert_eq!(d.len(), 3);
    let by = |f: &str| {
        d.iter()
            .find(|x| attr(x, "filename") == Some(f))
            .unwrap_or_else(|| panic!("{f}"))
    };
    assert_eq!(by("a").content.as_ref(), b"first");
    assert_eq!(by("b").content.as_ref(), &big[..]);
    assert_eq!(by("c & <d>").content.as_ref(), b"tarred");
    assert_eq!(attr(by("c & <d>"), "k"), Some("v"));

    for (ct, body) in [
        ("application/flowfile-v2", vec![0u8; 20]),
        ("application/flowfile-v1", vec![b'x'; 1500]),
        ("application/flowfile-v3", b"NiFiFF3\x00".to_vec()),
    ] {
        let r = http
            .post(b.url("/contentListener"))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500, "{ct}");
    }
    let m = http
        .get(b.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.lines().any(|l| l.starts_with("bridge_rejections")
            && l.contains("MALFORMED")
            && l.ends_with(" 3")),
        "{m}"
    );
    assert_eq!(sink.delivered().len(), 3, "nothing of the malformed bodies");
    b.shutdown().await;
}

/// The hold protocol: 303 + Location + intent, nothing delivered until DELETE, then exactly
/// once; an unknown (or already confirmed) id is 404; an expired hold is never delivered.
#[tokio::test]
async fn hold_protocol_confirm_unknown_and_expiry() {
    let sink = MemorySink::new();
    let mut c = cfg(None);
    c.listen_http.hold_timeout_ms = 1500;
    let b = start(c, sink.clone());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |body: &'static [u8]| {
        http.post(b.url("/contentListener"))
            .header("content-type", "application/flowfile-v3")
            .header("x-prefer-acknowledge-uri", "true")
            .body(v3(&[("filename", "held")], body))
            .send()
    };
    let r = post(b"held content").await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/contentListener/holds/"),
        "{location}"
    );
    assert_eq!(r.headers()["x-location-uri-intent"], "flowfile-hold");
    assert_eq!(r.text().await.unwrap(), location);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.delivered().is_empty(), "held, not delivered");
    let del = http.delete(b.url(&location)).send().await.unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(sink.delivered().len(), 1);
    assert_eq!(sink.delivered()[0].content.as_ref(), b"held content");
    let again = http.delete(b.url(&location)).send().await.unwrap();
    assert_eq!(again.status(), 404, "confirmed once");
    let unknown = http
        .delete(b.url("/contentListener/holds/00000000-0000-4000-8000-000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // Never confirmed: released after hold_timeout_ms, never delivered, DELETE then 404.
    let r = post(b"expires").await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let late = http.delete(b.url(&location)).send().await.unwrap();
    assert_eq!(late.status(), 404);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sink.delivered().len(),
        1,
        "the expired hold was not delivered"
    );
    b.shutdown().await;
}

/// `max_bytes_per_sec` throttles the ListenHTTP path: 600 KB at 300 KB/s take about 2 s.
/// (A bound on the low side only: the throttle must not let it through faster.)
#[tokio::test]
async fn throttle_bounds_the_rate() {
    let sink = MemorySink::new();
    let mut c = cfg(None);
    c.listen_http.max_bytes_per_sec = Some(300_000);
    let b = start(c, sink.clone());
    let t = Instant::now();
    let r = reqwest::Client::new()
        .post(b.url("/contentListener"))
        .body(vec![1u8; 600_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(sink.delivered()[0].content.len(), 600_000);
    b.shutdown().await;
}

/// PostHTTP's default batch (100 MB of content) of small FlowFiles is far more than the
/// WebSocket/JSON `max_records` (10,000): ListenHTTP takes it, so the bridge does too — its
/// ListenHTTP requests are capped by `max_packages` (default 1,000,000), which still refuses
/// (413, counted) what exceeds it.
#[tokio::test]
async fn a_posthttp_sized_batch_is_not_capped_by_max_records() {
    const N: usize = 30_000;
    let sink = MemorySink::new();
    let b = start(cfg(None), sink.clone());
    let mut body = Vec::with_capacity(N * 64);
    for i in 0..N {
        body.extend(v3(&[("filename", &format!("f{i}"))], b"x"));
    }
    let http = reqwest::Client::new();
    let r = http
        .post(b.url("/contentListener"))
        .header("content-type", "application/flowfile-v3")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let got = wait_delivered(&sink, N).await;
    assert_eq!(got.len(), N);
    assert_eq!(
        attr(&got[N - 1], "filename"),
        Some(format!("f{}", N - 1).as_str())
    );
    b.shutdown().await;

    let sink = MemorySink::new();
    let mut c = cfg(None);
    c.limits.max_packages = 100;
    let b = start(c, sink.clone());
    let mut body = Vec::new();
    for i in 0..101 {
        body.extend(v3(&[("filename", &format!("f{i}"))], b"x"));
    }
    let r = http
        .post(b.url("/contentListener"))
        .header("content-type", "application/flowfile-v3")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(sink.delivered().is_empty());
    b.shutdown().await;
}

/// ListenHTTP's "Return Code": the status a committed POST is answered with (2xx only).
#[tokio::test]
async fn configured_return_code_answers_a_committed_post() {
    let sink = MemorySink::new();
    let mut c = cfg(None);
    c.listen_http.return_code = 202;
    let b = start(c, sink.clone());
    let r = reqwest::Client::new()
        .post(b.url("/contentListener"))
        .header("filename", "rc.txt")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let got = wait_delivered(&sink, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].content[..], b"payload");
    b.shutdown().await;

    let mut bad = cfg(None);
    bad.listen_http.return_code = 500;
    assert!(bad.validate().is_err(), "a non-2xx return code is refused");
}
