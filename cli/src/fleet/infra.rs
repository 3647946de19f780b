//! The provider of a fleet's infrastructure (Postgres, Redis, RabbitMQ,
//! Vault): [`native`](super::native) runs it as child processes,
//! [`compose`](super::compose) with `docker compose`, and
//! [`external`](super::external) only attaches to what someone else runs.
//! `boot` picks one by [`InfraMode`] and drives it through [`Infra`]; what
//! the providers' steps share (the context, bootstrapping Postgres, ending a
//! progress line) is here, so no provider reaches back into `boot`.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::LocalBoxFuture;

use super::progress::{Progress, Step};
use super::record::{Gates, Record};
use super::state::{Endpoints, FleetState};
use super::{Ctx, Secrets, bootstrap, postgres};

#[cfg(doc)]
use super::state::InfraMode;

/// Who runs the infrastructure, as `boot` needs to know it.
pub trait Infra {
    /// Ports on 127.0.0.1 it will bind, by owner, for `up`'s preflight.
    fn ports(&self, ctx: &Ctx) -> Vec<(String, u16)>;

    /// Generates the credentials it hands out that secrets.json lacks yet
    /// (native: a password per Redis ACL user); true if it made any.
    fn prepare_secrets(&self, _ctx: &Ctx, _secrets: &mut Secrets) -> Result<bool> {
        Ok(false)
    }

    /// Where the infrastructure will answer, before any of it is started.
    fn endpoints(&self, ctx: &Ctx, secrets: &Secrets) -> Result<Endpoints>;

    /// The compose project fleet.json records, so `down` can remove it.
    fn compose_project(&self, _ctx: &Ctx) -> Option<String> {
        None
    }

    /// Whether Prometheus joins the fleet (only where we run the processes).
    fn hosts_prometheus(&self) -> bool {
        false
    }

    /// The steps that start (or find) the infrastructure, to run beside the
    /// services: each waits until its part is ready, bootstraps it, and
    /// opens its dependency's gate. Postgres's bootstrap writes new service
    /// passwords into `secrets`.
    fn start<'a>(
        &'a self,
        b: &'a Boot<'a>,
        secrets: &'a mut Secrets,
    ) -> Vec<LocalBoxFuture<'a, Result<()>>>;

    /// What is left to stop once every recorded process has been stopped
    /// (compose: its containers, and with `purge` their volumes).
    fn stop(&self, _ctx: &Ctx, _state: &FleetState, _purge: bool) -> Result<()> {
        Ok(())
    }
}

/// What every infra step gets.
pub struct Boot<'a> {
    pub ctx: &'a Ctx,
    pub record: &'a Record,
    pub gates: &'a Gates,
    pub progress: &'a Progress,
    pub client: &'a reqwest::Client,
    pub deadline: Duration,
    /// Services will run (`up`), so they need their Vault tokens; `bootstrap`
    /// only readies the infra and keeps no record to hand tokens on from.
    pub start_services: bool,
}

/// Ends a step's progress line with how long it took, or its error's first line.
pub fn finish(step: &Step, r: Result<Duration>) -> Result<()> {
    match r {
        Ok(d) => {
            step.done(&format!("ready in {:.1}s", d.as_secs_f64()));
            Ok(())
        }
        Err(e) => {
            step.failed(format!("{e:#}").lines().next().unwrap_or_default());
            Err(e)
        }
    }
}

/// Postgres is reachable: create roles and schemas, run migrations, record
/// the services' URLs. Shared by every provider.
pub async fn prepare_postgres(
    b: &Boot<'_>,
    admin: &postgres::PgAdmin,
    secrets: &mut Secrets,
) -> Result<String> {
    let urls = bootstrap::database(admin, &b.ctx.profile, secrets).await?;
    secrets.save(&b.ctx.state_dir)?;
    let mut applied = 0;
    for svc in &b.ctx.profile.services {
        applied += bootstrap::migrate(&admin.url(postgres::DATABASE), svc)
            .await
            .with_context(|| format!("migrating {}", svc.name))?;
    }
    b.record
        .update(|s| s.endpoints.service_database_urls = urls)?;
    Ok(format!("{applied} migration(s) applied"))
}

/// Endpoints skeleton shared by providers.
pub fn endpoints(
    postgres_admin_url: String,
    redis_url: String,
    amqp_url: String,
    vault_addr: String,
    vault_token: String,
) -> Endpoints {
    Endpoints {
        postgres_admin_url,
        redis_url,
        amqp_url,
        vault_addr,
        vault_token,
        ..Default::default()
    }
}
