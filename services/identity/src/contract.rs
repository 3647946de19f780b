//! The identity service's wire types: the bodies of `POST /token`,
//! `POST /revoke`, `GET /userinfo` and the lab's `/lab/lease`,
//! `/lab/rotate` and `/lab/rotation-mode`. The handlers build and read
//! these, the OpenAPI document describes them, and the `storefront` CLI
//! compiles this same file (`cli/src/clients/contract.rs`) for its typed
//! client, so a change here is a change on both sides of the wire.
//!
//! This file names only `serde`, `uuid` and `utoipa`: nothing of the
//! service's own, so it compiles as well in the CLI.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /token` body: both grants' fields; which are required depends on
/// `grant_type` (`password`: username and password; `refresh_token`: refresh_token).
#[derive(utoipa::ToSchema, Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenRequest {
    /// `password` or `refresh_token`.
    pub grant_type: Option<String>,
    /// The login name (password grant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password (password grant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The refresh token to rotate (refresh grant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Lab only: a shorter access-token lifetime (expiry tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_ttl_secs: Option<u64>,
}

impl TokenRequest {
    /// A password grant for `username`.
    pub fn password(username: &str, password: &str) -> Self {
        Self {
            grant_type: Some("password".into()),
            username: Some(username.into()),
            password: Some(password.into()),
            ..Self::default()
        }
    }

    /// A refresh grant.
    pub fn refresh(refresh_token: &str) -> Self {
        Self {
            grant_type: Some("refresh_token".into()),
            refresh_token: Some(refresh_token.into()),
            ..Self::default()
        }
    }
}

/// `POST /token`'s 200 body.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// An EdDSA-signed JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the access token lives.
    #[schema(minimum = 0)]
    pub expires_in: u64,
    /// Opaque; single use (rotated on every refresh).
    pub refresh_token: String,
    /// Seconds the refresh token lives.
    #[schema(minimum = 0)]
    pub refresh_expires_in: u64,
    /// The access token's id (what `/revoke` denylists).
    pub jti: Uuid,
}

/// `POST /revoke` body.
#[derive(utoipa::ToSchema, Debug, Clone, Default, Serialize, Deserialize)]
pub struct RevokeRequest {
    /// An access token (a JWT) or a refresh token.
    pub token: Option<String>,
}

/// `POST /revoke`'s 200 body; which members are present depends on the token.
#[derive(utoipa::ToSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RevokeResponse {
    /// Whether something was revoked now.
    pub revoked: bool,
    /// `access_token` or `refresh_token`, when the token was recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Why nothing was revoked: `expired` or `invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The revoked access token's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<Uuid>,
    /// Where the denylist entry lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denylist_key: Option<String>,
}

/// `GET /userinfo`'s 200 body.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user's id.
    pub sub: Uuid,
    /// The login name.
    pub username: String,
    /// For display.
    pub display_name: String,
    /// e.g. `customer`, `staff`.
    pub roles: Vec<String>,
    /// The presented token's id.
    pub jti: Uuid,
    /// The presented token's expiry, seconds since the epoch.
    pub exp: u64,
}

/// Why new database credentials were fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The first credentials.
    Startup,
    /// The lease is near its `max_ttl` and can't be renewed further.
    MaxTtl,
    /// Vault refused a renewal: the lease was revoked or has expired.
    RenewalRefused,
    /// A query met a terminated session or a login that no longer exists.
    ConnectionFailed,
    /// Asked for through `POST /lab/rotate`.
    Requested,
}

impl Reason {
    /// The name logged and exported.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::MaxTtl => "max_ttl",
            Self::RenewalRefused => "renewal_refused",
            Self::ConnectionFailed => "connection_failed",
            Self::Requested => "requested",
        }
    }
}

/// What happened to one generation of credentials, for `/lab/lease`
/// (times in Unix ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Counts up from 1.
    pub generation: u64,
    /// The Postgres login.
    pub username: String,
    /// The Vault lease, `None` with a static `DATABASE_URL`.
    pub lease_id: Option<String>,
    /// Why it was fetched.
    pub reason: Reason,
    /// Lease TTL Vault granted at issue.
    pub lease_ttl_secs: Option<u64>,
    /// When fetching the credentials started.
    pub requested_at_ms: u64,
    /// When its pool became the current one.
    pub swapped_in_at_ms: u64,
    /// When a successor replaced it.
    pub swapped_out_at_ms: Option<u64>,
    /// When its pool had closed every connection.
    pub drained_at_ms: Option<u64>,
    /// When we revoked its lease.
    pub revoked_at_ms: Option<u64>,
    /// Renewals Vault granted.
    pub renewals: u32,
}

/// `GET /lab/lease`: the current login and lease, and every generation's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// The current generation's number.
    pub generation: u64,
    /// Its Postgres login.
    pub username: String,
    /// Its Vault lease.
    pub lease_id: Option<String>,
    /// Whether the naive control arm is on.
    pub naive: bool,
    /// Every generation, oldest first.
    pub history: Vec<Record>,
}

/// `POST /lab/rotate`'s 200 body: the generation now current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rotated {
    /// Its number.
    pub generation: u64,
    /// Its Postgres login.
    pub username: String,
}

/// `PUT /lab/rotation-mode` body and answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationMode {
    /// The control arm: no retry, old leases revoked before they drain.
    pub naive: bool,
}
