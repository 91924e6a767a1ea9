//! Bearer tokens for HTTP S2S (NiFi 2.x single-user / OIDC): a given token, or a JWT obtained
//! from `POST {api}/access/token` and renewed before it expires. NiFi's Java client has no
//! equivalent; the endpoint and its form fields are those NiFi's UI uses to log in.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use tracing::debug;

use crate::error::{Error, Kind};

/// A string that never shows up in `Debug` or `Display`.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(s: String) -> Self {
        Self(s)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the client authenticates HTTP requests.
#[derive(Clone, Debug)]
pub(crate) enum Credentials {
    /// A bearer token given by the user, used as is.
    Token(Secret),
    /// Username and password exchanged for a JWT at `/access/token`.
    Login { username: String, password: Secret },
}

/// Part of the token lifetime after which it is renewed ahead of expiry.
const REFRESH_AT: f64 = 0.8;
/// Longest login answer read (a JWT is well under 4 KiB).
const MAX_TOKEN_LEN: usize = 64 * 1024;

#[derive(Debug)]
struct Cached {
    header: HeaderValue,
    /// When to log in again (None: no `exp` in the token, renewed only on a 401).
    refresh_at: Option<Instant>,
}

/// Hands out the `Authorization` header, logging in (again) when needed.
#[derive(Debug)]
pub(crate) struct TokenSource {
    creds: Credentials,
    http: reqwest::Client,
    /// `{api}/access/token` of the configured NiFi.
    login_url: String,
    timeout: Option<Duration>,
    state: tokio::sync::Mutex<Option<Cached>>,
    logins: std::sync::atomic::AtomicU64,
}

fn bearer(token: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
        Error::invalid_input("the bearer token holds characters not allowed in a header")
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Seconds since the epoch of `exp` (and `iat`) in a JWT's payload; no signature check (the
/// client only needs to know when NiFi will stop accepting it).
pub(crate) fn jwt_times(token: &str) -> Option<(u64, Option<u64>)> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = v.get("exp")?.as_u64()?;
    Some((exp, v.get("iat").and_then(serde_json::Value::as_u64)))
}

/// When to renew a token issued now: at 80% of its remaining (or, with `iat`, total) life.
fn refresh_instant(token: &str, now: Instant, wall: SystemTime) -> Option<Instant> {
    let (exp, iat) = jwt_times(token)?;
    let now_s = wall.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let remaining = exp.saturating_sub(now_s);
    let lifetime = iat
        .map_or(remaining, |i| exp.saturating_sub(i))
        .min(remaining);
    Some(
        now + Duration::from_secs_f64(lifetime as f64 * REFRESH_AT)
            .min(Duration::from_secs(remaining)),
    )
}

