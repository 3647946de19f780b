//! The claims API over real HTTP against a real Postgres: creating a
//! claim, replaying it under its idempotency key, refusing bad keys and
//! bodies, and reading it back (the harness is in `common/`).

mod common;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Barrier;

use common::{Replayed, Reply, claim_body, new_key, spawn_app};

#[tokio::test]
async fn ready_reports_postgres_ok() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let reply = app.get("/ready").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["checks"]["postgres"]["status"], "ok");
    app.cleanup().await;
}

#[tokio::test]
async fn first_post_creates_the_claim_with_201_and_location() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let key = new_key();
    let reply = app.post_claim(&key, &claim_body()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body.clone());
    assert!(!reply.replayed());
    assert_eq!(reply.header("content-type"), "application/json");
    let body = reply.body.clone();
    let id = body["claim_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    assert_eq!(reply.header("location"), format!("/claims/{id}").as_str());
    assert_eq!(body["order_id"], "ord-1001");
    assert_eq!(body["customer_id"], "cus-42");
    assert_eq!(body["reason"], "damaged");
    assert_eq!(body["amount_cents"], 2490);
    assert_eq!(body["note"], "the dripper arrived in pieces");
    assert!(chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).is_ok());
    let rows = app.rows("claims", &key).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["response_status"], 201);
    assert_eq!(
        rows[0]["response_body"].as_str().unwrap().as_bytes(),
        reply.bytes
    );
    app.cleanup().await;
}

#[tokio::test]
async fn replay_returns_the_same_status_and_byte_identical_body() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let key = new_key();
    let first = app.post_claim(&key, &claim_body()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    // Same members, different order and whitespace: the same request.
    let reordered = r#"{ "note": "the dripper arrived in pieces", "amount_cents": 2490,
        "reason": "damaged", "customer_id": "cus-42", "order_id": "ord-1001" }"#;
    for body in [claim_body().to_string(), reordered.to_owned()] {
        let again = app.post_raw("/claims", Some(&key), &body).await;
        assert_eq!(again.status, first.status);
        assert_eq!(again.bytes, first.bytes, "replayed body differs");
        assert!(again.replayed(), "no Idempotent-Replayed header");
        assert_eq!(again.header("location"), first.header("location"));
    }
    assert_eq!(app.rows("claims", &key).await.len(), 1);
    app.cleanup().await;
}

#[tokio::test]
async fn same_key_with_a_different_body_is_422_and_changes_nothing() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let key = new_key();
    assert_eq!(
        app.post_claim(&key, &claim_body()).await.status,
        StatusCode::CREATED
    );
    let before = app.rows("claims", &key).await;

    let mut other = claim_body();
    other["amount_cents"] = json!(99_999);
    let reply = app.post_claim(&key, &other).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.header("content-type"), "application/problem+json");
    assert!(!reply.replayed());
    let problem = reply.body.clone();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/idempotency-key-reused"),
        "{problem}"
    );
    assert_eq!(problem["status"], 422);
    assert_eq!(problem["idempotency_key"], key.as_str());

    let after = app.rows("claims", &key).await;
    assert_eq!(after, before, "the stored claim changed");
    assert_eq!(after[0]["amount_cents"], 2490);
    app.cleanup().await;
}

#[tokio::test]
async fn missing_or_malformed_key_is_a_400_problem() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let body = claim_body().to_string();
    let missing = app.post_raw("/claims", None, &body).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.header("content-type"), "application/problem+json");
    let problem = missing.body.clone();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{problem}"
    );
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/idempotency-key-missing")
    );

    let long = "k".repeat(256);
    for bad in ["", "has space", "a/b", long.as_str()] {
        let reply = app.post_raw("/claims", Some(bad), &body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad:?}");
        let problem = reply.body.clone();
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("/idempotency-key-malformed"),
            "{bad:?}: {problem}"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM claims")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 0);
    app.cleanup().await;
}

#[tokio::test]
async fn invalid_fields_are_a_422_problem_listing_each() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let body = json!({"order_id": "", "customer_id": "c", "reason": "lost", "amount_cents": -1});
    let reply = app.post_claim(&new_key(), &body).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.header("content-type"), "application/problem+json");
    let problem = reply.body.clone();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/invalid-claim")
    );
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["amount_cents", "order_id", "reason"]);

    let not_json = app.post_raw("/claims", Some(&new_key()), "{not json").await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_json.header("content-type"), "application/problem+json");
    app.cleanup().await;
}

#[tokio::test]
async fn fifty_concurrent_identical_posts_create_exactly_one_claim() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let app = Arc::new(app);
    let key = new_key();
    let n = 50;
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (app, barrier, key) = (app.clone(), barrier.clone(), key.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            app.post_claim(&key, &claim_body()).await
        });
    }
    let replies = tasks.join_all().await;
    let created: Vec<&Reply> = replies.iter().filter(|r| !r.replayed()).collect();
    let replayed = replies.iter().filter(|r| r.replayed()).count();
    assert_eq!(
        created.len(),
        1,
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(replayed, n - 1);
    assert!(replies.iter().all(|r| r.status == StatusCode::CREATED));
    assert!(
        replies.iter().all(|r| r.bytes == created[0].bytes),
        "bodies differ"
    );
    assert_eq!(app.rows("claims", &key).await.len(), 1);
    Arc::into_inner(app).unwrap().cleanup().await;
}

#[tokio::test]
async fn get_returns_the_claim_as_created_and_404_or_400_otherwise() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let created = app.post_claim(&new_key(), &claim_body()).await;
    let location = created.header("location").to_owned();
    let fetched = app.get(&location).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body.clone(), created.body.clone());
    assert_eq!(
        fetched.bytes, created.bytes,
        "GET renders the claim differently"
    );

    let missing = app.get(&format!("/claims/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.header("content-type"), "application/problem+json");
    assert_eq!(missing.body["status"], 404);

    let malformed = app.get("/claims/not-a-uuid").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.header("content-type"), "application/problem+json");
    app.cleanup().await;
}

#[tokio::test]
async fn a_nul_in_order_id_or_note_is_a_400_problem_and_writes_no_row() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    for field in ["order_id", "note"] {
        let key = new_key();
        let mut body = claim_body();
        body[field] = json!("ord\u{0}1001");
        let reply = app.post_claim(&key, &body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{field}: {}",
            reply.body.clone()
        );
        assert_eq!(reply.header("content-type"), "application/problem+json");
        assert_eq!(reply.body["type"], "/problems/nul-byte");
        assert!(app.rows("claims", &key).await.is_empty(), "{field}");
    }
    // An escaped backslash followed by u0000 is six ordinary characters.
    let key = new_key();
    let mut body = claim_body();
    body["note"] = json!("\\u0000 is text");
    let reply = app.post_claim(&key, &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body.clone());
    assert_eq!(reply.body["note"], "\\u0000 is text");
    app.cleanup().await;
}
