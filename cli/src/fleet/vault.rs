//! OpenBao (Vault's API) with in-memory storage, and the database secrets
//! engine that issues real, expiring Postgres roles. Nothing is kept, so
//! `up` configures the engine every time it starts Vault.
//!
//! Not dev mode: a dev server takes its root token on the command line (or
//! from the environment) and prints it, with the unseal key, into its log.
//! Instead `up` starts a plain server on a config file that holds no
//! secret, initialises and unseals it over the API (the answer never
//! reaches a log), makes the CLI's root token with the id kept in
//! secrets.json (mode 0600), and revokes the one `init` returned. Each
//! service that talks to Vault gets a token of its own whose policy reaches
//! only its own role and leases ([`service_policy`]).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::Secrets;
use super::bootstrap::VAULT_ADMIN;
use super::postgres::DATABASE;
use super::profile::FleetProfile;

/// Name of the database connection in Vault's engine.
pub const CONNECTION: &str = "storefront";
/// Where the database engine is mounted (the services' `VAULT_DB_MOUNT` default).
pub const MOUNT: &str = "database";

/// The server's configuration: in memory, loopback only, the cluster port
/// next to the API port (as a dev server would take). No secret in it.
pub fn config(port: u16) -> String {
    let cluster = port + 1;
    format!(
        r#"storage "inmem" {{}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "https://127.0.0.1:{cluster}"
disable_mlock = true
"#
    )
}

/// Writes the config under `<state>/vault/` (0700) and builds the command:
/// `bao server -config=<file>`, no secret on argv or in the environment.
pub fn command(bao: &Path, state_dir: &Path, port: u16) -> Result<Command> {
    let dir = state_dir.join("vault");
    super::private_dir(&dir)?;
    let file = dir.join("bao.hcl");
    super::state::write_private(&file, config(port).as_bytes())?;
    let mut cmd = Command::new(bao);
    cmd.arg("server")
        .arg(format!("-config={}", file.display()))
        // Its own HOME: nothing of ours lands in the user's home directory.
        .env("HOME", &dir)
        .env_remove("VAULT_ADDR")
        .env_remove("BAO_ADDR")
        .env_remove("VAULT_TOKEN")
        .env_remove("BAO_TOKEN");
    Ok(cmd)
}

/// Ready = initialised, unsealed and active (200 from sys/health).
pub async fn check(client: &reqwest::Client, addr: &str) -> Result<()> {
    super::ready::http_ok(client, &format!("{addr}/v1/sys/health")).await
}

/// Listening at all: sys/seal-status answers 200 even before `init`.
pub async fn check_listening(client: &reqwest::Client, addr: &str) -> Result<()> {
    super::ready::http_ok(client, &format!("{addr}/v1/sys/seal-status")).await
}

/// Initialises and unseals a new in-memory server, then makes the root
/// token `root_token` (an orphan with the root policy, so revoking the
/// `init` token leaves it) and revokes the one `init` returned. The unseal
/// key is used once and dropped: the storage is in memory, so a sealed
/// server has nothing worth unsealing.
pub async fn initialize(client: &reqwest::Client, addr: &str, root_token: &str) -> Result<()> {
    let anon = Vault {
        client,
        addr,
        token: "",
    };
    let init = anon
        .call(
            reqwest::Method::PUT,
            "sys/init",
            Some(json!({"secret_shares": 1, "secret_threshold": 1})),
        )
        .await
        .context("Vault init failed (a fresh in-memory server expected)")?;
    let key = init
        .pointer("/keys_base64/0")
        .and_then(Value::as_str)
        .context("Vault init answered without an unseal key")?;
    let first_root = init
        .get("root_token")
        .and_then(Value::as_str)
        .context("Vault init answered without a root token")?;
    let unsealed = anon
        .call(
            reqwest::Method::PUT,
            "sys/unseal",
            Some(json!({ "key": key })),
        )
        .await?;
    if unsealed.get("sealed") != Some(&Value::Bool(false)) {
        bail!("Vault is still sealed after unseal: {unsealed}");
    }
    let first = Vault {
        client,
        addr,
        token: first_root,
    };
    // Active once unsealed; token calls before that answer 5xx: retry briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let made = first
            .call(
                reqwest::Method::POST,
                "auth/token/create",
                Some(json!({
                    "id": root_token,
                    "policies": ["root"],
                    "no_parent": true,
                    "display_name": "storefront-cli",
                })),
            )
            .await;
        match made {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "Vault not active yet");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.context("cannot create the CLI's root token")),
        }
    }
    first
        .call(reqwest::Method::POST, "auth/token/revoke-self", None)
        .await
        .context("cannot revoke the token Vault's init returned")?;
    Ok(())
}

