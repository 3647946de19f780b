//! The claims service's SQL. Queries name tables unqualified: the service's
//! role has `search_path = claims`. Functions take `impl PgExecutor` so they
//! work on a pool, a connection or a transaction alike.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::claim::Claim;
use crate::idempotency::{IdempotencyKey, Recorded};

/// A claim with its idempotency record, ready to insert: the response is
/// already rendered, so what is stored is exactly what was sent.
#[derive(Debug, Clone)]
pub struct NewRecord<'a> {
    /// The claim, with its generated id and timestamp.
    pub claim: &'a Claim,
    /// The client's key.
    pub key: &'a IdempotencyKey,
    /// The verified customer whose key space the key is in; `None` for the
    /// lab's claims (and ignored by the lab's naive table, which has no owner).
    pub owner: Option<Uuid>,
    /// SHA-256 of the request body's canonical JSON.
    pub request_hash: &'a str,
    /// The status to replay (201).
    pub response_status: i16,
    /// The rendered body to replay, byte for byte.
    pub response_body: &'a str,
}

/// One statement decides who wins a key, with no explicit transaction and
/// no prior SELECT. On a conflict the `DO UPDATE` sets the key to itself:
/// no column changes, but unlike `DO NOTHING` the existing row is locked and
/// RETURNed, so every caller learns the stored hash and response. A
/// concurrent request with the same key waits on the winner's uncommitted
/// row and then takes the conflict arm. `xmax = 0` holds only for a row
/// this statement inserted: the conflict arm locks the existing row before
/// updating it, and the new row version carries that lock, i.e. this
/// transaction's id, in `xmax`. The price of the lock is one dead row
/// version per replay, which autovacuum cleans like any update.
const INSERT_OR_FETCH: &str = "\
INSERT INTO claims (claim_id, idempotency_key, request_hash, response_status, response_body, \
                    order_id, customer_id, reason, amount_cents, note, created_at, owner_id) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
ON CONFLICT (owner_id, idempotency_key) DO UPDATE SET idempotency_key = EXCLUDED.idempotency_key \
RETURNING claim_id, request_hash, response_status, response_body, (xmax = 0) AS inserted";

const GET_CLAIM: &str = "\
SELECT claim_id, order_id, customer_id, reason, amount_cents, note, created_at \
FROM claims WHERE claim_id = $1 AND ($2::uuid IS NULL OR owner_id = $2)";

const DELETE_OLDER_THAN: &str = "DELETE FROM claims WHERE created_at < $1";

/// Records the claim under its key, or returns what the key already holds.
#[tracing::instrument(skip_all, fields(key = record.key.as_str(), claim_id = %record.claim.claim_id))]
pub async fn insert_or_fetch(
    db: impl PgExecutor<'_>,
    record: &NewRecord<'_>,
) -> Result<Recorded, sqlx::Error> {
    bind_record(sqlx::query_as(INSERT_OR_FETCH), record)
        .bind(record.owner)
        .fetch_one(db)
        .await
}

/// The claim with this id, if it exists (and has not expired) and
/// `reader` may see it: the lab (`None`) sees every claim, a customer only
/// their own.
#[tracing::instrument(skip_all, fields(claim_id = %id))]
pub async fn get_claim(
    db: impl PgExecutor<'_>,
    id: Uuid,
    reader: Option<Uuid>,
) -> Result<Option<Claim>, sqlx::Error> {
    sqlx::query_as(GET_CLAIM)
        .bind(id)
        .bind(reader)
        .fetch_optional(db)
        .await
}

/// Deletes claims created before `cutoff`, freeing their keys; returns how
/// many went. One statement: the `created_at` index finds them.
#[tracing::instrument(skip_all, fields(%cutoff))]
pub async fn delete_older_than(
    db: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(DELETE_OLDER_THAN)
        .bind(cutoff)
        .execute(db)
        .await?
        .rows_affected())
}

/// Binds a record's eleven columns in `INSERT_OR_FETCH` / `LAB_INSERT` order.
fn bind_record<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    record: &NewRecord<'q>,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    let claim = record.claim;
    query
        .bind(claim.claim_id)
        .bind(record.key.as_str())
        .bind(record.request_hash)
        .bind(record.response_status)
        .bind(record.response_body)
        .bind(claim.order_id.as_str())
        .bind(claim.customer_id.as_str())
        .bind(claim.reason.as_str())
        .bind(claim.amount_cents)
        .bind(claim.note.as_deref())
        .bind(claim.created_at)
}

/// The naive path's SQL, for the lab endpoint only: `lab_claims` has no
/// unique constraint on the key, so nothing stops duplicates.
pub mod lab {
    use super::*;

    const FIND: &str = "\
SELECT claim_id, request_hash, response_status, response_body, false AS inserted \
FROM lab_claims WHERE idempotency_key = $1 ORDER BY id LIMIT 1";

    const INSERT: &str = "\
INSERT INTO lab_claims (claim_id, idempotency_key, request_hash, response_status, response_body, \
                        order_id, customer_id, reason, amount_cents, note, created_at) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
RETURNING claim_id, request_hash, response_status, response_body, true AS inserted";

    /// The first record stored under `key`, if any (the "check").
    #[tracing::instrument(skip_all, fields(key = key.as_str()))]
    pub async fn find(
        db: impl PgExecutor<'_>,
        key: &IdempotencyKey,
    ) -> Result<Option<Recorded>, sqlx::Error> {
        sqlx::query_as(FIND)
            .bind(key.as_str())
            .fetch_optional(db)
            .await
    }

    /// A plain INSERT, no `ON CONFLICT` (the "then insert").
    #[tracing::instrument(skip_all, fields(key = record.key.as_str(), claim_id = %record.claim.claim_id))]
    pub async fn insert(
        db: impl PgExecutor<'_>,
        record: &NewRecord<'_>,
    ) -> Result<Recorded, sqlx::Error> {
        bind_record(sqlx::query_as(INSERT), record)
            .fetch_one(db)
            .await
    }
}
