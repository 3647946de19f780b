//! The identity service's SQL. Tables are unqualified: every login the
//! service uses (Vault's dynamic roles, or a static test login) has
//! `search_path = identity`. Writes use ids and token hashes generated
//! before the first attempt and `ON CONFLICT DO NOTHING`, so a retry of
//! the same request after a dropped connection repeats nothing.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::refresh::{self, Decision, Refusal, TokenRow};

/// A user as the password grant needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Credentials {
    /// The user's id (`users.id`).
    pub id: Uuid,
    /// The login name.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// `customer`, `staff` (the `users.roles` column).
    pub roles: Vec<String>,
}

/// A user as `/userinfo` shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Profile {
    #[serde(rename = "sub")]
    /// The user's id, shown as `sub`.
    pub id: Uuid,
    /// The login name.
    pub username: String,
    /// The name to show.
    pub display_name: String,
    /// `customer`, `staff`.
    pub roles: Vec<String>,
}

#[tracing::instrument(skip_all, fields(username))]
/// The user `username` with what the password grant checks; `None` when there is none.
pub async fn credentials(
    db: impl PgExecutor<'_>,
    username: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as("SELECT id, username, password_hash, roles FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(db)
        .await
}

#[tracing::instrument(skip_all, fields(%id))]
/// The user `id` as `/userinfo` shows it; `None` when there is none.
pub async fn profile(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Profile>, sqlx::Error> {
    sqlx::query_as("SELECT id, username, display_name, roles FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// A new refresh family (a login) with its first token.
#[derive(Debug, Clone)]
pub struct NewFamily<'a> {
    /// The family's id (stored in every token of it).
    pub family_id: Uuid,
    /// The user who logged in.
    pub user_id: Uuid,
    /// Hash of the first refresh token.
    pub token_hash: &'a [u8],
    /// When the first token expires.
    pub expires_at: DateTime<Utc>,
}

#[tracing::instrument(skip_all, fields(family = %family.family_id))]
/// Stores a new family with its first token in one transaction; storing it again changes nothing.
pub async fn start_family(pool: &PgPool, family: &NewFamily<'_>) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO refresh_families (id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(family.family_id)
    .bind(family.user_id)
    .execute(&mut *tx)
    .await?;
    insert_token(
        &mut *tx,
        family.token_hash,
        family.family_id,
        family.expires_at,
    )
    .await?;
    tx.commit().await
}

async fn insert_token(
    db: impl PgExecutor<'_>,
    hash: &[u8],
    family_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(hash)
    .bind(family_id)
    .bind(expires_at)
    .execute(db)
    .await
    .map(drop)
}

/// The exchange of one refresh token for its successor.
#[derive(Debug, Clone)]
pub struct Exchange<'a> {
    /// Hash of the token presented.
    pub presented: &'a [u8],
    /// Hash of the successor, generated before the first attempt.
    pub successor: &'a [u8],
    /// This HTTP request: a retry of it is the same use, not a reuse.
    pub request_id: Uuid,
    /// The time the exchange happens at.
    pub now: DateTime<Utc>,
    /// When the successor expires.
    pub expires_at: DateTime<Utc>,
}

/// What an exchange did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchanged {
    /// The successor is stored (now, or by this request's earlier attempt).
    Rotated {
        /// The family's user.
        user_id: Uuid,
        /// The user's login name.
        username: String,
        /// The user's roles.
        roles: Vec<String>,
        /// The family the successor joins.
        family_id: Uuid,
    },
    /// The token was used before: its family is now revoked.
    ReuseDetected {
        /// The family just revoked.
        family_id: Uuid,
    },
    /// Refused: the token is unknown, expired, or its family was revoked.
    Refused(Refusal),
}

const LOCK_TOKEN: &str = "\
SELECT t.family_id, f.user_id, u.username, u.roles, t.expires_at, t.used_at, t.used_by_request, \
       f.revoked_at AS family_revoked_at \
FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id JOIN users u ON u.id = f.user_id \
WHERE t.token_hash = $1 \
FOR UPDATE OF t, f";

/// One transaction: lock the token and its family, decide
/// ([`refresh::decide`]), and write what the decision says.
#[tracing::instrument(skip_all, fields(request_id = %exchange.request_id))]
pub async fn exchange(pool: &PgPool, exchange: &Exchange<'_>) -> Result<Exchanged, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row: Option<TokenRow> = sqlx::query_as(LOCK_TOKEN)
        .bind(exchange.presented)
        .fetch_optional(&mut *tx)
        .await?;
    let outcome = match (
        refresh::decide(row.as_ref(), exchange.request_id, exchange.now),
        row,
    ) {
        (Decision::Refuse(why), _) => Exchanged::Refused(why),
        (Decision::ReuseDetected, Some(row)) => {
            revoke_family(&mut *tx, row.family_id, "reuse_detected").await?;
            Exchanged::ReuseDetected {
                family_id: row.family_id,
            }
        }
        (Decision::Rotate, Some(row)) => {
            sqlx::query(
                "UPDATE refresh_tokens SET used_at = $2, used_by_request = $3, replaced_by = $4 \
                 WHERE token_hash = $1",
            )
            .bind(exchange.presented)
            .bind(exchange.now)
            .bind(exchange.request_id)
            .bind(exchange.successor)
            .execute(&mut *tx)
            .await?;
            insert_token(
                &mut *tx,
                exchange.successor,
                row.family_id,
                exchange.expires_at,
            )
            .await?;
            rotated(row)
        }
        (Decision::Replay, Some(row)) => rotated(row),
        (_, None) => Exchanged::Refused(Refusal::Unknown),
    };
    tx.commit().await?;
    Ok(outcome)
}

fn rotated(row: TokenRow) -> Exchanged {
    Exchanged::Rotated {
        user_id: row.user_id,
        username: row.username,
        roles: row.roles,
        family_id: row.family_id,
    }
}

async fn revoke_family(
    db: impl PgExecutor<'_>,
    family_id: Uuid,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE refresh_families SET revoked_at = now(), revoked_reason = $2 \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .bind(reason)
    .execute(db)
    .await
    .map(drop)
}

/// `POST /revoke` with a refresh token: its family ends (logout). Returns
/// whether the token was known.
#[tracing::instrument(skip_all)]
pub async fn revoke_family_of(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
) -> Result<bool, sqlx::Error> {
    let family: Option<Uuid> = sqlx::query_scalar(
        "WITH t AS (SELECT family_id FROM refresh_tokens WHERE token_hash = $1) \
         UPDATE refresh_families f SET revoked_at = coalesce(f.revoked_at, now()), \
                revoked_reason = coalesce(f.revoked_reason, 'revoked') \
         FROM t WHERE f.id = t.family_id RETURNING f.id",
    )
    .bind(token_hash)
    .fetch_optional(db)
    .await?;
    Ok(family.is_some())
}

/// The durable record of a revoked access token (Redis holds the fast copy).
#[tracing::instrument(skip_all, fields(%jti))]
pub async fn record_revocation(
    db: impl PgExecutor<'_>,
    jti: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(user_id)
    .bind(expires_at)
    .execute(db)
    .await
    .map(drop)
}
