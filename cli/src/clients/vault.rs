//! Vault (OpenBao), as the experiments talk to it: a database role's lease
//! TTLs read and set, and one lease revoked, with the fleet's root token.
//! The bodies are Vault's own (`data.default_ttl`, `lease_id`, …), typed
//! here once instead of dug out of a `serde_json::Value` at each call.
//!
//! The fleet's bootstrap of Vault (init, unseal, the engine, the policies,
//! the service tokens) stays in `fleet::vault`: the fleet is below the
//! clients (`clients::bff_admin` reads the fleet's state), so it cannot
//! call up into them.

use anyhow::{Context, Result};
use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, Serialize};

use super::call::{self, url};

/// One Vault server and the token to call it with.
#[derive(Debug, Clone)]
pub struct Vault {
    pub http: reqwest::Client,
    /// e.g. `http://127.0.0.1:27005` (the API is under `/v1/`).
    pub addr: String,
    pub token: String,
}

/// A database role's lease lifetimes, in seconds (`GET` answers them under
/// `data`; `POST` takes them as they are, leaving the role's other fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleTtls {
    pub default_ttl: u64,
    pub max_ttl: u64,
}

#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

#[derive(Serialize)]
struct LeaseId<'a> {
    lease_id: &'a str,
}

impl Vault {
    pub fn new(http: reqwest::Client, addr: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            http,
            addr: addr.into(),
            token: token.into(),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let path = format!("/v1/{}", path.trim_start_matches('/'));
        self.http
            .request(method, url(&self.addr, &path))
            .header("X-Vault-Token", &self.token)
    }

    /// `GET /v1/{mount}/roles/{role}`: the role's TTLs.
    pub async fn role_ttls(&self, mount: &str, role: &str) -> Result<RoleTtls> {
        let req = self.request(Method::GET, &format!("{mount}/roles/{role}"));
        let role: Data<RoleTtls> = call::json(req)
            .await
            .with_context(|| format!("Vault's role {mount}/{role}"))?;
        Ok(role.data)
    }

    /// `POST /v1/{mount}/roles/{role}` with only the TTLs.
    pub async fn set_role_ttls(&self, mount: &str, role: &str, ttls: RoleTtls) -> Result<()> {
        call::ok(
            self.request(Method::POST, &format!("{mount}/roles/{role}"))
                .json(&ttls),
        )
        .await
    }

    /// `PUT /v1/sys/leases/revoke`: ends `lease_id` now (for a database
    /// lease, its revocation statements run: the login is dropped).
    pub async fn revoke_lease(&self, lease_id: &str) -> Result<()> {
        let req = self
            .request(Method::PUT, "sys/leases/revoke")
            .json(&LeaseId { lease_id });
        call::ok(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_read_is_its_ttls_under_data_whatever_else_it_holds() {
        let body = r#"{"request_id":"r","data":{"db_name":"storefront",
            "default_ttl":30,"max_ttl":120,"creation_statements":["CREATE ROLE"]}}"#;
        let role: Data<RoleTtls> = serde_json::from_str(body).unwrap();
        assert_eq!(
            role.data,
            RoleTtls {
                default_ttl: 30,
                max_ttl: 120
            }
        );
        // A role without them is an error, not zeros.
        assert!(serde_json::from_str::<Data<RoleTtls>>(r#"{"data":{"max_ttl":1}}"#).is_err());
    }

    #[test]
    fn the_api_is_under_v1_with_the_token_in_its_header() {
        let v = Vault::new(reqwest::Client::new(), "http://127.0.0.1:1/", "s.root");
        let req = v
            .request(Method::PUT, "/sys/leases/revoke")
            .build()
            .unwrap();
        assert_eq!(
            req.url().as_str(),
            "http://127.0.0.1:1/v1/sys/leases/revoke"
        );
        assert_eq!(req.headers()["x-vault-token"], "s.root");
    }
}
