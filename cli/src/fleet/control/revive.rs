//! Bringing back what died: a new Vault (configured again, its services
//! restarted with new tokens) and every dead component of a fleet (`up` on
//! a partly dead fleet).

use std::time::Duration;

use anyhow::{Context, Result};

use super::{How, INFRA_ORDER, Started, find, load, start_detailed, stop};
use crate::fleet::ready::{self, Watch};
use crate::fleet::state::{ComponentKind, InfraMode};
use crate::fleet::{Ctx, Secrets, process, prometheus, supervisor, vault};

/// A Vault that just started (in memory, so empty): initialise and unseal
/// it with the CLI's root token, configure the database engine, issue new
/// service tokens, and restart the running services that held the old ones.
/// An adopted Vault that is initialised already is only reconfigured.
pub(super) async fn configure_vault(ctx: &Ctx) -> Result<(String, Vec<String>)> {
    let client = ready::http_client();
    let secrets = Secrets::load_or_create(&ctx.state_dir)?;
    let state = load(ctx)?;
    let addr = state.endpoints.vault_addr.clone();
    if vault::check(&client, &addr).await.is_err() {
        vault::initialize(&client, &addr, &secrets.vault_root_token).await?;
    }
    let deadline = Duration::from_secs(ctx.profile.timeouts.infra_ready_secs);
    let w = Watch {
        what: "vault (OpenBao)",
        pid: None,
        log: None,
    };
    ready::poll(w, deadline, || vault::check(&client, &addr)).await?;
    let v = vault::Vault {
        client: &client,
        addr: &addr,
        token: &secrets.vault_root_token,
    };
    v.configure_database(
        &ctx.profile,
        &format!("127.0.0.1:{}", ctx.profile.ports().postgres),
        &secrets,
    )
    .await
    .context("reconfiguring the new Vault's database engine (is postgres up?)")?;
    let tokens = v.issue_service_tokens(&ctx.profile).await?;
    let mut state = load(ctx)?;
    state.endpoints.service_vault_tokens = tokens;
    state.save(&ctx.state_dir)?;
    // Services hold their token in their environment: the running ones are
    // restarted to get the new one (the dead ones get it when they start).
    let mut restarted = Vec::new();
    for (spec, instance, _) in ctx.profile.instances() {
        if !spec.dynamic_credentials {
            continue;
        }
        let running = state
            .components
            .iter()
            .find(|c| c.name == instance)
            .is_some_and(|c| c.pid.is_some_and(|p| process::alive(p, c.start_ticks)));
        if running {
            tokio::task::block_in_place(|| stop(ctx, &instance, How::Graceful))?;
            Box::pin(start_detailed(ctx, &instance)).await?;
            restarted.push(instance);
        }
    }
    Ok((
        "initialised, unsealed, database engine configured, service tokens issued".into(),
        restarted,
    ))
}

/// Starts every dead component of a recorded fleet, infrastructure first in
/// dependency order, then the services in profile order (`up` on a partly
/// dead fleet). Components of infrastructure we do not run are skipped.
pub async fn start_dead(ctx: &Ctx) -> Result<Vec<Started>> {
    let state = load(ctx)?;
    let mut names: Vec<String> = INFRA_ORDER
        .iter()
        .filter(|n| state.components.iter().any(|c| c.name == **n))
        .map(|n| n.to_string())
        .collect();
    names.extend(
        state
            .components
            .iter()
            .filter(|c| c.kind == ComponentKind::Service)
            .map(|c| c.name.clone()),
    );
    if state.components.iter().any(|c| c.name == prometheus::NAME) {
        names.push(prometheus::NAME.into());
    }
    if state.components.iter().any(|c| c.name == supervisor::NAME) {
        names.push(supervisor::NAME.into());
    }
    let mut out = Vec::new();
    for name in names {
        // Re-read each time: a new Vault restarts (and records) services.
        let state = load(ctx)?;
        let c = find(&state, &name)?;
        if c.kind == ComponentKind::Infra
            && state.infra != InfraMode::Native
            && c.name != supervisor::NAME
        {
            continue;
        }
        if c.pid.is_some_and(|p| process::alive(p, c.start_ticks)) {
            continue;
        }
        out.push(
            start_detailed(ctx, &name)
                .await
                .with_context(|| format!("starting `{name}` again"))?,
        );
    }
    Ok(out)
}
