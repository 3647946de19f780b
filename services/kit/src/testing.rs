//! What every service's integration tests share (feature `testing`, enabled
//! only by the services' `[dev-dependencies]`): one [`spawn_app`] that boots
//! a service's `Application` on an ephemeral loopback port against the real
//! servers named by `TEST_DATABASE_URL`, `TEST_REDIS_URL` and
//! `TEST_AMQP_URL`, in a fresh schema with the service's migrations
//! applied, and [`TestApp::cleanup`] that stops it and drops the schema.
//!
//! Without the URLs a test prints why and passes, so `cargo test` works on a
//! machine without the servers; in CI (`CI` set) a missing URL is a failure
//! (scripts/test.sh boots the servers and sets all three).
//!
//! A service describes itself once, in its `tests/common`, by implementing
//! [`Service`] on a marker type: which servers it needs, its migrations, its
//! settings for a test, and how its `Application` is built, tells its port
//! and runs until told to stop.

// Test support: a broken test environment is reported by panicking with the
// reason, which is how a test fails.
#![allow(clippy::missing_panics_doc)]

use std::fmt::Debug;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use sqlx::PgPool;
/// What [`Service::migrator`] returns (re-exported for services without sqlx).
pub use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::task::JoinHandle;
/// What [`Service::run`] is told to stop by.
pub use tokio_util::sync::CancellationToken;

use crate::Vars;

/// How long a stopped app may take to drain before the test fails.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// A server the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// `TEST_DATABASE_URL`: a role that may create schemas.
    Postgres,
    /// `TEST_REDIS_URL`.
    Redis,
    /// `TEST_AMQP_URL`.
    Amqp,
}

impl Server {
    /// The variable naming it.
    #[must_use]
    pub fn variable(self) -> &'static str {
        match self {
            Self::Postgres => "TEST_DATABASE_URL",
            Self::Redis => "TEST_REDIS_URL",
            Self::Amqp => "TEST_AMQP_URL",
        }
    }
}

/// The URLs of the servers a test needs.
#[derive(Debug, Clone, Default)]
pub struct Infra {
    /// `TEST_DATABASE_URL`, when asked for.
    pub database_url: Option<String>,
    /// `TEST_REDIS_URL`, when asked for.
    pub redis_url: Option<String>,
    /// `TEST_AMQP_URL`, when asked for.
    pub amqp_url: Option<String>,
}

impl Infra {
    /// The URLs of `needs` from the environment, or `None` after saying
    /// which are missing; in CI a missing one is a panic, never a pass.
    #[must_use]
    pub fn from_env(needs: &[Server]) -> Option<Self> {
        Self::from_lookup(needs, |name| std::env::var(name).ok())
    }

    fn from_lookup(needs: &[Server], lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let missing: Vec<&str> = needs
            .iter()
            .map(|s| s.variable())
            .filter(|v| lookup(v).is_none())
            .collect();
        if !missing.is_empty() {
            let names = missing.join(" and ");
            assert!(
                std::env::var_os("CI").is_none(),
                "{names} not set: run the tests through scripts/test.sh"
            );
            eprintln!("skipped: set {names} (scripts/test.sh does) to run against real servers");
            return None;
        }
        let get = |server: Server| {
            needs
                .contains(&server)
                .then(|| lookup(server.variable()))
                .flatten()
        };
        Some(Self {
            database_url: get(Server::Postgres),
            redis_url: get(Server::Redis),
            amqp_url: get(Server::Amqp),
        })
    }

    /// `TEST_DATABASE_URL`; the service must have asked for Postgres.
    #[must_use]
    pub fn database_url(&self) -> &str {
        self.database_url
            .as_deref()
            .expect("the service's Service::SERVERS names Postgres")
    }

    /// `TEST_REDIS_URL`; the service must have asked for Redis.
    #[must_use]
    pub fn redis_url(&self) -> &str {
        self.redis_url
            .as_deref()
            .expect("the service's Service::SERVERS names Redis")
    }

