//! Infrastructure someone else runs: `--infra external` takes its URLs from
//! the environment, waits for each part, bootstraps Postgres and Vault, and
//! runs the services here as with the native provider. The compose provider
//! starts its containers and then attaches the same way ([`attach`]).

use std::time::Instant;

use anyhow::{Context, Result};
use futures::future::{FutureExt, LocalBoxFuture};

use super::infra::{self, Boot, Infra, finish};
use super::postgres::{self, PgAdmin};
use super::profile::Dependency;
use super::progress::Step;
use super::ready::{self, Watch};
use super::state::Endpoints;
use super::{Ctx, Secrets, rabbit, redis_acl, vault};
/// Environment an external fleet is described by.
pub const ENV: &[(&str, &str)] = &[
    (
        "STOREFRONT_POSTGRES_URL",
        "superuser URL, e.g. postgres://admin:pw@db:5432/postgres",
    ),
    (
        "STOREFRONT_REDIS_URL",
        "e.g. redis://user:pw@cache:6379/; every service that needs Redis gets this URL (no per-service ACL users on infra we don't run)",
    ),
    ("STOREFRONT_AMQP_URL", "e.g. amqp://guest:guest@mq:5672/%2f"),
    ("STOREFRONT_VAULT_ADDR", "e.g. http://vault:8200"),
    (
        "STOREFRONT_VAULT_TOKEN",
        "a token that may mount and configure the database engine, write policies and create orphan tokens (each service gets its own)",
    ),
];

fn var(name: &str) -> Result<String> {
    std::env::var(name).map_err(|_| {
        let what = ENV.iter().find(|(n, _)| *n == name).map_or("", |(_, w)| w);
        anyhow::anyhow!("--infra external needs ${name} ({what})")
    })
}

fn env_endpoints() -> Result<Endpoints> {
    Ok(infra::endpoints(
        var("STOREFRONT_POSTGRES_URL")?,
        var("STOREFRONT_REDIS_URL")?,
        var("STOREFRONT_AMQP_URL")?,
        var("STOREFRONT_VAULT_ADDR")?,
        var("STOREFRONT_VAULT_TOKEN")?,
    ))
}

/// Infrastructure at the URLs of [`ENV`]: we bind no ports and run nothing.
pub struct External;

impl Infra for External {
    fn ports(&self, _ctx: &Ctx) -> Vec<(String, u16)> {
        Vec::new()
    }

    fn endpoints(&self, _ctx: &Ctx, _secrets: &Secrets) -> Result<Endpoints> {
        env_endpoints()
    }

    fn start<'a>(
        &'a self,
        b: &'a Boot<'a>,
        secrets: &'a mut Secrets,
    ) -> Vec<LocalBoxFuture<'a, Result<()>>> {
        let run = async move {
            let step = b.progress.component("infra");
            let t = Instant::now();
            let r = attach(b, secrets, &step, None).await.map(|()| t.elapsed());
            finish(&step, r)
        };
        vec![run.boxed_local()]
    }
}

/// Waits for each dependency at the recorded endpoints, bootstraps Postgres
/// and Vault, and opens the gates, reporting stages on `step`. Vault reaches
/// Postgres at `$STOREFRONT_VAULT_PG_ADDR`, else at `vault_pg` (where a
/// container network names it), else at the admin URL's host and port.
pub async fn attach(
    b: &Boot<'_>,
    secrets: &mut Secrets,
    step: &Step,
    vault_pg: Option<&str>,
) -> Result<()> {
    let e = b.record.snapshot().endpoints;
    let pg = PgAdmin::from_url(&e.postgres_admin_url)?;
    let watch = |what| Watch {
        what,
        pid: None,
        log: None,
    };

    step.stage("postgres");
    let took = ready::poll(watch("postgres"), b.deadline, || {
        postgres::check(&e.postgres_admin_url)
    })
    .await?;
    let notes = infra::prepare_postgres(b, &pg, secrets).await?;
    b.record
        .known("postgres", redact(&e.postgres_admin_url), took, Some(notes))?;
    b.gates.open(Dependency::Postgres);

    step.stage("redis");
    let took = ready::poll(watch("redis"), b.deadline, || redis_acl::ping(&e.redis_url)).await?;
    b.record.known("redis", redact(&e.redis_url), took, None)?;
    b.gates.open(Dependency::Redis);

    step.stage("rabbitmq");
    let amqp = reqwest::Url::parse(&e.amqp_url).context("STOREFRONT_AMQP_URL")?;
    let (host, port) = (
        amqp.host_str().unwrap_or("127.0.0.1").to_owned(),
        amqp.port().unwrap_or(5672),
    );
    let took = ready::poll(watch("rabbitmq"), b.deadline, || {
        rabbit::check_at(&host, port)
    })
    .await?;
    b.record
        .known("rabbitmq", redact(&e.amqp_url), took, None)?;
    b.gates.open(Dependency::Rabbitmq);

    step.stage("vault");
    let took = ready::poll(watch("vault"), b.deadline, || {
        vault::check(b.client, &e.vault_addr)
    })
    .await?;
    let pg_from_vault = match (std::env::var("STOREFRONT_VAULT_PG_ADDR"), vault_pg) {
        (Ok(addr), _) => addr,
        (_, Some(addr)) => addr.to_owned(),
        _ => format!("{}:{}", pg.host, pg.port),
    };
    let v = vault::Vault {
        client: b.client,
        addr: &e.vault_addr,
        token: &e.vault_token,
    };
    v.configure_database(&b.ctx.profile, &pg_from_vault, secrets)
        .await?;
    let mut detail = "database engine configured".to_owned();
    if b.start_services {
        let tokens = v.issue_service_tokens(&b.ctx.profile).await?;
        b.record
            .update(|s| s.endpoints.service_vault_tokens = tokens)?;
        detail.push_str(", service tokens issued");
    }
    b.record
        .known("vault", e.vault_addr.clone(), took, Some(detail))?;
    b.gates.open(Dependency::Vault);
    Ok(())
}

/// A URL without its password, for tables and logs.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            super::redact("postgres://a:secret@h:5/db"),
            "postgres://a:***@h:5/db"
        );
        assert_eq!(super::redact("redis://h:6/"), "redis://h:6/");
    }
}
