//! The inbox: a consumer's record of the message ids it has handled,
//! written in the same transaction as the handling's effect. A redelivered
//! message (the outbox publishes at least once; the broker redelivers what a
//! dead consumer didn't ack) finds its id and changes nothing, so every
//! effect happens once.
//!
//! Each consuming service creates the table in its own schema:
//!
//! ```sql
//! CREATE TABLE inbox (
//!     message_id   uuid        PRIMARY KEY,
//!     kind         text        NOT NULL,
//!     processed_at timestamptz NOT NULL DEFAULT now()
//! );
//! CREATE INDEX inbox_processed_at_idx ON inbox (processed_at);
//! ```

use std::time::Duration;

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::outbox::plain_identifier;

/// A service's inbox table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxTable {
    /// Table name, possibly schema-qualified; checked to be a plain identifier.
    table: String,
}

impl InboxTable {
    /// `table`, e.g. `inbox` under the service's search_path. Panics on a
    /// name that isn't lowercase letters, digits, `_` and `.`.
    pub fn new(table: &str) -> Self {
        assert!(plain_identifier(table), "bad inbox table name {table:?}");
        Self {
            table: table.to_owned(),
        }
    }
}

/// Records `message_id` as handled; `true` if this is the first time (go on
/// and apply the effect in the same transaction), `false` for a duplicate
/// (apply nothing). A concurrent duplicate waits on the first one's row and
/// then sees it, so two deliveries racing can't both be first.
pub async fn record(
    db: impl PgExecutor<'_>,
    table: &InboxTable,
    message_id: Uuid,
    kind: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(&format!(
        "INSERT INTO {} (message_id, kind) VALUES ($1, $2) ON CONFLICT (message_id) DO NOTHING",
        table.table
    ))
    .bind(message_id)
    .bind(kind)
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Forgets ids handled more than `retention` ago (longer than any
/// redelivery can take); returns how many.
pub async fn cleanup(
    db: impl PgExecutor<'_>,
    table: &InboxTable,
    retention: Duration,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(&format!(
        "DELETE FROM {} WHERE processed_at < now() - make_interval(secs => $1)",
        table.table
    ))
    .bind(retention.as_secs_f64())
    .execute(db)
    .await?
    .rows_affected())
}
