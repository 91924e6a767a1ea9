//! Bearer tokens against a fake NiFi (axum): login, the header on discovery, peers and data
//! transfer, renewal at 80% of the JWT's lifetime (before NiFi would refuse it) and once on a
//! 401. The real-NiFi check lives in `secure.rs` (it needs a NiFi with a login provider).

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine as _;

const USER: &str = "admin";
const PASSWORD: &str = "correct horse";
/// Lifetime of the tokens the fake issues.
const LIFETIME: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Fake {
    /// token → when the fake stops accepting it.
    valid: Mutex<Vec<(String, Instant)>>,
    logins: Mutex<u32>,
    refused: Mutex<u32>,
    /// Every Authorization header seen, by "METHOD path".
    seen: Mutex<Vec<(String, Option<String>)>>,
    port: Mutex<u16>,
}

type S = Arc<Fake>;

fn jwt(n: u32) -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let payload = format!(
        r#"{{"sub":"{USER}","iat":{now},"exp":{},"jti":{n}}}"#,
        now + LIFETIME.as_secs()
    );
    format!(
        "{}.{}.sig",
        e.encode(r#"{"alg":"PS512"}"#),
        e.encode(payload)
    )
}

#[derive(serde::Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login(State(s): State<S>, Form(f): Form<LoginForm>) -> Response {
    if f.username != USER || f.password != PASSWORD {
        return (
            StatusCode::BAD_REQUEST,
            "The supplied username and password are not valid.",
        )
            .into_response();
    }
    let n = {
        let mut l = s.logins.lock().unwrap();
        *l += 1;
        *l
    };
    let t = jwt(n);
    s.valid
        .lock()
        .unwrap()
        .push((t.clone(), Instant::now() + LIFETIME));
    (StatusCode::CREATED, t).into_response()
}

/// Records the header; a 401 to answer unless it carries a currently valid token.
fn check(s: &Fake, what: &str, h: &HeaderMap) -> Option<Response> {
    let auth = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.seen.lock().unwrap().push((what.to_owned(), auth.clone()));
    let ok = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| {
            s.valid
                .lock()
                .unwrap()
                .iter()
                .any(|(v, until)| v == t && Instant::now() < *until)
        });
    if ok {
        None
    } else {
        *s.refused.lock().unwrap() += 1;
        Some(
            (
                StatusCode::UNAUTHORIZED,
                "Unable to validate the access token.",
            )
                .into_response(),
        )
    }
}

async fn site(State(s): State<S>, h: HeaderMap) -> Response {
    if let Some(r) = check(&s, "GET site-to-site", &h) {
        return r;
    }
    let port = *s.port.lock().unwrap();
    axum::Json(serde_json::json!({"controller":{
        "remoteSiteHttpListeningPort": port, "siteToSiteSecure": false,
        "inputPorts":[{"id":"in-id","name":"in","state":"RUNNING"}],
        "outputPorts":[{"id":"out-id","name":"out","state":"RUNNING"}]}}))
    .into_response()
}

async fn peers(State(s): State<S>, h: HeaderMap) -> Response {
    if let Some(r) = check(&s, "GET peers", &h) {
        return r;
    }
    let port = *s.port.lock().unwrap();
    axum::Json(serde_json::json!({"peers":[
        {"hostname":"127.0.0.1","port":port,"secure":false,"flowFileCount":0}]}))
    .into_response()
}

async fn create_tx(State(s): State<S>, h: HeaderMap) -> Response {
    if let Some(r) = check(&s, "POST transactions", &h) {
        return r;
    }
    let port = *s.port.lock().unwrap();
    let loc =
        format!("http://127.0.0.1:{port}/nifi-api/data-transfer/input-ports/in-id/transactions/t1");
    (
        StatusCode::CREATED,
        [
            ("location", loc.as_str()),
            ("x-location-uri-intent", "transaction-url"),
            // Short, so the client's keep-alive PUT (every TTL/2) shows up quickly.
            ("x-nifi-site-to-site-server-transaction-ttl", "1"),
        ],
        "",
    )
        .into_response()
}

async fn extend_tx(State(s): State<S>, h: HeaderMap) -> Response {
    if let Some(r) = check(&s, "PUT transaction", &h) {
        return r;
    }
    axum::Json(serde_json::json!({"responseCode": 16, "message": "extended"})).into_response()
}

