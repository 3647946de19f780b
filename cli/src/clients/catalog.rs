//! A catalog replica, as the CLI talks to it: products read, listed and
//! patched under an ETag precondition, and the lab's blind decrement (the
//! race experiment's control arm, behind the lab admin token).

use anyhow::Result;

use super::call::{self, url};
use super::contract::catalog::{BlindDecrement, BlindOutcome, PatchBody, Product};

/// One catalog replica (or the BFF's `/api/catalog` prefix: the same paths).
#[derive(Debug, Clone)]
pub struct Catalog {
    pub http: reqwest::Client,
    /// e.g. `http://127.0.0.1:27010`, or `{bff}/api/catalog`.
    pub base: String,
    /// The lab admin token, for `/lab/*`.
    pub lab_token: Option<String>,
}

/// The ETag the catalog sends for a product at `version`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

impl Catalog {
    pub fn new(http: reqwest::Client, base: impl Into<String>) -> Self {
        Self {
            http,
            base: base.into(),
            lab_token: None,
        }
    }

    /// The same replica, its lab routes unlocked with `token`.
    pub fn with_lab_token(mut self, token: impl Into<String>) -> Self {
        self.lab_token = Some(token.into());
        self
    }

    /// `GET /products/{id}` (its ETag is [`etag`] of its `version`).
    pub async fn product(&self, id: i64) -> Result<Product> {
        call::json(self.http.get(url(&self.base, &format!("/products/{id}")))).await
    }

    /// `PATCH /products/{id}` with `If-Match: if_match`; the product as written.
    pub async fn patch(&self, id: i64, if_match: &str, body: &PatchBody) -> Result<Product> {
        let req = self
            .http
            .patch(url(&self.base, &format!("/products/{id}")))
            .header(reqwest::header::IF_MATCH, if_match)
            .json(body);
        call::json(req).await
    }

    /// `POST /lab/products/{id}/blind-decrement`: read, compute, write, no precondition.
    pub async fn blind_decrement(&self, id: i64, by: i32) -> Result<BlindOutcome> {
        let mut req = self
            .http
            .post(url(
                &self.base,
                &format!("/lab/products/{id}/blind-decrement"),
            ))
            .json(&BlindDecrement { by });
        if let Some(t) = &self.lab_token {
            req = req.bearer_auth(t);
        }
        call::json(req).await
    }
}
