//! Identity, as the CLI talks to it: logins, userinfo and revocation, and
//! the lab routes that show and steer its credential rotation (behind the
//! lab admin token, which the fleet hands every service as `LAB_ADMIN_TOKEN`).

use anyhow::Result;

use super::call::{self, url};
use super::contract::identity::{
    Lease, RevokeRequest, RevokeResponse, Rotated, RotationMode, TokenRequest, TokenResponse,
};

/// One identity instance.
#[derive(Debug, Clone)]
pub struct Identity {
    pub http: reqwest::Client,
    /// e.g. `http://127.0.0.1:27014`.
    pub base: String,
    /// The lab admin token, for `/lab/*` and `access_ttl_secs`.
    pub lab_token: Option<String>,
}

impl Identity {
    pub fn new(http: reqwest::Client, base: impl Into<String>) -> Self {
        Self {
            http,
            base: base.into(),
            lab_token: None,
        }
    }

    /// The same instance, its lab routes unlocked with `token`.
    pub fn with_lab_token(mut self, token: impl Into<String>) -> Self {
        self.lab_token = Some(token.into());
        self
    }

    fn lab(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.lab_token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `POST /token` (either grant); a lab TTL goes with the lab token.
    pub async fn token(&self, body: &TokenRequest) -> Result<TokenResponse> {
        let req = self.http.post(url(&self.base, "/token")).json(body);
        let req = if body.access_ttl_secs.is_some() {
            self.lab(req)
        } else {
            req
        };
        call::json(req).await
    }

    /// `POST /token` with the password grant.
    pub async fn login(&self, username: &str, password: &str) -> Result<TokenResponse> {
        self.token(&TokenRequest::password(username, password))
            .await
    }

    /// `POST /revoke` of an access or a refresh token.
    pub async fn revoke(&self, token: &str) -> Result<RevokeResponse> {
        let body = RevokeRequest {
            token: Some(token.to_owned()),
        };
        call::json(self.http.post(url(&self.base, "/revoke")).json(&body)).await
    }

    /// `GET /lab/lease`: the current login, lease and every generation.
    pub async fn lease(&self) -> Result<Lease> {
        call::json(self.lab(self.http.get(url(&self.base, "/lab/lease")))).await
    }

    /// `POST /lab/rotate`: answers once the new generation is current.
    pub async fn rotate(&self) -> Result<Rotated> {
        call::json(self.lab(self.http.post(url(&self.base, "/lab/rotate")))).await
    }

    /// `PUT /lab/rotation-mode`: the naive control arm on or off.
    pub async fn set_rotation_mode(&self, naive: bool) -> Result<RotationMode> {
        let req = self
            .http
            .put(url(&self.base, "/lab/rotation-mode"))
            .json(&RotationMode { naive });
        call::json(self.lab(req)).await
    }
}
