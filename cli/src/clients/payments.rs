//! Payments, as the CLI talks to it: the outbox experiment's lab switches,
//! behind the lab admin token. (The saga's webhook replays sign through
//! their own `experiments/saga/webhooks.rs`.)

use anyhow::Result;

use super::call::{self, url};
use super::contract::payments::{OutboxSettings, OutboxSwitches};

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

    fn lab(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.lab_token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
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
