//! Claims, as the CLI talks to it: `POST /claims` under an
//! `Idempotency-Key`, and the lab's naive check-then-insert (the replay
//! experiment's control arm, behind the lab admin token), on the body the
//! service documents ([`ClaimRequest`]).
//!
//! The answer comes back raw ([`Answer`]: status, `Idempotent-Replayed`,
//! the body's bytes), not as a parsed claim or an error: the idempotency
//! contract is that every retry gets the first response back byte for
//! byte, and a 422 for a reused key is an outcome the replay experiment
//! counts, not a failure of the call.

use reqwest::StatusCode;

use super::call::url;
use super::contract::claims::{Claim, ClaimRequest};

/// One claims instance.
#[derive(Debug, Clone)]
pub struct Claims {
    pub http: reqwest::Client,
    /// e.g. `http://127.0.0.1:27013`.
    pub base: String,
    /// The lab admin token, for `/lab/*`.
    pub lab_token: Option<String>,
}

/// What a claims POST answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    /// `Idempotent-Replayed: true`: the stored first response, sent again.
    pub replayed: bool,
    /// The body, verbatim.
    pub body: Vec<u8>,
}

impl Answer {
    /// The claim a 201 carries (None for any other answer).
    pub fn claim(&self) -> Option<Claim> {
        if self.status != StatusCode::CREATED {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }
}

impl Claims {
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

    /// `POST /claims` with `Idempotency-Key: key`.
    pub async fn create(&self, key: &str, body: &ClaimRequest) -> reqwest::Result<Answer> {
        self.post("/claims", key, body).await
    }

    /// `POST /lab/claims/check-then-insert`: the same contract, wrong under
    /// concurrency on purpose.
    pub async fn check_then_insert(
        &self,
        key: &str,
        body: &ClaimRequest,
    ) -> reqwest::Result<Answer> {
        self.post("/lab/claims/check-then-insert", key, body).await
    }

    async fn post(&self, path: &str, key: &str, body: &ClaimRequest) -> reqwest::Result<Answer> {
        let mut req = self
            .http
            .post(url(&self.base, path))
            .header("idempotency-key", key)
            .json(body);
        if let Some(t) = &self.lab_token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        let status = r.status();
        let replayed = r
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let body = r.bytes().await?.to_vec();
        Ok(Answer {
            status,
            replayed,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_201_carries_a_claim() {
        let claim = r#"{"claim_id":"7f0b1c3e-2a4d-4b8e-9c1f-0123456789ab","order_id":"o",
            "customer_id":"c","reason":"damaged","amount_cents":5,"note":null,
            "created_at":"2025-03-01T12:00:00.123456Z"}"#;
        let answer = |status| Answer {
            status,
            replayed: false,
            body: claim.as_bytes().to_vec(),
        };
        let created = answer(StatusCode::CREATED).claim().unwrap();
        assert_eq!(
            created.claim_id.to_string(),
            "7f0b1c3e-2a4d-4b8e-9c1f-0123456789ab"
        );
        assert_eq!(answer(StatusCode::UNPROCESSABLE_ENTITY).claim(), None);
    }
}
