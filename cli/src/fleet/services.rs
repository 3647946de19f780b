//! The workspace's own services as child processes: configuration goes in
//! through the environment (the kit's typed config reads it), logs come out
//! on stdout into `.storefront/logs/<instance>.log`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use super::Ctx;
use super::process::{self, Spawned};
use super::profile::ServiceSpec;
use super::ready::{self, Watch};
use super::state::Endpoints;

/// Builds the command for one instance of a service.
pub fn command(
    binary: &Path,
    spec: &ServiceSpec,
    instance: &str,
    port: u16,
    endpoints: &Endpoints,
    lab_endpoints: bool,
) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env("SERVICE_NAME", instance)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", &endpoints.redis_url)
        .env("AMQP_URL", &endpoints.amqp_url)
        .env("LAB_ENDPOINTS", lab_endpoints.to_string())
        .env(
            "RUST_LOG",
            std::env::var("STOREFRONT_SERVICE_LOG").unwrap_or_else(|_| "info".into()),
        );
    if let Some(url) = endpoints.service_database_urls.get(&spec.name) {
        cmd.env("DATABASE_URL", url);
    }
    if spec.dynamic_credentials {
        cmd.env("VAULT_ADDR", &endpoints.vault_addr)
            .env("VAULT_TOKEN", &endpoints.vault_token)
            .env("VAULT_DB_ROLE", &spec.name);
    }
    // Peers' base URLs, e.g. CATALOG_URLS=http://127.0.0.1:47110,http://…
    for (svc, urls) in &endpoints.services {
        cmd.env(format!("{}_URLS", svc.to_ascii_uppercase()), urls.join(","));
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    cmd
}

pub fn base_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Starts one instance (detached, logging to its file); the caller records it.
pub fn spawn(
    ctx: &Ctx,
    spec: &ServiceSpec,
    instance: &str,
    port: u16,
    endpoints: &Endpoints,
) -> Result<(Spawned, PathBuf)> {
    let binary = super::binaries::service_binary(spec.binary())?;
    let cmd = command(
        &binary,
        spec,
        instance,
        port,
        endpoints,
        ctx.profile.lab_endpoints,
    );
    let log = ctx.log_path(instance);
    Ok((process::spawn(cmd, &log, &ctx.state_dir)?, log))
}

/// Polls the instance's `/ready` until it answers 2xx, it dies, or the
/// profile's service deadline passes.
pub async fn wait_ready(
    ctx: &Ctx,
    client: &reqwest::Client,
    instance: &str,
    port: u16,
    sp: Spawned,
) -> Result<Duration> {
    let log = ctx.log_path(instance);
    let w = Watch {
        what: instance,
        pid: Some((sp.pid, sp.start_ticks)),
        log: Some(&log),
    };
    let url = format!("{}/ready", base_url(port));
    let deadline = Duration::from_secs(ctx.profile.timeouts.service_ready_secs);
    ready::poll(w, deadline, || ready::http_ok(client, &url)).await
}
