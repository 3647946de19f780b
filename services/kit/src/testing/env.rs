//! The servers a test runs against and its own schema on them.

use std::str::FromStr;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::Service;

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
}
