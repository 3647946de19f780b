//! Whose claim (issue 11): through the BFF, `X-User-Id` is the verified
//! customer.

mod common;

use reqwest::StatusCode;
use serde_json::json;

use common::{Replayed, body_without_customer, claim_body, new_key, spawn_app};

#[tokio::test]
async fn a_customers_claim_is_theirs_and_another_customer_gets_404() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let (alice, bob) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let created = app
        .post_as(&alice.to_string(), &new_key(), &body_without_customer())
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["customer_id"], alice.to_string());
    let location = created.header("location").to_owned();

    assert_eq!(
        app.get_as(&alice.to_string(), &location).await.bytes,
        created.bytes
    );
    let theirs = app.get_as(&bob.to_string(), &location).await;
    let missing = app
        .get_as(
            &bob.to_string(),
            &format!("/claims/{}", uuid::Uuid::new_v4()),
        )
        .await;
    assert_eq!(
        (theirs.status, missing.status),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(theirs.body["type"], missing.body["type"]);
    assert!(!String::from_utf8_lossy(&theirs.bytes).contains(&alice.to_string()));
    // The lab (direct, no X-User-Id) still reads every claim.
    assert_eq!(app.get(&location).await.status, StatusCode::OK);
    let owner: Option<uuid::Uuid> = sqlx::query_scalar("SELECT owner_id FROM claims")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(owner, Some(alice));
    app.cleanup().await;
}

#[tokio::test]
async fn a_body_customer_id_naming_someone_else_is_403_and_writes_no_row() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let alice = uuid::Uuid::new_v4();
    for other in [json!("cus-42"), json!(uuid::Uuid::new_v4().to_string())] {
        let mut body = claim_body();
        body["customer_id"] = other.clone();
        let refused = app.post_as(&alice.to_string(), &new_key(), &body).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{other}");
        assert_eq!(refused.header("content-type"), "application/problem+json");
        assert_eq!(refused.body["type"], "/problems/foreign-customer");
    }
    assert_eq!(app.count().await, 0);
    // Naming yourself is fine (any UUID spelling), and stored canonically.
    let mut body = claim_body();
    body["customer_id"] = json!(alice.to_string().to_uppercase());
    let own = app.post_as(&alice.to_string(), &new_key(), &body).await;
    assert_eq!(own.status, StatusCode::CREATED);
    assert_eq!(own.body["customer_id"], alice.to_string());
    app.cleanup().await;
}

#[tokio::test]
async fn another_customer_replaying_a_key_gets_a_claim_of_their_own() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let (alice, bob) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let key = new_key();
    let body = body_without_customer();
    let first = app.post_as(&alice, &key, &body).await;
    let again = app.post_as(&alice, &key, &body).await;
    assert_eq!(
        (first.status, again.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert!(again.replayed(), "the owner's retry is a replay");
    assert_eq!(first.bytes, again.bytes);

    let theirs = app.post_as(&bob, &key, &body).await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert!(!theirs.replayed());
    assert_ne!(theirs.body["claim_id"], first.body["claim_id"]);
    assert_eq!(theirs.body["customer_id"], bob.as_str());
    let mut different = body.clone();
    different["amount_cents"] = json!(1);
    let reused = app.post_as(&bob, &key, &different).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        !String::from_utf8_lossy(&reused.bytes).contains(first.body["claim_id"].as_str().unwrap())
    );
    // The lab's key space is a third one.
    let lab = app.post_claim(&key, &claim_body()).await;
    assert_eq!(lab.status, StatusCode::CREATED);
    assert!(!lab.replayed());
    assert_eq!(app.count().await, 3);
    app.cleanup().await;
}

#[tokio::test]
async fn a_malformed_x_user_id_is_a_400_problem_and_writes_no_row() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    for bad in ["alice", "", "42", "00000000-0000-0000-0000-00000000000z"] {
        let refused = app.post_as(bad, &new_key(), &claim_body()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(refused.body["type"], "/problems/user-id-malformed");
        let read = app
            .get_as(bad, &format!("/claims/{}", uuid::Uuid::new_v4()))
            .await;
        assert_eq!(read.status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(app.count().await, 0);
    app.cleanup().await;
}