/// Name of a service's Vault policy.
pub fn policy_name(service: &str) -> String {
    format!("storefront-{service}")
}

/// What a service with dynamic credentials may do, and nothing else: read
/// credentials of its own role; renew and revoke leases of that role only
/// (the lease id is a request parameter, limited by `allowed_parameters`,
/// or in the path); look up and renew its own token.
pub fn service_policy(mount: &str, role: &str) -> String {
    format!(
        r#"path "{mount}/creds/{role}" {{
  capabilities = ["read"]
}}
path "sys/leases/renew" {{
  capabilities = ["update"]
  allowed_parameters = {{
    "lease_id" = ["{mount}/creds/{role}/*"]
    "increment" = []
  }}
}}
path "sys/leases/revoke" {{
  capabilities = ["update"]
  allowed_parameters = {{
    "lease_id" = ["{mount}/creds/{role}/*"]
  }}
}}
path "sys/leases/renew/{mount}/creds/{role}/*" {{
  capabilities = ["update"]
}}
path "sys/leases/revoke/{mount}/creds/{role}/*" {{
  capabilities = ["update"]
}}
path "auth/token/lookup-self" {{
  capabilities = ["read"]
}}
path "auth/token/renew-self" {{
  capabilities = ["update"]
}}
"#
    )
}

/// Thin client for the few Vault calls the fleet makes.
pub struct Vault<'a> {
    pub client: &'a reqwest::Client,
    pub addr: &'a str,
    pub token: &'a str,
}

impl Vault<'_> {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}/v1/{path}", self.addr);
        let mut req = self
            .client
            .request(method.clone(), &url)
            .header("X-Vault-Token", self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("Vault {method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("Vault {method} {path} answered {status}: {text}");
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    /// Mounts the database engine (once) and points it at our Postgres with
    /// the CREATEROLE admin; one role per service that wants dynamic credentials.
    /// `pg_host_port` is the address as Vault sees Postgres.
    pub async fn configure_database(
        &self,
        profile: &FleetProfile,
        pg_host_port: &str,
        secrets: &Secrets,
    ) -> Result<()> {
        let mounts = self.call(reqwest::Method::GET, "sys/mounts", None).await?;
        let mounted = mounts
            .get("database/")
            .or_else(|| mounts.pointer("/data/database~1"))
            .is_some();
        if !mounted {
            self.call(
                reqwest::Method::POST,
                "sys/mounts/database",
                Some(json!({"type": "database"})),
            )
            .await?;
        }
        self.call(
            reqwest::Method::POST,
            &format!("database/config/{CONNECTION}"),
            Some(json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@{pg_host_port}/{DATABASE}?sslmode=disable"),
                "username": VAULT_ADMIN,
                "password": secrets.vault_admin_password,
                "allowed_roles": "*",
                "verify_connection": true,
            })),
        )
        .await
        .context("Vault could not connect to Postgres as vault_admin")?;
        for svc in profile.services.iter().filter(|s| s.dynamic_credentials) {
            let group = svc.schema.as_deref().with_context(|| {
                format!(
                    "service `{}` has dynamic_credentials but no schema; give it `schema = \"...\"` in the profile",
                    svc.name
                )
            })?;
            self.call(
                reqwest::Method::POST,
                &format!("database/roles/{}", svc.name),
                Some(role_definition(
                    group,
                    &profile.vault.default_ttl,
                    &profile.vault.max_ttl,
                )),
            )
            .await?;
        }
        Ok(())
    }

    /// For each service with dynamic credentials: writes its policy and
    /// creates a token with only that policy (no `default` policy; an
    /// orphan, so it outlives nothing it shouldn't; renewable, 32 days).
    /// Returns `service -> token` for fleet.json.
    pub async fn issue_service_tokens(
        &self,
        profile: &FleetProfile,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let mut tokens = std::collections::BTreeMap::new();
        for svc in profile.services.iter().filter(|s| s.dynamic_credentials) {
            let policy = policy_name(&svc.name);
            self.call(
                reqwest::Method::PUT,
                &format!("sys/policies/acl/{policy}"),
                Some(json!({ "policy": service_policy(MOUNT, &svc.name) })),
            )
            .await
            .with_context(|| {
                format!("cannot write Vault policy {policy} (the token needs sys/policies/acl)")
            })?;
            let made = self
                .call(
                    reqwest::Method::POST,
                    "auth/token/create",
                    Some(json!({
                        "policies": [policy],
                        "no_default_policy": true,
                        "no_parent": true,
                        "renewable": true,
                        "ttl": "768h",
                        "display_name": svc.name,
                        "meta": {"service": svc.name},
                    })),
                )
                .await
                .with_context(|| {
                    format!(
                        "cannot create {}'s Vault token (the token needs auth/token/create-orphan)",
                        svc.name
                    )
                })?;
            let token = made
                .pointer("/auth/client_token")
                .and_then(Value::as_str)
                .context("Vault created a token without a client_token")?;
            tokens.insert(svc.name.clone(), token.to_owned());
        }
        Ok(tokens)
    }
}

