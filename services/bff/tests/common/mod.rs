//! The harness: a real BFF over real HTTP (booted by the kit's
//! [`storefront_kit::testing`]), in front of fake upstreams that
//! count what they receive, with its buckets in a real Redis
//! (`TEST_REDIS_URL`). Each app gets its own Redis key prefix, so tests run
//! in parallel. Without `TEST_REDIS_URL` each test says why and passes; in
//! CI (`CI` set) that is a failure.

#![allow(dead_code)]

pub mod identity;
pub mod session;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use storefront_kit::testing::{self, Infra, Service, TestEnv};

/// The admin token the test apps use.
pub const TOKEN: &str = "test-admin-token";

/// `TEST_REDIS_URL`, or `None` (after saying why) outside CI.
pub fn redis_url() -> Option<String> {
    Infra::from_env(Bff::SERVERS).map(|infra| infra.redis_url().to_owned())
}

/// A fake upstream replica: counts requests, answers with a settable
/// status, and echoes what it received.
pub struct Fake {
    pub base: String,
    pub hits: Arc<AtomicU64>,
    /// The status it answers with (200 by default).
    pub status: Arc<AtomicU16>,
}

impl Fake {
    pub async fn start(name: &'static str) -> Self {
        let hits = Arc::new(AtomicU64::new(0));
        let status = Arc::new(AtomicU16::new(200));
        let (h, s) = (hits.clone(), status.clone());
        let app = Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: HeaderMap,
                  body: String| {
                let (h, s) = (h.clone(), s.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let echoed: serde_json::Map<String, Value> = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                        .collect();
                    let status = StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap();
                    (
                        status,
                        [("etag", "\"v1\""), ("x-cache", "l1"), ("set-cookie", "x=1")],
                        axum::Json(json!({
                            "replica": name,
                            "method": method.as_str(),
                            "uri": uri.to_string(),
                            "headers": echoed,
                            "body": body,
                        })),
                    )
                        .into_response()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, hits, status }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

storefront_kit::test_service! {
    /// The BFF, as the kit's harness boots it.
    Bff: storefront_bff, "bff", [Redis],
    |env| [
        ("RATE_LIMIT_KEY_PREFIX", env.name.as_str()),
        ("BFF_ADMIN_TOKEN", TOKEN),
        ("LAB_ENDPOINTS", "true"),
        ("RETRY_BASE_MS", "1"),
        ("RETRY_CAP_MS", "5"),
    ]
}

storefront_kit::test_app! {
    /// A running BFF.
    TestBff for Bff
}

/// `CATALOG_URLS` naming `catalog`, then `extra`.
fn with_catalog<'a>(urls: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![("CATALOG_URLS", urls)];
    vars.extend_from_slice(extra);
    vars
}

fn catalog_urls(catalog: &[&Fake]) -> String {
    catalog
        .iter()
        .map(|f| f.base.clone())
        .collect::<Vec<_>>()
        .join(",")
}

/// A BFF in front of `catalog` replicas, with `extra` settings.
pub async fn spawn_bff(catalog: &[&Fake], extra: &[(&str, &str)]) -> Option<TestBff> {
    let urls = catalog_urls(catalog);
    testing::spawn_app::<Bff>(&with_catalog(&urls, extra))
        .await
        .map(TestBff)
}

/// [`spawn_bff`] with the Redis URL given (tests of an unreachable Redis).
pub async fn spawn_bff_on(redis: &str, catalog: &[&Fake], extra: &[(&str, &str)]) -> TestBff {
    let env = TestEnv {
        infra: Infra {
            redis_url: Some(redis.to_owned()),
            ..Infra::default()
        },
        schema: None,
        name: testing::unique_name(""),
    };
    let urls = catalog_urls(catalog);
    TestBff(testing::TestApp::start(Arc::new(env), &with_catalog(&urls, extra)).await)
}

impl TestBff {
    /// `GET path` as `session`.
    pub async fn get(&self, path: &str, session: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header("x-session-id", session)
            .send()
            .await
            .unwrap()
    }

    /// An admin request with the token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(TOKEN)
    }

    /// The breaker view of `instance`.
    pub async fn breaker(&self, instance: &str) -> Value {
        let all = self
            .send(self.admin(reqwest::Method::GET, "/admin/breakers"))
            .await
            .body;
        all["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["instance"] == instance)
            .cloned()
            .unwrap_or_else(|| panic!("no {instance} in {all}"))
    }

    /// Sets 100 % errors on `target` for a minute.
    pub async fn fail(&self, target: &str, status: u16) {
        let r = self
            .send(self.admin(reqwest::Method::PUT, "/admin/chaos")
            .json(&json!({"seed": 1, "faults": [{"target": target, "error_rate": 1.0, "error_status": status, "ttl_secs": 60}]})))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// An answer read off the wire by [`TestBff::raw`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether it is an RFC 9457 problem: the media type, and a JSON body
    /// whose `status` member is the response's status.
    pub fn is_problem_json(&self) -> bool {
        self.header("content-type") == Some(storefront_kit::error::PROBLEM_JSON)
            && serde_json::from_str::<Value>(&self.body)
                .is_ok_and(|b| b["status"] == u64::from(self.status))
    }
}

impl TestBff {
    /// `method target` sent byte for byte over a fresh connection. HTTP
    /// clients normalise a URL before sending it (`%2e%2e` segments are
    /// removed, `\` becomes `/`), which is exactly what an attacker's
    /// client does not do; this sends the request-target as written.
    pub async fn raw(
        &self,
        method: &str,
        target: &str,
        extra_headers: &str,
        body: &[u8],
    ) -> RawResponse {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let length = if extra_headers
            .to_ascii_lowercase()
            .contains("content-length:")
        {
            String::new()
        } else {
            format!("content-length: {}\r\n", body.len())
        };
        let head = format!(
            "{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{length}{extra_headers}\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut bytes = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
            .await
            .expect("the BFF answers within 10 s")
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        RawResponse {
            status,
            headers,
            body: body.to_owned(),
        }
    }
}
