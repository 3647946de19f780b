//! The BFF's admin API (`/admin/*`, bearer `BFF_ADMIN_TOKEN`), as the CLI
//! talks to it: `storefront chaos`, the fault runner, the dashboard and the
//! experiments (breaker, flood, hostile) share this one client.
//!
//! Its requests and answers are typed. The wire types mirror the BFF's own
//! (`services/bff/src/chaos.rs`: `FaultSpec`, `ChaosRequest`, `ChaosView`;
//! `upstream.rs`: `InstanceView`, `CountersView`; `breaker.rs`: `View`,
//! `BreakerConfig`; `routes/admin.rs`: the config document) field for field.
//! They are mirrors, not the BFF's types themselves: the BFF's request type
//! only deserializes and its views only serialize, and depending on the BFF
//! crate would build its whole server into the CLI. The client side is a
//! tolerant reader (unknown fields ignored), so a field the BFF adds breaks
//! nothing; one it renames fails here with the field's name. The
//! `contract_tests` compile the BFF's own chaos, breaker and retry sources
//! and hold the mirrors to them both ways.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::fleet::{Ctx, FleetState};

/// The profile's env variable holding the admin token.
pub const ADMIN_TOKEN_VAR: &str = "BFF_ADMIN_TOKEN";

mod wire;

#[cfg(test)]
mod contract_tests;

pub use wire::*;

// ---------------------------------------------------------------------------
// The client.

/// The running BFF, as the CLI talks to it.
pub struct BffAdmin {
    /// Base URL of the (first) BFF instance; point it at another instance
    /// to ask that one.
    pub url: String,
    /// `BFF_ADMIN_TOKEN` from the fleet profile's `bff` entry.
    token: String,
    pub http: reqwest::Client,
}

/// The admin API refused a request (the status says why: 401, 422, ...).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AdminRefused {
    pub status: u16,
    pub message: String,
}

impl BffAdmin {
    /// Finds the BFF in the recorded fleet and its admin token in the
    /// profile. Needs only fleet.json, not a healthy fleet, so `chaos clear`
    /// works in the middle of a broken experiment.
    pub fn connect(ctx: &Ctx) -> Result<Self> {
        let state = FleetState::load(&ctx.state_dir)?.with_context(|| {
            format!(
                "no fleet is up in {}: start one with `storefront up`",
                ctx.state_dir.display()
            )
        })?;
        Self::from_state(ctx, &state)
    }

    /// As [`BffAdmin::connect`], for a caller that already read fleet.json.
    pub fn from_state(ctx: &Ctx, state: &FleetState) -> Result<Self> {
        let url = state
            .endpoints
            .services
            .get("bff")
            .and_then(|u| u.first())
            .cloned()
            .with_context(|| format!("the fleet's profile `{}` runs no bff", state.profile))?;
        let token = ctx
            .profile
            .services
            .iter()
            .find(|s| s.name == "bff")
            .and_then(|s| s.env.get(ADMIN_TOKEN_VAR))
            .cloned()
            .with_context(|| {
                format!(
                    "profile `{}` sets no {ADMIN_TOKEN_VAR} in the bff's env: the admin API is off",
                    ctx.profile.name
                )
            })?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { url, token, http })
    }

    /// `request` pinned to `instance` with `X-Lab-Upstream`, which the BFF
    /// honours only with the admin token in `X-Lab-Token`.
    pub fn pinned(
        &self,
        request: reqwest::RequestBuilder,
        instance: &str,
    ) -> reqwest::RequestBuilder {
        request
            .header("x-lab-upstream", instance)
            .header("x-lab-token", &self.token)
    }

    /// One admin call: the answer's body, or [`AdminRefused`] with the
    /// problem's `detail` when the status is not a success.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<String> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("BFF {method} {path}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(AdminRefused {
                status: status.as_u16(),
                message: format!("BFF {method} {path} answered {status}: {}", detail(&text)),
            }
            .into());
        }
        Ok(text)
    }

    async fn typed<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T> {
        let text = self.call(method.clone(), path, body).await?;
        serde_json::from_str(&text)
            .with_context(|| format!("BFF {method} {path}: not the expected document"))
    }

    /// `GET /admin/config`: what the BFF enforces.
    pub async fn admin_config(&self) -> Result<AdminConfig> {
        self.typed(reqwest::Method::GET, "/admin/config", None)
            .await
    }

    /// `GET /admin/breakers`: every upstream instance's breaker and counters.
    pub async fn upstreams(&self) -> Result<Vec<UpstreamView>> {
        let u: Upstreams = self
            .typed(reqwest::Method::GET, "/admin/breakers", None)
            .await?;
        Ok(u.upstreams)
    }

    /// One instance's breaker and counters.
    pub async fn upstream(&self, instance: &str) -> Result<UpstreamView> {
        self.upstreams()
            .await?
            .into_iter()
            .find(|u| u.instance == instance)
            .with_context(|| format!("the BFF routes no upstream instance `{instance}`"))
    }

    /// `GET /admin/chaos`: the active faults.
    pub async fn chaos(&self) -> Result<ChaosView> {
        self.typed(reqwest::Method::GET, "/admin/chaos", None).await
    }

    /// `PUT /admin/chaos`: replaces every active fault.
    pub async fn put_chaos(&self, request: &ChaosRequest) -> Result<ChaosView> {
        let body = serde_json::to_value(request)?;
        self.typed(reqwest::Method::PUT, "/admin/chaos", Some(body))
            .await
    }

    /// `DELETE /admin/chaos`: lifts every fault.
    pub async fn lift_chaos(&self) -> Result<ChaosView> {
        self.typed(reqwest::Method::DELETE, "/admin/chaos", None)
            .await
    }
}

/// The untyped forms, for the callers that still read the answers as JSON
/// (`storefront chaos`, the fault runner, the dashboard, flood, hostile):
/// the typed answers above, serialized back. `set_chaos` sends its body as
/// given, so a bad one is the BFF's 422 to report.
impl BffAdmin {
    /// `GET /admin/config`, as JSON.
    pub async fn config(&self) -> Result<Value> {
        Ok(serde_json::to_value(self.admin_config().await?)?)
    }

    /// `GET /admin/breakers`'s `upstreams`, as JSON.
    pub async fn breakers(&self) -> Result<Vec<Value>> {
        self.upstreams()
            .await?
            .iter()
            .map(|u| Ok(serde_json::to_value(u)?))
            .collect()
    }

    /// `PUT /admin/chaos` with a JSON body (the BFF validates it: 422).
    pub async fn set_chaos(&self, body: Value) -> Result<Value> {
        let view: ChaosView = self
            .typed(reqwest::Method::PUT, "/admin/chaos", Some(body))
            .await?;
        Ok(serde_json::to_value(view)?)
    }

    /// `DELETE /admin/chaos`, as JSON.
    pub async fn clear_chaos(&self) -> Result<Value> {
        Ok(serde_json::to_value(self.lift_chaos().await?)?)
    }

    /// `GET /admin/chaos`, as JSON.
    pub async fn show_chaos(&self) -> Result<Value> {
        Ok(serde_json::to_value(self.chaos().await?)?)
    }
}

/// A problem+json's `detail`, else the body as it came.
fn detail(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_refusal_names_the_problem_detail_or_the_body() {
        assert_eq!(
            detail(r#"{"title":"x","detail":"bad target"}"#),
            "bad target"
        );
        assert_eq!(detail("plain text"), "plain text");
    }
}