/// A dynamic role: a member of the schema's group role that acts as it, so
/// its objects belong to the group; revocation reassigns anything left and
/// drops it.
pub fn role_definition(group: &str, default_ttl: &str, max_ttl: &str) -> Value {
    json!({
        "db_name": CONNECTION,
        "creation_statements": [
            format!("CREATE ROLE \"{{{{name}}}}\" WITH LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}' IN ROLE {group}"),
            format!("ALTER ROLE \"{{{{name}}}}\" SET role = {group}"),
            format!("ALTER ROLE \"{{{{name}}}}\" SET search_path = {group}"),
            // Vault's admin is only CREATEROLE: to terminate the role's
            // backends, REASSIGN and DROP OWNED on revocation, Postgres wants
            // it to hold the role's privileges (PG15 refuses with 42501
            // otherwise and the lease is never revoked).
            format!("GRANT \"{{{{name}}}}\" TO {VAULT_ADMIN}"),
        ],
        "revocation_statements": [
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}'",
            format!("REASSIGN OWNED BY \"{{{{name}}}}\" TO {group}"),
            "DROP OWNED BY \"{{name}}\"",
            "DROP ROLE IF EXISTS \"{{name}}\"",
        ],
        "default_ttl": default_ttl,
        "max_ttl": max_ttl,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_config_listens_on_loopback_and_holds_no_token() {
        let c = super::config(40005);
        assert!(c.contains(r#"address = "127.0.0.1:40005""#), "{c}");
        assert!(c.contains(r#"cluster_address = "127.0.0.1:40006""#), "{c}");
        assert!(c.contains(r#"storage "inmem""#));
        assert!(!c.to_lowercase().contains("token"), "{c}");
    }

    #[test]
    fn service_policy_reaches_only_the_services_own_role_and_leases() {
        let p = super::service_policy("database", "identity");
        let paths: Vec<&str> = p
            .lines()
            .filter_map(|l| l.strip_prefix("path \""))
            .map(|l| l.split('"').next().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "database/creds/identity",
                "sys/leases/renew",
                "sys/leases/revoke",
                "sys/leases/renew/database/creds/identity/*",
                "sys/leases/revoke/database/creds/identity/*",
                "auth/token/lookup-self",
                "auth/token/renew-self",
            ]
        );
        assert_eq!(
            p.matches(r#""lease_id" = ["database/creds/identity/*"]"#)
                .count(),
            2,
            "renew and revoke by body are limited to its own leases: {p}"
        );
        assert!(!p.contains("sudo") && !p.contains("sys/mounts"), "{p}");
    }

    #[test]
    fn role_definition_templates_keep_vault_placeholders() {
        let v = super::role_definition("identity", "30s", "2m");
        let create = v["creation_statements"][0].as_str().unwrap();
        assert!(create.contains("\"{{name}}\""), "{create}");
        assert!(create.contains("'{{password}}'"));
        assert!(create.contains("IN ROLE identity"));
        let grant = v["creation_statements"][3].as_str().unwrap();
        assert_eq!(grant, "GRANT \"{{name}}\" TO vault_admin");
        assert_eq!(v["max_ttl"], "2m");
    }
}
