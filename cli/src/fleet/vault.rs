//! OpenBao (Vault's API) in dev mode, and the database secrets engine that
//! issues real, expiring Postgres roles. Dev mode keeps nothing in storage,
//! so `up` configures the engine every time it starts Vault.

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

pub fn command(bao: &Path, state_dir: &Path, port: u16, token: &str) -> Command {
    let mut cmd = Command::new(bao);
    cmd.args(["server", "-dev", "-dev-no-store-token"])
        .arg(format!("-dev-root-token-id={token}"))
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        // Its own HOME: nothing of ours lands in the user's home directory.
        .env("HOME", state_dir.join("vault"))
        .env_remove("VAULT_ADDR")
        .env_remove("BAO_ADDR");
    cmd
}

pub async fn check(client: &reqwest::Client, addr: &str) -> Result<()> {
    super::ready::http_ok(client, &format!("{addr}/v1/sys/health")).await
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
            let group = svc
                .schema
                .as_deref()
                .expect("validated: dynamic credentials need a schema");
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
