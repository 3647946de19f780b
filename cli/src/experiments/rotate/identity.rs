//! The calls rotate makes besides the load: identity's token endpoints (raw:
//! the load and the probes judge every status and body), its lab-only
//! `/lab/…` routes (through the typed client), and Vault's role and lease API.

use anyhow::{Context, Result};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::evidence::{Revoked, unix_ms};
use super::plan::{RoleTtls, SERVICE};
use crate::clients::bff_admin::ADMIN_TOKEN_VAR;
use crate::clients::call::HttpError;
use crate::clients::contract::identity::{Lease, Record};
use crate::clients::identity::Identity;
use crate::clients::vault::{self, Vault};
use crate::exit::{self, Exit};
use crate::fleet::profile::FleetProfile;
use crate::fleet::vault::MOUNT;
use crate::run::Lab;
use crate::run::accounts::password;

/// A logged-in client: used by one request at a time.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: String,
}

/// POST JSON; the status and the body (`Null` if not JSON).
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<(u16, Value), reqwest::Error> {
    let r = http.post(url).json(body).send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

pub async fn userinfo(
    http: &reqwest::Client,
    url: &str,
    access: &str,
) -> Result<(u16, Value), reqwest::Error> {
    let r = http.get(url).bearer_auth(access).send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

pub fn session_of(body: &Value) -> Option<Session> {
    Some(Session {
        access: body["access_token"].as_str()?.to_owned(),
        refresh: body["refresh_token"].as_str()?.to_owned(),
    })
}

pub fn login_body(user: &str) -> Value {
    json!({"grant_type": "password", "username": user, "password": password(user)})
}

fn vault(lab: &Lab) -> Vault {
    let e = &lab.state.endpoints;
    Vault::new(lab.http.clone(), &e.vault_addr, &e.vault_token)
}

/// The Vault role's TTLs as they are now.
pub async fn role_ttls(lab: &Lab) -> Result<RoleTtls> {
    let t = vault(lab).role_ttls(MOUNT, SERVICE).await.context(
        "cannot read identity's Vault role (does the profile mark it dynamic_credentials?)",
    )?;
    Ok(RoleTtls {
        default_ttl: t.default_ttl,
        max_ttl: t.max_ttl,
    })
}

pub async fn set_role_ttls(lab: &Lab, ttls: RoleTtls) -> Result<()> {
    let ttls = vault::RoleTtls {
        default_ttl: ttls.default_ttl,
        max_ttl: ttls.max_ttl,
    };
    vault(lab).set_role_ttls(MOUNT, SERVICE, ttls).await
}

/// The lab admin token: the fleet profile's bff `BFF_ADMIN_TOKEN`, which the
/// fleet hands every service as `LAB_ADMIN_TOKEN`.
pub fn admin_token(lab: &Lab) -> Result<String> {
    let (profile, path) = FleetProfile::load(&crate::fleet::project_root()?, &lab.state.profile)?;
    crate::fleet::services::lab_admin_token(&profile)
        .map(str::to_owned)
        .ok_or_else(|| {
            Exit::error(
                exit::ERROR,
                format!(
                    "{} sets no {ADMIN_TOKEN_VAR} in the bff's env: identity's lab endpoints refuse every call without it",
                    path.display()
                ),
            )
        })
}

/// One instance's typed client, its lab routes unlocked with `admin`.
fn instance(lab: &Lab, admin: &str, base: &str) -> Identity {
    Identity::new(lab.http.clone(), base).with_lab_token(admin)
}

/// `GET /lab/lease` of one instance; a 404 or 401 says how to fix the fleet.
pub async fn lease(lab: &Lab, admin: &str, base: &str) -> Result<Lease> {
    let r = instance(lab, admin, base).lease().await;
    let status = r
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<HttpError>())
        .map(|h| h.status);
    match status {
        Some(StatusCode::NOT_FOUND) => Err(Exit::error(
            exit::ERROR,
            "identity's lab endpoints are off: set `lab_endpoints = true` in the fleet profile",
        )),
        Some(StatusCode::UNAUTHORIZED) => Err(Exit::error(
            exit::ERROR,
            format!(
                "identity refused the lab admin token (401): is the fleet's LAB_ADMIN_TOKEN the profile's bff {ADMIN_TOKEN_VAR}? Restart the fleet after changing it"
            ),
        )),
        _ => r,
    }
}

/// The login an instance uses now.
pub async fn current_login(lab: &Lab, admin: &str, base: &str) -> Result<String> {
    Ok(lease(lab, admin, base).await?.username)
}

/// An instance's generations, oldest first.
pub async fn history(lab: &Lab, admin: &str, base: &str) -> Result<Vec<Record>> {
    Ok(lease(lab, admin, base).await?.history)
}

/// `POST /lab/rotate`: answers once a new generation is current.
pub async fn rotate_now(lab: &Lab, admin: &str, base: &str) -> Result<()> {
    instance(lab, admin, base).rotate().await.map(drop)
}

/// `PUT /lab/rotation-mode`: the naive control arm on or off.
pub async fn set_naive(lab: &Lab, admin: &str, base: &str, naive: bool) -> Result<()> {
    instance(lab, admin, base)
        .set_rotation_mode(naive)
        .await
        .map(drop)
}

/// Revokes the instance's current lease through Vault's API.
pub async fn revoke_current(lab: &Lab, admin: &str, base: &str) -> Result<Revoked> {
    let current = lease(lab, admin, base).await?;
    let lease_id = current
        .lease_id
        .as_deref()
        .context("identity reports no lease")?;
    let at_ms = unix_ms();
    vault(lab).revoke_lease(lease_id).await?;
    Ok(Revoked {
        at_ms,
        username: current.username,
        generation: current.generation,
    })
}
