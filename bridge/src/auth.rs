//! Bearer tokens and the origin allow-list.

use std::sync::Arc;

use axum::http::{HeaderMap, header};

use crate::config::TokenConfig;

/// Fixed attributes of an authenticated client.
pub type FixedAttributes = Arc<[(String, String)]>;

struct Token {
    secret: Vec<u8>,
    attributes: FixedAttributes,
}

/// The configured tokens (secrets never printed).
pub struct Auth {
    tokens: Vec<Token>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl Auth {
    /// Resolves the configured tokens (reading `env` ones now).
    pub fn new(cfg: &[TokenConfig]) -> Result<Self, crate::Error> {
        let mut tokens = Vec::new();
        for t in cfg {
            let secret = match (&t.value, &t.env) {
                (Some(v), _) => v.clone(),
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    crate::Error::Config(format!("token environment variable {var} is not set"))
                })?,
                (None, None) => {
                    return Err(crate::Error::Config("token without value or env".into()));
                }
            };
            if secret.is_empty() {
                return Err(crate::Error::Config("empty token".into()));
            }
            let attributes: Vec<(String, String)> = t
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            tokens.push(Token {
                secret: secret.into_bytes(),
                attributes: attributes.into(),
            });
        }
        Ok(Self { tokens })
    }

    /// Whether tokens are required.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks a presented token; `None` = rejected. With authentication off, anything passes.
    pub fn check(&self, presented: Option<&str>) -> Option<FixedAttributes> {
        if !self.enabled() {
            return Some(Arc::from(Vec::new()));
        }
        let presented = presented?.as_bytes();
        // Compare against every token without early exit so timing does not reveal which matched.
        let mut found = None;
        for t in &self.tokens {
            if constant_time_eq(&t.secret, presented) {
                found = Some(t.attributes.clone());
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token from `Authorization: Bearer …`, else from the `access_token` query parameter.
pub fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    {
        return Some(t.trim().to_owned());
    }
    let query = query?;
    url_query_param(query, "access_token")
}

/// Finds and percent-decodes one query parameter.
pub fn url_query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The origin allow-list.
#[derive(Debug, Clone)]
pub struct Origins {
    allowed: Vec<String>,
    any: bool,
}

impl Origins {
    /// From the configured list (`*` allows every origin).
    pub fn new(list: &[String]) -> Self {
        Self {
            any: list.iter().any(|o| o == "*"),
            allowed: list
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a request with this `Origin` (and `Host`) may proceed. Same-origin is always allowed.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        if self.any {
            return true;
        }
        let o = origin.to_ascii_lowercase();
        if self.allowed.contains(&o) {
            return true;
        }
        // Same origin: the Origin's authority equals the Host header.
        match (o.split_once("://"), host) {
            (Some((_, authority)), Some(h)) => authority == h.to_ascii_lowercase(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let cfg = vec![TokenConfig {
            value: Some("s3cret".into()),
            env: None,
            attributes: [("client.name".to_string(), "kiosk".to_string())].into(),
        }];
        let auth = Auth::new(&cfg).expect("auth");
        assert!(auth.check(None).is_none());
        assert!(auth.check(Some("wrong")).is_none());
        let attrs = auth.check(Some("s3cret")).expect("accepted");
        assert_eq!(
            &attrs[..],
            &[("client.name".to_string(), "kiosk".to_string())]
        );
        assert!(Auth::new(&[]).expect("off").check(None).is_some());
    }

    #[test]
    fn query_token_is_percent_decoded() {
        let h = HeaderMap::new();
        assert_eq!(
            presented_token(&h, Some("a=1&access_token=a%2Bb%3D")).as_deref(),
            Some("a+b=")
        );
        assert_eq!(presented_token(&h, Some("a=1")), None);
        assert_eq!(url_query_param("x=%zz", "x").as_deref(), Some("%zz"));
    }

    #[test]
    fn origins() {
        let o = Origins::new(&["https://app.example".into()]);
        assert!(o.allows("https://app.example", Some("bridge:8090")));
        assert!(!o.allows("https://evil.example", Some("bridge:8090")));
        assert!(o.allows("http://bridge:8090", Some("bridge:8090")));
        assert!(Origins::new(&["*".into()]).allows("https://x", None));
    }
}