    /// `TEST_AMQP_URL`; the service must have asked for RabbitMQ.
    #[must_use]
    pub fn amqp_url(&self) -> &str {
        self.amqp_url
            .as_deref()
            .expect("the service's Service::SERVERS names Amqp")
    }
}

/// A name no other test uses: `test_<uuid>` with `tag` after `test_`.
#[must_use]
pub fn unique_name(tag: &str) -> String {
    format!("test_{tag}{}", uuid::Uuid::new_v4().simple())
}

/// `url` with the connection's `search_path` set to `schema`.
#[must_use]
pub fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

/// One test's schema in the test database, with migrations applied.
#[derive(Debug)]
pub struct Schema {
    /// Its name (unique per test).
    pub name: String,
    /// A pool on the admin role, outside the schema: to read the ground
    /// truth (name the schema in the SQL) and to drop it afterwards.
    pub admin: PgPool,
    /// `TEST_DATABASE_URL` with `search_path` set to the schema: the app's
    /// `DATABASE_URL`.
    pub url: String,
    /// `TEST_DATABASE_URL`.
    database_url: String,
}

impl Schema {
    /// Creates schema `name` on `database_url` and applies `migrator` in it.
    pub async fn create(database_url: &str, name: String, migrator: &Migrator) -> Self {
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect(database_url)
            .await
            .expect("TEST_DATABASE_URL accepts connections");
        Self::create_with(admin, database_url, name, migrator).await
    }

    /// [`Schema::create`] on an admin pool that already exists (several
    /// schemas of one test share it).
    pub async fn create_with(
        admin: PgPool,
        database_url: &str,
        name: String,
        migrator: &Migrator,
    ) -> Self {
        sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
            .execute(&admin)
            .await
            .expect("the test role may create schemas");
        let schema = Self {
            url: with_search_path(database_url, &name),
            database_url: database_url.to_owned(),
            name,
            admin,
        };
        let pool = schema.pool(1).await;
        migrator
            .run(&pool)
            .await
            .expect("the service's migrations apply to a fresh schema");
        pool.close().await;
        schema
    }

    /// A pool whose connections work in the schema.
    pub async fn pool(&self, max_connections: u32) -> PgPool {
        let options = PgConnectOptions::from_str(&self.database_url)
            .expect("TEST_DATABASE_URL parses")
            .options([("search_path", self.name.as_str())]);
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await
            .expect("TEST_DATABASE_URL accepts connections")
    }

    /// `sql` with `{schema}` replaced by the quoted schema name.
    #[must_use]
    pub fn sql(&self, sql: &str) -> String {
        sql.replace("{schema}", &format!("\"{}\"", self.name))
    }

    /// Drops the schema and everything in it, and closes the admin pool.
    pub async fn drop(self) {
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.name))
            .execute(&self.admin)
            .await
            .expect("the test's schema drops");
        self.admin.close().await;
    }
}

/// What one test's apps share: the servers' URLs, the schema (if the
/// service has migrations) and a unique name for keys and queues (the
/// schema's name). Siblings spawned on one env are replicas, as in a fleet.
#[derive(Debug)]
pub struct TestEnv {
    /// The servers' URLs.
    pub infra: Infra,
    /// The test's schema, when the service has migrations.
    pub schema: Option<Schema>,
    /// Unique to this test: the schema's name, or `test_<uuid>` without one.
    pub name: String,
}

impl TestEnv {
    /// The servers `S` needs and a fresh schema with its migrations; `None`
    /// (after saying why) without the servers' URLs.
    pub async fn create<S: Service>() -> Option<Self> {
        let infra = Infra::from_env(S::SERVERS)?;
        let name = unique_name("");
        let schema = match S::migrator() {
            Some(migrator) => {
                Some(Schema::create(infra.database_url(), name.clone(), migrator).await)
            }
            None => None,
        };
        Some(Self {
            infra,
            schema,
            name,
        })
    }

    /// The schema; the service must have migrations.
    #[must_use]
    pub fn schema(&self) -> &Schema {
        self.schema
            .as_ref()
            .expect("the service's Service::migrator is Some")
    }

