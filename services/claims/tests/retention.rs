//! Retention: expired claims are deleted and their keys freed.

mod common;

use std::time::Duration;

use reqwest::StatusCode;
use storefront_claims::retention;

use common::{Replayed, claim_body, new_key, spawn_app};

#[tokio::test]
async fn retention_deletes_expired_claims_and_frees_their_keys() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let fresh_key = new_key();
    assert_eq!(
        app.post_claim(&fresh_key, &claim_body()).await.status,
        StatusCode::CREATED
    );
    let old_key = new_key();
    sqlx::query(
        "INSERT INTO claims (claim_id, idempotency_key, request_hash, response_status, response_body, \
                             order_id, customer_id, reason, amount_cents, note, created_at) \
         VALUES ($1, $2, 'h', 201, '{}', 'o', 'c', 'other', 0, NULL, now() - interval '2 days')",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(&old_key)
    .execute(&app.db)
    .await
    .unwrap();

    let deleted = retention::run_once(&app.db, Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(
        app.rows("claims", &old_key).await.is_empty(),
        "old claim survived"
    );
    assert_eq!(
        app.rows("claims", &fresh_key).await.len(),
        1,
        "fresh claim deleted"
    );

    // The expired key is usable again, for any body.
    let reused = app.post_claim(&old_key, &claim_body()).await;
    assert_eq!(reused.status, StatusCode::CREATED);
    assert!(!reused.replayed());
    app.cleanup().await;
}
