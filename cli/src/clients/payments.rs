//! Payments, as the CLI talks to it: the lab's signing oracle (the saga
//! experiment's webhook replays) and the outbox experiment's switches, both
//! behind the lab admin token.

use anyhow::Result;

use super::call::{self, url};
use super::contract::payments::{OutboxSettings, OutboxSwitches, Provider, SignRequest, Signed};

/// One payments instance.
#[derive(Debug, Clone)]
pub struct Payments {
    pub http: reqwest::Client,
    /// e.g. `http://127.0.0.1:27015`.
    pub base: String,
    /// The lab admin token, for `/lab/*`.
    pub lab_token: Option<String>,
}

impl Payments {
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

    /// `POST /lab/sign/{provider}`: the headers `provider` would send with
    /// `body`, signed at `at` (Unix seconds; now if None).
    pub async fn sign(&self, provider: Provider, body: &str, at: Option<i64>) -> Result<Signed> {
        let req = self
            .http
            .post(url(&self.base, &format!("/lab/sign/{}", provider.as_str())))
            .json(&SignRequest {
                body: body.to_owned(),
                at,
            });
        call::json(self.lab(req)).await
    }

    /// `GET /lab/outbox`: the switches and the transactions held now.
    pub async fn outbox(&self) -> Result<OutboxSettings> {
        call::json(self.lab(self.http.get(url(&self.base, "/lab/outbox")))).await
    }

    /// `PUT /lab/outbox`: sets the switches; the settings as they are now.
    pub async fn set_outbox(&self, switches: OutboxSwitches) -> Result<OutboxSettings> {
        let req = self
            .http
            .put(url(&self.base, "/lab/outbox"))
            .json(&switches);
        call::json(self.lab(req)).await
    }
}
