//! The workspace's own services as child processes: configuration goes in
//! through the environment (the kit's typed config reads it), logs come out
//! on stdout into `.storefront/logs/<instance>.log`.

use std::path::Path;
use std::process::Command;

use super::profile::ServiceSpec;
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
