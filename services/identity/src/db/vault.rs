//! The four Vault (OpenBao) calls the credential rotation needs, over plain
//! reqwest: read credentials, renew a lease, revoke a lease, health.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

/// Per-call timeout: a hung Vault must not stall a rotation forever.
const VAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a Vault call failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Vault could not be reached or did not answer in time.
    #[error("Vault unreachable: {0}")]
    Transport(#[from] reqwest::Error),
    /// Vault answered 4xx: the lease is gone, past its max TTL, or the token
    /// lacks permission. Retrying the same call won't help.
    #[error("Vault refused ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Vault's `errors`, joined.
        message: String,
    },
    /// Vault answered 5xx; may pass.
    #[error("Vault failed ({status}): {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// Vault's `errors`, joined.
        message: String,
    },
    /// A 2xx whose body lacks what we asked for.
    #[error("unexpected Vault response: {0}")]
    Malformed(String),
}

/// Dynamic Postgres credentials and the lease they live under.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `database/creds/<role>/<id>`: what renew and revoke name.
    pub lease_id: String,
    /// The lease's TTL as granted (the role's `default_ttl`, capped).
    pub lease_duration: Duration,
    /// The Postgres login Vault created.
    pub username: String,
    /// Its password.
    pub password: SecretString,
}

/// Where Vault is and which role to ask for.
#[derive(Clone)]
pub struct VaultClient {
    /// Shared client: keep-alive to Vault across renewals.
    http: reqwest::Client,
    /// `VAULT_ADDR`, without a trailing slash.
    addr: String,
    /// `VAULT_TOKEN`.
    token: SecretString,
    /// `database/creds/<role>` path of the role (`VAULT_DB_MOUNT`/`VAULT_DB_ROLE`).
    creds_path: String,
}

#[derive(Deserialize, Default)]
struct LeaseResponse {
    lease_id: String,
    lease_duration: u64,
    data: Option<CredsData>,
}

#[derive(Deserialize)]
struct CredsData {
    username: String,
    password: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

impl VaultClient {
    /// A client of `addr` issuing credentials for `role` of the `mount` secrets engine.
    pub fn new(addr: &str, token: SecretString, mount: &str, role: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(VAULT_TIMEOUT)
                .build()
                .expect("static client configuration"),
            addr: addr.trim_end_matches('/').to_owned(),
            token,
            creds_path: format!("{mount}/creds/{role}"),
        }
    }

    /// New credentials: Vault creates a Postgres role for them.
    pub async fn credentials(&self) -> Result<Credentials, VaultError> {
        let resp: LeaseResponse = self
            .call(reqwest::Method::GET, &self.creds_path, None)
            .await?;
        let data = resp
            .data
            .ok_or_else(|| VaultError::Malformed("credentials without data".into()))?;
        Ok(Credentials {
            lease_id: resp.lease_id,
            lease_duration: Duration::from_secs(resp.lease_duration),
            username: data.username,
            password: SecretString::from(data.password),
        })
    }

    /// Extends the lease by `increment`; returns the TTL Vault granted,
    /// which is less than asked once the role's `max_ttl` is near.
    pub async fn renew(&self, lease_id: &str, increment: Duration) -> Result<Duration, VaultError> {
        let body = json!({"lease_id": lease_id, "increment": increment.as_secs()});
        let resp: LeaseResponse = self
            .call(reqwest::Method::PUT, "sys/leases/renew", Some(body))
            .await?;
        Ok(Duration::from_secs(resp.lease_duration))
    }

    /// Revokes the lease now: Vault terminates the role's sessions and drops it.
    pub async fn revoke(&self, lease_id: &str) -> Result<(), VaultError> {
        let body = json!({ "lease_id": lease_id });
        self.call::<serde_json::Value>(reqwest::Method::PUT, "sys/leases/revoke", Some(body))
            .await
            .map(drop)
    }

    /// `GET /v1/sys/health`: unsealed and answering.
    pub async fn health(&self) -> Result<(), VaultError> {
        let resp = self
            .http
            .get(format!("{}/v1/sys/health", self.addr))
            .send()
            .await?;
        match resp.status().as_u16() {
            200 | 429 | 473 => Ok(()),
            status => Err(VaultError::Server {
                status,
                message: "not active".into(),
            }),
        }
    }

    async fn call<T: serde::de::DeserializeOwned + Default>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, VaultError> {
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", self.token.expose_secret());
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .unwrap_or_default()
                .errors
                .join("; ");
            let status = status.as_u16();
            return Err(if status < 500 {
                VaultError::Refused { status, message }
            } else {
                VaultError::Server { status, message }
            });
        }
        if bytes.is_empty() {
            return Ok(T::default());
        }
        serde_json::from_slice(&bytes).map_err(|e| VaultError::Malformed(e.to_string()))
    }
}
