//! The workspace's own services as child processes: configuration goes in
//! through the environment (the kit's typed config reads it), logs come out
//! on stdout into `.storefront/logs/<instance>.log`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use super::Ctx;
use super::process::{self, Spawned};
use super::profile::{Dependency, FleetProfile, ServiceSpec};
use super::ready::{self, Watch};
use super::state::Endpoints;

/// The variable every service reads the lab admin token from: `/lab/*`
/// routes answer only requests that carry it.
pub const LAB_ADMIN_TOKEN_VAR: &str = "LAB_ADMIN_TOKEN";
/// The BFF's admin token in the profile (`[[services]] name = "bff"`, `env`);
/// the lab token is the same secret, so the CLI knows one token for both.
pub const BFF_ADMIN_TOKEN_VAR: &str = "BFF_ADMIN_TOKEN";

/// The profile's admin token: the bff entry's `BFF_ADMIN_TOKEN`, if set.
pub fn lab_admin_token(profile: &FleetProfile) -> Option<&str> {
    profile
        .services
        .iter()
        .find(|s| s.name == "bff")
        .and_then(|s| s.env.get(BFF_ADMIN_TOKEN_VAR))
        .map(String::as_str)
}

/// Builds the command for one instance of a service.
///
/// Secrets go in through the environment only (never argv, which any local
/// user can read in /proc): each service gets its own Redis user
/// (`service_redis_urls`) and its own Vault token (`service_vault_tokens`),
/// never the admin ones the CLI keeps. A service that does not need Redis
/// gets no `REDIS_URL` at all.
pub fn command(
    binary: &Path,
    spec: &ServiceSpec,
    instance: &str,
    port: u16,
    endpoints: &Endpoints,
    profile: &FleetProfile,
) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env("SERVICE_NAME", instance)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("AMQP_URL", &endpoints.amqp_url)
        .env("LAB_ENDPOINTS", profile.lab_endpoints.to_string())
        .env(
            "RUST_LOG",
            std::env::var("STOREFRONT_SERVICE_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env_remove("REDIS_URL")
        .env_remove("VAULT_TOKEN");
    if spec.needs.contains(&Dependency::Redis) {
        // Its own ACL user where `up` made one (native); else the URL the
        // infrastructure was given (external, compose: no ACLs there).
        let url = endpoints
            .service_redis_urls
            .get(&spec.name)
            .unwrap_or(&endpoints.redis_url);
        cmd.env("REDIS_URL", url);
    }
    if let Some(token) = lab_admin_token(profile) {
        cmd.env(LAB_ADMIN_TOKEN_VAR, token);
    }
    if let Some(url) = endpoints.service_database_urls.get(&spec.name) {
        cmd.env("DATABASE_URL", url);
    }
    if spec.dynamic_credentials {
        cmd.env("VAULT_ADDR", &endpoints.vault_addr)
            .env("VAULT_DB_ROLE", &spec.name);
        // Its own token, whose policy reaches only its own role and leases.
        // None recorded (a fleet.json from an older CLI): no token at all,
        // and the service says VAULT_TOKEN is missing, rather than the root
        // token being handed out.
        if let Some(token) = endpoints.service_vault_tokens.get(&spec.name) {
            cmd.env("VAULT_TOKEN", token);
        }
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
    let cmd = command(&binary, spec, instance, port, endpoints, &ctx.profile);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(cmd: &Command) -> std::collections::BTreeMap<String, Option<String>> {
        cmd.get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect()
    }

    fn fleet() -> (FleetProfile, Endpoints) {
        let profile = FleetProfile::parse(
            "port_base = 40000\n\
             [[services]]\nname = \"catalog\"\nneeds = [\"redis\"]\n\
             [[services]]\nname = \"claims\"\nneeds = [\"postgres\"]\n\
             [[services]]\nname = \"identity\"\nneeds = [\"redis\", \"vault\"]\nschema = \"identity\"\ndynamic_credentials = true\n\
             [[services]]\nname = \"bff\"\nneeds = [\"redis\"]\nenv = { BFF_ADMIN_TOKEN = \"admin-t\" }\n",
        )
        .unwrap();
        let mut e = Endpoints {
            redis_url: "redis://admin:root-pw@127.0.0.1:40001/".into(),
            vault_token: "root-token".into(),
            ..Default::default()
        };
        for s in ["catalog", "identity", "bff"] {
            e.service_redis_urls
                .insert(s.into(), format!("redis://{s}:{s}-pw@127.0.0.1:40001/"));
        }
        e.service_vault_tokens
            .insert("identity".into(), "identity-token".into());
        (profile, e)
    }

    fn env_for(name: &str) -> std::collections::BTreeMap<String, Option<String>> {
        let (profile, e) = fleet();
        let spec = profile.services.iter().find(|s| s.name == name).unwrap();
        env_of(&command(Path::new("x"), spec, name, 40010, &e, &profile))
    }

    #[test]
    fn each_service_gets_its_own_redis_user_and_none_gets_the_admin() {
        assert_eq!(
            env_for("catalog")["REDIS_URL"].as_deref(),
            Some("redis://catalog:catalog-pw@127.0.0.1:40001/")
        );
        assert_eq!(
            env_for("claims")["REDIS_URL"],
            None,
            "a service that does not need Redis gets no URL (and none inherited)"
        );
        for s in ["catalog", "claims", "identity", "bff"] {
            let env = env_for(s);
            assert!(
                env.values()
                    .flatten()
                    .all(|v| !v.contains("root-pw") && !v.contains("root-token")),
                "{s} must not see the admin's Redis password or the Vault root token: {env:?}"
            );
        }
    }

    #[test]
    fn external_redis_without_acl_users_keeps_the_given_url() {
        let (profile, mut e) = fleet();
        e.service_redis_urls.clear();
        let spec = &profile.services[0];
        let env = env_of(&command(
            Path::new("x"),
            spec,
            "catalog",
            40010,
            &e,
            &profile,
        ));
        assert_eq!(env["REDIS_URL"].as_deref(), Some(e.redis_url.as_str()));
    }

    #[test]
    fn vault_services_get_their_own_token_and_never_the_root_token() {
        let env = env_for("identity");
        assert_eq!(env["VAULT_TOKEN"].as_deref(), Some("identity-token"));
        assert_eq!(env["VAULT_DB_ROLE"].as_deref(), Some("identity"));
        let (profile, mut e) = fleet();
        e.service_vault_tokens.clear();
        let spec = profile
            .services
            .iter()
            .find(|s| s.name == "identity")
            .unwrap();
        let env = env_of(&command(
            Path::new("x"),
            spec,
            "identity",
            40012,
            &e,
            &profile,
        ));
        assert_eq!(
            env["VAULT_TOKEN"], None,
            "no token of its own recorded: none at all, not the root token"
        );
    }

    #[test]
    fn every_service_gets_the_lab_admin_token_equal_to_the_bffs_admin_token() {
        for s in ["catalog", "claims", "identity", "bff"] {
            assert_eq!(
                env_for(s)[LAB_ADMIN_TOKEN_VAR].as_deref(),
                Some("admin-t"),
                "{s}"
            );
        }
        let profile =
            FleetProfile::parse("port_base = 40000\n[[services]]\nname = \"claims\"\n").unwrap();
        assert_eq!(lab_admin_token(&profile), None);
    }
}
