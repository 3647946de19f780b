//! The BFF's calls to identity, for cookie sessions: the password grant
//! (sign-in), the refresh grant, and revocation (sign-out). JSON bodies, as
//! identity's `POST /token` and `POST /revoke` take them.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

/// How long one call to identity may take. A password check queues for a
/// hashing permit, so this is generous.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Tokens identity issued (RFC 6749 §5.1).
#[derive(Debug, Clone, Deserialize)]
pub struct Grant {
    /// The access JWT.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
    /// Seconds the refresh token (and so the session) lives.
    pub refresh_expires_in: u64,
}

/// Why identity did not give what was asked.
#[derive(Debug)]
pub enum Failure {
    /// Identity answered with an error: its status, body (problem+json)
    /// and `Retry-After`, to pass on or interpret.
    Refused {
        /// Identity's status.
        status: StatusCode,
        /// Identity's problem body.
        body: Value,
        /// Identity's `Retry-After`, if any.
        retry_after: Option<HeaderValue>,
    },
    /// No usable answer: not reachable, timed out, or not JSON.
    Unreachable(String),
}

impl Failure {
    /// Whether identity said the grant itself is bad (wrong password, a
    /// refresh token revoked, expired or reused), rather than "not now".
    pub fn invalid_grant(&self) -> bool {
        matches!(self, Self::Refused { body, .. } if body["error"] == "invalid_grant")
    }
}

/// Talks to identity.
#[derive(Clone)]
pub struct IdentityClient {
    base: String,
    client: reqwest::Client,
}

impl IdentityClient {
    /// A client of identity at `base`, sending with `client`.
    pub fn new(base: impl Into<String>, client: reqwest::Client) -> Self {
        Self {
            base: base.into(),
            client,
        }
    }

    /// The password grant. `client_addr` is passed as `X-Forwarded-For`,
    /// so identity's guessing throttle can count per browser, not per BFF
    /// (it believes it only when the BFF is one of its trusted proxies).
    pub async fn password(
        &self,
        username: &str,
        password: &str,
        client_addr: Option<std::net::IpAddr>,
    ) -> Result<Grant, Failure> {
        let body = json!({"grant_type": "password", "username": username, "password": password});
        let mut request = self.client.post(format!("{}/token", self.base)).json(&body);
        if let Some(addr) = client_addr {
            request = request.header("x-forwarded-for", addr.to_string());
        }
        Self::grant(request).await
    }

    /// The refresh grant: a new access token and a new refresh token (the
    /// presented one is spent).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Grant, Failure> {
        let body = json!({"grant_type": "refresh_token", "refresh_token": refresh_token});
        Self::grant(self.client.post(format!("{}/token", self.base)).json(&body)).await
    }

    /// Revokes a token (access: its jti is denylisted; refresh: its family
    /// ends).
    pub async fn revoke(&self, token: &str) -> Result<(), Failure> {
        let request = self
            .client
            .post(format!("{}/revoke", self.base))
            .json(&json!({ "token": token }));
        Self::call(request).await.map(drop)
    }

    async fn grant(request: reqwest::RequestBuilder) -> Result<Grant, Failure> {
        let body = Self::call(request).await?;
        serde_json::from_value(body)
            .map_err(|e| Failure::Unreachable(format!("identity's token response: {e}")))
    }

    async fn call(request: reqwest::RequestBuilder) -> Result<Value, Failure> {
        let response = request
            .timeout(TIMEOUT)
            .headers(storefront_kit::telemetry::trace_headers())
            .send()
            .await
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        let status = response.status();
        let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            Err(Failure::Refused {
                status,
                body,
                retry_after,
            })
        }
    }
}
