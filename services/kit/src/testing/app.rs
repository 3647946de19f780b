//! A running app of a [`Service`]: booting it on an ephemeral port,
//! requests into a [`Reply`], siblings, crash and clean-up.

use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{STOP_WITHIN, Schema, Service, TestEnv, counter};
use crate::Vars;

/// A running app.
pub struct TestApp<S: Service> {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The port it bound.
    pub port: u16,
    /// What it shares with its siblings; the schema is dropped with the last.
    pub env: Arc<TestEnv>,
    /// A client that never goes through a proxy.
    pub http: reqwest::Client,
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), S::Error>>>,
}

/// An app of `S` on a fresh schema, with `extra` settings over its own;
/// `None` (after saying why) without the servers' URLs.
pub async fn spawn_app<S: Service>(extra: &[(&str, &str)]) -> Option<TestApp<S>> {
    let env = TestEnv::create::<S>().await?;
    Some(TestApp::start(Arc::new(env), extra).await)
}

/// The settings `S` starts with on `env`: the servers' URLs, an ephemeral
/// loopback port, the service's own, then `extra` (a later name wins).
#[must_use]
pub fn settings<S: Service>(env: &TestEnv, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars = vec![
        ("SERVICE_NAME".to_owned(), format!("{}-test", S::NAME)),
        ("BIND_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
    ];
    let urls = [
        ("DATABASE_URL", env.database_url()),
        ("REDIS_URL", env.infra.redis_url.as_deref()),
        ("AMQP_URL", env.infra.amqp_url.as_deref()),
    ];
    for (name, url) in urls {
        if let Some(url) = url {
            vars.push((name.to_owned(), url.to_owned()));
        }
    }
    vars.extend(S::settings(env));
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    vars
}

impl<S: Service> TestApp<S> {
    /// Builds and starts an app of `S` on `env` with `extra` settings.
    pub async fn start(env: Arc<TestEnv>, extra: &[(&str, &str)]) -> Self {
        let vars = Vars::from_pairs(settings::<S>(&env, extra));
        let app = S::build(vars)
            .await
            .unwrap_or_else(|e| panic!("{} does not start: {e:?}", S::NAME));
        let port = S::port(&app);
        let stop = CancellationToken::new();
        let task = tokio::spawn(S::run(app, stop.clone()));
        Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            env,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("a plain HTTP client builds"),
            stop,
            task: Some(task),
        }
    }

    /// A second replica on the same schema and names.
    pub async fn spawn_sibling(&self, extra: &[(&str, &str)]) -> Self {
        Self::start(self.env.clone(), extra).await
    }

    /// The schema; the service must have migrations.
    #[must_use]
    pub fn schema(&self) -> &Schema {
        self.env.schema()
    }

    /// An absolute URL for `path`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request built on [`TestApp::http`]; the whole answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        Reply::read(request.send().await.expect("the app answers")).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path))).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// The value of counter `name` in `/metrics`, summed over the label
    /// sets that contain `labels` ("" for all); 0 if absent. The recorder
    /// is per process, so this counts every app in the test binary.
    pub async fn counter(&self, name: &str, labels: &str) -> f64 {
        let text = self.get("/metrics").await.text();
        counter(&text, name, labels)
    }

    /// Stops the app (waiting for it to drain) and, if no sibling still
    /// uses it, drops the schema.
    pub async fn cleanup(mut self) {
        self.stop_server().await;
        if let Ok(env) = Arc::try_unwrap(self.env)
            && let Some(schema) = env.schema
        {
            schema.drop().await;
        }
    }

    /// Stops the app and waits (at most 10 s) for it to drain; the test
    /// fails if it does not, or if it stopped with an error.
    pub async fn stop_server(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let ended = tokio::time::timeout(STOP_WITHIN, task)
                .await
                .unwrap_or_else(|_| panic!("{} did not stop within {STOP_WITHIN:?}", S::NAME))
                .expect("the server task did not panic");
            if let Err(e) = ended {
                panic!("{} stopped with an error: {e:?}", S::NAME);
            }
        }
    }

    /// Kills the app the hard way: its task is aborted mid-whatever. The
    /// schema stays (a restart on `env` finds what it left).
    pub async fn crash(mut self) -> Arc<TestEnv> {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.env.clone()
    }
}

/// A response as read: status, headers, the body's bytes and its JSON.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The JSON body, or `Null` when there is none.
    pub body: Value,
    /// The body as sent.
    pub bytes: Vec<u8>,
}

impl Reply {
    /// Reads all of `response`.
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .expect("the body arrives whole")
            .to_vec();
        Self {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            bytes,
        }
    }

    /// A header as a string, "" if absent (or not text).
    #[must_use]
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `ETag` header.
    #[must_use]
    pub fn etag(&self) -> String {
        self.header("etag").to_owned()
    }

    /// The body as text.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Whether it is an RFC 9457 problem: the media type, and a JSON body
    /// whose `status` member is the response's status.
    #[must_use]
    pub fn is_problem(&self) -> bool {
        self.header("content-type") == crate::error::PROBLEM_JSON
            && self.body["status"] == self.status.as_u16()
    }
}