    /// The app's `DATABASE_URL` (the schema's), when there is a schema.
    #[must_use]
    pub fn database_url(&self) -> Option<&str> {
        self.schema.as_ref().map(|s| s.url.as_str())
    }
}

/// A service the tests can boot: a marker type in the service's
/// `tests/common` implements it over the service's `Application`.
pub trait Service: Send + Sync + 'static {
    /// The service's `Application`.
    type App: Send + 'static;
    /// Why it could not start or stopped abnormally.
    type Error: Debug + Send + 'static;
    /// `SERVICE_NAME` is `<NAME>-test`.
    const NAME: &'static str;
    /// The servers its tests need.
    const SERVERS: &'static [Server];
    /// Its migrations (`sqlx::migrate!("../../migrations/<service>")` in a
    /// `static`), or `None` without a database.
    fn migrator() -> Option<&'static Migrator>;
    /// Its settings in a test on `env` (`DATABASE_URL`, `REDIS_URL`,
    /// `AMQP_URL` and `BIND_ADDR` are set already).
    fn settings(env: &TestEnv) -> Vec<(String, String)>;
    /// Builds the `Application` from `vars`.
    fn build(vars: Vars) -> impl Future<Output = Result<Self::App, Self::Error>> + Send;
    /// The port the app bound.
    fn port(app: &Self::App) -> u16;
    /// Runs the app until `stop` is cancelled, then drains.
    fn run(
        app: Self::App,
        stop: CancellationToken,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static;
}

