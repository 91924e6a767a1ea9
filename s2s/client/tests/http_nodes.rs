//! HTTP transport over two fake NiFi nodes (axum): every request of a transaction goes to the
//! node that created it (its `Location`), transactions spread over both nodes, and a node that
//! refuses connections is penalized and skipped (issue 11).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::BytesMut;
use s2s::{Client, FlowFile, Transport};
use s2s_proto::codec::flowfile::FlowFileDecoder;

/// One fake node: its own port, the other node's port (for the peer list), what it saw.
#[derive(Default)]
struct Node {
    port: u16,
    other: u16,
    /// (method, path) of every request, in order.
    requests: Vec<(String, String)>,
    /// Transactions created here, and FlowFiles committed here.
    created: Vec<String>,
    committed: Vec<FlowFile>,
    /// FlowFiles received per transaction, until committed.
    pending: std::collections::HashMap<String, Vec<FlowFile>>,
}

type S = Arc<Mutex<Node>>;

async fn record(State(s): State<S>, method: Method, uri: Uri) -> StatusCode {
    s.lock()
        .unwrap()
        .requests
        .push((method.to_string(), uri.path().to_owned()));
    StatusCode::NOT_FOUND
}

fn log(s: &S, method: &str, uri: &Uri) {
    s.lock()
        .unwrap()
        .requests
        .push((method.to_owned(), uri.path().to_owned()));
}

async fn site(State(s): State<S>, uri: Uri) -> Response {
    log(&s, "GET", &uri);
    let port = s.lock().unwrap().port;
    axum::Json(serde_json::json!({"controller":{
        "remoteSiteHttpListeningPort": port, "siteToSiteSecure": false,
        "inputPorts":[{"id":"in-id","name":"in","state":"RUNNING"}],"outputPorts":[]}}))
    .into_response()
}

async fn peers(State(s): State<S>, uri: Uri) -> Response {
    log(&s, "GET", &uri);
    let (port, other) = {
        let n = s.lock().unwrap();
        (n.port, n.other)
    };
    axum::Json(serde_json::json!({"peers":[
        {"hostname":"127.0.0.1","port":port,"secure":false,"flowFileCount":0},
        {"hostname":"127.0.0.1","port":other,"secure":false,"flowFileCount":0}]}))
    .into_response()
}

async fn create(State(s): State<S>, uri: Uri) -> Response {
    log(&s, "POST", &uri);
    let (port, id) = {
        let mut n = s.lock().unwrap();
        let id = format!("tx-{}-{}", n.port, n.created.len());
        n.created.push(id.clone());
        (n.port, id)
    };
    let loc = format!(
        "http://127.0.0.1:{port}/nifi-api/data-transfer/input-ports/in-id/transactions/{id}"
    );
    (
        StatusCode::CREATED,
        [
            ("location", loc.as_str()),
            ("x-location-uri-intent", "transaction-url"),
            ("x-nifi-site-to-site-server-transaction-ttl", "30"),
        ],
        "",
    )
        .into_response()
}

