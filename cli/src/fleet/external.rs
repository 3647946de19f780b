//! Infrastructure someone else runs: `--infra external` takes its URLs from
//! the environment; `--infra compose` starts it with `docker compose` (the
//! containers publish on loopback ports from the profile) and then treats it
//! the same way. Either way we wait for it, bootstrap it, and run the
//! services here as with the native provider.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::boot::{Boot, finish};
use super::postgres::{ADMIN_USER, PgAdmin};
use super::profile::Dependency;
use super::ready::{self, Watch};
use super::state::{Endpoints, FleetState, InfraMode};
use super::{Ctx, Secrets, vault};

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

pub fn env_endpoints() -> Result<Endpoints> {
    Ok(super::boot::endpoints(
        var("STOREFRONT_POSTGRES_URL")?,
        var("STOREFRONT_REDIS_URL")?,
        var("STOREFRONT_AMQP_URL")?,
        var("STOREFRONT_VAULT_ADDR")?,
        var("STOREFRONT_VAULT_TOKEN")?,
    ))
}

pub fn compose_project(ctx: &Ctx) -> String {
    format!("storefront-{}", ctx.profile.port_base)
}

pub fn compose_endpoints(ctx: &Ctx, secrets: &Secrets) -> Endpoints {
    let p = ctx.profile.ports();
    super::boot::endpoints(
        format!(
            "postgres://{ADMIN_USER}:{}@127.0.0.1:{}/postgres",
            secrets.pg_admin_password, p.postgres
        ),
        format!("redis://127.0.0.1:{}/", p.redis),
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", p.amqp),
        format!("http://127.0.0.1:{}", p.vault),
        secrets.vault_root_token.clone(),
    )
}

fn compose(ctx: &Ctx, project: &str) -> Command {
    let mut c = Command::new("docker");
    c.arg("compose")
        .arg("-f")
        .arg(ctx.root.join("compose.yaml"))
        .args(["-p", project]);
    c
}

/// Runs `docker compose up -d --wait` for the infra containers.
fn compose_up(ctx: &Ctx, project: &str, secrets: &Secrets) -> Result<()> {
    let p = ctx.profile.ports();
    let out = compose(ctx, project)
        .args(["up", "-d", "--wait", "postgres", "redis", "rabbitmq", "openbao"])
        .env("SF_PG_PORT", p.postgres.to_string())
        .env("SF_REDIS_PORT", p.redis.to_string())
        .env("SF_AMQP_PORT", p.amqp.to_string())
        .env("SF_VAULT_PORT", p.vault.to_string())
        .env("SF_PG_PASSWORD", &secrets.pg_admin_password)
        .env("SF_VAULT_TOKEN", &secrets.vault_root_token)
        .output()
        .context("failed to run `docker compose` (is Docker installed? the default --infra native needs none)")?;
    if !out.status.success() {
        bail!(
            "docker compose up failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `docker compose down` for a compose fleet (no-op otherwise).
pub fn compose_down(state: &FleetState, ctx: &Ctx, purge: bool) -> Result<()> {
    let Some(project) = &state.compose_project else {
        return Ok(());
    };
    let mut c = compose(ctx, project);
    c.arg("down");
    if purge {
        c.arg("-v");
    }
    let out = c.output().context("failed to run `docker compose down`")?;
    if !out.status.success() {
        bail!(
            "docker compose down failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Waits for each dependency, bootstraps Postgres and Vault, opens the gates.
pub async fn infra(b: &Boot<'_>, mode: InfraMode, secrets: &mut Secrets) -> Result<()> {
    let step = b.progress.component("infra");
    let run = async {
        let t = Instant::now();
        if mode == InfraMode::Compose {
            step.stage("docker compose up --wait");
            let (ctx, project, s) = (
                b.ctx.clone(),
                super::external::compose_project(b.ctx),
                secrets.clone(),
            );
            tokio::task::spawn_blocking(move || compose_up(&ctx, &project, &s)).await??;
        }
        let e = b.record.snapshot().endpoints;
        let pg = PgAdmin::from_url(&e.postgres_admin_url)?;
        let watch = |what| Watch {
            what,
            pid: None,
            log: None,
        };

        step.stage("postgres");
        let took = ready::poll(watch("postgres"), b.deadline, || {
            super::postgres::check(&e.postgres_admin_url)
        })
        .await?;
        let notes = super::boot::prepare_postgres(b, &pg, secrets).await?;
        b.record
            .known("postgres", redact(&e.postgres_admin_url), took, Some(notes))?;
        b.gates.open(Dependency::Postgres);

        step.stage("redis");
        let took = ready::poll(watch("redis"), b.deadline, || {
            super::native::redis_ping(&e.redis_url)
        })
        .await?;
        b.record.known("redis", redact(&e.redis_url), took, None)?;
        b.gates.open(Dependency::Redis);

        step.stage("rabbitmq");
        let amqp = reqwest::Url::parse(&e.amqp_url).context("STOREFRONT_AMQP_URL")?;
        let (host, port) = (
            amqp.host_str().unwrap_or("127.0.0.1").to_owned(),
            amqp.port().unwrap_or(5672),
        );
        let took = ready::poll(watch("rabbitmq"), b.deadline, || {
            super::rabbit::check_at(&host, port)
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
        let pg_from_vault = match (mode, std::env::var("STOREFRONT_VAULT_PG_ADDR")) {
            (_, Ok(addr)) => addr,
            (InfraMode::Compose, _) => "postgres:5432".into(),
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
        anyhow::Ok(t.elapsed())
    };
    finish(&step, run.await)
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