impl TokenSource {
    pub(crate) fn new(
        creds: Credentials,
        http: reqwest::Client,
        api_base: &str,
        timeout: Option<Duration>,
    ) -> Self {
        Self {
            creds,
            http,
            login_url: format!("{}/access/token", api_base.trim_end_matches('/')),
            timeout,
            state: tokio::sync::Mutex::new(None),
            logins: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many times the client logged in (for tests and metrics).
    pub(crate) fn logins(&self) -> u64 {
        self.logins.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The header to send now, logging in first when there is no token or it is due.
    pub(crate) async fn header(&self) -> Result<HeaderValue, Error> {
        let mut state = self.state.lock().await;
        if let Some(c) = state.as_ref()
            && c.refresh_at.is_none_or(|t| Instant::now() < t)
        {
            return Ok(c.header.clone());
        }
        let cached = match &self.creds {
            Credentials::Token(t) => Cached {
                header: bearer(t.expose())?,
                refresh_at: None,
            },
            Credentials::Login { username, password } => {
                let token = self.login(username, password).await?;
                Cached {
                    refresh_at: refresh_instant(&token, Instant::now(), SystemTime::now()),
                    header: bearer(&token)?,
                }
            }
        };
        let h = cached.header.clone();
        *state = Some(cached);
        Ok(h)
    }

    /// NiFi refused `used` with 401: forget it so the next [`header`](Self::header) logs in
    /// again. Returns whether a retry can help (false for a fixed token).
    pub(crate) async fn rejected(&self, used: &HeaderValue) -> bool {
        if matches!(self.creds, Credentials::Token(_)) {
            return false;
        }
        let mut state = self.state.lock().await;
        if state.as_ref().is_some_and(|c| c.header == used) {
            *state = None;
        }
        true
    }

    async fn login(&self, username: &str, password: &Secret) -> Result<String, Error> {
        debug!(url = %self.login_url, username, "logging in to NiFi for a bearer token");
        self.logins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut req = self
            .http
            .post(&self.login_url)
            .form(&[("username", username), ("password", password.expose())]);
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                Error::with_source(Kind::Timeout("logging in to NiFi"), e)
            } else {
                Error::with_source(Kind::Io, e)
            }
        })?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| Error::with_source(Kind::Io, e))?;
        if body.len() > MAX_TOKEN_LEN {
            return Err(Error::protocol(format!(
                "login answer of {} bytes is too long for a token",
                body.len()
            )));
        }
        let text = String::from_utf8_lossy(&body).trim().to_owned();
        if !status.is_success() {
            let msg = format!(
                "login as {username:?} at {} answered {status}: {text}",
                self.login_url
            );
            return Err(Error::new(match status.as_u16() {
                400 | 401 | 403 => Kind::Unauthorized(msg),
                // 409: NiFi issues tokens only over HTTPS; 404: no login provider configured.
                _ => Kind::InvalidInput(msg),
            }));
        }
        if text.is_empty() || text.contains(char::is_whitespace) {
            return Err(Error::protocol(
                "login answered something that is not a token",
            ));
        }
        Ok(text)
    }
}

/// Sets the header on `req`.
pub(crate) fn authorize(req: reqwest::RequestBuilder, h: &HeaderValue) -> reqwest::RequestBuilder {
    req.header(AUTHORIZATION, h.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(r#"{"alg":"RS512"}"#),
            e.encode(payload)
        )
    }

    #[test]
    fn reads_exp_and_iat() {
        assert_eq!(
            jwt_times(&jwt(r#"{"exp":200,"iat":100}"#)),
            Some((200, Some(100)))
        );
        assert_eq!(jwt_times(&jwt(r#"{"exp":200}"#)), Some((200, None)));
        assert_eq!(jwt_times(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(jwt_times("not-a-jwt"), None);
        assert_eq!(jwt_times("a.!!!.c"), None);
    }

    #[test]
    fn refresh_at_80_percent_of_lifetime() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let now = Instant::now();
        // Issued now, valid 100 s: renew after 80 s.
        let t = refresh_instant(&jwt(r#"{"exp":1100,"iat":1000}"#), now, wall).unwrap();
        assert_eq!(t - now, Duration::from_secs(80));
        // No iat: 80% of what is left.
        let t = refresh_instant(&jwt(r#"{"exp":1050}"#), now, wall).unwrap();
        assert_eq!(t - now, Duration::from_secs(40));
        // Already expired: renew at once.
        let t = refresh_instant(&jwt(r#"{"exp":900,"iat":800}"#), now, wall).unwrap();
        assert_eq!(t, now);
        assert!(refresh_instant("opaque", now, wall).is_none());
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = Credentials::Login {
            username: "admin".into(),
            password: Secret::new("hunter2".into()),
        };
        let d = format!("{c:?}");
        assert!(d.contains("admin") && !d.contains("hunter2"), "{d}");
        let d = format!("{:?}", Credentials::Token(Secret::new("eyJsecret".into())));
        assert!(!d.contains("eyJsecret"), "{d}");
    }
}