async fn flow_files(State(s): State<S>, Path(id): Path<String>, uri: Uri, body: Bytes) -> Response {
    log(&s, "POST", &uri);
    let mut buf = BytesMut::from(&body[..]);
    let mut ffs = Vec::new();
    while !buf.is_empty() {
        match FlowFileDecoder::default().decode(&mut buf) {
            Ok(Some(ff)) => ffs.push(ff),
            _ => return StatusCode::BAD_REQUEST.into_response(),
        }
    }
    let crc = s2s_proto::stream::checksum(&ffs);
    let mut n = s.lock().unwrap();
    if !n.created.contains(&id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    n.pending.insert(id, ffs);
    (StatusCode::ACCEPTED, crc.to_string()).into_response()
}

async fn finish(State(s): State<S>, Path(id): Path<String>, uri: Uri) -> Response {
    log(&s, "DELETE", &uri);
    let mut n = s.lock().unwrap();
    let Some(ffs) = n.pending.remove(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let count = ffs.len();
    n.committed.extend(ffs);
    axum::Json(
        serde_json::json!({"responseCode": 13, "message": "finished", "flowFileSent": count}),
    )
    .into_response()
}

async fn node(other: u16, listener: tokio::net::TcpListener) -> S {
    let s: S = Arc::default();
    {
        let mut n = s.lock().unwrap();
        n.port = listener.local_addr().unwrap().port();
        n.other = other;
    }
    let app = Router::new()
        .route("/nifi-api/site-to-site", get(site))
        .route("/nifi-api/site-to-site/peers", get(peers))
        .route(
            "/nifi-api/data-transfer/input-ports/in-id/transactions",
            post(create),
        )
        .route(
            "/nifi-api/data-transfer/input-ports/in-id/transactions/{id}/flow-files",
            post(flow_files),
        )
        .route(
            "/nifi-api/data-transfer/input-ports/in-id/transactions/{id}",
            axum::routing::delete(finish),
        )
        .fallback(any(record))
        .with_state(s.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    s
}

fn ff(i: u32) -> FlowFile {
    FlowFile::new(format!("ff {i}")).with_attribute("i", i.to_string())
}

#[tokio::test]
async fn http_transactions_stay_on_the_node_that_created_them() {
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (pa, pb) = (
        la.local_addr().unwrap().port(),
        lb.local_addr().unwrap().port(),
    );
    let a = node(pb, la).await;
    let b = node(pa, lb).await;
    let client = Client::builder(format!("http://127.0.0.1:{pa}/nifi"))
        .transport(Transport::Http)
        .send_batch_count(5)
        .build()
        .unwrap();
    let ffs: Vec<FlowFile> = (0..100).map(ff).collect();
    let report = client.send_batch_report("in", ffs.clone()).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.summary.transactions, 20);
    for (name, n, port) in [("a", &a, pa), ("b", &b, pb)] {
        let n = n.lock().unwrap();
        assert!(!n.created.is_empty(), "node {name} created no transaction");
        assert!(
            n.pending.is_empty(),
            "node {name}: uncommitted {:?}",
            n.pending.keys()
        );
        // Every transaction URL this node was asked about is one it created: no request of a
        // transaction created elsewhere reached it.
        for (m, path) in &n.requests {
            if let Some(rest) =
                path.strip_prefix("/nifi-api/data-transfer/input-ports/in-id/transactions/")
            {
                let id = rest.trim_end_matches("/flow-files");
                assert!(
                    id.starts_with(&format!("tx-{port}-")) && n.created.iter().any(|c| c == id),
                    "node {name} got {m} {path} for a transaction it did not create"
                );
            }
        }
        assert!(
            !n.requests
                .iter()
                .any(|(_, p)| !p.starts_with("/nifi-api/site-to-site")
                    && !p.starts_with("/nifi-api/data-transfer/input-ports/in-id/transactions")),
            "node {name}: unexpected requests {:?}",
            n.requests
        );
    }
    let mut got: Vec<FlowFile> = a.lock().unwrap().committed.clone();
    got.extend(b.lock().unwrap().committed.clone());
    assert_eq!(got.len(), 100);
    got.sort_by_key(|f| f.content.clone());
    let mut want = ffs;
    want.sort_by_key(|f| f.content.clone());
    assert_eq!(got, want);
    eprintln!(
        "transactions per node: a {} b {}",
        a.lock().unwrap().created.len(),
        b.lock().unwrap().created.len()
    );
}

#[tokio::test]
async fn http_node_that_refuses_connections_is_penalized_and_skipped() {
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pa = la.local_addr().unwrap().port();
    // Node b's port: bound and closed, so connections are refused.
    let pb = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = node(pb, la).await;
    let client = Client::builder(format!("http://127.0.0.1:{pa}/nifi"))
        .transport(Transport::Http)
        .penalization(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(client.refresh_peers().await.unwrap().len(), 2);
    // Until the client has picked node b once (weights 50/50): that attempt fails over to a.
    let mut sent = 0u32;
    let dead_status = || {
        client
            .peer_status()
            .into_iter()
            .find(|s| s.peer.port == pb)
            .expect("node b is listed")
    };
    while dead_status().last_error.is_none() {
        client.send_batch("in", vec![ff(sent)]).await.unwrap();
        sent += 1;
        assert!(sent < 200, "node b was never tried");
    }
    let dead = dead_status();
    assert!(dead.penalized_for.is_some(), "{dead:?}");
    assert!(
        dead.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("onnect"),
        "{dead:?}"
    );
    // Penalized for a minute: the next sends all commit on node a while b stays penalized.
    let failures = a.lock().unwrap().requests.len();
    for _ in 0..20 {
        client.send_batch("in", vec![ff(sent)]).await.unwrap();
        sent += 1;
    }
    assert!(a.lock().unwrap().requests.len() > failures);
    assert_eq!(a.lock().unwrap().committed.len(), sent as usize);
    assert!(dead_status().penalized_for.is_some());
}
