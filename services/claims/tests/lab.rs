//! The lab's check-then-insert route: off unless enabled, behind the lab
//! admin token, and racy under concurrency by design.

mod common;

use std::sync::Arc;

use reqwest::StatusCode;
use tokio::sync::Barrier;

use common::{Replayed, claim_body, new_key, spawn_app};

#[tokio::test]
async fn lab_route_is_404_when_lab_endpoints_are_off() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let reply = app
        .post_raw(
            "/lab/claims/check-then-insert",
            Some(&new_key()),
            &claim_body().to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    app.cleanup().await;
}

#[tokio::test]
async fn lab_check_then_insert_replays_when_requests_are_sequential() {
    let Some(app) = spawn_app(true).await else {
        return;
    };
    let key = new_key();
    let path = "/lab/claims/check-then-insert";
    let body = claim_body().to_string();
    let first = app.post_lab(path, Some(&key), &body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = app.post_lab(path, Some(&key), &body).await;
    assert!(again.replayed());
    assert_eq!(again.bytes, first.bytes);
    assert_eq!(app.rows("lab_claims", &key).await.len(), 1);
    app.cleanup().await;
}

#[tokio::test]
async fn lab_check_then_insert_duplicates_under_concurrency() {
    let Some(app) = spawn_app(true).await else {
        return;
    };
    let app = Arc::new(app);
    let (rounds, n) = (10, 20);
    let mut observed = Vec::new();
    for round in 0..rounds {
        let key = format!("lab-{round}-{}", uuid::Uuid::new_v4());
        let barrier = Arc::new(Barrier::new(n));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (app, barrier, key) = (app.clone(), barrier.clone(), key.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                let body = claim_body().to_string();
                app.post_lab("/lab/claims/check-then-insert", Some(&key), &body)
                    .await
                    .status
            });
        }
        let statuses = tasks.join_all().await;
        let errors = statuses.iter().filter(|s| s.is_server_error()).count();
        let rows = app.rows("lab_claims", &key).await.len();
        observed.push((rows, errors));
        if rows > 1 || errors > 0 {
            break;
        }
    }
    eprintln!("check-then-insert (rows, 5xx) per round: {observed:?}");
    assert!(
        observed
            .iter()
            .any(|&(rows, errors)| rows > 1 || errors > 0),
        "check-then-insert never misbehaved in {rounds} rounds of {n}: (rows, 5xx) per round {observed:?}"
    );
    Arc::into_inner(app).unwrap().cleanup().await;
}

#[tokio::test]
async fn the_lab_route_needs_the_lab_admin_token() {
    let Some(app) = spawn_app(true).await else {
        return;
    };
    let key = new_key();
    let path = "/lab/claims/check-then-insert";
    let body = claim_body().to_string();
    let anonymous = app.post_raw(path, Some(&key), &body).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.header("content-type"), "application/problem+json");
    assert!(app.rows("lab_claims", &key).await.is_empty());
    let allowed = app.post_lab(path, Some(&key), &body).await;
    assert_eq!(allowed.status, StatusCode::CREATED);
    assert_eq!(app.rows("lab_claims", &key).await.len(), 1);
    app.cleanup().await;
}
