//! The harness: a real BFF over real HTTP, in front of fake upstreams that
//! count what they receive, with its buckets in a real Redis
//! (`TEST_REDIS_URL`). Each app gets its own Redis key prefix, so tests run
//! in parallel. Without `TEST_REDIS_URL` each test says why and passes; in
//! CI (`CI` set) that is a failure.

#![allow(dead_code)]

pub mod identity;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use storefront_bff::config::Config;
use storefront_bff::startup::Application;
use storefront_kit::Vars;

/// The admin token the test apps use.
pub const TOKEN: &str = "test-admin-token";

/// `TEST_REDIS_URL`, or `None` (after saying why) outside CI.
pub fn redis_url() -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "TEST_REDIS_URL is not set: run the tests through scripts/test.sh"
            );
            eprintln!("skipped: set TEST_REDIS_URL (scripts/test.sh does) to run against Redis");
            None
        }
    }
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

/// A running BFF.
pub struct TestBff {
    pub base: String,
    pub http: reqwest::Client,
}

/// A BFF in front of `catalog` replicas, with `extra` settings.
pub async fn spawn_bff(catalog: &[&Fake], extra: &[(&str, &str)]) -> Option<TestBff> {
    let redis = redis_url()?;
    Some(spawn_bff_on(&redis, catalog, extra).await)
}

/// [`spawn_bff`] with the Redis URL given (tests of an unreachable Redis).
pub async fn spawn_bff_on(redis: &str, catalog: &[&Fake], extra: &[(&str, &str)]) -> TestBff {
    let urls = catalog
        .iter()
        .map(|f| f.base.clone())
        .collect::<Vec<_>>()
        .join(",");
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    let mut vars: Vec<(&str, &str)> = vec![
        ("SERVICE_NAME", "bff-test"),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("REDIS_URL", redis),
        ("CATALOG_URLS", &urls),
        ("RATE_LIMIT_KEY_PREFIX", &prefix),
        ("BFF_ADMIN_TOKEN", TOKEN),
        ("LAB_ENDPOINTS", "true"),
        ("RETRY_BASE_MS", "1"),
        ("RETRY_CAP_MS", "5"),
    ];
    vars.extend_from_slice(extra);
    let config = Config::from_vars(&Vars::from_pairs(vars)).unwrap();
    let app = Application::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    TestBff {
        base,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    }
}

impl TestBff {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

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
        let all: Value = self
            .admin(reqwest::Method::GET, "/admin/breakers")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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
            .admin(reqwest::Method::PUT, "/admin/chaos")
            .json(&json!({"seed": 1, "faults": [{"target": target, "error_rate": 1.0, "error_status": status, "ttl_secs": 60}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// A counter's value in `/metrics` (summed over label sets matching `labels`).
    pub async fn counter(&self, name: &str, labels: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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