async fn create_rx(State(s): State<S>, h: HeaderMap) -> Response {
    if let Some(r) = check(&s, "POST receive transactions", &h) {
        return r;
    }
    let port = *s.port.lock().unwrap();
    let loc = format!(
        "http://127.0.0.1:{port}/nifi-api/data-transfer/output-ports/out-id/transactions/t2"
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

/// 200 = nothing to receive (what NiFi answers for an empty queue).
async fn get_flowfiles(State(s): State<S>, h: HeaderMap) -> Response {
    if let Some(r) = check(&s, "GET flow-files", &h) {
        return r;
    }
    StatusCode::OK.into_response()
}

async fn delete_tx(State(s): State<S>, h: HeaderMap) -> Response {
    if let Some(r) = check(&s, "DELETE transaction", &h) {
        return r;
    }
    axum::Json(serde_json::json!({"responseCode": 15, "message": "cancelled"})).into_response()
}

async fn revoke(State(s): State<S>) -> StatusCode {
    s.valid.lock().unwrap().clear();
    StatusCode::NO_CONTENT
}

async fn fake() -> (S, String) {
    let s: S = Arc::default();
    let app = Router::new()
        .route("/nifi-api/access/token", post(login))
        .route("/nifi-api/site-to-site", get(site))
        .route("/nifi-api/site-to-site/peers", get(peers))
        .route(
            "/nifi-api/data-transfer/input-ports/in-id/transactions",
            post(create_tx),
        )
        .route(
            "/nifi-api/data-transfer/input-ports/in-id/transactions/t1",
            axum::routing::delete(delete_tx).put(extend_tx),
        )
        .route(
            "/nifi-api/data-transfer/output-ports/out-id/transactions",
            post(create_rx),
        )
        .route(
            "/nifi-api/data-transfer/output-ports/out-id/transactions/t2/flow-files",
            get(get_flowfiles),
        )
        .route("/revoke", post(revoke))
        .with_state(s.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    *s.port.lock().unwrap() = port;
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (s, format!("http://127.0.0.1:{port}/nifi"))
}

#[tokio::test]
async fn login_token_on_every_request_renewed_before_expiry_and_on_401() {
    let (fake, url) = fake().await;
    let client = s2s::Client::builder(&url)
        .transport(s2s::Transport::Http)
        .site_info_ttl(Duration::ZERO)
        .login(USER, PASSWORD)
        .build()
        .unwrap();
    assert!(!format!("{client:?}").contains(PASSWORD));

    let info = client.site_info().await.unwrap();
    assert_eq!(info.input_ports[0].name, "in");
    assert_eq!(client.logins(), 1);
    assert_eq!(client.http_peers().await.unwrap().len(), 1);
    // A transaction: create, kept open past TTL/2 (keep-alive PUT), then dropped → cancelled
    // with DELETE; all with the token.
    let tx = client.send_transaction("in").await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    drop(tx);
    // A receive with nothing queued: create + GET.
    let mut rx = client.receive("out").await.unwrap();
    assert!(rx.next().await.unwrap().is_none());
    rx.confirm().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|(w, _)| w == "DELETE transaction")
    {
        assert!(Instant::now() < deadline, "no cancel seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.logins(), 1, "one token for all of it");
    {
        let seen = fake.seen.lock().unwrap();
        for what in [
            "GET site-to-site",
            "GET peers",
            "POST transactions",
            "DELETE transaction",
        ] {
            assert!(seen.iter().any(|(w, _)| w == what), "{what} not seen");
        }
        assert!(
            seen.iter()
                .all(|(_, a)| a.as_deref().is_some_and(|a| a.starts_with("Bearer ey"))),
            "{seen:?}"
        );
    }
    assert_eq!(*fake.refused.lock().unwrap(), 0);

    // Past 80% of the 3 s lifetime: renewed before sending (proactively), so NiFi never refused it.
    // A stale site_info() answers from its cache and refreshes in the background (off the hot
    // path): the refresh is the request that logs in again.
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    client.site_info().await.unwrap();
    wait_logins(&client, 2).await;
    assert_eq!(
        *fake.refused.lock().unwrap(),
        0,
        "renewed before NiFi refused it"
    );

    // NiFi forgets every token (restart, key rotation): one 401, one new login, success.
    reqwest::Client::new()
        .post(url.replace("/nifi", "/revoke"))
        .send()
        .await
        .unwrap();
    client.site_info().await.unwrap();
    wait_logins(&client, 3).await;
    assert_eq!(*fake.refused.lock().unwrap(), 1);
}

/// Waits (at most 5 s) until the client has logged in `n` times in all, then checks it is not more.
async fn wait_logins(client: &s2s::Client, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.logins() < n {
        assert!(
            Instant::now() < deadline,
            "{} logins after 5 s, expected {n}",
            client.logins()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.logins(), n);
}

#[tokio::test]
async fn wrong_password_is_unauthorized_naming_the_user_not_the_password() {
    let (_fake, url) = fake().await;
    let client = s2s::Client::builder(&url)
        .login(USER, "wrong-pw-123")
        .build()
        .unwrap();
    let e = client.site_info().await.unwrap_err();
    assert!(e.is_unauthorized(), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("admin") && msg.contains("400"), "{msg}");
    assert!(!msg.contains("wrong-pw-123") && !format!("{e:?}").contains("wrong-pw-123"));
}

#[tokio::test]
async fn given_token_is_sent_as_is_and_a_401_is_not_retried() {
    let (fake, url) = fake().await;
    let client = s2s::Client::builder(&url)
        .bearer_token("eyJnot.valid.here")
        .build()
        .unwrap();
    assert!(!format!("{client:?}").contains("eyJnot"));
    let e = client.site_info().await.unwrap_err();
    assert!(e.is_unauthorized(), "{e:?}");
    assert_eq!(client.logins(), 0);
    assert_eq!(
        *fake.refused.lock().unwrap(),
        1,
        "no retry with the same token"
    );
    assert_eq!(
        fake.seen.lock().unwrap()[0].1.as_deref(),
        Some("Bearer eyJnot.valid.here")
    );
}
