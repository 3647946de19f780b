//! The compose provider: `docker compose` runs the infrastructure (the
//! containers publish on loopback ports from the profile); once they are up
//! we wait for, bootstrap and record them as for an external fleet.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures::future::{FutureExt, LocalBoxFuture};

use super::external::attach;
use super::infra::{self, Boot, Infra, finish};
use super::postgres::ADMIN_USER;
use super::state::{Endpoints, FleetState};
use super::{Ctx, Secrets};

/// Where Vault's container reaches Postgres's: by its compose service name.
const VAULT_PG_ADDR: &str = "postgres:5432";

/// Infrastructure in containers of the project `storefront-<port base>`.
pub struct Compose;

impl Infra for Compose {
    fn ports(&self, ctx: &Ctx) -> Vec<(String, u16)> {
        let p = ctx.profile.ports();
        vec![
            ("postgres".into(), p.postgres),
            ("redis".into(), p.redis),
            ("rabbitmq (AMQP)".into(), p.amqp),
            ("vault".into(), p.vault),
        ]
    }

    fn endpoints(&self, ctx: &Ctx, secrets: &Secrets) -> Result<Endpoints> {
        let p = ctx.profile.ports();
        Ok(infra::endpoints(
            format!(
                "postgres://{ADMIN_USER}:{}@127.0.0.1:{}/postgres",
                secrets.pg_admin_password, p.postgres
            ),
            format!("redis://127.0.0.1:{}/", p.redis),
            format!("amqp://guest:guest@127.0.0.1:{}/%2f", p.amqp),
            format!("http://127.0.0.1:{}", p.vault),
            secrets.vault_root_token.clone(),
        ))
    }

    fn compose_project(&self, ctx: &Ctx) -> Option<String> {
        Some(project(ctx))
    }

    fn start<'a>(
        &'a self,
        b: &'a Boot<'a>,
        secrets: &'a mut Secrets,
    ) -> Vec<LocalBoxFuture<'a, Result<()>>> {
        let run = async move {
            let step = b.progress.component("infra");
            let t = Instant::now();
            let r = async {
                step.stage("docker compose up --wait");
                let (ctx, project, s) = (b.ctx.clone(), project(b.ctx), secrets.clone());
                tokio::task::spawn_blocking(move || up(&ctx, &project, &s)).await??;
                attach(b, secrets, &step, Some(VAULT_PG_ADDR)).await
            };
            let r = r.await.map(|()| t.elapsed());
            finish(&step, r)
        };
        vec![run.boxed_local()]
    }

    fn stop(&self, ctx: &Ctx, state: &FleetState, purge: bool) -> Result<()> {
        down(state, ctx, purge)
    }
}

/// The compose project of the fleet on this port base.
pub fn project(ctx: &Ctx) -> String {
    format!("storefront-{}", ctx.profile.port_base)
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
fn up(ctx: &Ctx, project: &str, secrets: &Secrets) -> Result<()> {
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

/// `docker compose down` for a compose fleet (no-op for any other).
pub fn down(state: &FleetState, ctx: &Ctx, purge: bool) -> Result<()> {
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
