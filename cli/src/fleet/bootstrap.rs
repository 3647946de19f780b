//! Making a running Postgres (and Vault) ready for the services: one
//! database, one schema and one login role per service, migrations applied
//! as that role, and Vault's database secrets engine configured. Idempotent:
//! every `up` runs it, because in-memory Vault keeps nothing.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use sqlx::migrate::Migrator;
use sqlx::{Connection, Executor, PgConnection};

use super::Secrets;
use super::postgres::{DATABASE, PgAdmin};
use super::profile::{FleetProfile, ServiceSpec};

/// The role Vault logs in as to create and drop dynamic roles.
pub const VAULT_ADMIN: &str = "vault_admin";

static CATALOG: Migrator = sqlx::migrate!("../migrations/catalog");
static CLAIMS: Migrator = sqlx::migrate!("../migrations/claims");
static PAYMENTS: Migrator = sqlx::migrate!("../migrations/payments");
static CHECKOUT: Migrator = sqlx::migrate!("../migrations/checkout");
static IDENTITY: Migrator = sqlx::migrate!("../migrations/identity");

/// Embedded migrations of each service that owns a schema.
pub fn migrator(service: &str) -> Option<&'static Migrator> {
    match service {
        "catalog" => Some(&CATALOG),
        "claims" => Some(&CLAIMS),
        "payments" => Some(&PAYMENTS),
        "checkout" => Some(&CHECKOUT),
        "identity" => Some(&IDENTITY),
        _ => None,
    }
}

fn ident(s: &str) -> Result<&str> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(s)
    } else {
        bail!("`{s}` is not a safe SQL identifier")
    }
}

/// A password we inline in SQL: only characters that need no quoting.
fn literal(s: &str) -> Result<&str> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        Ok(s)
    } else {
        bail!(
            "database passwords may only use letters, digits and - _ . (check STOREFRONT_*_DB_PASSWORD)"
        )
    }
}

/// `STOREFRONT_<SERVICE>_DB_PASSWORD`: the password a service's containers
/// were given (compose's `init`, the Kubernetes bootstrap Job); without it
/// one is generated and kept in secrets.json.
fn given_password(service: &str) -> Option<String> {
    std::env::var(format!(
        "STOREFRONT_{}_DB_PASSWORD",
        service.to_ascii_uppercase()
    ))
    .ok()
    .filter(|p| !p.is_empty())
}

/// Creates the database, roles and schemas; returns each service's database
/// URL (for dynamic-credential services one without credentials: where
/// Postgres is, the login comes from Vault).
pub async fn database(
    pg: &PgAdmin,
    profile: &FleetProfile,
    secrets: &mut Secrets,
) -> Result<BTreeMap<String, String>> {
    let mut c = PgConnection::connect(&pg.url("postgres"))
        .await
        .context("admin login to Postgres failed")?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(DATABASE)
        .fetch_optional(&mut c)
        .await?;
    if exists.is_none() {
        c.execute(format!("CREATE DATABASE {DATABASE}").as_str())
            .await?;
    }
    c.close().await.ok();

    let mut c = PgConnection::connect(&pg.url(DATABASE)).await?;
    let vault_pw = literal(&secrets.vault_admin_password)?.to_owned();
    ensure_role(
        &mut c,
        VAULT_ADMIN,
        &format!("LOGIN CREATEROLE PASSWORD '{vault_pw}'"),
    )
    .await?;
    c.execute(format!("GRANT CONNECT ON DATABASE {DATABASE} TO {VAULT_ADMIN}").as_str())
        .await?;

    let mut urls = BTreeMap::new();
    for svc in &profile.services {
        let Some(schema) = svc.schema.as_deref() else {
            continue;
        };
        let role = ident(schema)?;
        let url = service_role(&mut c, svc, role, secrets, pg).await?;
        if let Some(url) = url {
            urls.insert(svc.name.clone(), url);
        }
    }
    c.close().await.ok();
    Ok(urls)
}

async fn ensure_role(c: &mut PgConnection, role: &str, attrs: &str) -> Result<()> {
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_optional(&mut *c)
        .await?;
    let verb = if exists.is_some() { "ALTER" } else { "CREATE" };
    c.execute(format!("{verb} ROLE {role} WITH {attrs}").as_str())
        .await
        .with_context(|| format!("failed to {verb} role {role}"))?;
    Ok(())
}

/// The schema's owner role. With static credentials it logs in itself; with
/// dynamic ones it is a NOLOGIN group role whose members Vault creates, so
/// objects never belong to a role that is about to be dropped.
async fn service_role(
    c: &mut PgConnection,
    svc: &ServiceSpec,
    role: &str,
    secrets: &mut Secrets,
    pg: &PgAdmin,
) -> Result<Option<String>> {
    let url = if svc.dynamic_credentials {
        ensure_role(c, role, "NOLOGIN").await?;
        Some(format!("postgres://{}:{}/{DATABASE}", pg.host, pg.port))
    } else {
        let pw = match given_password(&svc.name) {
            Some(pw) => {
                secrets
                    .service_passwords
                    .insert(svc.name.clone(), pw.clone());
                pw
            }
            None => secrets.service_password(&svc.name),
        };
        ensure_role(c, role, &format!("LOGIN PASSWORD '{}'", literal(&pw)?)).await?;
        Some(pg.url_as(role, &pw, DATABASE))
    };
    for stmt in [
        format!("CREATE SCHEMA IF NOT EXISTS {role} AUTHORIZATION {role}"),
        format!("ALTER ROLE {role} SET search_path = {role}"),
        format!("GRANT CONNECT ON DATABASE {DATABASE} TO {role}"),
        // Vault's admin creates members of this role; in PG15 CREATEROLE
        // suffices, the explicit grant keeps it working on 16+.
        format!("GRANT {role} TO {VAULT_ADMIN} WITH ADMIN OPTION"),
    ] {
        c.execute(stmt.as_str())
            .await
            .with_context(|| format!("bootstrap failed at: {stmt}"))?;
    }
    Ok(url)
}

/// Applies a service's migrations as the schema's owner, so every object
/// belongs to that role. Returns how many were newly applied.
pub async fn migrate(admin_url: &str, service: &ServiceSpec) -> Result<usize> {
    let (Some(schema), Some(migrator)) = (service.schema.as_deref(), migrator(&service.name))
    else {
        return Ok(0);
    };
    let role = ident(schema)?;
    let mut c = PgConnection::connect(admin_url).await?;
    c.execute(format!("SET ROLE {role}; SET search_path = {role}").as_str())
        .await?;
    let before: i64 = applied(&mut c).await;
    migrator.run(&mut c).await.with_context(|| {
        format!(
            "migrations of {} (migrations/{}) failed",
            service.name, service.name
        )
    })?;
    let after = applied(&mut c).await;
    c.close().await.ok();
    Ok((after - before).max(0) as usize)
}

async fn applied(c: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(c)
        .await
        .unwrap_or(0)
}