/// `[(name, value)]` as owned pairs, for [`Service::settings`].
#[must_use]
pub fn pairs<const N: usize>(items: [(&str, &str); N]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Declares a marker type and its [`Service`] implementation for a service
/// crate whose `startup::Application` has `build(config::Config)`, `port()`
/// and `run_until(signal)`, as every storefront service has:
///
/// ```ignore
/// storefront_kit::test_service! {
///     /// The catalog, as the kit's harness boots it.
///     Catalog: storefront_catalog, "catalog", [Postgres, Redis],
///     migrations "../../migrations/catalog",
///     |env| [("CACHE_KEY_PREFIX", env.name.as_str())]
/// }
/// ```
///
/// Without `migrations "…"` the service gets no schema.
#[macro_export]
macro_rules! test_service {
    (
        $(#[$meta:meta])* $name:ident: $krate:ident, $service:literal, [$($server:ident),*],
        migrations $path:literal, |$env:ident| $settings:expr $(,)?
    ) => {
        $crate::test_service!(@impl $(#[$meta])* $name, $krate, $service, [$($server),*], {
            static MIGRATOR: $crate::testing::Migrator = ::sqlx::migrate!($path);
            Some(&MIGRATOR)
        }, |$env| $settings);
    };
    (
        $(#[$meta:meta])* $name:ident: $krate:ident, $service:literal, [$($server:ident),*],
        |$env:ident| $settings:expr $(,)?
    ) => {
        $crate::test_service!(@impl $(#[$meta])* $name, $krate, $service, [$($server),*], {
            None
        }, |$env| $settings);
    };
    (
        @impl $(#[$meta:meta])* $name:ident, $krate:ident, $service:literal, [$($server:ident),*],
        $migrator:block, |$env:ident| $settings:expr
    ) => {
        $(#[$meta])*
        pub struct $name;

        impl $crate::testing::Service for $name {
            type App = $krate::startup::Application;
            type Error = $krate::startup::AppError;
            const NAME: &'static str = $service;
            const SERVERS: &'static [$crate::testing::Server] =
                &[$($crate::testing::Server::$server),*];

            fn migrator() -> Option<&'static $crate::testing::Migrator> $migrator

            fn settings($env: &$crate::testing::TestEnv) -> Vec<(String, String)> {
                $crate::testing::pairs($settings)
            }

            async fn build(vars: $crate::Vars) -> Result<Self::App, Self::Error> {
                let config = $krate::config::Config::from_vars(&vars);
                Self::App::build(config.expect("the test settings parse")).await
            }

            fn port(app: &Self::App) -> u16 {
                app.port()
            }

            fn run(
                app: Self::App,
                stop: $crate::testing::CancellationToken,
            ) -> impl ::std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
                app.run_until(stop.cancelled_owned())
            }
        }
    };
}

/// Declares `pub struct $wrapper(pub TestApp<$service>)` dereferencing to
/// the kit's [`TestApp`], so a service's `tests/common` can add its own
/// request helpers to it.
#[macro_export]
macro_rules! test_app {
    ($(#[$meta:meta])* $wrapper:ident for $service:ty) => {
        $(#[$meta])*
        pub struct $wrapper(pub $crate::testing::TestApp<$service>);

        impl ::std::ops::Deref for $wrapper {
            type Target = $crate::testing::TestApp<$service>;

            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }
    };
}

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

/// Counter `name` in a Prometheus text exposition, summed over the label
/// sets that contain `labels` ("" for all); 0 if absent.
#[must_use]
pub fn counter(exposition: &str, name: &str, labels: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter(|line| line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `check` until it returns `Some` or `within` passes; the deadline
/// is the assertion, so no test sleeps a fixed time and hopes.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually`] for a condition: whether it held within `within`.
pub async fn until<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(within, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await
    .is_some()
}

/// Deletes the queues `names` and their dead-letter queues on `amqp_url`,
/// as a test's clean-up does; a broker that is gone is no failure here.
#[cfg(feature = "amqp")]
pub async fn delete_queues(amqp_url: &str, names: &[String]) {
    use crate::amqp;
    let url = secrecy::SecretString::from(amqp_url.to_owned());
    if let Ok(connection) = amqp::connect(&url, "test-cleanup").await
        && let Ok(channel) = connection.create_channel().await
    {
        for queue in names {
            for name in [amqp::dead_letter_queue(queue), queue.clone()] {
                channel
                    .queue_delete(name.as_str().into(), Default::default())
                    .await
                    .ok();
            }
        }
        connection.close(200, "OK".into()).await.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_url_is_named_and_the_others_are_kept_only_when_asked_for() {
        let env = |name: &str| (name != "TEST_REDIS_URL").then(|| format!("{name}-value"));
        if std::env::var_os("CI").is_none() {
            assert!(Infra::from_lookup(&[Server::Postgres, Server::Redis], env).is_none());
        }
        let infra = Infra::from_lookup(&[Server::Postgres], env).unwrap();
        assert_eq!(infra.database_url(), "TEST_DATABASE_URL-value");
        assert_eq!(infra.redis_url, None);
        assert_eq!(infra.amqp_url, None);
    }

    #[test]
    fn the_search_path_option_is_appended_after_any_query() {
        assert_eq!(
            with_search_path("postgres://h/db", "s1"),
            "postgres://h/db?options=-c%20search_path%3Ds1"
        );
        assert_eq!(
            with_search_path("postgres://h/db?sslmode=disable", "s1"),
            "postgres://h/db?sslmode=disable&options=-c%20search_path%3Ds1"
        );
    }

    #[test]
    fn a_counter_sums_its_label_sets_and_ignores_longer_names() {
        let text =
            "# TYPE hits counter\nhits{a=\"1\"} 2\nhits{a=\"2\"} 3\nhits_total 100\nhits 1\n";
        assert_eq!(counter(text, "hits", ""), 6.0);
        assert_eq!(counter(text, "hits", "a=\"2\""), 3.0);
        assert_eq!(counter(text, "misses", ""), 0.0);
    }

    #[tokio::test]
    async fn eventually_gives_up_at_the_deadline_and_until_reports_it() {
        let mut calls = 0;
        let found = eventually(Duration::from_millis(50), || {
            calls += 1;
            async { None::<()> }
        })
        .await;
        assert_eq!(found, None);
        assert!(calls >= 2, "{calls}");
        assert!(until(Duration::from_millis(50), || async { true }).await);
    }
}
